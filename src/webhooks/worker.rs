//! The webhook worker: the outbox's second consumer. It claims only webhook
//! rows, under the same leases (`SKIP LOCKED` on PostgreSQL), posts them
//! outside any transaction, and records the outcome with the mail worker's
//! rules: retries with exponential backoff, `dead` after the configured
//! attempts, nothing dropped. It runs beside the mail worker, never inside
//! its passes, so a slow or unreachable receiver does not delay an email.
//! Its loop is `delivery::run`: one pass at a time, each posting up to
//! `webhooks.concurrency` notices at once.

use chrono::NaiveDateTime;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::clock::naive;
use crate::context::SharedContext;
use crate::db::models::OutboxRow;
use crate::db::repo::outbox::{self, OutboxKind};
use crate::db::{DbError, retry};
use crate::delivery::{self, Consumer, WorkerError, backoff};
use crate::domain::WebhookEndpoint;
use crate::metrics::Metrics;
use crate::telemetry::spawn_blocking_in_span;
use crate::webhooks::{DeliveryError, StoredWebhook};

/// A claimed row, ready to post or failed before posting.
enum Prepared {
    Post {
        row: OutboxRow,
        endpoint: WebhookEndpoint,
        host: String,
        body: String,
    },
    /// The payload is unreadable or its endpoint is no longer configured:
    /// a failed attempt, so the row ends in `dead` (visible, retryable once
    /// the configuration is back) rather than vanishing.
    Fail {
        row: OutboxRow,
        host: String,
        error: String,
    },
}

/// Runs until `shutdown` turns true, then gives back its leases.
pub async fn run(ctx: SharedContext, shutdown: watch::Receiver<bool>) {
    let consumer = Consumer {
        name: "webhooks",
        kinds: &OutboxKind::WEBHOOKS,
        wake: &ctx.webhook_wake,
    };
    delivery::run(&ctx, consumer, shutdown, || dispatch_due(&ctx)).await;
}

/// One pass: claims a batch of due webhook rows and settles each, up to
/// `webhooks.concurrency` at once. Returns how many rows it claimed.
pub async fn dispatch_due(ctx: &SharedContext) -> Result<usize, WorkerError> {
    let now = ctx.clock.now();
    let lease = chrono::Duration::seconds(ctx.settings.outbox.lease_secs as i64);
    // Four rounds of posts at most, so a pass of receivers that all time
    // out still ends well within its lease (4 × 15 s with the defaults).
    let rounds = 4 * ctx.settings.webhooks.concurrency.max(1);
    let limit = rounds.min(ctx.settings.outbox.batch_size as usize) as i64;
    let pool = ctx.pool.clone();
    let owner = ctx.instance_id.clone();
    let claimed = spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        retry(|| {
            outbox::claim_due(
                &mut conn,
                &owner,
                naive(now),
                naive(now + lease),
                limit,
                &OutboxKind::WEBHOOKS,
            )
        })
    })
    .await
    .map_err(|_| WorkerError::Blocking)??;
    let count = claimed.len();
    if count == 0 {
        return Ok(0);
    }
    let prepared: Vec<Prepared> = claimed.into_iter().map(|row| prepare(ctx, row)).collect();
    futures_util::stream::iter(prepared)
        .for_each_concurrent(ctx.settings.webhooks.concurrency, |item| async move {
            if let Err(error) = settle(ctx, item).await {
                tracing::warn!(error = %error, "recording a webhook outcome failed; the lease will expire and the row be retried");
            }
        })
        .await;
    Ok(count)
}

