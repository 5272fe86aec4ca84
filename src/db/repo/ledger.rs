//! Appending to a subscriber's hash chain, and storing evidence.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::connection::{SimpleConnection, TransactionManager};
use diesel::prelude::*;

use crate::db::models::{ConsentEventRow, EvidenceRow};
use crate::db::schema::{consent_events, evidence, subscribers};
use crate::db::{DbConnection, DbError, read_snapshot, with_index_lookups};
use crate::ledger::chain::{HashedFields, TimeText, format_time};
use crate::ledger::evidence::SealedEvidence;
use crate::ledger::{ChainHead, EventKind, EventMethod, event_hash};

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub kind: EventKind,
    pub occurred_at: NaiveDateTime,
    pub subscription_id: Option<&'a str>,
    pub list_id: Option<&'a str>,
    pub consent_version_id: Option<&'a str>,
    pub consent_sha256: Option<&'a str>,
    pub method: Option<EventMethod>,
    pub evidence_sha256: Option<&'a str>,
    /// Non-personal details as canonical JSON (object keys sorted).
    pub details: serde_json::Value,
}

/// Another writer appended to the same chain first; the transaction must
/// be retried.
fn chain_conflict() -> DbError {
    DbError::Query(diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::SerializationFailure,
        Box::new("concurrent append to a subscriber's consent chain".to_owned()),
    ))
}

/// Reads where a subscriber's chain stands.
pub fn head(conn: &mut DbConnection, subscriber_id: &str) -> Result<ChainHead, DbError> {
    let (seq, hash) = subscribers::table
        .find(subscriber_id)
        .select((subscribers::chain_seq, subscribers::chain_head))
        .first::<(i64, String)>(conn)?;
    Ok(ChainHead { seq, hash })
}

/// Appends events to a subscriber's chain, which must stand at `head`;
/// returns the new head and the ids of the events. The subscriber's head is
/// moved with a compare-and-set, so a concurrent append makes this fail
/// with a retryable error instead of forking the chain.
pub fn append(
    conn: &mut DbConnection,
    subscriber_id: &str,
    head: &ChainHead,
    events: &[NewEvent<'_>],
) -> Result<(ChainHead, Vec<String>), DbError> {
    let (current, rows) = chain_rows(subscriber_id, head, events);
    if move_head(conn, subscriber_id, head.seq, &current)? != 1 {
        return Err(chain_conflict());
    }
    let ids = rows.iter().map(|r| r.id.clone()).collect();
    for row in &rows {
        diesel::insert_into(consent_events::table)
            .values(row)
            .execute(conn)?;
    }
    Ok((current, ids))
}

/// Appends events to many chains at once, each after the events before it
/// for the same subscriber: the heads are read in one statement, moved in
/// one with the same compare-and-set as [`append`] (an append by someone
/// else meanwhile fails the transaction with a retryable error), and the
/// events written in one. The outbox worker records a pass's
/// `confirmation_sent` events this way.
pub fn append_many(
    conn: &mut DbConnection,
    events: &[(&str, NewEvent<'_>)],
) -> Result<(), DbError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<&str> = events.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    let stored: Vec<(String, i64, String)> = with_index_lookups(conn, |conn| {
        subscribers::table
            .filter(subscribers::id.eq_any(&ids))
            .select((
                subscribers::id,
                subscribers::chain_seq,
                subscribers::chain_head,
            ))
            .load(conn)
    })?;
    let mut heads: HashMap<String, (i64, ChainHead)> = stored
        .into_iter()
        .map(|(id, seq, hash)| (id, (seq, ChainHead { seq, hash })))
        .collect();
    let mut rows = Vec::with_capacity(events.len());
    for (subscriber_id, event) in events {
        let (_, head) = heads
            .get_mut(*subscriber_id)
            .ok_or(DbError::Query(diesel::result::Error::NotFound))?;
        rows.push(advance(subscriber_id, head, event));
    }
    let moved = move_heads(conn, &heads)?;
    if moved != heads.len() {
        return Err(chain_conflict());
    }
    insert_rows!(conn, consent_events::table, &rows)?;
    Ok(())
}

/// Moves each subscriber's head from the stored sequence number to the new
/// head, if it still stands there; returns how many moved.
fn move_heads(
    conn: &mut DbConnection,
    heads: &HashMap<String, (i64, ChainHead)>,
) -> Result<usize, DbError> {
    match conn {
        DbConnection::Postgres(pg) => {
            use diesel::sql_types::{Array, BigInt, Text};
            let mut ids = Vec::with_capacity(heads.len());
            let mut stored = Vec::with_capacity(heads.len());
            let mut seqs = Vec::with_capacity(heads.len());
            let mut hashes = Vec::with_capacity(heads.len());
            for (id, (from, head)) in heads {
                ids.push(id.as_str());
                stored.push(*from);
                seqs.push(head.seq);
                hashes.push(head.hash.as_str());
            }
            Ok(diesel::sql_query(
                "UPDATE subscribers SET chain_seq = moved.seq, chain_head = moved.head \
                 FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[]) \
                 AS moved(id, stored_seq, seq, head) \
                 WHERE subscribers.id = moved.id AND subscribers.chain_seq = moved.stored_seq",
            )
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<BigInt>, _>(stored)
            .bind::<Array<BigInt>, _>(seqs)
            .bind::<Array<Text>, _>(hashes)
            .execute(pg)?)
        }
        DbConnection::Sqlite(_) => {
            let mut moved = 0;
            for (id, (from, head)) in heads {
                moved += move_head(conn, id, *from, head)?;
            }
            Ok(moved)
        }
    }
}

/// Moves a subscriber's head from sequence number `from` to `to`, if it
/// still stands there (the compare-and-set of every append); returns how
/// many rows moved, 0 or 1.
fn move_head(
    conn: &mut DbConnection,
    subscriber_id: &str,
    from: i64,
    to: &ChainHead,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        subscribers::table
            .filter(subscribers::id.eq(subscriber_id))
            .filter(subscribers::chain_seq.eq(from)),
    )
    .set((
        subscribers::chain_seq.eq(to.seq),
        subscribers::chain_head.eq(&to.hash),
    ))
    .execute(conn)?)
}

