//! Typed views of header values, decoded on demand from the raw text.
//!
//! Every view borrows the value it was decoded from and allocates nothing. Values reach these
//! decoders already unfolded (the message parser replaces folds) and as UTF-8 text.

use std::net::IpAddr;

use crate::method::Method;
use crate::text::{self, ByteSet, TOKEN_SET, is_token, parse_u32, quoted_end, split_commas, trim};
use crate::uri::{
    At, Host, HostAt, Params, Uri, UriError, at, host_plain_valid, part, port_plain_valid,
    split_hostport,
};

/// A malformed header value (the caller knows which header it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed header value")
    }
}

impl std::error::Error for Malformed {}

impl From<UriError> for Malformed {
    fn from(_: UriError) -> Malformed {
        Malformed
    }
}

/// One element of a Via header (RFC 3261 §20.42, §18.2.1; RFC 3581 rport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// The element exactly as written (without surrounding whitespace).
    pub raw: &'a str,
    /// `UDP`, `TCP`, `TLS`, `WS`, `WSS`, `SCTP` as written (compare case-insensitively).
    pub transport: &'a str,
    /// The sent-by host.
    pub host: Host<'a>,
    pub host_raw: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
}

/// Where the parts of a decoded Via element lie in its header value: what
/// [`crate::Headers::top_via`] keeps so that it decodes the top Via once per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ViaAt {
    raw: At,
    transport: At,
    host_raw: At,
    host: HostAt,
    port: Option<u16>,
    /// `None` for a Via without parameters.
    params: Option<At>,
}

impl ViaAt {
    /// Records where `via`'s parts lie in `value`, the header value it was decoded from;
    /// `None` when a part is not a slice of `value`.
    pub(crate) fn of(via: &Via<'_>, value: &str) -> Option<ViaAt> {
        let params = via.params.as_str();
        Some(ViaAt {
            raw: at(value, via.raw)?,
            transport: at(value, via.transport)?,
            host_raw: at(value, via.host_raw)?,
            host: HostAt::of(value, &via.host)?,
            port: via.port,
            params: if params.is_empty() { None } else { Some(at(value, params)?) },
        })
    }

    /// The Via again, from the same header value.
    pub(crate) fn view<'a>(&self, value: &'a str) -> Option<Via<'a>> {
        Some(Via {
            raw: part(value, self.raw)?,
            transport: part(value, self.transport)?,
            host: self.host.view(value)?,
            host_raw: part(value, self.host_raw)?,
            port: self.port,
            params: Params::new(match self.params {
                Some(r) => part(value, r)?,
                None => "",
            }),
        })
    }
}