fn prepare(ctx: &SharedContext, row: OutboxRow) -> Prepared {
    let stored = match StoredWebhook::from_payload(&row.payload) {
        Ok(stored) => stored,
        Err(_) => {
            return Prepared::Fail {
                row,
                host: String::new(),
                error: "the webhook payload is unreadable".to_owned(),
            };
        }
    };
    let Some(endpoint) = ctx.webhooks.endpoint(&stored.list_id, &stored.endpoint) else {
        return Prepared::Fail {
            row,
            error: format!(
                "no webhook to {} is configured for this list any more",
                stored.host
            ),
            host: stored.host,
        };
    };
    Prepared::Post {
        endpoint: endpoint.clone(),
        host: stored.host,
        body: stored.body,
        row,
    }
}

async fn settle(ctx: &SharedContext, item: Prepared) -> Result<(), WorkerError> {
    match item {
        Prepared::Post {
            row,
            endpoint,
            host,
            body,
        } => {
            Metrics::incr(&ctx.metrics.webhook_attempts);
            // The attempt's time, signed: receivers reject stale ones.
            let timestamp = ctx.clock.now().timestamp();
            let result = ctx
                .webhook_client
                .post(&endpoint, &row.id, timestamp, &body)
                .await;
            let now = naive(ctx.clock.now());
            match result {
                Ok(()) => record_delivered(ctx, row, &host, now).await,
                Err(error) => {
                    Metrics::incr(match error {
                        DeliveryError::Transient { .. } => &ctx.metrics.webhook_failures_transient,
                        DeliveryError::Permanent(_) => &ctx.metrics.webhook_failures_permanent,
                    });
                    record_failure(ctx, row, &host, error, now).await
                }
            }
        }
        Prepared::Fail { row, host, error } => {
            let now = naive(ctx.clock.now());
            record_failure(ctx, row, &host, DeliveryError::Permanent(error), now).await
        }
    }
}

async fn record_delivered(
    ctx: &SharedContext,
    row: OutboxRow,
    host: &str,
    now: NaiveDateTime,
) -> Result<(), WorkerError> {
    tracing::info!(outbox_id = %row.id, kind = %row.kind, host = %host, attempts = row.attempts, "webhook delivered");
    let pool = ctx.pool.clone();
    let owner = ctx.instance_id.clone();
    let recorded = spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        // Clears the payload, which may hold an address.
        retry(|| outbox::mark_sent(&mut conn, &row.id, &owner, now))
    })
    .await
    .map_err(|_| WorkerError::Blocking)??;
    if !recorded {
        // Another worker took the row over after our lease ran out, or an
        // erasure cancelled it meanwhile; the row keeps that outcome.
        tracing::warn!(host = %host, "webhook delivered after its lease was lost or it was cancelled");
    }
    Ok(())
}

async fn record_failure(
    ctx: &SharedContext,
    row: OutboxRow,
    host: &str,
    error: DeliveryError,
    now: NaiveDateTime,
) -> Result<(), WorkerError> {
    let settings = &ctx.settings.outbox;
    let dead = row.attempts >= settings.max_attempts as i32;
    let mut delay = backoff(
        row.attempts,
        settings.backoff_base_secs,
        settings.backoff_max_secs,
    );
    // A receiver's Retry-After is honoured, up to the longest backoff.
    if let DeliveryError::Transient {
        retry_after: Some(wait),
        ..
    } = &error
    {
        let wait = chrono::Duration::seconds(wait.as_secs().min(settings.backoff_max_secs) as i64);
        delay = delay.max(wait);
    }
    let retry_at = now + delay;
    let message = error.to_string();
    if dead {
        tracing::error!(outbox_id = %row.id, kind = %row.kind, host = %host, attempts = row.attempts, class = error.class(), error = %message, "webhook moved to dead letters");
    } else {
        tracing::warn!(outbox_id = %row.id, kind = %row.kind, host = %host, attempts = row.attempts, class = error.class(), error = %message, "webhook delivery failed; will retry");
    }
    let pool = ctx.pool.clone();
    let owner = ctx.instance_id.clone();
    spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        outbox::mark_failed(&mut conn, &row.id, &owner, &message, retry_at, dead)
    })
    .await
    .map_err(|_| WorkerError::Blocking)??;
    Ok(())
}