/// Hashes events onto a chain that stands at `head`, without writing them:
/// the rows to insert and the head they leave the chain at.
pub fn chain_rows(
    subscriber_id: &str,
    head: &ChainHead,
    events: &[NewEvent<'_>],
) -> (ChainHead, Vec<ConsentEventRow>) {
    let mut current = head.clone();
    let rows = events
        .iter()
        .map(|event| advance(subscriber_id, &mut current, event))
        .collect();
    (current, rows)
}

/// The row of `event` on a chain that stands at `head`, which it moves on
/// to the new event.
fn advance(subscriber_id: &str, head: &mut ChainHead, event: &NewEvent<'_>) -> ConsentEventRow {
    let row = build_row(subscriber_id, head, event);
    *head = ChainHead {
        seq: row.seq,
        hash: row.hash.clone(),
    };
    row
}

fn build_row(subscriber_id: &str, head: &ChainHead, event: &NewEvent<'_>) -> ConsentEventRow {
    let id = super::new_id();
    let seq = head.seq + 1;
    let details = event.details.to_string();
    let occurred = format_time(event.occurred_at);
    let fields = HashedFields {
        id: &id,
        subscriber_id,
        seq,
        kind: event.kind.as_str(),
        occurred_at: &occurred,
        subscription_id: event.subscription_id,
        list_id: event.list_id,
        consent_version_id: event.consent_version_id,
        consent_sha256: event.consent_sha256,
        method: event.method.map(EventMethod::as_str),
        evidence_sha256: event.evidence_sha256,
        details: &details,
    };
    let hash = event_hash(&head.hash, &fields);
    ConsentEventRow {
        id,
        subscriber_id: subscriber_id.to_owned(),
        seq,
        kind: event.kind.as_str().to_owned(),
        occurred_at: event.occurred_at,
        subscription_id: event.subscription_id.map(str::to_owned),
        list_id: event.list_id.map(str::to_owned),
        consent_version_id: event.consent_version_id.map(str::to_owned),
        consent_sha256: event.consent_sha256.map(str::to_owned),
        method: event.method.map(|m| m.as_str().to_owned()),
        evidence_sha256: event.evidence_sha256.map(str::to_owned),
        details,
        prev_hash: head.hash.clone(),
        hash,
    }
}

/// Recomputes one stored event's hash from its fields and the given
/// previous hash.
pub fn recompute(prev_hash: &str, row: &ConsentEventRow) -> String {
    let occurred = format_time(row.occurred_at);
    event_hash(
        prev_hash,
        &HashedFields {
            id: &row.id,
            subscriber_id: &row.subscriber_id,
            seq: row.seq,
            kind: &row.kind,
            occurred_at: &occurred,
            subscription_id: row.subscription_id.as_deref(),
            list_id: row.list_id.as_deref(),
            consent_version_id: row.consent_version_id.as_deref(),
            consent_sha256: row.consent_sha256.as_deref(),
            method: row.method.as_deref(),
            evidence_sha256: row.evidence_sha256.as_deref(),
            details: &row.details,
        },
    )
}

/// Stores sealed evidence.
pub fn store_evidence(
    conn: &mut DbConnection,
    sealed: &SealedEvidence,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::insert_into(evidence::table)
        .values(evidence_row(sealed, now))
        .execute(conn)?;
    Ok(())
}

/// The row that stores sealed evidence.
pub fn evidence_row(sealed: &SealedEvidence, now: NaiveDateTime) -> EvidenceRow {
    EvidenceRow {
        sha256: sealed.sha256.clone(),
        nonce: sealed.nonce.clone(),
        ip: sealed.evidence.ip.clone(),
        ip_source: sealed.evidence.ip_source.clone(),
        user_agent: sealed.evidence.user_agent.clone(),
        source_url: sealed.evidence.source_url.clone(),
        recorded_at: now,
    }
}

/// A subscriber's events in chain order.
pub fn events_of(
    conn: &mut DbConnection,
    subscriber_id: &str,
) -> Result<Vec<ConsentEventRow>, DbError> {
    Ok(consent_events::table
        .filter(consent_events::subscriber_id.eq(subscriber_id))
        .order(consent_events::seq.asc())
        .select(ConsentEventRow::as_select())
        .load(conn)?)
}

/// A subscriber row as verification reads it: id, `chain_seq`,
/// `chain_head`, `erased_at`.
type SubscriberHead = (String, i64, String, Option<NaiveDateTime>);

/// An evidence row's hashed fields: nonce, IP, IP source, user agent,
/// source URL.
type EvidenceData = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A page of subscribers, their events, and the evidence rows those events
/// point to (that still exist), by hash.
type VerifyPage = (
    Vec<SubscriberHead>,
    Vec<ConsentEventRow>,
    HashMap<String, EvidenceData>,
);

/// Subscribers per verification page: with their events and evidence, a
/// page is about two megabytes, and up to five are in memory at once (one
/// being read, one queued, one having its evidence looked up, one queued,
/// one being checked). Larger pages were no faster (docs/performance.md).
pub const VERIFY_PAGE_SIZE: i64 = 1_000;

/// Evidence hashes looked up per statement: one array parameter on
/// PostgreSQL; on SQLite one parameter each, well under its limit of
/// 32,766.
const EVIDENCE_LOOKUP_CHUNK: usize = 10_000;

/// Verifies every chain and the evidence its events point to, paging
/// through subscribers in id order so memory stays flat whatever the size
/// of the ledger. Everything is read in one read-only snapshot, so
/// sign-ups committed meanwhile cannot make a sound chain look broken. One
/// thread reads the next page while the caller's thread hashes the
/// current one. With a `helper` connection on PostgreSQL, a third thread
/// looks up the evidence of each page on it, in the same snapshot
/// (exported and imported), while the next page's events are read: the
/// evidence look-ups (random probes of its primary key) take PostgreSQL
/// longer than the events themselves.
pub fn verify_all(
    conn: &mut DbConnection,
    helper: Option<&mut DbConnection>,
    page_size: i64,
) -> Result<crate::ledger::verify::Report, DbError> {
    verify_all_pausing(conn, helper, page_size, || {})
}

/// How long [`verify_ledger`] waits for a second connection.
const HELPER_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Verifies the whole ledger on `conn` (see [`verify_all`]), with a second
/// connection from `pool` looking up evidence alongside if one is free
/// within 200 ms; else everything is read on `conn`.
pub fn verify_ledger(
    pool: &crate::db::DbPool,
    conn: &mut DbConnection,
) -> Result<crate::ledger::verify::Report, DbError> {
    let mut helper = pool.get_timeout(HELPER_WAIT).ok();
    verify_all(conn, helper.as_deref_mut(), VERIFY_PAGE_SIZE)
}

/// [`verify_all`], calling `pause` on the reading thread after each page of
/// subscribers is read and before their events are: where a write by
/// someone else would show as a broken chain if the reads were not one
/// snapshot. Tests write there; [`verify_all`] passes a no-op.
pub fn verify_all_pausing(
    conn: &mut DbConnection,
    helper: Option<&mut DbConnection>,
    page_size: i64,
    pause: impl FnMut() + Send,
) -> Result<crate::ledger::verify::Report, DbError> {
    use crate::ledger::verify::Verifier;
    read_snapshot(conn, |conn| {
        let mut helper = share_snapshot(conn, helper)?;
        let (pages, received) = std::sync::mpsc::sync_channel::<VerifyPage>(1);
        let report = std::thread::scope(|scope| {
            let reader = match helper.as_deref_mut() {
                Some(helper) => {
                    let (events, events_read) = std::sync::mpsc::sync_channel::<EventPage>(1);
                    let looker = scope.spawn(move || look_up_evidence(helper, events_read, pages));
                    let reader = scope.spawn(move || {
                        read_pages(conn, page_size, pause, |_, page| {
                            Ok(events.send(page).is_ok())
                        })
                    });
                    (reader, Some(looker))
                }
                None => {
                    // One connection: each page's evidence after its events.
                    let reader = scope.spawn(move || {
                        read_pages(conn, page_size, pause, |conn, (page, rows)| {
                            let evidence = evidence_of(conn, &rows)?;
                            Ok(pages.send((page, rows, evidence)).is_ok())
                        })
                    });
                    (reader, None)
                }
            };
            let mut verifier = Verifier::default();
            let mut broken = None;
            for (page, rows, evidence) in &received {
                if let Err(problem) = check_page(&mut verifier, &page, &rows, &evidence) {
                    broken = Some(problem);
                    break;
                }
            }
            // Stops the readers if verification ended early.
            drop(received);
            let panicked = || DbError::Unavailable("the ledger reader panicked".to_owned());
            reader.0.join().map_err(|_| panicked())??;
            if let Some(looker) = reader.1 {
                looker.join().map_err(|_| panicked())??;
            }
            Ok::<_, DbError>(match broken {
                Some(problem) => verifier.fail(problem),
                None => verifier.finish(),
            })
        });
        if let Some(helper) = helper {
            <DbConnection as Connection>::TransactionManager::commit_transaction(helper)?;
        }
        report
    })
}

/// A page of subscribers and their events, before their evidence.
type EventPage = (Vec<SubscriberHead>, Vec<ConsentEventRow>);

/// Puts `helper` (PostgreSQL only) in a read-only transaction that sees the
/// snapshot `conn`'s transaction reads, or returns `None` to read
/// everything on `conn`.
fn share_snapshot<'h>(
    conn: &mut DbConnection,
    helper: Option<&'h mut DbConnection>,
) -> Result<Option<&'h mut DbConnection>, DbError> {
    let (DbConnection::Postgres(pg), Some(helper)) = (conn, helper) else {
        return Ok(None);
    };
    let DbConnection::Postgres(other) = helper else {
        return Ok(None);
    };
    #[derive(QueryableByName)]
    struct Exported {
        #[diesel(sql_type = diesel::sql_types::Text)]
        snapshot: String,
    }
    let exported: Exported =
        diesel::sql_query("SELECT pg_export_snapshot() AS snapshot").get_result(pg)?;
    // The identifier comes from PostgreSQL itself; it is quoted all the same.
    let id = exported.snapshot.replace('\'', "''");
    diesel::connection::AnsiTransactionManager::begin_transaction_sql(
        other,
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    )?;
    if let Err(error) = other.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{id}'")) {
        let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(helper);
        return Err(error.into());
    }
    Ok(Some(helper))
}

