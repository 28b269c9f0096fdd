//! SIP requests and responses: parsing (RFC 3261 §7, §18.3), typed access, building and
//! printing.
//!
//! [`Message::parse`] takes one whole message (a datagram, or a frame cut by
//! [`crate::framing::check`]) and checks what every SIP element relies on: the start line, the
//! header-line syntax, the mandatory headers (Via, From, To, Call-ID, CSeq) and their syntax,
//! that the CSeq method is the request method, Max-Forwards and Content-Length. Other headers
//! are decoded when asked for. Printing a message that nobody changed gives back its bytes.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes};

use crate::error::{HeaderError, Invalid, MessageKind, ParseError};
use crate::header::typed::{
    CSeq, MediaType, NameAddr, Via, ViaAt, parse_number, parse_number_bytes,
};
use crate::header::{Entry, HeaderName, Headers, Piece, Text};
use crate::method::Method;
use crate::text;
use crate::uri::{Uri, UriAt, UriError};

/// How the message arrived, which decides the Content-Length rules (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// UDP: the datagram is the message. Content-Length may be absent (the body is the rest);
    /// bytes past Content-Length are discarded; a shorter body is an error.
    Datagram,
    /// TCP, TLS, WebSocket: Content-Length is mandatory.
    Stream,
}

/// Header lines accepted in one message; more is an attack, not a telephone call.
pub const MAX_HEADERS: usize = 256;

/// The highest Max-Forwards value RFC 3261 §20.22 allows.
pub const MAX_FORWARDS_LIMIT: u32 = 255;

/// A SIP message.
#[derive(Debug, Clone)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// A SIP request.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    uri: Text,
    /// The request line as received, line ending included, while method and URI are unchanged.
    start_line: Option<(u32, u32)>,
    headers: Headers,
    /// The empty line ending the header section was a bare LF.
    lf_only: bool,
    body: Bytes,
    /// The Request-URI as decoded by the first [`Request::uri`] since it was set.
    uri_at: OnceLock<UriAt>,
}

/// A SIP response.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    reason: Text,
    start_line: Option<(u32, u32)>,
    headers: Headers,
    lf_only: bool,
    body: Bytes,
}

impl Message {
    /// Parses one whole message. See the module docs for what is checked.
    pub fn parse(buf: Bytes, framing: Framing) -> Result<Message, ParseError> {
        parse(buf, framing)
    }

    /// The header section.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The header section, to change it.
    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Request(r) => r.encode(out),
            Message::Response(r) => r.encode(out),
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

impl Request {
    /// A request built locally, with no headers yet.
    pub fn new(method: Method, uri: &str) -> Result<Request, UriError> {
        Uri::parse(uri)?;
        Ok(Request {
            method,
            uri: Text::Owned(Bytes::copy_from_slice(uri.as_bytes())),
            start_line: None,
            headers: Headers::new(),
            lf_only: false,
            body: Bytes::new(),
            uri_at: OnceLock::new(),
        })
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The Request-URI as written.
    pub fn uri_str(&self) -> &str {
        // Checked as UTF-8 (and as a URI) when parsed or set.
        std::str::from_utf8(self.uri.resolve(&self.headers.buf)).unwrap_or("")
    }

    /// The Request-URI, decoded (once: the parts are kept until the URI is replaced).
    pub fn uri(&self) -> Result<Uri<'_>, UriError> {
        let raw = self.uri_str();
        if let Some(uri) = self.uri_at.get().and_then(|at| at.view(raw)) {
            return Ok(uri);
        }
        let uri = Uri::parse(raw)?;
        if let Some(at) = UriAt::of(&uri, raw) {
            let _ = self.uri_at.set(at);
        }
        Ok(uri)
    }

    /// Replaces the Request-URI (e.g. with a registered Contact, RFC 3261 §16.5).
    pub fn set_uri(&mut self, uri: &str) -> Result<(), UriError> {
        Uri::parse(uri)?;
        self.uri = Text::Owned(Bytes::copy_from_slice(uri.as_bytes()));
        self.uri_at.take();
        self.start_line = None;
        Ok(())
    }

