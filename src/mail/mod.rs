//! Mail: building messages, the transports (SMTP and `.eml` files) and the
//! outbox worker that delivers them.

pub mod body;
pub mod dkim;
pub mod headers;
pub mod message;
pub mod smtp;
pub mod transport;
pub mod worker;

pub use transport::{Mailer, Outgoing, SendError};