impl<'a> Via<'a> {
    /// Parses one via-parm: `SIP / 2.0 / UDP host:port ;params`.
    pub fn parse(raw: &'a str) -> Result<Via<'a>, Malformed> {
        let raw = trim(raw);
        let (transport, rest) = match Via::fast_protocol(raw) {
            Some(split) => split,
            None => Via::slow_protocol(raw)?,
        };
        let (sent_by, params) = match text::find_byte(rest, b';') {
            Some(i) => (trim(&rest[..i]), &rest[i + 1..]),
            None => (trim(rest), ""),
        };
        // LWS is allowed around the colon of sent-by (RFC 3261 §25.1 uses `COLON`).
        let (host_raw, host, port) = if sent_by.bytes().any(text::is_ws) {
            let compact = sent_by.split_once(':').map(|(h, p)| (trim(h), trim(p)));
            match compact {
                Some((h, p)) if !h.starts_with('[') => {
                    let port = parse_u32(p).and_then(|n| u16::try_from(n).ok()).ok_or(Malformed)?;
                    (h, Host::parse(h)?, Some(port))
                }
                _ => return Err(Malformed),
            }
        } else {
            split_hostport(sent_by)?
        };
        let params = Params::new(params);
        for (name, value) in params.iter() {
            if !text::is_token_str(name) {
                return Err(Malformed);
            }
            if value.is_some_and(str::is_empty) {
                return Err(Malformed);
            }
        }
        Ok(Via { raw, transport, host, host_raw, port, params })
    }

    /// `SIP/2.0/UDP host...` written without any whitespace inside the protocol: the form
    /// every client sends, checked in one pass.
    fn fast_protocol(raw: &'a str) -> Option<(&'a str, &'a str)> {
        let b = raw.as_bytes();
        if b.len() < 9 || !b[..8].eq_ignore_ascii_case(b"SIP/2.0/") {
            return None;
        }
        let end = 8 + b[8..].iter().position(|&c| !text::is_token(c))?;
        if end == 8 || !text::is_ws(b[end]) {
            return None;
        }
        Some((&raw[8..end], raw[end..].trim_start_matches([' ', '\t'])))
    }

    /// The protocol with LWS around the slashes (RFC 3261 §25.1 `SLASH`), as RFC 4475
    /// `wsinv` writes it.
    fn slow_protocol(raw: &'a str) -> Result<(&'a str, &'a str), Malformed> {
        let mut rest = raw;
        let mut next_part = |last: bool| -> Result<&'a str, Malformed> {
            let s = rest.trim_start_matches([' ', '\t']);
            let end = if last {
                s.find([' ', '\t']).ok_or(Malformed)?
            } else {
                text::find_byte(s, b'/').ok_or(Malformed)?
            };
            let part = trim(&s[..end]);
            rest = if last { &s[end..] } else { &s[end + 1..] };
            Ok(part)
        };
        let name = next_part(false)?;
        let version = next_part(false)?;
        let transport = next_part(true)?;
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" || !text::is_token_str(transport) {
            return Err(Malformed);
        }
        Ok((transport, rest.trim_start_matches([' ', '\t'])))
    }

    /// Whether `value` is one via-parm in the form every client sends —
    /// `SIP/2.0/UDP host[:port]` and `;name[=value]` parameters of `token` characters, no IPv6
    /// reference, no quotes, no whitespace but after the protocol — that [`Via::parse_list`]
    /// accepts as one element, checked in one pass. `false` says only that [`Via::parse_list`]
    /// has to decide.
    pub(crate) fn plain_valid(value: &[u8]) -> bool {
        let Some((protocol, rest)) = value.split_first_chunk::<8>() else {
            return false;
        };
        // `SIP/2.0/` in any case: the 0x20 bit set on the three letters only.
        if u64::from_le_bytes(*protocol) | 0x20_20_20 != u64::from_le_bytes(*b"sip/2.0/") {
            return false;
        }
        let transport_end = text::token_end(rest, 0);
        let host_start = text::ws_end(rest, transport_end);
        if transport_end == 0 || host_start == transport_end {
            return false;
        }
        // sent-by: a host, an optional `:port`, then the parameters.
        let host_end = HOST_PLAIN.run_end(rest, host_start);
        let mut i = host_end;
        if rest.get(i) == Some(&b':') {
            i = DIGIT.run_end(rest, i + 1);
            if !port_plain_valid(&rest[host_end + 1..i]) {
                return false;
            }
        }
        host_plain_valid(&rest[host_start..host_end]) && plain_params(rest, i, &TOKEN_SET)
    }

    /// Parses every element of a (possibly comma-combined) Via header value.
    pub fn parse_list(value: &'a str) -> impl Iterator<Item = Result<Via<'a>, Malformed>> {
        split_commas(value).map(Via::parse)
    }

    /// The `branch` parameter (RFC 3261 §8.1.1.7).
    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// Whether the branch carries the RFC 3261 magic cookie `z9hG4bK` (§17.2.3).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }

    /// The `received` parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<IpAddr> {
        let v = self.params.get("received").flatten()?;
        v.trim_start_matches('[').trim_end_matches(']').parse().ok()
    }

    /// The `rport` parameter (RFC 3581): `Some(None)` when requested without a value,
    /// `Some(Some(port))` when filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        match self.params.get("rport")? {
            None => Some(None),
            Some(v) => Some(v.parse().ok()),
        }
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }
}

