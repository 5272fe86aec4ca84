//! The source of time. Production reads the system clock; tests use a
//! clock they can move, so expiry and backoff are tested without sleeping.

use std::sync::Mutex;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};

/// Tells the time, in UTC, truncated to microseconds (what both databases
/// store, so hashes over stored times stay stable).
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// Truncates to microseconds.
pub fn truncate(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

/// The time as stored: a naive UTC timestamp.
pub fn naive(time: DateTime<Utc>) -> NaiveDateTime {
    time.naive_utc()
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate(Utc::now())
    }
}

/// A clock that starts at the system time and moves only when told.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            now: Mutex::new(truncate(Utc::now())),
        }
    }
}

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}
