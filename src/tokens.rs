//! Stateless, non-expiring links for leaving a list: an HMAC-SHA256 over
//! the purpose and the subscription id, carrying the id of the key that
//! signed it, so keys can rotate without breaking old links.
//!
//! Format: `{key_id}.{subscription id, 16 bytes base64url}.{mac base64url}`.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// What a link may be used for; bound into the MAC, so a token minted for
/// one purpose never verifies for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The unsubscribe page, one-click unsubscribe and withdrawal.
    Leave,
    /// "I did not ask for this" in a confirmation email.
    Refuse,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Leave => b"leave",
            Purpose::Refuse => b"refuse",
        }
    }
}

/// Why a token was refused. Deliberately one answer for every reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid link")]
pub struct InvalidToken;

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key id {0:?} must be 1 to 16 letters, digits, '-' or '_'")]
    BadId(String),
    #[error("the secret of key {0:?} must be base64 of at least 32 bytes")]
    WeakSecret(String),
    #[error("key id {0:?} is used twice")]
    DuplicateId(String),
}

/// One signing key.
#[derive(Clone)]
pub struct SigningKey {
    id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, ***)", self.id)
    }
}

impl SigningKey {
    /// Builds a key from an id and a base64 (standard or URL-safe) secret.
    pub fn new(id: &str, secret_base64: &str) -> Result<Self, KeyError> {
        let id_ok = (1..=16).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(KeyError::BadId(id.to_owned()));
        }
        let trimmed = secret_base64.trim().trim_end_matches('=');
        let secret = URL_SAFE_NO_PAD
            .decode(trimmed.replace('+', "-").replace('/', "_"))
            .map_err(|_| KeyError::WeakSecret(id.to_owned()))?;
        if secret.len() < 32 {
            return Err(KeyError::WeakSecret(id.to_owned()));
        }
        Ok(SigningKey {
            id: id.to_owned(),
            secret,
        })
    }

    /// The key id carried in tokens.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, purpose: Purpose, subject: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts keys of any length");
        mac.update(b"assent-link-v1\0");
        mac.update(purpose.label());
        mac.update(&[0]);
        mac.update(self.id.as_bytes());
        mac.update(&[0]);
        mac.update(subject);
        mac
    }
}

/// The first key signs; every key verifies.
#[derive(Debug, Clone)]
pub struct LinkKeys {
    signer: SigningKey,
    verifiers: HashMap<String, SigningKey>,
}

impl LinkKeys {
    /// Builds the set from keys in order of preference.
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, KeyError> {
        let mut verifiers = HashMap::new();
        for key in &keys {
            if verifiers.insert(key.id.clone(), key.clone()).is_some() {
                return Err(KeyError::DuplicateId(key.id.clone()));
            }
        }
        let signer = keys
            .into_iter()
            .next()
            .ok_or_else(|| KeyError::BadId(String::new()))?;
        Ok(LinkKeys { signer, verifiers })
    }

    /// Mints a token for a subscription.
    pub fn mint(&self, purpose: Purpose, subscription_id: Uuid) -> String {
        let subject = subscription_id.as_bytes();
        let tag = self.signer.mac(purpose, subject).finalize().into_bytes();
        format!(
            "{}.{}.{}",
            self.signer.id,
            URL_SAFE_NO_PAD.encode(subject),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks a token in constant time and returns the subscription id.
    pub fn verify(&self, purpose: Purpose, token: &str) -> Result<Uuid, InvalidToken> {
        if token.len() > 100 {
            return Err(InvalidToken);
        }
        let mut parts = token.split('.');
        let (Some(key_id), Some(subject), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidToken);
        };
        let key = self.verifiers.get(key_id).ok_or(InvalidToken)?;
        let subject = URL_SAFE_NO_PAD.decode(subject).map_err(|_| InvalidToken)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| InvalidToken)?;
        let subject: [u8; 16] = subject.try_into().map_err(|_| InvalidToken)?;
        key.mac(purpose, &subject)
            .verify_slice(&tag)
            .map_err(|_| InvalidToken)?;
        Ok(Uuid::from_bytes(subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(id: &str, byte: u8) -> SigningKey {
        SigningKey::new(id, &URL_SAFE_NO_PAD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn round_trip_and_tamper() {
        let keys = LinkKeys::new(vec![key("a", 1)]).unwrap();
        let id = Uuid::now_v7();
        let token = keys.mint(Purpose::Leave, id);
        assert_eq!(keys.verify(Purpose::Leave, &token), Ok(id));
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(
            keys.verify(Purpose::Leave, std::str::from_utf8(&tampered).unwrap())
                .is_err()
        );
        let other = keys.mint(Purpose::Leave, Uuid::now_v7());
        let swapped = format!(
            "{}.{}",
            token.rsplit_once('.').unwrap().0,
            other.rsplit_once('.').unwrap().1
        );
        assert!(keys.verify(Purpose::Leave, &swapped).is_err());
    }

    #[test]
    fn purposes_do_not_mix() {
        let keys = LinkKeys::new(vec![key("a", 1)]).unwrap();
        let token = keys.mint(Purpose::Refuse, Uuid::now_v7());
        assert!(keys.verify(Purpose::Leave, &token).is_err());
    }

    #[test]
    fn rotation_keeps_old_links_working() {
        let old = LinkKeys::new(vec![key("old", 1)]).unwrap();
        let id = Uuid::now_v7();
        let token = old.mint(Purpose::Leave, id);
        let rotated = LinkKeys::new(vec![key("new", 2), key("old", 1)]).unwrap();
        assert_eq!(rotated.verify(Purpose::Leave, &token), Ok(id));
        assert!(rotated.mint(Purpose::Leave, id).starts_with("new."));
        let dropped = LinkKeys::new(vec![key("new", 2)]).unwrap();
        assert!(dropped.verify(Purpose::Leave, &token).is_err());
    }

    #[test]
    fn weak_or_bad_keys_are_refused() {
        assert!(SigningKey::new("a", "c2hvcnQ=").is_err());
        assert!(SigningKey::new("bad id", &URL_SAFE_NO_PAD.encode([0u8; 32])).is_err());
        assert!(LinkKeys::new(vec![key("a", 1), key("a", 2)]).is_err());
    }

    proptest! {
        #[test]
        fn verify_never_panics(input in ".{0,120}") {
            let keys = LinkKeys::new(vec![key("a", 1)]).unwrap();
            let _ = keys.verify(Purpose::Leave, &input);
        }
    }
}
