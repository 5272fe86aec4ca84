//! What the routes and the outbox worker share.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::ValidSettings;
use crate::db::DbPool;
use crate::domain::EmailAddress;
use crate::mail::Mailer;
use crate::registry::ListRegistry;
use crate::render::Templates;

/// A server key kept out of `Debug` output.
pub struct ServerKey(Vec<u8>);

impl ServerKey {
    /// Wraps key bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        ServerKey(bytes)
    }

    /// HMAC-SHA256 of `purpose` and `message`, in hex.
    pub fn mac_hex(&self, purpose: &str, message: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(***)")
    }
}

/// The application's shared state.
pub struct AppContext {
    pub settings: ValidSettings,
    pub pool: DbPool,
    pub clock: Arc<dyn Clock>,
    pub lists: ListRegistry,
    pub templates: Templates,
    pub mailer: Mailer,
    /// Keys the hash that identifies a person without their address.
    pub subject_key: ServerKey,
    /// Sign and verify unsubscribe links.
    pub link_keys: crate::tokens::LinkKeys,
    /// Wakes the outbox worker when a row is enqueued.
    pub outbox_wake: Notify,
    /// Every list's webhook endpoints.
    pub webhooks: Arc<crate::webhooks::WebhookDirectory>,
    /// Delivers webhooks.
    pub webhook_client: crate::webhooks::WebhookClient,
    /// Wakes the webhook worker when a notice is enqueued.
    pub webhook_wake: Notify,
    /// Names this process in outbox leases.
    pub instance_id: String,
    /// Sign-ups per client IP.
    pub rate_limiter: crate::rate_limit::RateLimiter,
    /// Proof-of-work challenges for lists that want them.
    pub pow: crate::pow::ProofOfWork,
    /// What happened, for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Commits sign-ups in batches.
    pub signups: crate::signup_writer::SignupWriter,
    /// Set once a SIGTERM came (see `shutdown`).
    pub draining: crate::shutdown::Draining,
}

impl AppContext {
    /// The keyed hash of an address's identity: lets Assent recognise a
    /// person (budgets, erasure records) without keeping the address.
    pub fn subject_hash(&self, email: &EmailAddress) -> String {
        self.subject_key.mac_hex("subject", email.key().as_bytes())
    }
}

/// Shared ownership, as routes and the worker hold it.
pub type SharedContext = Arc<AppContext>;
