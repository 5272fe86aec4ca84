//! Pages for people: the index, the hosted sign-up form and the "check your
//! inbox" page.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use minijinja::context;

use crate::context::AppContext;
use crate::error::{AppError, ErrorKind, Format, html_response, page_response};
use crate::registry::ListEntry;
use crate::render::STYLESHEET;

fn render_page(
    ctx: &AppContext,
    template: &str,
    lang: &str,
    values: minijinja::Value,
    form_action: &str,
) -> Result<HttpResponse, AppError> {
    let body = ctx
        .templates
        .render(template, lang, values)
        .map_err(|e| AppError::internal(e, Format::Html))?;
    Ok(html_response(StatusCode::OK, body, form_action))
}

fn render_embeddable(
    ctx: &AppContext,
    list: &ListEntry,
    values: minijinja::Value,
) -> Result<HttpResponse, AppError> {
    let body = ctx
        .templates
        .render_for(list.slug(), "form.html", list.language(), values)
        .map_err(|e| AppError::internal(e, Format::Html))?;
    let mut response = page_response(
        StatusCode::OK,
        body,
        &form_action_sources(list),
        &list.settings.embed_origins,
    );
    if list.settings.proof_of_work {
        // The solver script and its challenge request come from here.
        if let Some(csp) = response.headers().get(header::CONTENT_SECURITY_POLICY) {
            let relaxed = format!(
                "{}; script-src 'self'; connect-src 'self'",
                csp.to_str().unwrap_or("default-src 'none'")
            );
            if let Ok(value) = header::HeaderValue::from_str(&relaxed) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_SECURITY_POLICY, value);
            }
        }
    }
    Ok(response)
}

/// Renders a page about a list: the list's override of `template` if it
/// has one, in the list's language; without a list (not configured any
/// more) the shared template in English. `values` gets the language.
pub fn render_list_page(
    ctx: &AppContext,
    list: Option<&ListEntry>,
    template: &str,
    values: impl FnOnce(&str) -> minijinja::Value,
) -> Result<String, AppError> {
    let rendered = match list {
        Some(list) => ctx.templates.render_for(
            list.slug(),
            template,
            list.language(),
            values(list.language()),
        ),
        None => ctx.templates.render(template, "en", values("en")),
    };
    rendered.map_err(|e| {
        let error = AppError::internal(e, Format::Html);
        match list {
            Some(list) => error.in_list(list.slug()),
            None => error,
        }
    })
}

fn list_or_404<'a>(ctx: &'a AppContext, slug: &str) -> Result<&'a ListEntry, AppError> {
    ctx.lists
        .by_slug(slug)
        .map(|entry| entry.as_ref())
        .ok_or_else(|| AppError::new(ErrorKind::NotFound, Format::Html))
}

/// The `form-action` sources of a page whose form may end up at `urls`:
/// `'self'` plus each URL's origin, once. Browsers (Chrome) apply
/// `form-action` to the redirects that follow a form post too, so every
/// origin a post may be redirected to must be listed.
pub fn form_action_origins(urls: impl IntoIterator<Item = url::Url>) -> String {
    let mut sources = vec!["'self'".to_owned()];
    for url in urls {
        let origin = url.origin().ascii_serialization();
        if !sources.contains(&origin) {
            sources.push(origin);
        }
    }
    sources.join(" ")
}

/// The origins a list's hosted form may be sent on to: itself, plus where
/// the browser is redirected afterwards.
pub fn form_action_sources(list: &ListEntry) -> String {
    form_action_origins(
        list.settings
            .redirect_urls
            .iter()
            .filter_map(|u| url::Url::parse(u).ok())
            .chain(list.settings.thank_you_url.clone())
            .chain(list.settings.confirmed_url.clone()),
    )
}

/// `GET /`: the lists and their forms.
#[utoipa::path(
    get,
    path = "/",
    tag = "pages",
    responses(
        (status = 200, description = "Every configured list with a link to its form", body = String, content_type = "text/html"),
        (status = 500, response = crate::openapi::responses::PageInternal),
    ),
)]
pub async fn index(ctx: web::Data<AppContext>) -> Result<HttpResponse, AppError> {
    let lists: Vec<_> = ctx
        .lists
        .all()
        .iter()
        .map(|l| context! { slug => l.slug(), name => l.settings.name.as_str() })
        .collect();
    render_page(
        &ctx,
        "index.html",
        "en",
        context! { title => "Assent", lists => lists },
        "'none'",
    )
}

