//! Posting one webhook: the HTTP client (rustls, an overall deadline, no
//! redirects followed, no proxy unless configured) and what an answer
//! means: 2xx delivered; 408, 429, 5xx, timeouts and connection trouble
//! temporary; any other status permanent.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use url::Url;

use crate::domain::WebhookEndpoint;
use crate::webhooks::signature;

/// Why a delivery failed; the text names no URL and no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying soon: the receiver is busy, down or unreachable.
    #[error("{reason}")]
    Transient {
        reason: String,
        /// The receiver's `Retry-After` (seconds form), if it sent one.
        retry_after: Option<Duration>,
    },
    /// The receiver refused the request (a redirect, 4xx).
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    /// `transient` or `permanent`, for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            DeliveryError::Transient { .. } => "transient",
            DeliveryError::Permanent(_) => "permanent",
        }
    }
}

/// Sends webhooks. Cheap to share: one connection pool for all endpoints.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
    timeout: Duration,
}

impl WebhookClient {
    /// A client whose every request, connect to response headers, ends
    /// within `timeout`; through `proxy` when one is configured.
    pub fn new(timeout: Duration, proxy: Option<&Url>) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Standard Webhooks: a redirect is a failure; following it would
            // also let a receiver point Assent at another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Assent/", env!("CARGO_PKG_VERSION"), " (webhooks)"));
        builder = match proxy {
            Some(url) => builder.proxy(reqwest::Proxy::all(url.as_str())?),
            // Not the environment's HTTP(S)_PROXY, meant for other traffic.
            None => builder.no_proxy(),
        };
        Ok(WebhookClient {
            client: builder.build()?,
            timeout,
        })
    }

    /// Posts `body` to the endpoint, signed for this attempt at `timestamp`
    /// (Unix seconds). `id` is the `webhook-id`, the same on every retry.
    pub async fn post(
        &self,
        endpoint: &WebhookEndpoint,
        id: &str,
        timestamp: i64,
        body: &str,
    ) -> Result<(), DeliveryError> {
        let signature = signature::sign(&endpoint.secret, id, timestamp, body);
        let sent = self
            .client
            .post(endpoint.url.as_url().clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            // The body is not read: its content decides nothing.
            Ok(response) => classify(response.status(), response.headers().get(RETRY_AFTER)),
            Err(error) => Err(DeliveryError::Transient {
                reason: self.describe(error),
                retry_after: None,
            }),
        }
    }

    fn describe(&self, error: reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("no answer within {} s", self.timeout.as_secs());
        }
        // The URL may hold a receiver's token: leave it out.
        let error = error.without_url();
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// What a response status means for the row.
pub fn classify(
    status: StatusCode,
    retry_after: Option<&HeaderValue>,
) -> Result<(), DeliveryError> {
    if status.is_success() {
        return Ok(());
    }
    let reason = format!(
        "HTTP {}{}",
        status.as_u16(),
        status
            .canonical_reason()
            .map(|r| format!(" {r}"))
            .unwrap_or_default()
    );
    let temporary = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if temporary {
        Err(DeliveryError::Transient {
            reason,
            retry_after: retry_after
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        })
    } else if status.is_redirection() {
        Err(DeliveryError::Permanent(format!(
            "{reason} (redirects are not followed: configure the final URL)"
        )))
    } else {
        Err(DeliveryError::Permanent(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify(StatusCode::OK, None), Ok(()));
        assert_eq!(classify(StatusCode::NO_CONTENT, None), Ok(()));
        for status in [500, 502, 503, 408, 429] {
            let error = classify(StatusCode::from_u16(status).unwrap(), None).unwrap_err();
            assert_eq!(error.class(), "transient", "{status}");
        }
        for status in [301, 400, 401, 404, 410, 422] {
            let error = classify(StatusCode::from_u16(status).unwrap(), None).unwrap_err();
            assert_eq!(error.class(), "permanent", "{status}");
        }
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, None)
                .unwrap_err()
                .to_string(),
            "HTTP 400 Bad Request"
        );
    }

    #[test]
    fn retry_after_in_seconds() {
        let value = HeaderValue::from_static("120");
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, Some(&value)),
            Err(DeliveryError::Transient {
                reason: "HTTP 503 Service Unavailable".to_owned(),
                retry_after: Some(Duration::from_secs(120)),
            })
        );
        let date = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some(&date)),
            Err(DeliveryError::Transient {
                retry_after: None,
                ..
            })
        ));
    }
}
