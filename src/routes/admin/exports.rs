//! Compliance audit exports, streamed.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDateTime};
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use super::stream::stream;
use crate::context::AppContext;
use crate::db::repo::exports::{ExportFilter, consent_texts as load_texts};
use crate::error::{AppError, ErrorKind, FieldError, Format};
use crate::exports::{ConsentFormat, write_consent, write_events};
use crate::ledger::chain::format_time;
use crate::routes::db_call::with_conn;

/// The query of the export routes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Consent records: `csv` (default), `ndjson` or `iso27560`; the
    /// ledger: `ndjson` only.
    #[param(value_type = Option<crate::openapi::schemas::ExportFormat>)]
    format: Option<String>,
    /// Only this list (consent records; ignored by the ledger export).
    list: Option<String>,
    /// An RFC 3339 time: records with an event at or after it.
    #[param(format = DateTime)]
    since: Option<String>,
    /// An RFC 3339 time: records with an event before it (consent records;
    /// ignored by the ledger export).
    #[param(format = DateTime)]
    until: Option<String>,
}

fn invalid(field: &'static str, code: &'static str, detail: &str) -> AppError {
    AppError::new(
        ErrorKind::Validation {
            errors: vec![FieldError::new(field, code, detail)],
            back_url: String::new(),
        },
        Format::Json,
    )
}

fn parse_time(field: &'static str, value: Option<&str>) -> Result<Option<NaiveDateTime>, AppError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.naive_utc())
                .map_err(|_| {
                    invalid(
                        field,
                        "time_invalid",
                        "use an RFC 3339 time such as 2026-01-31T00:00:00Z",
                    )
                })
        })
        .transpose()
}

/// `GET /admin/exports/consent?format=csv|ndjson|iso27560&list=&since=&until=`:
/// one record per subscription with activity in the period.
#[utoipa::path(
    get,
    path = "/admin/exports/consent",
    tag = "admin",
    security(("admin_key" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "One consent record per subscription, streamed: CSV (RFC 4180, formulas neutralised) for `format=csv`, one `ConsentRecord` JSON object per line for `ndjson`, one ISO/IEC TS 27560-shaped object per line for `iso27560`",
            content((String = "text/csv"), (String = "application/x-ndjson")), headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, response = crate::openapi::responses::MalformedQuery),
        (status = 422, response = crate::openapi::responses::ValidationFailed),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn consent(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, AppError> {
    let format =
        ConsentFormat::parse(query.format.as_deref().unwrap_or("csv")).ok_or_else(|| {
            invalid(
                "format",
                "format_invalid",
                "format is csv, ndjson or iso27560",
            )
        })?;
    let list_id = match &query.list {
        Some(slug) => Some(
            ctx.lists
                .by_slug(slug)
                .map(|l| l.id.clone())
                .ok_or_else(|| invalid("list", "list_unknown", "there is no such list"))?,
        ),
        None => None,
    };
    let filter = ExportFilter {
        list_id,
        since: parse_time("since", query.since.as_deref())?,
        until: parse_time("until", query.until.as_deref())?,
    };
    let context = ctx.clone().into_inner();
    stream(
        &ctx,
        format.content_type(),
        Box::new(move |conn, sink| {
            let base = context.settings.base_url.to_string();
            write_consent(conn, &filter, format, &context.lists, &base, sink)
        }),
    )
    .await
}

/// `GET /admin/exports/consent-texts`: every consent text by hash.
#[utoipa::path(
    get,
    path = "/admin/exports/consent-texts",
    tag = "admin",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "Every consent text ever registered, oldest first", body = crate::openapi::schemas::ConsentTexts),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn consent_texts(
    _admin: Admin,
    ctx: web::Data<AppContext>,
) -> Result<HttpResponse, AppError> {
    let texts = with_conn(&ctx, Format::Json, load_texts).await?;
    let texts: Vec<_> = texts
        .iter()
        .map(|t| json!({ "sha256": t.sha256, "language": t.language, "first_seen_at": format_time(t.first_seen_at), "text": t.body }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "consent_texts": texts })))
}

/// `GET /admin/exports/events?format=ndjson&since=`: the raw ledger.
#[utoipa::path(
    get,
    path = "/admin/exports/events",
    tag = "admin",
    security(("admin_key" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The raw ledger, streamed: one `LedgerEvent` JSON object per line",
            body = String, content_type = "application/x-ndjson", headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, response = crate::openapi::responses::MalformedQuery),
        (status = 422, response = crate::openapi::responses::ValidationFailed),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn events(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, AppError> {
    if query.format.as_deref().is_some_and(|f| f != "ndjson") {
        return Err(invalid(
            "format",
            "format_invalid",
            "the ledger exports as ndjson",
        ));
    }
    let since = parse_time("since", query.since.as_deref())?;
    stream(
        &ctx,
        "application/x-ndjson",
        Box::new(move |conn, sink| write_events(conn, since, sink)),
    )
    .await
}
