//! Ledger verification over HTTP.

use actix_web::{HttpResponse, web};

use super::Admin;
use crate::context::AppContext;
use crate::db::repo::ledger::verify_ledger;
use crate::error::{AppError, Format};
use crate::routes::db_call::with_conn;

/// `GET /admin/ledger/verify`: recomputes every chain; 200 with
/// `{"ok":true,...,"head":...}` or `{"ok":false,...,"broken":{...}}`.
#[utoipa::path(
    get,
    path = "/admin/ledger/verify",
    tag = "admin",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The verification report, whether or not every chain verified (see `ok`)", body = crate::ledger::verify::Report),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn verify(_admin: Admin, ctx: web::Data<AppContext>) -> Result<HttpResponse, AppError> {
    let pool = ctx.pool.clone();
    let report = with_conn(&ctx, Format::Json, move |conn| verify_ledger(&pool, conn)).await?;
    if !report.ok {
        tracing::error!(broken = ?report.broken, "the consent ledger failed verification");
    }
    Ok(HttpResponse::Ok().json(report))
}
