//! Webhook settings: how they are delivered (`[webhooks]`) and each list's
//! endpoints (`[[lists.webhooks]]`), checked at start-up.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::{ConfigError, invalid};
use crate::domain::{WebhookEndpoint, WebhookEventType, WebhookSecret, WebhookUrl};

/// Delivery of every list's webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Overall deadline of one delivery, connect to response headers
    /// (Standard Webhooks recommends 15 to 30 s).
    pub timeout_secs: u64,
    /// Deliveries in flight at once per instance.
    pub concurrency: u32,
    /// An HTTP(S) proxy for every webhook (for example an egress proxy
    /// that refuses internal addresses); none by default, and the
    /// environment's `HTTPS_PROXY` is not used.
    pub proxy: Option<String>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            timeout_secs: 15,
            concurrency: 4,
            proxy: None,
        }
    }
}

/// Checked delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    pub timeout: Duration,
    pub concurrency: usize,
    pub proxy: Option<Url>,
}

impl WebhookSettings {
    /// Checks the values.
    pub fn validate(&self) -> Result<WebhookDelivery, ConfigError> {
        if !(1..=120).contains(&self.timeout_secs) {
            return Err(invalid("webhooks.timeout_secs", "must be 1 to 120"));
        }
        if self.concurrency == 0 {
            return Err(invalid("webhooks.concurrency", "must be at least 1"));
        }
        let proxy = match &self.proxy {
            Some(value) => {
                let url = Url::parse(value)
                    .map_err(|e| invalid("webhooks.proxy", format!("not a URL: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(invalid(
                        "webhooks.proxy",
                        "must be an http:// or https:// URL",
                    ));
                }
                Some(url)
            }
            None => None,
        };
        Ok(WebhookDelivery {
            timeout: Duration::from_secs(self.timeout_secs),
            concurrency: self.concurrency as usize,
            proxy,
        })
    }
}

/// One endpoint of a list as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListWebhookSettings {
    /// `https://…`; `http://` only to a loopback host.
    pub url: String,
    /// The Standard Webhooks signing secret: `whsec_` and the base64 of 24
    /// to 64 random bytes.
    pub secret: SecretString,
    /// The events it wants; all four when left out.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

/// Checks the endpoints of list `index`.
pub fn validate_list(
    index: usize,
    hooks: &[ListWebhookSettings],
) -> Result<Vec<WebhookEndpoint>, ConfigError> {
    let mut endpoints: Vec<WebhookEndpoint> = Vec::with_capacity(hooks.len());
    for (i, hook) in hooks.iter().enumerate() {
        let key = |field: &str| format!("lists[{index}].webhooks[{i}].{field}");
        let url = WebhookUrl::parse(&hook.url).map_err(|e| invalid(key("url"), e))?;
        if endpoints.iter().any(|e| e.url == url) {
            return Err(invalid(key("url"), "the list names this URL twice"));
        }
        let secret = WebhookSecret::parse(hook.secret.expose_secret())
            .map_err(|e| invalid(key("secret"), e))?;
        let events = match &hook.events {
            None => WebhookEventType::ALL.to_vec(),
            Some(names) if names.is_empty() => {
                return Err(invalid(
                    key("events"),
                    "name at least one event, or leave events out for all four",
                ));
            }
            Some(names) => {
                let mut events = Vec::with_capacity(names.len());
                for name in names {
                    let event =
                        WebhookEventType::parse(name).map_err(|e| invalid(key("events"), e))?;
                    if events.contains(&event) {
                        return Err(invalid(key("events"), format!("{name} is listed twice")));
                    }
                    events.push(event);
                }
                events
            }
        };
        endpoints.push(WebhookEndpoint {
            url,
            secret,
            events,
        });
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use crate::domain::WebhookEventType;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn list_with(webhooks: &str) -> String {
        format!(
            r#"
            [[lists]]
            slug = "news"
            name = "News"
            from = "news@example.org"
            [[lists.consent_texts]]
            text = "Yes, mail me."
            {webhooks}
            "#
        )
    }

    fn error(toml: &str) -> String {
        Settings::from_toml(toml)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn endpoints_default_to_every_event() {
        let toml = list_with(&format!(
            "[[lists.webhooks]]\nurl = \"https://esp.example/hook\"\nsecret = \"{SECRET}\"\n\
             [[lists.webhooks]]\nurl = \"http://127.0.0.1:9000/crm\"\nsecret = \"{SECRET}\"\n\
             events = [\"subject.erased\", \"consent.withdrawn\"]"
        ));
        let settings = Settings::from_toml(&toml).unwrap().validate().unwrap();
        let hooks = &settings.lists[0].webhooks;
        assert_eq!(hooks[0].events, WebhookEventType::ALL);
        assert_eq!(
            hooks[1].events,
            [
                WebhookEventType::SubjectErased,
                WebhookEventType::ConsentWithdrawn
            ]
        );
        assert_eq!(settings.webhooks.timeout.as_secs(), 15);
        assert!(settings.webhooks.proxy.is_none());
        // The secret never reaches Debug output (`assent check-config`).
        assert!(!format!("{settings:?}").contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    }

    #[test]
    fn refuses_bad_endpoints() {
        let hook = |url: &str, secret: &str, events: &str| {
            list_with(&format!(
                "[[lists.webhooks]]\nurl = \"{url}\"\nsecret = \"{secret}\"\n{events}"
            ))
        };
        let plain = error(&hook("http://esp.example/hook", SECRET, ""));
        assert!(
            plain.starts_with("lists[0].webhooks[0].url: must be https://"),
            "{plain}"
        );
        let prefix = error(&hook(
            "https://esp.example/",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "",
        ));
        assert!(
            prefix.contains("webhooks[0].secret: must start with whsec_"),
            "{prefix}"
        );
        assert!(
            !prefix.contains("MfKQ9r8"),
            "the secret is never quoted: {prefix}"
        );
        let short = error(&hook("https://esp.example/", "whsec_c2hvcnQ=", ""));
        assert!(short.contains("24 to 64 random bytes"), "{short}");
        let unknown = error(&hook(
            "https://esp.example/",
            SECRET,
            "events = [\"subscription.created\"]",
        ));
        assert!(unknown.contains("webhooks[0].events"), "{unknown}");
        let none = error(&hook("https://esp.example/", SECRET, "events = []"));
        assert!(none.contains("name at least one event"), "{none}");
        let twice = error(&hook(
            "https://esp.example/",
            SECRET,
            "events = [\"subject.erased\", \"subject.erased\"]",
        ));
        assert!(twice.contains("listed twice"), "{twice}");
        let same_url = list_with(&format!(
            "[[lists.webhooks]]\nurl = \"https://esp.example/\"\nsecret = \"{SECRET}\"\n\
             [[lists.webhooks]]\nurl = \"https://esp.example/\"\nsecret = \"{SECRET}\""
        ));
        assert!(error(&same_url).contains("webhooks[1].url: the list names this URL twice"));
        assert!(Settings::from_toml(&hook("https://esp.example/", SECRET, "bogus = 1")).is_err());
    }

    #[test]
    fn delivery_settings() {
        assert!(error("[webhooks]\ntimeout_secs = 0").contains("webhooks.timeout_secs"));
        assert!(error("[webhooks]\nconcurrency = 0").contains("webhooks.concurrency"));
        assert!(error("[webhooks]\nproxy = \"socks5://p:1080\"").contains("webhooks.proxy"));
        let settings = Settings::from_toml("[webhooks]\nproxy = \"http://egress.internal:4750\"")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            settings.webhooks.proxy.unwrap().as_str(),
            "http://egress.internal:4750/"
        );
    }
}