/// A name-addr or addr-spec with header parameters: From, To, Contact, Route, Record-Route,
/// P-Asserted-Identity, Geolocation, Refer-To, Path (RFC 3261 §20.10, §25.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written (quoted or a run of tokens), when present.
    pub display: Option<&'a str>,
    /// The URI text (without angle brackets).
    pub uri_raw: &'a str,
    /// Whether the URI was written inside `<...>`.
    pub bracketed: bool,
    pub uri: Uri<'a>,
    /// Header parameters after the URI (`tag`, `expires`, `q`, `+sip.instance`...).
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses `"Display" <uri>;params`, `Display <uri>;params`, `<uri>;params` or
    /// `uri;params` (in the last form the parameters belong to the header, RFC 3261 §20).
    pub fn parse(raw: &'a str) -> Result<NameAddr<'a>, Malformed> {
        let (display, uri_raw, bracketed, params) = NameAddr::split(raw)?;
        let uri = Uri::parse(uri_raw)?;
        Ok(NameAddr { display, uri_raw, bracketed, uri, params })
    }

    /// Checks the structure only — display name, brackets, parameters, and that the URI has a
    /// scheme and no illegal characters — without decoding the URI: what the message parser
    /// needs for From and To on every message, at a fraction of the cost.
    pub fn check(raw: &'a str) -> Result<(), Malformed> {
        let (_, uri_raw, _, _) = NameAddr::split(raw)?;
        let colon = text::find_byte(uri_raw, b':').ok_or(Malformed)?;
        let scheme_ok = uri_raw.as_bytes()[..colon].first().is_some_and(u8::is_ascii_alphabetic);
        if !scheme_ok || colon + 1 == uri_raw.len() || uri_raw.bytes().any(text::is_uri_illegal) {
            return Err(Malformed);
        }
        Ok(())
    }

    /// Whether `value` is a name-addr in the form clients send — an optional display name
    /// (tokens, or quoted without escapes), `<uri>` and `;name[=value]` parameters of `token`
    /// characters, all ASCII — that [`NameAddr::check`] accepts, checked in one pass. `false`
    /// says only that [`NameAddr::check`] has to decide.
    pub(crate) fn plain_valid(value: &[u8]) -> bool {
        let lt = if value.first() == Some(&b'"') {
            let close = QUOTED_PLAIN.run_end(value, 1);
            if value.get(close) != Some(&b'"') {
                return false;
            }
            text::ws_end(value, close + 1)
        } else {
            DISPLAY_PLAIN.run_end(value, 0)
        };
        if value.get(lt) != Some(&b'<') {
            return false;
        }
        // `check`: a scheme starting with a letter, a colon, something after it.
        let uri_start = lt + 1;
        let colon = URI_SCHEME_PLAIN.run_end(value, uri_start);
        if value.get(colon) != Some(&b':') || !value[uri_start].is_ascii_alphabetic() {
            return false;
        }
        let gt = URI_PLAIN.run_end(value, colon + 1);
        value.get(gt) == Some(&b'>')
            && gt > colon + 1
            && plain_params(value, gt + 1, &NAME_ADDR_PARAM_PLAIN)
    }

    #[allow(clippy::type_complexity)]
    fn split(raw: &'a str) -> Result<(Option<&'a str>, &'a str, bool, Params<'a>), Malformed> {
        let s = trim(raw);
        if s.is_empty() {
            return Err(Malformed);
        }
        let (display, after_display) = if s.starts_with('"') {
            let end = quoted_end(s).ok_or(Malformed)?;
            (Some(&s[..end]), s[end..].trim_start_matches([' ', '\t']))
        } else if let Some(lt) = text::find_byte(s, b'<') {
            let name = trim(&s[..lt]);
            // A display name without quotes is a run of tokens separated by whitespace.
            if !name.bytes().all(|b| is_token(b) || text::is_ws(b)) {
                return Err(Malformed);
            }
            ((!name.is_empty()).then_some(name), &s[lt..])
        } else {
            (None, s)
        };
        let (uri_raw, bracketed, params) = if let Some(inner) = after_display.strip_prefix('<') {
            let gt = text::find_byte(inner, b'>').ok_or(Malformed)?;
            let after = inner[gt + 1..].trim_start_matches([' ', '\t']);
            let params = match after {
                "" => "",
                p => p.strip_prefix(';').ok_or(Malformed)?,
            };
            (trim(&inner[..gt]), true, params)
        } else {
            // Without brackets the URI cannot hold `?`, `,` or `;` (RFC 3261 §20; RFC 4475
            // §3.1.2.13 `regbadct`): the `;` starts header parameters, the others are errors.
            if display.is_some() {
                return Err(Malformed);
            }
            let (uri, params) = match text::find_byte(after_display, b';') {
                Some(i) => (trim(&after_display[..i]), &after_display[i + 1..]),
                None => (after_display, ""),
            };
            if uri.contains(['?', ',']) {
                return Err(Malformed);
            }
            (uri, false, params)
        };
        let params = Params::new(params);
        for (name, value) in params.iter() {
            if !text::is_token_str(name) {
                return Err(Malformed);
            }
            if let Some(v) = value {
                let ok = if v.starts_with('"') {
                    quoted_end(v) == Some(v.len())
                } else {
                    !v.is_empty() && v.bytes().all(|b| is_token(b) || b"[]:".contains(&b))
                };
                if !ok {
                    return Err(Malformed);
                }
            }
        }
        Ok((display, uri_raw, bracketed, params))
    }

    /// Parses every element of a comma-separated list (Contact, Route, Record-Route...).
    pub fn parse_list(value: &'a str) -> impl Iterator<Item = Result<NameAddr<'a>, Malformed>> {
        split_commas(value).map(NameAddr::parse)
    }

    /// The `tag` parameter of a From or To value (RFC 3261 §19.3), from the structure alone:
    /// the URI is not decoded. Transaction matching and dialog checks ask for tags several
    /// times per message; decoding the URI each time was a tenth of a busy proxy's work.
    pub fn tag_of(raw: &'a str) -> Result<Option<&'a str>, Malformed> {
        let (_, _, _, params) = NameAddr::split(raw)?;
        Ok(params.get("tag").flatten())
    }

    /// The `tag` parameter (From/To, RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }

    /// The display name without quotes and escapes.
    pub fn display_unquoted(&self) -> Option<std::borrow::Cow<'a, str>> {
        self.display.map(text::unquote)
    }
}

/// A Contact header element: `*` or an address (RFC 3261 §20.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *` — remove every binding (RFC 3261 §10.2.2).
    Star,
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses every element of a Contact header value.
    pub fn parse_list(value: &'a str) -> impl Iterator<Item = Result<Contact<'a>, Malformed>> {
        split_commas(value).map(|item| {
            if item == "*" { Ok(Contact::Star) } else { NameAddr::parse(item).map(Contact::Addr) }
        })
    }
}

impl<'a> NameAddr<'a> {
    /// The `expires` parameter of a Contact (RFC 3261 §10.2.1.1).
    pub fn expires(&self) -> Option<u32> {
        self.params.get("expires").flatten().and_then(parse_u32)
    }

    /// The `q` parameter (0.0 to 1.0) in thousandths, for ordering bindings without floats.
    pub fn q_millis(&self) -> Option<u16> {
        let v = self.params.get("q").flatten()?;
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let int = parse_u32(int)?;
        let mut f = 0u32;
        for (i, d) in frac.bytes().chain(std::iter::repeat(b'0')).take(3).enumerate() {
            f += u32::from(d - b'0') * [100, 10, 1][i];
        }
        match (int, f) {
            (0, f) => u16::try_from(f).ok(),
            (1, 0) => Some(1000),
            _ => None,
        }
    }

    /// The `+sip.instance` parameter without its quotes and angle brackets (RFC 5626 §4.1).
    pub fn sip_instance(&self) -> Option<&'a str> {
        let v = self.params.get("+sip.instance").flatten()?;
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        Some(v.strip_prefix('<').and_then(|v| v.strip_suffix('>')).unwrap_or(v))
    }

    /// The `reg-id` parameter (RFC 5626 §4.2).
    pub fn reg_id(&self) -> Option<u32> {
        self.params.get("reg-id").flatten().and_then(parse_u32)
    }
}

