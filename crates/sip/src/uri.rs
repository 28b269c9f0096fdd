//! URIs as SIP carries them: `sip:`/`sips:` (RFC 3261 §19.1), `tel:` (RFC 3966), `urn:`
//! (RFC 8141; e.g. `urn:service:sos`, RFC 5031) and any other absolute URI kept opaque.
//!
//! [`Uri`] is a borrowed view over the text of a Request-URI or a name-addr: parsing checks the
//! syntax and finds the parts, without allocating. Escaped characters stay escaped in the view;
//! [`SipUri::user_decoded`] decodes them when a caller needs the real value.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::text;

/// Why a URI was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriError {
    /// No `scheme:` prefix.
    NoScheme,
    /// Whitespace, angle brackets or control characters inside the URI.
    IllegalCharacter,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The host is empty or not a hostname, IPv4 address or bracketed IPv6 reference.
    BadHost,
    /// The port is not a number in 0..=65535.
    BadPort,
    /// A `tel:` number or a `urn:` name that does not follow its grammar.
    BadOpaquePart,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UriError::NoScheme => "no URI scheme",
            UriError::IllegalCharacter => "illegal character in URI",
            UriError::BadEscape => "bad escape in URI",
            UriError::BadHost => "bad host in URI",
            UriError::BadPort => "bad port in URI",
            UriError::BadOpaquePart => "malformed URI",
        })
    }
}

impl std::error::Error for UriError {}

