//! Recording a sign-up: subscriber, subscription, consent event with its
//! evidence, confirmation token and outbox row, in the caller's transaction.

use std::collections::HashMap;

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use serde_json::json;

use crate::db::models::{ConfirmationTokenRow, OutboxRow, SubscriberRow, SubscriptionRow};
use crate::db::repo::ledger::{self, NewEvent};
use crate::db::repo::lists::{self, ConsentRef, ConsentVersion};
use crate::db::repo::outbox::{self, OutboxKind};
use crate::db::schema::{confirmation_tokens, subscribers, subscriptions};
use crate::db::{DbConnection, DbError, with_index_lookups};
use crate::domain::state::SignupTransition;
use crate::domain::{ConfirmationToken, EmailAddress, PersonName, SubscriptionState};
use crate::ledger::evidence::SealedEvidence;
use crate::ledger::{ChainHead, EventKind, EventMethod};

mod batch;

pub use batch::{PendingSignup, record_batch};

/// How the consent text of a sign-up was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentSource {
    /// The form sent the version id.
    VersionId,
    /// The form sent the verbatim text.
    Text,
    /// The form sent both, and they agree.
    VersionIdAndText,
    /// The form sent neither: the list's current version was recorded.
    ListCurrent,
}

impl ConsentSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentSource::VersionId => "version_id",
            ConsentSource::Text => "text",
            ConsentSource::VersionIdAndText => "version_id_and_text",
            ConsentSource::ListCurrent => "list_current",
        }
    }
}

/// A validated sign-up.
#[derive(Debug, Clone)]
pub struct SignupInput {
    pub list_id: String,
    pub double_opt_in: bool,
    /// Whether the list sends a welcome email once confirmed.
    pub welcome: bool,
    pub email: EmailAddress,
    /// Keyed hash of the address's identity.
    pub email_hmac: String,
    pub name: Option<PersonName>,
    pub consent: ConsentRef,
    pub consent_source: ConsentSource,
    pub method: EventMethod,
    pub evidence: SealedEvidence,
    pub token: ConfirmationToken,
    pub token_ttl: Duration,
    /// Domain of the deterministic Message-IDs.
    pub message_domain: String,
    /// How many confirmation emails one address may receive.
    pub budget: ConfirmationBudget,
    /// Where a single opt-in confirmation is announced.
    pub webhooks: std::sync::Arc<crate::webhooks::WebhookDirectory>,
}

/// The per-address limit on confirmation emails, across lists and
/// instances (it is read from the outbox, in the database).
#[derive(Debug, Clone, Copy)]
pub struct ConfirmationBudget {
    /// At most one confirmation email within this time.
    pub interval: Duration,
    /// At most this many in 24 hours.
    pub per_day: u32,
}

/// Whether a confirmation email may go to an address now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Send,
    /// Over the budget.
    Throttled,
    /// The person said "I did not ask for this".
    Refused,
}

/// What decides whether confirmation emails may go to some addresses: their
/// refusals and the confirmation emails queued for them lately, read once
/// for a whole batch of sign-ups.
#[derive(Debug, Default)]
struct GateData {
    /// Until when each address refused confirmation emails (the latest).
    refused_until: HashMap<String, NaiveDateTime>,
    /// When confirmation emails to each address were queued.
    queued: HashMap<String, Vec<NaiveDateTime>>,
}

impl GateData {
    /// Reads what `gate` needs for every sign-up at or after `oldest`, by
    /// index (see `with_index_lookups`).
    fn load(
        conn: &mut DbConnection,
        email_hmacs: &[&str],
        oldest: NaiveDateTime,
    ) -> Result<Self, DbError> {
        with_index_lookups(conn, |conn| Self::load_by_index(conn, email_hmacs, oldest))
    }

