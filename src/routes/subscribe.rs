//! `POST /subscriptions`: the public sign-up. It answers the same whatever
//! the address's prior state, so nobody can learn who is subscribed.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::clock::naive;
use crate::context::AppContext;
use crate::db::repo::lists::ConsentRef;
use crate::db::repo::signup::{
    ConfirmationBudget, ConsentSource, PendingSignup, SignupError, SignupInput, SignupOutcome,
};
use crate::domain::email::EmailError;
use crate::domain::person_name::PersonNameError;
use crate::domain::{ConfirmationToken, ConsentText, EmailAddress, PersonName};
use crate::error::{AppError, ErrorKind, FieldError, Format};
use crate::ledger::EventMethod;
use crate::metrics::Metrics;
use crate::rate_limit::Decision;
use crate::registry::ListEntry;
use crate::routes::body::{self, Encoding};
use crate::routes::request;

/// The list used when a form names none.
pub const DEFAULT_LIST: &str = "newsletter";

/// The fields as sent, before validation.
#[derive(Debug, Default)]
struct RawSignup {
    email: Option<String>,
    list: Option<String>,
    /// `Some(true)` for an affirmative answer.
    consent: Option<bool>,
    consent_version: Option<String>,
    consent_text: Option<String>,
    name: Option<String>,
    source_url: Option<String>,
    redirect: Option<String>,
    /// The hidden `website` field no person fills in.
    honeypot: Option<String>,
    /// A proof-of-work solution, for lists that require one.
    altcha: Option<String>,
    /// Fields of the wrong JSON type.
    type_errors: Vec<FieldError>,
}

fn form_consent(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "on" | "true" | "yes" | "1"
    )
}

impl RawSignup {
    fn set(&mut self, name: &str, value: String) {
        let slot = match name {
            "email" => &mut self.email,
            "list" => &mut self.list,
            "consent_version" => &mut self.consent_version,
            "consent_text" => &mut self.consent_text,
            "name" => &mut self.name,
            "source_url" => &mut self.source_url,
            "redirect" => &mut self.redirect,
            "website" => &mut self.honeypot,
            "altcha" => &mut self.altcha,
            "consent" => {
                if self.consent.is_none() {
                    self.consent = Some(form_consent(&value));
                }
                return;
            }
            _ => return,
        };
        // The first occurrence wins, as browsers send fields in order.
        if slot.is_none() {
            *slot = Some(value);
        }
    }

    fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut raw = RawSignup::default();
        for (name, value) in pairs {
            raw.set(&name, value);
        }
        raw
    }

    fn from_json(body: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("the JSON body is malformed: {e}"))?;
        let serde_json::Value::Object(map) = value else {
            return Err("the JSON body must be an object".to_owned());
        };
        let mut raw = RawSignup::default();
        for (name, value) in map {
            match (name.as_str(), value) {
                ("consent", serde_json::Value::Bool(b)) => raw.consent = Some(b),
                ("consent", serde_json::Value::Null) => {}
                ("consent", _) => raw.consent = Some(false),
                (_, serde_json::Value::Null) => {}
                (_, serde_json::Value::String(s)) => raw.set(&name, s),
                (field, _) => {
                    if let Some(field) = known_field(field) {
                        raw.type_errors.push(FieldError::new(
                            field,
                            "wrong_type",
                            format!("{field} must be a string."),
                        ));
                    }
                }
            }
        }
        Ok(raw)
    }
}

fn known_field(name: &str) -> Option<&'static str> {
    [
        "email",
        "list",
        "consent_version",
        "consent_text",
        "name",
        "source_url",
        "redirect",
    ]
    .into_iter()
    .find(|f| *f == name)
}

/// A sign-up that passed validation, before the database.
struct Validated<'a> {
    list: &'a ListEntry,
    email: EmailAddress,
    name: Option<PersonName>,
    consent: ConsentRef,
    consent_source: ConsentSource,
    source_url: Option<String>,
    redirect: Option<String>,
    bot: bool,
}

