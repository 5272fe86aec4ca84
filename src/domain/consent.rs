//! Consent texts: the exact words a person agreed to, identified by the
//! SHA-256 of their UTF-8 bytes.

use sha2::{Digest, Sha256};

/// The longest consent text accepted.
pub const MAX_CONSENT_TEXT_LENGTH: usize = 8_000;

/// Why a consent text or language was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error("the consent text is empty")]
    EmptyText,
    #[error("the consent text is longer than {MAX_CONSENT_TEXT_LENGTH} characters")]
    TextTooLong,
    #[error("the consent text contains control characters")]
    ControlCharacters,
    #[error("{0:?} is not a language tag such as en or de-AT")]
    BadLanguage(String),
    #[error("{0:?} is not a SHA-256 in hex")]
    BadHash(String),
}

/// A consent text exactly as shown. Its bytes are never altered: not
/// trimmed, not normalised, since the hash must match what was displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentText(String);

impl ConsentText {
    /// Accepts a non-empty text without control characters (newlines and
    /// tabs allowed).
    pub fn new(text: impl Into<String>) -> Result<Self, ConsentError> {
        let text = text.into();
        if text.trim().is_empty() {
            return Err(ConsentError::EmptyText);
        }
        if text.chars().count() > MAX_CONSENT_TEXT_LENGTH {
            return Err(ConsentError::TextTooLong);
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            return Err(ConsentError::ControlCharacters);
        }
        Ok(ConsentText(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the exact UTF-8 bytes.
    pub fn hash(&self) -> ConsentHash {
        ConsentHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

/// The lowercase hex SHA-256 of a consent text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsentHash(String);

impl ConsentHash {
    /// Accepts 64 hex digits, normalised to lowercase.
    pub fn parse(value: &str) -> Result<Self, ConsentError> {
        if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(ConsentHash(value.to_ascii_lowercase()))
        } else {
            Err(ConsentError::BadHash(value.to_owned()))
        }
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A BCP 47 language tag in its simple forms (`en`, `de`, `de-AT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanguageTag(String);

impl LanguageTag {
    /// Accepts a primary subtag of 2 or 3 letters and optional alphanumeric
    /// subtags of up to 8 characters.
    pub fn parse(value: &str) -> Result<Self, ConsentError> {
        let mut parts = value.split('-');
        let primary = parts.next().unwrap_or_default();
        let primary_ok =
            (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic());
        let rest_ok = parts
            .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
        if primary_ok && rest_ok {
            Ok(LanguageTag(value.to_owned()))
        } else {
            Err(ConsentError::BadLanguage(value.to_owned()))
        }
    }

    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_of_the_exact_bytes() {
        let a = ConsentText::new("I agree.").unwrap();
        let b = ConsentText::new("I agree. ").unwrap();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash().as_str(), hex::encode(Sha256::digest(b"I agree.")));
    }

    #[test]
    fn refuses_empty_and_control_characters() {
        assert_eq!(ConsentText::new("  "), Err(ConsentError::EmptyText));
        assert_eq!(
            ConsentText::new("a\u{7}b"),
            Err(ConsentError::ControlCharacters)
        );
        assert!(ConsentText::new("line one\nline two").is_ok());
    }

    #[test]
    fn languages() {
        for ok in ["en", "de", "de-AT", "zh-Hant-TW"] {
            assert!(LanguageTag::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "e", "english", "en_US", "de-"] {
            assert!(LanguageTag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes_parse_in_lowercase() {
        let upper = "A".repeat(64);
        assert_eq!(ConsentHash::parse(&upper).unwrap().as_str(), "a".repeat(64));
        assert!(ConsentHash::parse("xyz").is_err());
    }
}
