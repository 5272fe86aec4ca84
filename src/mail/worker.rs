//! The outbox worker: claims due rows under a lease, sends outside any
//! transaction, records the outcome; retries with exponential backoff and
//! moves a row to `dead` after the configured attempts. Nothing is dropped.

use std::time::Duration;

use chrono::NaiveDateTime;
use futures_util::StreamExt;
use lettre::Message;
use tokio::sync::watch;

use crate::clock::naive;
use crate::context::SharedContext;
use crate::db::models::OutboxRow;
use crate::db::repo::confirm::{self, ConfirmationMailContext};
use crate::db::repo::outbox::{self, OutboxKind};
use crate::db::{DbError, retry, write_transaction};
use crate::domain::SubscriptionState;
use crate::mail::{SendError, message};
use crate::metrics::Metrics;
use crate::telemetry::spawn_blocking_in_span;
use crate::tokens::Purpose;

/// Why a pass of the worker failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the blocking pool is gone")]
    Blocking,
}

/// The mail kinds of outbox rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MailKind {
    Confirmation,
    Welcome,
}

/// A claimed row, ready to send or to be settled without sending.
enum Prepared {
    Send {
        row: OutboxRow,
        message: Box<Message>,
        context: ConfirmationMailContext,
    },
    /// Cannot be delivered any more (erased subscriber, subscription no
    /// longer pending): cancelled, kept for the record.
    Cancel { row: OutboxRow, reason: String },
    /// Could not be built (a template or data problem): counts as a failed
    /// attempt so it ends in `dead` if it never works.
    Fail { row: OutboxRow, error: String },
}

/// Runs until `shutdown` turns true, then gives back its leases.
pub async fn run(ctx: SharedContext, mut shutdown: watch::Receiver<bool>) {
    let poll = Duration::from_millis(ctx.settings.outbox.poll_interval_ms.max(10));
    tracing::info!(instance = %ctx.instance_id, mailer = ctx.mailer.kind(), "outbox worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        match dispatch_due(&ctx).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "outbox pass failed"),
        }
        tokio::select! {
            _ = ctx.outbox_wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => {}
        }
    }
    let pool = ctx.pool.clone();
    let owner = ctx.instance_id.clone();
    let released = spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        outbox::release_leases(&mut conn, &owner, &OutboxKind::MAIL)
    })
    .await;
    match released {
        Ok(Ok(n)) => tracing::info!(released = n, "outbox worker stopped"),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "outbox worker could not release its leases")
        }
        Err(_) => tracing::warn!("outbox worker could not release its leases"),
    }
}

/// One pass: claims a batch of due rows and settles each. Returns how many
/// rows it claimed (0 when nothing was due).
pub async fn dispatch_due(ctx: &SharedContext) -> Result<usize, WorkerError> {
    let now = ctx.clock.now();
    let lease = chrono::Duration::seconds(ctx.settings.outbox.lease_secs as i64);
    let limit = i64::from(ctx.settings.outbox.batch_size);
    let pool = ctx.pool.clone();
    let owner = ctx.instance_id.clone();
    let claimed = spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        let rows = retry(|| {
            outbox::claim_due(
                &mut conn,
                &owner,
                naive(now),
                naive(now + lease),
                limit,
                &OutboxKind::MAIL,
            )
        })?;
        let mut contexts = Vec::with_capacity(rows.len());
        for row in rows {
            let context = match &row.subscription_id {
                Some(id) => Some(confirm::mail_context(&mut conn, id)?),
                None => None,
            };
            contexts.push((row, context));
        }
        Ok::<_, DbError>(contexts)
    })
    .await
    .map_err(|_| WorkerError::Blocking)??;
    let count = claimed.len();
    if count == 0 {
        return Ok(0);
    }
    let prepared: Vec<Prepared> = claimed
        .into_iter()
        .map(|(row, context)| prepare(ctx, row, context))
        .collect();
    // One send per pooled SMTP connection: a send mostly waits on the
    // relay's replies, so throughput grows with the connections.
    let concurrency = match &ctx.mailer {
        crate::mail::Mailer::Smtp { .. } => ctx.settings.mail.smtp_pool_max_size.max(1) as usize,
        crate::mail::Mailer::File(_) => 8,
    };
    let sent: Vec<Sent> = futures_util::stream::iter(prepared)
        .map(|item| settle(ctx, item))
        .buffer_unordered(concurrency)
        .filter_map(|outcome| async move {
            match outcome {
                Ok(sent) => sent,
                Err(error) => {
                    tracing::warn!(error = %error, "recording an outbox outcome failed; the lease will expire and the row be retried");
                    None
                }
            }
        })
        .collect()
        .await;
    if let Err(error) = record_sent(ctx, sent).await {
        tracing::warn!(error = %error, "recording sent mail failed; the leases will expire and the rows be retried");
    }
    Ok(count)
}

