//! Mail bodies encoded for the wire in one pass.
//!
//! lettre's `Body::new` makes the same choice (7bit when it can, else
//! quoted-printable, else base64) but takes three passes and turns LF into
//! CRLF by inserting before every line break in place, which moves the rest
//! of the text each time: building the two bodies of every outgoing message
//! was measured at about a sixth of the outbox worker's CPU
//! (docs/performance.md). Here the choice takes one scan and the encoding
//! one more, writing CRLF line breaks as it goes.

use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;

/// The longest line of an encoded body (RFC 2045, 6.7 (5)), not counting
/// the CRLF.
const LINE: usize = 76;

/// A text body with CRLF line breaks, as 7bit if every line is short
/// printable ASCII, else quoted-printable; text that is mostly not ASCII
/// (where quoted-printable would triple it) is left to lettre, which
/// encodes it as base64.
pub fn text(text: &str) -> Body {
    let mut escaped = 0;
    let mut longest = 0;
    for (line, _) in lines(text) {
        longest = longest.max(line.len());
        escaped += line.iter().filter(|&&b| !literal(b)).count();
    }
    if escaped > text.len() / 3 {
        return Body::new(text.to_owned());
    }
    if escaped == 0 && longest <= LINE {
        return Body::dangerous_pre_encoded(crlf(text), ContentTransferEncoding::SevenBit);
    }
    Body::dangerous_pre_encoded(
        quoted_printable(text),
        ContentTransferEncoding::QuotedPrintable,
    )
}

/// Printable ASCII, space and tab: what 7bit carries as it is.
fn literal(b: u8) -> bool {
    matches!(b, b'\t' | b' '..=b'~')
}

/// The lines of a text, without their line breaks (LF or CRLF), each with
/// whether a line break ends it.
fn lines(text: &str) -> impl Iterator<Item = (&[u8], bool)> {
    // `str::split` finds a char with `memchr`; a byte slice's `split`
    // tests every byte.
    let mut lines = text.split('\n').peekable();
    std::iter::from_fn(move || {
        let line = lines.next()?.as_bytes();
        let broken = lines.peek().is_some();
        match line.strip_suffix(b"\r") {
            Some(line) if broken => Some((line, true)),
            _ => Some((line, broken)),
        }
    })
}

