//! `EmailAddress`: a trimmed, syntactically valid address whose domain is in
//! IDNA ASCII form, with a case-insensitive identity key.

use validator::ValidateEmail;

/// The longest address accepted (RFC 5321's path limit less the brackets).
pub const MAX_EMAIL_LENGTH: usize = 254;

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("the email address is empty")]
    Empty,
    #[error("the email address is longer than {MAX_EMAIL_LENGTH} characters")]
    TooLong,
    #[error("the email address is not valid")]
    Invalid,
}

/// A valid email address as it will be written on an envelope.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    /// Local part as given, domain in lowercase IDNA ASCII.
    address: String,
}

impl EmailAddress {
    /// Parses user input: trims it, checks the grammar with `validator`,
    /// converts the domain to IDNA ASCII and refuses control characters.
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.chars().count() > MAX_EMAIL_LENGTH {
            return Err(EmailError::TooLong);
        }
        if trimmed.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(EmailError::Invalid);
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or(EmailError::Invalid)?;
        if local.is_empty() || domain.is_empty() || !local.is_ascii() {
            // Internationalised local parts (SMTPUTF8) are not accepted: most
            // relays refuse them and they cannot be put on an ASCII envelope.
            return Err(EmailError::Invalid);
        }
        let ascii_domain = idna::domain_to_ascii(domain).map_err(|_| EmailError::Invalid)?;
        if ascii_domain.is_empty() || !ascii_domain.contains('.') {
            return Err(EmailError::Invalid);
        }
        let address = format!("{local}@{ascii_domain}");
        if address.len() > MAX_EMAIL_LENGTH || !address.validate_email() {
            return Err(EmailError::Invalid);
        }
        Ok(EmailAddress { address })
    }

    /// The address to send to.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The identity of the address: case-insensitive.
    pub fn key(&self) -> String {
        self.address.to_lowercase()
    }

    /// A masked form for logs: `j***@example.org`.
    pub fn masked(&self) -> String {
        mask(&self.address)
    }
}

/// Masks any address-like string for logs.
pub fn mask(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// Masks every address-like word in a text (an SMTP reply may quote the
/// recipient) before it is logged or stored.
pub fn mask_in_text(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains('@') {
                let inner = word
                    .trim_matches(|c: char| matches!(c, '<' | '>' | ',' | ';' | ':' | '"' | '\''));
                word.replace(inner, &mask(inner))
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl std::fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Debug output ends up in logs: never the whole address.
        write!(f, "EmailAddress({})", self.masked())
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.address
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_normalises() {
        let email = EmailAddress::parse("  Jane.Doe@Example.ORG ").unwrap();
        assert_eq!(email.as_str(), "Jane.Doe@example.org");
        assert_eq!(email.key(), "jane.doe@example.org");
    }

    #[test]
    fn converts_idn_domains_to_ascii() {
        let email = EmailAddress::parse("anna@bücher.example").unwrap();
        assert_eq!(email.as_str(), "anna@xn--bcher-kva.example");
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "",
            "   ",
            "plainaddress",
            "@example.org",
            "a@",
            "a@b",
            "a b@example.org",
            "a@example.org\r\nBcc: x@y.z",
            "a\0@example.org",
            "jösé@example.org",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&long), Err(EmailError::TooLong));
        assert!(EmailAddress::parse(&"x".repeat(10_000)).is_err());
    }

    #[test]
    fn masks_addresses_in_smtp_replies() {
        assert_eq!(
            mask_in_text("550 5.1.1 <jane.doe@example.org>: Recipient address rejected"),
            "550 5.1.1 <j***@example.org>: Recipient address rejected"
        );
    }

    #[test]
    fn masks_for_logs() {
        let email = EmailAddress::parse("jane@example.org").unwrap();
        assert_eq!(email.masked(), "j***@example.org");
        assert!(!format!("{email:?}").contains("jane"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in ".{0,300}") {
            let _ = EmailAddress::parse(&input);
        }

        #[test]
        fn parsed_addresses_reparse_to_themselves(local in "[a-z0-9._%+-]{1,20}", domain in "[a-z]{1,10}\\.[a-z]{2,5}") {
            let input = format!("{local}@{domain}");
            if let Ok(email) = EmailAddress::parse(&input) {
                let again = EmailAddress::parse(email.as_str()).unwrap();
                prop_assert_eq!(again, email);
            }
        }
    }
}
