//! Admin API keys: `ak_` followed by 256 random bits in base64url.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "ak_";

/// A key in clear: exists only when created (printed once) and while a
/// request is authenticated.
pub struct ApiKey(String);

impl ApiKey {
    /// Draws a new key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        ApiKey(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accepts a presented key of the right shape.
    pub fn parse(value: &str) -> Option<Self> {
        let body = value.strip_prefix(PREFIX)?;
        let decoded = URL_SAFE_NO_PAD.decode(body).ok()?;
        (decoded.len() == 32).then(|| ApiKey(value.to_owned()))
    }

    /// The key, to print once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Why a key name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key name is 1 to 64 letters, digits, '.', '-' or '_'")]
pub struct BadKeyName;

/// Checks a key's name.
pub fn parse_key_name(name: &str) -> Result<&str, BadKeyName> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    ok.then_some(name).ok_or(BadKeyName)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let key = ApiKey::generate();
        let parsed = ApiKey::parse(key.expose()).unwrap();
        assert_eq!(parsed.digest(), key.digest());
        assert!(ApiKey::parse("ak_short").is_none());
        assert!(ApiKey::parse(&key.expose()[3..]).is_none());
        assert!(parse_key_name("ci-export").is_ok());
        assert!(parse_key_name("bad name").is_err());
    }
}