    /// Changes the method (an ACK or CANCEL built from an INVITE).
    pub fn set_method(&mut self, method: Method) {
        self.method = method;
        self.start_line = None;
    }

    /// Whether the request is inside a dialog: its To carries a tag (RFC 3261 §12.2). A To
    /// that does not parse counts as no tag.
    pub fn in_dialog(&self) -> bool {
        self.headers.to_tag().ok().flatten().is_some()
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Sets the body with its Content-Type (or removes Content-Type when `None`) and keeps
    /// Content-Length right.
    pub fn set_body(&mut self, content_type: Option<&str>, body: Bytes) {
        set_body(&mut self.headers, &mut self.body, content_type, body);
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_parts(out, self.start_line, &self.headers, self.lf_only, &self.body, |out| {
            out.put_slice(self.method.as_str().as_bytes());
            out.put_u8(b' ');
            out.put_slice(self.uri.resolve(&self.headers.buf));
            out.put_slice(b" SIP/2.0\r\n");
        });
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        self.encode(&mut out);
        out.into()
    }

    /// The length of the wire form, without writing it (for the RFC 3261 §18.1.1 size rule
    /// a proxy applies to every request it forwards).
    pub fn encoded_len(&self) -> usize {
        let start = match self.start_line {
            Some((s, e)) => (e - s) as usize,
            None => {
                self.method.as_str().len()
                    + 1
                    + self.uri.resolve(&self.headers.buf).len()
                    + b" SIP/2.0\r\n".len()
            }
        };
        start + self.headers.encoded_len() + if self.lf_only { 1 } else { 2 } + self.body.len()
    }
}

impl Response {
    /// A response built locally, with no headers yet.
    pub fn new(status: u16, reason: &str) -> Response {
        Response {
            status,
            reason: Text::Owned(Bytes::copy_from_slice(reason.as_bytes())),
            start_line: None,
            headers: Headers::new(),
            lf_only: false,
            body: Bytes::new(),
        }
    }

