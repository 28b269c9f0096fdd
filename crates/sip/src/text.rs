//! Lexical helpers shared by the typed header decoders (RFC 3261 §25.1).
//!
//! Header values are kept as raw bytes; a typed view first [`unfold`]s the value (a folded value
//! has CRLF followed by whitespace inside it, which is equivalent to one space), then scans it
//! with these helpers. Nothing here allocates except `unfold` on a folded value.

use std::borrow::Cow;

/// `token` characters (RFC 3261 §25.1): alphanum and `-.!%*_+`'~`.
#[inline]
pub(crate) const fn is_token(b: u8) -> bool {
    TOKEN[b as usize]
}

/// The end of the run of `token` characters in `b` that starts at `i` (`i` when there is none).
#[inline]
pub(crate) fn token_end(b: &[u8], i: usize) -> usize {
    TOKEN_SET.run_end(b, i)
}

/// The end of the run of spaces and tabs in `b` that starts at `i`.
#[inline]
pub(crate) fn ws_end(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| is_ws(c)) {
        i += 1;
    }
    i
}

/// A set of bytes, as a table: what the one-pass scanners skip over.
#[derive(Debug)]
pub(crate) struct ByteSet(pub(crate) [bool; 256]);

impl ByteSet {
    #[inline]
    pub(crate) const fn contains(&self, b: u8) -> bool {
        self.0[b as usize]
    }

    /// The set with every byte past ASCII added (`byte_set!` builds ASCII sets).
    pub(crate) const fn with_non_ascii(mut self) -> ByteSet {
        let mut i = 128;
        while i < 256 {
            self.0[i] = true;
            i += 1;
        }
        self
    }

    /// The end of the run of bytes of this set in `b` that starts at `i` (`i` when there is
    /// none, or when `i` is past the end).
    #[inline]
    pub(crate) fn run_end(&self, b: &[u8], mut i: usize) -> usize {
        // Four at a time, without an early exit inside: names, URIs and parameters are mostly
        // runs of several bytes.
        while let Some(&[w, x, y, z]) = b.get(i..i + 4) {
            if !(self.contains(w) & self.contains(x) & self.contains(y) & self.contains(z)) {
                break;
            }
            i += 4;
        }
        while b.get(i).is_some_and(|&c| self.contains(c)) {
            i += 1;
        }
        i
    }
}

/// A [`ByteSet`] of the ASCII bytes `b` for which the expression holds:
/// `byte_set!(|b| b.is_ascii_digit())`.
macro_rules! byte_set {
    (|$b:ident| $contains:expr) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 128 {
            let $b = i as u8;
            t[i] = $contains;
            i += 1;
        }
        $crate::text::ByteSet(t)
    }};
}
pub(crate) use byte_set;

/// `token` characters as a [`ByteSet`].
pub(crate) static TOKEN_SET: ByteSet = ByteSet(TOKEN);

/// A lookup table is faster than a chain of comparisons on the per-byte parse path.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = matches!(b,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
            | b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        i += 1;
    }
    t
};

/// Bytes that never appear unescaped in a URI: controls, space, `"`, `<`, `>` and DEL
/// (RFC 3986 §2, RFC 3261 §25.1).
#[inline]
pub(crate) const fn is_uri_illegal(b: u8) -> bool {
    URI_ILLEGAL[b as usize]
}

static URI_ILLEGAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b <= b' ' || b == b'<' || b == b'>' || b == b'"' || b == 0x7f;
        i += 1;
    }
    t
};

/// Linear white space inside an unfolded value.
pub(crate) const fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t')
}

/// True when every byte is a `token` character and there is at least one.
pub(crate) fn is_token_str(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token)
}

/// Trims spaces and tabs at both ends.
pub(crate) fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    // Most values come trimmed already.
    if b.first().is_none_or(|&c| !is_ws(c)) && b.last().is_none_or(|&c| !is_ws(c)) {
        return s;
    }
    let start = b.iter().position(|&c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_ws(c)).map_or(start, |i| i + 1);
    // Both ends are next to ASCII whitespace or at the string's ends: character boundaries.
    &s[start..end.max(start)]
}

/// Trims spaces and tabs at both ends of raw bytes.
pub(crate) fn trim_ws(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b
        && is_ws(*first)
    {
        b = rest;
    }
    while let [rest @ .., last] = b
        && is_ws(*last)
    {
        b = rest;
    }
    b
}

