//! Evidence: the personal data that proves where an event came from (IP,
//! user agent, page). It lives apart from the event, referenced by a salted
//! hash, so erasure can delete it while the chain still verifies.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Longest user agent and source URL kept, in characters.
pub const MAX_EVIDENCE_FIELD: usize = 1_000;

/// What was observed about a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    pub ip: Option<String>,
    /// `peer`, `x-forwarded-for` or `forwarded`.
    pub ip_source: Option<String>,
    pub user_agent: Option<String>,
    pub source_url: Option<String>,
}

/// Evidence with its nonce and hash, ready to store.
#[derive(Debug, Clone)]
pub struct SealedEvidence {
    pub evidence: Evidence,
    pub nonce: String,
    pub sha256: String,
}

fn clip(value: Option<String>) -> Option<String> {
    value.map(|v| {
        v.chars()
            .filter(|c| !c.is_control())
            .take(MAX_EVIDENCE_FIELD)
            .collect()
    })
}

impl Evidence {
    /// Builds evidence, dropping control characters and clipping long values.
    pub fn new(
        ip: Option<String>,
        ip_source: Option<&str>,
        user_agent: Option<String>,
        source_url: Option<String>,
    ) -> Self {
        Evidence {
            ip: clip(ip),
            ip_source: ip_source.map(str::to_owned),
            user_agent: clip(user_agent).filter(|v| !v.is_empty()),
            source_url: clip(source_url).filter(|v| !v.is_empty()),
        }
    }

    /// Seals the evidence with a fresh random nonce. The nonce keeps the
    /// hash from being reversed by guessing (an IPv4 address has only 2^32
    /// values) once the row is erased.
    pub fn seal(self) -> SealedEvidence {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let nonce = URL_SAFE_NO_PAD.encode(bytes);
        let sha256 = evidence_hash(&nonce, &self);
        SealedEvidence {
            evidence: self,
            nonce,
            sha256,
        }
    }
}

/// The hash an event points to.
pub fn evidence_hash(nonce: &str, evidence: &Evidence) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"assent-evidence-v1\0");
    for value in [
        Some(nonce),
        evidence.ip.as_deref(),
        evidence.ip_source.as_deref(),
        evidence.user_agent.as_deref(),
        evidence.source_url.as_deref(),
    ] {
        match value {
            None => hasher.update([0u8]),
            Some(v) => {
                hasher.update([1u8]);
                hasher.update((v.len() as u64).to_be_bytes());
                hasher.update(v.as_bytes());
            }
        }
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_is_salted_and_verifiable() {
        let e = Evidence::new(
            Some("192.0.2.1".into()),
            Some("peer"),
            Some("UA".into()),
            None,
        );
        let a = e.clone().seal();
        let b = e.seal();
        assert_ne!(a.sha256, b.sha256);
        assert_eq!(evidence_hash(&a.nonce, &a.evidence), a.sha256);
    }

    #[test]
    fn control_characters_are_dropped() {
        let e = Evidence::new(None, None, Some("a\r\nb".into()), Some(String::new()));
        assert_eq!(e.user_agent.as_deref(), Some("ab"));
        assert_eq!(e.source_url, None);
    }
}
