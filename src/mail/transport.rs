//! Where messages go: an SMTP relay (connections kept open, every exchange
//! under a deadline) or `.eml` files in a folder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::Message;
use secrecy::ExposeSecret;

use crate::config::{MailSettings, MailUrl};
use crate::mail::smtp::SmtpRelay;

/// A configured transport.
#[derive(Clone)]
pub enum Mailer {
    /// Writes `<outbox id>.eml` files.
    File(PathBuf),
    /// Sends through a relay.
    Smtp(Arc<SmtpRelay>),
}

/// A message ready for the wire: built, signed and formatted once, before
/// its turn to be sent comes.
pub struct Outgoing {
    envelope: lettre::address::Envelope,
    bytes: Vec<u8>,
}

impl Outgoing {
    /// The envelope and the formatted message.
    pub(crate) fn parts(&self) -> (&lettre::address::Envelope, &[u8]) {
        (&self.envelope, &self.bytes)
    }
}

impl From<Message> for Outgoing {
    fn from(message: Message) -> Self {
        Outgoing {
            envelope: message.envelope().clone(),
            bytes: message.formatted(),
        }
    }
}

/// Why a send failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: 4xx, connection trouble, a deadline passed.
    #[error("temporary: {0}")]
    Transient(String),
    /// The server refused the message (5xx). Retried all the same, in case
    /// the refusal was a misconfiguration fixed meanwhile.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Why the transport could not be built.
#[derive(Debug, thiserror::Error)]
#[error("mail_url: {0}")]
pub struct TransportError(String);

impl Mailer {
    /// Builds the transport named by the mail URL.
    pub fn new(url: &MailUrl, settings: &MailSettings) -> Result<Self, TransportError> {
        match url {
            MailUrl::File(dir) => Ok(Mailer::File(dir.clone())),
            MailUrl::Smtp(url) => {
                let deadline = Duration::from_secs(settings.send_timeout_secs.max(1));
                let relay = SmtpRelay::from_url(
                    url.expose_secret(),
                    deadline,
                    settings.smtp_pool_max_size.max(1) as usize,
                )
                .map_err(|e| TransportError(e.to_string()))?;
                Ok(Mailer::Smtp(Arc::new(relay)))
            }
        }
    }

    /// Sends one message. `file_stem` names the file for the file transport
    /// (the outbox id, so a retry overwrites rather than duplicates).
    pub async fn send(&self, mail: &Outgoing, file_stem: &str) -> Result<(), SendError> {
        match self {
            Mailer::File(dir) => write_eml(dir, file_stem, &mail.bytes).await,
            Mailer::Smtp(relay) => relay.send(mail).await,
        }
    }

    /// A name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Mailer::File(_) => "file",
            Mailer::Smtp(_) => "smtp",
        }
    }
}

async fn write_eml(dir: &PathBuf, stem: &str, bytes: &[u8]) -> Result<(), SendError> {
    let io = |e: std::io::Error| SendError::Transient(format!("writing to {}: {e}", dir.display()));
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let safe: String = stem
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let partial = dir.join(format!(".{safe}.eml.partial"));
    let done = dir.join(format!("{safe}.eml"));
    tokio::fs::write(&partial, bytes).await.map_err(io)?;
    tokio::fs::rename(&partial, &done).await.map_err(io)?;
    Ok(())
}
