//! Liveness and readiness.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::context::AppContext;
use crate::db::DbError;
use crate::db::migrate::{self, MigrationStatus};
use crate::telemetry::spawn_blocking_in_span;

/// `GET /healthz`: the process runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers and its schema is current.
pub async fn readyz(ctx: web::Data<AppContext>) -> HttpResponse {
    let pool = ctx.pool.clone();
    let checked = spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        migrate::status(&mut conn).map_err(|e| DbError::Unavailable(e.to_string()))
    })
    .await;
    match checked {
        Ok(Ok(MigrationStatus::Current)) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Ok(Ok(status)) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not_ready", "reason": format!("{status:?}") })),
        Ok(Err(error)) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not_ready", "reason": error.to_string() })),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not_ready", "reason": "shutting down" })),
    }
}
