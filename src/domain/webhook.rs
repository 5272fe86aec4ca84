//! Webhook values: the event types a list can announce, an endpoint URL
//! that is HTTPS (or loopback), and a Standard Webhooks signing secret
//! (`whsec_` + base64), each valid by construction.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use secrecy::{ExposeSecret, SecretSlice};
use url::{Host, Url};

/// What a webhook announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WebhookEventType {
    /// A subscription was confirmed.
    SubscriptionConfirmed,
    /// A subscription was ended by unsubscribing from its list.
    SubscriptionUnsubscribed,
    /// Consent was withdrawn (on every list of the person).
    ConsentWithdrawn,
    /// A person's data was erased.
    SubjectErased,
}

impl WebhookEventType {
    /// Every event type, in a fixed order (the default selection).
    pub const ALL: [WebhookEventType; 4] = [
        WebhookEventType::SubscriptionConfirmed,
        WebhookEventType::SubscriptionUnsubscribed,
        WebhookEventType::ConsentWithdrawn,
        WebhookEventType::SubjectErased,
    ];

    /// The name in payloads and configuration (`subscription.confirmed`).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventType::SubscriptionConfirmed => "subscription.confirmed",
            WebhookEventType::SubscriptionUnsubscribed => "subscription.unsubscribed",
            WebhookEventType::ConsentWithdrawn => "consent.withdrawn",
            WebhookEventType::SubjectErased => "subject.erased",
        }
    }

    /// Parses a name.
    pub fn parse(value: &str) -> Result<Self, WebhookEventTypeError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == value)
            .ok_or_else(|| WebhookEventTypeError(value.chars().take(80).collect()))
    }

    /// Whether the event tells a downstream system to stop mailing someone.
    /// Such notices outlive an erasure until delivered (docs/compliance.md).
    pub fn is_leaving(self) -> bool {
        !matches!(self, WebhookEventType::SubscriptionConfirmed)
    }
}

/// Why an event type was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a webhook event: use subscription.confirmed, subscription.unsubscribed, consent.withdrawn or subject.erased"
)]
pub struct WebhookEventTypeError(pub String);

/// Why a webhook URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("not a URL: {0}")]
    Invalid(String),
    #[error("must be https:// (http:// only for a loopback host such as 127.0.0.1)")]
    NotHttps,
    #[error("must not carry a user name or password; authenticate receivers by the signature")]
    Credentials,
    #[error("must not have a fragment")]
    Fragment,
}

/// Where a webhook is posted: `https://`, or `http://` to a loopback host
/// (a receiver on the same machine), without credentials or fragment.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    /// Parses and checks a configured URL.
    pub fn parse(value: &str) -> Result<Self, WebhookUrlError> {
        let url = Url::parse(value).map_err(|e| WebhookUrlError::Invalid(e.to_string()))?;
        let host = url
            .host()
            .ok_or_else(|| WebhookUrlError::Invalid("the URL has no host".to_owned()))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            _ => return Err(WebhookUrlError::NotHttps),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookUrlError::Credentials);
        }
        if url.fragment().is_some() {
            return Err(WebhookUrlError::Fragment);
        }
        Ok(WebhookUrl(url))
    }

    /// The URL.
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// `host[:port]`, for logs and the outbox listing: a path or query may
    /// hold a receiver's token, the host does not.
    pub fn host_port(&self) -> String {
        let host = self.0.host_str().unwrap_or_default();
        match self.0.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Debug output may reach logs (`assent check-config`): the path and
        // query can hold a receiver's token.
        write!(
            f,
            "WebhookUrl({}://{}/…)",
            self.0.scheme(),
            self.host_port()
        )
    }
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// Shortest and longest signing key (Standard Webhooks: 24 to 64 bytes).
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// Why a signing secret was refused (never quoting it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSecretError {
    #[error("must start with whsec_ (Standard Webhooks)")]
    Prefix,
    #[error("must be whsec_ followed by base64")]
    Base64,
    #[error("must hold 24 to 64 random bytes (32 is usual: openssl rand -base64 32)")]
    Length,
}

