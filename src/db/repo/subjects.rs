//! A person's data as the admin API shows, exports and erases it.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::models::{ConsentEventRow, EvidenceRow, SubscriberRow};
use crate::db::schema::{
    consent_events, consent_texts, evidence, lists, subscribers, subscriptions,
};
use crate::db::{DbConnection, DbError};

/// A subscription as the admin API shows it.
#[derive(Debug, Clone, Serialize, Queryable)]
pub struct SubscriptionSummary {
    pub id: String,
    pub list: String,
    pub state: String,
    pub consent_version_id: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub confirmed_at: Option<NaiveDateTime>,
    pub ended_at: Option<NaiveDateTime>,
}

/// Everything stored about one person.
#[derive(Debug, Clone)]
pub struct Subject {
    pub subscriber: SubscriberRow,
    pub subscriptions: Vec<SubscriptionSummary>,
    pub events: Vec<ConsentEventRow>,
    pub evidence: Vec<EvidenceRow>,
    /// The consent texts their events name: (sha256, language, body).
    pub consent_texts: Vec<(String, String, String)>,
}

/// Finds a subscriber by the identity key of an address.
pub fn find_by_email_key(
    conn: &mut DbConnection,
    email_key: &str,
) -> Result<Option<SubscriberRow>, DbError> {
    Ok(subscribers::table
        .filter(subscribers::email_key.eq(email_key))
        .select(SubscriberRow::as_select())
        .first(conn)
        .optional()?)
}

/// Loads everything about a subscriber.
pub fn load(conn: &mut DbConnection, subscriber: SubscriberRow) -> Result<Subject, DbError> {
    let subscriptions: Vec<SubscriptionSummary> = subscriptions::table
        .inner_join(lists::table)
        .filter(subscriptions::subscriber_id.eq(&subscriber.id))
        .order(subscriptions::created_at.asc())
        .select((
            subscriptions::id,
            lists::slug,
            subscriptions::state,
            subscriptions::consent_version_id,
            subscriptions::created_at,
            subscriptions::updated_at,
            subscriptions::confirmed_at,
            subscriptions::ended_at,
        ))
        .load(conn)?;
    let events: Vec<ConsentEventRow> = consent_events::table
        .filter(consent_events::subscriber_id.eq(&subscriber.id))
        .order(consent_events::seq.asc())
        .select(ConsentEventRow::as_select())
        .load(conn)?;
    let hashes: Vec<&str> = events
        .iter()
        .filter_map(|e| e.evidence_sha256.as_deref())
        .collect();
    let evidence_rows = evidence::table
        .filter(evidence::sha256.eq_any(&hashes))
        .select(EvidenceRow::as_select())
        .load(conn)?;
    let text_hashes: Vec<&str> = events
        .iter()
        .filter_map(|e| e.consent_sha256.as_deref())
        .collect();
    let consent_texts = consent_texts::table
        .filter(consent_texts::sha256.eq_any(&text_hashes))
        .select((
            consent_texts::sha256,
            consent_texts::language,
            consent_texts::body,
        ))
        .load(conn)?;
    Ok(Subject {
        subscriber,
        subscriptions,
        events,
        evidence: evidence_rows,
        consent_texts,
    })
}