/// A message the relay accepted, to be recorded as sent.
struct Sent {
    row: OutboxRow,
    context: ConfirmationMailContext,
    at: NaiveDateTime,
}

fn prepare(
    ctx: &SharedContext,
    row: OutboxRow,
    context: Option<ConfirmationMailContext>,
) -> Prepared {
    let kind = match OutboxKind::parse(&row.kind) {
        Some(OutboxKind::Confirmation) => MailKind::Confirmation,
        Some(OutboxKind::Welcome) => MailKind::Welcome,
        // Webhook rows are the webhook worker's; claim_due never hands
        // them here.
        Some(OutboxKind::Webhook(_)) | None => {
            let error = format!("not a mail kind: {:?}", row.kind);
            return Prepared::Fail { row, error };
        }
    };
    let Some(context) = context else {
        return Prepared::Fail {
            row,
            error: "outbox row without a subscription".to_owned(),
        };
    };
    let Some(email) = context.email.clone() else {
        return Prepared::Cancel {
            row,
            reason: "subscriber erased".to_owned(),
        };
    };
    let wanted_state = match kind {
        MailKind::Confirmation => SubscriptionState::Pending,
        MailKind::Welcome => SubscriptionState::Confirmed,
    };
    if context.state != wanted_state {
        return Prepared::Cancel {
            row,
            reason: format!("subscription is {}", context.state.as_str()),
        };
    }
    let Some(list) = ctx.lists.by_id(&context.list_id) else {
        return Prepared::Fail {
            row,
            error: "the list is no longer configured".to_owned(),
        };
    };
    let Ok(subscription_id) = uuid::Uuid::parse_str(&context.subscription_id) else {
        return Prepared::Fail {
            row,
            error: "the subscription id is not a UUID".to_owned(),
        };
    };
    let built = match kind {
        MailKind::Confirmation => {
            let token = serde_json::from_str::<serde_json::Value>(&row.payload)
                .ok()
                .and_then(|v| v.get("token").and_then(|t| t.as_str()).map(str::to_owned));
            let Some(token) = token else {
                return Prepared::Fail {
                    row,
                    error: "the confirmation payload has no token".to_owned(),
                };
            };
            let url = ctx.settings.public_url(&format!("confirm/{token}"));
            let refuse = ctx.link_keys.mint(Purpose::Refuse, subscription_id);
            let refuse_url = ctx.settings.public_url(&format!("refuse/{refuse}"));
            let ttl_days = ctx.settings.tokens.confirmation_ttl_hours.div_ceil(24);
            message::confirmation(
                &ctx.templates,
                list,
                &email,
                &url,
                &refuse_url,
                &row.message_id,
                ttl_days,
            )
        }
        MailKind::Welcome => {
            let token = ctx.link_keys.mint(Purpose::Leave, subscription_id);
            let url = ctx.settings.public_url(&format!("unsubscribe/{token}"));
            message::welcome(&ctx.templates, list, &email, &url, &row.message_id)
        }
    };
    match built {
        Ok(mut message) => {
            if let Some(dkim) = &ctx.settings.dkim {
                dkim.sign(&mut message);
            }
            Prepared::Send {
                row,
                message: Box::new(message),
                context,
            }
        }
        Err(error) => Prepared::Fail {
            row,
            error: error.to_string(),
        },
    }
}

/// The delay before attempt `attempts + 1`.
pub fn backoff(attempts: i32, base_secs: u64, max_secs: u64) -> chrono::Duration {
    let exponent = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let secs = base_secs.saturating_mul(1u64 << exponent).min(max_secs);
    chrono::Duration::seconds(secs as i64)
}