    /// A response to `request` carrying its Via headers, From, To, Call-ID and CSeq
    /// (RFC 3261 §8.2.6.2). Add a To tag with [`Response::set_to_tag`] where needed.
    pub fn for_request(request: &Request, status: u16, reason: &str) -> Response {
        let mut r = Response::new(status, reason);
        let src = &request.headers;
        // The copied headers point into the request's receive buffer, shared, not copied.
        r.headers.buf = src.buf.clone();
        for e in &src.entries {
            if matches!(
                e.name,
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
            ) {
                r.headers.push_copy_of(src, e);
            }
        }
        if status >= 200 || request.method == Method::Invite {
            // Timestamp is echoed (RFC 3261 §8.2.6.1); only for the first response would do,
            // but echoing always is harmless.
            if let Some(ts) = src.get(HeaderName::Timestamp) {
                r.headers.push(HeaderName::Timestamp, Bytes::copy_from_slice(ts));
            }
        }
        r.headers.push(HeaderName::ContentLength, Bytes::from_static(b"0"));
        r
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase (may be empty).
    pub fn reason(&self) -> &str {
        std::str::from_utf8(self.reason.resolve(&self.headers.buf)).unwrap_or("")
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Sets the body with its Content-Type and keeps Content-Length right.
    pub fn set_body(&mut self, content_type: Option<&str>, body: Bytes) {
        set_body(&mut self.headers, &mut self.body, content_type, body);
    }

    /// Adds `;tag=` to the To header when it has none (RFC 3261 §8.2.6.2).
    pub fn set_to_tag(&mut self, tag: &str) {
        let Some(to) = self.headers.get(HeaderName::To) else {
            return;
        };
        let has_tag = std::str::from_utf8(to)
            .ok()
            .and_then(|t| NameAddr::parse(t).ok())
            .is_some_and(|t| t.tag().is_some());
        if !has_tag {
            let mut v = to.to_vec();
            v.extend_from_slice(b";tag=");
            v.extend_from_slice(tag.as_bytes());
            self.headers.set(HeaderName::To, v);
        }
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_parts(out, self.start_line, &self.headers, self.lf_only, &self.body, |out| {
            out.put_slice(b"SIP/2.0 ");
            match self.status {
                100..=999 => out.put_slice(&status_digits(self.status)),
                other => out.put_slice(other.to_string().as_bytes()),
            }
            out.put_u8(b' ');
            out.put_slice(self.reason.resolve(&self.headers.buf));
            out.put_slice(b"\r\n");
        });
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        self.encode(&mut out);
        out.into()
    }
}

/// A three-digit status code's digits, without formatting.
fn status_digits(status: u16) -> [u8; 3] {
    let d = |n: u16| b'0' + (n % 10) as u8;
    [d(status / 100), d(status / 10), d(status)]
}

/// Writes a message: the start line as received when it is unchanged (else `start_line`
/// writes it), the headers, the empty line and the body.
fn encode_parts(
    out: &mut Vec<u8>,
    raw_start: Option<(u32, u32)>,
    headers: &Headers,
    lf_only: bool,
    body: &[u8],
    start_line: impl FnOnce(&mut Vec<u8>),
) {
    out.reserve(64 + headers.encoded_len_hint() + body.len());
    match raw_start {
        Some((s, e)) => out.put_slice(&headers.buf[s as usize..e as usize]),
        None => start_line(out),
    }
    headers.encode(out);
    out.put_slice(if lf_only { b"\n" } else { b"\r\n" });
    out.put_slice(body);
}

fn set_body(headers: &mut Headers, slot: &mut Bytes, content_type: Option<&str>, body: Bytes) {
    match content_type {
        Some(ct) => headers.set(HeaderName::ContentType, Bytes::copy_from_slice(ct.as_bytes())),
        None => {
            headers.remove_all(HeaderName::ContentType);
        }
    }
    headers.set(HeaderName::ContentLength, body.len().to_string());
    *slot = body;
}

/// Typed access to the headers every SIP element uses.
impl Headers {
    fn text_of(&self, name: HeaderName) -> Result<&str, HeaderError> {
        let raw = self.get(name).ok_or(HeaderError::Missing(name))?;
        std::str::from_utf8(raw).map_err(|_| HeaderError::Malformed(name))
    }

    /// The first Via element: the previous hop (RFC 3261 §18.2.1, §17.2.3). Decoded once
    /// until the section changes.
    pub fn top_via(&self) -> Result<Via<'_>, HeaderError> {
        // The first Via header's value: where a kept top Via lies.
        let first = self.get(HeaderName::Via).and_then(|v| std::str::from_utf8(v).ok());
        if let (Some(Some(at)), Some(text)) = (self.top_via.get(), first)
            && let Some(via) = at.view(text)
        {
            return Ok(via);
        }
        let via = self.vias().next().ok_or(HeaderError::Missing(HeaderName::Via))?;
        if let (Ok(v), Some(text)) = (&via, first) {
            let _ = self.top_via.set(ViaAt::of(v, text));
        }
        via
    }

    /// Every Via element of every Via header, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, HeaderError>> {
        self.get_all(HeaderName::Via).flat_map(|raw| {
            // A value that is not UTF-8 yields one malformed element.
            let text = std::str::from_utf8(raw).unwrap_or("\u{0}");
            Via::parse_list(text).map(|v| v.map_err(|_| HeaderError::Malformed(HeaderName::Via)))
        })
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr<'_>, HeaderError> {
        let t = self.text_of(HeaderName::From)?;
        NameAddr::parse(t).map_err(|_| HeaderError::Malformed(HeaderName::From))
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr<'_>, HeaderError> {
        let t = self.text_of(HeaderName::To)?;
        NameAddr::parse(t).map_err(|_| HeaderError::Malformed(HeaderName::To))
    }

    /// The To tag, without decoding the To URI ([`NameAddr::tag_of`]).
    pub fn to_tag(&self) -> Result<Option<&str>, HeaderError> {
        let t = self.text_of(HeaderName::To)?;
        match self.to_tag.get() {
            Some(None) => return Ok(None),
            Some(Some(at)) if let Some(tag) = crate::uri::part(t, *at) => return Ok(Some(tag)),
            _ => {}
        }
        let tag = NameAddr::tag_of(t).map_err(|_| HeaderError::Malformed(HeaderName::To))?;
        let at = match tag {
            None => Some(None),
            Some(tag) => crate::uri::at(t, tag).map(Some),
        };
        if let Some(at) = at {
            let _ = self.to_tag.set(at);
        }
        Ok(tag)
    }

