//! Leaving a list: `GET /unsubscribe/{token}` shows a page and changes
//! nothing; `POST /unsubscribe/{token}` unsubscribes (RFC 8058 one-click or
//! the page's button); `POST /withdraw/{token}` withdraws consent on every
//! list, and with `erase=true` erases the person's data.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use minijinja::context;
use serde_json::json;

use crate::clock::naive;
use crate::context::AppContext;
use crate::db::repo::leave::{self, SubscriptionView, UnsubscribeOutcome, WithdrawOutcome};
use crate::db::{DbError, retry, write_transaction};
use crate::error::{AppError, ErrorKind, Format, html_response};
use crate::ledger::EventMethod;
use crate::metrics::Metrics;
use crate::registry::ListEntry;
use crate::routes::body::{self, Encoding};
use crate::routes::pages::render_list_page;
use crate::routes::request;
use crate::telemetry::spawn_blocking_in_span;
use crate::tokens::Purpose;

fn text(lang: &str, key: &str) -> String {
    crate::render::strings(lang)
        .get_attr(key)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

fn not_found(format: Format) -> AppError {
    AppError::new(ErrorKind::NotFound, format)
}

fn verify(ctx: &AppContext, token: &str, format: Format) -> Result<String, AppError> {
    ctx.link_keys
        .verify(Purpose::Leave, token)
        .map(|id| id.to_string())
        .map_err(|_| not_found(format))
}

async fn load_view(
    ctx: &AppContext,
    subscription_id: String,
    format: Format,
) -> Result<SubscriptionView, AppError> {
    let pool = ctx.pool.clone();
    spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        leave::view(&mut conn, &subscription_id)
    })
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("blocking pool: {e}"), format))?
    .map_err(|e| AppError::database(e, format))?
    .ok_or_else(|| not_found(format))
}

fn list_of<'a>(
    ctx: &'a AppContext,
    view: &SubscriptionView,
    format: Format,
) -> Result<&'a ListEntry, AppError> {
    ctx.lists
        .by_id(&view.subscription.list_id)
        .map(|l| l.as_ref())
        .ok_or_else(|| not_found(format))
}

/// The page after a POST, from the list's templates in its language (the
/// built-in English one if the list is no longer configured).
fn result_page(
    ctx: &AppContext,
    list: Option<&ListEntry>,
    title_key: &str,
    body_key: &str,
) -> Result<HttpResponse, AppError> {
    let body = render_list_page(ctx, list, "message.html", |lang| {
        context! { title => text(lang, title_key), message => text(lang, body_key), link => "", link_text => "" }
    })?;
    Ok(html_response(StatusCode::OK, body, "'none'"))
}

/// Attributes an error that happened after the token was checked to the
/// subscription's list, so its page is in the list's language. Only on
/// that path does it read the subscription.
async fn in_list_of(ctx: &AppContext, subscription_id: &str, error: AppError) -> AppError {
    if error.format != Format::Html {
        return error;
    }
    match load_view(ctx, subscription_id.to_owned(), error.format).await {
        Ok(view) => match ctx.lists.by_id(&view.subscription.list_id) {
            Some(list) => error.in_list(list.slug()),
            None => error,
        },
        Err(_) => error,
    }
}

/// `GET /unsubscribe/{token}`: what will happen, and the buttons.
#[utoipa::path(
    get,
    path = "/unsubscribe/{token}",
    tag = "links",
    params(("token" = String, Path, description = "The unsubscribe token from the email (`{key_id}.{subscription}.{mac}`)")),
    responses(
        (status = 200, description = "The unsubscribe page (HTML) or the subscription's state (JSON); changes nothing",
            content((crate::openapi::schemas::UnsubscribeView = "application/json"), (String = "text/html")), headers(
                ("Referrer-Policy" = String, description = "`no-referrer`"),
                ("Cache-Control" = String, description = "`no-store`"),
            )),
        crate::openapi::responses::LinkPageErrors,
    ),
)]
pub async fn show(
    req: HttpRequest,
    ctx: web::Data<AppContext>,
    token: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let format = request::page_format(&req);
    let subscription_id = verify(&ctx, &token, format)?;
    let view = load_view(&ctx, subscription_id, format).await?;
    let list = list_of(&ctx, &view, format)?;
    let already_left = !matches!(
        view.state,
        crate::domain::SubscriptionState::Pending | crate::domain::SubscriptionState::Confirmed
    );
    if format == Format::Json {
        return Ok(HttpResponse::Ok().json(json!({
            "list": list.slug(),
            "state": view.state.as_str(),
        })));
    }
    let body = render_list_page(&ctx, Some(list), "unsubscribe.html", |lang| {
        context! {
            title => text(lang, "unsubscribe_title"),
            list_name => list.settings.name.as_str(),
            already_left => already_left,
            erased => view.erased,
            unsubscribe_action => format!("/unsubscribe/{}", token.as_str()),
            withdraw_action => format!("/withdraw/{}", token.as_str()),
        }
    })?;
    Ok(html_response(StatusCode::OK, body, "'self'"))
}

