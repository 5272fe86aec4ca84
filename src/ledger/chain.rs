//! Hash chains: `hash = SHA-256(prev_hash || canonical encoding)`, one chain
//! per subscriber so that different people never wait on each other.

use sha2::{Digest, Sha256};

/// The `prev_hash` of a chain's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where a subscriber's chain stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Events so far; the next event gets `seq + 1`.
    pub seq: i64,
    /// Hash of the last event, or the genesis hash.
    pub hash: String,
}

impl ChainHead {
    /// The head of an empty chain.
    pub fn genesis() -> Self {
        ChainHead {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// The fields of an event that its hash covers, in their stored forms.
#[derive(Debug, Clone)]
pub struct HashedFields<'a> {
    pub id: &'a str,
    pub subscriber_id: &'a str,
    pub seq: i64,
    pub kind: &'a str,
    /// RFC 3339 UTC with microseconds, see [`format_time`].
    pub occurred_at: &'a str,
    pub subscription_id: Option<&'a str>,
    pub list_id: Option<&'a str>,
    pub consent_version_id: Option<&'a str>,
    pub consent_sha256: Option<&'a str>,
    pub method: Option<&'a str>,
    pub evidence_sha256: Option<&'a str>,
    pub details: &'a str,
}

/// Formats a time the way the chain encodes it.
pub fn format_time(time: chrono::NaiveDateTime) -> String {
    TimeText::new(time).as_str().to_owned()
}

/// A time as the chain encodes it, `2026-01-01T00:00:00.000000Z`, on the
/// stack: verification formats every event's time.
pub struct TimeText([u8; 27]);

impl TimeText {
    /// Formats `time` (years 0 to 9999; the chain holds nothing else).
    pub fn new(time: chrono::NaiveDateTime) -> Self {
        use chrono::{Datelike, Timelike};
        // Written out by hand: chrono's strftime parser showed in the
        // profile. Same output as "%Y-%m-%dT%H:%M:%S%.6fZ" (tested below).
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        let mut digits = |at: usize, width: usize, value: u32| {
            let mut value = value;
            for i in (at..at + width).rev() {
                text[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        digits(0, 4, time.year().clamp(0, 9999) as u32);
        digits(5, 2, time.month());
        digits(8, 2, time.day());
        digits(11, 2, time.hour());
        digits(14, 2, time.minute());
        digits(17, 2, time.second());
        digits(20, 6, (time.nanosecond() / 1_000).min(999_999));
        TimeText(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators were written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn put(hasher: &mut Sha256, name: &str, value: Option<&str>) {
    hasher.update(name.as_bytes());
    hasher.update([0u8]);
    match value {
        None => hasher.update([0u8]),
        Some(v) => {
            hasher.update([1u8]);
            hasher.update((v.len() as u64).to_be_bytes());
            hasher.update(v.as_bytes());
        }
    }
}

/// The hash of an event: version tag, previous hash, then every field
/// name-tagged and length-prefixed, so no two events encode alike.
pub fn event_hash(prev_hash: &str, fields: &HashedFields<'_>) -> String {
    hex::encode(event_digest(prev_hash, fields))
}

/// [`event_hash`] as bytes, before hex: verification compares it with the
/// stored hash without allocating.
pub fn event_digest(prev_hash: &str, fields: &HashedFields<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"assent-ledger-v1\0");
    put(&mut hasher, "prev_hash", Some(prev_hash));
    put(&mut hasher, "id", Some(fields.id));
    put(&mut hasher, "subscriber_id", Some(fields.subscriber_id));
    put(
        &mut hasher,
        "seq",
        Some(itoa::Buffer::new().format(fields.seq)),
    );
    put(&mut hasher, "kind", Some(fields.kind));
    put(&mut hasher, "occurred_at", Some(fields.occurred_at));
    put(&mut hasher, "subscription_id", fields.subscription_id);
    put(&mut hasher, "list_id", fields.list_id);
    put(&mut hasher, "consent_version_id", fields.consent_version_id);
    put(&mut hasher, "consent_sha256", fields.consent_sha256);
    put(&mut hasher, "method", fields.method);
    put(&mut hasher, "evidence_sha256", fields.evidence_sha256);
    put(&mut hasher, "details", Some(fields.details));
    hasher.finalize().into()
}

/// Whether `digest` is the hash that `hex` spells (lower-case hex, as
/// stored).
pub fn digest_is(digest: &[u8; 32], hex: &str) -> bool {
    let mut spelled = [0u8; 64];
    // 64 bytes hold the hex of 32: this cannot fail.
    hex::encode_to_slice(digest, &mut spelled).is_ok() && spelled == hex.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>() -> HashedFields<'a> {
        HashedFields {
            id: "e1",
            subscriber_id: "s1",
            seq: 1,
            kind: "consent_requested",
            occurred_at: "2026-01-01T00:00:00.000000Z",
            subscription_id: Some("sub1"),
            list_id: None,
            consent_version_id: None,
            consent_sha256: None,
            method: None,
            evidence_sha256: None,
            details: "{}",
        }
    }

    #[test]
    fn time_format_matches_strftime() {
        for (secs, micros) in [
            (0i64, 0u32),
            (1_764_000_000, 123_456),
            (4_102_444_799, 999_999),
        ] {
            let time = chrono::DateTime::from_timestamp(secs, micros * 1_000)
                .unwrap()
                .naive_utc();
            assert_eq!(
                format_time(time),
                time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
            );
        }
    }

    #[test]
    fn every_field_and_the_link_matter() {
        let base = event_hash(GENESIS_HASH, &fields());
        assert_eq!(base.len(), 64);
        assert_ne!(base, event_hash(&base, &fields()));
        let mut moved = fields();
        moved.occurred_at = "2026-01-01T00:00:00.000001Z";
        assert_ne!(base, event_hash(GENESIS_HASH, &moved));
        // None and an empty string encode differently.
        let mut empty = fields();
        empty.list_id = Some("");
        assert_ne!(base, event_hash(GENESIS_HASH, &empty));
    }
}