    /// The From tag, without decoding the From URI ([`NameAddr::tag_of`]).
    pub fn from_tag(&self) -> Result<Option<&str>, HeaderError> {
        let t = self.text_of(HeaderName::From)?;
        NameAddr::tag_of(t).map_err(|_| HeaderError::Malformed(HeaderName::From))
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&str, HeaderError> {
        self.text_of(HeaderName::CallId)
    }

    /// The CSeq.
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        let t = self.text_of(HeaderName::CSeq)?;
        CSeq::parse(t).map_err(|_| HeaderError::Malformed(HeaderName::CSeq))
    }

    /// Max-Forwards, `None` when absent (a proxy then adds 70, RFC 3261 §16.6 step 3).
    pub fn max_forwards(&self) -> Result<Option<u32>, HeaderError> {
        match self.text_of(HeaderName::MaxForwards) {
            Err(HeaderError::Missing(_)) => Ok(None),
            Err(e) => Err(e),
            Ok(t) => parse_number(t)
                .ok()
                .filter(|n| *n <= MAX_FORWARDS_LIMIT)
                .map(Some)
                .ok_or(HeaderError::Malformed(HeaderName::MaxForwards)),
        }
    }

    /// Content-Length, `None` when absent.
    pub fn content_length(&self) -> Result<Option<u32>, HeaderError> {
        match self.text_of(HeaderName::ContentLength) {
            Err(HeaderError::Missing(_)) => Ok(None),
            Err(e) => Err(e),
            Ok(t) => parse_number(t)
                .map(Some)
                .map_err(|_| HeaderError::Malformed(HeaderName::ContentLength)),
        }
    }

    /// Content-Type, `None` when absent.
    pub fn content_type(&self) -> Result<Option<MediaType<'_>>, HeaderError> {
        match self.text_of(HeaderName::ContentType) {
            Err(HeaderError::Missing(_)) => Ok(None),
            Err(e) => Err(e),
            Ok(t) => MediaType::parse(t)
                .map(Some)
                .map_err(|_| HeaderError::Malformed(HeaderName::ContentType)),
        }
    }

