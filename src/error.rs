//! Errors as users see them: `application/problem+json` (RFC 9457) for API
//! clients, a readable page for browsers. Causes go to the log, never into
//! a response.

use std::sync::OnceLock;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use minijinja::context;
use serde::Serialize;

use crate::db::DbError;
use crate::render::{RenderError, Templates};

/// How a response should be shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
}

/// One problem with one input field, with a stable code.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: &'static str,
    pub code: &'static str,
    pub detail: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: &'static str, code: &'static str, detail: impl Into<String>) -> Self {
        FieldError {
            field,
            code,
            detail: detail.into(),
        }
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("invalid input")]
    Validation {
        errors: Vec<FieldError>,
        /// Where the browser page's "back" link goes.
        back_url: String,
    },
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// An error with the format its response takes.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct AppError {
    pub kind: ErrorKind,
    pub format: Format,
    /// The slug of the list the request was about, when known: its HTML
    /// page is then shown in that list's language and from its templates
    /// (`routes::error_pages`).
    pub list: Option<String>,
}

impl AppError {
    /// Wraps a kind for a format.
    pub fn new(kind: ErrorKind, format: Format) -> Self {
        AppError {
            kind,
            format,
            list: None,
        }
    }

    /// Says which list the failed request was about.
    pub fn in_list(mut self, slug: &str) -> Self {
        self.list = Some(slug.to_owned());
        self
    }

    /// The list whose page this error is shown on: the one given with
    /// [`AppError::in_list`], else, for a sign-up's field errors, the list
    /// whose form the page links back to (`/lists/{slug}/form`, built by
    /// Assent from a configured list, never from request data).
    pub fn list_slug(&self) -> Option<&str> {
        self.list.as_deref().or_else(|| match &self.kind {
            ErrorKind::Validation { back_url, .. } => back_url
                .strip_prefix("/lists/")?
                .strip_suffix("/form")
                .filter(|slug| !slug.contains('/')),
            _ => None,
        })
    }

    /// Renders the HTML page for this error in `lang` with `render`
    /// (template name and values), which chooses the templates: the
    /// built-in ones, or a list's overrides.
    pub fn render_page(
        &self,
        lang: &str,
        render: &dyn Fn(&str, minijinja::Value) -> Result<String, RenderError>,
    ) -> Result<String, RenderError> {
        let (title, detail) = self.page_text(lang);
        match &self.kind {
            ErrorKind::Validation { errors, back_url } => {
                let errors: Vec<minijinja::Value> = errors
                    .iter()
                    .map(|e| {
                        let detail = crate::render::field_error_text(lang, e.code)
                            .unwrap_or(e.detail.as_str());
                        context! { field => e.field, code => e.code, detail => detail }
                    })
                    .collect();
                render(
                    "signup_errors.html",
                    context! { title => title, errors => errors, back_url => back_url },
                )
            }
            _ => render(
                "message.html",
                context! { title => title, message => detail, link => "", link_text => "" },
            ),
        }
    }

    /// The title and text of the HTML page, in `lang` where Assent has a
    /// translation, else in English (the problem+json wording).
    fn page_text(&self, lang: &str) -> (String, String) {
        match crate::render::problem_text(lang, self.code()) {
            Some((title, detail)) => {
                let detail = match &self.kind {
                    ErrorKind::TooManyRequests { retry_after_secs } => {
                        detail.replace("{secs}", &retry_after_secs.to_string())
                    }
                    _ => detail.to_owned(),
                };
                (title.to_owned(), detail)
            }
            None => (self.title().to_owned(), self.detail()),
        }
    }

    /// An unexpected failure, logged with its whole chain.
    pub fn internal(error: impl Into<anyhow::Error>, format: Format) -> Self {
        AppError::new(ErrorKind::Internal(error.into()), format)
    }

    /// A database failure: 503 when the database is out of reach or
    /// refusing writes, otherwise 500.
    pub fn database(error: DbError, format: Format) -> Self {
        if error.is_unavailable() {
            AppError::new(ErrorKind::Unavailable(error.to_string()), format)
        } else {
            AppError::internal(error, format)
        }
    }

    fn code(&self) -> &'static str {
        match &self.kind {
            ErrorKind::Validation { .. } => "validation_failed",
            ErrorKind::BadRequest(_) => "malformed_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Conflict(_) => "conflict",
            ErrorKind::Forbidden(_) => "forbidden",
            ErrorKind::TooManyRequests { .. } => "rate_limited",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::Unavailable(_) => "service_unavailable",
            ErrorKind::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match &self.kind {
            ErrorKind::Validation { .. } => "The request has invalid fields",
            ErrorKind::BadRequest(_) => "The request could not be read",
            ErrorKind::NotFound => "Not found",
            ErrorKind::Unauthorized => "A valid API key is required",
            ErrorKind::Conflict(_) => "The request conflicts with the current state",
            ErrorKind::Forbidden(_) => "This request is not allowed",
            ErrorKind::TooManyRequests { .. } => "Too many requests",
            ErrorKind::PayloadTooLarge => "The request body is too large",
            ErrorKind::UnsupportedMediaType => "Unsupported content type",
            ErrorKind::Unavailable(_) => "The service is temporarily unavailable",
            ErrorKind::Internal(_) => "Something went wrong on our side",
        }
    }