/// Whether `b[i..]` is empty or `;name[=value]` parameters with a `token` name and a value
/// of bytes in `values`.
fn plain_params(b: &[u8], mut i: usize, values: &ByteSet) -> bool {
    while i < b.len() {
        if b[i] != b';' {
            return false;
        }
        let name_end = text::token_end(b, i + 1);
        if name_end == i + 1 {
            return false;
        }
        i = name_end;
        if b.get(i) == Some(&b'=') {
            let value_end = values.run_end(b, i + 1);
            if value_end == i + 1 {
                return false;
            }
            i = value_end;
        }
    }
    true
}

// Byte sets of the one-pass recognisers (`plain_valid`).

/// A hostname or IPv4 address, as [`host_plain_valid`] then checks it.
static HOST_PLAIN: ByteSet =
    text::byte_set!(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
static DIGIT: ByteSet = text::byte_set!(|b| b.is_ascii_digit());
/// Inside a quoted display name without escapes.
static QUOTED_PLAIN: ByteSet = text::byte_set!(|b| b != b'"' && b != b'\\');
/// An unquoted display name: tokens and whitespace.
static DISPLAY_PLAIN: ByteSet = text::byte_set!(|b| is_token(b) || text::is_ws(b));
/// A URI between angle brackets, and its scheme (up to the first colon).
static URI_PLAIN: ByteSet = text::byte_set!(|b| !text::is_uri_illegal(b));
static URI_SCHEME_PLAIN: ByteSet = text::byte_set!(|b| !text::is_uri_illegal(b) && b != b':');
/// A name-addr parameter value as [`NameAddr::split`] accepts it unquoted.
static NAME_ADDR_PARAM_PLAIN: ByteSet =
    text::byte_set!(|b| is_token(b) || matches!(b, b'[' | b']' | b':'));

/// CSeq: sequence number and method (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// Parses `4711 INVITE`. The number must be below 2^31 (RFC 3261 §8.1.1.5).
    pub fn parse(raw: &str) -> Result<CSeq, Malformed> {
        let s = trim(raw);
        let (num, method) = s.split_once([' ', '\t']).ok_or(Malformed)?;
        let seq = parse_u32(num).filter(|n| *n < 1 << 31).ok_or(Malformed)?;
        let method = Method::from_bytes(trim(method).as_bytes()).ok_or(Malformed)?;
        Ok(CSeq { seq, method })
    }

    /// [`CSeq::parse`] on bytes, without checking UTF-8 first: the number and the method
    /// token are ASCII, so any other byte makes it malformed all the same.
    pub(crate) fn parse_bytes(raw: &[u8]) -> Result<CSeq, Malformed> {
        let s = text::trim_ws(raw);
        let sp = s.iter().position(|&c| text::is_ws(c)).ok_or(Malformed)?;
        let seq = text::parse_u32_bytes(&s[..sp]).filter(|n| *n < 1 << 31).ok_or(Malformed)?;
        let method = Method::from_bytes(text::trim_ws(&s[sp + 1..])).ok_or(Malformed)?;
        Ok(CSeq { seq, method })
    }
}

