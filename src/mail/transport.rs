//! Where messages go: an SMTP relay (pooled, every exchange under a
//! deadline) or `.eml` files in a folder.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::{MailSettings, MailUrl};

/// A configured transport.
#[derive(Clone)]
pub enum Mailer {
    /// Writes `<outbox id>.eml` files.
    File(PathBuf),
    /// Sends through a relay.
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        deadline: Duration,
    },
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
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| TransportError(e.to_string()))?
                    .timeout(Some(deadline))
                    .pool_config(PoolConfig::new().max_size(settings.smtp_pool_max_size.max(1)))
                    .build();
                Ok(Mailer::Smtp {
                    transport,
                    deadline,
                })
            }
        }
    }

    /// Sends one message. `file_stem` names the file for the file transport
    /// (the outbox id, so a retry overwrites rather than duplicates).
    pub async fn send(&self, message: Message, file_stem: &str) -> Result<(), SendError> {
        match self {
            Mailer::File(dir) => write_eml(dir, file_stem, &message.formatted()).await,
            Mailer::Smtp {
                transport,
                deadline,
            } => {
                // lettre's own timeout covers the connect only; a server that
                // accepts and then stalls must not hold the worker.
                match tokio::time::timeout(*deadline, transport.send(message)).await {
                    Err(_) => Err(SendError::Transient(format!(
                        "no answer within {} s",
                        deadline.as_secs()
                    ))),
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) if error.is_permanent() => {
                        Err(SendError::Permanent(error.to_string()))
                    }
                    Ok(Err(error)) => Err(SendError::Transient(error.to_string())),
                }
            }
        }
    }

    /// A name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Mailer::File(_) => "file",
            Mailer::Smtp { .. } => "smtp",
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
