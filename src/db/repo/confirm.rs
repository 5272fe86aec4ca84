//! Looking up confirmation tokens and confirming subscriptions.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;

use crate::db::models::{ConfirmationTokenRow, ConsentEventRow, SubscriptionRow};
use crate::db::repo::ledger::{self, NewEvent};
use crate::db::repo::webhooks::{self, SubscriptionRef};
use crate::db::schema::{confirmation_tokens, consent_events, subscriptions};
use crate::db::{DbConnection, DbError};
use crate::domain::{SubscriptionState, TokenDigest, WebhookEventType};
use crate::ledger::evidence::SealedEvidence;
use crate::ledger::{EventKind, EventMethod};
use crate::webhooks::WebhookDirectory;

/// What a confirmation link points at.
#[derive(Debug, Clone)]
pub struct TokenView {
    pub subscription_id: String,
    pub list_id: String,
    pub state: SubscriptionState,
    /// The consent version of the sign-up this token confirms.
    pub consent_version_id: String,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

/// The state of a link at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Not a token we issued.
    Unknown,
    /// Past its lifetime and never used.
    Expired,
    /// The subscription left since this link was sent: a new sign-up is needed.
    Superseded,
    /// Ready: the page may offer the button.
    Valid,
    /// Already confirmed (by this link or another).
    AlreadyConfirmed,
}

/// What a POST did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// The link was not usable; nothing changed.
    Refused(LinkState),
    /// Confirmed now.
    Confirmed {
        subscription_id: String,
        list_id: String,
    },
    /// Was already confirmed; nothing recorded.
    AlreadyConfirmed { list_id: String },
}

fn load(
    conn: &mut DbConnection,
    digest: &TokenDigest,
) -> Result<Option<(ConfirmationTokenRow, SubscriptionRow, ConsentEventRow)>, DbError> {
    let token = confirmation_tokens::table
        .find(digest.as_str())
        .select(ConfirmationTokenRow::as_select())
        .first(conn)
        .optional()?;
    let Some(token) = token else {
        return Ok(None);
    };
    let subscription = subscriptions::table
        .find(&token.subscription_id)
        .select(SubscriptionRow::as_select())
        .first(conn)?;
    let request = consent_events::table
        .find(&token.request_event_id)
        .select(ConsentEventRow::as_select())
        .first(conn)?;
    Ok(Some((token, subscription, request)))
}

fn classify(
    token: &ConfirmationTokenRow,
    subscription: &SubscriptionRow,
    now: NaiveDateTime,
) -> Result<LinkState, DbError> {
    let state = super::stored_state(&subscription.state)?;
    Ok(match state {
        SubscriptionState::Confirmed => LinkState::AlreadyConfirmed,
        SubscriptionState::Unsubscribed | SubscriptionState::Withdrawn => LinkState::Superseded,
        SubscriptionState::Pending if token.used_at.is_some() => LinkState::Superseded,
        SubscriptionState::Pending if token.expires_at <= now => LinkState::Expired,
        SubscriptionState::Pending => LinkState::Valid,
    })
}

/// Reads a link without changing anything.
pub fn inspect(
    conn: &mut DbConnection,
    digest: &TokenDigest,
    now: NaiveDateTime,
) -> Result<(LinkState, Option<TokenView>), DbError> {
    let Some((token, subscription, request)) = load(conn, digest)? else {
        return Ok((LinkState::Unknown, None));
    };
    let link = classify(&token, &subscription, now)?;
    let view = TokenView {
        subscription_id: subscription.id.clone(),
        list_id: subscription.list_id.clone(),
        state: super::stored_state(&subscription.state)?,
        consent_version_id: request
            .consent_version_id
            .unwrap_or(subscription.consent_version_id),
        expires_at: token.expires_at,
        used_at: token.used_at,
    };
    Ok((link, Some(view)))
}

