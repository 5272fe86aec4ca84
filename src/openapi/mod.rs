//! The OpenAPI 3.1 description of every route, generated from the
//! `#[utoipa::path]` attributes on the handlers and the schemas next to
//! their types. Served at `GET /openapi.json`, printed by `assent openapi`
//! and committed as `docs/openapi.json` (a test keeps the three equal).

pub mod responses;
pub mod schemas;

use std::sync::OnceLock;

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

/// The name of the admin API's security scheme.
pub const ADMIN_SCHEME: &str = "admin_key";

/// The name of the optional `/metrics` bearer token's scheme.
pub const METRICS_SCHEME: &str = "metrics_token";

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.bearer_format = Some("ak_ followed by 43 characters of base64url".to_owned());
        admin.description =
            Some("An admin API key from `assent keys create --name NAME`.".to_owned());
        components.add_security_scheme(ADMIN_SCHEME, SecurityScheme::Http(admin));
        let mut metrics = Http::new(HttpAuthScheme::Bearer);
        metrics.description = Some(
            "`[metrics] token`, when configured; without one, `/metrics` answers loopback clients only."
                .to_owned(),
        );
        components.add_security_scheme(METRICS_SCHEME, SecurityScheme::Http(metrics));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Assent",
        description = "Newsletter consent and subscription service: double opt-in, one-click unsubscribe (RFC 8058), a verifiable consent ledger and an admin API. See docs/api.md for the behaviour behind each route."
    ),
    paths(
        routes::health::healthz,
        routes::health::readyz,
        routes::health::metrics,
        routes::openapi::document,
        routes::pages::index,
        routes::pages::stylesheet,
        routes::pages::pow_script,
        routes::pages::challenge,
        routes::pages::form,
        routes::pages::check_inbox,
        routes::subscribe::subscribe,
        routes::subscribe::preflight,
        routes::confirm::show,
        routes::confirm::confirm,
        routes::leave::show,
        routes::leave::unsubscribe,
        routes::leave::withdraw,
        routes::refuse::show,
        routes::refuse::act,
        routes::admin::lists::index,
        routes::admin::lists::show,
        routes::admin::lists::register_version,
        routes::admin::lists::audience,
        routes::admin::subjects::lookup,
        routes::admin::subjects::erase,
        routes::admin::subjects::export,
        routes::admin::exports::consent,
        routes::admin::exports::consent_texts,
        routes::admin::exports::events,
        routes::admin::ledger::verify,
        routes::admin::outbox::index,
        routes::admin::outbox::retry,
    ),
    components(
        schemas(
            crate::error::Problem,
            crate::error::FieldError,
            schemas::ConsentRecord,
            schemas::AudienceMember,
            schemas::LedgerEvent,
            schemas::ExportFormat,
            schemas::OutboxState,
        ),
        responses(
            responses::MalformedRequest,
            responses::MalformedQuery,
            responses::Unauthorized,
            responses::NotFound,
            responses::Conflict,
            responses::PayloadTooLarge,
            responses::UnsupportedMediaType,
            responses::ValidationFailed,
            responses::Unavailable,
            responses::Internal,
            responses::PageNotFound,
            responses::PageInternal,
            responses::EitherMalformedRequest,
            responses::EitherForbidden,
            responses::EitherNotFound,
            responses::EitherGone,
            responses::EitherPayloadTooLarge,
            responses::EitherUnsupportedMediaType,
            responses::EitherValidationFailed,
            responses::EitherTooManyRequests,
            responses::EitherUnavailable,
            responses::EitherInternal,
        )
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this description"),
        (name = "pages", description = "Pages for people: the index, the hosted form, assets"),
        (name = "sign-up", description = "The public sign-up"),
        (name = "links", description = "The links in emails: confirm, unsubscribe, withdraw, refuse"),
        (name = "admin", description = "The admin API (an API key for every route)"),
    )
)]
struct ApiDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON with a final newline, as committed in
/// `docs/openapi.json`; built once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut text = document()
            .to_pretty_json()
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string());
        text.push('\n');
        text
    })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.push(target.clone());
                }
                map.values().for_each(|v| references(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let value: Value = serde_json::from_str(super::json()).unwrap();
        assert!(value["openapi"].as_str().unwrap().starts_with("3.1."));
    }

    #[test]
    fn every_reference_resolves() {
        let document: Value = serde_json::from_str(super::json()).unwrap();
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(!found.is_empty());
        for target in found {
            let pointer = target.strip_prefix('#').expect("a local reference");
            assert!(
                document.pointer(pointer).is_some(),
                "{target} does not resolve"
            );
        }
    }
}