/// A media type: Content-Type, or an Accept element (RFC 3261 §20.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    pub ty: &'a str,
    pub subtype: &'a str,
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    /// Parses `type/subtype;param=value`.
    pub fn parse(raw: &'a str) -> Result<MediaType<'a>, Malformed> {
        let s = trim(raw);
        let (mt, params) = s.split_once(';').unwrap_or((s, ""));
        let (ty, subtype) = mt.split_once('/').ok_or(Malformed)?;
        let (ty, subtype) = (trim(ty), trim(subtype));
        if !text::is_token_str(ty) || !text::is_token_str(subtype) {
            return Err(Malformed);
        }
        Ok(MediaType { ty, subtype, params: Params::new(params) })
    }

    /// Case-insensitive comparison with `type/subtype`.
    pub fn is(&self, ty: &str, subtype: &str) -> bool {
        self.ty.eq_ignore_ascii_case(ty) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// The `boundary` parameter of a multipart type, unquoted.
    pub fn boundary(&self) -> Option<&'a str> {
        let b = self.params.get("boundary").flatten()?;
        Some(b.strip_prefix('"').and_then(|b| b.strip_suffix('"')).unwrap_or(b))
    }
}

/// Parses a non-negative integer header: Content-Length, Max-Forwards, Expires, Min-Expires.
pub fn parse_number(raw: &str) -> Result<u32, Malformed> {
    parse_u32(trim(raw)).ok_or(Malformed)
}

/// [`parse_number`] on bytes: digits are ASCII, so any other byte is malformed all the same.
pub(crate) fn parse_number_bytes(raw: &[u8]) -> Result<u32, Malformed> {
    text::parse_u32_bytes(text::trim_ws(raw)).ok_or(Malformed)
}

/// Iterates the tokens of a comma-separated token list: Supported, Require, Proxy-Require,
/// Unsupported, Allow (RFC 3261 §20).
pub fn tokens(raw: &str) -> impl Iterator<Item = &str> {
    split_commas(raw)
}

/// One Resource-Priority value, `namespace.priority` (RFC 4412 §3.1), e.g. `esnet.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourcePriority<'a> {
    pub namespace: &'a str,
    pub priority: &'a str,
}

impl<'a> ResourcePriority<'a> {
    /// Parses a Resource-Priority header value into its values.
    pub fn parse_list(
        raw: &'a str,
    ) -> impl Iterator<Item = Result<ResourcePriority<'a>, Malformed>> {
        split_commas(raw).map(|item| {
            let (namespace, priority) = item.rsplit_once('.').ok_or(Malformed)?;
            if !text::is_token_str(namespace) || !text::is_token_str(priority) {
                return Err(Malformed);
            }
            Ok(ResourcePriority { namespace, priority })
        })
    }
}

