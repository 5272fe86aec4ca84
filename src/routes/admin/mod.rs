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
use actix_web::http::{Method, header};
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

/// One admin route: what `configure` registers, and a request that
/// reaches it, for tests that walk every route.
pub struct AdminRoute {
    pub method: Method,
    /// The pattern under `/admin`.
    pub pattern: &'static str,
    /// A path (and query) under `/admin` that the pattern matches.
    pub sample: &'static str,
    handler: fn(actix_web::Route) -> actix_web::Route,
}

impl AdminRoute {
    /// The sample request's full path.
    pub fn sample_path(&self) -> String {
        format!("/admin{}", self.sample)
    }
}

/// Every admin route. `configure` registers exactly these, so the list
/// cannot drift from what is served.
pub const ROUTES: &[AdminRoute] = &[
    AdminRoute {
        method: Method::GET,
        pattern: "/lists",
        sample: "/lists",
        handler: |r| r.to(lists::index),
    },
    AdminRoute {
        method: Method::GET,
        pattern: "/lists/{slug}",
        sample: "/lists/newsletter",
        handler: |r| r.to(lists::show),
    },
    AdminRoute {
        method: Method::POST,
        pattern: "/lists/{slug}/consent-versions",
        sample: "/lists/newsletter/consent-versions",
        handler: |r| r.to(lists::register_version),
    },
    AdminRoute {
        method: Method::GET,
        pattern: "/lists/{slug}/audience",
        sample: "/lists/newsletter/audience",
        handler: |r| r.to(lists::audience),
    },
    AdminRoute {
        method: Method::GET,
        pattern: "/subscribers",
        sample: "/subscribers?email=a@example.org",
        handler: |r| r.to(subjects::lookup),
    },
    AdminRoute {
        method: Method::DELETE,
        pattern: "/subjects/{email}",
        sample: "/subjects/a@example.org",
        handler: |r| r.to(subjects::erase),
    },
    AdminRoute {
        method: Method::GET,
        pattern: "/subjects/{email}/export",
        sample: "/subjects/a@example.org/export",
        handler: |r| r.to(subjects::export),
    },
    AdminRoute {
        method: Method::GET,
        pattern: "/exports/consent",
        sample: "/exports/consent?format=csv",
        handler: |r| r.to(exports::consent),
    },
    AdminRoute {
        method: Method::GET,
        pattern: "/exports/consent-texts",
        sample: "/exports/consent-texts",
        handler: |r| r.to(exports::consent_texts),
    },
    AdminRoute {
        method: Method::GET,
        pattern: "/exports/events",
        sample: "/exports/events?format=ndjson",
        handler: |r| r.to(exports::events),
    },
    AdminRoute {
        method: Method::GET,
        pattern: "/ledger/verify",
        sample: "/ledger/verify",
        handler: |r| r.to(ledger::verify),
    },
    AdminRoute {
        method: Method::GET,
        pattern: "/outbox",
        sample: "/outbox?state=dead",
        handler: |r| r.to(outbox::index),
    },
    AdminRoute {
        method: Method::POST,
        pattern: "/outbox/{id}/retry",
        sample: "/outbox/x/retry",
        handler: |r| r.to(outbox::retry),
    },
];

/// Registers the admin routes: every entry of [`ROUTES`], behind the key
/// check, and a default that answers 401 or 404.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let scope = ROUTES.iter().fold(
        web::scope("/admin").wrap(from_fn(require_key)),
        |scope, route| {
            scope.route(
                route.pattern,
                (route.handler)(web::method(route.method.clone())),
            )
        },
    );
    cfg.service(scope.default_service(web::to(unknown)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_reaches_its_own_route() {
        for route in ROUTES {
            let path = route.sample.split('?').next().unwrap_or_default();
            let matching: Vec<_> = ROUTES
                .iter()
                .filter(|other| {
                    other.method == route.method
                        && actix_web::dev::ResourceDef::new(other.pattern).is_match(path)
                })
                .map(|other| other.pattern)
                .collect();
            assert_eq!(
                matching,
                [route.pattern],
                "{} {}",
                route.method,
                route.sample
            );
        }
    }
}