fn validate<'a>(
    ctx: &'a AppContext,
    raw: RawSignup,
) -> Result<Validated<'a>, (Vec<FieldError>, String)> {
    let mut errors = raw.type_errors;
    let slug = raw.list.as_deref().map(str::trim).unwrap_or(DEFAULT_LIST);
    let list = ctx.lists.by_slug(slug).map(|l| l.as_ref());
    let back_url = match list {
        Some(l) => format!("/lists/{}/form", l.slug()),
        None => "/".to_owned(),
    };
    if list.is_none() {
        errors.push(FieldError::new(
            "list",
            "list_unknown",
            "There is no such list.",
        ));
    }
    let email = match raw.email.as_deref().map(EmailAddress::parse) {
        None | Some(Err(EmailError::Empty)) => {
            errors.push(FieldError::new(
                "email",
                "email_required",
                "Please enter your email address.",
            ));
            None
        }
        Some(Err(EmailError::TooLong)) => {
            errors.push(FieldError::new(
                "email",
                "email_too_long",
                "The email address is too long (at most 254 characters).",
            ));
            None
        }
        Some(Err(EmailError::Invalid)) => {
            errors.push(FieldError::new(
                "email",
                "email_invalid",
                "Please enter a valid email address.",
            ));
            None
        }
        Some(Ok(email)) => Some(email),
    };
    if raw.consent != Some(true) {
        errors.push(FieldError::new(
            "consent",
            "consent_required",
            "Please tick the consent box to subscribe.",
        ));
    }
    let name = match raw.name.as_deref().map(PersonName::parse).transpose() {
        Ok(name) => name.flatten(),
        Err(PersonNameError::TooLong) => {
            errors.push(FieldError::new(
                "name",
                "name_too_long",
                "The name may have at most 100 characters.",
            ));
            None
        }
        Err(PersonNameError::ControlCharacters) => {
            errors.push(FieldError::new(
                "name",
                "name_invalid",
                "The name may not contain line breaks or control characters.",
            ));
            None
        }
    };
    let version_id = raw
        .consent_version
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let consent_text = raw.consent_text.filter(|t| !t.trim().is_empty());
    let text_hash = match consent_text.map(ConsentText::new) {
        None => None,
        Some(Ok(text)) => Some(text.hash()),
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "consent_text",
                "consent_text_unknown",
                "The consent text is not one of this list's texts.",
            ));
            None
        }
    };
    if let Some(id) = &version_id
        && (id.len() > 64 || uuid::Uuid::parse_str(id).is_err())
    {
        errors.push(FieldError::new(
            "consent_version",
            "consent_version_unknown",
            "The consent version is not one of this list's versions.",
        ));
    }
    let source_url = raw
        .source_url
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    if let Some(url) = &source_url
        && (url.chars().count() > crate::ledger::evidence::MAX_EVIDENCE_FIELD
            || url.chars().any(char::is_control))
    {
        errors.push(FieldError::new(
            "source_url",
            "source_url_invalid",
            "The source URL is too long or malformed.",
        ));
    }
    // Checked last, so a solution is spent only by an otherwise valid sign-up.
    if errors.is_empty() && list.is_some_and(|l| l.settings.proof_of_work) {
        let verdict = match raw.altcha.as_deref() {
            Some(field) if !field.is_empty() => ctx.pow.verify(field, ctx.clock.now()),
            _ => Err(crate::pow::PowError::Malformed),
        };
        if let Err(why) = verdict {
            errors.push(FieldError::new(
                "altcha",
                "proof_of_work_failed",
                format!("{why}; reload the form and try again."),
            ));
        }
    }
    match (errors.is_empty(), list, email) {
        (true, Some(list), Some(email)) => {
            let (consent, consent_source) = match (version_id, text_hash) {
                (Some(id), Some(hash)) => {
                    (ConsentRef::Both(id, hash), ConsentSource::VersionIdAndText)
                }
                (Some(id), None) => (ConsentRef::Id(id), ConsentSource::VersionId),
                (None, Some(hash)) => (ConsentRef::Text(hash), ConsentSource::Text),
                (None, None) => (
                    ConsentRef::Id(list.current.id.clone()),
                    ConsentSource::ListCurrent,
                ),
            };
            Ok(Validated {
                list,
                email,
                name,
                consent,
                consent_source,
                source_url,
                redirect: raw.redirect,
                bot: raw.honeypot.is_some_and(|v| !v.trim().is_empty()),
            })
        }
        _ => Err((errors, back_url)),
    }
}

fn consent_error(source: ConsentSource) -> FieldError {
    match source {
        ConsentSource::Text => FieldError::new(
            "consent_text",
            "consent_text_unknown",
            "The consent text is not one of this list's texts.",
        ),
        ConsentSource::VersionIdAndText => FieldError::new(
            "consent_text",
            "consent_text_mismatch",
            "The consent text does not match the consent version.",
        ),
        _ => FieldError::new(
            "consent_version",
            "consent_version_unknown",
            "The consent version is not one of this list's versions.",
        ),
    }
}

