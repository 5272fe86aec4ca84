//! `PersonName`: the optional name a subscriber typed. It is stored as
//! evidence of the sign-up but never put into any email or header.

/// The longest name accepted, in characters.
pub const MAX_NAME_LENGTH: usize = 100;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonNameError {
    #[error("the name is longer than {MAX_NAME_LENGTH} characters")]
    TooLong,
    #[error("the name contains line breaks or control characters")]
    ControlCharacters,
}

/// A trimmed, non-empty name without control characters.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    /// Parses a name; an empty or blank input is no name at all.
    pub fn parse(input: &str) -> Result<Option<Self>, PersonNameError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(PersonNameError::ControlCharacters);
        }
        if trimmed.chars().count() > MAX_NAME_LENGTH {
            return Err(PersonNameError::TooLong);
        }
        Ok(Some(PersonName(trimmed.to_owned())))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PersonName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonName(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(PersonName::parse("  ").unwrap(), None);
        assert_eq!(PersonName::parse(" Ann ").unwrap().unwrap().as_str(), "Ann");
        assert_eq!(
            PersonName::parse("Ann\r\nBcc: x"),
            Err(PersonNameError::ControlCharacters)
        );
        assert_eq!(
            PersonName::parse(&"a".repeat(101)),
            Err(PersonNameError::TooLong)
        );
        assert!(PersonName::parse(&"é".repeat(100)).unwrap().is_some());
    }
}
