//! Per-client-IP rate limiting of sign-ups: a token bucket per address,
//! kept in memory by each instance, timed by the application clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Buckets for every address seen recently.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: DateTime<Utc>,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Refused; the client may try again after this many seconds.
    Limited {
        retry_after_secs: u64,
    },
}

/// Buckets are forgotten once this many are held and they are full again.
const PRUNE_AT: usize = 10_000;

impl RateLimiter {
    /// `per_minute` requests a minute after a burst of `burst`; a rate of 0
    /// allows everything.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        RateLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `ip` at `now`.
    pub fn check(&self, ip: IpAddr, now: DateTime<Utc>) -> Decision {
        if self.per_second <= 0.0 {
            return Decision::Allowed;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= PRUNE_AT {
            let refill = self.burst / self.per_second;
            buckets.retain(|_, b| (now - b.updated).num_milliseconds() as f64 / 1000.0 < refill);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = ((now - bucket.updated).num_milliseconds().max(0) as f64) / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Allowed
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Decision::Limited {
                retry_after_secs: wait.ceil().max(1.0) as u64,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let limiter = RateLimiter::new(10, 20);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Utc::now();
        for _ in 0..20 {
            assert_eq!(limiter.check(ip, start), Decision::Allowed);
        }
        assert_eq!(
            limiter.check(ip, start),
            Decision::Limited {
                retry_after_secs: 6
            }
        );
        // Another address has its own bucket.
        assert_eq!(
            limiter.check("192.0.2.2".parse().unwrap(), start),
            Decision::Allowed
        );
        // One token comes back every 6 seconds.
        assert_eq!(
            limiter.check(ip, start + chrono::Duration::seconds(6)),
            Decision::Allowed
        );
        assert!(matches!(
            limiter.check(ip, start + chrono::Duration::seconds(6)),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn zero_turns_it_off() {
        let limiter = RateLimiter::new(0, 0);
        for _ in 0..100 {
            assert_eq!(
                limiter.check("192.0.2.1".parse().unwrap(), Utc::now()),
                Decision::Allowed
            );
        }
    }
}