/// The evidence thread: looks up the evidence of each page of events.
fn look_up_evidence(
    conn: &mut DbConnection,
    events: std::sync::mpsc::Receiver<EventPage>,
    pages: std::sync::mpsc::SyncSender<VerifyPage>,
) -> Result<(), DbError> {
    for (page, rows) in events {
        let evidence = evidence_of(conn, &rows)?;
        if pages.send((page, rows, evidence)).is_err() {
            break;
        }
    }
    Ok(())
}

/// Reads pages of subscribers and their events, handing each to
/// `deliver` until there are no more or it returns false (the receiving
/// end is gone).
fn read_pages(
    conn: &mut DbConnection,
    page_size: i64,
    mut pause: impl FnMut(),
    mut deliver: impl FnMut(&mut DbConnection, EventPage) -> Result<bool, DbError>,
) -> Result<(), DbError> {
    let mut after = String::new();
    while let Some(page) = read_page(conn, page_size, &mut after, &mut pause)? {
        if !deliver(conn, page)? {
            break;
        }
    }
    Ok(())
}

/// The next page of subscribers after `after` (moved on to its last id),
/// with their events; `None` past the last subscriber.
fn read_page(
    conn: &mut DbConnection,
    page_size: i64,
    after: &mut String,
    pause: &mut impl FnMut(),
) -> Result<Option<EventPage>, DbError> {
    let page: Vec<SubscriberHead> = subscribers::table
        .filter(subscribers::id.gt(&*after))
        .order(subscribers::id.asc())
        .limit(page_size)
        .select((
            subscribers::id,
            subscribers::chain_seq,
            subscribers::chain_head,
            subscribers::erased_at,
        ))
        .load(conn)?;
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Ok(None);
    };
    let first = first.0.clone();
    after.clone_from(&last.0);
    pause();
    // Subscriber pages are contiguous ranges of ids, so their events are
    // one range scan of the (subscriber_id, seq) index.
    let events = || {
        consent_events::table
            .filter(consent_events::subscriber_id.ge(first.clone()))
            .filter(consent_events::subscriber_id.le(after.clone()))
            .order((
                consent_events::subscriber_id.asc(),
                consent_events::seq.asc(),
            ))
    };
    // On the concrete connection: the rows are decoded without the
    // connection enum's extra layer, which showed in the profile.
    let rows: Vec<ConsentEventRow> = match conn {
        DbConnection::Postgres(pg) => events().select(ConsentEventRow::as_select()).load(pg)?,
        DbConnection::Sqlite(lite) => events().select(ConsentEventRow::as_select()).load(lite)?,
    };
    Ok(Some((page, rows)))
}

