//! The outbox: mail and webhooks enqueued in the same transaction as the
//! business rows, claimed under a lease by the worker for their kind, never
//! dropped.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::models::{ConfirmationTokenRow, OutboxRow};
use crate::db::repo::confirm::{self, ConfirmationMailContext};
use crate::db::schema::{confirmation_tokens, outbox};
use crate::db::{DbConnection, DbError, with_index_lookups, write_transaction};
use crate::domain::{ConfirmationToken, WebhookEventType};

/// What an outbox row delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// The double-opt-in email.
    Confirmation,
    /// The first email after confirming, with the unsubscribe headers.
    Welcome,
    /// A webhook notice to one endpoint.
    Webhook(WebhookEventType),
}

impl OutboxKind {
    /// The kinds the mail worker delivers.
    pub const MAIL: [OutboxKind; 2] = [OutboxKind::Confirmation, OutboxKind::Welcome];

    /// The kinds the webhook worker delivers.
    pub const WEBHOOKS: [OutboxKind; 4] = [
        OutboxKind::Webhook(WebhookEventType::SubscriptionConfirmed),
        OutboxKind::Webhook(WebhookEventType::SubscriptionUnsubscribed),
        OutboxKind::Webhook(WebhookEventType::ConsentWithdrawn),
        OutboxKind::Webhook(WebhookEventType::SubjectErased),
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Confirmation => "confirmation",
            OutboxKind::Welcome => "welcome",
            OutboxKind::Webhook(WebhookEventType::SubscriptionConfirmed) => {
                "webhook:subscription.confirmed"
            }
            OutboxKind::Webhook(WebhookEventType::SubscriptionUnsubscribed) => {
                "webhook:subscription.unsubscribed"
            }
            OutboxKind::Webhook(WebhookEventType::ConsentWithdrawn) => "webhook:consent.withdrawn",
            OutboxKind::Webhook(WebhookEventType::SubjectErased) => "webhook:subject.erased",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "confirmation" => Some(OutboxKind::Confirmation),
            "welcome" => Some(OutboxKind::Welcome),
            other => Self::WEBHOOKS.into_iter().find(|k| k.as_str() == other),
        }
    }
}

fn names(kinds: &[OutboxKind]) -> Vec<&'static str> {
    kinds.iter().map(|k| k.as_str()).collect()
}

/// Adds a row due now. The Message-ID derives from the row id, so a retry
/// carries the same id and receivers can drop duplicates.
pub fn enqueue(
    conn: &mut DbConnection,
    kind: OutboxKind,
    subscription_id: Option<&str>,
    payload: &serde_json::Value,
    message_domain: &str,
    now: NaiveDateTime,
) -> Result<String, DbError> {
    let row = new_row(kind, subscription_id, payload, message_domain, now);
    diesel::insert_into(outbox::table)
        .values(&row)
        .execute(conn)?;
    Ok(row.id)
}

/// A row due now, not yet written (for multi-row inserts).
pub fn new_row(
    kind: OutboxKind,
    subscription_id: Option<&str>,
    payload: &serde_json::Value,
    message_domain: &str,
    now: NaiveDateTime,
) -> OutboxRow {
    let id = super::new_id();
    OutboxRow {
        message_id: format!("<{id}@{message_domain}>"),
        id,
        kind: kind.as_str().to_owned(),
        subscription_id: subscription_id.map(str::to_owned),
        payload: payload.to_string(),
        state: "pending".to_owned(),
        attempts: 0,
        next_attempt_at: now,
        lease_owner: None,
        lease_until: None,
        last_error: None,
        created_at: now,
        sent_at: None,
    }
}

/// Adds a webhook row due now. Its id is also its `message_id` and the
/// `webhook-id` header: the same on every retry, so receivers can drop
/// duplicates.
pub fn enqueue_webhook(
    conn: &mut DbConnection,
    event: WebhookEventType,
    subscription_id: Option<&str>,
    payload: String,
    now: NaiveDateTime,
) -> Result<String, DbError> {
    let id = super::new_id();
    diesel::insert_into(outbox::table)
        .values(OutboxRow {
            id: id.clone(),
            kind: OutboxKind::Webhook(event).as_str().to_owned(),
            subscription_id: subscription_id.map(str::to_owned),
            payload,
            message_id: id.clone(),
            state: "pending".to_owned(),
            attempts: 0,
            next_attempt_at: now,
            lease_owner: None,
            lease_until: None,
            last_error: None,
            created_at: now,
            sent_at: None,
        })
        .execute(conn)?;
    Ok(id)
}

