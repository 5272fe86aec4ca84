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

/// Stored evidence, borrowed: what verification recomputes the hash from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvidenceFields<'a> {
    pub nonce: &'a str,
    pub ip: Option<&'a str>,
    pub ip_source: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub source_url: Option<&'a str>,
}

impl EvidenceFields<'_> {
    /// The hash an event points to: SHA-256 over a version tag, then each
    /// field in order, absent or length-prefixed (see
    /// docs/architecture.md, "Evidence hashing").
    pub fn hash(&self) -> String {
        hex::encode(self.digest())
    }

    /// [`Self::hash`] as bytes, before hex.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"assent-evidence-v1\0");
        for value in [
            Some(self.nonce),
            self.ip,
            self.ip_source,
            self.user_agent,
            self.source_url,
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
        hasher.finalize().into()
    }
}

/// The hash an event points to.
pub fn evidence_hash(nonce: &str, evidence: &Evidence) -> String {
    EvidenceFields {
        nonce,
        ip: evidence.ip.as_deref(),
        ip_source: evidence.ip_source.as_deref(),
        user_agent: evidence.user_agent.as_deref(),
        source_url: evidence.source_url.as_deref(),
    }
    .hash()
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
    fn any_changed_field_changes_the_hash() {
        let fields = EvidenceFields {
            nonce: "n",
            ip: Some("192.0.2.1"),
            ip_source: Some("peer"),
            user_agent: Some("UA"),
            source_url: None,
        };
        let original = fields.hash();
        for changed in [
            EvidenceFields {
                nonce: "m",
                ..fields
            },
            EvidenceFields {
                ip: Some("192.0.2.2"),
                ..fields
            },
            EvidenceFields {
                ip_source: None,
                ..fields
            },
            EvidenceFields {
                user_agent: Some(""),
                ..fields
            },
            EvidenceFields {
                source_url: Some("https://x.example/"),
                ..fields
            },
        ] {
            assert_ne!(changed.hash(), original, "{changed:?}");
        }
    }

    #[test]
    fn control_characters_are_dropped() {
        let e = Evidence::new(None, None, Some("a\r\nb".into()), Some(String::new()));
        assert_eq!(e.user_agent.as_deref(), Some("ab"));
        assert_eq!(e.source_url, None);
    }
}
