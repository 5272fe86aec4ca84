//! The outbox for operators: dead letters and retrying them.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use crate::clock::naive;
use crate::context::AppContext;
use crate::db::repo::outbox as repo;
use crate::error::{AppError, ErrorKind, FieldError, Format};
use crate::ledger::chain::format_time;
use crate::routes::db_call::with_conn;

/// `?state=` of `GET /admin/outbox`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateQuery {
    /// `dead` (default), `pending`, `sent` or `cancelled`.
    #[param(value_type = Option<crate::openapi::schemas::OutboxState>)]
    state: Option<String>,
    /// At most this many rows (default 100, clamped to 1 to 1,000).
    limit: Option<i64>,
}

/// `GET /admin/outbox?state=dead|pending|sent|cancelled&limit=N` (newest first;
/// payloads are never shown).
#[utoipa::path(
    get,
    path = "/admin/outbox",
    tag = "admin",
    security(("admin_key" = [])),
    params(StateQuery),
    responses(
        (status = 200, description = "Outbox rows in one state, newest first; payloads are never shown", body = crate::openapi::schemas::OutboxRows),
        (status = 400, response = crate::openapi::responses::MalformedQuery),
        (status = 422, response = crate::openapi::responses::ValidationFailed),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn index(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    query: web::Query<StateQuery>,
) -> Result<HttpResponse, AppError> {
    let state = query.state.clone().unwrap_or_else(|| "dead".to_owned());
    if !matches!(state.as_str(), "dead" | "pending" | "sent" | "cancelled") {
        return Err(AppError::new(
            ErrorKind::Validation {
                errors: vec![FieldError::new(
                    "state",
                    "state_invalid",
                    "state is dead, pending, sent or cancelled",
                )],
                back_url: String::new(),
            },
            Format::Json,
        ));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1_000);
    let rows = with_conn(&ctx, Format::Json, move |conn| {
        repo::list_by_state(conn, &state, limit)
    })
    .await?;
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "kind": r.kind,
                "state": r.state,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "message_id": r.message_id,
                "subscription_id": r.subscription_id,
                // Where a webhook row goes (host only: a path or query may
                // hold the receiver's token); gone once delivered.
                "webhook_host": webhook_host(r),
                "created_at": format_time(r.created_at),
                "next_attempt_at": format_time(r.next_attempt_at),
                "sent_at": r.sent_at.map(format_time),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "rows": rows })))
}

fn webhook_host(row: &crate::db::models::OutboxRow) -> Option<String> {
    match repo::OutboxKind::parse(&row.kind) {
        Some(repo::OutboxKind::Webhook(_)) => {
            crate::webhooks::StoredWebhook::from_payload(&row.payload)
                .ok()
                .map(|stored| stored.host)
        }
        _ => None,
    }
}

/// `POST /admin/outbox/{id}/retry`: a dead row goes back to the queue, due
/// now, with a fresh attempt count.
#[utoipa::path(
    post,
    path = "/admin/outbox/{id}/retry",
    tag = "admin",
    security(("admin_key" = [])),
    params(("id" = String, Path, description = "The outbox row's id")),
    responses(
        (status = 200, description = "The dead row is queued again, due now", body = crate::openapi::schemas::Retried),
        (status = 409, response = crate::openapi::responses::Conflict),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn retry(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let now = naive(ctx.clock.now());
    let id = id.into_inner();
    let row_id = id.clone();
    let fresh_token = crate::domain::ConfirmationToken::generate();
    let token_ttl = chrono::Duration::hours(ctx.settings.tokens.confirmation_ttl_hours as i64);
    let retried = with_conn(&ctx, Format::Json, move |conn| {
        repo::retry_dead(conn, &row_id, now, &fresh_token, token_ttl)
    })
    .await?;
    if !retried {
        return Err(AppError::new(
            ErrorKind::Conflict("no dead outbox row has this id".to_owned()),
            Format::Json,
        ));
    }
    ctx.outbox_wake.notify_one();
    ctx.webhook_wake.notify_one();
    Ok(HttpResponse::Ok().json(json!({ "id": id, "state": "pending" })))
}