/// The evidence rows the events point to, by primary key. A separate
/// statement rather than a join: PostgreSQL plans the join as a hash join
/// over the whole evidence table for every page, many times slower than
/// these index look-ups.
fn evidence_of(
    conn: &mut DbConnection,
    rows: &[ConsentEventRow],
) -> Result<HashMap<String, EvidenceData>, DbError> {
    let mut hashes: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.evidence_sha256.as_deref())
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    let mut found = HashMap::with_capacity(hashes.len());
    for chunk in hashes.chunks(EVIDENCE_LOOKUP_CHUNK) {
        let rows = evidence::table
            .filter(evidence::sha256.eq_any(chunk))
            .select((
                evidence::sha256,
                (
                    evidence::nonce,
                    evidence::ip,
                    evidence::ip_source,
                    evidence::user_agent,
                    evidence::source_url,
                ),
            ));
        // On the concrete connection, as the events (see `read_page`).
        let loaded: Vec<(String, EvidenceData)> = match conn {
            DbConnection::Postgres(pg) => rows.load(pg)?,
            DbConnection::Sqlite(lite) => rows.load(lite)?,
        };
        found.extend(loaded);
    }
    Ok(found)
}

/// Checks a page: its two halves on two threads (chains are independent),
/// then adds what verified to `verifier` in subscriber order.
fn check_page(
    verifier: &mut crate::ledger::verify::Verifier,
    page: &[SubscriberHead],
    rows: &[ConsentEventRow],
    evidence: &HashMap<String, EvidenceData>,
) -> Result<(), crate::ledger::verify::Broken> {
    let middle = page.len() / 2;
    let split = page
        .get(middle)
        .map(|(id, ..)| rows.partition_point(|row| row.subscriber_id < *id))
        .unwrap_or(rows.len());
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| check_part(&page[middle..], &rows[split..], evidence));
        let first = check_part(&page[..middle], &rows[..split], evidence);
        (first, second.join())
    });
    // A panic while hashing is a bug, not a broken chain.
    let second = second.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    for part in [first, second] {
        for chain in &part.sound {
            verifier.add(chain);
        }
        if let Some(broken) = part.broken {
            return Err(verifier.broke(broken));
        }
    }
    Ok(())
}