/// `POST /subscriptions`.
#[utoipa::path(
    post,
    path = "/subscriptions",
    tag = "sign-up",
    request_body(
        description = "The sign-up, in any of three encodings. Answers in JSON when the body is JSON or `Accept` lists `application/json`, else as a browser form post (303).",
        content(
            (crate::openapi::schemas::SignupJson = "application/json"),
            (crate::openapi::schemas::SignupForm = "application/x-www-form-urlencoded"),
            (crate::openapi::schemas::SignupForm = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 202, description = "Accepted (JSON); the same whatever the address's state", body = crate::openapi::schemas::SignupAccepted,
            headers(
                ("Cache-Control" = String, description = "`no-store`"),
                ("Access-Control-Allow-Origin" = String, description = "The request's `Origin`, when the list's `allowed_origins` has it"),
            )),
        (status = 303, description = "Accepted (browser form post): to the `redirect`, the list's thank-you URL or `/lists/{slug}/check-inbox`",
            headers(
                ("Location" = String, description = "Where the browser goes next"),
                ("Cache-Control" = String, description = "`no-store`"),
            )),
        (status = 400, response = crate::openapi::responses::EitherMalformedRequest),
        (status = 403, response = crate::openapi::responses::EitherForbidden),
        (status = 413, response = crate::openapi::responses::EitherPayloadTooLarge),
        (status = 415, response = crate::openapi::responses::EitherUnsupportedMediaType),
        (status = 422, response = crate::openapi::responses::EitherValidationFailed),
        (status = 429, response = crate::openapi::responses::EitherTooManyRequests),
        (status = 500, response = crate::openapi::responses::EitherInternal),
        (status = 503, response = crate::openapi::responses::EitherUnavailable),
    ),
)]
pub async fn subscribe(
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<AppContext>,
) -> Result<HttpResponse, AppError> {
    let encoding = body::encoding_of(&req);
    let format = if encoding == Some(Encoding::Json) || request::accepts_json(&req) {
        Format::Json
    } else {
        Format::Html
    };
    let fail = |kind: ErrorKind| AppError::new(kind, format);
    if let Some((ip, _)) = request::client_ip(&req, &ctx.settings.trusted_proxies) {
        let exempt = ctx
            .settings
            .rate_limit_exempt
            .iter()
            .any(|net| net.contains(&ip));
        if !exempt
            && let Decision::Limited { retry_after_secs } =
                ctx.rate_limiter.check(ip, ctx.clock.now())
        {
            Metrics::incr(&ctx.metrics.signups_rate_limited);
            return Err(fail(ErrorKind::TooManyRequests { retry_after_secs }));
        }
    }
    let Some(encoding) = encoding else {
        return Err(fail(ErrorKind::UnsupportedMediaType));
    };
    let body = body::read_limited(&req, payload).await.map_err(fail)?;
    let raw = match encoding {
        Encoding::Json => RawSignup::from_json(&body),
        Encoding::Form | Encoding::Multipart => body::form_pairs(&req, encoding, body)
            .await
            .map(RawSignup::from_pairs),
    }
    .map_err(|why| fail(ErrorKind::BadRequest(why)))?;
    // A site the list does not accept sign-ups from learns nothing more,
    // not even which of its fields were wrong.
    let origin = request::origin(&req);
    let named_list = ctx
        .lists
        .by_slug(raw.list.as_deref().map(str::trim).unwrap_or(DEFAULT_LIST));
    if let (Some(origin), Some(list)) = (&origin, named_list) {
        let own = ctx.settings.base_url.origin().ascii_serialization();
        let allowed = list.settings.allowed_origins.is_empty()
            || *origin == own
            || list.settings.allowed_origins.contains(origin);
        if !allowed {
            return Err(fail(ErrorKind::Forbidden(
                "this list does not accept sign-ups from that site".to_owned(),
            )));
        }
    }
    let validated = validate(&ctx, raw)
        .map_err(|(errors, back_url)| fail(ErrorKind::Validation { errors, back_url }))?;
    let list = validated.list;
    let cors_origin = origin.filter(|o| list.settings.allowed_origins.contains(o));
    let redirect = validated
        .redirect
        .as_ref()
        .filter(|r| {
            list.settings
                .redirect_urls
                .iter()
                .any(|allowed| allowed == *r)
        })
        .cloned();
    if validated.bot {
        // Answered exactly like a real sign-up; nothing is stored or sent.
        Metrics::incr(&ctx.metrics.signups_bot);
        return Ok(accepted(format, list, redirect, cors_origin));
    }
    let evidence = request::evidence(
        &req,
        &ctx.settings.trusted_proxies,
        validated.source_url.clone(),
    )
    .seal();
    let input = SignupInput {
        list_id: list.id.clone(),
        double_opt_in: list.settings.double_opt_in,
        welcome: list.settings.welcome,
        email_hmac: ctx.subject_hash(&validated.email),
        email: validated.email,
        name: validated.name,
        consent: validated.consent,
        consent_source: validated.consent_source,
        method: match format {
            Format::Json => EventMethod::Api,
            Format::Html => EventMethod::Form,
        },
        evidence,
        token: ConfirmationToken::generate(),
        token_ttl: chrono::Duration::hours(ctx.settings.tokens.confirmation_ttl_hours as i64),
        message_domain: crate::mail::message::list_domain(list),
        budget: ConfirmationBudget {
            interval: chrono::Duration::seconds(
                ctx.settings.abuse.confirmation_interval_secs as i64,
            ),
            per_day: ctx.settings.abuse.confirmations_per_day,
        },
        webhooks: std::sync::Arc::clone(&ctx.webhooks),
    };
    let consent_source = input.consent_source;
    let masked = input.email.masked();
    let now = naive(ctx.clock.now());
    let outcome = ctx.signups.record(PendingSignup { input, now }).await;
    match outcome {
        Ok(outcome) => {
            let counter = match outcome {
                SignupOutcome::ConfirmationQueued { .. } => {
                    ctx.outbox_wake.notify_one();
                    &ctx.metrics.signups_accepted
                }
                SignupOutcome::ConfirmedWithoutOptIn => {
                    ctx.outbox_wake.notify_one();
                    ctx.webhook_wake.notify_one();
                    &ctx.metrics.signups_accepted
                }
                SignupOutcome::AlreadyConfirmed => &ctx.metrics.signups_already_confirmed,
                SignupOutcome::Throttled => &ctx.metrics.signups_throttled,
                SignupOutcome::Refused => &ctx.metrics.signups_refused,
            };
            Metrics::incr(counter);
            tracing::debug!(list = list.slug(), email = %masked, outcome = ?outcome, "sign-up recorded");
        }
        Err(SignupError::ConsentVersionUnknown) => {
            return Err(fail(ErrorKind::Validation {
                errors: vec![consent_error(consent_source)],
                back_url: format!("/lists/{}/form", list.slug()),
            }));
        }
        Err(SignupError::Db(error)) => return Err(AppError::database(error, format)),
    }
    Ok(accepted(format, list, redirect, cors_origin))
}

