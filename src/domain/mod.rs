//! The domain: values that can only be built valid, and the subscription
//! state machine. Nothing here knows about diesel or actix.

pub mod api_key;
pub mod consent;
pub mod email;
pub mod list_slug;
pub mod person_name;
pub mod state;
pub mod token;
pub mod webhook;

pub use consent::{ConsentHash, ConsentText, LanguageTag};
pub use email::EmailAddress;
pub use list_slug::ListSlug;
pub use person_name::PersonName;
pub use state::SubscriptionState;
pub use token::{ConfirmationToken, TokenDigest};
pub use webhook::{WebhookEndpoint, WebhookEventType, WebhookSecret, WebhookUrl};
