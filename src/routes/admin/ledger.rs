//! Ledger verification over HTTP.

use actix_web::{HttpResponse, web};

use super::Admin;
use crate::context::AppContext;
use crate::db::repo::ledger::{VERIFY_PAGE_SIZE, verify_all};
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
    let report = with_conn(&ctx, Format::Json, move |conn| {
        // A second connection, if one is free, looks up evidence alongside.
        let mut helper = pool.get_timeout(std::time::Duration::from_millis(200)).ok();
        verify_all(conn, helper.as_deref_mut(), VERIFY_PAGE_SIZE)
    })
    .await?;
    if !report.ok {
        tracing::error!(broken = ?report.broken, "the consent ledger failed verification");
    }
    Ok(HttpResponse::Ok().json(report))
}
