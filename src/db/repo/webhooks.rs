//! Webhook notices, enqueued in the outbox inside the caller's transaction
//! (the one that changes the state they announce), and what leaving and
//! erasure do to the ones still waiting.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::repo::outbox::{self, OutboxKind};
use crate::db::schema::{outbox as outbox_table, subscribers, subscriptions};
use crate::db::{DbConnection, DbError};
use crate::domain::WebhookEventType;
use crate::ledger::EventMethod;
use crate::webhooks::directory::fingerprint;
use crate::webhooks::{
    ErasureNotice, ListWebhooks, StoredWebhook, SubscriptionNotice, WebhookDirectory, WebhookEvent,
};

/// The subscription a notice is about, as the caller already has it.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionRef<'a> {
    pub subscription_id: &'a str,
    pub subscriber_id: &'a str,
    pub list_id: &'a str,
}

/// Enqueues `event` once for every endpoint of the list that wants it, due
/// now, with one body for all (built here, signed per attempt at delivery).
/// Returns the number of rows added.
pub fn enqueue(
    conn: &mut DbConnection,
    hooks: &ListWebhooks,
    event: &WebhookEvent,
    now: NaiveDateTime,
) -> Result<usize, DbError> {
    let event_type = event.event_type();
    let mut added = 0;
    let mut body = None;
    for endpoint in hooks.endpoints_for(event_type) {
        let body = body.get_or_insert_with(|| event.body());
        let stored = StoredWebhook {
            list_id: hooks.list_id.clone(),
            endpoint: fingerprint(&endpoint.url),
            host: endpoint.url.host_port(),
            body: body.clone(),
        };
        outbox::enqueue_webhook(
            conn,
            event_type,
            Some(event.subscription_id()),
            stored.to_payload(),
            now,
        )?;
        added += 1;
    }
    Ok(added)
}

/// Enqueues a subscription notice (`subscription.confirmed`,
/// `subscription.unsubscribed` or `consent.withdrawn`) for the endpoints of
/// the subscription's list that want it, with the subscriber's address as
/// it is in this transaction. Runs no query when the list has no webhook.
///
/// A leaving notice also cancels the subscription's `subscription.confirmed`
/// notices not yet delivered: delivered late (after a retry), one would
/// tell a receiver to mail someone who has left.
pub fn enqueue_subscription_event(
    conn: &mut DbConnection,
    directory: &WebhookDirectory,
    event: WebhookEventType,
    subscription: SubscriptionRef<'_>,
    method: EventMethod,
    now: NaiveDateTime,
) -> Result<usize, DbError> {
    let Some(hooks) = directory.for_list(subscription.list_id) else {
        return Ok(0);
    };
    if event.is_leaving() {
        cancel_undelivered_confirmations(
            conn,
            &[Some(subscription.subscription_id.to_owned())],
            &format!("superseded by {}", event.as_str()),
        )?;
    }
    if !hooks.wants(event) {
        return Ok(0);
    }
    let email = subscribers::table
        .find(subscription.subscriber_id)
        .select(subscribers::email)
        .first::<Option<String>>(conn)?;
    let notice = SubscriptionNotice {
        subscription_id: subscription.subscription_id.to_owned(),
        subscriber_id: subscription.subscriber_id.to_owned(),
        list: hooks.slug.clone(),
        email,
        method,
        occurred_at: now,
    };
    match WebhookEvent::for_subscription(event, notice) {
        Some(event) => enqueue(conn, hooks, &event, now),
        None => Ok(0),
    }
}

/// Enqueues `subject.erased` for every list the person had a subscription
/// to (in any state: a downstream system may still hold them), carrying the
/// keyed hash of the address and never the address.
pub fn enqueue_erasure(
    conn: &mut DbConnection,
    directory: &WebhookDirectory,
    subscriber_id: &str,
    method: EventMethod,
    now: NaiveDateTime,
) -> Result<usize, DbError> {
    if directory.is_empty() {
        return Ok(0);
    }
    let email_hmac = subscribers::table
        .find(subscriber_id)
        .select(subscribers::email_hmac)
        .first::<String>(conn)?;
    let theirs: Vec<(String, String)> = subscriptions::table
        .filter(subscriptions::subscriber_id.eq(subscriber_id))
        .order(subscriptions::created_at.asc())
        .select((subscriptions::id, subscriptions::list_id))
        .load(conn)?;
    let mut added = 0;
    for (subscription_id, list_id) in theirs {
        let Some(hooks) = directory.for_list(&list_id) else {
            continue;
        };
        if !hooks.wants(WebhookEventType::SubjectErased) {
            continue;
        }
        let event = WebhookEvent::SubjectErased(ErasureNotice {
            subscriber_id: subscriber_id.to_owned(),
            subscription_id,
            list: hooks.slug.clone(),
            email_hmac: email_hmac.clone(),
            method,
            occurred_at: now,
        });
        added += enqueue(conn, hooks, &event, now)?;
    }
    Ok(added)
}

/// Cancels the `subscription.confirmed` notices of these subscriptions that
/// were not delivered (waiting or dead) and clears their payloads, which
/// hold the address. Used when a subscription ends and on erasure; notices
/// that tell a receiver to stop mailing (`subscription.unsubscribed`,
/// `consent.withdrawn`) keep the address until delivered, and
/// `subject.erased` holds none (docs/compliance.md, "Webhooks").
pub fn cancel_undelivered_confirmations(
    conn: &mut DbConnection,
    subscription_ids: &[Option<String>],
    reason: &str,
) -> Result<usize, DbError> {
    let kind = OutboxKind::Webhook(WebhookEventType::SubscriptionConfirmed).as_str();
    Ok(diesel::update(
        outbox_table::table
            .filter(outbox_table::subscription_id.eq_any(subscription_ids))
            .filter(outbox_table::kind.eq(kind))
            .filter(outbox_table::state.eq_any(["pending", "dead"])),
    )
    .set((
        outbox_table::state.eq("cancelled"),
        outbox_table::payload.eq("{}"),
        outbox_table::last_error.eq(reason),
        outbox_table::lease_owner.eq(None::<String>),
        outbox_table::lease_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?)
}