    fn load_by_index(
        conn: &mut DbConnection,
        email_hmacs: &[&str],
        oldest: NaiveDateTime,
    ) -> Result<Self, DbError> {
        use crate::db::schema::{outbox, refusals};
        let mut data = GateData::default();
        let refusals: Vec<(String, NaiveDateTime)> = refusals::table
            .filter(refusals::email_hmac.eq_any(email_hmacs))
            .filter(refusals::until.gt(oldest))
            .select((refusals::email_hmac, refusals::until))
            .load(conn)?;
        for (hmac, until) in refusals {
            let latest = data.refused_until.entry(hmac).or_insert(until);
            *latest = (*latest).max(until);
        }
        // Index look-ups one table at a time rather than one join: with a
        // join, a planner without fresh statistics scans the whole outbox
        // for every sign-up.
        let people: HashMap<String, String> = subscribers::table
            .filter(subscribers::email_hmac.eq_any(email_hmacs))
            .select((subscribers::id, subscribers::email_hmac))
            .load::<(String, String)>(conn)?
            .into_iter()
            .collect();
        if people.is_empty() {
            return Ok(data);
        }
        let ids: Vec<&str> = people.keys().map(String::as_str).collect();
        let same_address: HashMap<String, String> = subscriptions::table
            .filter(subscriptions::subscriber_id.eq_any(&ids))
            .select((subscriptions::id, subscriptions::subscriber_id))
            .load::<(String, String)>(conn)?
            .into_iter()
            .collect();
        if same_address.is_empty() {
            return Ok(data);
        }
        let subscription_ids: Vec<Option<&str>> =
            same_address.keys().map(|id| Some(id.as_str())).collect();
        let recent: Vec<(Option<String>, NaiveDateTime)> = outbox::table
            .filter(outbox::subscription_id.eq_any(&subscription_ids))
            .filter(outbox::kind.eq(OutboxKind::Confirmation.as_str()))
            .filter(outbox::created_at.gt(oldest - Duration::hours(24)))
            .select((outbox::subscription_id, outbox::created_at))
            .load(conn)?;
        for (subscription_id, created_at) in recent {
            let hmac = subscription_id
                .and_then(|id| same_address.get(&id))
                .and_then(|person| people.get(person));
            if let Some(hmac) = hmac {
                data.queued
                    .entry(hmac.clone())
                    .or_default()
                    .push(created_at);
            }
        }
        Ok(data)
    }

    /// Whether a confirmation email may go to the address now.
    fn gate(&self, email_hmac: &str, budget: &ConfirmationBudget, now: NaiveDateTime) -> Gate {
        if self
            .refused_until
            .get(email_hmac)
            .is_some_and(|until| *until > now)
        {
            return Gate::Refused;
        }
        let day_ago = now - Duration::hours(24);
        let recent: Vec<&NaiveDateTime> = self
            .queued
            .get(email_hmac)
            .map(|times| times.iter().filter(|t| **t > day_ago).collect())
            .unwrap_or_default();
        let too_soon = recent.iter().any(|sent| **sent > now - budget.interval);
        if too_soon || recent.len() >= budget.per_day as usize {
            Gate::Throttled
        } else {
            Gate::Send
        }
    }
}

/// What the sign-up did. The HTTP answer is the same for every outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignupOutcome {
    /// A confirmation email is queued.
    ConfirmationQueued { outbox_id: String },
    /// Already confirmed: nothing changed, nothing sent.
    AlreadyConfirmed,
    /// The list has no double opt-in: confirmed at once.
    ConfirmedWithoutOptIn,
    /// Recorded, but the address is over its confirmation budget: no email.
    Throttled,
    /// Recorded, but the address refused confirmation emails: no email.
    Refused,
}

/// Why a sign-up was refused after looking at the database.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("the consent version is not registered for this list")]
    ConsentVersionUnknown,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl crate::db::RetryableError for SignupError {
    fn is_retryable(&self) -> bool {
        matches!(self, SignupError::Db(error) if error.is_retryable())
    }
}

impl From<diesel::result::Error> for SignupError {
    fn from(error: diesel::result::Error) -> Self {
        SignupError::Db(DbError::Query(error))
    }
}

