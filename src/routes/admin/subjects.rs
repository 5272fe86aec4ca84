//! One person: look-up, the data package (GDPR Art. 15 and 20) and erasure
//! (Art. 17).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use crate::clock::naive;
use crate::context::AppContext;
use crate::db::repo::leave;
use crate::db::repo::subjects::{self, Subject};
use crate::db::{retry, write_transaction};
use crate::domain::EmailAddress;
use crate::error::{AppError, ErrorKind, FieldError, Format};
use crate::exports::event_json;
use crate::ledger::EventMethod;
use crate::ledger::chain::format_time;
use crate::routes::db_call::with_conn;

fn parse_email(raw: &str) -> Result<EmailAddress, AppError> {
    EmailAddress::parse(raw).map_err(|e| {
        AppError::new(
            ErrorKind::Validation {
                errors: vec![FieldError::new("email", "email_invalid", e.to_string())],
                back_url: String::new(),
            },
            Format::Json,
        )
    })
}

async fn load_subject(ctx: &AppContext, email: &EmailAddress) -> Result<Subject, AppError> {
    let key = email.key();
    with_conn(
        ctx,
        Format::Json,
        move |conn| match subjects::find_by_email_key(conn, &key)? {
            Some(subscriber) => subjects::load(conn, subscriber).map(Some),
            None => Ok(None),
        },
    )
    .await?
    .ok_or_else(|| AppError::new(ErrorKind::NotFound, Format::Json))
}

fn profile_json(subject: &Subject) -> serde_json::Value {
    let s = &subject.subscriber;
    json!({
        "id": s.id,
        "email": s.email,
        "name": s.name,
        "created_at": format_time(s.created_at),
        "erased_at": s.erased_at.map(format_time),
        "chain_seq": s.chain_seq,
        "chain_head": s.chain_head,
    })
}

fn subscriptions_json(subject: &Subject) -> serde_json::Value {
    subject
        .subscriptions
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "list": s.list,
                "state": s.state,
                "consent_version_id": s.consent_version_id,
                "created_at": format_time(s.created_at),
                "updated_at": format_time(s.updated_at),
                "confirmed_at": s.confirmed_at.map(format_time),
                "ended_at": s.ended_at.map(format_time),
            })
        })
        .collect()
}

/// `?email=` of `GET /admin/subscribers`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EmailQuery {
    /// The address, matched case-insensitively.
    #[param(example = "ann@example.org")]
    email: String,
}

/// `GET /admin/subscribers?email=ADDRESS`: subscriptions and history.
#[utoipa::path(
    get,
    path = "/admin/subscribers",
    tag = "admin",
    security(("admin_key" = [])),
    params(EmailQuery),
    responses(
        (status = 200, description = "The person's subscriptions and ledger events", body = crate::openapi::schemas::SubjectLookup),
        (status = 400, response = crate::openapi::responses::MalformedQuery),
        (status = 404, response = crate::openapi::responses::NotFound),
        (status = 422, response = crate::openapi::responses::ValidationFailed),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn lookup(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    query: web::Query<EmailQuery>,
) -> Result<HttpResponse, AppError> {
    let email = parse_email(&query.email)?;
    let subject = load_subject(&ctx, &email).await?;
    Ok(HttpResponse::Ok().json(json!({
        "subscriber": profile_json(&subject),
        "subscriptions": subscriptions_json(&subject),
        "events": subject.events.iter().map(event_json).collect::<Vec<_>>(),
    })))
}

/// `GET /admin/subjects/{email}/export`: everything about the person, with
/// the verbatim texts they agreed to and the hashes that prove them.
#[utoipa::path(
    get,
    path = "/admin/subjects/{email}/export",
    tag = "admin",
    security(("admin_key" = [])),
    params(("email" = String, Path, description = "The person's address (may be percent-encoded)", example = "ann@example.org")),
    responses(
        (status = 200, description = "The person's data package (GDPR Art. 15 and 20)", body = crate::openapi::schemas::SubjectExport,
            headers(
                ("Content-Disposition" = String, description = "`attachment; filename=\"assent-subject-export.json\"`"),
                ("Cache-Control" = String, description = "`no-store`"),
            )),
        (status = 404, response = crate::openapi::responses::NotFound),
        (status = 422, response = crate::openapi::responses::ValidationFailed),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn export(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    email: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let email = parse_email(&email)?;
    let subject = load_subject(&ctx, &email).await?;
    let evidence: Vec<_> = subject
        .evidence
        .iter()
        .map(|e| {
            json!({
                "sha256": e.sha256,
                "ip": e.ip,
                "ip_source": e.ip_source,
                "user_agent": e.user_agent,
                "source_url": e.source_url,
                "recorded_at": format_time(e.recorded_at),
            })
        })
        .collect();
    let texts: Vec<_> = subject
        .consent_texts
        .iter()
        .map(|(sha256, language, body)| json!({ "sha256": sha256, "language": language, "text": body }))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Disposition", "attachment; filename=\"assent-subject-export.json\""))
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "format": "assent-subject-export-v1",
            "exported_at": format_time(naive(ctx.clock.now())),
            "profile": profile_json(&subject),
            "subscriptions": subscriptions_json(&subject),
            "events": subject.events.iter().map(event_json).collect::<Vec<_>>(),
            "evidence": evidence,
            "consent_texts": texts,
            "proof": {
                "chain_seq": subject.subscriber.chain_seq,
                "chain_head": subject.subscriber.chain_head,
                "how_to_verify": "hash = SHA-256 over prev_hash and each event's fields (docs/architecture.md); the last hash equals chain_head",
            },
        })))
}

/// `DELETE /admin/subjects/{email}`: withdraws every consent and erases the
/// person's data (method `admin`).
#[utoipa::path(
    delete,
    path = "/admin/subjects/{email}",
    tag = "admin",
    security(("admin_key" = [])),
    params(("email" = String, Path, description = "The person's address (may be percent-encoded)", example = "ann@example.org")),
    responses(
        (status = 200, description = "Every consent withdrawn and the person's data erased (GDPR Art. 17)", body = crate::openapi::schemas::Erased),
        (status = 404, response = crate::openapi::responses::NotFound),
        (status = 422, response = crate::openapi::responses::ValidationFailed),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn erase(
    admin: Admin,
    ctx: web::Data<AppContext>,
    email: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let email = parse_email(&email)?;
    let key = email.key();
    let now = naive(ctx.clock.now());
    let webhooks = std::sync::Arc::clone(&ctx.webhooks);
    let outcome = with_conn(&ctx, Format::Json, move |conn| {
        let Some(subscriber) = subjects::find_by_email_key(conn, &key)? else {
            return Ok(None);
        };
        retry(|| {
            write_transaction(conn, |conn| {
                leave::withdraw(
                    conn,
                    &subscriber.id,
                    EventMethod::Admin,
                    None,
                    true,
                    &webhooks,
                    now,
                )
            })
        })
        .map(Some)
    })
    .await?;
    ctx.webhook_wake.notify_one();
    let Some(outcome) = outcome else {
        return Err(AppError::new(ErrorKind::NotFound, Format::Json));
    };
    tracing::info!(key = %admin.key_name, withdrawn = outcome.withdrawn, "subject erased by an operator");
    crate::metrics::Metrics::incr(&ctx.metrics.erasures);
    Ok(HttpResponse::Ok().json(json!({
        "status": "erased",
        "withdrawn_subscriptions": outcome.withdrawn,
    })))
}
