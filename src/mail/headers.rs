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

/// `List-Unsubscribe` (RFC 2369): the one-click URL, and a `mailto:` when
/// the list has an unsubscribe address.
pub fn list_unsubscribe(url: &str, mailto: Option<&str>) -> HeaderValue {
    let value = match mailto {
        Some(address) => format!("<{url}>, <mailto:{address}?subject=unsubscribe>"),
        None => format!("<{url}>"),
    };
    HeaderValue::new(HeaderName::new_from_ascii_str("List-Unsubscribe"), value)
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
pub fn list_unsubscribe_post() -> HeaderValue {
    HeaderValue::new(
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
        "List-Unsubscribe=One-Click".to_owned(),
    )
}