/// Trims spaces, tabs and line breaks at both ends of a raw value.
pub(crate) fn trim_bytes(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if matches!(first, b' ' | b'\t' | b'\r' | b'\n') {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if matches!(last, b' ' | b'\t' | b'\r' | b'\n') {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// Replaces each line fold (CR? LF followed by spaces or tabs) with a single space, borrowing
/// when the value was not folded (the common case).
pub(crate) fn unfold(value: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\n', value).is_none() {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\r' | b'\n' => {
                while i < value.len() && matches!(value[i], b'\r' | b'\n' | b' ' | b'\t') {
                    i += 1;
                }
                out.push(b' ');
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// Offset of the first line feed in `b`, eight bytes at a time: header lines are mostly 20 to
/// 80 bytes, where this beats `memchr`'s set-up and dispatch.
#[inline]
pub(crate) fn find_lf(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LF: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(chunk.try_into().ok()?) ^ LF;
        // The lowest byte that is zero (a line feed) sets its top bit; bytes above it may too.
        let zero = w.wrapping_sub(ONES) & !w & (ONES << 7);
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&c| c == b'\n').map(|i| at + i)
}

/// Byte offset of the first `b` (an ASCII delimiter) in `s`; memchr-fast on long values.
#[inline]
pub(crate) fn find_byte(s: &str, b: u8) -> Option<usize> {
    find(s.as_bytes(), b)
}

/// Byte offset of the first `needle` in `hay`. Header values and URI parts are mostly short,
/// where a plain loop beats memchr's set-up; long ones go to memchr.
#[inline]
pub(crate) fn find(hay: &[u8], needle: u8) -> Option<usize> {
    if hay.len() < 32 { hay.iter().position(|&c| c == needle) } else { memchr::memchr(needle, hay) }
}

/// Splits `s` around the first ASCII delimiter `b`.
#[inline]
pub(crate) fn split_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    // `b` is ASCII, so both sides are on character boundaries.
    find_byte(s, b).map(|i| (&s[..i], &s[i + 1..]))
}

/// Splits a header value at top-level commas: commas inside a quoted string or inside `<...>`
/// do not split (RFC 3261 §7.3.1). Empty elements are skipped.
pub(crate) fn split_commas(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let end = top_level_comma(rest).unwrap_or(rest.len());
            let item = trim(&rest[..end]);
            rest = if end < rest.len() { &rest[end + 1..] } else { "" };
            if !item.is_empty() {
                return Some(item);
            }
        }
    })
}

/// Byte offset of the first comma outside quotes and angle brackets.
pub(crate) fn top_level_comma(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    // Most values hold one element: no comma at all means no split, found at memchr speed.
    find(b, b',')?;
    let mut i = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    while i < b.len() {
        match b[i] {
            b'\\' if in_quotes => i += 1,
            b'"' if !in_angle => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b',' if !in_quotes && !in_angle => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Finds the end of a quoted string that starts at `s[0] == '"'`; returns the index just past
/// the closing quote, or `None` when the quote is not closed.
pub(crate) fn quoted_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Removes the quotes and backslash escapes of a quoted string (`"a \"b\""` -> `a "b"`);
/// returns the input unchanged when it is not quoted.
pub(crate) fn unquote(s: &str) -> Cow<'_, str> {
    let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return Cow::Borrowed(s);
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Decodes `%XX` escapes (RFC 3261 §19.1.2, RFC 3986 §2.1). Returns `None` on a malformed
/// escape; borrows when there is nothing to decode.
pub(crate) fn percent_decode(s: &str) -> Option<Cow<'_, [u8]>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s.as_bytes()));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex_val(*b.get(i + 1)?)?;
            let lo = hex_val(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(Cow::Owned(out))
}

const fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses an unsigned decimal of at most `max_digits` digits (leading zeros allowed, as
/// RFC 3261 `1*DIGIT` permits), rejecting signs, spaces and overflow.
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    parse_u32_bytes(s.as_bytes())
}

/// [`parse_u32`] on bytes.
pub(crate) fn parse_u32_bytes(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for d in b {
        v = v * 10 + u64::from(d - b'0');
        if v > u64::from(u32::MAX) {
            return None;
        }
    }
    u32::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_lf_is_memchr() {
        let mut b = [b'a'; 40];
        for len in 0..b.len() {
            for lf in 0..=len {
                b.iter_mut().for_each(|c| *c = 0x8a);
                if lf < len {
                    b[lf] = b'\n';
                    // A second one further on, and bytes that borrow across lanes before it.
                    if lf + 3 < len {
                        b[lf + 3] = b'\n';
                    }
                    if lf > 0 {
                        b[lf - 1] = 0x0b;
                    }
                }
                assert_eq!(find_lf(&b[..len]), memchr::memchr(b'\n', &b[..len]), "{len} {lf}");
            }
        }
    }

    #[test]
    fn unfold_replaces_folds() {
        assert_eq!(&*unfold(b"a,\r\n b"), b"a, b");
        assert_eq!(&*unfold(b"a\r\n\t\tb"), b"a b");
        assert!(matches!(unfold(b"plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn commas_respect_quotes_and_brackets() {
        let v: Vec<_> = split_commas(r#""a, b" <sip:x@y;p=1,2>;q=1 , <sip:z>,,"#).collect();
        assert_eq!(v, [r#""a, b" <sip:x@y;p=1,2>;q=1"#, "<sip:z>"]);
    }

    #[test]
    fn quoting() {
        assert_eq!(unquote(r#""a \"b\"""#), r#"a "b""#);
        assert_eq!(quoted_end(r#""a\"b" rest"#), Some(6));
        assert_eq!(quoted_end(r#""open"#), None);
    }

    #[test]
    fn numbers_and_escapes() {
        assert_eq!(parse_u32("0042"), Some(42));
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32("-1"), None);
        assert_eq!(parse_u32(""), None);
        assert_eq!(&*percent_decode("a%20b").unwrap(), b"a b");
        assert!(percent_decode("a%2").is_none());
        assert!(percent_decode("a%zz").is_none());
    }
}
