//! Liveness and readiness.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::context::AppContext;
use crate::db::DbError;
use crate::db::migrate::{self, MigrationStatus};
use crate::telemetry::spawn_blocking_in_span;

/// `GET /healthz`: the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "The process runs", body = crate::openapi::schemas::Health)),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers and its schema is current, and the
/// instance is not shutting down.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "The database answers and its schema is current", body = crate::openapi::schemas::Readiness),
        (status = 503, description = "Not ready: `reason` says why", body = crate::openapi::schemas::Readiness),
    ),
)]
pub async fn readyz(ctx: web::Data<AppContext>) -> HttpResponse {
    if ctx.draining.is_set() {
        // Out of rotation before the server stops accepting (see `shutdown`).
        return HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not_ready", "reason": "shutting down" }));
    }
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

/// `GET /metrics`: Prometheus text format. With `[metrics] token` set it
/// wants `Authorization: Bearer <token>`; without, it answers only clients
/// on the loopback interface (the counters show what sign-ups did, which a
/// stranger must not learn).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "Counters, gauges and histograms in the Prometheus text format (`text/plain; version=0.0.4`)",
            body = String, content_type = "text/plain"),
        (status = 401, description = "Without the configured token, or from a non-loopback client when none is configured",
            body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"assent-metrics\"`"))),
    ),
)]
pub async fn metrics(
    req: actix_web::HttpRequest,
    ctx: web::Data<AppContext>,
) -> Result<HttpResponse, crate::error::AppError> {
    use secrecy::ExposeSecret;
    use subtle::ConstantTimeEq;
    let allowed = match &ctx.settings.metrics.token {
        Some(token) => {
            let presented = req
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            bool::from(presented.as_bytes().ct_eq(token.expose_secret().as_bytes()))
        }
        None => req.peer_addr().is_some_and(|peer| peer.ip().is_loopback()),
    };
    if !allowed {
        return Ok(HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer realm=\"assent-metrics\""))
            .content_type("text/plain; charset=utf-8")
            .body("metrics need the configured bearer token ([metrics] token)\n"));
    }
    let now = ctx.clock.now();
    let naive_now = crate::clock::naive(now);
    // The counters are served even while the database is away.
    let outbox = crate::routes::db_call::with_conn(&ctx, crate::error::Format::Json, move |conn| {
        crate::db::repo::outbox::gauges(conn, naive_now)
    })
    .await
    .ok();
    let state = ctx.pool.state();
    let gauges = crate::metrics::DatabaseGauges {
        database_up: outbox.is_some(),
        outbox_pending: outbox.map(|o| o.0).unwrap_or(0),
        outbox_due: outbox.map(|o| o.1).unwrap_or(0),
        outbox_oldest_due_age_seconds: outbox
            .and_then(|o| o.2)
            .map(|t| (naive_now - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0),
        outbox_dead: outbox.map(|o| o.3).unwrap_or(0),
        pool_connections: state.connections,
        pool_idle: state.idle_connections,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(ctx.metrics.render(&gauges)))
}
