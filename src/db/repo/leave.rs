//! Leaving: unsubscribing from one list, withdrawing consent from all, and
//! erasing a person's data while the ledger keeps verifying.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;

use crate::db::models::SubscriptionRow;
use crate::db::repo::ledger::{self, NewEvent};
use crate::db::repo::outbox::OutboxKind;
use crate::db::repo::webhooks::{self, SubscriptionRef};
use crate::db::schema::{consent_events, evidence, outbox, subscribers, subscriptions};
use crate::db::{DbConnection, DbError};
use crate::domain::{SubscriptionState, WebhookEventType};
use crate::ledger::evidence::SealedEvidence;
use crate::ledger::{ChainHead, EventKind, EventMethod};
use crate::webhooks::WebhookDirectory;

/// What an unsubscribe did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsubscribeOutcome {
    /// No such subscription.
    Unknown,
    /// Unsubscribed now.
    Unsubscribed { list_id: String },
    /// Had already left; nothing recorded.
    AlreadyLeft { list_id: String },
}

/// What a withdrawal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawOutcome {
    /// Subscriptions that moved to `withdrawn` now.
    pub withdrawn: usize,
    /// Whether personal data was erased now.
    pub erased: bool,
    /// Whether the subscriber had been erased before.
    pub already_erased: bool,
}

/// A subscription and whether its subscriber was erased.
#[derive(Debug, Clone)]
pub struct SubscriptionView {
    pub subscription: SubscriptionRow,
    pub state: SubscriptionState,
    pub erased: bool,
}

/// Looks up a subscription for the unsubscribe page.
pub fn view(
    conn: &mut DbConnection,
    subscription_id: &str,
) -> Result<Option<SubscriptionView>, DbError> {
    let row = subscriptions::table
        .inner_join(subscribers::table)
        .filter(subscriptions::id.eq(subscription_id))
        .select((SubscriptionRow::as_select(), subscribers::erased_at))
        .first::<(SubscriptionRow, Option<NaiveDateTime>)>(conn)
        .optional()?;
    row.map(|(subscription, erased_at)| {
        Ok(SubscriptionView {
            state: super::stored_state(&subscription.state)?,
            subscription,
            erased: erased_at.is_some(),
        })
    })
    .transpose()
}

fn store_optional_evidence(
    conn: &mut DbConnection,
    evidence: Option<&SealedEvidence>,
    now: NaiveDateTime,
) -> Result<Option<String>, DbError> {
    match evidence {
        Some(sealed) => {
            ledger::store_evidence(conn, sealed, now)?;
            Ok(Some(sealed.sha256.clone()))
        }
        None => Ok(None),
    }
}

/// Unsubscribes one subscription. Takes effect at once: the audience no
/// longer contains it when this transaction commits.
pub fn unsubscribe(
    conn: &mut DbConnection,
    subscription_id: &str,
    method: EventMethod,
    evidence: Option<&SealedEvidence>,
    hooks: &WebhookDirectory,
    now: NaiveDateTime,
) -> Result<UnsubscribeOutcome, DbError> {
    let Some(view) = view(conn, subscription_id)? else {
        return Ok(UnsubscribeOutcome::Unknown);
    };
    let list_id = view.subscription.list_id.clone();
    if !matches!(
        view.state,
        SubscriptionState::Pending | SubscriptionState::Confirmed
    ) {
        return Ok(UnsubscribeOutcome::AlreadyLeft { list_id });
    }
    let updated = diesel::update(
        subscriptions::table
            .filter(subscriptions::id.eq(subscription_id))
            .filter(subscriptions::state.eq(view.state.as_str())),
    )
    .set((
        subscriptions::state.eq(SubscriptionState::Unsubscribed.as_str()),
        subscriptions::ended_at.eq(now),
        subscriptions::updated_at.eq(now),
    ))
    .execute(conn)?;
    if updated != 1 {
        return Ok(UnsubscribeOutcome::AlreadyLeft { list_id });
    }
    let evidence_sha256 = store_optional_evidence(conn, evidence, now)?;
    let subscriber_id = view.subscription.subscriber_id.as_str();
    let head = ledger::head(conn, subscriber_id)?;
    ledger::append(
        conn,
        subscriber_id,
        &head,
        &[NewEvent {
            kind: EventKind::Unsubscribed,
            occurred_at: now,
            subscription_id: Some(subscription_id),
            list_id: Some(&list_id),
            consent_version_id: Some(&view.subscription.consent_version_id),
            consent_sha256: None,
            method: Some(method),
            evidence_sha256: evidence_sha256.as_deref(),
            details: json!({
                "previous_state": view.state.as_str(),
                "effective_at": crate::ledger::chain::format_time(now),
            }),
        }],
    )?;
    webhooks::enqueue_subscription_event(
        conn,
        hooks,
        WebhookEventType::SubscriptionUnsubscribed,
        SubscriptionRef {
            subscription_id,
            subscriber_id,
            list_id: &list_id,
        },
        method,
        now,
    )?;
    Ok(UnsubscribeOutcome::Unsubscribed { list_id })
}

