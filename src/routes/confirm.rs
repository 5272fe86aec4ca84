//! `GET /confirm/{token}` shows what the person agreed to and a button;
//! only `POST /confirm/{token}` confirms. Link scanners fetch every link,
//! so a GET never changes anything.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use minijinja::context;
use serde_json::json;

use crate::clock::naive;
use crate::context::AppContext;
use crate::db::repo::confirm::{self as repo, ConfirmOutcome, LinkState};
use crate::db::repo::lists::{self, ConsentRef};
use crate::db::{DbError, retry, write_transaction};
use crate::domain::ConfirmationToken;
use crate::error::{AppError, ErrorKind, Format, html_response, problem_response};
use crate::registry::ListEntry;
use crate::routes::pages::{form_action_origins, render_list_page};
use crate::routes::request;
use crate::telemetry::spawn_blocking_in_span;

/// A page about a link; `form_action` lists where its form (if any) may be
/// sent, redirects after the post included.
fn page(
    ctx: &AppContext,
    status: StatusCode,
    template: &str,
    list: Option<&ListEntry>,
    values: minijinja::Value,
    form_action: &str,
) -> Result<HttpResponse, AppError> {
    let body = render_list_page(ctx, list, template, |_| values)?;
    Ok(html_response(status, body, form_action))
}

/// The answer for a link that cannot be used.
fn refused(
    ctx: &AppContext,
    state: &LinkState,
    list: Option<&ListEntry>,
    format: Format,
) -> Result<HttpResponse, AppError> {
    let (status, code, title_key, body_key) = match state {
        LinkState::Expired => (
            StatusCode::GONE,
            "token_expired",
            "expired_title",
            "expired_body",
        ),
        LinkState::Superseded => (
            StatusCode::GONE,
            "token_superseded",
            "superseded_title",
            "superseded_body",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "token_unknown",
            "not_found_title",
            "not_found_body",
        ),
    };
    let lang = list.map(|l| l.language()).unwrap_or("en");
    let strings = crate::render::strings(lang);
    let text = |key: &str| {
        strings
            .get_attr(key)
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    if format == Format::Json {
        return Ok(problem_response(
            status,
            code,
            &text(title_key),
            text(body_key),
            None,
        ));
    }
    let link = match (status, list) {
        (StatusCode::GONE, Some(list)) => format!("/lists/{}/form", list.slug()),
        _ => String::new(),
    };
    page(
        ctx,
        status,
        "message.html",
        list,
        context! {
            title => text(title_key),
            message => text(body_key),
            link => link,
            link_text => text("sign_up_again"),
        },
        "'none'",
    )
}

fn parse_token(raw: &str, format: Format) -> Result<ConfirmationToken, AppError> {
    ConfirmationToken::parse(raw).map_err(|_| AppError::new(ErrorKind::NotFound, format))
}

/// `GET /confirm/{token}`.
#[utoipa::path(
    get,
    path = "/confirm/{token}",
    tag = "links",
    params(("token" = String, Path, description = "The token from the email's link")),
    responses(
        (status = 200, description = "The consent text and a button that confirms (HTML), or the link's state (JSON); changes nothing",
            content((crate::openapi::schemas::ConfirmationLink = "application/json"), (String = "text/html")), headers(
                ("Referrer-Policy" = String, description = "`no-referrer`"),
                ("Cache-Control" = String, description = "`no-store`"),
            )),
        (status = 410, response = crate::openapi::responses::EitherGone),
        crate::openapi::responses::LinkPageErrors,
    ),
)]
pub async fn show(
    req: HttpRequest,
    ctx: web::Data<AppContext>,
    token: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let format = request::page_format(&req);
    let token = match parse_token(&token, format) {
        Ok(token) => token,
        Err(_) => return refused(&ctx, &LinkState::Unknown, None, format),
    };
    let digest = token.digest();
    let now = naive(ctx.clock.now());
    let pool = ctx.pool.clone();
    let (state, view, version) = spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        let (state, view) = repo::inspect(&mut conn, &digest, now)?;
        let version = match &view {
            Some(view) => lists::find_version(
                &mut conn,
                &view.list_id,
                &ConsentRef::Id(view.consent_version_id.clone()),
            )?,
            None => None,
        };
        Ok::<_, DbError>((state, view, version))
    })
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("blocking pool: {e}"), format))?
    .map_err(|e| AppError::database(e, format))?;
    let list = view
        .as_ref()
        .and_then(|v| ctx.lists.by_id(&v.list_id))
        .map(|l| l.as_ref());
    let (Some(list), Some(version)) = (list, version) else {
        return refused(&ctx, &LinkState::Unknown, None, format);
    };
    match state {
        LinkState::Valid => {
            if format == Format::Json {
                return Ok(HttpResponse::Ok().json(json!({
                    "status": "pending",
                    "list": list.slug(),
                    "consent_text": version.body,
                    "consent_sha256": version.sha256,
                })));
            }
            let strings = crate::render::strings(list.language());
            page(
                &ctx,
                StatusCode::OK,
                "confirm.html",
                Some(list),
                context! {
                    title => strings.get_attr("confirm_title").map(|v| v.to_string()).unwrap_or_default(),
                    list_name => list.settings.name.as_str(),
                    consent_text => version.body.as_str(),
                    action => format!("/confirm/{}", token.as_str()),
                },
                // The POST answers 303 to the list's confirmed URL, which
                // may be on another origin.
                &form_action_origins(list.settings.confirmed_url.clone()),
            )
        }
        LinkState::AlreadyConfirmed => success(&ctx, list, format, false),
        other => refused(&ctx, &other, Some(list), format),
    }
}

