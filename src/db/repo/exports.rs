//! Reading consent records, the audience and the raw ledger in pages
//! (keyset pagination), so exports stream with flat memory.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::models::{ConsentEventRow, EvidenceRow};
use crate::db::schema::{consent_events, evidence, lists, subscribers, subscriptions};
use crate::db::{DbConnection, DbError};

/// Which subscriptions an export covers.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Only this list.
    pub list_id: Option<String>,
    /// Only subscriptions with a ledger event at or after this time.
    pub since: Option<NaiveDateTime>,
    /// ... and before this time.
    pub until: Option<NaiveDateTime>,
}

/// One consent record: a subscription with the evidence of each step.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentRecord {
    pub subscription_id: String,
    pub list: String,
    pub subscriber_id: String,
    /// The address, or `None` once erased.
    pub email: Option<String>,
    /// The name the person gave, if any.
    pub name: Option<String>,
    /// The keyed hash of the address (always present).
    pub email_hmac: String,
    pub erased: bool,
    pub state: String,
    pub consent_version_id: Option<String>,
    pub consent_sha256: Option<String>,
    pub consent_language: Option<String>,
    pub requested_at: Option<NaiveDateTime>,
    pub requested_method: Option<String>,
    pub requested_ip: Option<String>,
    pub requested_user_agent: Option<String>,
    pub requested_source_url: Option<String>,
    pub token_expires_at: Option<String>,
    pub confirmation_sent_at: Option<NaiveDateTime>,
    pub confirmation_message_id: Option<String>,
    pub confirmed_at: Option<NaiveDateTime>,
    pub confirmed_method: Option<String>,
    pub confirmed_ip: Option<String>,
    pub confirmed_user_agent: Option<String>,
    pub ended_at: Option<NaiveDateTime>,
    pub ended_event: Option<String>,
    pub ended_method: Option<String>,
    pub chain_head: String,
    pub chain_seq: i64,
}

type SubscriptionPageRow = (
    String,         // subscription id
    String,         // list slug
    String,         // subscriber id
    Option<String>, // email
    Option<String>, // name
    String,         // email_hmac
    Option<NaiveDateTime>,
    String, // state
    String, // chain head
    i64,    // chain seq
);

/// Versions by id: (sha256, language).
pub type VersionIndex = HashMap<String, (String, String)>;

/// Every consent version's hash and language.
pub fn version_index(conn: &mut DbConnection) -> Result<VersionIndex, DbError> {
    use crate::db::schema::{consent_texts, consent_versions};
    let rows: Vec<(String, String, String)> = consent_versions::table
        .inner_join(consent_texts::table)
        .select((
            consent_versions::id,
            consent_texts::sha256,
            consent_texts::language,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, sha, lang)| (id, (sha, lang)))
        .collect())
}

/// The next page of consent records after `after` (a subscription id).
pub fn consent_page(
    conn: &mut DbConnection,
    filter: &ExportFilter,
    versions: &VersionIndex,
    after: &str,
    limit: i64,
) -> Result<Vec<ConsentRecord>, DbError> {
    let mut query = subscriptions::table
        .inner_join(subscribers::table)
        .inner_join(lists::table)
        .filter(subscriptions::id.gt(after))
        .order(subscriptions::id.asc())
        .limit(limit)
        .select((
            subscriptions::id,
            lists::slug,
            subscribers::id,
            subscribers::email,
            subscribers::name,
            subscribers::email_hmac,
            subscribers::erased_at,
            subscriptions::state,
            subscribers::chain_head,
            subscribers::chain_seq,
        ))
        .into_boxed();
    if let Some(list_id) = &filter.list_id {
        query = query.filter(subscriptions::list_id.eq(list_id.clone()));
    }
    if filter.since.is_some() || filter.until.is_some() {
        // Bounds both databases can store.
        let since = filter
            .since
            .unwrap_or(chrono::DateTime::UNIX_EPOCH.naive_utc());
        let until = filter.until.unwrap_or_else(|| {
            chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .unwrap_or(chrono::NaiveDateTime::MAX)
        });
        query = query.filter(diesel::dsl::exists(
            consent_events::table
                .filter(consent_events::subscription_id.eq(subscriptions::id.nullable()))
                .filter(consent_events::occurred_at.ge(since))
                .filter(consent_events::occurred_at.lt(until)),
        ));
    }
    let page: Vec<SubscriptionPageRow> = query.load(conn)?;
    if page.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Option<&str>> = page.iter().map(|r| Some(r.0.as_str())).collect();
    let events: Vec<ConsentEventRow> = consent_events::table
        .filter(consent_events::subscription_id.eq_any(&ids))
        .order((
            consent_events::subscriber_id.asc(),
            consent_events::seq.asc(),
        ))
        .select(ConsentEventRow::as_select())
        .load(conn)?;
    let hashes: Vec<&str> = events
        .iter()
        .filter_map(|e| e.evidence_sha256.as_deref())
        .collect();
    let evidence_rows: HashMap<String, EvidenceRow> = evidence::table
        .filter(evidence::sha256.eq_any(&hashes))
        .select(EvidenceRow::as_select())
        .load(conn)?
        .into_iter()
        .map(|e| (e.sha256.clone(), e))
        .collect();
    let mut by_subscription: HashMap<&str, Vec<&ConsentEventRow>> = HashMap::new();
    for event in &events {
        if let Some(id) = event.subscription_id.as_deref() {
            by_subscription.entry(id).or_default().push(event);
        }
    }
    Ok(page
        .into_iter()
        .map(|row| {
            let events = by_subscription
                .get(row.0.as_str())
                .cloned()
                .unwrap_or_default();
            assemble(row, &events, &evidence_rows, versions)
        })
        .collect())
}

