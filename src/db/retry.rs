//! Retrying transactions that lost a race.

use super::DbError;

/// Runs a transaction again while it fails with a retryable error (a lost
/// race on a unique key, a concurrent chain append), a few times at most.
pub fn retry<T, E>(mut work: impl FnMut() -> Result<T, E>) -> Result<T, E>
where
    E: RetryableError,
{
    let mut attempt = 0;
    loop {
        match work() {
            Err(error) if error.is_retryable() && attempt < 8 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(2 * attempt));
            }
            other => return other,
        }
    }
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