/// `GET /assets/pow.js`: the hosted form's proof-of-work solver.
#[utoipa::path(
    get,
    path = "/assets/pow.js",
    tag = "pages",
    responses(
        (status = 200, description = "The hosted form's proof-of-work solver", body = String, content_type = "text/javascript",
            headers(("Cache-Control" = String, description = "`public, max-age=3600`"))),
    ),
)]
pub async fn pow_script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../templates/pow.js"))
}

/// `GET /lists/{slug}/challenge`: a proof-of-work challenge, for lists that
/// require one.
#[utoipa::path(
    get,
    path = "/lists/{slug}/challenge",
    tag = "pages",
    params(("slug" = String, Path, description = "A list's slug", example = "newsletter")),
    responses(
        (status = 200, description = "A signed challenge to solve within 10 minutes", body = crate::pow::Challenge,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 404, response = crate::openapi::responses::NotFound),
    ),
)]
pub async fn challenge(
    ctx: web::Data<AppContext>,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let wants_proof = ctx
        .lists
        .by_slug(&slug)
        .is_some_and(|l| l.settings.proof_of_work);
    if !wants_proof {
        return Err(AppError::new(ErrorKind::NotFound, Format::Json));
    }
    let challenge = ctx
        .pow
        .issue(ctx.settings.abuse.proof_of_work_max_number, ctx.clock.now());
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(challenge))
}

/// `GET /assets/assent.css`.
#[utoipa::path(
    get,
    path = "/assets/assent.css",
    tag = "pages",
    responses(
        (status = 200, description = "The stylesheet of the built-in pages", body = String, content_type = "text/css",
            headers(("Cache-Control" = String, description = "`public, max-age=3600`"))),
    ),
)]
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}

/// `GET /lists/{slug}/form`: the hosted sign-up form, consent unticked.
#[utoipa::path(
    get,
    path = "/lists/{slug}/form",
    tag = "pages",
    params(("slug" = String, Path, description = "A list's slug", example = "newsletter")),
    responses(
        (status = 200, description = "The sign-up form with the current consent text beside an unticked checkbox", body = String, content_type = "text/html"),
        (status = 404, response = crate::openapi::responses::PageNotFound),
        (status = 500, response = crate::openapi::responses::PageInternal),
    ),
)]
pub async fn form(
    ctx: web::Data<AppContext>,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let list = list_or_404(&ctx, &slug)?;
    render_embeddable(
        &ctx,
        list,
        context! {
            title => list.settings.name.as_str(),
            list_name => list.settings.name.as_str(),
            slug => list.slug(),
            consent_version_id => list.current.id.as_str(),
            consent_text => list.current.body.as_str(),
            errors => Vec::<String>::new(),
            proof_of_work => list.settings.proof_of_work,
        },
    )
}

/// `GET /lists/{slug}/check-inbox`: where a browser lands after signing up.
#[utoipa::path(
    get,
    path = "/lists/{slug}/check-inbox",
    tag = "pages",
    params(("slug" = String, Path, description = "A list's slug", example = "newsletter")),
    responses(
        (status = 200, description = "\"Please check your inbox\"", body = String, content_type = "text/html"),
        (status = 404, response = crate::openapi::responses::PageNotFound),
        (status = 500, response = crate::openapi::responses::PageInternal),
    ),
)]
pub async fn check_inbox(
    ctx: web::Data<AppContext>,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let list = list_or_404(&ctx, &slug)?;
    let title = crate::render::strings(list.language())
        .get_attr("check_inbox_title")
        .map(|v| v.to_string())
        .unwrap_or_default();
    let body = ctx
        .templates
        .render_for(
            list.slug(),
            "check_inbox.html",
            list.language(),
            context! { title => title },
        )
        .map_err(|e| AppError::internal(e, Format::Html))?;
    Ok(html_response(StatusCode::OK, body, "'none'"))
}
