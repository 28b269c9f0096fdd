//! Multipart bodies (RFC 5621, RFC 2046 §5.1): an INVITE carrying SDP and a PIDF-LO location
//! (RFC 6442 §4.1) is `multipart/mixed` with one part each.
//!
//! [`parse`] borrows the parts from the body; [`build`] writes a body from parts. Part headers
//! are kept as written; [`Part::content_type`] and [`Part::content_id`] decode the two that
//! matter.

use std::fmt;

use crate::header::typed::MediaType;
use crate::text;

/// A body part, borrowed from the message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// Part headers `(name, value)` as written.
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

impl<'a> Part<'a> {
    /// The value of the first part header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    /// The part's Content-Type (RFC 2046 default is `text/plain`; `None` when absent).
    pub fn content_type(&self) -> Option<MediaType<'a>> {
        self.header("Content-Type").and_then(|v| MediaType::parse(v).ok())
    }

    /// The Content-ID without angle brackets (what a `cid:` URI names, RFC 2392).
    pub fn content_id(&self) -> Option<&'a str> {
        let v = text::trim(self.header("Content-ID")?);
        Some(v.strip_prefix('<').and_then(|v| v.strip_suffix('>')).unwrap_or(v))
    }
}

/// Why a multipart body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipartError {
    /// The boundary is empty, too long or has characters RFC 2046 §5.1.1 does not allow.
    BadBoundary,
    /// No opening delimiter line.
    NoDelimiter,
    /// The closing delimiter (`--boundary--`) is missing.
    Unterminated,
    /// A part's header section is malformed (not UTF-8, no colon, no empty line).
    BadPartHeaders,
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MultipartError::BadBoundary => "bad multipart boundary",
            MultipartError::NoDelimiter => "multipart body without a delimiter",
            MultipartError::Unterminated => "multipart body without a closing delimiter",
            MultipartError::BadPartHeaders => "malformed body part headers",
        })
    }
}

impl std::error::Error for MultipartError {}

fn boundary_ok(boundary: &str) -> bool {
    (1..=70).contains(&boundary.len())
        && boundary.bytes().all(|b| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b))
        && !boundary.ends_with(' ')
}

/// Splits `body` into its parts at `boundary` (from the Content-Type's `boundary` parameter).
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, MultipartError> {
    if !boundary_ok(boundary) {
        return Err(MultipartError::BadBoundary);
    }
    let mut delim = Vec::with_capacity(boundary.len() + 4);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary.as_bytes());
    let finder = memchr::memmem::Finder::new(&delim);

    // The first delimiter may sit at the very start or after a preamble and a line break.
    let at = finder.find(body).ok_or(MultipartError::NoDelimiter)?;
    if at != 0 && body[at - 1] != b'\n' {
        return Err(MultipartError::NoDelimiter);
    }
    let mut pos = at + delim.len();
    let mut parts = Vec::new();
    loop {
        // After a delimiter: `--` closes, otherwise transport padding then a line break.
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        let nl = memchr::memchr(b'\n', &body[pos..]).ok_or(MultipartError::Unterminated)?;
        pos += nl + 1;
        // Find the next delimiter that starts a line.
        let mut search = pos;
        let (content_end, next_pos) = loop {
            let at = search + finder.find(&body[search..]).ok_or(MultipartError::Unterminated)?;
            if at >= 1 && body[at - 1] == b'\n' {
                let end = if at >= 2 && body[at - 2] == b'\r' { at - 2 } else { at - 1 };
                break (end.max(pos), at + delim.len());
            }
            if at == pos {
                break (pos, at + delim.len());
            }
            search = at + 1;
        };
        parts.push(parse_part(&body[pos..content_end])?);
        pos = next_pos;
    }
}

fn parse_part(raw: &[u8]) -> Result<Part<'_>, MultipartError> {
    let mut headers = Vec::new();
    let mut pos = 0;
    loop {
        let Some(nl) = memchr::memchr(b'\n', &raw[pos..]) else {
            // No empty line: a part with only headers (or nothing) and no body.
            if raw[pos..].iter().all(|b| b.is_ascii_whitespace()) {
                return Ok(Part { headers, body: &raw[raw.len()..] });
            }
            return Err(MultipartError::BadPartHeaders);
        };
        let mut line = &raw[pos..pos + nl];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        pos += nl + 1;
        if line.is_empty() {
            return Ok(Part { headers, body: &raw[pos..] });
        }
        let line = std::str::from_utf8(line).map_err(|_| MultipartError::BadPartHeaders)?;
        let (name, value) = line.split_once(':').ok_or(MultipartError::BadPartHeaders)?;
        let name = text::trim(name);
        if !text::is_token_str(name) {
            return Err(MultipartError::BadPartHeaders);
        }
        headers.push((name, text::trim(value)));
    }
}

/// A part to build: headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPart {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl NewPart {
    /// A part with a Content-Type and, optionally, a Content-ID (without angle brackets).
    pub fn new(content_type: &str, content_id: Option<&str>, body: impl Into<Vec<u8>>) -> NewPart {
        let mut headers = vec![("Content-Type".to_owned(), content_type.to_owned())];
        if let Some(id) = content_id {
            headers.push(("Content-ID".to_owned(), format!("<{id}>")));
        }
        NewPart { headers, body: body.into() }
    }
}

/// Writes a multipart body; the message's Content-Type is then
/// `multipart/mixed;boundary=<boundary>`. The caller picks a boundary that does not occur in
/// any part (a random token does).
pub fn build(boundary: &str, parts: &[NewPart]) -> Result<Vec<u8>, MultipartError> {
    if !boundary_ok(boundary) {
        return Err(MultipartError::BadBoundary);
    }
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &part.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&part.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    const PIDF: &[u8] = b"<?xml version=\"1.0\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:a@b\"/>";

    #[test]
    fn build_then_parse() {
        let body = build(
            "boundary1",
            &[
                NewPart::new("application/sdp", None, SDP),
                NewPart::new("application/pidf+xml", Some("loc@edge.example.com"), PIDF),
            ],
        )
        .unwrap();
        let parts = parse(&body, "boundary1").unwrap();
        assert_eq!(parts.len(), 2);
        assert!(parts[0].content_type().unwrap().is("application", "sdp"));
        assert_eq!(parts[0].body, SDP);
        assert_eq!(parts[1].content_id(), Some("loc@edge.example.com"));
        assert_eq!(parts[1].body, PIDF);
    }

    #[test]
    fn preamble_and_epilogue() {
        let body = b"preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\nepilogue";
        let parts = parse(body, "b").unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].body, b"hello");
    }

    #[test]
    fn boundary_text_inside_a_part_does_not_split() {
        let body = b"--b\r\n\r\nx--b y\r\n--b--";
        assert_eq!(parse(body, "b").unwrap()[0].body, b"x--b y");
    }

    #[test]
    fn errors() {
        assert_eq!(parse(b"--b\r\n\r\nno end", "b"), Err(MultipartError::Unterminated));
        assert_eq!(parse(b"nothing", "b"), Err(MultipartError::NoDelimiter));
        assert_eq!(
            parse(b"--b\r\nbad header\r\n\r\nx\r\n--b--", "b"),
            Err(MultipartError::BadPartHeaders)
        );
        assert_eq!(parse(b"", ""), Err(MultipartError::BadBoundary));
    }
}
