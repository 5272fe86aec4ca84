//! Compliance exports: consent records as CSV (RFC 4180, spreadsheet
//! formulas neutralised), NDJSON or ISO/IEC TS 27560-shaped JSON; the raw
//! ledger as NDJSON; written page by page to any sink.

use chrono::NaiveDateTime;
use serde_json::{Value, json};

use crate::db::models::ConsentEventRow;
use crate::db::repo::exports::{self, ConsentRecord, ExportFilter};
use crate::db::{DbConnection, DbError};
use crate::ledger::chain::format_time;
use crate::registry::ListRegistry;

/// Rows read per query.
pub const PAGE_SIZE: i64 = 2_000;

/// How consent records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentFormat {
    Csv,
    Ndjson,
    Iso27560,
}

impl ConsentFormat {
    /// Parses `csv`, `ndjson` or `iso27560`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "csv" => Some(ConsentFormat::Csv),
            "ndjson" => Some(ConsentFormat::Ndjson),
            "iso27560" => Some(ConsentFormat::Iso27560),
            _ => None,
        }
    }

    /// The media type of the output.
    pub fn content_type(self) -> &'static str {
        match self {
            ConsentFormat::Csv => "text/csv; charset=utf-8",
            ConsentFormat::Ndjson | ConsentFormat::Iso27560 => "application/x-ndjson",
        }
    }
}

fn time(value: Option<NaiveDateTime>) -> Option<String> {
    value.map(format_time)
}

type Column = (&'static str, fn(&ConsentRecord) -> Option<String>);

/// The columns of a consent record, in order.
const COLUMNS: &[Column] = &[
    ("subscription_id", |r| Some(r.subscription_id.clone())),
    ("list", |r| Some(r.list.clone())),
    ("subscriber_id", |r| Some(r.subscriber_id.clone())),
    ("email", |r| r.email.clone()),
    ("name", |r| r.name.clone()),
    ("email_hmac", |r| Some(r.email_hmac.clone())),
    ("erased", |r| Some(r.erased.to_string())),
    ("state", |r| Some(r.state.clone())),
    ("consent_version_id", |r| r.consent_version_id.clone()),
    ("consent_sha256", |r| r.consent_sha256.clone()),
    ("consent_language", |r| r.consent_language.clone()),
    ("requested_at", |r| time(r.requested_at)),
    ("requested_method", |r| r.requested_method.clone()),
    ("requested_ip", |r| r.requested_ip.clone()),
    ("requested_user_agent", |r| r.requested_user_agent.clone()),
    ("requested_source_url", |r| r.requested_source_url.clone()),
    ("token_expires_at", |r| r.token_expires_at.clone()),
    ("confirmation_sent_at", |r| time(r.confirmation_sent_at)),
    ("confirmation_message_id", |r| {
        r.confirmation_message_id.clone()
    }),
    ("confirmed_at", |r| time(r.confirmed_at)),
    ("confirmed_method", |r| r.confirmed_method.clone()),
    ("confirmed_ip", |r| r.confirmed_ip.clone()),
    ("confirmed_user_agent", |r| r.confirmed_user_agent.clone()),
    ("ended_at", |r| time(r.ended_at)),
    ("ended_event", |r| r.ended_event.clone()),
    ("ended_method", |r| r.ended_method.clone()),
    ("chain_seq", |r| Some(r.chain_seq.to_string())),
    ("chain_head", |r| Some(r.chain_head.clone())),
];

/// Makes a cell safe to open in a spreadsheet: a leading `=`, `+`, `-`,
/// `@`, tab or carriage return would start a formula, so it gets a `'`.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn csv_line(cells: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(512));
    let cells: Vec<String> = cells
        .into_iter()
        .map(|c| neutralise(&c).into_owned())
        .collect();
    // Writing to a Vec cannot fail.
    let _ = writer.write_record(&cells);
    writer.into_inner().unwrap_or_default()
}

/// The CSV header line.
pub fn csv_header() -> Vec<u8> {
    csv_line(COLUMNS.iter().map(|(name, _)| (*name).to_owned()))
}

/// One record as a CSV line.
pub fn csv_record(record: &ConsentRecord) -> Vec<u8> {
    csv_line(
        COLUMNS
            .iter()
            .map(|(_, get)| get(record).unwrap_or_default()),
    )
}

/// One record as a JSON object with the CSV's columns.
pub fn json_record(record: &ConsentRecord) -> Value {
    let mut map = serde_json::Map::new();
    for (name, get) in COLUMNS {
        let value = match *name {
            "erased" => Value::Bool(record.erased),
            "chain_seq" => Value::from(record.chain_seq),
            _ => get(record).map(Value::String).unwrap_or(Value::Null),
        };
        map.insert((*name).to_owned(), value);
    }
    Value::Object(map)
}

