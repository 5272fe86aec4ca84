//! "I did not ask for this": `GET /refuse/{token}` explains and offers the
//! button; `POST /refuse/{token}` with `action=refuse` stops confirmation
//! emails to the address for `abuse.refusal_days`, `action=lift` lifts it.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use minijinja::context;
use serde_json::json;

use crate::clock::naive;
use crate::context::AppContext;
use crate::db::repo::refusal::{self, RefusalView};
use crate::db::{retry, write_transaction};
use crate::error::{AppError, ErrorKind, Format, html_response};
use crate::registry::ListEntry;
use crate::routes::body::{self, Encoding};
use crate::routes::db_call::with_conn;
use crate::routes::pages::render_list_page;
use crate::routes::request;
use crate::tokens::Purpose;

fn text(lang: &str, key: &str) -> String {
    crate::render::strings(lang)
        .get_attr(key)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

async fn load(
    ctx: &AppContext,
    token: &str,
    format: Format,
) -> Result<(String, RefusalView), AppError> {
    let not_found = || AppError::new(ErrorKind::NotFound, format);
    let subscription_id = ctx
        .link_keys
        .verify(Purpose::Refuse, token)
        .map_err(|_| not_found())?
        .to_string();
    let now = naive(ctx.clock.now());
    let id = subscription_id.clone();
    let view = with_conn(ctx, format, move |conn| refusal::view(conn, &id, now))
        .await?
        .ok_or_else(not_found)?;
    Ok((subscription_id, view))
}

fn list_of<'a>(ctx: &'a AppContext, view: &RefusalView) -> Option<&'a ListEntry> {
    ctx.lists.by_id(&view.list_id).map(|l| l.as_ref())
}

/// Attributes an error to the list, when known, for its page's language.
fn in_list(list: Option<&ListEntry>, error: AppError) -> AppError {
    match list {
        Some(list) => error.in_list(list.slug()),
        None => error,
    }
}

/// `GET /refuse/{token}`.
#[utoipa::path(
    get,
    path = "/refuse/{token}",
    tag = "links",
    params(("token" = String, Path, description = "The refusal token from the confirmation email (`{key_id}.{subscription}.{mac}`)")),
    responses(
        (status = 200, description = "The refusal page (HTML) or whether a refusal is in force (JSON); changes nothing",
            content((crate::openapi::schemas::RefusalView = "application/json"), (String = "text/html")), headers(
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
    let (_, view) = load(&ctx, &token, format).await?;
    let list = list_of(&ctx, &view);
    let until = view.refused_until.map(|t| t.format("%Y-%m-%d").to_string());
    if format == Format::Json {
        return Ok(HttpResponse::Ok().json(json!({ "refused_until": until })));
    }
    let list_name = list.map(|l| l.settings.name.as_str()).unwrap_or_default();
    let body = render_list_page(&ctx, list, "refuse.html", |lang| {
        context! {
            title => text(lang, "refuse_title"),
            list_name => list_name,
            refused_until => until,
            days => ctx.settings.abuse.refusal_days.to_string(),
            action => format!("/refuse/{}", token.as_str()),
        }
    })?;
    Ok(html_response(StatusCode::OK, body, "'self'"))
}

/// `POST /refuse/{token}`.
#[utoipa::path(
    post,
    path = "/refuse/{token}",
    tag = "links",
    params(("token" = String, Path, description = "The refusal token from the confirmation email (`{key_id}.{subscription}.{mac}`)")),
    request_body(
        description = "Exactly one field: `action=refuse` or `action=lift`",
        content(
            (crate::openapi::schemas::RefusalBody = "application/x-www-form-urlencoded"),
            (crate::openapi::schemas::RefusalBody = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 200, description = "Refused or lifted (now or before); never a redirect",
            content((crate::openapi::schemas::RefusalDone = "application/json"), (String = "text/html")), headers(
                ("Referrer-Policy" = String, description = "`no-referrer`"),
                ("Cache-Control" = String, description = "`no-store`"),
            )),
        crate::openapi::responses::LinkFormErrors,
    ),
)]
pub async fn act(
    req: HttpRequest,
    ctx: web::Data<AppContext>,
    token: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let format = request::page_format(&req);
    let (subscription_id, view) = load(&ctx, &token, format).await?;
    let list = list_of(&ctx, &view);
    let fail = |kind| in_list(list, AppError::new(kind, format));
    let encoding = body::encoding_of(&req).filter(|e| *e != Encoding::Json);
    let bytes = body::read_limited(&req, payload).await.map_err(fail)?;
    let Some(encoding) = encoding else {
        return Err(fail(ErrorKind::UnsupportedMediaType));
    };
    let fields = body::form_pairs(&req, encoding, bytes)
        .await
        .map_err(|why| fail(ErrorKind::BadRequest(why)))?;
    let refuse = match fields.as_slice() {
        [(name, value)] if name == "action" && value == "refuse" => true,
        [(name, value)] if name == "action" && value == "lift" => false,
        _ => {
            return Err(fail(ErrorKind::BadRequest(
                "send action=refuse or action=lift".to_owned(),
            )));
        }
    };
    // An erased person's IP and browser are not recorded again.
    let evidence =
        (!view.erased).then(|| request::evidence(&req, &ctx.settings.trusted_proxies, None).seal());
    let now = naive(ctx.clock.now());
    let days = ctx.settings.abuse.refusal_days;
    with_conn(&ctx, format, move |conn| {
        retry(|| {
            write_transaction(conn, |conn| {
                if refuse {
                    refusal::refuse(conn, &view, &subscription_id, evidence.as_ref(), days, now)
                } else {
                    refusal::lift(conn, &view, &subscription_id, evidence.as_ref(), now)
                }
            })
        })
    })
    .await
    .map_err(|e| in_list(list, e))?;
    if format == Format::Json {
        return Ok(HttpResponse::Ok().json(json!({
            "status": if refuse { "refused" } else { "lifted" },
        })));
    }
    let body = render_list_page(&ctx, list, "message.html", |lang| {
        context! {
            title => text(lang, "refuse_title"),
            message => text(lang, if refuse { "refused_done" } else { "lifted_done" }),
            link => "",
            link_text => "",
        }
    })?;
    Ok(html_response(StatusCode::OK, body, "'none'"))
}