/// Claims up to `limit` due rows of the given kinds for `owner` until
/// `lease_until`, counting the attempt now (so a crash mid-send still
/// counts), oldest due first. On PostgreSQL the rows are picked with `FOR
/// UPDATE SKIP LOCKED`: several instances never claim the same row. The
/// mail and the webhook workers claim disjoint kinds, so neither waits for
/// the other.
pub fn claim_due(
    conn: &mut DbConnection,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
    kinds: &[OutboxKind],
) -> Result<Vec<OutboxRow>, DbError> {
    let kinds = names(kinds);
    // Every statement here goes by key or by the `outbox_pending` index.
    let mut claimed = write_transaction(conn, |conn| {
        with_index_lookups(conn, |conn| match conn {
            DbConnection::Postgres(pg) => {
                claim_pg(pg, CLAIM, owner, now, lease_until, limit, &kinds)
            }
            DbConnection::Sqlite(_) => {
                claim_due_sqlite(conn, owner, now, lease_until, limit, &kinds)
            }
        })
    })?;
    claimed.sort_by_key(|row| row.next_attempt_at);
    Ok(claimed)
}

/// Claims due mail as [`claim_due`] does, each row with what its message
/// needs (`None` when the row has no subscription, or it is gone), in the
/// same transaction. On PostgreSQL one statement claims and reads.
pub fn claim_due_mail(
    conn: &mut DbConnection,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
) -> Result<Vec<(OutboxRow, Option<ConfirmationMailContext>)>, DbError> {
    let kinds = names(&OutboxKind::MAIL);
    let mut claimed = write_transaction(conn, |conn| {
        with_index_lookups(conn, |conn| match conn {
            DbConnection::Postgres(pg) => {
                claim_pg::<ClaimedMail>(pg, CLAIM_MAIL, owner, now, lease_until, limit, &kinds)?
                    .into_iter()
                    .map(ClaimedMail::into_parts)
                    .collect::<Result<Vec<_>, DbError>>()
            }
            DbConnection::Sqlite(_) => {
                let rows = claim_due_sqlite(conn, owner, now, lease_until, limit, &kinds)?;
                let ids: Vec<&str> = rows
                    .iter()
                    .filter_map(|row| row.subscription_id.as_deref())
                    .collect();
                let contexts = confirm::mail_contexts(conn, &ids)?;
                // Several rows may be for one subscription (a confirmation
                // sent again).
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        let context = row
                            .subscription_id
                            .as_deref()
                            .and_then(|id| contexts.get(id).cloned());
                        (row, context)
                    })
                    .collect())
            }
        })
    })?;
    claimed.sort_by_key(|(row, _)| row.next_attempt_at);
    Ok(claimed)
}

/// A claimed mail row and its recipient, as [`CLAIM_MAIL`] reads them.
#[derive(QueryableByName)]
struct ClaimedMail {
    #[diesel(embed)]
    claimed: OutboxRow,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    mail_subscriber_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    mail_email: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    mail_list_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    mail_state: Option<String>,
}

impl ClaimedMail {
    fn into_parts(self) -> Result<(OutboxRow, Option<ConfirmationMailContext>), DbError> {
        let context = match (
            self.claimed.subscription_id.clone(),
            self.mail_subscriber_id,
            self.mail_list_id,
            self.mail_state,
        ) {
            (Some(subscription_id), Some(subscriber_id), Some(list_id), Some(state)) => {
                Some(ConfirmationMailContext {
                    subscriber_id,
                    subscription_id,
                    email: self.mail_email,
                    list_id,
                    state: super::stored_state(&state)?,
                })
            }
            _ => None,
        };
        Ok((self.claimed, context))
    }
}

/// The claim statement on PostgreSQL: picks the due rows and locks them
/// with the inner `SELECT` (skipping rows another instance holds), leases
/// them through their row addresses (no second look-up by key) and returns
/// them. Binds: owner, lease end, kinds, now, limit. A macro, so that
/// [`CLAIM_MAIL`] is a constant built from it too.
macro_rules! claim_sql {
    () => {
        "UPDATE outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
         WHERE ctid = ANY(ARRAY( \
             SELECT ctid FROM outbox \
             WHERE state = 'pending' AND kind = ANY($3) AND next_attempt_at <= $4 \
             AND (lease_until IS NULL OR lease_until <= $4) \
             ORDER BY next_attempt_at LIMIT $5 \
             FOR UPDATE SKIP LOCKED)) \
         RETURNING *"
    };
}