fn assemble(
    (
        subscription_id,
        list,
        subscriber_id,
        email,
        name,
        email_hmac,
        erased_at,
        state,
        chain_head,
        chain_seq,
    ): SubscriptionPageRow,
    events: &[&ConsentEventRow],
    evidence_rows: &HashMap<String, EvidenceRow>,
    versions: &VersionIndex,
) -> ConsentRecord {
    let last = |kind: &str| events.iter().rev().find(|e| e.kind == kind).copied();
    let confirmed = last("consent_confirmed");
    // The request a confirmation points to, else the latest request.
    let requested = confirmed
        .and_then(|c| detail(c, "request_event_id"))
        .and_then(|id| events.iter().find(|e| e.id == id).copied())
        .or_else(|| last("consent_requested"));
    let sent = last("confirmation_sent");
    let ended = events
        .iter()
        .rev()
        .find(|e| e.kind == "unsubscribed" || e.kind == "consent_withdrawn")
        .copied()
        .filter(|_| state == "unsubscribed" || state == "withdrawn");
    let evidence_of = |e: Option<&ConsentEventRow>| {
        e.and_then(|e| e.evidence_sha256.as_ref())
            .and_then(|h| evidence_rows.get(h))
    };
    let requested_evidence = evidence_of(requested);
    let confirmed_evidence = evidence_of(confirmed);
    let version_id = requested.and_then(|r| r.consent_version_id.clone());
    let language = version_id
        .as_ref()
        .and_then(|v| versions.get(v))
        .map(|(_, lang)| lang.clone());
    ConsentRecord {
        subscription_id,
        list,
        subscriber_id,
        erased: erased_at.is_some(),
        email,
        name,
        email_hmac,
        state,
        consent_sha256: requested.and_then(|r| r.consent_sha256.clone()),
        consent_version_id: version_id,
        consent_language: language,
        requested_at: requested.map(|r| r.occurred_at),
        requested_method: requested.and_then(|r| r.method.clone()),
        requested_ip: requested_evidence.and_then(|e| e.ip.clone()),
        requested_user_agent: requested_evidence.and_then(|e| e.user_agent.clone()),
        requested_source_url: requested_evidence.and_then(|e| e.source_url.clone()),
        token_expires_at: requested.and_then(|r| detail(r, "token_expires_at")),
        confirmation_sent_at: sent.map(|s| s.occurred_at),
        confirmation_message_id: sent.and_then(|s| detail(s, "message_id")),
        confirmed_at: confirmed.map(|c| c.occurred_at),
        confirmed_method: confirmed.and_then(|c| c.method.clone()),
        confirmed_ip: confirmed_evidence.and_then(|e| e.ip.clone()),
        confirmed_user_agent: confirmed_evidence.and_then(|e| e.user_agent.clone()),
        ended_at: ended.map(|e| e.occurred_at),
        ended_event: ended.map(|e| e.kind.clone()),
        ended_method: ended.and_then(|e| e.method.clone()),
        chain_head,
        chain_seq,
    }
}

fn detail(event: &ConsentEventRow, key: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(&event.details)
        .ok()?
        .get(key)?
        .as_str()
        .map(str::to_owned)
}

/// The next page of ledger events after `(occurred_at, id)`.
pub fn events_page(
    conn: &mut DbConnection,
    since: Option<NaiveDateTime>,
    after: Option<&(NaiveDateTime, String)>,
    limit: i64,
) -> Result<Vec<ConsentEventRow>, DbError> {
    let mut query = consent_events::table
        .order((consent_events::occurred_at.asc(), consent_events::id.asc()))
        .limit(limit)
        .select(ConsentEventRow::as_select())
        .into_boxed();
    if let Some(since) = since {
        query = query.filter(consent_events::occurred_at.ge(since));
    }
    if let Some((time, id)) = after {
        query = query.filter(
            consent_events::occurred_at
                .gt(*time)
                .or(consent_events::occurred_at
                    .eq(*time)
                    .and(consent_events::id.gt(id.clone()))),
        );
    }
    Ok(query.load(conn)?)
}

/// A confirmed subscription of a list's audience.
#[derive(Debug, Clone)]
pub struct AudienceMember {
    pub subscription_id: String,
    pub email: String,
    pub confirmed_at: Option<NaiveDateTime>,
}

/// The next page of a list's confirmed, not erased subscriptions.
pub fn audience_page(
    conn: &mut DbConnection,
    list_id: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<AudienceMember>, DbError> {
    let rows: Vec<(String, Option<String>, Option<NaiveDateTime>)> = subscriptions::table
        .inner_join(subscribers::table)
        .filter(subscriptions::list_id.eq(list_id))
        .filter(subscriptions::state.eq("confirmed"))
        .filter(subscribers::email.is_not_null())
        .filter(subscriptions::id.gt(after))
        .order(subscriptions::id.asc())
        .limit(limit)
        .select((
            subscriptions::id,
            subscribers::email,
            subscriptions::confirmed_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(subscription_id, email, confirmed_at)| {
            Some(AudienceMember {
                subscription_id,
                email: email?,
                confirmed_at,
            })
        })
        .collect())
}

/// Every consent text: (sha256, language, first seen, body).
pub fn consent_texts(
    conn: &mut DbConnection,
) -> Result<Vec<crate::db::models::ConsentTextRow>, DbError> {
    use crate::db::schema::consent_texts;
    Ok(consent_texts::table
        .order(consent_texts::first_seen_at.asc())
        .select(crate::db::models::ConsentTextRow::as_select())
        .load(conn)?)
}
