//! The admin API under `/admin`: every route needs an active API key
//! (`Authorization: Bearer ak_...`), checked by the [`Admin`] extractor.

pub mod exports;
pub mod ledger;
pub mod lists;
pub mod outbox;
pub mod stream;
pub mod subjects;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use crate::clock::naive;
use crate::context::AppContext;
use crate::db::repo::api_keys;
use crate::domain::api_key::ApiKey;
use crate::error::{AppError, ErrorKind, Format};
use crate::routes::db_call::with_conn;

/// Proof that the request carries an active API key.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The key's name, for logs.
    pub key_name: String,
}

fn presented_key(req: &HttpRequest) -> Option<ApiKey> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    ApiKey::parse(key.trim())
}

impl FromRequest for Admin {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        // Set by `require_key`, which runs before any extractor.
        std::future::ready(
            req.extensions()
                .get::<Admin>()
                .cloned()
                .ok_or_else(|| AppError::new(ErrorKind::Unauthorized, Format::Json)),
        )
    }
}

/// Authenticates every request to the admin scope before its handler (and
/// its body extractors) run.
async fn require_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let unauthorized = || AppError::new(ErrorKind::Unauthorized, Format::Json);
    let ctx = req.app_data::<web::Data<AppContext>>().cloned();
    let key = presented_key(req.request());
    let (Some(ctx), Some(key)) = (ctx, key) else {
        return Err(unauthorized().into());
    };
    let digest = key.digest();
    let now = naive(ctx.clock.now());
    let name = with_conn(&ctx, Format::Json, move |conn| {
        api_keys::authenticate(conn, &digest, now)
    })
    .await?;
    let key_name = name.ok_or_else(unauthorized)?;
    tracing::debug!(key = %key_name, "admin request");
    req.extensions_mut().insert(Admin { key_name });
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Unknown admin paths: authenticate first, then 404, so the API does not
/// reveal its routes to callers without a key.
async fn unknown(_admin: Admin) -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::new(ErrorKind::NotFound, Format::Json))
}

/// Registers the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(from_fn(require_key))
            .route("/lists", web::get().to(lists::index))
            .route("/lists/{slug}", web::get().to(lists::show))
            .route(
                "/lists/{slug}/consent-versions",
                web::post().to(lists::register_version),
            )
            .route("/lists/{slug}/audience", web::get().to(lists::audience))
            .route("/subscribers", web::get().to(subjects::lookup))
            .route("/subjects/{email}", web::delete().to(subjects::erase))
            .route("/subjects/{email}/export", web::get().to(subjects::export))
            .route("/exports/consent", web::get().to(exports::consent))
            .route(
                "/exports/consent-texts",
                web::get().to(exports::consent_texts),
            )
            .route("/exports/events", web::get().to(exports::events))
            .route("/ledger/verify", web::get().to(ledger::verify))
            .route("/outbox", web::get().to(outbox::index))
            .route("/outbox/{id}/retry", web::post().to(outbox::retry))
            .default_service(web::to(unknown)),
    );
}

/// Every admin route as (method, path with sample parameters), for tests
/// that walk them all.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/lists"),
    ("GET", "/admin/lists/newsletter"),
    ("POST", "/admin/lists/newsletter/consent-versions"),
    ("GET", "/admin/lists/newsletter/audience"),
    ("GET", "/admin/subscribers?email=a@example.org"),
    ("DELETE", "/admin/subjects/a@example.org"),
    ("GET", "/admin/subjects/a@example.org/export"),
    ("GET", "/admin/exports/consent?format=csv"),
    ("GET", "/admin/exports/consent-texts"),
    ("GET", "/admin/exports/events?format=ndjson"),
    ("GET", "/admin/ledger/verify"),
    ("GET", "/admin/outbox?state=dead"),
    ("POST", "/admin/outbox/x/retry"),
    ("GET", "/admin/no-such-route"),
];
