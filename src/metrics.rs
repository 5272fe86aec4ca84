//! Counters of what the service did, kept in memory per instance.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub signups_accepted: AtomicU64,
    pub signups_throttled: AtomicU64,
    pub signups_refused: AtomicU64,
    pub signups_bot: AtomicU64,
    pub signups_rate_limited: AtomicU64,
    pub signups_already_confirmed: AtomicU64,
    pub confirmations: AtomicU64,
    pub unsubscribes_one_click: AtomicU64,
    pub unsubscribes_page: AtomicU64,
    pub withdrawals: AtomicU64,
    pub erasures: AtomicU64,
}

impl Metrics {
    /// Adds one.
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