    /// Every element of every header called `name` decoded as a name-addr (Route,
    /// Record-Route, Path, P-Asserted-Identity, Geolocation).
    pub fn name_addrs(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<NameAddr<'_>, HeaderError>> {
        self.get_all(name).flat_map(move |raw| {
            let text = std::str::from_utf8(raw).unwrap_or("\u{0}");
            NameAddr::parse_list(text).map(move |v| v.map_err(|_| HeaderError::Malformed(name)))
        })
    }
}

// --- the parser ------------------------------------------------------------------------------

/// Finds the line starting at `pos`: returns (end of content, start of next line). A line ends
/// in CRLF or, tolerated, a bare LF.
#[inline]
fn find_line(b: &[u8], pos: usize) -> Option<(usize, usize)> {
    let nl = pos + memchr::memchr(b'\n', &b[pos..])?;
    let end = if nl > pos && b[nl - 1] == b'\r' { nl - 1 } else { nl };
    Some((end, nl + 1))
}

enum StartLine {
    Request { method: Method, uri: (usize, usize) },
    Response { status: u16, reason: (usize, usize) },
}

fn parse(buf: Bytes, framing: Framing) -> Result<Message, ParseError> {
    let b: &[u8] = &buf;
    // RFC 3261 §7.5: ignore empty lines before the start line.
    let mut pos = b
        .iter()
        .position(|c| !matches!(c, b'\r' | b'\n'))
        .ok_or_else(|| ParseError::new(MessageKind::Unknown, Invalid::Empty))?;
    let start_pos = pos;
    let Some((line_end, next)) = find_line(b, pos) else {
        return Err(ParseError::new(MessageKind::Unknown, Invalid::BadStartLine));
    };
    let (start, kind, deferred) = parse_start_line(b, pos, line_end)?;
    let start_line = (start_pos as u32, next as u32);
    pos = next;

    // Header lines.
    let mut entries: Vec<Entry> = Vec::with_capacity(20);
    let mut folded = false;
    let body_start;
    let mut lf_only = false;
    loop {
        if let Some(line) = plain_header_line(b, pos) {
            if entries.len() >= MAX_HEADERS {
                return Err(ParseError::new(kind, Invalid::TooManyHeaders));
            }
            entries.push(Entry {
                name: HeaderName::from_bytes(&b[pos..line.name_end]),
                name_text: Some(Piece::span(pos, line.name_end)),
                value: Piece::span(line.value.0, line.value.1),
                raw_line: Some((pos as u32, line.next as u32)),
            });
            pos = line.next;
            continue;
        }
        // Anything else — the empty line, a fold, a malformed line, the last line without a
        // line ending — takes the general path.
        let Some((end, next)) = find_line(b, pos) else {
            if framing == Framing::Datagram && pos < b.len() {
                // A last header line without a line ending and no empty line: tolerated. It
                // has no line ending to copy, so it prints in canonical form (with one).
                push_header(b, pos, b.len(), b.len(), &mut entries, &mut folded)
                    .map_err(|inv| ParseError::new(kind, inv))?;
                if let Some(last) = entries.last_mut() {
                    last.raw_line = None;
                }
            }
            body_start = b.len();
            break;
        };
        if end == pos {
            lf_only = end == next - 1;
            body_start = next;
            break;
        }
        if entries.len() >= MAX_HEADERS {
            return Err(ParseError::new(kind, Invalid::TooManyHeaders));
        }
        push_header(b, pos, end, next, &mut entries, &mut folded)
            .map_err(|inv| ParseError::new(kind, inv))?;
        pos = next;
    }
    let mut headers = Headers { buf: buf.clone(), entries, ..Headers::default() };
    if folded {
        for i in 0..headers.entries.len() {
            let v = headers.piece(headers.entries[i].value);
            if memchr::memchr(b'\n', v).is_some() {
                let unfolded = Bytes::from(text::trim_bytes(&text::unfold(v)).to_vec());
                headers.entries[i].value = headers.own(unfolded);
            }
        }
    }
    let mut checks = Checks::default();
    let verdict = check_headers(&headers, &mut checks);

    // The body (RFC 3261 §18.3).
    let rest = buf.len() - body_start;
    let body_verdict = match (checks.content_length, framing) {
        (None, Framing::Stream) => Err(Invalid::MissingContentLength),
        (None, Framing::Datagram) => Ok(rest),
        (Some(n), _) if n as usize > rest => Err(Invalid::BadContentLength),
        (Some(n), _) => Ok(n as usize),
    };
    let body_len = *body_verdict.as_ref().unwrap_or(&0);
    let body = buf.slice(body_start..body_start + body_len);

    let message = match start {
        StartLine::Request { method, uri } => Message::Request(Request {
            method,
            uri: Text::span(uri.0, uri.1),
            start_line: Some(start_line),
            headers,
            lf_only,
            body,
            uri_at: OnceLock::new(),
        }),
        StartLine::Response { status, reason } => Message::Response(Response {
            status,
            reason: Text::span(reason.0, reason.1),
            start_line: Some(start_line),
            headers,
            lf_only,
            body,
        }),
    };

    let mut invalid = deferred.err().or(verdict.err()).or(body_verdict.err());
    if let (None, Message::Request(r), Some(cseq_method)) =
        (&invalid, &message, &checks.cseq_method)
        && *cseq_method != r.method
    {
        invalid = Some(Invalid::CSeqMethodMismatch);
    }
    match invalid {
        None => Ok(message),
        Some(invalid) => {
            let partial = match message {
                Message::Request(r) if checks.has_via => Some(Box::new(r)),
                _ => None,
            };
            Err(ParseError { kind, invalid, partial })
        }
    }
}

/// Parses the start line; an error that still lets the headers be read (bad Request-URI,
/// unsupported version) is returned as the third element so the request can be answered.
fn parse_start_line(
    b: &[u8],
    pos: usize,
    end: usize,
) -> Result<(StartLine, MessageKind, Result<(), Invalid>), ParseError> {
    let line = &b[pos..end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let kind = MessageKind::Response;
        let bad = || ParseError::new(kind, Invalid::BadStartLine);
        let sp = memchr::memchr(b' ', line).ok_or_else(bad)?;
        let version_ok = version_is_2_0(&line[..sp]).map_err(|_| bad())?;
        // The status code runs to the next space (or the end of the line); it must be three
        // digits (RFC 4475 §3.1.2.19 `bigcode` sends ten).
        let rest = &line[sp + 1..];
        let code_len = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        let code = &rest[..code_len];
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::new(kind, Invalid::BadStatusCode));
        }
        let status = u16::from(code[0] - b'0') * 100
            + u16::from(code[1] - b'0') * 10
            + u16::from(code[2] - b'0');
        if !(100..=699).contains(&status) {
            return Err(ParseError::new(kind, Invalid::BadStatusCode));
        }
        let reason = match line.get(sp + 4) {
            None => (pos + sp + 4, pos + sp + 4),
            Some(b' ') => (pos + sp + 5, end),
            Some(_) => return Err(bad()),
        };
        if !version_ok {
            return Err(ParseError::new(kind, Invalid::UnsupportedVersion));
        }
        return Ok((StartLine::Response { status, reason }, kind, Ok(())));
    }
    let kind = MessageKind::Request;
    let bad = || ParseError::new(kind, Invalid::BadStartLine);
    let sp1 = memchr::memchr(b' ', line).ok_or_else(bad)?;
    let method = Method::from_bytes(&line[..sp1]).ok_or_else(|| {
        ParseError::new(kind, if sp1 == 0 { Invalid::BadStartLine } else { Invalid::BadMethod })
    })?;
    // From here on the line is known to be a request: a defect is reported once the headers
    // are read, so that the request can still be answered.
    let rest = &line[sp1 + 1..];
    let Some(sp2) = memchr::memrchr(b' ', rest) else {
        let uri = (pos + sp1 + 1, end);
        return Ok((StartLine::Request { method, uri }, kind, Err(Invalid::BadStartLine)));
    };
    let uri = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    let uri_span = (pos + sp1 + 1, pos + sp1 + 1 + sp2);
    let deferred = match version_is_2_0(version) {
        // Extra spaces between the elements (RFC 4475 §3.1.2.9 `lwsstart`) or after the
        // version (`trws`) break the request line itself; spaces inside the URI are a bad
        // Request-URI (`lwsruri`).
        _ if uri.is_empty() || uri.starts_with(b" ") || uri.ends_with(b" ") => {
            Err(Invalid::BadStartLine)
        }
        Err(()) => Err(Invalid::BadStartLine),
        Ok(false) => Err(Invalid::UnsupportedVersion),
        Ok(true) if crate::uri::sip_uri_plain_valid(uri) => Ok(()),
        Ok(true) => match std::str::from_utf8(uri) {
            Err(_) => Err(Invalid::BadRequestUri(UriError::IllegalCharacter)),
            // RFC 3261 §19.1.1 (table): URI headers are not allowed in a Request-URI
            // (RFC 4475 §3.1.2.11 `escruri`).
            Ok(u) => match Uri::parse(u) {
                Ok(Uri::Sip(sip)) if sip.headers.is_some() => {
                    Err(Invalid::BadRequestUri(UriError::IllegalCharacter))
                }
                Ok(_) => Ok(()),
                Err(e) => Err(Invalid::BadRequestUri(e)),
            },
        },
    };
    Ok((StartLine::Request { method, uri: uri_span }, kind, deferred))
}