/// Withdraws consent on every list of the subscriber, and with `erase`
/// removes their personal data. The lists' webhooks get `consent.withdrawn`
/// (with the address, enqueued before it is erased) and `subject.erased`
/// (without it).
pub fn withdraw(
    conn: &mut DbConnection,
    subscriber_id: &str,
    method: EventMethod,
    evidence: Option<&SealedEvidence>,
    erase: bool,
    hooks: &WebhookDirectory,
    now: NaiveDateTime,
) -> Result<WithdrawOutcome, DbError> {
    let erased_at = subscribers::table
        .find(subscriber_id)
        .select(subscribers::erased_at)
        .first::<Option<NaiveDateTime>>(conn)?;
    let already_erased = erased_at.is_some();
    let active: Vec<SubscriptionRow> = subscriptions::table
        .filter(subscriptions::subscriber_id.eq(subscriber_id))
        .filter(subscriptions::state.ne(SubscriptionState::Withdrawn.as_str()))
        .order(subscriptions::created_at.asc())
        .select(SubscriptionRow::as_select())
        .load(conn)?;
    // After erasure no new personal evidence is stored, and evidence is
    // stored only when an event will point to it.
    let evidence = if erase || already_erased || active.is_empty() {
        None
    } else {
        evidence
    };
    let evidence_sha256 = store_optional_evidence(conn, evidence, now)?;
    let effective = crate::ledger::chain::format_time(now);
    let mut events = Vec::with_capacity(active.len() + 1);
    for subscription in &active {
        events.push(NewEvent {
            kind: EventKind::ConsentWithdrawn,
            occurred_at: now,
            subscription_id: Some(&subscription.id),
            list_id: Some(&subscription.list_id),
            consent_version_id: Some(&subscription.consent_version_id),
            consent_sha256: None,
            method: Some(method),
            evidence_sha256: evidence_sha256.as_deref(),
            details: json!({ "previous_state": subscription.state, "effective_at": effective }),
        });
    }
    let erasing = erase && !already_erased;
    if erasing {
        events.push(NewEvent {
            kind: EventKind::Erased,
            occurred_at: now,
            subscription_id: None,
            list_id: None,
            consent_version_id: None,
            consent_sha256: None,
            method: Some(method),
            evidence_sha256: None,
            details: json!({ "effective_at": effective }),
        });
    }
    if !active.is_empty() {
        diesel::update(
            subscriptions::table
                .filter(subscriptions::subscriber_id.eq(subscriber_id))
                .filter(subscriptions::state.ne(SubscriptionState::Withdrawn.as_str())),
        )
        .set((
            subscriptions::state.eq(SubscriptionState::Withdrawn.as_str()),
            subscriptions::ended_at.eq(now),
            subscriptions::updated_at.eq(now),
        ))
        .execute(conn)?;
    }
    if !events.is_empty() {
        let head: ChainHead = ledger::head(conn, subscriber_id)?;
        ledger::append(conn, subscriber_id, &head, &events)?;
    }
    for subscription in &active {
        webhooks::enqueue_subscription_event(
            conn,
            hooks,
            WebhookEventType::ConsentWithdrawn,
            SubscriptionRef {
                subscription_id: &subscription.id,
                subscriber_id,
                list_id: &subscription.list_id,
            },
            method,
            now,
        )?;
    }
    if erasing {
        webhooks::enqueue_erasure(conn, hooks, subscriber_id, method, now)?;
        erase_personal_data(conn, subscriber_id, now)?;
    }
    Ok(WithdrawOutcome {
        withdrawn: active.len(),
        erased: erasing,
        already_erased,
    })
}

/// Removes the address, name and every piece of evidence of a subscriber;
/// keeps the keyed hash and the ledger (which holds no personal data).
fn erase_personal_data(
    conn: &mut DbConnection,
    subscriber_id: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::update(subscribers::table.find(subscriber_id))
        .set((
            subscribers::email.eq(None::<String>),
            subscribers::email_key.eq(None::<String>),
            subscribers::name.eq(None::<String>),
            subscribers::erased_at.eq(now),
        ))
        .execute(conn)?;
    let evidence_hashes = consent_events::table
        .filter(consent_events::subscriber_id.eq(subscriber_id))
        .filter(consent_events::evidence_sha256.is_not_null())
        .select(consent_events::evidence_sha256.assume_not_null());
    diesel::delete(evidence::table.filter(evidence::sha256.eq_any(evidence_hashes)))
        .execute(conn)?;
    let their_subscriptions: Vec<Option<String>> = subscriptions::table
        .filter(subscriptions::subscriber_id.eq(subscriber_id))
        .select(subscriptions::id)
        .load::<String>(conn)?
        .into_iter()
        .map(Some)
        .collect();
    // Mail rows may hold a token, and an SMTP error text may quote the
    // address: both go.
    let mail_kinds = OutboxKind::MAIL.map(OutboxKind::as_str);
    diesel::update(
        outbox::table
            .filter(outbox::subscription_id.eq_any(&their_subscriptions))
            .filter(outbox::kind.eq_any(mail_kinds))
            .filter(outbox::state.eq("pending")),
    )
    .set(outbox::state.eq("cancelled"))
    .execute(conn)?;
    diesel::update(
        outbox::table
            .filter(outbox::subscription_id.eq_any(&their_subscriptions))
            .filter(outbox::kind.eq_any(mail_kinds)),
    )
    .set((
        outbox::payload.eq("{}"),
        outbox::last_error.eq(None::<String>),
    ))
    .execute(conn)?;
    // Webhook notices that tell receivers to stop mailing the person keep
    // the address until delivered; confirmations go.
    webhooks::cancel_undelivered_confirmations(conn, &their_subscriptions, "subscriber erased")?;
    Ok(())
}