/// Confirms the subscription a link points at, recording the click's
/// evidence. Runs inside the caller's write transaction.
///
/// `welcome_for` names, for a list id, the Message-ID domain of its welcome
/// email, or `None` when the list sends none; the welcome email, and the
/// `subscription.confirmed` webhooks of the list, are enqueued in the same
/// transaction.
pub fn confirm(
    conn: &mut DbConnection,
    digest: &TokenDigest,
    evidence: &SealedEvidence,
    welcome_for: &dyn Fn(&str) -> Option<String>,
    webhooks: &WebhookDirectory,
    now: NaiveDateTime,
) -> Result<ConfirmOutcome, DbError> {
    let Some((token, subscription, request)) = load(conn, digest)? else {
        return Ok(ConfirmOutcome::Refused(LinkState::Unknown));
    };
    match classify(&token, &subscription, now)? {
        LinkState::Valid => {}
        LinkState::AlreadyConfirmed => {
            return Ok(ConfirmOutcome::AlreadyConfirmed {
                list_id: subscription.list_id,
            });
        }
        other => return Ok(ConfirmOutcome::Refused(other)),
    }
    let updated = diesel::update(
        subscriptions::table
            .filter(subscriptions::id.eq(&subscription.id))
            .filter(subscriptions::state.eq(SubscriptionState::Pending.as_str())),
    )
    .set((
        subscriptions::state.eq(SubscriptionState::Confirmed.as_str()),
        // The version this link's sign-up agreed to: an older link may
        // confirm an older request.
        subscriptions::consent_version_id.eq(request
            .consent_version_id
            .clone()
            .unwrap_or_else(|| subscription.consent_version_id.clone())),
        subscriptions::confirmed_at.eq(now),
        subscriptions::updated_at.eq(now),
    ))
    .execute(conn)?;
    if updated != 1 {
        // Confirmed by a concurrent click between our read and write.
        return Ok(ConfirmOutcome::AlreadyConfirmed {
            list_id: subscription.list_id,
        });
    }
    diesel::update(confirmation_tokens::table.find(&token.token_sha256))
        .set(confirmation_tokens::used_at.eq(now))
        .execute(conn)?;
    ledger::store_evidence(conn, evidence, now)?;
    let head = ledger::head(conn, &subscription.subscriber_id)?;
    ledger::append(
        conn,
        &subscription.subscriber_id,
        &head,
        &[NewEvent {
            kind: EventKind::ConsentConfirmed,
            occurred_at: now,
            subscription_id: Some(&subscription.id),
            list_id: Some(&subscription.list_id),
            consent_version_id: request.consent_version_id.as_deref(),
            consent_sha256: request.consent_sha256.as_deref(),
            method: Some(EventMethod::ConfirmationPage),
            evidence_sha256: Some(&evidence.sha256),
            details: json!({ "request_event_id": request.id }),
        }],
    )?;
    webhooks::enqueue_subscription_event(
        conn,
        webhooks,
        WebhookEventType::SubscriptionConfirmed,
        SubscriptionRef {
            subscription_id: &subscription.id,
            subscriber_id: &subscription.subscriber_id,
            list_id: &subscription.list_id,
        },
        EventMethod::ConfirmationPage,
        now,
    )?;
    if let Some(domain) = welcome_for(&subscription.list_id) {
        crate::db::repo::outbox::enqueue(
            conn,
            crate::db::repo::outbox::OutboxKind::Welcome,
            Some(&subscription.id),
            &json!({}),
            &domain,
            now,
        )?;
    }
    Ok(ConfirmOutcome::Confirmed {
        subscription_id: subscription.id,
        list_id: subscription.list_id,
    })
}

/// What the mail worker needs to build a confirmation email.
#[derive(Debug, Clone)]
pub struct ConfirmationMailContext {
    pub subscriber_id: String,
    pub subscription_id: String,
    pub email: Option<String>,
    pub list_id: String,
    pub state: SubscriptionState,
}

/// Loads the recipients of some subscriptions' mail, by subscription id, in
/// one look-up.
pub fn mail_contexts(
    conn: &mut DbConnection,
    subscription_ids: &[&str],
) -> Result<std::collections::HashMap<String, ConfirmationMailContext>, DbError> {
    use crate::db::schema::subscribers;
    if subscription_ids.is_empty() {
        return Ok(Default::default());
    }
    let rows = crate::db::with_index_lookups(conn, |conn| {
        subscriptions::table
            .inner_join(subscribers::table)
            .filter(subscriptions::id.eq_any(subscription_ids))
            .select((
                subscriptions::id,
                subscribers::id,
                subscribers::email,
                subscriptions::list_id,
                subscriptions::state,
            ))
            .load::<(String, String, Option<String>, String, String)>(conn)
    })?;
    rows.into_iter()
        .map(|(subscription_id, subscriber_id, email, list_id, state)| {
            let state = super::stored_state(&state)?;
            Ok((
                subscription_id.clone(),
                ConfirmationMailContext {
                    subscriber_id,
                    subscription_id,
                    email,
                    list_id,
                    state,
                },
            ))
        })
        .collect()
}

/// A confirmation email the relay accepted: its subscription, Message-ID
/// and when.
pub struct ConfirmationSent<'a> {
    pub context: &'a ConfirmationMailContext,
    pub message_id: &'a str,
    pub at: NaiveDateTime,
}

/// Records that confirmation emails left, each in its subscriber's chain,
/// in one go (see `ledger::append_many`).
pub fn record_confirmations_sent(
    conn: &mut DbConnection,
    sent: &[ConfirmationSent<'_>],
) -> Result<(), DbError> {
    let events: Vec<(&str, NewEvent<'_>)> = sent
        .iter()
        .map(|sent| {
            (
                sent.context.subscriber_id.as_str(),
                NewEvent {
                    kind: EventKind::ConfirmationSent,
                    occurred_at: sent.at,
                    subscription_id: Some(&sent.context.subscription_id),
                    list_id: Some(&sent.context.list_id),
                    consent_version_id: None,
                    consent_sha256: None,
                    method: Some(EventMethod::Mail),
                    evidence_sha256: None,
                    details: json!({ "message_id": sent.message_id }),
                },
            )
        })
        .collect();
    ledger::append_many(conn, &events)
}
