//! Request validation (RFC 3261 §16.3), the branch parameter with its loop-detection hash
//! (§16.6 step 8, RFC 5393) and the receive-side Via fix-up (§18.2.1, RFC 3581 §4).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use sha2::{Digest, Sha256};

use crate::header::HeaderName;
use crate::header::typed::{Via, tokens};
use crate::message::Request;
use crate::method::Method;
use crate::uri::Uri;

use super::local::{HostKey, LocalIdentity};
use super::{Reject, edit};

/// Max-Forwards given to a forwarded request that carried none (RFC 3261 §16.6 step 3).
pub const DEFAULT_MAX_FORWARDS: u32 = 70;

/// What validation decided for a request that may go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it (after route preprocessing and target selection).
    Forward(Admitted),
    /// An OPTIONS addressed to this proxy arrived with Max-Forwards 0: it must not be forwarded,
    /// and the proxy may answer it as a UAS (RFC 3261 §16.3 step 3, §11). RFC 3261 allows this
    /// for any OPTIONS; lifeline only does it for one addressed to itself
    /// ([`LocalIdentity::is_addressed_to_me`]), so as not to speak for a user it is not.
    AnswerOptions,
}

/// A request admitted for forwarding, with what forwarding needs to remember of it as it
/// arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The Max-Forwards for every forwarded copy: one less than received, or 70 when absent
    /// (RFC 3261 §16.6 step 3).
    pub max_forwards: u32,
    /// The Via list already holds one of our sent-bys, with another hash: the request is
    /// legitimately spiralling through this proxy (RFC 3261 §16.3 step 4).
    pub spiral: bool,
    pub(crate) seed: BranchSeed,
}

impl Admitted {
    /// The branch of the client transaction for fork `index` (0 for the first target; a new
    /// index for every further target, serial or parallel).
    pub fn branch(&self, index: u32) -> Branch {
        Branch::new(self.seed, index)
    }
}

/// Validates a request before proxying it (RFC 3261 §16.3): URI scheme (step 2),
/// Max-Forwards (step 3), loop detection (step 4), Proxy-Require (step 5). Syntax (step 1) was
/// checked by the parser; authorization (step 6) is the caller's.
///
/// Call it on the request as it arrived (before [`super::preprocess_routes`]): the loop hash
/// covers the Request-URI and Route set as received.
pub fn validate(request: &Request, local: &LocalIdentity) -> Result<Verdict, Reject> {
    // Step 2: a scheme the proxy understands. `tel:` and `urn:` (RFC 5031 `urn:service:sos`)
    // are routed by the edge; emergency calls must never die here.
    match request.uri() {
        Ok(Uri::Sip(_) | Uri::Tel(_) | Uri::Urn(_)) => {}
        Ok(Uri::Other { .. }) => return Err(Reject::UnsupportedUriScheme),
        Err(_) => return Err(Reject::BadRequestUri),
    }

    // Step 3.
    let max_forwards = match request
        .headers()
        .max_forwards()
        .map_err(|_| Reject::Malformed(HeaderName::MaxForwards))?
    {
        None => DEFAULT_MAX_FORWARDS,
        Some(0) => {
            return if *request.method() == Method::Options && local.is_addressed_to_me(request) {
                Ok(Verdict::AnswerOptions)
            } else {
                Err(Reject::TooManyHops)
            };
        }
        Some(n) => n - 1,
    };

    // Step 4: a Via of ours whose branch carries this request's loop hash means the request
    // came back unchanged: a loop. Ours with another hash: a spiral.
    let seed = BranchSeed::of(request)?;
    let mut spiral = false;
    for via in request.headers().vias() {
        let via = via.map_err(|_| Reject::Malformed(HeaderName::Via))?;
        if !local.is_my_sent_by(&via) {
            continue;
        }
        match via.branch().and_then(Branch::parse) {
            Some(b) if b.seed.loop_hash == seed.loop_hash => return Err(Reject::LoopDetected),
            _ => spiral = true,
        }
    }

    // Step 5. CANCEL and ACK carry no Proxy-Require of their own (RFC 3261 §9.1, §17.1.1.3)
    // and an ACK cannot be refused; they are not checked.
    if !matches!(request.method(), Method::Ack | Method::Cancel) {
        let unknown: Vec<String> = request
            .headers()
            .get_all(HeaderName::ProxyRequire)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(tokens)
            .filter(|t| !local.understands(t))
            .map(str::to_owned)
            .collect();
        if !unknown.is_empty() {
            return Err(Reject::BadExtension(unknown));
        }
    }

    Ok(Verdict::Forward(Admitted { max_forwards, spiral, seed }))
}

/// The RFC 3261 magic cookie (§8.1.1.7) followed by lifeline's own marker.
pub const BRANCH_PREFIX: &str = "z9hG4bKlf";

/// The two hashes of a proxy branch: see [`Branch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct BranchSeed {
    loop_hash: [u8; 8],
    tx_hash: [u8; 5],
}