/// A Reason header element (RFC 3326): `SIP ;cause=503 ;text="..."`, `Q.850 ;cause=16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason<'a> {
    pub protocol: &'a str,
    pub params: Params<'a>,
}

impl<'a> Reason<'a> {
    /// Parses one reason-value.
    pub fn parse(raw: &'a str) -> Result<Reason<'a>, Malformed> {
        let s = trim(raw);
        let (protocol, params) = s.split_once(';').unwrap_or((s, ""));
        let protocol = trim(protocol);
        if !text::is_token_str(protocol) {
            return Err(Malformed);
        }
        Ok(Reason { protocol, params: Params::new(params) })
    }

    /// The `cause` parameter.
    pub fn cause(&self) -> Option<u32> {
        self.params.get("cause").flatten().and_then(parse_u32)
    }

    /// The `text` parameter without quotes.
    pub fn text(&self) -> Option<std::borrow::Cow<'a, str>> {
        self.params.get("text").flatten().map(text::unquote)
    }
}

/// A Warning header element (RFC 3261 §20.43): `399 edge.example.com "text"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warning<'a> {
    pub code: u16,
    pub agent: &'a str,
    /// The quoted text, quotes included.
    pub text: &'a str,
}

impl<'a> Warning<'a> {
    /// Parses one warning-value.
    pub fn parse(raw: &'a str) -> Result<Warning<'a>, Malformed> {
        let s = trim(raw);
        let (code, rest) = s.split_once(' ').ok_or(Malformed)?;
        let (agent, text) = trim(rest).split_once(' ').ok_or(Malformed)?;
        let text = trim(text);
        let code = parse_u32(code).filter(|c| (300..400).contains(c)).ok_or(Malformed)?;
        if code_len(code) != 3 || quoted_end(text) != Some(text.len()) {
            return Err(Malformed);
        }
        Ok(Warning { code: code as u16, agent, text })
    }
}

const fn code_len(code: u32) -> u32 {
    if code >= 100 && code < 1000 { 3 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_forms() {
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport;received=192.0.2.9")
            .unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::V4("192.0.2.1".parse().unwrap()));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bK776"));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some("192.0.2.9".parse().unwrap()));

        let ws = Via::parse("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK5637").unwrap();
        assert_eq!(ws.transport, "WSS");
        assert_eq!(ws.port, None);

        let odd = Via::parse("SIP / 2.0 / UDP first.example.com: 4000;ttl=16 ;maddr=224.2.0.1 ;branch=z9hG4bKa7c6a8dlze.1").unwrap();
        assert_eq!(odd.host_raw, "first.example.com");
        assert_eq!(odd.port, Some(4000));
        assert_eq!(odd.maddr(), Some("224.2.0.1"));

        let v6 = Via::parse("SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111").unwrap();
        assert_eq!(v6.host, Host::V6("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v6.port, Some(5070));

        assert!(Via::parse("SIP/2.0 UDP host").is_err());
        assert!(Via::parse("SIP/3.0/UDP host").is_err());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
        assert!(Via::parse("SIP/2.0/UDP 2001:db8::1").is_err());

        let list: Vec<_> =
            Via::parse_list("SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b:5070;branch=z9hG4bK2")
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].branch(), Some("z9hG4bK2"));
    }

    #[test]
    fn name_addr_forms() {
        let a =
            NameAddr::parse(r#""Alice \"A\" Doe" <sip:alice@example.com>;tag=1928301774"#).unwrap();
        assert_eq!(a.display_unquoted().unwrap(), r#"Alice "A" Doe"#);
        assert_eq!(a.uri_raw, "sip:alice@example.com");
        assert_eq!(a.tag(), Some("1928301774"));

        let b = NameAddr::parse("Bob Smith <sip:bob@example.com;transport=tcp>").unwrap();
        assert_eq!(b.display, Some("Bob Smith"));
        assert_eq!(b.uri.as_sip().unwrap().transport(), Some("tcp"));
        assert_eq!(b.tag(), None);

        // addr-spec: parameters after the URI belong to the header.
        let c = NameAddr::parse("sip:carol@example.com;tag=abc").unwrap();
        assert_eq!(c.uri_raw, "sip:carol@example.com");
        assert_eq!(c.tag(), Some("abc"));
        assert!(!c.bracketed);

        let t = NameAddr::parse("<tel:+15550100123>").unwrap();
        assert_eq!(t.uri.user(), Some("+15550100123"));

        assert!(NameAddr::parse(r#""unterminated <sip:x@y>"#).is_err());
        assert!(NameAddr::parse("<sip:x@y").is_err());
        assert!(NameAddr::parse("Bad@Name <sip:x@y>").is_err());
        assert!(NameAddr::parse("").is_err());
        // Without brackets a URI cannot carry headers (RFC 3261 §20, RFC 4475 `regbadct`).
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:x%3E").is_err());
        assert!(NameAddr::parse("<sip:user@example.com?Route=%3Csip:x%3E>").is_ok());
    }

    #[test]
    fn browser_contact() {
        let raw = r#"<sip:k3l8v2x1@df7jal23ls0d.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance="<urn:uuid:4ac35b0c-7f60-4bb0-8a3b-3d2b3f2b0c1a>";expires=600"#;
        let list: Vec<_> = Contact::parse_list(raw).collect::<Result<_, _>>().unwrap();
        let Contact::Addr(c) = list[0] else { panic!("star") };
        assert_eq!(c.reg_id(), Some(1));
        assert_eq!(c.sip_instance(), Some("urn:uuid:4ac35b0c-7f60-4bb0-8a3b-3d2b3f2b0c1a"));
        assert_eq!(c.expires(), Some(600));
        assert!(c.params.contains("+sip.ice"));
        assert_eq!(Contact::parse_list("*").next(), Some(Ok(Contact::Star)));
    }

    #[test]
    fn q_values() {
        let q = |s: &str| NameAddr::parse(&format!("<sip:a@b>;q={s}")).unwrap().q_millis();
        assert_eq!(q("0.5"), Some(500));
        assert_eq!(q("1"), Some(1000));
        assert_eq!(q("1.000"), Some(1000));
        assert_eq!(q("0.125"), Some(125));
        assert_eq!(q("1.5"), None);
        assert_eq!(q("0.1234"), None);
    }

    #[test]
    fn cseq_and_numbers() {
        assert_eq!(CSeq::parse("4711 INVITE").unwrap(), CSeq { seq: 4711, method: Method::Invite });
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
        assert_eq!(parse_number(" 70 "), Ok(70));
        assert!(parse_number("-5").is_err());
    }

    #[test]
    fn media_types_priority_reason_warning() {
        let m = MediaType::parse(r#"multipart/mixed; boundary="boundary1""#).unwrap();
        assert!(m.is("Multipart", "MIXED"));
        assert_eq!(m.boundary(), Some("boundary1"));
        assert!(MediaType::parse("application").is_err());

        let rp: Vec<_> =
            ResourcePriority::parse_list("esnet.1, wps.3").collect::<Result<_, _>>().unwrap();
        assert_eq!(rp[0], ResourcePriority { namespace: "esnet", priority: "1" });
        assert!(ResourcePriority::parse_list("esnet").next().unwrap().is_err());

        let r = Reason::parse(r#"SIP ;cause=503 ;text="No trunk reachable""#).unwrap();
        assert_eq!(r.cause(), Some(503));
        assert_eq!(r.text().unwrap(), "No trunk reachable");

        let w = Warning::parse(r#"399 edge.example.com "no trunk""#).unwrap();
        assert_eq!(w.code, 399);
        assert!(Warning::parse(r#"200 x "y""#).is_err());
    }

    /// The one-pass checks of the message parser (`plain_valid`, `parse_bytes`) only say yes
    /// where the general decoders do, and say it for the forms clients send.
    mod plain_forms {
        use proptest::prelude::*;
        use proptest::sample::{Index, select};

        use super::*;
        use crate::uri::sip_uri_plain_valid;

        const VIAS: &[&str] = &[
            "SIP/2.0/UDP 203.0.113.5:5060;rport;branch=z9hG4bK3f8a9c21d7e04b6a",
            "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK5637",
            "sip/2.0/tcp host-1.example.com:5070;received=192.0.2.1;ttl=16",
            "SIP/2.0/TLS a_b.example;branch=z9hG4bK.x~y",
        ];
        const NAME_ADDRS: &[&str] = &[
            r#""WIRELESS CALLER" <sip:+14155550123@203.0.113.5;user=phone>;tag=as6d41f7e2"#,
            "<sip:+13125550100@198.51.100.10;user=phone>",
            "Bob Smith <sips:bob:pw@[2001:db8::1]:5061;transport=tls>;tag=a;x=[::1]:5",
            "<tel:+15550100123>;tag=1",
            r#"""<urn:service:sos>"#,
        ];
        const URIS: &[&str] = &[
            "sip:+13125550100@198.51.100.10;user=phone",
            "SIPS:alice:secret@example.com:5061;transport=tcp;lr",
            "sip:192.0.2.1:5060",
            "sip:user@host_name.example.;maddr=192.0.2.9",
        ];
        const CSEQS: &[&str] = &["102 INVITE", "  0007\tACK ", "2147483647 FOO.bar", "1 REGISTER"];
        /// Bytes that separate, quote, escape or break what the checks read.
        const MUTATIONS: &[u8] = b" \t;:=,\"<>@[]%?\\/._-~aZ09\r\n\x00\x7f\x80\xc3\xff";

        /// A base string with up to four bytes replaced, inserted or removed.
        fn mutated(bases: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
            let edit = (any::<Index>(), 0u8..3, select(MUTATIONS));
            (select(bases), proptest::collection::vec(edit, 0..5)).prop_map(|(base, edits)| {
                let mut v = base.as_bytes().to_vec();
                for (at, kind, byte) in edits {
                    let i = at.index(v.len() + 1);
                    match kind {
                        0 if i < v.len() => v[i] = byte,
                        1 => v.insert(i, byte),
                        _ if i < v.len() => {
                            v.remove(i);
                        }
                        _ => {}
                    }
                }
                v
            })
        }

        #[test]
        fn the_forms_clients_send_are_plain() {
            assert!(VIAS.iter().all(|v| Via::plain_valid(v.as_bytes())));
            assert!(URIS.iter().all(|u| sip_uri_plain_valid(u.as_bytes())));
            // IPv6 references and `tel:` are left to the general decoders.
            let plain: Vec<bool> =
                NAME_ADDRS.iter().map(|n| NameAddr::plain_valid(n.as_bytes())).collect();
            assert_eq!(plain, [true, true, true, true, true]);
            assert!(!Via::plain_valid(b"SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1"));
            assert!(!Via::plain_valid(b"SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b"));
            assert!(!sip_uri_plain_valid(b"sip:%61@x"));
            assert!(!sip_uri_plain_valid(b"sip:x@y?Route=z"));
            assert!(!sip_uri_plain_valid(b"sip:x@y:65536"));
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

            #[test]
            fn a_plain_via_is_one_good_element(v in mutated(VIAS)) {
                if Via::plain_valid(&v) {
                    let s = std::str::from_utf8(&v).expect("plain is ASCII");
                    let all: Vec<_> = Via::parse_list(s).collect();
                    prop_assert!(all.len() == 1 && all[0].is_ok(), "{s:?}: {all:?}");
                }
            }

            #[test]
            fn a_plain_name_addr_passes_check(v in mutated(NAME_ADDRS)) {
                if NameAddr::plain_valid(&v) {
                    let s = std::str::from_utf8(&v).expect("plain is ASCII");
                    prop_assert!(NameAddr::check(s).is_ok(), "{s:?}");
                }
            }

            #[test]
            fn a_plain_sip_uri_parses_without_headers(v in mutated(URIS)) {
                if sip_uri_plain_valid(&v) {
                    let s = std::str::from_utf8(&v).expect("plain is ASCII");
                    let ok = matches!(Uri::parse(s), Ok(Uri::Sip(u)) if u.headers.is_none());
                    prop_assert!(ok, "{s:?}: {:?}", Uri::parse(s));
                }
            }

            #[test]
            fn hosts_on_bytes_agree(h in "[0-9.]{0,17}|[0-9a-z._-]{0,12}|[0-9]{1,4}(\\.[0-9]{1,4}){2,4}") {
                prop_assert_eq!(host_plain_valid(h.as_bytes()), Host::parse(&h).is_ok(), "{}", h);
            }

            #[test]
            fn cseq_and_numbers_on_bytes_agree(v in mutated(CSEQS)) {
                let text = std::str::from_utf8(&v).ok();
                prop_assert_eq!(
                    CSeq::parse_bytes(&v),
                    text.map_or(Err(Malformed), CSeq::parse)
                );
                prop_assert_eq!(
                    parse_number_bytes(&v),
                    text.map_or(Err(Malformed), parse_number)
                );
            }
        }
    }
}