fn success(
    ctx: &AppContext,
    list: &ListEntry,
    format: Format,
    after_post: bool,
) -> Result<HttpResponse, AppError> {
    if format == Format::Json {
        return Ok(HttpResponse::Ok().json(json!({ "status": "confirmed", "list": list.slug() })));
    }
    if after_post && let Some(url) = &list.settings.confirmed_url {
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, url.as_str()))
            .finish());
    }
    let strings = crate::render::strings(list.language());
    page(
        ctx,
        StatusCode::OK,
        "confirmed.html",
        Some(list),
        context! {
            title => strings.get_attr("confirmed_title").map(|v| v.to_string()).unwrap_or_default(),
            list_name => list.settings.name.as_str(),
        },
        "'none'",
    )
}

/// `POST /confirm/{token}`: the deliberate click.
#[utoipa::path(
    post,
    path = "/confirm/{token}",
    tag = "links",
    params(("token" = String, Path, description = "The token from the email's link")),
    responses(
        (status = 200, description = "Confirmed (now or before)",
            content((crate::openapi::schemas::ConfirmedSubscription = "application/json"), (String = "text/html")), headers(
                ("Referrer-Policy" = String, description = "`no-referrer`"),
                ("Cache-Control" = String, description = "`no-store`"),
            )),
        (status = 303, description = "Confirmed; to the list's `confirmed_url` (HTML only, when the list has one)",
            headers(
                ("Location" = String, description = "The list's `confirmed_url`"),
                ("Referrer-Policy" = String, description = "`no-referrer`"),
                ("Cache-Control" = String, description = "`no-store`"),
            )),
        (status = 410, response = crate::openapi::responses::EitherGone),
        crate::openapi::responses::LinkPageErrors,
    ),
)]
pub async fn confirm(
    req: HttpRequest,
    ctx: web::Data<AppContext>,
    token: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let format = request::page_format(&req);
    let token = match parse_token(&token, format) {
        Ok(token) => token,
        Err(_) => return refused(&ctx, &LinkState::Unknown, None, format),
    };
    let digest = token.digest();
    let evidence = request::evidence(&req, &ctx.settings.trusted_proxies, None).seal();
    let now = naive(ctx.clock.now());
    let pool = ctx.pool.clone();
    let lists = ctx.lists.clone();
    let welcome_for = move |list_id: &str| {
        lists
            .by_id(list_id)
            .filter(|l| l.settings.welcome)
            .map(|l| crate::mail::message::list_domain(l))
    };
    let webhooks = std::sync::Arc::clone(&ctx.webhooks);
    let outcome = spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        retry(|| {
            write_transaction(&mut conn, |conn| {
                repo::confirm(conn, &digest, &evidence, &welcome_for, &webhooks, now)
            })
        })
    })
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("blocking pool: {e}"), format))?
    .map_err(|e| AppError::database(e, format))?;
    match outcome {
        ConfirmOutcome::Confirmed {
            subscription_id,
            list_id,
        } => {
            tracing::info!(subscription_id = %subscription_id, "subscription confirmed");
            crate::metrics::Metrics::incr(&ctx.metrics.confirmations);
            ctx.outbox_wake.notify_one();
            ctx.webhook_wake.notify_one();
            match ctx.lists.by_id(&list_id) {
                Some(list) => success(&ctx, list, format, true),
                None => Ok(HttpResponse::Ok().json(json!({ "status": "confirmed" }))),
            }
        }
        ConfirmOutcome::AlreadyConfirmed { list_id } => match ctx.lists.by_id(&list_id) {
            Some(list) => success(&ctx, list, format, true),
            None => Ok(HttpResponse::Ok().json(json!({ "status": "confirmed" }))),
        },
        ConfirmOutcome::Refused(state) => {
            let list = match state {
                LinkState::Unknown => None,
                _ => list_of_token(&ctx, token, format).await?,
            };
            refused(&ctx, &state, list.as_deref(), format)
        }
    }
}

/// The list a known token belongs to, so a refused link's page is in the
/// list's language (a read, only on that path).
async fn list_of_token(
    ctx: &AppContext,
    token: ConfirmationToken,
    format: Format,
) -> Result<Option<std::sync::Arc<ListEntry>>, AppError> {
    let digest = token.digest();
    let now = naive(ctx.clock.now());
    let pool = ctx.pool.clone();
    let (_, view) = spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        repo::inspect(&mut conn, &digest, now)
    })
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("blocking pool: {e}"), format))?
    .map_err(|e| AppError::database(e, format))?;
    Ok(view.and_then(|v| ctx.lists.by_id(&v.list_id).cloned()))
}