/// The chains of part of a page that verified, in order, up to the first
/// that did not.
struct CheckedPart<'a> {
    sound: Vec<crate::ledger::verify::SoundChain<'a>>,
    broken: Option<crate::ledger::verify::BrokenChain>,
}

fn check_part<'a>(
    page: &'a [SubscriberHead],
    rows: &'a [ConsentEventRow],
    evidence: &'a HashMap<String, EvidenceData>,
) -> CheckedPart<'a> {
    use crate::ledger::evidence::EvidenceFields;
    use crate::ledger::verify::{BrokenChain, StoredEvent, StoredSubscriber, check_chain};
    let mut part = CheckedPart {
        sound: Vec::with_capacity(page.len()),
        broken: None,
    };
    let times: Vec<TimeText> = rows.iter().map(|r| TimeText::new(r.occurred_at)).collect();
    let mut start = 0;
    for (id, seq, head, erased_at) in page {
        let end = start
            + rows[start..]
                .iter()
                .take_while(|r| &r.subscriber_id == id)
                .count();
        let events: Vec<StoredEvent<'_>> = rows[start..end]
            .iter()
            .zip(&times[start..end])
            .map(|(row, time)| StoredEvent {
                fields: HashedFields {
                    id: &row.id,
                    subscriber_id: &row.subscriber_id,
                    seq: row.seq,
                    kind: &row.kind,
                    occurred_at: time.as_str(),
                    subscription_id: row.subscription_id.as_deref(),
                    list_id: row.list_id.as_deref(),
                    consent_version_id: row.consent_version_id.as_deref(),
                    consent_sha256: row.consent_sha256.as_deref(),
                    method: row.method.as_deref(),
                    evidence_sha256: row.evidence_sha256.as_deref(),
                    details: &row.details,
                },
                prev_hash: &row.prev_hash,
                hash: &row.hash,
                evidence: row
                    .evidence_sha256
                    .as_ref()
                    .and_then(|h| evidence.get(h))
                    .map(
                        |(nonce, ip, ip_source, user_agent, source_url)| EvidenceFields {
                            nonce,
                            ip: ip.as_deref(),
                            ip_source: ip_source.as_deref(),
                            user_agent: user_agent.as_deref(),
                            source_url: source_url.as_deref(),
                        },
                    ),
            })
            .collect();
        let subscriber = StoredSubscriber {
            id,
            seq: *seq,
            head,
            erased: erased_at.is_some(),
        };
        match check_chain(subscriber, &events) {
            Ok(Some(chain)) => part.sound.push(chain),
            Ok(None) => {}
            Err(broken) => {
                part.broken = Some(broken);
                return part;
            }
        }
        start = end;
    }
    if let Some(orphan) = rows.get(start) {
        part.broken = Some(BrokenChain {
            broken: crate::ledger::verify::Broken {
                subscriber_id: orphan.subscriber_id.clone(),
                seq: orphan.seq,
                event_id: Some(orphan.id.clone()),
                reason: "an event is out of order in its chain".to_owned(),
            },
            events_before: 0,
        });
    }
    part
}
