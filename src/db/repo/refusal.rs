//! "I did not ask for this": refusing confirmation emails for an address
//! (by keyed hash) for a while, and lifting the refusal.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use serde_json::json;

use crate::db::repo::ledger::{self, NewEvent};
use crate::db::schema::{outbox, refusals, subscribers, subscriptions};
use crate::db::{DbConnection, DbError};
use crate::ledger::chain::format_time;
use crate::ledger::evidence::SealedEvidence;
use crate::ledger::{EventKind, EventMethod};

/// The subscription a refusal link points at.
#[derive(Debug, Clone)]
pub struct RefusalView {
    pub list_id: String,
    pub subscriber_id: String,
    pub email_hmac: String,
    /// Whether the subscriber's personal data was erased.
    pub erased: bool,
    /// Until when confirmation emails are refused, if they are.
    pub refused_until: Option<NaiveDateTime>,
}

/// Looks up a refusal link's subscription.
pub fn view(
    conn: &mut DbConnection,
    subscription_id: &str,
    now: NaiveDateTime,
) -> Result<Option<RefusalView>, DbError> {
    let found = subscriptions::table
        .inner_join(subscribers::table)
        .filter(subscriptions::id.eq(subscription_id))
        .select((
            subscriptions::list_id,
            subscribers::id,
            subscribers::email_hmac,
            subscribers::erased_at,
        ))
        .first::<(String, String, String, Option<NaiveDateTime>)>(conn)
        .optional()?;
    let Some((list_id, subscriber_id, email_hmac, erased_at)) = found else {
        return Ok(None);
    };
    let refused_until = refusals::table
        .filter(refusals::email_hmac.eq(&email_hmac))
        .filter(refusals::until.gt(now))
        .select(refusals::until)
        .first::<NaiveDateTime>(conn)
        .optional()?;
    Ok(Some(RefusalView {
        list_id,
        subscriber_id,
        email_hmac,
        erased: erased_at.is_some(),
        refused_until,
    }))
}

/// Refuses confirmation emails to the address for `days`, cancels the
/// ones still queued, and records it. Returns false if already refused.
pub fn refuse(
    conn: &mut DbConnection,
    view: &RefusalView,
    subscription_id: &str,
    evidence: Option<&SealedEvidence>,
    days: u64,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    if view.refused_until.is_some() {
        return Ok(false);
    }
    let until = now + Duration::days(days as i64);
    diesel::delete(refusals::table.filter(refusals::email_hmac.eq(&view.email_hmac)))
        .execute(conn)?;
    diesel::insert_into(refusals::table)
        .values((
            refusals::email_hmac.eq(&view.email_hmac),
            refusals::refused_at.eq(now),
            refusals::until.eq(until),
        ))
        .execute(conn)?;
    let same_address: Vec<Option<String>> = subscriptions::table
        .inner_join(subscribers::table)
        .filter(subscribers::email_hmac.eq(&view.email_hmac))
        .select(subscriptions::id)
        .load::<String>(conn)?
        .into_iter()
        .map(Some)
        .collect();
    diesel::update(
        outbox::table
            .filter(outbox::subscription_id.eq_any(&same_address))
            .filter(outbox::kind.eq("confirmation"))
            .filter(outbox::state.eq("pending")),
    )
    .set((
        outbox::state.eq("cancelled"),
        outbox::payload.eq("{}"),
        outbox::last_error.eq("refused by the recipient"),
    ))
    .execute(conn)?;
    if let Some(evidence) = evidence {
        ledger::store_evidence(conn, evidence, now)?;
    }
    let head = ledger::head(conn, &view.subscriber_id)?;
    ledger::append(
        conn,
        &view.subscriber_id,
        &head,
        &[NewEvent {
            kind: EventKind::ConfirmationRefused,
            occurred_at: now,
            subscription_id: Some(subscription_id),
            list_id: Some(&view.list_id),
            consent_version_id: None,
            consent_sha256: None,
            method: Some(EventMethod::Page),
            evidence_sha256: evidence.map(|e| e.sha256.as_str()),
            details: json!({ "until": format_time(until), "email_hmac": view.email_hmac }),
        }],
    )?;
    Ok(true)
}

/// Lifts a refusal. Returns false if there was none.
pub fn lift(
    conn: &mut DbConnection,
    view: &RefusalView,
    subscription_id: &str,
    evidence: Option<&SealedEvidence>,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    if view.refused_until.is_none() {
        return Ok(false);
    }
    diesel::delete(refusals::table.filter(refusals::email_hmac.eq(&view.email_hmac)))
        .execute(conn)?;
    if let Some(evidence) = evidence {
        ledger::store_evidence(conn, evidence, now)?;
    }
    let head = ledger::head(conn, &view.subscriber_id)?;
    ledger::append(
        conn,
        &view.subscriber_id,
        &head,
        &[NewEvent {
            kind: EventKind::RefusalLifted,
            occurred_at: now,
            subscription_id: Some(subscription_id),
            list_id: Some(&view.list_id),
            consent_version_id: None,
            consent_sha256: None,
            method: Some(EventMethod::Page),
            evidence_sha256: evidence.map(|e| e.sha256.as_str()),
            details: json!({}),
        }],
    )?;
    Ok(true)
}