impl BranchSeed {
    pub(crate) fn of(request: &Request) -> Result<BranchSeed, Reject> {
        let h = request.headers();
        let mut loop_h = Fields(Sha256::new());
        loop_h.add(b'U', request.uri_str().as_bytes());
        // The tags only: the URIs need not be decoded (the parser checked their syntax).
        let from = h.from_tag().map_err(|_| Reject::Malformed(HeaderName::From))?;
        let to = h.to_tag().map_err(|_| Reject::Malformed(HeaderName::To))?;
        loop_h.add(b'F', from.unwrap_or("").as_bytes());
        loop_h.add(b'T', to.unwrap_or("").as_bytes());
        let call_id = h.call_id().map_err(|_| Reject::Malformed(HeaderName::CallId))?;
        loop_h.add(b'I', call_id.as_bytes());
        let cseq = h.cseq().map_err(|_| Reject::Malformed(HeaderName::CSeq))?;
        loop_h.add(b'C', &cseq.seq.to_be_bytes());
        for value in h.get_all(HeaderName::ProxyRequire) {
            for tag in std::str::from_utf8(value).into_iter().flat_map(tokens) {
                loop_h.add(b'P', tag.as_bytes());
            }
        }
        for value in h.get_all(HeaderName::ProxyAuthorization) {
            loop_h.add(b'A', crate::text::trim_bytes(value));
        }
        // Route by URI, so that a peer re-folding or re-spacing the header changes nothing.
        for route in h.name_addrs(HeaderName::Route) {
            let route = route.map_err(|_| Reject::Malformed(HeaderName::Route))?;
            loop_h.add(b'R', route.uri_raw.as_bytes());
        }

        let top = h.top_via().map_err(|_| Reject::Malformed(HeaderName::Via))?;
        let mut tx_h = Fields(Sha256::new());
        let mut transport = [0u8; 8];
        match transport.get_mut(..top.transport.len()) {
            Some(upper) => {
                upper.copy_from_slice(top.transport.as_bytes());
                upper.make_ascii_uppercase();
                tx_h.add(b'V', upper);
            }
            None => tx_h.add(b'V', top.transport.to_ascii_uppercase().as_bytes()),
        }
        match HostKey::of(&top.host) {
            HostKey::Ip(std::net::IpAddr::V4(ip)) => tx_h.add(b'4', &ip.octets()),
            HostKey::Ip(std::net::IpAddr::V6(ip)) => tx_h.add(b'6', &ip.octets()),
            HostKey::Name(name) => tx_h.add(b'H', name.as_bytes()),
        }
        tx_h.add(b'P', &top.port.unwrap_or(0).to_be_bytes());
        tx_h.add(b'B', top.branch().unwrap_or("").as_bytes());

        let (mut loop_hash, mut tx_hash) = ([0u8; 8], [0u8; 5]);
        let (l, t) = (loop_h.0.finalize(), tx_h.0.finalize());
        loop_hash.copy_from_slice(l.get(..8).unwrap_or(&[0; 8]));
        tx_hash.copy_from_slice(t.get(..5).unwrap_or(&[0; 5]));
        Ok(BranchSeed { loop_hash, tx_hash })
    }
}

/// Length-prefixed fields, so that no two different field lists hash the same bytes.
struct Fields(Sha256);

impl Fields {
    fn add(&mut self, tag: u8, bytes: &[u8]) {
        self.0.update([tag]);
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }
}

/// The branch parameter of a Via this proxy pushes:
/// `z9hG4bKlf` + 16 hex digits of loop hash + 10 hex digits of transaction hash + `.` + fork
/// index, e.g. `z9hG4bKlf0123456789abcdef0123456789.0`.
///
/// RFC 3261 §16.6 step 8 asks a proxy that detects loops for a branch "separable into two
/// parts": one unique per client transaction (§8.1.1.7), one for loop detection that "SHOULD
/// reflect all of those fields" that decide how the request is processed, "including any Route,
/// Proxy-Require and Proxy-Authorization header fields". The loop part here covers the
/// Request-URI, From tag, To tag, Call-ID, CSeq number (never the method: a CANCEL shares its
/// INVITE's branch), Proxy-Require, Proxy-Authorization and Route, all as received.
///
/// It does *not* cover the topmost Via, although the "common way" §16.6 suggests does: a
/// request that loops back through another proxy arrives with that proxy's Via on top, so a
/// hash including it would never match and no loop would ever be found. Loop detection is
/// what RFC 5393 requires of forking proxies, so it has to work.
///
/// Uniqueness comes from the second part, a hash of the incoming top Via (transport, sent-by,
/// branch): two server transactions carrying the same loop fields (an ACK for a 2xx and the
/// re-INVITE it acknowledges; one request reaching us over two upstream forks) still get
/// different branches. The fork index makes the client transactions of one server transaction
/// distinct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Branch {
    seed: BranchSeed,
    index: u32,
}

impl Branch {
    pub(crate) fn new(seed: BranchSeed, index: u32) -> Branch {
        Branch { seed, index }
    }

