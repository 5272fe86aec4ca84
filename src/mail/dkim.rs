//! DKIM signing with lettre's signer. The signature covers the headers
//! receivers and RFC 8058 (section 4) care about, including the one-click
//! unsubscribe headers, so they cannot be altered in transit.

use lettre::Message;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;

/// The headers signed (`h=`), when present in the message.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
];

/// A configured signer.
#[derive(Clone)]
pub struct Dkim {
    selector: String,
    domain: String,
    algorithm: DkimSigningAlgorithm,
    key: String,
}

impl std::fmt::Debug for Dkim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Dkim({}._domainkey.{}, key ***)",
            self.selector, self.domain
        )
    }
}

impl Dkim {
    /// Checks the key now, so a bad one stops the start-up.
    pub fn new(selector: &str, domain: &str, algorithm: &str, key: &str) -> Result<Self, String> {
        let algorithm = match algorithm {
            "rsa" => DkimSigningAlgorithm::Rsa,
            "ed25519" => DkimSigningAlgorithm::Ed25519,
            other => return Err(format!("unknown algorithm {other:?}: use rsa or ed25519")),
        };
        let key = key.trim().to_owned();
        DkimSigningKey::new(&key, algorithm).map_err(|e| format!("the private key: {e}"))?;
        if selector.is_empty() || domain.is_empty() {
            return Err("selector and domain are required".to_owned());
        }
        Ok(Dkim {
            selector: selector.to_owned(),
            domain: domain.to_owned(),
            algorithm,
            key,
        })
    }

    /// Signs a message, covering the [`SIGNED_HEADERS`] it has.
    pub fn sign(&self, message: &mut Message) {
        let Ok(key) = DkimSigningKey::new(&self.key, self.algorithm) else {
            // Checked in `new`; a key that parsed once parses again.
            return;
        };
        let present: Vec<HeaderName> = SIGNED_HEADERS
            .iter()
            .filter(|name| message.headers().get_raw(name).is_some())
            .map(|name| HeaderName::new_from_ascii((*name).to_owned()))
            .filter_map(Result::ok)
            .collect();
        let config = DkimConfig::new(
            self.selector.clone(),
            self.domain.clone(),
            key,
            present,
            DkimCanonicalization {
                header: DkimCanonicalizationType::Relaxed,
                body: DkimCanonicalizationType::Relaxed,
            },
        );
        message.sign(&config);
    }
}