/// A parsed URI, borrowing the text it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uri<'a> {
    Sip(SipUri<'a>),
    Tel(TelUri<'a>),
    Urn(UrnUri<'a>),
    /// Another absolute URI (`http:`, `mailto:`, `cid:`...): scheme checked, the rest opaque.
    Other {
        scheme: &'a str,
        raw: &'a str,
    },
}

impl<'a> Uri<'a> {
    /// Parses an absolute URI.
    pub fn parse(raw: &'a str) -> Result<Uri<'a>, UriError> {
        if URI_LEGAL.run_end(raw.as_bytes(), 0) != raw.len() {
            return Err(UriError::IllegalCharacter);
        }
        let colon = text::find_byte(raw, b':').ok_or(UriError::NoScheme)?;
        let scheme = &raw[..colon];
        let valid_scheme = scheme.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !valid_scheme {
            return Err(UriError::NoScheme);
        }
        let rest = &raw[colon + 1..];
        check_escapes(rest)?;
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_rest(raw, false, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_rest(raw, true, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            TelUri::parse_rest(raw, rest).map(Uri::Tel)
        } else if scheme.eq_ignore_ascii_case("urn") {
            UrnUri::parse_rest(raw, rest).map(Uri::Urn)
        } else if rest.is_empty() {
            Err(UriError::BadOpaquePart)
        } else {
            Ok(Uri::Other { scheme, raw })
        }
    }

    /// The URI exactly as it was written.
    pub fn as_str(&self) -> &'a str {
        match self {
            Uri::Sip(u) => u.raw,
            Uri::Tel(u) => u.raw,
            Uri::Urn(u) => u.raw,
            Uri::Other { raw, .. } => raw,
        }
    }

    /// The SIP URI, when this is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The user part for SIP URIs, the number for `tel:` URIs (still escaped).
    pub fn user(&self) -> Option<&'a str> {
        match self {
            Uri::Sip(u) => u.user,
            Uri::Tel(t) => Some(t.number),
            _ => None,
        }
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes that may appear in a URI (not [`text::is_uri_illegal`]), non-ASCII included.
static URI_LEGAL: text::ByteSet = text::byte_set!(|b| !text::is_uri_illegal(b)).with_non_ascii();

fn check_escapes(s: &str) -> Result<(), UriError> {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'%', &b[i..]) {
        let p = i + off;
        let ok = b.get(p + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(p + 2).is_some_and(u8::is_ascii_hexdigit);
        if !ok {
            return Err(UriError::BadEscape);
        }
        i = p + 3;
    }
    Ok(())
}

/// The host of a SIP URI or a Via.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// A hostname as written (compare case-insensitively).
    Domain(&'a str),
    V4(Ipv4Addr),
    /// An IPv6 reference; written with brackets (RFC 5118).
    V6(Ipv6Addr),
}

impl<'a> Host<'a> {
    /// Parses `hostname`, `IPv4address` or `[IPv6address]` (RFC 3261 §25.1, RFC 5118).
    pub fn parse(s: &'a str) -> Result<Host<'a>, UriError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(UriError::BadHost)?;
            return parse_ipv6(inner).map(Host::V6).ok_or(UriError::BadHost);
        }
        let b = s.as_bytes();
        if b.is_empty() || b.len() > 255 {
            return Err(UriError::BadHost);
        }
        match dotted_quad(b) {
            Some(quad) => quad.map(Host::V4).ok_or(UriError::BadHost),
            None if hostname_ok(b) => Ok(Host::Domain(s)),
            None => Err(UriError::BadHost),
        }
    }

    /// The address when the host is an IP literal.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::V4(a) => Some((*a).into()),
            Host::V6(a) => Some((*a).into()),
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Whether `b` (no IPv6 reference) is a host [`Host::parse`] accepts: the same rules, on bytes.
pub(crate) fn host_plain_valid(b: &[u8]) -> bool {
    if b.is_empty() || b.len() > 255 {
        return false;
    }
    match dotted_quad(b) {
        Some(quad) => quad.is_some(),
        None => hostname_ok(b),
    }
}

/// `None` when `b` holds a byte other than a digit or a dot (a hostname, maybe); otherwise the
/// `IPv4address` it is (RFC 3261 §25.1: four decimal octets of one to three digits), or
/// `Some(None)` when it is none. One pass.
fn dotted_quad(b: &[u8]) -> Option<Option<Ipv4Addr>> {
    let mut octets = [0u8; 4];
    let (mut dots, mut octet, mut digits) = (0usize, 0u32, 0);
    let mut ok = true;
    for &c in b {
        match c {
            b'0'..=b'9' => {
                if digits < 3 {
                    octet = octet * 10 + u32::from(c - b'0');
                }
                digits += 1;
            }
            b'.' => {
                ok &= (1..=3).contains(&digits) && octet <= 255 && dots < 3;
                if let Some(slot) = octets.get_mut(dots) {
                    *slot = octet as u8;
                }
                dots += 1;
                (octet, digits) = (0, 0);
            }
            _ => return None,
        }
    }
    ok &= dots == 3 && (1..=3).contains(&digits) && octet <= 255;
    octets[3] = octet as u8;
    Some(ok.then(|| Ipv4Addr::from(octets)))
}

/// Whether `raw` is a `sip:` or `sips:` URI in the plain form — no escapes, no `?` headers, no
/// IPv6 reference, no byte outside ASCII — that [`Uri::parse`] accepts, checked in one pass.
/// `false` says only that [`Uri::parse`] has to decide (and name the error).
pub(crate) fn sip_uri_plain_valid(raw: &[u8]) -> bool {
    let rest = match raw {
        [s, i, p, b':', rest @ ..] if eq_sip(*s, *i, *p) => rest,
        [s, i, p, x, b':', rest @ ..] if eq_sip(*s, *i, *p) && (*x | 0x20) == b's' => rest,
        _ => return false,
    };
    // One pass for what `Uri::parse` and `SipUri::parse_rest` look for: illegal bytes, escapes,
    // headers, IPv6 references, and the first `@`.
    let mut at = None;
    let mut i = 0;
    loop {
        i = URI_PLAIN.run_end(rest, i);
        match rest.get(i) {
            None => break,
            Some(b'@') if at.is_none() => at = Some(i),
            Some(b'@' | b':' | b';') => {}
            Some(_) => return false,
        }
        i += 1;
    }
    let after = match at {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    let hostport = match text::find(after, b';') {
        Some(semi) => &after[..semi],
        None => after,
    };
    let (host, port) = match text::find(hostport, b':') {
        Some(colon) => (&hostport[..colon], Some(&hostport[colon + 1..])),
        None => (hostport, None),
    };
    port.is_none_or(port_plain_valid) && host_plain_valid(host)
}

/// `S`, `I`, `P` in any case.
fn eq_sip(s: u8, i: u8, p: u8) -> bool {
    (s | 0x20) == b's' && (i | 0x20) == b'i' && (p | 0x20) == b'p'
}

/// A port of one to five digits that fits in 16 bits.
pub(crate) fn port_plain_valid(p: &[u8]) -> bool {
    (1..=5).contains(&p.len())
        && p.iter().all(u8::is_ascii_digit)
        && p.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) <= 65535
}

/// URI bytes [`sip_uri_plain_valid`] passes over: ASCII, not illegal in a URI, and none of
/// `%`, `?`, `@`, `:`, `;`, `[`, `]`.
static URI_PLAIN: text::ByteSet =
    text::byte_set!(|b| !text::is_uri_illegal(b)
        && !matches!(b, b'%' | b'?' | b'@' | b':' | b';' | b'[' | b']'));

/// An IPv6 address. RFC 3261's ABNF lets `::` be followed by a third colon before an embedded
/// IPv4 address (`2001:db8:::192.0.2.1`); RFC 5118 §4.10 asks receivers to tolerate that bug,
/// so the extra colon is dropped when that alone makes the address valid.
fn parse_ipv6(s: &str) -> Option<Ipv6Addr> {
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    let (head, tail) = s.split_once(":::")?;
    if !tail.contains('.') || tail.contains(':') {
        return None;
    }
    format!("{head}::{tail}").parse().ok()
}

/// `hostname = *( domainlabel "." ) toplabel [ "." ]`: labels of alphanumerics with inner
/// hyphens (underscores tolerated, as seen in the field), none empty.
fn hostname_ok(b: &[u8]) -> bool {
    let b = b.strip_suffix(b".").unwrap_or(b);
    let mut label_len = 0;
    let mut prev = b'.';
    for &c in b {
        match c {
            b'.' => {
                if label_len == 0 || prev == b'-' {
                    return false;
                }
                label_len = 0;
            }
            b'-' if label_len == 0 => return false,
            c if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' => label_len += 1,
            _ => return false,
        }
        prev = c;
    }
    label_len > 0 && prev != b'-'
}

/// Splits `host[:port]` (with a bracketed IPv6 reference) into the host as written, the parsed
/// host and the port.
pub(crate) fn split_hostport(s: &str) -> Result<(&str, Host<'_>, Option<u16>), UriError> {
    let (host, port) = if s.starts_with('[') {
        let close = text::find_byte(s, b']').ok_or(UriError::BadHost)?;
        match &s[close + 1..] {
            "" => (&s[..=close], None),
            rest => (&s[..=close], Some(rest.strip_prefix(':').ok_or(UriError::BadPort)?)),
        }
    } else {
        match text::split_byte(s, b':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => {
            let n = text::parse_u32(p).ok_or(UriError::BadPort)?;
            Some(u16::try_from(n).map_err(|_| UriError::BadPort)?)
        }
    };
    Ok((host, Host::parse(host)?, port))
}

/// A `sip:` or `sips:` URI (RFC 3261 §19.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    raw: &'a str,
    /// `sips:` (RFC 3261 §19.1.1, §26.2.2).
    pub secure: bool,
    /// The user part, still escaped; `None` when the URI has no `user@`.
    pub user: Option<&'a str>,
    /// The password of `user:password@` (deprecated, but parsed).
    pub password: Option<&'a str>,
    pub host: Host<'a>,
    /// The text of the host as written (for a verbatim copy).
    pub host_raw: &'a str,
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`).
    pub params: Params<'a>,
    /// URI headers after `?`, raw (`a=b&c=d`).
    pub headers: Option<&'a str>,
}

impl<'a> SipUri<'a> {
    /// Parses a SIP or SIPS URI.
    pub fn parse(raw: &'a str) -> Result<SipUri<'a>, UriError> {
        match Uri::parse(raw)? {
            Uri::Sip(u) => Ok(u),
            _ => Err(UriError::NoScheme),
        }
    }

    fn parse_rest(raw: &'a str, secure: bool, rest: &'a str) -> Result<SipUri<'a>, UriError> {
        let (userinfo, after) = match text::find_byte(rest, b'@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => match text::split_byte(ui, b':') {
                Some((u, p)) => (Some(u), Some(p)),
                None => (Some(ui), None),
            },
        };
        let (before_headers, headers) = match text::split_byte(after, b'?') {
            Some((b, h)) => (b, Some(h)),
            None => (after, None),
        };
        let (hostport, params) = match text::split_byte(before_headers, b';') {
            Some((hp, p)) => (hp, p),
            None => (before_headers, ""),
        };
        let (host_raw, host, port) = split_hostport(hostport)?;
        Ok(SipUri {
            raw,
            secure,
            user,
            password,
            host,
            host_raw,
            port,
            params: Params::new(params),
            headers,
        })
    }

    /// The URI exactly as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The user part with `%XX` escapes decoded.
    pub fn user_decoded(&self) -> Option<Cow<'a, [u8]>> {
        self.user.and_then(text::percent_decode)
    }

    /// The `transport` parameter, lower-cased by the caller's comparison.
    pub fn transport(&self) -> Option<&'a str> {
        self.params.get("transport").flatten()
    }

    /// Whether the URI carries the `lr` parameter (a loose router, RFC 3261 §16.4).
    pub fn is_loose_router(&self) -> bool {
        self.params.contains("lr")
    }
}

/// A `tel:` URI (RFC 3966).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelUri<'a> {
    raw: &'a str,
    /// The number with its visual separators, e.g. `+1-555-0100` or `911`.
    pub number: &'a str,
    pub params: Params<'a>,
}

impl<'a> TelUri<'a> {
    fn parse_rest(raw: &'a str, rest: &'a str) -> Result<TelUri<'a>, UriError> {
        let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
        let digits = number.strip_prefix('+').unwrap_or(number);
        let ok = !digits.is_empty()
            && digits.bytes().all(|b| {
                b.is_ascii_hexdigit() || matches!(b, b'*' | b'#' | b'-' | b'.' | b'(' | b')')
            });
        if !ok {
            return Err(UriError::BadOpaquePart);
        }
        Ok(TelUri { raw, number, params: Params::new(params) })
    }

    /// The URI exactly as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// Whether the number is global (E.164 with a leading `+`).
    pub fn is_global(&self) -> bool {
        self.number.starts_with('+')
    }
}

/// A `urn:` URI (RFC 8141), e.g. `urn:service:sos.fire` (RFC 5031).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrnUri<'a> {
    raw: &'a str,
    /// Namespace identifier (`service`).
    pub nid: &'a str,
    /// Namespace-specific string (`sos.fire`).
    pub nss: &'a str,
}

impl<'a> UrnUri<'a> {
    fn parse_rest(raw: &'a str, rest: &'a str) -> Result<UrnUri<'a>, UriError> {
        let (nid, nss) = rest.split_once(':').ok_or(UriError::BadOpaquePart)?;
        let nid_ok = !nid.is_empty()
            && nid.len() <= 32
            && nid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !nid_ok || nss.is_empty() {
            return Err(UriError::BadOpaquePart);
        }
        Ok(UrnUri { raw, nid, nss })
    }

    /// The URI exactly as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// For `urn:service:` URIs (RFC 5031), the service (`sos`, `sos.police`...).
    pub fn service(&self) -> Option<&'a str> {
        self.nid.eq_ignore_ascii_case("service").then_some(self.nss)
    }
}

/// A `;`-separated parameter list (`name[=value]`), borrowed and decoded lazily. Works for URI
/// parameters and header parameters alike (quoted values may contain `;`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a>(&'a str);

impl<'a> Params<'a> {
    /// Wraps the text after the first `;` (without it).
    pub fn new(raw: &'a str) -> Params<'a> {
        Params(raw)
    }

    /// The raw text, without the leading `;`.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// Iterates `(name, value)`; `value` is `None` for a bare flag (`lr`). Values are returned
    /// as written (quoted strings keep their quotes).
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            loop {
                if rest.is_empty() {
                    return None;
                }
                let end = param_end(rest);
                let item = text::trim(&rest[..end]);
                rest = if end < rest.len() { &rest[end + 1..] } else { "" };
                if item.is_empty() {
                    continue;
                }
                return Some(match text::split_byte(item, b'=') {
                    Some((n, v)) => (text::trim(n), Some(text::trim(v))),
                    None => (item, None),
                });
            }
        })
    }

    /// The first parameter named `name` (case-insensitive): `Some(None)` for a flag,
    /// `Some(Some(value))` for a value, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// Whether a parameter named `name` is present (flag or value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Parameter bytes that neither end a parameter nor start or escape a quoted string.
static PARAM_PLAIN: text::ByteSet =
    text::byte_set!(|b| !matches!(b, b';' | b'"' | b'\\')).with_non_ascii();

/// Offset of the next `;` that is not inside a quoted string.
fn param_end(s: &str) -> usize {
    let b = s.as_bytes();
    // Most parameters hold no quote: skip to the first `;`, `"` or `\\` in one run.
    let mut i = PARAM_PLAIN.run_end(b, 0);
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b';' if !quoted => return i,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// Where a part of a decoded view lies in the text it was decoded from (start, end): what a
/// message keeps instead of the borrowed view, so that it decodes a header once.
pub(crate) type At = (u32, u32);

/// The range of `part` within `base`; `None` when `part` is not a slice of `base`.
pub(crate) fn at(base: &str, part: &str) -> Option<At> {
    let start = (part.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= base.len()).then_some((u32::try_from(start).ok()?, u32::try_from(end).ok()?))
}

/// The range of `part` within `base`, with `None` for an empty part (an empty slice need not
/// point into `base`).
fn at_or_empty(base: &str, part: &str) -> Option<Option<At>> {
    if part.is_empty() { Some(None) } else { at(base, part).map(Some) }
}

/// The text at `at` in `base`; `None` when `base` is not the text the range was taken from.
pub(crate) fn part(base: &str, (start, end): At) -> Option<&str> {
    base.get(start as usize..end as usize)
}

/// A [`Host`] without the borrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostAt {
    Domain(At),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl HostAt {
    pub(crate) fn of(base: &str, host: &Host<'_>) -> Option<HostAt> {
        Some(match *host {
            Host::Domain(d) => HostAt::Domain(at(base, d)?),
            Host::V4(a) => HostAt::V4(a),
            Host::V6(a) => HostAt::V6(a),
        })
    }

    pub(crate) fn view<'a>(&self, base: &'a str) -> Option<Host<'a>> {
        Some(match *self {
            HostAt::Domain(r) => Host::Domain(part(base, r)?),
            HostAt::V4(a) => Host::V4(a),
            HostAt::V6(a) => Host::V6(a),
        })
    }
}

/// A decoded [`Uri`] without the borrow: where its parts lie in the URI's text. What
/// [`crate::Request::uri`] keeps, so that the Request-URI is decoded once per request although
/// the proxy rules and the core ask for it about ten times per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UriAt {
    Sip {
        secure: bool,
        user: Option<At>,
        password: Option<At>,
        host: HostAt,
        host_raw: At,
        port: Option<u16>,
        params: Option<At>,
        headers: Option<At>,
    },
    Tel {
        number: At,
        params: Option<At>,
    },
    Urn {
        nid: At,
        nss: At,
    },
    Other {
        scheme: At,
    },
}

impl UriAt {
    /// Records where the parts of `uri` lie in `raw`, the text it was decoded from; `None` when
    /// a part is not a slice of `raw`.
    pub(crate) fn of(uri: &Uri<'_>, raw: &str) -> Option<UriAt> {
        let opt = |p: Option<&str>| -> Option<Option<At>> {
            match p {
                None => Some(None),
                Some(p) => at(raw, p).map(Some),
            }
        };
        Some(match uri {
            Uri::Sip(u) => UriAt::Sip {
                secure: u.secure,
                user: opt(u.user)?,
                password: opt(u.password)?,
                host: HostAt::of(raw, &u.host)?,
                host_raw: at(raw, u.host_raw)?,
                port: u.port,
                params: at_or_empty(raw, u.params.as_str())?,
                headers: opt(u.headers)?,
            },
            Uri::Tel(t) => UriAt::Tel {
                number: at(raw, t.number)?,
                params: at_or_empty(raw, t.params.as_str())?,
            },
            Uri::Urn(u) => UriAt::Urn { nid: at(raw, u.nid)?, nss: at(raw, u.nss)? },
            Uri::Other { scheme, .. } => UriAt::Other { scheme: at(raw, scheme)? },
        })
    }

    /// The URI again, from the same text; `None` when `raw` is not that text.
    pub(crate) fn view<'a>(&self, raw: &'a str) -> Option<Uri<'a>> {
        let opt = |r: Option<At>| -> Option<Option<&'a str>> {
            match r {
                None => Some(None),
                Some(r) => part(raw, r).map(Some),
            }
        };
        let params = |r: Option<At>| -> Option<Params<'a>> {
            Some(Params::new(match r {
                None => "",
                Some(r) => part(raw, r)?,
            }))
        };
        Some(match *self {
            UriAt::Sip { secure, user, password, host, host_raw, port, params: p, headers } => {
                Uri::Sip(SipUri {
                    raw,
                    secure,
                    user: opt(user)?,
                    password: opt(password)?,
                    host: host.view(raw)?,
                    host_raw: part(raw, host_raw)?,
                    port,
                    params: params(p)?,
                    headers: opt(headers)?,
                })
            }
            UriAt::Tel { number, params: p } => {
                Uri::Tel(TelUri { raw, number: part(raw, number)?, params: params(p)? })
            }
            UriAt::Urn { nid, nss } => {
                Uri::Urn(UrnUri { raw, nid: part(raw, nid)?, nss: part(raw, nss)? })
            }
            UriAt::Other { scheme } => Uri::Other { scheme: part(raw, scheme)?, raw },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_at_gives_back_the_same_view() {
        for raw in [
            "sip:alice:pw@example.com:5070;transport=TCP;lr?subject=x&priority=1",
            "sips:[2001:db8::1]:5061",
            "sip:192.0.2.7",
            "sip:+15550100@gw.example.net;user=phone",
            "tel:+1-555-0100;phone-context=example.com",
            "tel:911",
            "urn:service:sos",
            "mailto:agent@example.com",
        ] {
            let uri = Uri::parse(raw).unwrap();
            let at = UriAt::of(&uri, raw).unwrap();
            assert_eq!(at.view(raw), Some(uri), "{raw}");
            // Another text with the same parts elsewhere gives another (checked) view or none.
            assert_ne!(at.view("sip:x"), Some(uri), "{raw}");
        }
    }

    #[test]
    fn sip_uri_parts() {
        let u =
            SipUri::parse("sip:alice:pw@example.com:5070;transport=TCP;lr?subject=x&priority=1")
                .unwrap();
        assert!(!u.secure);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("pw"));
        assert_eq!(u.host, Host::Domain("example.com"));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport(), Some("TCP"));
        assert!(u.is_loose_router());
        assert_eq!(u.headers, Some("subject=x&priority=1"));
    }

    #[test]
    fn ipv6_references() {
        let u = SipUri::parse("sips:[2001:db8::10]:5061;maddr=[2001:db8::1]").unwrap();
        assert!(u.secure);
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.host_raw, "[2001:db8::10]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.host.to_string(), "[2001:db8::10]");
        // RFC 5118 §4.2: an unbracketed IPv6 address is not a valid host.
        assert_eq!(SipUri::parse("sip:user@2001:db8::10").unwrap_err(), UriError::BadPort);
        assert!(SipUri::parse("sip:[2001:db8::10").is_err());
        // RFC 5118 §4.10: the ABNF bug's extra colon is tolerated, other triple colons are not.
        assert_eq!(
            Host::parse("[2001:db8:::192.0.2.1]"),
            Ok(Host::V6("2001:db8::192.0.2.1".parse().unwrap()))
        );
        assert!(Host::parse("[2001:db8:::1]").is_err());
        // RFC 5118 §4.5: IPv4-mapped forms are fine.
        assert!(SipUri::parse("sip:[::ffff:192.0.2.1]").is_ok());
    }

    #[test]
    fn escapes_and_browser_users() {
        let u = SipUri::parse("sip:sip%3Auser%40example.com@example.com").unwrap();
        assert_eq!(&*u.user_decoded().unwrap(), b"sip:user@example.com");
        assert_eq!(Uri::parse("sip:a%zz@x").unwrap_err(), UriError::BadEscape);
        let c = SipUri::parse("sip:k3l8v2x1@df7jal23ls0d.invalid;transport=ws").unwrap();
        assert_eq!(c.host, Host::Domain("df7jal23ls0d.invalid"));
        assert_eq!(c.transport(), Some("ws"));
    }

    #[test]
    fn tel_urn_other() {
        let Uri::Tel(t) = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap()
        else {
            panic!("tel")
        };
        assert!(t.is_global());
        assert_eq!(t.params.get("phone-context"), Some(Some("example.com")));
        assert!(matches!(Uri::parse("tel:911"), Ok(Uri::Tel(t)) if t.number == "911"));
        let Uri::Urn(u) = Uri::parse("urn:service:sos.fire").unwrap() else { panic!("urn") };
        assert_eq!(u.service(), Some("sos.fire"));
        assert!(matches!(Uri::parse("cid:target123@atlanta.example.com"), Ok(Uri::Other { .. })));
        assert!(Uri::parse("tel:abc-xyz").is_err());
    }

    #[test]
    fn illegal_uris() {
        assert_eq!(Uri::parse("sip:a b@x").unwrap_err(), UriError::IllegalCharacter);
        assert_eq!(Uri::parse("<sip:x>").unwrap_err(), UriError::IllegalCharacter);
        assert_eq!(Uri::parse("example.com").unwrap_err(), UriError::NoScheme);
        assert_eq!(Uri::parse("sip:x@").unwrap_err(), UriError::BadHost);
        assert_eq!(Uri::parse("sip:x@h:99999").unwrap_err(), UriError::BadPort);
        assert_eq!(Uri::parse("sip:x@-bad-.com").unwrap_err(), UriError::BadHost);
    }

    /// The reference for `dotted_quad`: four decimal octets of at most three digits, split
    /// at the dots.
    fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
        let mut octets = [0u8; 4];
        let mut parts = 0;
        let mut value: u16 = 0;
        let mut digits = 0;
        for i in 0..=b.len() {
            let c = b.get(i).copied().unwrap_or(b'.');
            if c == b'.' {
                if digits == 0 || parts == 4 {
                    return None;
                }
                octets[parts] = u8::try_from(value).ok()?;
                parts += 1;
                value = 0;
                digits = 0;
            } else {
                digits += 1;
                if digits > 3 {
                    return None;
                }
                value = value * 10 + u16::from(c - b'0');
            }
        }
        (parts == 4).then(|| Ipv4Addr::from(octets))
    }

    #[test]
    fn dotted_quads_in_one_pass() {
        let mut cases: Vec<String> = vec![
            "192.0.2.1".into(),
            "0.0.0.0".into(),
            "255.255.255.255".into(),
            "256.1.1.1".into(),
            "1.2.3".into(),
            "1.2.3.4.5".into(),
            "1..2.3".into(),
            ".1.2.3".into(),
            "1.2.3.".into(),
            "0001.2.3.4".into(),
            "999.2.3.4".into(),
            "".into(),
            "...".into(),
        ];
        // Every string of up to six bytes over `1`, `9`, `5` and `.`, and longer digit runs.
        let alphabet = [b'1', b'9', b'5', b'.'];
        for len in 0..=6u32 {
            for n in 0..4usize.pow(len) {
                let s: Vec<u8> = (0..len).map(|i| alphabet[n / 4usize.pow(i) % 4]).collect();
                cases.push(String::from_utf8(s).expect("ASCII"));
            }
        }
        for s in ["1234.5.6.7", "12.345.6.7", "1.2.3.4567", "25.25.25.2555"] {
            cases.push(s.into());
        }
        for s in cases {
            assert_eq!(dotted_quad(s.as_bytes()), Some(parse_ipv4(s.as_bytes())), "{s}");
        }
        assert_eq!(dotted_quad(b"1.2.3.a"), None);
    }

    #[test]
    fn params_are_quote_aware() {
        let p = Params::new(r#"expires=600;+sip.instance="<urn:uuid:a;b>";reg-id=1;ob"#);
        assert_eq!(p.get("+sip.instance"), Some(Some(r#""<urn:uuid:a;b>""#)));
        assert_eq!(p.get("REG-ID"), Some(Some("1")));
        assert_eq!(p.get("ob"), Some(None));
        assert_eq!(p.get("q"), None);
    }
}