/// Records one sign-up. Runs inside the caller's write transaction.
pub fn record(
    conn: &mut DbConnection,
    input: &SignupInput,
    now: NaiveDateTime,
) -> Result<SignupOutcome, SignupError> {
    let version = lists::find_version(conn, &input.list_id, &input.consent)?
        .ok_or(SignupError::ConsentVersionUnknown)?;
    let subscriber = find_or_create_subscriber(conn, input, now)?;
    let existing = subscriptions::table
        .filter(subscriptions::subscriber_id.eq(&subscriber.id))
        .filter(subscriptions::list_id.eq(&input.list_id))
        .select(SubscriptionRow::as_select())
        .first(conn)
        .optional()?;
    let subscription_id = match existing {
        None => {
            let id = super::new_id();
            diesel::insert_into(subscriptions::table)
                .values(pending_subscription(
                    id.clone(),
                    subscriber.id.clone(),
                    input,
                    &version,
                    now,
                ))
                .execute(conn)?;
            id
        }
        Some(row) => {
            let state = super::stored_state(&row.state)?;
            match state.on_signup() {
                SignupTransition::AlreadyConfirmed => return Ok(SignupOutcome::AlreadyConfirmed),
                SignupTransition::Reissue | SignupTransition::Restart => {
                    diesel::update(subscriptions::table.find(&row.id))
                        .set((
                            subscriptions::state.eq(SubscriptionState::Pending.as_str()),
                            subscriptions::consent_version_id.eq(&version.id),
                            subscriptions::updated_at.eq(now),
                            subscriptions::confirmed_at.eq(None::<NaiveDateTime>),
                            subscriptions::ended_at.eq(None::<NaiveDateTime>),
                        ))
                        .execute(conn)?;
                    row.id
                }
            }
        }
    };
    if let Some(name) = &input.name {
        diesel::update(subscribers::table.find(&subscriber.id))
            .set(subscribers::name.eq(name.as_str()))
            .execute(conn)?;
    }
    ledger::store_evidence(conn, &input.evidence, now)?;
    let head = ChainHead {
        seq: subscriber.chain_seq,
        hash: subscriber.chain_head.clone(),
    };
    if input.double_opt_in {
        let gate = GateData::load(conn, &[&input.email_hmac], now)?.gate(
            &input.email_hmac,
            &input.budget,
            now,
        );
        let event = gated_request_event(input, &version, &subscription_id, now, gate);
        let (_, event_ids) = ledger::append(conn, &subscriber.id, &head, &[event])?;
        let Some(request_event_id) = event_ids.into_iter().next() else {
            return Err(DbError::Query(diesel::result::Error::NotFound).into());
        };
        match gate {
            Gate::Throttled => Ok(SignupOutcome::Throttled),
            Gate::Refused => Ok(SignupOutcome::Refused),
            Gate::Send => {
                let (token, outbox_row) =
                    confirmation_rows(input, &subscription_id, request_event_id, now);
                diesel::insert_into(confirmation_tokens::table)
                    .values(&token)
                    .execute(conn)?;
                diesel::insert_into(crate::db::schema::outbox::table)
                    .values(&outbox_row)
                    .execute(conn)?;
                Ok(SignupOutcome::ConfirmationQueued {
                    outbox_id: outbox_row.id,
                })
            }
        }
    } else {
        let confirmed = NewEvent {
            kind: EventKind::ConsentConfirmed,
            method: Some(EventMethod::SingleOptIn),
            ..requested_event(input, &version, &subscription_id, now)
        };
        ledger::append(
            conn,
            &subscriber.id,
            &head,
            &[
                requested_event(input, &version, &subscription_id, now),
                confirmed,
            ],
        )?;
        diesel::update(subscriptions::table.find(&subscription_id))
            .set((
                subscriptions::state.eq(SubscriptionState::Confirmed.as_str()),
                subscriptions::confirmed_at.eq(now),
            ))
            .execute(conn)?;
        crate::db::repo::webhooks::enqueue_subscription_event(
            conn,
            &input.webhooks,
            crate::domain::WebhookEventType::SubscriptionConfirmed,
            crate::db::repo::webhooks::SubscriptionRef {
                subscription_id: &subscription_id,
                subscriber_id: &subscriber.id,
                list_id: &input.list_id,
            },
            EventMethod::SingleOptIn,
            now,
        )?;
        if input.welcome {
            // The welcome email carries the unsubscribe link.
            outbox::enqueue(
                conn,
                OutboxKind::Welcome,
                Some(&subscription_id),
                &json!({}),
                &input.message_domain,
                now,
            )?;
        }
        Ok(SignupOutcome::ConfirmedWithoutOptIn)
    }
}