    /// Decodes a branch this proxy wrote; `None` for anyone else's.
    pub fn parse(s: &str) -> Option<Branch> {
        let rest = s.strip_prefix(BRANCH_PREFIX)?;
        let (hex, index) = rest.split_once('.')?;
        if hex.len() != 26
            || !hex.bytes().all(|b| b.is_ascii_hexdigit())
            || index.is_empty()
            || !index.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let index = index.parse().ok()?;
        let mut bytes = [0u8; 13];
        for (i, out) in bytes.iter_mut().enumerate() {
            let pair = hex.get(2 * i..2 * i + 2)?;
            *out = u8::from_str_radix(pair, 16).ok()?;
        }
        let (mut loop_hash, mut tx_hash) = ([0u8; 8], [0u8; 5]);
        loop_hash.copy_from_slice(bytes.get(..8)?);
        tx_hash.copy_from_slice(bytes.get(8..)?);
        Some(Branch { seed: BranchSeed { loop_hash, tx_hash }, index })
    }

    /// The fork index: which client transaction of the server transaction this is.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Whether two branches belong to the same server transaction (same hashes, any index).
    pub fn same_request(&self, other: &Branch) -> bool {
        self.seed == other.seed
    }
}

impl Branch {
    /// Appends the parameter value to `out` (what `Display` writes, without the formatting
    /// machinery: every forwarded request carries one).
    pub fn push_to(&self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.push_str(BRANCH_PREFIX);
        for &b in self.seed.loop_hash.iter().chain(&self.seed.tx_hash) {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out.push('.');
        let mut digits = [0u8; 10];
        let mut n = self.index;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in &digits[i..] {
            out.push(char::from(d));
        }
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(48);
        self.push_to(&mut s);
        f.write_str(&s)
    }
}

/// The receive-side rule for the top Via of an incoming request (RFC 3261 §18.2.1, RFC 3581 §4):
/// add `received=` with the packet's source address when the sent-by host is a name or another
/// address, and fill in `rport=` with the source port when the client asked for it (with
/// `received=` then always present, as RFC 3581 §4 requires). A Via that needs neither is left
/// byte for byte as it was.
///
/// `source` is the address the request came from (for WebSocket and TCP, the peer of the
/// connection).
pub fn fix_top_via(request: &mut Request, source: SocketAddr) -> Result<(), Reject> {
    let ip = source.ip().to_canonical();
    let new = {
        let via = request.headers().top_via().map_err(|_| Reject::Malformed(HeaderName::Via))?;
        let rport_requested = via.rport().is_some();
        let sent_by_differs = via.host.ip().map(|a| a.to_canonical()) != Some(ip);
        if !rport_requested && !sent_by_differs {
            return Ok(());
        }
        rewrite_via(&via, ip, rport_requested.then_some(source.port()))
    };
    edit::replace_first_element(request.headers_mut(), HeaderName::Via, new.as_bytes());
    Ok(())
}

/// The Via element with `received` set to `ip` (replacing any in place, else appended) and
/// `rport` given a value where present.
fn rewrite_via(via: &Via<'_>, ip: IpAddr, rport: Option<u16>) -> String {
    // sent-protocol and sent-by contain no `;`: the first one starts the parameters.
    let head = via.raw.split_once(';').map_or(via.raw, |(h, _)| h);
    let mut out = String::with_capacity(via.raw.len() + 32);
    out.push_str(crate::text::trim(head));
    let mut received_written = false;
    for (name, value) in via.params.iter() {
        out.push(';');
        if name.eq_ignore_ascii_case("received") {
            out.push_str(&format!("received={ip}"));
            received_written = true;
        } else if let (true, Some(port)) = (name.eq_ignore_ascii_case("rport"), rport) {
            out.push_str(&format!("rport={port}"));
        } else {
            out.push_str(name);
            if let Some(v) = value {
                out.push('=');
                out.push_str(v);
            }
        }
    }
    if !received_written {
        out.push_str(&format!(";received={ip}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_round_trip_and_foreign_branches() {
        let b = Branch {
            seed: BranchSeed {
                loop_hash: [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
                tx_hash: [0xfe, 0xdc, 0xba, 0x98, 0x76],
            },
            index: 3,
        };
        let s = b.to_string();
        assert_eq!(s, "z9hG4bKlf0123456789abcdeffedcba9876.3");
        assert_eq!(Branch::parse(&s), Some(b));
        for index in [0, 9, 10, 4_294_967_295] {
            let b = Branch { index, ..b };
            assert_eq!(b.to_string(), format!("z9hG4bKlf0123456789abcdeffedcba9876.{index}"));
            assert_eq!(Branch::parse(&b.to_string()), Some(b));
        }
        assert_eq!(Branch::parse("z9hG4bK776asdhds"), None);
        assert_eq!(Branch::parse("z9hG4bKlf0123.1"), None);
        assert_eq!(Branch::parse("z9hG4bKlf0123456789abcdeffedcba9876."), None);
        assert_eq!(Branch::parse("z9hG4bKlf0123456789abcdeffedcba9876.+1"), None);
        assert_eq!(Branch::parse("z9hG4bKlf0123456789abcdeffedcba987g.1"), None);
        assert_eq!(Branch::parse("z9hG4bKlfé123456789abcdeffedcba9876.1"), None);
    }
}
