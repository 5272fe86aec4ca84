//! Webhooks: signed notices to downstream systems (an ESP, a CRM) when a
//! subscription is confirmed, ends, or a person withdraws or is erased.
//! They travel through the outbox like mail, enqueued in the transaction
//! of the state change, and are signed per the Standard Webhooks
//! specification (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! `directory`, `event` and `signature` are plain data and functions (the
//! database layer uses them); `delivery` (the HTTP client) and `worker`
//! (the webhook half of the outbox worker) run on the application context.

pub mod delivery;
pub mod directory;
pub mod event;
pub mod signature;
pub mod worker;

pub use delivery::{DeliveryError, WebhookClient};
pub use directory::{ListWebhooks, WebhookDirectory};
pub use event::{ErasureNotice, StoredWebhook, SubscriptionNotice, WebhookEvent};