/// `SIP/2.0` -> Ok(true); another well-formed version -> Ok(false); garbage -> Err.
fn version_is_2_0(v: &[u8]) -> Result<bool, ()> {
    if v == b"SIP/2.0" {
        return Ok(true);
    }
    if v.len() < 7 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return Err(());
    }
    let num = &v[4..];
    let dot = memchr::memchr(b'.', num).ok_or(())?;
    let (major, minor) = (&num[..dot], &num[dot + 1..]);
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if !digits(major) || !digits(minor) {
        return Err(());
    }
    Ok(major == b"2" && minor == b"0")
}

/// A header line read by [`plain_header_line`].
struct PlainLine {
    name_end: usize,
    /// The value, without the whitespace around it.
    value: (usize, usize),
    /// The start of the next line.
    next: usize,
}

/// Reads the header line at `pos` in one pass when it is the common kind: a token name,
/// optional whitespace, a colon, the value, and a line ending. Returns `None` for anything
/// else (the empty line, a fold, a malformed line, a last line without a line ending), which
/// [`push_header`] then reads exactly as before.
#[inline]
fn plain_header_line(b: &[u8], pos: usize) -> Option<PlainLine> {
    let rest = b.get(pos..)?;
    let name_len = text::token_end(rest, 0);
    if name_len == 0 {
        return None;
    }
    let colon = text::ws_end(rest, name_len);
    if rest.get(colon) != Some(&b':') {
        return None;
    }
    let vstart = text::ws_end(rest, colon + 1);
    let nl = vstart + text::find_lf(rest.get(vstart..)?)?;
    // `nl > 0`: the name is not empty.
    let mut vend = if rest[nl - 1] == b'\r' { nl - 1 } else { nl };
    while vend > vstart && text::is_ws(rest[vend - 1]) {
        vend -= 1;
    }
    Some(PlainLine {
        name_end: pos + name_len,
        value: (pos + vstart, pos + vend),
        next: pos + nl + 1,
    })
}