/// Reads a small form body (url-encoded or multipart) into its fields.
async fn form_fields(
    req: &HttpRequest,
    payload: web::Payload,
    format: Format,
) -> Result<Vec<(String, String)>, AppError> {
    let fail = |kind| AppError::new(kind, format);
    let encoding = body::encoding_of(req);
    let bytes = body::read_limited(req, payload).await.map_err(fail)?;
    match encoding {
        Some(encoding @ (Encoding::Form | Encoding::Multipart)) => {
            body::form_pairs(req, encoding, bytes)
                .await
                .map_err(|why| fail(ErrorKind::BadRequest(why)))
        }
        None if bytes.is_empty() => Ok(Vec::new()),
        _ => Err(fail(ErrorKind::UnsupportedMediaType)),
    }
}

/// `POST /unsubscribe/{token}`: RFC 8058 one-click (`List-Unsubscribe=One-Click`)
/// or the page's button (`action=unsubscribe`). Always 200, never a
/// redirect; repeating it changes nothing.
#[utoipa::path(
    post,
    path = "/unsubscribe/{token}",
    tag = "links",
    params(("token" = String, Path, description = "The unsubscribe token from the email (`{key_id}.{subscription}.{mac}`)")),
    request_body(
        description = "Exactly one field: `List-Unsubscribe=One-Click` (RFC 8058) or `action=unsubscribe` (the page's button)",
        content(
            (crate::openapi::schemas::UnsubscribeBody = "application/x-www-form-urlencoded"),
            (crate::openapi::schemas::UnsubscribeBody = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 200, description = "Unsubscribed (now or before); never a redirect",
            content((crate::openapi::schemas::Unsubscribed = "application/json"), (String = "text/html")), headers(
                ("Referrer-Policy" = String, description = "`no-referrer`"),
                ("Cache-Control" = String, description = "`no-store`"),
            )),
        crate::openapi::responses::LinkFormErrors,
    ),
)]
pub async fn unsubscribe(
    req: HttpRequest,
    ctx: web::Data<AppContext>,
    token: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let received = std::time::Instant::now();
    let format = request::page_format(&req);
    let subscription_id = verify(&ctx, &token, format)?;
    let fields = match form_fields(&req, payload, format).await {
        Ok(fields) => fields,
        Err(error) => return Err(in_list_of(&ctx, &subscription_id, error).await),
    };
    let method = match fields.as_slice() {
        [(name, value)] if name == "List-Unsubscribe" && value == "One-Click" => {
            EventMethod::OneClick
        }
        [(name, value)] if name == "action" && value == "unsubscribe" => EventMethod::Page,
        _ => {
            let error = AppError::new(
                ErrorKind::BadRequest(
                    "send List-Unsubscribe=One-Click (RFC 8058) or use the unsubscribe page"
                        .to_owned(),
                ),
                format,
            );
            return Err(in_list_of(&ctx, &subscription_id, error).await);
        }
    };
    let evidence = request::evidence(&req, &ctx.settings.trusted_proxies, None).seal();
    let now = naive(ctx.clock.now());
    let pool = ctx.pool.clone();
    let webhooks = std::sync::Arc::clone(&ctx.webhooks);
    let id = subscription_id.clone();
    let outcome = spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        retry(|| {
            write_transaction(&mut conn, |conn| {
                leave::unsubscribe(conn, &id, method, Some(&evidence), &webhooks, now)
            })
        })
    })
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("blocking pool: {e}"), format))?;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            let error = AppError::database(e, format);
            return Err(in_list_of(&ctx, &subscription_id, error).await);
        }
    };
    let list_id = match outcome {
        UnsubscribeOutcome::Unknown => return Err(not_found(format)),
        UnsubscribeOutcome::Unsubscribed { list_id } => {
            tracing::info!(method = method.as_str(), "unsubscribed");
            ctx.webhook_wake.notify_one();
            ctx.metrics
                .observe_unsubscribe(received.elapsed().as_secs_f64());
            Metrics::incr(if method == EventMethod::OneClick {
                &ctx.metrics.unsubscribes_one_click
            } else {
                &ctx.metrics.unsubscribes_page
            });
            list_id
        }
        UnsubscribeOutcome::AlreadyLeft { list_id } => list_id,
    };
    if format == Format::Json {
        return Ok(HttpResponse::Ok().json(json!({ "status": "unsubscribed" })));
    }
    let list = ctx.lists.by_id(&list_id).map(|l| l.as_ref());
    result_page(&ctx, list, "unsubscribed_title", "unsubscribed_body")
}

