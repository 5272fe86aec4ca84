//! Verifying the ledger: every chain recomputed from its first event, its
//! links, its numbering and its stored head, and every evidence row an
//! event points to recomputed from its nonce and fields; and the ledger
//! head, one hash over every chain head, that summarises the whole ledger
//! at a moment.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::chain::{GENESIS_HASH, HashedFields, digest_is, event_digest};
use super::evidence::EvidenceFields;

/// An event as stored, for verification.
#[derive(Debug, Clone)]
pub struct StoredEvent<'a> {
    pub fields: HashedFields<'a>,
    pub prev_hash: &'a str,
    pub hash: &'a str,
    /// The evidence row `fields.evidence_sha256` names, if it exists.
    pub evidence: Option<EvidenceFields<'a>>,
}

/// A subscriber row as stored, for verification.
#[derive(Debug, Clone, Copy)]
pub struct StoredSubscriber<'a> {
    pub id: &'a str,
    /// `chain_seq`: how many events the chain should have.
    pub seq: i64,
    /// `chain_head`: the hash of the last event.
    pub head: &'a str,
    /// Erasure deletes the person's evidence rows, so only an erased
    /// subscriber's events may point to evidence that is gone.
    pub erased: bool,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Broken {
    pub subscriber_id: String,
    /// The position in the chain where the problem shows.
    pub seq: i64,
    /// The event at that position, when there is one.
    pub event_id: Option<String>,
    pub reason: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = VerifyReport)]
pub struct Report {
    pub ok: bool,
    pub events: u64,
    pub subscribers: u64,
    /// The ledger head (only when every chain verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<Broken>,
}

/// Checks chains one subscriber at a time, in subscriber id order.
pub struct Verifier {
    events: u64,
    subscribers: u64,
    head: Sha256,
}

impl Default for Verifier {
    fn default() -> Self {
        let mut head = Sha256::new();
        head.update(b"assent-ledger-head-v1\0");
        Verifier {
            events: 0,
            subscribers: 0,
            head,
        }
    }
}

/// A chain that verified: what it adds to the report and the ledger head.
#[derive(Debug, Clone, Copy)]
pub struct SoundChain<'a> {
    subscriber_id: &'a str,
    events: i64,
    head: &'a str,
}

/// Where a chain broke, and how many of its events verified before.
#[derive(Debug)]
pub struct BrokenChain {
    pub broken: Broken,
    pub events_before: u64,
}

/// Checks one subscriber's chain: `events` in `seq` order, against the
/// head stored on the subscriber row, and the evidence they point to.
/// `None` for a subscriber without events. Chains are independent of each
/// other, so callers may check them on several threads and then add them
/// to a [`Verifier`] in subscriber order.
pub fn check_chain<'a>(
    subscriber: StoredSubscriber<'a>,
    events: &[StoredEvent<'_>],
) -> Result<Option<SoundChain<'a>>, BrokenChain> {
    let StoredSubscriber {
        id: subscriber_id,
        seq: stored_seq,
        head: stored_head,
        erased,
    } = subscriber;
    let mut verified = 0u64;
    let broken = |verified: u64, seq: i64, event_id: Option<&str>, reason: String| BrokenChain {
        broken: Broken {
            subscriber_id: subscriber_id.to_owned(),
            seq,
            event_id: event_id.map(str::to_owned),
            reason,
        },
        events_before: verified,
    };
    // Each event's stored hash, once it matched what its content hashes
    // to, is what the next event must link to.
    let mut prev = GENESIS_HASH;
    for (index, event) in events.iter().enumerate() {
        let expected_seq = index as i64 + 1;
        let id = Some(event.fields.id);
        if event.fields.seq != expected_seq {
            return Err(broken(
                verified,
                expected_seq,
                id,
                format!(
                    "event {expected_seq} is missing (found {})",
                    event.fields.seq
                ),
            ));
        }
        if event.prev_hash != prev {
            return Err(broken(
                verified,
                expected_seq,
                id,
                "prev_hash does not link to the previous event".to_owned(),
            ));
        }
        if !digest_is(&event_digest(prev, &event.fields), event.hash) {
            return Err(broken(
                verified,
                expected_seq,
                id,
                "the event's content does not match its hash".to_owned(),
            ));
        }
        if let Some(expected) = event.fields.evidence_sha256 {
            match &event.evidence {
                Some(evidence) if !digest_is(&evidence.digest(), expected) => {
                    return Err(broken(
                        verified,
                        expected_seq,
                        id,
                        "the event's evidence does not match its hash".to_owned(),
                    ));
                }
                None if !erased => {
                    return Err(broken(
                        verified,
                        expected_seq,
                        id,
                        "the event's evidence is missing, but the subscriber was not erased"
                            .to_owned(),
                    ));
                }
                _ => {}
            }
        }
        prev = event.hash;
        verified += 1;
    }
    let count = events.len() as i64;
    if stored_seq != count {
        return Err(broken(
            verified,
            count + 1,
            None,
            format!(
                "the chain has {count} events but its head says {stored_seq}: events were deleted"
            ),
        ));
    }
    if stored_head != prev {
        return Err(broken(
            verified,
            count,
            None,
            "the stored chain head does not match the last event".to_owned(),
        ));
    }
    // The stored head, now known to equal the last event's hash.
    Ok((count > 0).then_some(SoundChain {
        subscriber_id,
        events: count,
        head: stored_head,
    }))
}

