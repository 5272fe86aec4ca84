//! The webhook endpoints of every list, by list id: the database layer
//! consults it to enqueue notices, the worker to find an endpoint's URL and
//! secret again when it delivers.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::domain::{WebhookEndpoint, WebhookEventType, WebhookUrl};

/// One list's endpoints.
#[derive(Debug, Clone)]
pub struct ListWebhooks {
    pub list_id: String,
    pub slug: String,
    pub endpoints: Vec<WebhookEndpoint>,
}

impl ListWebhooks {
    /// Whether any endpoint wants `event` (so a notice is worth building).
    pub fn wants(&self, event: WebhookEventType) -> bool {
        self.endpoints.iter().any(|e| e.wants(event))
    }

    /// The endpoints that want `event`.
    pub fn endpoints_for(
        &self,
        event: WebhookEventType,
    ) -> impl Iterator<Item = &WebhookEndpoint> + '_ {
        self.endpoints.iter().filter(move |e| e.wants(event))
    }
}

/// Names an endpoint in outbox rows without copying its URL (whose path or
/// query may hold a receiver's token): the first 16 bytes of the SHA-256
/// of the URL, in hex.
pub fn fingerprint(url: &WebhookUrl) -> String {
    let digest = Sha256::digest(url.as_url().as_str().as_bytes());
    hex::encode(&digest[..16])
}

/// The endpoints of every list that has any.
#[derive(Debug, Clone, Default)]
pub struct WebhookDirectory {
    by_list: HashMap<String, Arc<ListWebhooks>>,
}

impl WebhookDirectory {
    /// Keeps the lists that have at least one endpoint.
    pub fn new(lists: impl IntoIterator<Item = ListWebhooks>) -> Self {
        let by_list = lists
            .into_iter()
            .filter(|l| !l.endpoints.is_empty())
            .map(|l| (l.list_id.clone(), Arc::new(l)))
            .collect();
        WebhookDirectory { by_list }
    }

    /// A list's endpoints, if it has any.
    pub fn for_list(&self, list_id: &str) -> Option<&Arc<ListWebhooks>> {
        self.by_list.get(list_id)
    }

    /// The endpoint of a list with this fingerprint, if still configured.
    pub fn endpoint(&self, list_id: &str, fingerprint_hex: &str) -> Option<&WebhookEndpoint> {
        self.for_list(list_id)?
            .endpoints
            .iter()
            .find(|e| fingerprint(&e.url) == fingerprint_hex)
    }

    /// Whether no list has a webhook.
    pub fn is_empty(&self) -> bool {
        self.by_list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::WebhookSecret;

    fn endpoint(url: &str, events: &[WebhookEventType]) -> WebhookEndpoint {
        WebhookEndpoint {
            url: WebhookUrl::parse(url).unwrap(),
            secret: WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            events: events.to_vec(),
        }
    }

    #[test]
    fn finds_endpoints_by_list_and_fingerprint() {
        let directory = WebhookDirectory::new([
            ListWebhooks {
                list_id: "l1".to_owned(),
                slug: "news".to_owned(),
                endpoints: vec![
                    endpoint("https://esp.example/hook", &WebhookEventType::ALL),
                    endpoint(
                        "https://crm.example/hook",
                        &[WebhookEventType::SubjectErased],
                    ),
                ],
            },
            ListWebhooks {
                list_id: "l2".to_owned(),
                slug: "quiet".to_owned(),
                endpoints: Vec::new(),
            },
        ]);
        assert!(directory.for_list("l2").is_none());
        let news = directory.for_list("l1").unwrap();
        assert!(news.wants(WebhookEventType::SubscriptionConfirmed));
        assert_eq!(
            news.endpoints_for(WebhookEventType::SubjectErased).count(),
            2
        );
        let crm = &news.endpoints[1];
        let found = directory.endpoint("l1", &fingerprint(&crm.url)).unwrap();
        assert_eq!(found.url, crm.url);
        assert!(directory.endpoint("l2", &fingerprint(&crm.url)).is_none());
        assert_eq!(fingerprint(&crm.url).len(), 32);
    }
}