/// `POST /withdraw/{token}`: withdraws consent on every list of the person;
/// `erase=true` also erases their personal data.
#[utoipa::path(
    post,
    path = "/withdraw/{token}",
    tag = "links",
    params(("token" = String, Path, description = "The unsubscribe token from the email (`{key_id}.{subscription}.{mac}`)")),
    request_body(
        description = "Optional; `erase=true` also erases the person's data. An empty body needs no `Content-Type`.",
        content(
            (Option<crate::openapi::schemas::WithdrawBody> = "application/x-www-form-urlencoded"),
            (Option<crate::openapi::schemas::WithdrawBody> = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 200, description = "Consent withdrawn on every list of the person (and erased, when asked)",
            content((crate::openapi::schemas::Withdrawn = "application/json"), (String = "text/html")), headers(
                ("Referrer-Policy" = String, description = "`no-referrer`"),
                ("Cache-Control" = String, description = "`no-store`"),
            )),
        crate::openapi::responses::LinkFormErrors,
    ),
)]
pub async fn withdraw(
    req: HttpRequest,
    ctx: web::Data<AppContext>,
    token: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let format = request::page_format(&req);
    let subscription_id = verify(&ctx, &token, format)?;
    let view = load_view(&ctx, subscription_id, format).await?;
    let list = list_of(&ctx, &view, format)?;
    let in_list = |error: AppError| error.in_list(list.slug());
    let fields = form_fields(&req, payload, format).await.map_err(in_list)?;
    let erase = fields.iter().any(|(name, value)| {
        name == "erase"
            && matches!(
                value.to_ascii_lowercase().as_str(),
                "true" | "on" | "yes" | "1"
            )
    });
    let evidence = request::evidence(&req, &ctx.settings.trusted_proxies, None).seal();
    let now = naive(ctx.clock.now());
    let pool = ctx.pool.clone();
    let subscriber_id = view.subscription.subscriber_id.clone();
    let webhooks = std::sync::Arc::clone(&ctx.webhooks);
    let outcome: WithdrawOutcome = spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        retry(|| {
            write_transaction(&mut conn, |conn| {
                leave::withdraw(
                    conn,
                    &subscriber_id,
                    EventMethod::Page,
                    Some(&evidence),
                    erase,
                    &webhooks,
                    now,
                )
            })
        })
    })
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("blocking pool: {e}"), format))?
    .map_err(|e| in_list(AppError::database(e, format)))?;
    tracing::info!(
        withdrawn = outcome.withdrawn,
        erased = outcome.erased,
        "consent withdrawn"
    );
    if outcome.withdrawn > 0 {
        Metrics::incr(&ctx.metrics.withdrawals);
    }
    if outcome.withdrawn > 0 || outcome.erased {
        ctx.webhook_wake.notify_one();
    }
    if outcome.erased {
        Metrics::incr(&ctx.metrics.erasures);
    }
    let erased = outcome.erased || outcome.already_erased;
    if format == Format::Json {
        return Ok(HttpResponse::Ok().json(json!({
            "status": "withdrawn",
            "erased": erased,
        })));
    }
    if erased {
        result_page(&ctx, Some(list), "erased_title", "erased_body")
    } else {
        result_page(&ctx, Some(list), "withdrawn_title", "withdrawn_body")
    }
}