/// The one answer every accepted sign-up gets, whatever happened to it.
fn accepted(
    format: Format,
    list: &ListEntry,
    redirect: Option<String>,
    cors_origin: Option<String>,
) -> HttpResponse {
    let mut response = match format {
        Format::Json => HttpResponse::build(StatusCode::ACCEPTED)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({ "status": "check_inbox" })),
        Format::Html => {
            let location = redirect
                .or_else(|| list.settings.thank_you_url.as_ref().map(|u| u.to_string()))
                .unwrap_or_else(|| format!("/lists/{}/check-inbox", list.slug()));
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, location))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
    };
    if let Some(origin) = cors_origin {
        request::allow_origin(&mut response, &origin);
    }
    response
}

/// `OPTIONS /subscriptions`: the CORS preflight. Origins allowed by any
/// list get the CORS headers; others get none (the browser then refuses).
#[utoipa::path(
    options,
    path = "/subscriptions",
    tag = "sign-up",
    responses(
        (status = 204, description = "Always empty; CORS headers only for an `Origin` in some list's `allowed_origins`",
            headers(
                ("Access-Control-Allow-Origin" = String, description = "The request's `Origin`"),
                ("Access-Control-Allow-Methods" = String, description = "`POST`"),
                ("Access-Control-Allow-Headers" = String, description = "`content-type, accept`"),
                ("Access-Control-Max-Age" = String, description = "`600`"),
            )),
    ),
)]
pub async fn preflight(req: HttpRequest, ctx: web::Data<AppContext>) -> HttpResponse {
    let mut response = HttpResponse::NoContent().finish();
    if let Some(origin) = request::origin(&req) {
        let allowed = ctx
            .lists
            .all()
            .iter()
            .any(|l| l.settings.allowed_origins.contains(&origin));
        if allowed {
            request::allow_origin(&mut response, &origin);
            let headers = response.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                header::HeaderValue::from_static("POST"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                header::HeaderValue::from_static("content-type, accept"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                header::HeaderValue::from_static("600"),
            );
        }
    }
    response
}
