//! Retrying transactions that lost a race.

use std::time::Duration;

use rand::Rng;

use super::DbError;

/// How many times a transaction is tried at most.
const MAX_ATTEMPTS: u32 = 16;

/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_millis(64);

/// Runs a transaction again while it fails with a retryable error (a lost
/// race on a unique key, a concurrent chain append), up to
/// [`MAX_ATTEMPTS`] times. The pause before each retry doubles (1 ms, 2 ms,
/// … up to [`MAX_PAUSE`]) and is drawn at random from its upper half, so
/// that writers that collided once do not collide again in lockstep: many
/// concurrent sign-ups of one address (30 at once, spread over three
/// instances, in `tests/faults/instances.rs`) all get through, each waiting
/// well under a second in the worst case.
pub fn retry<T, E>(mut work: impl FnMut() -> Result<T, E>) -> Result<T, E>
where
    E: RetryableError,
{
    let mut attempt = 1;
    loop {
        match work() {
            Err(error) if error.is_retryable() && attempt < MAX_ATTEMPTS => {
                std::thread::sleep(pause(attempt));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The pause after failed attempt `attempt` (from 1).
fn pause(attempt: u32) -> Duration {
    let ceiling = Duration::from_millis(1 << attempt.min(16)).min(MAX_PAUSE);
    let floor = ceiling / 2;
    rand::rng().random_range(floor..=ceiling)
}

/// Errors that say whether the transaction may be tried again.
pub trait RetryableError {
    /// Whether a retry may succeed.
    fn is_retryable(&self) -> bool;
}

impl RetryableError for DbError {
    fn is_retryable(&self) -> bool {
        DbError::is_retryable(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_stay_bounded() {
        for attempt in 1..=MAX_ATTEMPTS {
            let pause = pause(attempt);
            assert!(pause <= MAX_PAUSE, "{attempt}: {pause:?}");
            assert!(pause >= Duration::from_millis(1), "{attempt}: {pause:?}");
        }
        let total: Duration = (1..MAX_ATTEMPTS)
            .map(|a| Duration::from_millis(1 << a).min(MAX_PAUSE))
            .sum();
        assert!(total < Duration::from_secs(1), "{total:?}");
    }

    #[test]
    fn gives_up_after_the_last_attempt() {
        struct Busy;
        impl RetryableError for Busy {
            fn is_retryable(&self) -> bool {
                true
            }
        }
        let mut calls = 0;
        let result: Result<(), Busy> = retry(|| {
            calls += 1;
            Err(Busy)
        });
        assert!(result.is_err());
        assert_eq!(calls, MAX_ATTEMPTS);
    }
}
