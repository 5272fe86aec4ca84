//! Group commit: many sign-ups recorded in one transaction.
//!
//! The common case, an address the database has never seen, is written with
//! one look-up per table for the whole batch and multi-row inserts. Every
//! other sign-up (an address already known, a second sign-up of the same
//! address in the batch, a single opt-in list) is recorded by [`record`]
//! inside a savepoint of the same transaction, after the new addresses, so
//! the outcome is exactly what recording them one by one in arrival order
//! gives. Errors stay per sign-up: a sign-up that fails inside the batch is
//! rolled back to its savepoint, and if the batch itself fails (a race with
//! another instance on a new address, a busy database), each sign-up is
//! recorded again on its own.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{
    GateData, SignupError, SignupInput, SignupOutcome, confirmation_rows, gated_request_event,
    pending_subscription, record,
};
use crate::db::models::SubscriberRow;
use crate::db::repo::ledger;
use crate::db::repo::lists::{self, ConsentVersion};
use crate::db::schema::subscriptions;
use crate::db::schema::{confirmation_tokens, consent_events, evidence, outbox, subscribers};
use crate::db::{DbConnection, DbError, retry, with_index_lookups, write_transaction};
use crate::ledger::ChainHead;

/// A sign-up waiting for its batch, with the time it arrived.
#[derive(Debug, Clone)]
pub struct PendingSignup {
    pub input: SignupInput,
    pub now: NaiveDateTime,
}

/// Where a sign-up of the batch stands.
enum Slot {
    /// Recorded (or refused) inside the batch's transaction.
    Done(Result<SignupOutcome, SignupError>),
    /// To be recorded on its own once the batch committed (it lost a race
    /// inside the batch).
    Alone,
}

/// Records a batch of sign-ups, committing them together; answers each
/// one's outcome in order.
pub fn record_batch(
    conn: &mut DbConnection,
    batch: &[PendingSignup],
) -> Vec<Result<SignupOutcome, SignupError>> {
    let slots = if batch.len() < 2 {
        batch.iter().map(|_| Slot::Alone).collect()
    } else {
        match write_transaction(conn, |conn| batch_transaction(conn, batch)) {
            Ok(slots) => slots,
            // A lost race is worth retrying sign-up by sign-up (below).
            Err(SignupError::Db(error)) if error.is_unavailable() && !error.is_retryable() => {
                // Retrying each sign-up would only fail again, later.
                let why = error.to_string();
                return batch
                    .iter()
                    .map(|_| Err(SignupError::Db(DbError::Unavailable(why.clone()))))
                    .collect();
            }
            Err(error) => {
                tracing::debug!(%error, size = batch.len(), "batch rolled back; recording its sign-ups one by one");
                batch.iter().map(|_| Slot::Alone).collect()
            }
        }
    };
    slots
        .into_iter()
        .zip(batch)
        .map(|(slot, pending)| match slot {
            Slot::Done(result) => result,
            Slot::Alone => {
                retry(|| write_transaction(conn, |conn| record(conn, &pending.input, pending.now)))
            }
        })
        .collect()
}

/// The rows of the sign-ups of new addresses, written together.
#[derive(Default)]
struct NewRows {
    subscribers: Vec<SubscriberRow>,
    subscriptions: Vec<crate::db::models::SubscriptionRow>,
    evidence: Vec<crate::db::models::EvidenceRow>,
    events: Vec<crate::db::models::ConsentEventRow>,
    tokens: Vec<crate::db::models::ConfirmationTokenRow>,
    outbox: Vec<crate::db::models::OutboxRow>,
}

impl NewRows {
    fn insert(&self, conn: &mut DbConnection) -> Result<(), DbError> {
        // In foreign-key order.
        if !self.subscribers.is_empty() {
            insert_rows!(conn, subscribers::table, &self.subscribers)?;
            insert_rows!(conn, subscriptions::table, &self.subscriptions)?;
            insert_rows!(conn, evidence::table, &self.evidence)?;
            insert_rows!(conn, consent_events::table, &self.events)?;
        }
        if !self.tokens.is_empty() {
            insert_rows!(conn, confirmation_tokens::table, &self.tokens)?;
            insert_rows!(conn, outbox::table, &self.outbox)?;
        }
        Ok(())
    }
}