fn push_header(
    b: &[u8],
    pos: usize,
    end: usize,
    next: usize,
    entries: &mut Vec<Entry>,
    folded: &mut bool,
) -> Result<(), Invalid> {
    let line = &b[pos..end];
    if matches!(line[0], b' ' | b'\t') {
        // A fold: the value continues on this line (RFC 3261 §7.3.1).
        let last = entries.last_mut().ok_or(Invalid::BadHeaderLine)?;
        if text::trim_bytes(line).is_empty() {
            // Whitespace-only continuation adds nothing but must stay in the raw line.
        } else if let Piece::Span { end: value_end, .. } = &mut last.value {
            *value_end = (pos + trim_end_len(line)) as u32;
            *folded = true;
        }
        if let Some((_, raw_end)) = &mut last.raw_line {
            *raw_end = next as u32;
        }
        return Ok(());
    }
    // One pass: the name is a run of token bytes, then optional whitespace, then the colon.
    let name_end = line.iter().position(|&c| !text::is_token(c)).unwrap_or(line.len());
    let mut colon = name_end;
    while colon < line.len() && matches!(line[colon], b' ' | b'\t') {
        colon += 1;
    }
    if name_end == 0 || line.get(colon) != Some(&b':') {
        return Err(Invalid::BadHeaderLine);
    }
    let name_bytes = &line[..name_end];
    let mut vstart = colon + 1;
    while vstart < line.len() && matches!(line[vstart], b' ' | b'\t') {
        vstart += 1;
    }
    let vend = trim_end_len(line).max(vstart);
    entries.push(Entry {
        name: HeaderName::from_bytes(name_bytes),
        name_text: Some(Piece::span(pos, pos + name_end)),
        value: Piece::span(pos + vstart, pos + vend),
        raw_line: Some((pos as u32, next as u32)),
    });
    Ok(())
}

fn trim_end_len(line: &[u8]) -> usize {
    let mut n = line.len();
    while n > 0 && matches!(line[n - 1], b' ' | b'\t') {
        n -= 1;
    }
    n
}

#[derive(Default)]
struct Checks {
    content_length: Option<u32>,
    cseq_method: Option<Method>,
    /// A request with at least one Via line can be answered (over the flow it came on), even
    /// when that Via is malformed.
    has_via: bool,
}

