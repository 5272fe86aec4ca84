//! The notices a webhook carries and their JSON bodies, in the shape the
//! Standard Webhooks specification recommends: `{"type", "timestamp",
//! "data"}`; and how a notice is kept in an outbox row until delivered.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::WebhookEventType;
use crate::ledger::EventMethod;
use crate::ledger::chain::format_time;

/// A change to one subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionNotice {
    pub subscription_id: String,
    pub subscriber_id: String,
    /// The list's slug.
    pub list: String,
    /// The address, so the receiver can find the person (and stop mailing
    /// them); `None` only if the subscriber was erased before.
    pub email: Option<String>,
    pub method: EventMethod,
    pub occurred_at: NaiveDateTime,
}

/// An erasure, as told to one list's endpoints: no address, only ids and
/// the keyed hash of the address (the address is being erased).
#[derive(Debug, Clone)]
pub struct ErasureNotice {
    pub subscriber_id: String,
    /// The person's subscription to this list.
    pub subscription_id: String,
    pub list: String,
    /// HMAC-SHA256 of the normalised address under the server's subject
    /// key, as in exports of erased records.
    pub email_hmac: String,
    pub method: EventMethod,
    pub occurred_at: NaiveDateTime,
}

/// Something a webhook announces.
#[derive(Debug, Clone)]
pub enum WebhookEvent {
    SubscriptionConfirmed(SubscriptionNotice),
    SubscriptionUnsubscribed(SubscriptionNotice),
    ConsentWithdrawn(SubscriptionNotice),
    SubjectErased(ErasureNotice),
}

impl WebhookEvent {
    /// A subscription notice of the given type; `None` for
    /// `subject.erased`, which has a notice of its own.
    pub fn for_subscription(event: WebhookEventType, notice: SubscriptionNotice) -> Option<Self> {
        match event {
            WebhookEventType::SubscriptionConfirmed => Some(Self::SubscriptionConfirmed(notice)),
            WebhookEventType::SubscriptionUnsubscribed => {
                Some(Self::SubscriptionUnsubscribed(notice))
            }
            WebhookEventType::ConsentWithdrawn => Some(Self::ConsentWithdrawn(notice)),
            WebhookEventType::SubjectErased => None,
        }
    }

    /// Its type.
    pub fn event_type(&self) -> WebhookEventType {
        match self {
            Self::SubscriptionConfirmed(_) => WebhookEventType::SubscriptionConfirmed,
            Self::SubscriptionUnsubscribed(_) => WebhookEventType::SubscriptionUnsubscribed,
            Self::ConsentWithdrawn(_) => WebhookEventType::ConsentWithdrawn,
            Self::SubjectErased(_) => WebhookEventType::SubjectErased,
        }
    }

    /// The subscription it concerns.
    pub fn subscription_id(&self) -> &str {
        match self {
            Self::SubscriptionConfirmed(n)
            | Self::SubscriptionUnsubscribed(n)
            | Self::ConsentWithdrawn(n) => &n.subscription_id,
            Self::SubjectErased(n) => &n.subscription_id,
        }
    }

    /// The JSON body, built once at enqueue time: every retry sends (and
    /// signs) the same bytes.
    pub fn body(&self) -> String {
        let (occurred_at, data) = match self {
            Self::SubscriptionConfirmed(n)
            | Self::SubscriptionUnsubscribed(n)
            | Self::ConsentWithdrawn(n) => (
                n.occurred_at,
                json!({
                    "subscription_id": n.subscription_id,
                    "subscriber_id": n.subscriber_id,
                    "list": n.list,
                    "email": n.email,
                    "method": n.method.as_str(),
                    "occurred_at": format_time(n.occurred_at),
                }),
            ),
            Self::SubjectErased(n) => (
                n.occurred_at,
                json!({
                    "subscriber_id": n.subscriber_id,
                    "subscription_id": n.subscription_id,
                    "list": n.list,
                    "email_hmac": n.email_hmac,
                    "method": n.method.as_str(),
                    "occurred_at": format_time(n.occurred_at),
                }),
            ),
        };
        json!({
            "type": self.event_type().as_str(),
            "timestamp": format_time(occurred_at),
            "data": data,
        })
        .to_string()
    }
}

/// The outbox payload of a webhook row: which endpoint (by fingerprint, so
/// the URL and secret are looked up in the configuration at delivery) and
/// the exact body. Cleared to `{}` once delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWebhook {
    pub list_id: String,
    /// `directory::fingerprint` of the endpoint's URL.
    pub endpoint: String,
    /// The endpoint's `host[:port]`, for the dead-letter listing.
    pub host: String,
    pub body: String,
}

impl StoredWebhook {
    /// As stored in `outbox.payload`.
    pub fn to_payload(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads `outbox.payload`.
    pub fn from_payload(payload: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000, 123_456_000)
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn subscription_bodies() {
        let notice = SubscriptionNotice {
            subscription_id: "s1".to_owned(),
            subscriber_id: "p1".to_owned(),
            list: "newsletter".to_owned(),
            email: Some("ann@example.org".to_owned()),
            method: EventMethod::OneClick,
            occurred_at: at(),
        };
        let event = WebhookEvent::for_subscription(
            WebhookEventType::SubscriptionUnsubscribed,
            notice.clone(),
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_str(&event.body()).unwrap();
        assert_eq!(body["type"], "subscription.unsubscribed");
        assert_eq!(body["timestamp"], "2027-01-15T08:00:00.123456Z");
        assert_eq!(body["data"]["email"], "ann@example.org");
        assert_eq!(body["data"]["method"], "one_click");
        assert_eq!(body["data"]["list"], "newsletter");
        assert_eq!(body["data"]["subscription_id"], "s1");
        assert!(WebhookEvent::for_subscription(WebhookEventType::SubjectErased, notice).is_none());
    }

    #[test]
    fn erasure_bodies_carry_no_address() {
        let event = WebhookEvent::SubjectErased(ErasureNotice {
            subscriber_id: "p1".to_owned(),
            subscription_id: "s1".to_owned(),
            list: "newsletter".to_owned(),
            email_hmac: "ab12".to_owned(),
            method: EventMethod::Admin,
            occurred_at: at(),
        });
        let body: serde_json::Value = serde_json::from_str(&event.body()).unwrap();
        assert_eq!(body["type"], "subject.erased");
        assert_eq!(body["data"]["email_hmac"], "ab12");
        assert!(body["data"].get("email").is_none());
    }

    #[test]
    fn stored_payloads_round_trip() {
        let stored = StoredWebhook {
            list_id: "l".to_owned(),
            endpoint: "00ff".to_owned(),
            host: "esp.example".to_owned(),
            body: "{\"type\":\"x\"}".to_owned(),
        };
        assert_eq!(
            StoredWebhook::from_payload(&stored.to_payload()).unwrap(),
            stored
        );
        assert!(StoredWebhook::from_payload("{}").is_err());
    }
}
