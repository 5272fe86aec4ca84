//! Mail bodies rendered once per list and filled in per message.
//!
//! A confirmation or welcome email differs from the list's other ones only
//! in its links. Rendering its templates for every message (minijinja's VM,
//! translations, escaping) was a third of the outbox worker's CPU, so the
//! first message of a list renders each body with placeholder links and
//! keeps the text between them; later messages join that text with their
//! own links, escaped as the template would have escaped them.
//!
//! A template is filled in this way only if that gives exactly what
//! rendering gives: checked when the stamp is made, with two sets of sample
//! links unlike each other (lengths, characters that HTML escapes). A
//! template that does more with a link than show it (a filter, a test on
//! its length) fails the check and is rendered for every message, as
//! before.

use std::sync::{Arc, Mutex};

use minijinja::Value;

use super::escape_html;

/// What a stamp is made for: a template of a list in a language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StampKey {
    pub list: String,
    pub name: String,
    pub lang: String,
}

/// The text of a rendered template around its placeholders.
#[derive(Debug)]
pub(super) struct Stamp {
    /// The variables that do not change from message to message, which the
    /// stamp was made with.
    fixed: Value,
    /// `pieces[i]` comes before the `i`-th placeholder, the last one after
    /// every placeholder.
    pieces: Vec<String>,
    /// Which slot each placeholder shows, in order.
    shows: Vec<usize>,
    /// Whether slot values are HTML-escaped (the template escapes them).
    escape: bool,
}

/// Stamps made so far. `None` records a template that cannot be stamped.
/// A few entries (lists × mail templates × languages), looked up by a scan
/// that, unlike a map, needs no owned key per message.
#[derive(Debug, Default)]
pub(super) struct Stamps {
    made: Mutex<Vec<(StampKey, Option<Arc<Stamp>>)>>,
}

impl Stamps {
    /// The stamp for a list's template in a language made with `fixed`, or
    /// `Some(None)` when that template cannot be stamped; `None` when none
    /// was made yet (or it was made with other fixed variables).
    pub(super) fn get(
        &self,
        list: &str,
        name: &str,
        lang: &str,
        fixed: &Value,
    ) -> Option<Option<Arc<Stamp>>> {
        let made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        let (_, stamp) = made
            .iter()
            .find(|(key, _)| key.list == list && key.name == name && key.lang == lang)?;
        match stamp {
            Some(stamp) if stamp.fixed == *fixed => Some(Some(Arc::clone(stamp))),
            Some(_) => None,
            None => Some(None),
        }
    }

    /// Keeps `stamp` for `key`, in place of one made before.
    pub(super) fn put(&self, key: StampKey, stamp: Option<Arc<Stamp>>) {
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        match made.iter_mut().find(|(made, _)| *made == key) {
            Some((_, old)) => *old = stamp,
            None => made.push((key, stamp)),
        }
    }
}

/// Placeholders no template holds: letters and digits only, so that no
/// escaping changes them, with a random part.
pub(super) fn placeholders(count: usize) -> Vec<String> {
    let nonce = uuid::Uuid::new_v4().simple();
    (0..count)
        .map(|i| format!("assentslot{i}x{nonce}"))
        .collect()
}

/// Two sets of sample values for `count` slots, unlike each other and
/// holding the characters HTML escapes.
pub(super) fn samples(count: usize) -> [Vec<String>; 2] {
    [
        (0..count)
            .map(|i| format!("https://a.example/{i}/x?b=1&c=<d>'\""))
            .collect(),
        (0..count)
            .map(|i| format!("http://example.org/long/path/{i}/{}", "y".repeat(80 + i)))
            .collect(),
    ]
}

impl Stamp {
    /// Cuts `rendered` (the template rendered with `placeholders`) at
    /// every placeholder.
    pub(super) fn cut(fixed: Value, rendered: &str, placeholders: &[String]) -> Stamp {
        let mut pieces = Vec::new();
        let mut shows = Vec::new();
        let mut rest = rendered;
        loop {
            let next = placeholders
                .iter()
                .enumerate()
                .filter_map(|(slot, p)| rest.find(p.as_str()).map(|at| (at, slot, p.len())))
                .min();
            let Some((at, slot, len)) = next else {
                break;
            };
            pieces.push(rest[..at].to_owned());
            shows.push(slot);
            rest = &rest[at + len..];
        }
        pieces.push(rest.to_owned());
        Stamp {
            fixed,
            pieces,
            shows,
            escape: false,
        }
    }

    /// The same stamp, escaping slot values for HTML or not.
    pub(super) fn escaping(mut self, escape: bool) -> Stamp {
        self.escape = escape;
        self
    }

    /// The text with `values` (one per slot) in place of the placeholders.
    pub(super) fn fill<S: AsRef<str>>(&self, values: &[S]) -> String {
        let escaped: Vec<std::borrow::Cow<'_, str>> = values
            .iter()
            .map(|v| {
                if self.escape {
                    std::borrow::Cow::Owned(escape_html(v.as_ref()))
                } else {
                    std::borrow::Cow::Borrowed(v.as_ref())
                }
            })
            .collect();
        let length = self.pieces.iter().map(String::len).sum::<usize>()
            + self
                .shows
                .iter()
                .map(|&slot| escaped.get(slot).map_or(0, |v| v.len()))
                .sum::<usize>();
        let mut out = String::with_capacity(length);
        for (piece, slot) in self.pieces.iter().zip(&self.shows) {
            out.push_str(piece);
            out.push_str(escaped.get(*slot).map_or("", |v| v.as_ref()));
        }
        if let Some(last) = self.pieces.last() {
            out.push_str(last);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_fills_each_placeholder_with_its_value_in_order() {
        let marks = placeholders(2);
        let rendered = format!("a {} b {} c {} d", marks[1], marks[0], marks[1]);
        let stamp = Stamp::cut(Value::UNDEFINED, &rendered, &marks);
        assert_eq!(stamp.fill(&["X", "Y"]), "a Y b X c Y d");
    }

    #[test]
    fn an_escaping_stamp_escapes_values_and_leaves_its_text_alone() {
        let marks = placeholders(1);
        let rendered = format!("<a href=\"{}\">&amp;</a>", marks[0]);
        let stamp = Stamp::cut(Value::UNDEFINED, &rendered, &marks).escaping(true);
        assert_eq!(
            stamp.fill(&["https://x/?a=1&b=2"]),
            "<a href=\"https://x/?a=1&amp;b=2\">&amp;</a>"
        );
    }

    #[test]
    fn a_template_without_placeholders_is_one_piece() {
        let stamp = Stamp::cut(Value::UNDEFINED, "plain", &placeholders(1));
        assert_eq!(stamp.fill(&["unused"]), "plain");
    }
}