/// Checks the mandatory headers and the ones every element relies on. The first defect found
/// is returned, in an order that names the most useful cause.
fn check_headers(h: &Headers, checks: &mut Checks) -> Result<(), Invalid> {
    let (mut from, mut to, mut call_id, mut cseq, mut max_fwd) = (None, None, None, None, None);
    let mut content_length: Option<&[u8]> = None;
    let mut via_count = 0;
    let mut dup: Option<HeaderName> = None;
    let mut cl_conflict = false;
    let mut bad_via = None;
    for e in &h.entries {
        let v = h.piece(e.value);
        let slot = match e.name {
            HeaderName::Via => {
                checks.has_via = true;
                via_count += 1;
                if Via::plain_valid(v) {
                    continue;
                }
                let mut elements = 0;
                let text = std::str::from_utf8(v).unwrap_or("\u{0}");
                for via in Via::parse_list(text) {
                    // The top Via, decoded here anyway: kept for `Headers::top_via`.
                    if let (1, 0, Ok(top)) = (via_count, elements, &via) {
                        let _ = h.top_via.set(ViaAt::of(top, text));
                    }
                    let ok = via.is_ok();
                    if !ok && bad_via.is_none() {
                        bad_via = Some(Invalid::BadHeader(HeaderName::Via));
                    }
                    elements += 1;
                }
                if elements == 0 && bad_via.is_none() {
                    bad_via = Some(Invalid::BadHeader(HeaderName::Via));
                }
                continue;
            }
            HeaderName::From => &mut from,
            HeaderName::To => &mut to,
            HeaderName::CallId => &mut call_id,
            HeaderName::CSeq => &mut cseq,
            HeaderName::MaxForwards => &mut max_fwd,
            HeaderName::ContentLength => {
                match content_length {
                    Some(prev) if prev != v => cl_conflict = true,
                    _ => content_length = Some(v),
                }
                continue;
            }
            _ => continue,
        };
        if slot.is_some() && dup.is_none() {
            dup = Some(e.name);
        }
        *slot = Some(v);
    }
    if let Some(cl) = content_length {
        match parse_number_bytes(cl).ok() {
            Some(n) if !cl_conflict => checks.content_length = Some(n),
            _ => return Err(Invalid::BadContentLength),
        }
    }
    let cseq = cseq.ok_or(Invalid::Missing(HeaderName::CSeq))?;
    let parsed = CSeq::parse_bytes(cseq).map_err(|_| Invalid::BadHeader(HeaderName::CSeq))?;
    checks.cseq_method = Some(parsed.method);
    if via_count == 0 {
        return Err(Invalid::Missing(HeaderName::Via));
    }
    let from = from.ok_or(Invalid::Missing(HeaderName::From))?;
    let to = to.ok_or(Invalid::Missing(HeaderName::To))?;
    let call_id = call_id.ok_or(Invalid::Missing(HeaderName::CallId))?;
    if let Some(name) = dup {
        return Err(Invalid::Duplicate(name));
    }
    if let Some(invalid) = bad_via {
        return Err(invalid);
    }
    for (value, name) in [(from, HeaderName::From), (to, HeaderName::To)] {
        if !NameAddr::plain_valid(value) {
            NameAddr::check(utf8(value, name)?).map_err(|_| Invalid::BadHeader(name))?;
        }
    }
    // No whitespace or control character (`c <= b' '` covers both but DEL). Folded over every
    // byte without an early exit, so that the compiler compares 16 bytes at a time.
    let bad_call_id = call_id.iter().fold(false, |bad, &c| bad | (c <= b' ') | (c == 0x7f));
    if call_id.is_empty() || bad_call_id {
        return Err(Invalid::BadHeader(HeaderName::CallId));
    }
    if let Some(mf) = max_fwd {
        let ok = parse_number_bytes(mf).is_ok_and(|n| n <= MAX_FORWARDS_LIMIT);
        if !ok {
            return Err(Invalid::BadHeader(HeaderName::MaxForwards));
        }
    }
    Ok(())
}

fn utf8(v: &[u8], name: HeaderName) -> Result<&str, Invalid> {
    std::str::from_utf8(v).map_err(|_| Invalid::BadHeader(name))
}
