//! Lists, their consent versions, and the audience a sender mails.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use super::stream::stream;
use crate::clock::naive;
use crate::context::AppContext;
use crate::db::repo::exports::audience_page;
use crate::db::repo::lists::{self as repo, ConsentVersion};
use crate::db::{retry, write_transaction};
use crate::domain::{ConsentText, LanguageTag};
use crate::error::{AppError, ErrorKind, FieldError, Format};
use crate::ledger::chain::format_time;
use crate::registry::ListEntry;
use crate::routes::db_call::with_conn;
use crate::tokens::Purpose;

fn list_or_404<'a>(ctx: &'a AppContext, slug: &str) -> Result<&'a ListEntry, AppError> {
    ctx.lists
        .by_slug(slug)
        .map(|l| l.as_ref())
        .ok_or_else(|| AppError::new(ErrorKind::NotFound, Format::Json))
}

fn list_json(list: &ListEntry) -> serde_json::Value {
    let s = &list.settings;
    json!({
        "slug": list.slug(),
        "name": s.name,
        "from": s.from.to_string(),
        "reply_to": s.reply_to.as_ref().map(|m| m.to_string()),
        "double_opt_in": s.double_opt_in,
        "welcome": s.welcome,
        "language": s.language.as_str(),
        "thank_you_url": s.thank_you_url.as_ref().map(|u| u.as_str()),
        "confirmed_url": s.confirmed_url.as_ref().map(|u| u.as_str()),
        "redirect_urls": s.redirect_urls,
        "current_consent_version_id": list.current.id,
    })
}

fn version_json(version: &ConsentVersion) -> serde_json::Value {
    json!({
        "id": version.id,
        "sha256": version.sha256,
        "language": version.language,
        "text": version.body,
        "created_at": format_time(version.created_at),
    })
}

/// `GET /admin/lists`.
#[utoipa::path(
    get,
    path = "/admin/lists",
    tag = "admin",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The configured lists", body = crate::openapi::schemas::Lists),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn index(_admin: Admin, ctx: web::Data<AppContext>) -> HttpResponse {
    let lists: Vec<_> = ctx.lists.all().iter().map(|l| list_json(l)).collect();
    HttpResponse::Ok().json(json!({ "lists": lists }))
}

/// `GET /admin/lists/{slug}`: the list with every consent version.
#[utoipa::path(
    get,
    path = "/admin/lists/{slug}",
    tag = "admin",
    security(("admin_key" = [])),
    params(("slug" = String, Path, description = "A list's slug", example = "newsletter")),
    responses(
        (status = 200, description = "The list with every consent version", body = crate::openapi::schemas::ListDetail),
        (status = 404, response = crate::openapi::responses::NotFound),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn show(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let list = list_or_404(&ctx, &slug)?;
    let list_id = list.id.clone();
    let versions = with_conn(&ctx, Format::Json, move |conn| {
        repo::versions_of(conn, &list_id)
    })
    .await?;
    let mut body = list_json(list);
    body["consent_versions"] = versions.iter().map(version_json).collect();
    Ok(HttpResponse::Ok().json(body))
}

/// The body of `POST /admin/lists/{slug}/consent-versions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewVersion {
    /// The consent text, taken byte for byte (at most 8,000 characters).
    text: String,
    /// A language tag; the list's language when absent.
    language: Option<String>,
}

