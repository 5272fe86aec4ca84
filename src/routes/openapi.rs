//! `GET /openapi.json`: the OpenAPI 3.1 description of this service.

use actix_web::HttpResponse;
use actix_web::http::header;

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    responses(
        (status = 200, description = "This document (OpenAPI 3.1), the same as `docs/openapi.json`",
            body = Object, content_type = "application/json"),
    )
)]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(crate::openapi::json())
}
