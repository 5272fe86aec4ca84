//! Headers lettre has no type for.

use lettre::message::header::{HeaderName, HeaderValue};

/// `Auto-Submitted: auto-generated` (RFC 3834): no auto-replies, please.
pub fn auto_submitted() -> HeaderValue {
    HeaderValue::new(
        HeaderName::new_from_ascii_str("Auto-Submitted"),
        "auto-generated".to_owned(),
    )
}

/// `List-Id` (RFC 2919): `"Name" <slug.domain>`.
pub fn list_id(name: &str, slug: &str, domain: &str) -> HeaderValue {
    let phrase: String = name
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect();
    HeaderValue::new(
        HeaderName::new_from_ascii_str("List-Id"),
        format!("\"{phrase}\" <{slug}.{domain}>"),
    )
}
