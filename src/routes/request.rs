//! What a request tells about its sender: the response format it wants and
//! the evidence of where it came from.

use actix_web::HttpRequest;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;

use std::net::IpAddr;

use ipnet::IpNet;

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

/// Where the client's address was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpSource {
    /// The TCP peer.
    Peer,
    /// `X-Forwarded-For`, written by a trusted proxy.
    XForwardedFor,
    /// `Forwarded` (RFC 7239), written by a trusted proxy.
    Forwarded,
}

impl IpSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            IpSource::Peer => "peer",
            IpSource::XForwardedFor => "x-forwarded-for",
            IpSource::Forwarded => "forwarded",
        }
    }
}

fn parse_forwarded_ip(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(ip);
    }
    // "[2001:db8::1]:4711" or "192.0.2.1:4711"
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    value.rsplit_once(':')?.0.parse().ok()
}

/// The right-most address in a forwarding chain that is not a trusted
/// proxy: every hop to its right was added by a proxy we trust, so it is
/// the first address nobody could forge.
fn rightmost_untrusted(chain: &[IpAddr], trusted: &[IpNet]) -> Option<IpAddr> {
    chain
        .iter()
        .rev()
        .find(|ip| !trusted.iter().any(|net| net.contains(*ip)))
        .or_else(|| chain.first())
        .copied()
}

/// The client's address: the socket peer, unless the peer is a trusted
/// proxy, in which case the forwarding headers it wrote are read.
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> Option<(IpAddr, IpSource)> {
    let peer = req.peer_addr()?.ip();
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return Some((peer, IpSource::Peer));
    }
    let joined = |name: &str| {
        let values: Vec<&str> = req
            .headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    if let Some(xff) = joined("x-forwarded-for") {
        let chain: Vec<IpAddr> = xff.split(',').filter_map(parse_forwarded_ip).collect();
        if let Some(ip) = rightmost_untrusted(&chain, trusted) {
            return Some((ip, IpSource::XForwardedFor));
        }
    }
    if let Some(forwarded) = joined("forwarded") {
        let chain: Vec<IpAddr> = forwarded
            .split(',')
            .flat_map(|element| element.split(';'))
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_forwarded_ip(value))?
            })
            .collect();
        if let Some(ip) = rightmost_untrusted(&chain, trusted) {
            return Some((ip, IpSource::Forwarded));
        }
    }
    Some((peer, IpSource::Peer))
}

/// The evidence of a request: the client's address (see [`client_ip`]), the
/// user agent and, unless given, the `Referer`.
pub fn evidence(req: &HttpRequest, trusted: &[IpNet], source_url: Option<String>) -> Evidence {
    let client = client_ip(req, trusted);
    let source = source_url.or_else(|| header_string(req, header::REFERER));
    Evidence::new(
        client.map(|(ip, _)| ip.to_string()),
        client.map(|(_, source)| source.as_str()),
        header_string(req, header::USER_AGENT),
        source,
    )
}

/// Middleware for every route whose path carries a token (confirm,
/// unsubscribe, withdraw, refuse): whatever the answer (page, JSON, error,
/// redirect), the browser must not send the URL onward in `Referer` nor
/// keep the answer in a cache.
pub async fn token_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request = req.request().clone();
    let mut response = match next.call(req).await {
        Ok(response) => response.map_into_boxed_body(),
        // An error from further in still gets the headers.
        Err(error) => ServiceResponse::from_err(error, request),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// The `Origin` a browser sent (`null` included: a sandboxed or private
/// context, which no list allows).
pub fn origin(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(|v| v.trim_end_matches('/').to_owned())
}

/// Lets a browser page from `origin` read the response.
pub fn allow_origin(response: &mut actix_web::HttpResponse, origin: &str) {
    if let Ok(value) = header::HeaderValue::from_str(origin) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(header::VARY, header::HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_values() {
        assert_eq!(parse_forwarded_ip(" 192.0.2.1 "), "192.0.2.1".parse().ok());
        assert_eq!(
            parse_forwarded_ip("\"[2001:db8::1]:4711\""),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(parse_forwarded_ip("192.0.2.1:80"), "192.0.2.1".parse().ok());
        assert_eq!(parse_forwarded_ip("unknown"), None);
    }

    #[test]
    fn the_rightmost_untrusted_hop_wins() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let chain: Vec<IpAddr> = ["6.6.6.6", "198.51.100.7", "10.0.0.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        // 6.6.6.6 was written by the client itself: not believed.
        assert_eq!(
            rightmost_untrusted(&chain, &trusted),
            "198.51.100.7".parse().ok()
        );
    }
}
