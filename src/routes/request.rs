//! What a request tells about its sender: the response format it wants and
//! the evidence of where it came from.

use actix_web::HttpRequest;
use actix_web::http::header;

use crate::error::Format;
use crate::ledger::Evidence;

/// Whether the client asked for JSON in `Accept`.
pub fn accepts_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',').any(|part| {
                let mime = part.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json")
                    || mime.eq_ignore_ascii_case("application/problem+json")
            })
        })
        .unwrap_or(false)
}

/// The format a page-or-API route answers in.
pub fn page_format(req: &HttpRequest) -> Format {
    if accepts_json(req) {
        Format::Json
    } else {
        Format::Html
    }
}

fn header_string(req: &HttpRequest, name: header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The evidence of a request: the socket peer's address (forwarded headers
/// are not trusted), the user agent and, unless given, the `Referer`.
pub fn evidence(req: &HttpRequest, source_url: Option<String>) -> Evidence {
    let ip = req.peer_addr().map(|addr| addr.ip().to_string());
    let source = source_url.or_else(|| header_string(req, header::REFERER));
    Evidence::new(
        ip,
        Some("peer"),
        header_string(req, header::USER_AGENT),
        source,
    )
}

/// Pages reached through a token must not leak it onward (`Referer`) nor be
/// kept in a cache.
pub fn token_headers(mut response: actix_web::HttpResponse) -> actix_web::HttpResponse {
    let headers = response.headers_mut();
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}