/// `POST /admin/lists/{slug}/consent-versions`: registers a text (once per
/// list) and returns its version id and hash. Forms may then send the id.
#[utoipa::path(
    post,
    path = "/admin/lists/{slug}/consent-versions",
    tag = "admin",
    security(("admin_key" = [])),
    params(("slug" = String, Path, description = "A list's slug", example = "newsletter")),
    request_body(content = NewVersion, content_type = "application/json"),
    responses(
        (status = 201, description = "The version (also when the list had this text already)", body = crate::openapi::schemas::ConsentVersionView),
        (status = 400, response = crate::openapi::responses::MalformedRequest),
        (status = 404, response = crate::openapi::responses::NotFound),
        (status = 413, response = crate::openapi::responses::PayloadTooLarge),
        (status = 415, response = crate::openapi::responses::UnsupportedMediaType),
        (status = 422, response = crate::openapi::responses::ValidationFailed),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn register_version(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    slug: web::Path<String>,
    body: web::Json<NewVersion>,
) -> Result<HttpResponse, AppError> {
    let list = list_or_404(&ctx, &slug)?;
    let invalid = |field, code, detail: String| {
        AppError::new(
            ErrorKind::Validation {
                errors: vec![FieldError::new(field, code, detail)],
                back_url: String::new(),
            },
            Format::Json,
        )
    };
    let body = body.into_inner();
    let text = ConsentText::new(body.text)
        .map_err(|e| invalid("text", "consent_text_invalid", e.to_string()))?;
    let language = match body.language {
        Some(l) => LanguageTag::parse(&l)
            .map_err(|e| invalid("language", "language_invalid", e.to_string()))?,
        None => list.settings.language.clone(),
    };
    let list_id = list.id.clone();
    let now = naive(ctx.clock.now());
    let version = with_conn(&ctx, Format::Json, move |conn| {
        retry(|| {
            write_transaction(conn, |conn| {
                repo::register_version(conn, &list_id, &text, &language, now)
            })
        })
    })
    .await?;
    Ok(HttpResponse::Created().json(version_json(&version)))
}

/// `GET /admin/lists/{slug}/audience`: confirmed subscriptions as NDJSON,
/// streamed, each with the headers a sender must put on its mail.
#[utoipa::path(
    get,
    path = "/admin/lists/{slug}/audience",
    tag = "admin",
    security(("admin_key" = [])),
    params(("slug" = String, Path, description = "A list's slug", example = "newsletter")),
    responses(
        (status = 200, description = "Confirmed subscriptions, streamed: one `AudienceMember` JSON object per line",
            body = String, content_type = "application/x-ndjson", headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 404, response = crate::openapi::responses::NotFound),
        crate::openapi::responses::AdminErrors,
    ),
)]
pub async fn audience(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let list = list_or_404(&ctx, &slug)?.clone();
    let context = ctx.clone().into_inner();
    stream(
        &ctx,
        "application/x-ndjson",
        Box::new(move |conn, sink| {
            let mailto = list
                .settings
                .unsubscribe_mailto
                .as_ref()
                .map(|a| a.as_str().to_owned());
            let mut after = String::new();
            let mut written = 0u64;
            loop {
                let page = audience_page(conn, &list.id, &after, crate::exports::PAGE_SIZE)?;
                let Some(last) = page.last() else {
                    return Ok(written);
                };
                after = last.subscription_id.clone();
                let mut chunk = Vec::with_capacity(page.len() * 300);
                for member in &page {
                    let Ok(id) = uuid::Uuid::parse_str(&member.subscription_id) else {
                        continue;
                    };
                    let token = context.link_keys.mint(Purpose::Leave, id);
                    let url = context.settings.public_url(&format!("unsubscribe/{token}"));
                    let header = match &mailto {
                        Some(address) => format!("<{url}>, <mailto:{address}?subject=unsubscribe>"),
                        None => format!("<{url}>"),
                    };
                    let line = json!({
                        "email": member.email,
                        "confirmed_at": member.confirmed_at.map(format_time),
                        "unsubscribe_url": url,
                        "list_unsubscribe": header,
                        "list_unsubscribe_post": "List-Unsubscribe=One-Click",
                    });
                    chunk.extend(serde_json::to_vec(&line).unwrap_or_default());
                    chunk.push(b'\n');
                }
                written += page.len() as u64;
                if !sink(chunk) {
                    return Ok(written);
                }
            }
        }),
    )
    .await
}