/// The text with every line break (LF or CRLF) written as CRLF.
fn crlf(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32 + 2);
    for (line, broken) in lines(text) {
        out.extend_from_slice(line);
        if broken {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Quoted-printable (RFC 2045, 6.7) of text: line breaks (LF or CRLF) are
/// hard CRLF breaks; `=`, bytes outside printable ASCII, and a space or tab
/// that ends a line are written `=XX`; lines longer than 76 characters are
/// broken with soft breaks (`=` CRLF), never inside an `=XX`. Runs of
/// bytes written as they are are copied whole.
fn quoted_printable(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 8 + 16);
    for (line, broken) in lines(text) {
        let mut line_out = Line {
            out: &mut out,
            column: 0,
        };
        let mut rest = line;
        while !rest.is_empty() {
            let run = rest.iter().position(|&b| !plain(b)).unwrap_or(rest.len());
            // A space or tab that ends the line is escaped.
            let run = if run == rest.len() && matches!(rest.last(), Some(b' ' | b'\t')) {
                run - 1
            } else {
                run
            };
            let (written, after) = rest.split_at(run);
            line_out.plain(written, after.is_empty());
            rest = match after.split_first() {
                Some((&b, after)) => {
                    line_out.escaped(b, after.is_empty());
                    after
                }
                None => after,
            };
        }
        if broken {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// What quoted-printable writes as it is: printable ASCII but `=`, and
/// space and tab (unless they end a line).
fn plain(b: u8) -> bool {
    PLAIN[usize::from(b)]
}

/// [`plain`] for every byte: one load instead of four comparisons.
static PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = (c.is_ascii_graphic() && c != b'=') || c == b' ' || c == b'\t';
        b += 1;
    }
    table
};

/// One line of quoted-printable output, with its column.
struct Line<'a> {
    out: &'a mut Vec<u8>,
    column: usize,
}

impl Line<'_> {
    /// The most characters the current output line can take: a soft
    /// break's `=` takes a column, except after the line's last character.
    fn room(&self, ends_line: bool) -> usize {
        if ends_line { LINE } else { LINE - 1 }.saturating_sub(self.column)
    }

    fn soft_break(&mut self) {
        self.out.extend_from_slice(b"=\r\n");
        self.column = 0;
    }

    /// Bytes written as they are, broken where the line is full.
    fn plain(&mut self, mut bytes: &[u8], ends_line: bool) {
        while !bytes.is_empty() {
            // Not all of it fits: as much as leaves room for a soft break.
            let take = if bytes.len() <= self.room(ends_line) {
                bytes.len()
            } else {
                self.room(false)
            };
            let (now, later) = bytes.split_at(take);
            self.out.extend_from_slice(now);
            self.column += take;
            bytes = later;
            if !bytes.is_empty() {
                self.soft_break();
            }
        }
    }

    /// A byte written `=XX`, on the next line if this one is full.
    fn escaped(&mut self, b: u8, ends_line: bool) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        if self.room(ends_line) < 3 {
            self.soft_break();
        }
        self.out
            .extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        self.column += 3;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(text: &str) -> (ContentTransferEncoding, String) {
        let body = super::text(text);
        let encoding = body.encoding();
        (encoding, String::from_utf8(body.into_vec()).unwrap())
    }

    /// Quoted-printable decoding as RFC 2045 defines it.
    fn decode(encoded: &str) -> String {
        let mut out = Vec::new();
        let bytes = encoded.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'=' if bytes[i + 1..].starts_with(b"\r\n") => i += 3,
                b'=' => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                }
                b'\r' => {
                    assert_eq!(bytes[i + 1], b'\n', "a CR only before LF");
                    out.push(b'\n');
                    i += 2;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn short_ascii_lines_go_as_7bit_with_crlf() {
        assert_eq!(
            encoded("Hello,\n\nplease confirm.\r\nThanks\n"),
            (
                ContentTransferEncoding::SevenBit,
                "Hello,\r\n\r\nplease confirm.\r\nThanks\r\n".to_owned()
            )
        );
    }

    #[test]
    fn long_lines_are_broken_softly_and_equals_signs_escaped() {
        let url = format!("https://news.example/confirm/{}?a=b", "x".repeat(90));
        let (encoding, body) = encoded(&format!("Click:\n{url}\n"));
        assert_eq!(encoding, ContentTransferEncoding::QuotedPrintable);
        assert!(body.lines().all(|line| line.len() <= LINE), "{body}");
        assert!(body.contains("?a=3Db"), "{body}");
        assert_eq!(decode(&body), format!("Click:\n{url}\n"));
    }

    #[test]
    fn a_line_of_76_characters_fits_and_one_of_77_is_broken() {
        let a76 = "a".repeat(76);
        assert_eq!(
            encoded(&a76),
            (ContentTransferEncoding::SevenBit, a76.clone())
        );
        let (encoding, body) = encoded(&format!("{a76}a\n{a76} "));
        assert_eq!(encoding, ContentTransferEncoding::QuotedPrintable);
        let a75 = "a".repeat(75);
        assert_eq!(body, format!("{a75}=\r\naa\r\n{a75}=\r\na=20"));
    }

    #[test]
    fn non_ascii_and_trailing_spaces_are_escaped() {
        let (encoding, body) = encoded("Grüße \nBye\t");
        assert_eq!(encoding, ContentTransferEncoding::QuotedPrintable);
        assert_eq!(body, "Gr=C3=BC=C3=9Fe=20\r\nBye=09");
    }

    #[test]
    fn text_mostly_not_ascii_is_left_to_lettre() {
        let (encoding, _) = encoded("Подтвердите подписку");
        assert_eq!(encoding, ContentTransferEncoding::Base64);
    }

    #[test]
    fn an_escape_is_never_split_by_a_soft_break() {
        for pad in 70..80 {
            let text = format!("{}é{}", "a".repeat(pad), "b".repeat(10));
            let (_, body) = encoded(&text);
            assert!(body.lines().all(|line| line.len() <= LINE), "{body}");
            assert_eq!(decode(&body), text);
        }
    }

    proptest! {
        #[test]
        fn quoted_printable_decodes_to_the_text_with_short_lines(
            text in "([ \\t=a-z~.\\r\\n]{0,30}(é|€)?){0,30}"
        ) {
            let (encoding, body) = encoded(&text);
            prop_assume!(encoding != ContentTransferEncoding::Base64);
            let normalised = text.replace("\r\n", "\n");
            prop_assert!(body.lines().all(|line| line.len() <= LINE), "{}", body);
            prop_assert!(body.bytes().all(|b| b == b'\r' || b == b'\n' || literal(b)));
            prop_assert!(
                body.split("\r\n").all(|line| !line.ends_with(' ') && !line.ends_with('\t'))
                    || encoding == ContentTransferEncoding::SevenBit
            );
            if encoding == ContentTransferEncoding::QuotedPrintable {
                prop_assert_eq!(decode(&body), normalised);
            } else {
                prop_assert_eq!(body.replace("\r\n", "\n"), normalised);
            }
        }
    }
}
