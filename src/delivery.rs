//! What the outbox's two consumers, the mail worker and the webhook worker,
//! share: waiting for work (woken when a row is enqueued, else by a poll
//! timer), the retry schedule, and giving back leases on the way out; and
//! the loop of a worker that runs in passes (the webhook worker's; the
//! mail worker runs a pipeline of its own, `mail::worker::run`).

use std::future::Future;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::context::SharedContext;
use crate::db::DbError;
use crate::db::repo::outbox::{self, OutboxKind};
use crate::telemetry::spawn_blocking_in_span;

/// Why a pass of a worker failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the blocking pool is gone")]
    Blocking,
}

/// A consumer of the outbox that works in passes, for [`run`].
pub struct Consumer<'a> {
    /// For logs.
    pub name: &'static str,
    /// The row kinds it claims (its leases are given back on the way out).
    pub kinds: &'a [OutboxKind],
    /// Notified when a row for it is enqueued.
    pub wake: &'a Notify,
}

/// Runs `pass` until `shutdown` turns true, finishing the pass it is in: at
/// once again after a pass that claimed rows, else when woken or after the
/// poll interval. Then gives back the consumer's leases.
pub async fn run<P, F>(
    ctx: &SharedContext,
    consumer: Consumer<'_>,
    mut shutdown: watch::Receiver<bool>,
    pass: P,
) where
    P: Fn() -> F,
    F: Future<Output = Result<usize, WorkerError>>,
{
    tracing::info!(instance = %ctx.instance_id, worker = consumer.name, "outbox worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        match pass().await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(worker = consumer.name, error = %error, "outbox pass failed")
            }
        }
        idle(ctx, consumer.wake, &mut shutdown).await;
    }
    release_leases(ctx, consumer.name, consumer.kinds).await;
}

/// Waits until a row is enqueued (`wake`), the poll interval passed, or
/// shutdown began.
pub async fn idle(ctx: &SharedContext, wake: &Notify, shutdown: &mut watch::Receiver<bool>) {
    let poll = Duration::from_millis(ctx.settings.outbox.poll_interval_ms.max(10));
    tokio::select! {
        _ = wake.notified() => {}
        _ = tokio::time::sleep(poll) => {}
        _ = shutdown.changed() => {}
    }
}

/// Gives back every lease this instance still holds on rows of `kinds`, so
/// other instances need not wait for them to expire.
pub async fn release_leases(ctx: &SharedContext, name: &'static str, kinds: &[OutboxKind]) {
    let pool = ctx.pool.clone();
    let owner = ctx.instance_id.clone();
    let kinds = kinds.to_vec();
    let released = spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        outbox::release_leases(&mut conn, &owner, &kinds)
    })
    .await;
    match released {
        Ok(Ok(n)) => tracing::info!(worker = name, released = n, "outbox worker stopped"),
        Ok(Err(error)) => {
            tracing::warn!(worker = name, error = %error, "outbox worker could not release its leases")
        }
        Err(_) => tracing::warn!(worker = name, "outbox worker could not release its leases"),
    }
}

/// The delay before attempt `attempts + 1`.
pub fn backoff(attempts: i32, base_secs: u64, max_secs: u64) -> chrono::Duration {
    let exponent = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let secs = base_secs.saturating_mul(1u64 << exponent).min(max_secs);
    chrono::Duration::seconds(secs as i64)
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1, 30, 3600).num_seconds(), 30);
        assert_eq!(backoff(2, 30, 3600).num_seconds(), 60);
        assert_eq!(backoff(4, 30, 3600).num_seconds(), 240);
        assert_eq!(backoff(20, 30, 3600).num_seconds(), 3600);
        assert_eq!(backoff(i32::MAX, 30, 3600).num_seconds(), 3600);
    }
}