    fn detail(&self) -> String {
        match &self.kind {
            ErrorKind::Validation { errors, .. } => errors
                .iter()
                .map(|e| e.detail.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            ErrorKind::BadRequest(why) => why.clone(),
            ErrorKind::NotFound => "There is nothing at this address.".to_owned(),
            ErrorKind::Unauthorized => {
                "Send an active admin API key as `Authorization: Bearer ak_...`.".to_owned()
            }
            ErrorKind::Conflict(why) | ErrorKind::Forbidden(why) => why.clone(),
            ErrorKind::TooManyRequests { retry_after_secs } => {
                format!("Please wait {retry_after_secs} seconds before trying again.")
            }
            ErrorKind::PayloadTooLarge => "Send at most 16 KiB.".to_owned(),
            ErrorKind::UnsupportedMediaType => {
                "Send application/x-www-form-urlencoded, multipart/form-data or application/json."
                    .to_owned()
            }
            ErrorKind::Unavailable(_) => "Please try again in a moment.".to_owned(),
            ErrorKind::Internal(_) => "The error was logged. Please try again later.".to_owned(),
        }
    }
}

/// The built-in templates for error pages (which have no request state).
pub fn builtin_templates() -> &'static Templates {
    static TEMPLATES: OnceLock<Templates> = OnceLock::new();
    TEMPLATES
        .get_or_init(|| Templates::builtin().expect("built-in templates compile (unit-tested)"))
}

/// An error as RFC 9457 problem details (`application/problem+json`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// `urn:assent:problem:` followed by `code`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    kind: String,
    /// A short summary of the problem kind.
    title: &'a str,
    /// The HTTP status, repeated.
    status: u16,
    /// Human-readable text; for `validation_failed` every field error's
    /// `detail`, joined by spaces.
    detail: String,
    /// A stable machine-readable code (docs/api.md lists them).
    code: &'a str,
    /// Only for `validation_failed`: one entry per field problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

/// A problem+json response.
pub fn problem_response(
    status: StatusCode,
    code: &str,
    title: &str,
    detail: String,
    errors: Option<&[FieldError]>,
) -> HttpResponse {
    let body = Problem {
        kind: format!("urn:assent:problem:{code}"),
        title,
        status: status.as_u16(),
        detail,
        code,
        errors,
    };
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/problem+json"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_owned()))
}

/// The headers every HTML page carries; the page cannot be framed.
pub fn html_response(status: StatusCode, body: String, form_action: &str) -> HttpResponse {
    page_response(status, body, form_action, &[])
}

/// An HTML page that the given origins may show in a frame (the hosted
/// form, per list `embed_origins`); none: no framing at all.
pub fn page_response(
    status: StatusCode,
    body: String,
    form_action: &str,
    frame_origins: &[String],
) -> HttpResponse {
    let frame_ancestors = if frame_origins.is_empty() {
        "'none'".to_owned()
    } else {
        frame_origins.join(" ")
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; \
         frame-ancestors {frame_ancestors}; base-uri 'none'"
    );
    let mut builder = HttpResponse::build(status);
    builder
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static("default-src 'none'")),
        ));
    if frame_origins.is_empty() {
        builder.insert_header((header::X_FRAME_OPTIONS, "DENY"));
    }
    builder.body(body)
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match &self.kind {
            ErrorKind::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::BadRequest(_) => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Conflict(_) => StatusCode::CONFLICT,
            ErrorKind::Forbidden(_) => StatusCode::FORBIDDEN,
            ErrorKind::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match &self.kind {
            ErrorKind::Internal(error) => {
                tracing::error!(error = ?error, "request failed");
            }
            ErrorKind::Unavailable(why) => {
                tracing::warn!(reason = %why, "answering 503");
            }
            _ => {}
        }
        let mut response = match self.format {
            Format::Json => {
                let errors = match &self.kind {
                    ErrorKind::Validation { errors, .. } => Some(errors.as_slice()),
                    _ => None,
                };
                problem_response(status, self.code(), self.title(), self.detail(), errors)
            }
            Format::Html => {
                // In English from the built-in templates; a list's page is
                // rendered again by `routes::error_pages`, which knows the
                // list's language and templates.
                let rendered = self.render_page("en", &|name, values| {
                    builtin_templates().render(name, "en", values)
                });
                match rendered {
                    Ok(body) => html_response(status, body, "'none'"),
                    Err(error) => {
                        tracing::error!(error = %error, "rendering an error page failed");
                        HttpResponse::build(status)
                            .content_type("text/plain; charset=utf-8")
                            .body(self.title())
                    }
                }
            }
        };
        if matches!(self.kind, ErrorKind::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"assent-admin\""),
            );
        }
        if let ErrorKind::TooManyRequests { retry_after_secs } = self.kind {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&retry_after_secs.to_string())
                    .unwrap_or(HeaderValue::from_static("60")),
            );
        }
        if matches!(self.kind, ErrorKind::Unavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
