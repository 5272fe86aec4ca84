//! Reusable error responses of the OpenAPI document, one per way
//! `src/error.rs` answers: `application/problem+json` (RFC 9457) for API
//! clients, an HTML page for browsers, or either (chosen by `Accept`).

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{IntoResponses, ToResponse};

/// The formats an error can take on a route.
#[derive(Clone, Copy)]
enum Formats {
    /// Always problem+json (the admin API, the challenge).
    Json,
    /// Always an HTML page (the hosted form and its pages).
    Html,
    /// problem+json when `Accept` asks for JSON, else an HTML page.
    Either,
}

/// A response header an error carries.
#[derive(Clone, Copy)]
enum Extra {
    RetryAfter,
    RetryAfterFive,
    WwwAuthenticate,
}

fn string_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn build(description: &str, formats: Formats, extras: &[Extra]) -> Response {
    let mut response = ResponseBuilder::new().description(description).header(
        "Cache-Control",
        HeaderBuilder::new()
            .schema(string_schema().examples([serde_json::json!("no-store")]))
            .description(Some("`no-store` on problem+json answers"))
            .build(),
    );
    for extra in extras {
        let (name, schema, text) = match extra {
            Extra::RetryAfter => (
                "Retry-After",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
                "Seconds until the client may try again",
            ),
            Extra::RetryAfterFive => (
                "Retry-After",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
                "`5`: try again in a moment",
            ),
            Extra::WwwAuthenticate => (
                "WWW-Authenticate",
                string_schema().examples([serde_json::json!("Bearer realm=\"assent-admin\"")]),
                "`Bearer realm=\"assent-admin\"`",
            ),
        };
        response = response.header(
            name,
            HeaderBuilder::new()
                .schema(schema)
                .description(Some(text))
                .build(),
        );
    }
    if matches!(formats, Formats::Json | Formats::Either) {
        response = response.content(
            "application/problem+json",
            Content::new(Some(Ref::from_schema_name("Problem"))),
        );
    }
    if matches!(formats, Formats::Html | Formats::Either) {
        response = response.content(
            "text/html",
            Content::new(Some(
                string_schema().description(Some("A readable error page")),
            )),
        );
    }
    response.build()
}

/// Declares one reusable response per line: name, description, formats and
/// extra headers.
macro_rules! error_responses {
    ($($name:ident => $description:literal, $formats:ident, [$($extra:ident),*];)*) => {
        $(
            #[doc = $description]
            pub struct $name;

            impl<'s> ToResponse<'s> for $name {
                fn response() -> (&'s str, RefOr<Response>) {
                    (
                        stringify!($name),
                        build($description, Formats::$formats, &[$(Extra::$extra),*]).into(),
                    )
                }
            }
        )*
    };
}

error_responses! {
    MalformedRequest => "`malformed_request`: the body or query string could not be decoded", Json, [];
    MalformedQuery => "`malformed_request`: the query string could not be decoded (problem+json when `Accept` asks for JSON, else an HTML page)", Either, [];
    Unauthorized => "`unauthorized`: no active admin API key was presented", Json, [WwwAuthenticate];
    NotFound => "`not_found`: no such resource", Json, [];
    Conflict => "`conflict`: the request conflicts with the current state", Json, [];
    PayloadTooLarge => "`payload_too_large`: the body is larger than 16 KiB", Json, [];
    UnsupportedMediaType => "`unsupported_media_type`: the body's `Content-Type` is not accepted", Json, [];
    ValidationFailed => "`validation_failed`: invalid fields, each in `errors`", Json, [];
    Unavailable => "`service_unavailable`: the database is out of reach, read-only or busy", Json, [RetryAfterFive];
    Internal => "`internal_error`: an unexpected failure (logged)", Json, [];
    PageNotFound => "Not found: an HTML page", Html, [];
    PageInternal => "An unexpected failure (logged): an HTML page", Html, [];
    EitherMalformedRequest => "`malformed_request`: the body could not be decoded or is not one of the accepted bodies", Either, [];
    EitherForbidden => "`forbidden`: the list does not accept sign-ups from the request's `Origin`", Either, [];
    EitherNotFound => "`not_found` (or `token_unknown` on `/confirm/`): no such token, subscription or resource", Either, [];
    EitherGone => "`token_expired` or `token_superseded`: the link can no longer be used", Either, [];
    EitherPayloadTooLarge => "`payload_too_large`: the body is larger than 16 KiB", Either, [];
    EitherUnsupportedMediaType => "`unsupported_media_type`: the body's `Content-Type` is not accepted", Either, [];
    EitherValidationFailed => "`validation_failed`: invalid fields, each in `errors` (a page listing them for browsers)", Either, [];
    EitherTooManyRequests => "`rate_limited`: too many sign-ups from this client address", Either, [RetryAfter];
    EitherUnavailable => "`service_unavailable`: the database is out of reach, read-only or busy", Either, [RetryAfterFive];
    EitherInternal => "`internal_error`: an unexpected failure (logged)", Either, [];
}

/// Declares sets of the responses above that many routes answer alike,
/// each a type to name in a route's `responses(...)`: name, then status
/// and response of each member.
macro_rules! response_sets {
    ($($(#[doc = $doc:literal])* $name:ident => [$($status:literal => $response:ident),*];)*) => {
        $(
            $(#[doc = $doc])*
            pub struct $name;

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    BTreeMap::from([$((
                        $status.to_string(),
                        RefOr::Ref(Ref::from_response_name(stringify!($response))),
                    )),*])
                }
            }
        )*
    };
}

response_sets! {
    /// What every admin route may answer besides its own: no key, an
    /// unexpected failure, the database out of reach.
    AdminErrors => [401 => Unauthorized, 500 => Internal, 503 => Unavailable];
    /// What a page behind a link in an email may answer besides its own.
    LinkPageErrors => [404 => EitherNotFound, 500 => EitherInternal, 503 => EitherUnavailable];
    /// What the form behind a link in an email may answer besides its own:
    /// a body that is not one of its fields, besides the page's errors.
    LinkFormErrors => [
        400 => EitherMalformedRequest,
        404 => EitherNotFound,
        413 => EitherPayloadTooLarge,
        415 => EitherUnsupportedMediaType,
        500 => EitherInternal,
        503 => EitherUnavailable
    ];
}