/// A Standard Webhooks symmetric signing key: the bytes behind `whsec_…`,
/// kept out of `Debug` output.
#[derive(Clone)]
pub struct WebhookSecret(SecretSlice<u8>);

impl WebhookSecret {
    /// Parses `whsec_` followed by the base64 of 24 to 64 bytes.
    pub fn parse(value: &str) -> Result<Self, WebhookSecretError> {
        let encoded = value
            .trim()
            .strip_prefix("whsec_")
            .ok_or(WebhookSecretError::Prefix)?;
        let bytes = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| WebhookSecretError::Base64)?;
        if !SECRET_BYTES.contains(&bytes.len()) {
            return Err(WebhookSecretError::Length);
        }
        Ok(WebhookSecret(SecretSlice::from(bytes)))
    }

    /// The key bytes, for the HMAC.
    pub fn expose_bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

/// One configured endpoint of a list.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    pub url: WebhookUrl,
    pub secret: WebhookSecret,
    /// What it wants; never empty, no duplicates.
    pub events: Vec<WebhookEventType>,
}

impl WebhookEndpoint {
    /// Whether it wants `event`.
    pub fn wants(&self, event: WebhookEventType) -> bool {
        self.events.contains(&event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip() {
        for t in WebhookEventType::ALL {
            assert_eq!(WebhookEventType::parse(t.as_str()), Ok(t));
        }
        assert!(WebhookEventType::parse("subscription.created").is_err());
        assert!(!WebhookEventType::SubscriptionConfirmed.is_leaving());
        assert!(WebhookEventType::SubjectErased.is_leaving());
    }

    #[test]
    fn urls_are_https_unless_loopback() {
        assert!(WebhookUrl::parse("https://crm.example/hooks?token=x").is_ok());
        for ok in [
            "http://127.0.0.1:9000/hook",
            "http://127.8.0.1/hook",
            "http://[::1]:9000/",
            "http://localhost:9000/",
        ] {
            assert!(WebhookUrl::parse(ok).is_ok(), "{ok}");
        }
        for (bad, error) in [
            ("http://crm.example/hook", WebhookUrlError::NotHttps),
            ("http://10.0.0.1/hook", WebhookUrlError::NotHttps),
            ("ftp://crm.example/", WebhookUrlError::NotHttps),
            ("https://u:p@crm.example/", WebhookUrlError::Credentials),
            ("https://crm.example/#x", WebhookUrlError::Fragment),
        ] {
            assert_eq!(WebhookUrl::parse(bad), Err(error), "{bad}");
        }
        assert!(matches!(
            WebhookUrl::parse("not a url"),
            Err(WebhookUrlError::Invalid(_))
        ));
    }

    #[test]
    fn urls_hide_their_path_in_debug() {
        let url = WebhookUrl::parse("https://crm.example:8443/hooks/s3cr3t").unwrap();
        assert_eq!(url.host_port(), "crm.example:8443");
        assert!(!format!("{url:?}").contains("s3cr3t"));
    }

    #[test]
    fn secrets() {
        let key = STANDARD.encode([7u8; 32]);
        let secret = WebhookSecret::parse(&format!("whsec_{key}")).unwrap();
        assert_eq!(secret.expose_bytes(), &[7u8; 32]);
        assert_eq!(format!("{secret:?}"), "WebhookSecret(***)");
        // Unpadded base64 (24 bytes encode without padding anyway).
        let unpadded = STANDARD_NO_PAD.encode([1u8; 25]);
        assert!(WebhookSecret::parse(&format!("whsec_{unpadded}")).is_ok());
        assert_eq!(
            WebhookSecret::parse(&key).unwrap_err(),
            WebhookSecretError::Prefix
        );
        assert_eq!(
            WebhookSecret::parse("whsec_not base64!").unwrap_err(),
            WebhookSecretError::Base64
        );
        let short = STANDARD.encode([1u8; 16]);
        assert_eq!(
            WebhookSecret::parse(&format!("whsec_{short}")).unwrap_err(),
            WebhookSecretError::Length
        );
        let long = STANDARD.encode([1u8; 65]);
        assert_eq!(
            WebhookSecret::parse(&format!("whsec_{long}")).unwrap_err(),
            WebhookSecretError::Length
        );
    }
}