/// Sends a prepared row, or settles it without sending. A sent row is
/// returned to be recorded with the others of its pass.
async fn settle(ctx: &SharedContext, item: Prepared) -> Result<Option<Sent>, WorkerError> {
    match item {
        Prepared::Send {
            row,
            message,
            context,
        } => {
            Metrics::incr(&ctx.metrics.send_attempts);
            let result = ctx.mailer.send(*message, &row.id).await;
            match &result {
                Err(SendError::Transient(_)) => Metrics::incr(&ctx.metrics.send_failures_transient),
                Err(SendError::Permanent(_)) => Metrics::incr(&ctx.metrics.send_failures_permanent),
                Ok(()) => {}
            }
            let now = naive(ctx.clock.now());
            match result {
                Ok(()) => Ok(Some(Sent {
                    row,
                    context,
                    at: now,
                })),
                Err(error) => record_failure(ctx, row, error, now).await.map(|()| None),
            }
        }
        Prepared::Cancel { row, reason } => {
            let pool = ctx.pool.clone();
            spawn_blocking_in_span(move || {
                let mut conn = pool.get().map_err(DbError::from)?;
                outbox::cancel(&mut conn, &row.id, &reason)
            })
            .await
            .map_err(|_| WorkerError::Blocking)??;
            Ok(None)
        }
        Prepared::Fail { row, error } => {
            let now = naive(ctx.clock.now());
            record_failure(ctx, row, SendError::Permanent(error), now)
                .await
                .map(|()| None)
        }
    }
}

/// Records a pass's sent rows in one transaction (one commit for the
/// pass, not one per message); if that fails, row by row. Until then a
/// crash re-sends them after their leases expire, with the same
/// Message-IDs (at least once, see docs/operations.md).
async fn record_sent(ctx: &SharedContext, sent: Vec<Sent>) -> Result<(), WorkerError> {
    if sent.is_empty() {
        return Ok(());
    }
    let pool = ctx.pool.clone();
    let owner = ctx.instance_id.clone();
    spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        let together = write_transaction(&mut conn, |conn| {
            sent.iter().try_for_each(|s| mark_one_sent(conn, s, &owner))
        });
        if together.is_ok() {
            return Ok(());
        }
        for one in &sent {
            retry(|| write_transaction(&mut conn, |conn| mark_one_sent(conn, one, &owner)))?;
        }
        Ok::<_, DbError>(())
    })
    .await
    .map_err(|_| WorkerError::Blocking)??;
    Ok(())
}

fn mark_one_sent(
    conn: &mut crate::db::DbConnection,
    sent: &Sent,
    owner: &str,
) -> Result<(), DbError> {
    let Sent { row, context, at } = sent;
    tracing::debug!(outbox_id = %row.id, kind = %row.kind, attempts = row.attempts, "mail sent");
    if !outbox::mark_sent(conn, &row.id, owner, *at)? {
        // Another worker took the row over after our lease ran out; it
        // records its own send.
        tracing::warn!(outbox_id = %row.id, "lease lost before the send was recorded");
        return Ok(());
    }
    if let (Some(subscription_id), "confirmation") = (&row.subscription_id, row.kind.as_str()) {
        confirm::record_confirmation_sent(conn, context, subscription_id, &row.message_id, *at)?;
    }
    Ok(())
}

async fn record_failure(
    ctx: &SharedContext,
    row: OutboxRow,
    error: SendError,
    now: NaiveDateTime,
) -> Result<(), WorkerError> {
    let settings = &ctx.settings.outbox;
    let dead = row.attempts >= settings.max_attempts as i32;
    let retry_at = now
        + backoff(
            row.attempts,
            settings.backoff_base_secs,
            settings.backoff_max_secs,
        );
    let message = crate::domain::email::mask_in_text(&error.to_string());
    if dead {
        tracing::error!(outbox_id = %row.id, attempts = row.attempts, error = %message, "mail moved to dead letters");
    } else {
        tracing::warn!(outbox_id = %row.id, attempts = row.attempts, error = %message, "mail send failed; will retry");
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
