//! Confirmation tokens: 256 random bits, URL-safe base64, kept at rest only
//! as their SHA-256.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Length of an encoded confirmation token (32 bytes in unpadded base64url).
pub const CONFIRMATION_TOKEN_LENGTH: usize = 43;

/// Why a token from a URL was refused before any lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed token")]
pub struct MalformedToken;

/// A confirmation token in clear: exists only while a link is being mailed
/// or checked.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfirmationToken(String);

impl ConfirmationToken {
    /// Draws a new token from the OS-seeded CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        ConfirmationToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts a token from a URL if it has the exact shape of one.
    pub fn parse(value: &str) -> Result<Self, MalformedToken> {
        if value.len() != CONFIRMATION_TOKEN_LENGTH {
            return Err(MalformedToken);
        }
        match URL_SAFE_NO_PAD.decode(value) {
            Ok(bytes) if bytes.len() == 32 => Ok(ConfirmationToken(value.to_owned())),
            _ => Err(MalformedToken),
        }
    }

    /// The token as it goes into a URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What is stored and looked up.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl std::fmt::Debug for ConfirmationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfirmationToken(***)")
    }
}

/// The SHA-256 of a token, in hex. Lookups by digest need no constant-time
/// comparison: knowing the digest does not reveal the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDigest(String);

impl TokenDigest {
    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = ConfirmationToken::generate();
        let b = ConfirmationToken::generate();
        assert_ne!(a, b);
        assert_eq!(ConfirmationToken::parse(a.as_str()).unwrap(), a);
        assert_eq!(a.digest().as_str().len(), 64);
    }

    #[test]
    fn malformed_tokens() {
        for bad in ["", "abc", &"a".repeat(44), &"!".repeat(43)] {
            assert!(ConfirmationToken::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in ".{0,100}") {
            let _ = ConfirmationToken::parse(&input);
        }
    }
}