/// One record in the shape of ISO/IEC TS 27560 (consent record information
/// structure); see docs/compliance.md for the field mapping.
pub fn iso27560_record(record: &ConsentRecord, lists: &ListRegistry, base_url: &str) -> Value {
    let list = lists.by_slug(&record.list);
    let controller = list.map(|l| &l.settings.controller);
    let (event_type, event_state, event_time) = match record.state.as_str() {
        "confirmed" => ("confirmed", "given", record.confirmed_at),
        "pending" => ("requested", "requested", record.requested_at),
        "unsubscribed" | "withdrawn" => ("withdrawn", "withdrawn", record.ended_at),
        _ => ("unknown", "unknown", None),
    };
    json!({
        "schema_version": "ISO/IEC TS 27560:2023 (Assent mapping v1)",
        "record_id": record.subscription_id,
        "pii_principal_id": record.email_hmac,
        "controller": {
            "name": controller.and_then(|c| c.name.clone()),
            "address": controller.and_then(|c| c.address.clone()),
            "contact": controller.and_then(|c| c.contact.clone()),
        },
        "purposes": [{
            "purpose": list.map(|l| l.settings.purpose.clone()),
            "lawful_basis": "consent (GDPR Art. 6(1)(a))",
            "processing": ["email delivery", "double opt-in validation"],
        }],
        "language": record.consent_language,
        "collection_method": match record.requested_method.as_deref() {
            Some("form") => "web form (double opt-in)",
            Some("api") => "API on behalf of a web form (double opt-in)",
            Some("single_opt_in") => "web form (single opt-in)",
            _ => "web form",
        },
        "notice": {
            "consent_version_id": record.consent_version_id,
            "consent_text_sha256": record.consent_sha256,
            "text_url": record.consent_sha256.as_ref().map(|h| format!("{}/admin/exports/consent-texts#{h}", base_url.trim_end_matches('/'))),
        },
        "event_time": time(event_time),
        "event_type": event_type,
        "event_state": event_state,
        "events": {
            "requested_at": time(record.requested_at),
            "confirmation_sent_at": time(record.confirmation_sent_at),
            "confirmed_at": time(record.confirmed_at),
            "withdrawn_at": time(record.ended_at),
        },
        "withdrawal_method": record.ended_method.clone().unwrap_or_else(|| {
            "one-click unsubscribe (RFC 8058) from any email, the unsubscribe page, or the withdrawal page".to_owned()
        }),
        "retention": list.map(|l| l.settings.retention.clone()),
        "proof": { "chain_seq": record.chain_seq, "chain_head": record.chain_head },
    })
}

fn ndjson_line(value: &Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Writes every consent record matching `filter` to `sink`, a page at a
/// time. `sink` returns false to stop (the reader went away). Returns the
/// number of records written.
pub fn write_consent(
    conn: &mut DbConnection,
    filter: &ExportFilter,
    format: ConsentFormat,
    lists: &ListRegistry,
    base_url: &str,
    sink: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<u64, DbError> {
    let versions = exports::version_index(conn)?;
    if format == ConsentFormat::Csv && !sink(csv_header()) {
        return Ok(0);
    }
    let mut after = String::new();
    let mut written = 0u64;
    loop {
        let page = exports::consent_page(conn, filter, &versions, &after, PAGE_SIZE)?;
        let Some(last) = page.last() else {
            return Ok(written);
        };
        after = last.subscription_id.clone();
        let mut chunk = Vec::with_capacity(page.len() * 400);
        for record in &page {
            match format {
                ConsentFormat::Csv => chunk.extend(csv_record(record)),
                ConsentFormat::Ndjson => chunk.extend(ndjson_line(&json_record(record))),
                ConsentFormat::Iso27560 => {
                    chunk.extend(ndjson_line(&iso27560_record(record, lists, base_url)))
                }
            }
        }
        written += page.len() as u64;
        if !sink(chunk) {
            return Ok(written);
        }
    }
}

/// One ledger event as exported.
pub fn event_json(event: &ConsentEventRow) -> Value {
    json!({
        "id": event.id,
        "subscriber_id": event.subscriber_id,
        "seq": event.seq,
        "kind": event.kind,
        "occurred_at": format_time(event.occurred_at),
        "subscription_id": event.subscription_id,
        "list_id": event.list_id,
        "consent_version_id": event.consent_version_id,
        "consent_sha256": event.consent_sha256,
        "method": event.method,
        "evidence_sha256": event.evidence_sha256,
        "details": serde_json::from_str::<Value>(&event.details).unwrap_or(Value::String(event.details.clone())),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    })
}

/// Writes the raw ledger (from `since`) as NDJSON, in time order.
pub fn write_events(
    conn: &mut DbConnection,
    since: Option<NaiveDateTime>,
    sink: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<u64, DbError> {
    let mut after: Option<(NaiveDateTime, String)> = None;
    let mut written = 0u64;
    loop {
        let page = exports::events_page(conn, since, after.as_ref(), PAGE_SIZE)?;
        let Some(last) = page.last() else {
            return Ok(written);
        };
        after = Some((last.occurred_at, last.id.clone()));
        let mut chunk = Vec::with_capacity(page.len() * 600);
        for event in &page {
            chunk.extend(ndjson_line(&event_json(event)));
        }
        written += page.len() as u64;
        if !sink(chunk) {
            return Ok(written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(
            neutralise("=HYPERLINK(\"http://x\")"),
            "'=HYPERLINK(\"http://x\")"
        );
        for bad in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(neutralise(bad).starts_with('\''), "{bad:?}");
        }
        assert_eq!(neutralise("ann@example.org"), "ann@example.org");
    }

    #[test]
    fn csv_lines_quote_per_rfc_4180() {
        let line = csv_line(["a,b".to_owned(), "say \"hi\"".to_owned(), "=1+1".to_owned()]);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "\"a,b\",\"say \"\"hi\"\"\",'=1+1\r\n"
        );
    }
}