/// The claim, rows as they are.
const CLAIM: &str = claim_sql!();

/// The claim, each row joined to its subscription and subscriber: the rows
/// leased and their recipients in one round trip.
const CLAIM_MAIL: &str = concat!(
    "WITH claimed AS (",
    claim_sql!(),
    ") SELECT claimed.*, subscriptions.subscriber_id AS mail_subscriber_id, \
     subscribers.email AS mail_email, subscriptions.list_id AS mail_list_id, \
     subscriptions.state AS mail_state \
     FROM claimed \
     LEFT JOIN subscriptions ON subscriptions.id = claimed.subscription_id \
     LEFT JOIN subscribers ON subscribers.id = subscriptions.subscriber_id"
);

/// Runs one of the claim statements ([`CLAIM`], [`CLAIM_MAIL`]) with its
/// binds.
fn claim_pg<T: QueryableByName<diesel::pg::Pg> + 'static>(
    pg: &mut diesel::PgConnection,
    statement: &'static str,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
    kinds: &[&str],
) -> Result<Vec<T>, diesel::result::Error> {
    use diesel::sql_types::{Array, BigInt, Text, Timestamp};
    diesel::sql_query(statement)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(lease_until)
        .bind::<Array<Text>, _>(kinds)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(limit)
        .load(pg)
}

/// The write transaction holds SQLite's only write lock: nothing changes
/// between picking the rows and leasing them.
fn claim_due_sqlite(
    conn: &mut DbConnection,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
    kinds: &[&str],
) -> Result<Vec<OutboxRow>, diesel::result::Error> {
    let ids: Vec<String> = outbox::table
        .filter(outbox::state.eq("pending"))
        .filter(outbox::kind.eq_any(kinds))
        .filter(outbox::next_attempt_at.le(now))
        .filter(
            outbox::lease_until
                .is_null()
                .or(outbox::lease_until.le(now)),
        )
        .order(outbox::next_attempt_at.asc())
        .limit(limit)
        .select(outbox::id)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::update(outbox::table.filter(outbox::id.eq_any(&ids)))
        .set((
            outbox::lease_owner.eq(owner),
            outbox::lease_until.eq(lease_until),
            outbox::attempts.eq(outbox::attempts + 1),
        ))
        .execute(conn)?;
    outbox::table
        .filter(outbox::id.eq_any(&ids))
        .select(OutboxRow::as_select())
        .load(conn)
}