impl Verifier {
    /// Adds a chain that verified, in subscriber order.
    pub fn add(&mut self, chain: &SoundChain<'_>) {
        self.events += chain.events as u64;
        self.subscribers += 1;
        for part in [
            chain.subscriber_id,
            itoa::Buffer::new().format(chain.events),
            chain.head,
        ] {
            self.head.update(part.as_bytes());
            self.head.update([0u8]);
        }
    }

    /// Counts the events of a broken chain that verified before the break,
    /// and returns the break.
    pub fn broke(&mut self, chain: BrokenChain) -> Broken {
        self.events += chain.events_before;
        chain.broken
    }

    /// The report for a ledger that verified.
    pub fn finish(self) -> Report {
        Report {
            ok: true,
            events: self.events,
            subscribers: self.subscribers,
            head: Some(hex::encode(self.head.finalize())),
            broken: None,
        }
    }

    /// The report for a ledger that did not.
    pub fn fail(self, broken: Broken) -> Report {
        Report {
            ok: false,
            events: self.events,
            subscribers: self.subscribers,
            head: None,
            broken: Some(broken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::chain::event_hash;

    const EVIDENCE: EvidenceFields<'static> = EvidenceFields {
        nonce: "nonce",
        ip: Some("192.0.2.1"),
        ip_source: Some("peer"),
        user_agent: Some("UA"),
        source_url: None,
    };

    /// Verifies a one-event chain whose event points to `EVIDENCE`, with
    /// `stored` as the evidence row found.
    fn verify_with(stored: Option<EvidenceFields<'_>>, erased: bool) -> Result<(), Broken> {
        let evidence_sha256 = EVIDENCE.hash();
        let fields = HashedFields {
            id: "e1",
            subscriber_id: "s1",
            seq: 1,
            kind: "consent_requested",
            occurred_at: "2026-01-01T00:00:00.000000Z",
            subscription_id: Some("sub1"),
            list_id: Some("l1"),
            consent_version_id: None,
            consent_sha256: None,
            method: Some("form"),
            evidence_sha256: Some(&evidence_sha256),
            details: "{}",
        };
        let hash = event_hash(GENESIS_HASH, &fields);
        let event = StoredEvent {
            fields,
            prev_hash: GENESIS_HASH,
            hash: &hash,
            evidence: stored,
        };
        let subscriber = StoredSubscriber {
            id: "s1",
            seq: 1,
            head: &hash,
            erased,
        };
        check_chain(subscriber, &[event])
            .map(|_| ())
            .map_err(|chain| chain.broken)
    }

    #[test]
    fn evidence_is_recomputed() {
        assert_eq!(verify_with(Some(EVIDENCE), false), Ok(()));
        let forged = EvidenceFields {
            ip: Some("198.51.100.7"),
            ..EVIDENCE
        };
        let broken = verify_with(Some(forged), false).unwrap_err();
        assert_eq!(broken.event_id.as_deref(), Some("e1"));
        assert!(broken.reason.contains("evidence"), "{broken:?}");
    }

    #[test]
    fn only_erasure_explains_missing_evidence() {
        assert_eq!(verify_with(None, true), Ok(()));
        let broken = verify_with(None, false).unwrap_err();
        assert!(broken.reason.contains("missing"), "{broken:?}");
    }
}