fn batch_transaction(
    conn: &mut DbConnection,
    batch: &[PendingSignup],
) -> Result<Vec<Slot>, SignupError> {
    let mut list_ids: Vec<&str> = batch.iter().map(|p| p.input.list_id.as_str()).collect();
    list_ids.sort_unstable();
    list_ids.dedup();
    let keys: Vec<String> = batch.iter().map(|p| p.input.email.key()).collect();
    let (versions, known) = with_index_lookups(conn, |conn| {
        let versions = lists::versions_of_lists(conn, &list_ids)?;
        let known: HashSet<String> = subscribers::table
            .filter(subscribers::email_key.eq_any(&keys))
            .select(subscribers::email_key)
            .load::<Option<String>>(conn)?
            .into_iter()
            .flatten()
            .collect();
        Ok::<_, SignupError>((versions, known))
    })?;

    let mut slots: Vec<Option<Slot>> = Vec::with_capacity(batch.len());
    let mut fresh: Vec<(usize, &ConsentVersion)> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (index, pending) in batch.iter().enumerate() {
        let input = &pending.input;
        let version = versions
            .iter()
            .find(|v| v.list_id == input.list_id && input.consent.names(v));
        let Some(version) = version else {
            slots.push(Some(Slot::Done(Err(SignupError::ConsentVersionUnknown))));
            continue;
        };
        let first = seen.insert(keys[index].as_str());
        if first && input.double_opt_in && !known.contains(&keys[index]) {
            fresh.push((index, version));
        }
        slots.push(None);
    }

    if !fresh.is_empty() {
        let hmacs: Vec<&str> = fresh
            .iter()
            .map(|(i, _)| batch[*i].input.email_hmac.as_str())
            .collect();
        let oldest = fresh
            .iter()
            .map(|(i, _)| batch[*i].now)
            .min()
            .unwrap_or_default();
        let gates = GateData::load(conn, &hmacs, oldest)?;
        let mut rows = NewRows::default();
        for (index, version) in fresh {
            let PendingSignup { input, now } = &batch[index];
            let outcome = new_address(&mut rows, input, version, &keys[index], &gates, *now);
            slots[index] = Some(Slot::Done(Ok(outcome)));
        }
        rows.insert(conn)?;
    }

    // The rest, in arrival order, each in a savepoint.
    for (index, pending) in batch.iter().enumerate() {
        if slots[index].is_some() {
            continue;
        }
        let result = conn.transaction(|conn| record(conn, &pending.input, pending.now));
        slots[index] = Some(match result {
            Err(SignupError::Db(error)) if error.is_retryable() => Slot::Alone,
            Err(SignupError::Db(error)) if error.is_unavailable() => {
                return Err(SignupError::Db(error));
            }
            other => Slot::Done(other),
        });
    }
    Ok(slots
        .into_iter()
        .map(|s| s.unwrap_or(Slot::Alone))
        .collect())
}

/// The rows `record` writes for an address the database does not know, on
/// a double opt-in list.
fn new_address(
    rows: &mut NewRows,
    input: &SignupInput,
    version: &ConsentVersion,
    key: &str,
    gates: &GateData,
    now: NaiveDateTime,
) -> SignupOutcome {
    let subscriber_id = crate::db::repo::new_id();
    let subscription_id = crate::db::repo::new_id();
    let gate = gates.gate(&input.email_hmac, &input.budget, now);
    let event = gated_request_event(input, version, &subscription_id, now, gate);
    let (head, events) = ledger::chain_rows(&subscriber_id, &ChainHead::genesis(), &[event]);
    let request_event_id = events.first().map(|e| e.id.clone()).unwrap_or_default();
    rows.events.extend(events);
    rows.evidence
        .push(ledger::evidence_row(&input.evidence, now));
    rows.subscriptions.push(pending_subscription(
        subscription_id.clone(),
        subscriber_id.clone(),
        input,
        version,
        now,
    ));
    rows.subscribers.push(SubscriberRow {
        id: subscriber_id,
        email: Some(input.email.as_str().to_owned()),
        email_key: Some(key.to_owned()),
        email_hmac: input.email_hmac.clone(),
        name: input.name.as_ref().map(|n| n.as_str().to_owned()),
        created_at: now,
        erased_at: None,
        chain_seq: head.seq,
        chain_head: head.hash,
    });
    match gate {
        super::Gate::Throttled => SignupOutcome::Throttled,
        super::Gate::Refused => SignupOutcome::Refused,
        super::Gate::Send => {
            let (token, outbox_row) =
                confirmation_rows(input, &subscription_id, request_event_id, now);
            let outbox_id = outbox_row.id.clone();
            rows.tokens.push(token);
            rows.outbox.push(outbox_row);
            SignupOutcome::ConfirmationQueued { outbox_id }
        }
    }
}
