//! `ListSlug`: the short name of a list used in URLs and forms.

/// Why a slug was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a list slug: use 1 to 64 lowercase letters, digits and hyphens")]
pub struct ListSlugError(pub String);

/// A list's slug: `[a-z0-9-]{1,64}`, not starting or ending with a hyphen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListSlug(String);

impl ListSlug {
    /// Parses a slug exactly (no case folding: slugs are identifiers).
    pub fn parse(value: &str) -> Result<Self, ListSlugError> {
        let ok = (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if ok {
            Ok(ListSlug(value.to_owned()))
        } else {
            Err(ListSlugError(value.chars().take(80).collect()))
        }
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ListSlug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(ListSlug::parse("newsletter").is_ok());
        assert!(ListSlug::parse("clinic-news-2").is_ok());
        for bad in ["", "News", "-a", "a-", "a b", "a/b", &"a".repeat(65)] {
            assert!(ListSlug::parse(bad).is_err(), "{bad}");
        }
    }
}