/// The `consent_requested` event of a double-opt-in sign-up, marked when
/// no confirmation email goes out (and then without a token expiry).
fn gated_request_event<'a>(
    input: &'a SignupInput,
    version: &'a ConsentVersion,
    subscription_id: &'a str,
    now: NaiveDateTime,
    gate: Gate,
) -> NewEvent<'a> {
    let mut event = requested_event(input, version, subscription_id, now);
    let flag = match gate {
        Gate::Send => return event,
        Gate::Throttled => "throttled",
        Gate::Refused => "refused",
    };
    event.details[flag] = json!(true);
    if let Some(details) = event.details.as_object_mut() {
        details.remove("token_expires_at");
    }
    event
}

/// The confirmation token (by digest) and the outbox row of the email
/// that carries it.
fn confirmation_rows(
    input: &SignupInput,
    subscription_id: &str,
    request_event_id: String,
    now: NaiveDateTime,
) -> (ConfirmationTokenRow, OutboxRow) {
    let token = ConfirmationTokenRow {
        token_sha256: input.token.digest().as_str().to_owned(),
        subscription_id: subscription_id.to_owned(),
        request_event_id,
        created_at: now,
        expires_at: now + input.token_ttl,
        used_at: None,
    };
    let outbox_row = outbox::new_row(
        OutboxKind::Confirmation,
        Some(subscription_id),
        &json!({ "token": input.token.as_str() }),
        &input.message_domain,
        now,
    );
    (token, outbox_row)
}

/// A new subscription waiting for its confirmation.
fn pending_subscription(
    id: String,
    subscriber_id: String,
    input: &SignupInput,
    version: &ConsentVersion,
    now: NaiveDateTime,
) -> SubscriptionRow {
    SubscriptionRow {
        id,
        subscriber_id,
        list_id: input.list_id.clone(),
        state: SubscriptionState::Pending.as_str().to_owned(),
        consent_version_id: version.id.clone(),
        created_at: now,
        updated_at: now,
        confirmed_at: None,
        ended_at: None,
    }
}

fn requested_event<'a>(
    input: &'a SignupInput,
    version: &'a ConsentVersion,
    subscription_id: &'a str,
    now: NaiveDateTime,
) -> NewEvent<'a> {
    NewEvent {
        kind: EventKind::ConsentRequested,
        occurred_at: now,
        subscription_id: Some(subscription_id),
        list_id: Some(&input.list_id),
        consent_version_id: Some(&version.id),
        consent_sha256: Some(&version.sha256),
        method: Some(input.method),
        evidence_sha256: Some(&input.evidence.sha256),
        details: if input.double_opt_in {
            json!({
                "consent_source": input.consent_source.as_str(),
                "double_opt_in": true,
                "token_expires_at": crate::ledger::chain::format_time(now + input.token_ttl),
            })
        } else {
            json!({
                "consent_source": input.consent_source.as_str(),
                "double_opt_in": false,
            })
        },
    }
}

fn find_or_create_subscriber(
    conn: &mut DbConnection,
    input: &SignupInput,
    now: NaiveDateTime,
) -> Result<SubscriberRow, DbError> {
    let key = input.email.key();
    let found = subscribers::table
        .filter(subscribers::email_key.eq(&key))
        .select(SubscriberRow::as_select())
        .first(conn)
        .optional()?;
    if let Some(row) = found {
        return Ok(row);
    }
    let genesis = ChainHead::genesis();
    let row = SubscriberRow {
        id: super::new_id(),
        email: Some(input.email.as_str().to_owned()),
        email_key: Some(key),
        email_hmac: input.email_hmac.clone(),
        name: None,
        created_at: now,
        erased_at: None,
        chain_seq: genesis.seq,
        chain_head: genesis.hash,
    };
    // A concurrent sign-up of the same new address makes this a unique
    // violation; the caller retries the transaction and finds the row.
    diesel::insert_into(subscribers::table)
        .values(&row)
        .execute(conn)?;
    Ok(row)
}