/// Marks a claimed row sent and forgets its payload (which may hold a
/// token in clear). Returns false if the lease was lost meanwhile.
pub fn mark_sent(
    conn: &mut DbConnection,
    id: &str,
    owner: &str,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    // A row cancelled meanwhile (erasure) stays cancelled.
    let updated = diesel::update(
        outbox::table
            .filter(outbox::id.eq(id))
            .filter(outbox::lease_owner.eq(owner))
            .filter(outbox::state.eq("pending")),
    )
    .set((
        outbox::state.eq("sent"),
        outbox::sent_at.eq(now),
        outbox::payload.eq("{}"),
        outbox::lease_owner.eq(None::<String>),
        outbox::lease_until.eq(None::<NaiveDateTime>),
        outbox::last_error.eq(None::<String>),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// [`mark_sent`] for many rows: each row sent at its own time, if `owner`
/// still holds it. Returns the ids marked; a row whose lease another
/// worker took over meanwhile, or that was cancelled, is left as it is. On
/// PostgreSQL this is one `UPDATE` whose condition is checked again on a
/// row another transaction changes meanwhile, so a worker re-claiming an
/// expired lease and this never both win.
pub fn mark_sent_many(
    conn: &mut DbConnection,
    sent: &[(&str, NaiveDateTime)],
    owner: &str,
) -> Result<Vec<String>, DbError> {
    if sent.is_empty() {
        return Ok(Vec::new());
    }
    match conn {
        DbConnection::Postgres(pg) => {
            use diesel::sql_types::{Array, Text, Timestamp};
            #[derive(QueryableByName)]
            struct Marked {
                #[diesel(sql_type = Text)]
                id: String,
            }
            let (ids, times): (Vec<&str>, Vec<NaiveDateTime>) = sent.iter().copied().unzip();
            let marked: Vec<Marked> = diesel::sql_query(
                "UPDATE outbox SET state = 'sent', sent_at = sent.at, payload = '{}', \
                 lease_owner = NULL, lease_until = NULL, last_error = NULL \
                 FROM unnest($1::text[], $2::timestamp[]) AS sent(id, at) \
                 WHERE outbox.id = sent.id AND outbox.lease_owner = $3 \
                 AND outbox.state = 'pending' \
                 RETURNING outbox.id",
            )
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<Timestamp>, _>(times)
            .bind::<Text, _>(owner)
            .load(pg)?;
            Ok(marked.into_iter().map(|m| m.id).collect())
        }
        DbConnection::Sqlite(_) => {
            // One writer at a time: nothing changes between the statements.
            let mut marked = Vec::with_capacity(sent.len());
            for (id, at) in sent {
                if mark_sent(conn, id, owner, *at)? {
                    marked.push((*id).to_owned());
                }
            }
            Ok(marked)
        }
    }
}

/// Records a failed attempt: due again at `retry_at`, or `dead` when
/// `dead` is set. The row is never dropped.
pub fn mark_failed(
    conn: &mut DbConnection,
    id: &str,
    owner: &str,
    error: &str,
    retry_at: NaiveDateTime,
    dead: bool,
) -> Result<(), DbError> {
    let error: String = crate::domain::email::mask_in_text(error)
        .chars()
        .take(2_000)
        .collect();
    diesel::update(
        outbox::table
            .filter(outbox::id.eq(id))
            .filter(outbox::lease_owner.eq(owner))
            .filter(outbox::state.eq("pending")),
    )
    .set((
        outbox::state.eq(if dead { "dead" } else { "pending" }),
        outbox::next_attempt_at.eq(retry_at),
        outbox::last_error.eq(error),
        outbox::lease_owner.eq(None::<String>),
        outbox::lease_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    if dead {
        // A confirmation token is kept in clear only while its email may
        // still go out; a retry by an operator issues a fresh one.
        diesel::update(
            outbox::table
                .filter(outbox::id.eq(id))
                .filter(outbox::kind.eq(OutboxKind::Confirmation.as_str())),
        )
        .set(outbox::payload.eq("{}"))
        .execute(conn)?;
    }
    Ok(())
}

/// Ends a row that can no longer be delivered (its subscriber was erased,
/// its subscription left); kept for the record.
pub fn cancel(conn: &mut DbConnection, id: &str, reason: &str) -> Result<(), DbError> {
    diesel::update(outbox::table.filter(outbox::id.eq(id)))
        .set((
            outbox::state.eq("cancelled"),
            outbox::payload.eq("{}"),
            outbox::last_error.eq(reason),
            outbox::lease_owner.eq(None::<String>),
            outbox::lease_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Gives back every lease `owner` holds on rows of the given kinds (a
/// stopping worker), so other instances need not wait for the leases to
/// expire; the other worker's rows are left alone.
pub fn release_leases(
    conn: &mut DbConnection,
    owner: &str,
    kinds: &[OutboxKind],
) -> Result<usize, DbError> {
    Ok(diesel::update(
        outbox::table
            .filter(outbox::lease_owner.eq(owner))
            .filter(outbox::kind.eq_any(names(kinds)))
            .filter(outbox::state.eq("pending")),
    )
    .set((
        outbox::lease_owner.eq(None::<String>),
        outbox::lease_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?)
}

/// Gives back rows `owner` claimed and never tried to send (a worker that
/// stops, or a lease too close to its end to start a send in): the lease
/// is cleared and the attempt counted at the claim taken back, so they are
/// claimed again as if never claimed. Returns how many were given back.
pub fn release_unsent(
    conn: &mut DbConnection,
    owner: &str,
    ids: &[&str],
) -> Result<usize, DbError> {
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(diesel::update(
        outbox::table
            .filter(outbox::id.eq_any(ids))
            .filter(outbox::lease_owner.eq(owner))
            .filter(outbox::state.eq("pending")),
    )
    .set((
        outbox::lease_owner.eq(None::<String>),
        outbox::lease_until.eq(None::<NaiveDateTime>),
        outbox::attempts.eq(outbox::attempts - 1),
    ))
    .execute(conn)?)
}

/// Rows in a state, newest first (by id: UUIDv7s sort by creation time, so
/// the newest sent rows are found by walking the primary key backwards,
/// without an index on every state).
pub fn list_by_state(
    conn: &mut DbConnection,
    state: &str,
    limit: i64,
) -> Result<Vec<OutboxRow>, DbError> {
    Ok(outbox::table
        .filter(outbox::state.eq(state))
        .order(outbox::id.desc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)?)
}

/// The earliest time a pending row is due, if any.
pub fn next_due(conn: &mut DbConnection) -> Result<Option<NaiveDateTime>, DbError> {
    Ok(outbox::table
        .filter(outbox::state.eq("pending"))
        .select(diesel::dsl::min(outbox::next_attempt_at))
        .first::<Option<NaiveDateTime>>(conn)?)
}

/// Puts a dead row back in the queue, due now, with a fresh attempt count.
/// A dead confirmation email lost its token, so it gets `fresh_token`
/// (valid for `token_ttl`, for the same sign-up). Returns false when the
/// row does not exist or is not dead.
pub fn retry_dead(
    conn: &mut DbConnection,
    id: &str,
    now: NaiveDateTime,
    fresh_token: &ConfirmationToken,
    token_ttl: chrono::Duration,
) -> Result<bool, DbError> {
    write_transaction(conn, |conn| {
        let row = outbox::table
            .filter(outbox::id.eq(id))
            .filter(outbox::state.eq("dead"))
            .select(OutboxRow::as_select())
            .first(conn)
            .optional()?;
        let Some(row) = row else {
            return Ok(false);
        };
        let has_token = serde_json::from_str::<serde_json::Value>(&row.payload)
            .ok()
            .is_some_and(|p| p.get("token").is_some());
        if row.kind == OutboxKind::Confirmation.as_str()
            && !has_token
            && let Some(subscription_id) = &row.subscription_id
        {
            let request_event_id: Option<String> = confirmation_tokens::table
                .filter(confirmation_tokens::subscription_id.eq(subscription_id))
                .order(confirmation_tokens::created_at.desc())
                .select(confirmation_tokens::request_event_id)
                .first(conn)
                .optional()?;
            if let Some(request_event_id) = request_event_id {
                diesel::insert_into(confirmation_tokens::table)
                    .values(ConfirmationTokenRow {
                        token_sha256: fresh_token.digest().as_str().to_owned(),
                        subscription_id: subscription_id.clone(),
                        request_event_id,
                        created_at: now,
                        expires_at: now + token_ttl,
                        used_at: None,
                    })
                    .execute(conn)?;
                diesel::update(outbox::table.filter(outbox::id.eq(id)))
                    .set(
                        outbox::payload
                            .eq(serde_json::json!({ "token": fresh_token.as_str() }).to_string()),
                    )
                    .execute(conn)?;
            }
        }
        diesel::update(outbox::table.filter(outbox::id.eq(id)))
            .set((
                outbox::state.eq("pending"),
                outbox::attempts.eq(0),
                outbox::next_attempt_at.eq(now),
                outbox::lease_owner.eq(None::<String>),
                outbox::lease_until.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)?;
        Ok(true)
    })
}

/// Outbox gauges: (pending, due now, oldest due time, dead).
pub fn gauges(
    conn: &mut DbConnection,
    now: NaiveDateTime,
) -> Result<(i64, i64, Option<NaiveDateTime>, i64), DbError> {
    let pending = outbox::table
        .filter(outbox::state.eq("pending"))
        .count()
        .get_result::<i64>(conn)?;
    let due = outbox::table
        .filter(outbox::state.eq("pending"))
        .filter(outbox::next_attempt_at.le(now));
    let due_count = due.count().get_result::<i64>(conn)?;
    let oldest = outbox::table
        .filter(outbox::state.eq("pending"))
        .filter(outbox::next_attempt_at.le(now))
        .select(diesel::dsl::min(outbox::next_attempt_at))
        .first::<Option<NaiveDateTime>>(conn)?;
    let dead = outbox::table
        .filter(outbox::state.eq("dead"))
        .count()
        .get_result::<i64>(conn)?;
    Ok((pending, due_count, oldest, dead))
}

#[cfg(test)]
mod tests {
    use super::OutboxKind;

    #[test]
    fn kinds_round_trip_and_the_workers_share_none() {
        for kind in OutboxKind::MAIL.into_iter().chain(OutboxKind::WEBHOOKS) {
            assert_eq!(OutboxKind::parse(kind.as_str()), Some(kind));
        }
        assert!(
            OutboxKind::MAIL
                .iter()
                .all(|k| !OutboxKind::WEBHOOKS.contains(k))
        );
        assert_eq!(OutboxKind::parse("webhook:unknown"), None);
    }
}
