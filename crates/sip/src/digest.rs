//! HTTP Digest authentication for SIP: RFC 7616 as applied by RFC 8760, with RFC 3261 §22.
//!
//! # Server side
//!
//! - [`NonceIssuer`] makes stateless nonces: an issue time and a random salt, authenticated with
//!   HMAC-SHA-256 under a server secret. The server keeps nothing per nonce to know whether a
//!   nonce is its own and how old it is; an authentic but old nonce is *stale* (answered with
//!   a new challenge carrying `stale=true`, RFC 7616 §3.3), a forged one is refused.
//! - [`challenges`] builds the `WWW-Authenticate` / `Proxy-Authenticate` values for a
//!   401/407: one per algorithm, **MD5 first by default** — JsSIP and SIPp answer the first
//!   challenge and know only MD5; SHA-256 follows for clients that prefer it (RFC 8760 §2.4).
//! - [`verify`] checks a request's [`Credentials`] against the stored HA1 (the store keeps
//!   `H(user:realm:password)` per algorithm, never the password).
//! - [`NonceCounts`] remembers the highest `nc` per nonce while the nonce lives, so a replayed
//!   request (same nonce, same or lower count) is refused (RFC 7616 §3.4.5).
//!
//! The caller must: compare `uri` of the credentials with the Request-URI (RFC 7616 §3.4.6),
//! pick the HA1 of the credentials' algorithm, and answer `Stale` with a fresh challenge
//! carrying `stale=true`.
//!
//! # Client side
//!
//! [`Challenge::parse`] and [`respond`] answer a challenge (tests play JsSIP and SIPp with it,
//! and the edge answers a trunk that challenges it).
//!
//! Time is an argument (`now` in Unix seconds) and so is randomness (`salt`, `cnonce`): this
//! crate reads no clock and no entropy source.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

/// A digest algorithm (RFC 7616 §3.2; `-sess` variants per §3.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// Decodes the `algorithm` token, case-insensitively.
    pub fn parse(token: &str) -> Option<Algorithm> {
        [Algorithm::Md5, Algorithm::Md5Sess, Algorithm::Sha256, Algorithm::Sha256Sess]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(token))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// The hash the stored HA1 uses: `-sess` variants start from the plain one.
    pub fn base(self) -> Algorithm {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Algorithm::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => Algorithm::Sha256,
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Lowercase hex of the hash of `parts` joined with `:`.
    fn hash(self, parts: &[&[u8]]) -> String {
        fn run<D: Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            hex(&d.finalize())
        }
        match self.base() {
            Algorithm::Md5 => run::<Md5>(parts),
            _ => run::<Sha256>(parts),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// `H(username:realm:password)` in lowercase hex: what the store keeps instead of a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Ha1(String);

impl Ha1 {
    /// Computes the HA1 of a password for `algorithm`'s base hash.
    pub fn new(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> Ha1 {
        Ha1(algorithm.base().hash(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()]))
    }

    /// Wraps a stored HA1 (lowercase hex of the right length for its hash, checked).
    pub fn from_hex(algorithm: Algorithm, hex: &str) -> Option<Ha1> {
        let len = match algorithm.base() {
            Algorithm::Md5 => 32,
            _ => 64,
        };
        let ok = hex.len() == len
            && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Ha1(hex.to_owned()))
    }

    pub fn as_hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash of a password is still a secret: never in logs.
        f.write_str("Ha1(..)")
    }
}

/// Why credentials or a challenge were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestError {
    /// The scheme is not `Digest`.
    NotDigest,
    /// The parameter list does not follow `name=value, ...`.
    Syntax,
    /// A parameter appears twice.
    Duplicate(String),
    /// A required parameter is missing.
    Missing(&'static str),
    /// A parameter has a value outside its grammar.
    BadValue(&'static str),
    /// An algorithm this implementation does not know.
    UnknownAlgorithm(String),
    /// `qop=auth-int` or an unknown qop.
    UnsupportedQop(String),
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestError::NotDigest => f.write_str("not a Digest authorization"),
            DigestError::Syntax => f.write_str("malformed digest parameters"),
            DigestError::Duplicate(p) => write!(f, "duplicate digest parameter {p}"),
            DigestError::Missing(p) => write!(f, "missing digest parameter {p}"),
            DigestError::BadValue(p) => write!(f, "bad digest parameter {p}"),
            DigestError::UnknownAlgorithm(a) => write!(f, "unknown digest algorithm {a}"),
            DigestError::UnsupportedQop(q) => write!(f, "unsupported qop {q}"),
        }
    }
}

impl std::error::Error for DigestError {}

/// Splits `Digest a=b, c="d"` into its parameters (names lower-cased, quoted values
/// unescaped). Tolerates LWS anywhere between the items, any order.
fn parse_params(value: &str) -> Result<Vec<(String, Cow<'_, str>)>, DigestError> {
    let value = value.trim_start();
    let (scheme, rest) = value.split_at(value.find([' ', '\t', '\r', '\n']).unwrap_or(value.len()));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    let b = rest.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, Cow<'_, str>)> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        while i < b.len() && b[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b"-_.".contains(&b[i])) {
            i += 1;
        }
        if i == start {
            return Err(DigestError::Syntax);
        }
        let name = rest[start..i].to_ascii_lowercase();
        skip_ws(&mut i);
        if b.get(i) != Some(&b'=') {
            return Err(DigestError::Syntax);
        }
        i += 1;
        skip_ws(&mut i);
        let value: Cow<'_, str> = if b.get(i) == Some(&b'"') {
            i += 1;
            let vstart = i;
            let mut escaped = false;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    escaped = true;
                    i += 1;
                }
                i += 1;
            }
            if i >= b.len() {
                return Err(DigestError::Syntax);
            }
            let raw = &rest[vstart..i];
            i += 1;
            if escaped {
                let mut s = String::with_capacity(raw.len());
                let mut chars = raw.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        if let Some(n) = chars.next() {
                            s.push(n);
                        }
                    } else {
                        s.push(c);
                    }
                }
                Cow::Owned(s)
            } else {
                Cow::Borrowed(raw)
            }
        } else {
            let vstart = i;
            while i < b.len() && !matches!(b[i], b',' | b' ' | b'\t' | b'\r' | b'\n') {
                i += 1;
            }
            if i == vstart {
                return Err(DigestError::Syntax);
            }
            Cow::Borrowed(&rest[vstart..i])
        };
        if out.iter().any(|(n, _)| *n == name) {
            return Err(DigestError::Duplicate(name));
        }
        out.push((name, value));
        skip_ws(&mut i);
        match b.get(i) {
            None => return Ok(out),
            Some(b',') => i += 1,
            Some(_) => return Err(DigestError::Syntax),
        }
    }
}

fn take<'a>(params: &mut Vec<(String, Cow<'a, str>)>, name: &str) -> Option<Cow<'a, str>> {
    let i = params.iter().position(|(n, _)| n == name)?;
    Some(params.swap_remove(i).1)
}

/// The quality of protection; only `auth` is supported (`auth-int` needs the body hashed,
/// which no SIP client in the field uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    Auth,
}

/// Credentials from an `Authorization` or `Proxy-Authorization` header (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub username: Cow<'a, str>,
    pub realm: Cow<'a, str>,
    pub nonce: Cow<'a, str>,
    pub uri: Cow<'a, str>,
    /// The response hash, lowercase hex.
    pub response: Cow<'a, str>,
    pub algorithm: Algorithm,
    pub cnonce: Option<Cow<'a, str>>,
    pub opaque: Option<Cow<'a, str>>,
    /// `None` for RFC 2069 clients that send no qop.
    pub qop: Option<Qop>,
    /// The nonce count (`nc`, 8 hex digits), present with `qop`.
    pub nc: Option<u32>,
}

impl<'a> Credentials<'a> {
    /// Parses a header value. Unknown parameters are ignored.
    pub fn parse(value: &'a str) -> Result<Credentials<'a>, DigestError> {
        let mut p = parse_params(value)?;
        let algorithm = match take(&mut p, "algorithm") {
            None => Algorithm::Md5,
            Some(a) => {
                Algorithm::parse(&a).ok_or_else(|| DigestError::UnknownAlgorithm(a.into_owned()))?
            }
        };
        let qop = match take(&mut p, "qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
            Some(q) => return Err(DigestError::UnsupportedQop(q.into_owned())),
        };
        let nc = match take(&mut p, "nc") {
            None => None,
            Some(n) if n.len() == 8 && n.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(u32::from_str_radix(&n, 16).map_err(|_| DigestError::BadValue("nc"))?)
            }
            Some(_) => return Err(DigestError::BadValue("nc")),
        };
        let c = Credentials {
            username: take(&mut p, "username").ok_or(DigestError::Missing("username"))?,
            realm: take(&mut p, "realm").ok_or(DigestError::Missing("realm"))?,
            nonce: take(&mut p, "nonce").ok_or(DigestError::Missing("nonce"))?,
            uri: take(&mut p, "uri").ok_or(DigestError::Missing("uri"))?,
            response: take(&mut p, "response").ok_or(DigestError::Missing("response"))?,
            algorithm,
            cnonce: take(&mut p, "cnonce"),
            opaque: take(&mut p, "opaque"),
            qop,
            nc,
        };
        if c.qop.is_some() && (c.cnonce.is_none() || c.nc.is_none()) {
            return Err(DigestError::Missing(if c.cnonce.is_none() { "cnonce" } else { "nc" }));
        }
        if c.algorithm.is_sess() && c.cnonce.is_none() {
            return Err(DigestError::Missing("cnonce"));
        }
        Ok(c)
    }

    /// The `Authorization` header value.
    pub fn to_header_value(&self) -> String {
        let mut s = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
            quote(&self.username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(&self.uri),
            self.response,
            self.algorithm
        );
        if let Some(o) = &self.opaque {
            s.push_str(&format!(", opaque=\"{}\"", quote(o)));
        }
        if let (Some(Qop::Auth), Some(cnonce), Some(nc)) = (self.qop, &self.cnonce, self.nc) {
            s.push_str(&format!(", qop=auth, cnonce=\"{}\", nc={nc:08x}", quote(cnonce)));
        }
        s
    }
}

fn quote(s: &str) -> Cow<'_, str> {
    if s.contains(['"', '\\']) {
        Cow::Owned(s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        Cow::Borrowed(s)
    }
}

/// The response hash (RFC 7616 §3.4.1) for `method` and the credentials' fields.
fn expected_response(c: &Credentials<'_>, method: &str, ha1: &Ha1) -> String {
    let alg = c.algorithm;
    let sess;
    let ha1 = if alg.is_sess() {
        let cnonce = c.cnonce.as_deref().unwrap_or("");
        sess = alg.hash(&[ha1.0.as_bytes(), c.nonce.as_bytes(), cnonce.as_bytes()]);
        sess.as_str()
    } else {
        ha1.0.as_str()
    };
    let ha2 = alg.hash(&[method.as_bytes(), c.uri.as_bytes()]);
    match (c.qop, &c.cnonce, c.nc) {
        (Some(Qop::Auth), Some(cnonce), Some(nc)) => {
            let nc = format!("{nc:08x}");
            alg.hash(&[
                ha1.as_bytes(),
                c.nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                b"auth",
                ha2.as_bytes(),
            ])
        }
        _ => alg.hash(&[ha1.as_bytes(), c.nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// Stateless nonces: `hex(issued_at) hex(salt) hex(HMAC-SHA-256(secret, issued_at|salt)[..16])`.
#[derive(Clone)]
pub struct NonceIssuer {
    secret: [u8; 32],
    /// Seconds a nonce stays fresh.
    pub lifetime: u64,
}

impl fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceIssuer").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

/// What a nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Ours and fresh; it expires at this Unix time.
    Fresh { expires: u64 },
    /// Ours but too old (or from the future): re-challenge with `stale=true`.
    Stale,
    /// Not ours.
    Forged,
}

impl NonceIssuer {
    /// An issuer with `secret` (random, kept for the life of the process or longer) and the
    /// default lifetime of 300 s.
    pub fn new(secret: [u8; 32]) -> NonceIssuer {
        NonceIssuer { secret, lifetime: 300 }
    }

    fn mac(&self, issued: u64, salt: &[u8; 8]) -> String {
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret) {
            Ok(m) => m,
            // HMAC takes keys of any length; unreachable, but never panic.
            Err(_) => return String::new(),
        };
        mac.update(&issued.to_be_bytes());
        mac.update(salt);
        hex(&mac.finalize().into_bytes()[..16])
    }

    /// A new nonce issued at `now` (Unix seconds) with 8 random bytes from the caller.
    pub fn issue(&self, now: u64, salt: [u8; 8]) -> String {
        format!("{now:016x}{}{}", hex(&salt), self.mac(now, &salt))
    }

    /// Checks a nonce presented at `now`.
    pub fn check(&self, nonce: &str, now: u64) -> NonceStatus {
        if nonce.len() != 64 || !nonce.is_ascii() {
            return NonceStatus::Forged;
        }
        let Ok(issued) = u64::from_str_radix(&nonce[..16], 16) else { return NonceStatus::Forged };
        let mut salt = [0u8; 8];
        for (i, b) in salt.iter_mut().enumerate() {
            match u8::from_str_radix(&nonce[16 + 2 * i..18 + 2 * i], 16) {
                Ok(v) => *b = v,
                Err(_) => return NonceStatus::Forged,
            }
        }
        if !constant_time_eq(self.mac(issued, &salt).as_bytes(), &nonce.as_bytes()[32..]) {
            return NonceStatus::Forged;
        }
        let expires = issued.saturating_add(self.lifetime);
        if now > expires || issued > now.saturating_add(5) {
            NonceStatus::Stale
        } else {
            NonceStatus::Fresh { expires }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A challenge (`WWW-Authenticate` / `Proxy-Authenticate`, RFC 7616 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// Whether `qop="auth"` is offered (always, on this server's challenges).
    pub qop_auth: bool,
    pub stale: bool,
}

impl Challenge {
    /// The header value.
    pub fn to_header_value(&self) -> String {
        let mut s = format!("Digest realm=\"{}\", nonce=\"{}\"", quote(&self.realm), self.nonce);
        if let Some(o) = &self.opaque {
            s.push_str(&format!(", opaque=\"{}\"", quote(o)));
        }
        s.push_str(&format!(", algorithm={}", self.algorithm));
        if self.qop_auth {
            s.push_str(", qop=\"auth\"");
        }
        if self.stale {
            s.push_str(", stale=true");
        }
        s
    }

    /// Parses a challenge (client side).
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        let mut p = parse_params(value)?;
        let algorithm = match take(&mut p, "algorithm") {
            None => Algorithm::Md5,
            Some(a) => {
                Algorithm::parse(&a).ok_or_else(|| DigestError::UnknownAlgorithm(a.into_owned()))?
            }
        };
        let qop_auth = match take(&mut p, "qop") {
            None => false,
            Some(q) if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) => true,
            Some(q) => return Err(DigestError::UnsupportedQop(q.into_owned())),
        };
        Ok(Challenge {
            realm: take(&mut p, "realm").ok_or(DigestError::Missing("realm"))?.into_owned(),
            nonce: take(&mut p, "nonce").ok_or(DigestError::Missing("nonce"))?.into_owned(),
            opaque: take(&mut p, "opaque").map(Cow::into_owned),
            algorithm,
            qop_auth,
            stale: take(&mut p, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

/// The challenges of a 401/407, one per algorithm in `order` (MD5 first by default, see the
/// module docs), all with the same fresh nonce.
pub fn challenges(
    issuer: &NonceIssuer,
    realm: &str,
    now: u64,
    salt: [u8; 8],
    order: &[Algorithm],
    stale: bool,
) -> Vec<Challenge> {
    let nonce = issuer.issue(now, salt);
    order
        .iter()
        .map(|&algorithm| Challenge {
            realm: realm.to_owned(),
            nonce: nonce.clone(),
            opaque: None,
            algorithm,
            qop_auth: true,
            stale,
        })
        .collect()
}

/// The default challenge order: MD5, then SHA-256.
pub const DEFAULT_ORDER: [Algorithm; 2] = [Algorithm::Md5, Algorithm::Sha256];

/// Why credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The realm is not this server's.
    WrongRealm,
    /// The nonce is not this server's.
    ForgedNonce,
    /// The response hash is wrong (wrong password, or a tampered field).
    WrongResponse,
    /// The nonce count did not increase: a replay (RFC 7616 §3.4.5).
    Replay,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    /// The response is right but the nonce is old: challenge again with `stale=true`.
    Stale,
    Rejected(Rejection),
}

/// Verifies `creds` for a request with `method`, given the stored HA1 for the credentials'
/// algorithm (see [`Algorithm::base`]). Records the nonce count on success.
pub fn verify(
    creds: &Credentials<'_>,
    method: &str,
    ha1: &Ha1,
    realm: &str,
    issuer: &NonceIssuer,
    counts: &mut NonceCounts,
    now: u64,
) -> Verdict {
    if creds.realm != realm {
        return Verdict::Rejected(Rejection::WrongRealm);
    }
    let status = issuer.check(&creds.nonce, now);
    if status == NonceStatus::Forged {
        return Verdict::Rejected(Rejection::ForgedNonce);
    }
    let expected = expected_response(creds, method, ha1);
    if !constant_time_eq(expected.as_bytes(), creds.response.to_ascii_lowercase().as_bytes()) {
        return Verdict::Rejected(Rejection::WrongResponse);
    }
    match status {
        NonceStatus::Fresh { expires } => {
            // Without qop there is no count: such a nonce may be used again until it expires.
            if let Some(nc) = creds.nc
                && !counts.advance(&creds.nonce, nc, expires, now)
            {
                return Verdict::Rejected(Rejection::Replay);
            }
            Verdict::Verified
        }
        _ => Verdict::Stale,
    }
}

/// The highest nonce count seen per live nonce, bounded in size.
#[derive(Debug)]
pub struct NonceCounts {
    capacity: usize,
    last: HashMap<String, (u32, u64)>,
    /// Nonces in the order they were first seen, with their expiry, for purging and eviction.
    order: VecDeque<(String, u64)>,
}

impl NonceCounts {
    /// A table remembering at most `capacity` nonces.
    pub fn new(capacity: usize) -> NonceCounts {
        NonceCounts { capacity: capacity.max(1), last: HashMap::new(), order: VecDeque::new() }
    }

    /// Records `nc` for `nonce` if it is higher than any seen; `false` for a replay.
    pub fn advance(&mut self, nonce: &str, nc: u32, expires: u64, now: u64) -> bool {
        self.purge(now);
        if let Some((last, _)) = self.last.get_mut(nonce) {
            if nc <= *last {
                return false;
            }
            *last = nc;
            return true;
        }
        while self.last.len() >= self.capacity {
            match self.order.pop_front() {
                Some((old, _)) => {
                    self.last.remove(&old);
                }
                None => break,
            }
        }
        self.last.insert(nonce.to_owned(), (nc, expires));
        self.order.push_back((nonce.to_owned(), expires));
        true
    }

    fn purge(&mut self, now: u64) {
        // Nonces expire in the order they were issued (one lifetime for all).
        while let Some((nonce, expires)) = self.order.front() {
            if *expires >= now {
                break;
            }
            self.last.remove(nonce);
            self.order.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// Answers `challenge` as a client would (qop=auth when offered).
pub fn respond(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let ha1 = Ha1::new(challenge.algorithm, username, &challenge.realm, password);
    let mut c = Credentials {
        username: username.into(),
        realm: challenge.realm.as_str().into(),
        nonce: challenge.nonce.as_str().into(),
        uri: uri.into(),
        response: Cow::Borrowed(""),
        algorithm: challenge.algorithm,
        cnonce: (challenge.qop_auth || challenge.algorithm.is_sess()).then(|| cnonce.into()),
        opaque: challenge.opaque.as_deref().map(Cow::Borrowed),
        qop: challenge.qop_auth.then_some(Qop::Auth),
        nc: challenge.qop_auth.then_some(nc),
    };
    c.response = expected_response(&c, method, &ha1).into();
    c.to_header_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    #[test]
    fn rfc7616_worked_examples() {
        // RFC 7616 §3.9.1: GET /dir/index.html, Mufasa / Circle of Life.
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        for (alg, expected) in [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (Algorithm::Sha256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ] {
            let c = Credentials {
                username: "Mufasa".into(),
                realm: "http-auth@example.org".into(),
                nonce: nonce.into(),
                uri: "/dir/index.html".into(),
                response: "".into(),
                algorithm: alg,
                cnonce: Some(cnonce.into()),
                opaque: None,
                qop: Some(Qop::Auth),
                nc: Some(1),
            };
            let ha1 = Ha1::new(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
            assert_eq!(expected_response(&c, "GET", &ha1), expected, "{alg}");
        }
    }

    #[test]
    fn round_trip_md5_and_sha256() {
        let issuer = NonceIssuer::new(SECRET);
        let now = 1_800_000_000;
        for (i, ch) in challenges(&issuer, "cc.example.com", now, [1; 8], &DEFAULT_ORDER, false)
            .iter()
            .enumerate()
        {
            assert_eq!(ch.algorithm, DEFAULT_ORDER[i]);
            // Both challenges share one nonce; a client answers one of them.
            let mut counts = NonceCounts::new(100);
            let parsed = Challenge::parse(&ch.to_header_value()).unwrap();
            assert_eq!(&parsed, ch);
            let auth =
                respond(&parsed, "alice", "secret", "REGISTER", "sip:cc.example.com", "abc", 1);
            let creds = Credentials::parse(&auth).unwrap();
            let ha1 = Ha1::new(creds.algorithm, "alice", "cc.example.com", "secret");
            assert_eq!(
                verify(&creds, "REGISTER", &ha1, "cc.example.com", &issuer, &mut counts, now + 1),
                Verdict::Verified
            );
            // The same request again is a replay.
            assert_eq!(
                verify(&creds, "REGISTER", &ha1, "cc.example.com", &issuer, &mut counts, now + 1),
                Verdict::Rejected(Rejection::Replay)
            );
            // A wrong password.
            let bad = Ha1::new(creds.algorithm, "alice", "cc.example.com", "guess");
            let auth2 =
                respond(&parsed, "alice", "secret", "REGISTER", "sip:cc.example.com", "abc", 2);
            let creds2 = Credentials::parse(&auth2).unwrap();
            assert_eq!(
                verify(&creds2, "REGISTER", &bad, "cc.example.com", &issuer, &mut counts, now + 1),
                Verdict::Rejected(Rejection::WrongResponse)
            );
            // Stale after the lifetime, forged when tampered, wrong realm.
            assert_eq!(
                verify(
                    &creds2,
                    "REGISTER",
                    &ha1,
                    "cc.example.com",
                    &issuer,
                    &mut counts,
                    now + 301
                ),
                Verdict::Stale
            );
            let mut forged = creds2.clone();
            forged.nonce = format!("{}0", &creds2.nonce[..63]).into();
            assert_eq!(
                verify(&forged, "REGISTER", &ha1, "cc.example.com", &issuer, &mut counts, now + 1),
                Verdict::Rejected(Rejection::ForgedNonce)
            );
            assert_eq!(
                verify(
                    &creds2,
                    "REGISTER",
                    &ha1,
                    "other.example.com",
                    &issuer,
                    &mut counts,
                    now + 1
                ),
                Verdict::Rejected(Rejection::WrongRealm)
            );
        }
    }

    #[test]
    fn client_forms_parse() {
        // As JsSIP 3.10 sends it.
        let jssip = r#"Digest algorithm=MD5, username="agent1042", realm="cc.example.com", nonce="00000069290e4c00a1b2c3d4e5f60718", uri="sip:cc.example.com", response="0123456789abcdef0123456789abcdef", qop=auth, cnonce="s2bhd5jbcdbr", nc=00000001"#;
        let c = Credentials::parse(jssip).unwrap();
        assert_eq!(c.username, "agent1042");
        assert_eq!(c.nc, Some(1));
        assert_eq!(c.qop, Some(Qop::Auth));
        // As SIPp's [authentication] sends it (no spaces after commas, quoted qop-less form).
        let sipp = "Digest username=\"user1\",realm=\"cc.example.com\",uri=\"sip:127.0.0.1:5060\",nonce=\"abc\",response=\"0123456789abcdef0123456789abcdef\",algorithm=MD5,cnonce=\"6b8b4567\",qop=auth,nc=00000001";
        assert_eq!(Credentials::parse(sipp).unwrap().cnonce.as_deref(), Some("6b8b4567"));
        // Folded, escaped, unknown params ignored, RFC 2069 (no qop).
        let odd = "digest USERNAME=\"a\\\"b\",\r\n realm=\"r\", nonce=n, uri=\"u\", response=\"x\", foo=bar";
        let c = Credentials::parse(odd).unwrap();
        assert_eq!(c.username, "a\"b");
        assert_eq!(c.qop, None);
    }

    #[test]
    fn malformed_credentials() {
        assert_eq!(Credentials::parse("Basic dXNlcjpwYXNz"), Err(DigestError::NotDigest));
        assert_eq!(
            Credentials::parse("Digest username=\"a\", username=\"b\""),
            Err(DigestError::Duplicate("username".into()))
        );
        assert_eq!(
            Credentials::parse("Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\""),
            Err(DigestError::Missing("response"))
        );
        let base = "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"";
        assert_eq!(
            Credentials::parse(&format!("{base}, qop=auth, cnonce=\"c\", nc=1")),
            Err(DigestError::BadValue("nc"))
        );
        assert_eq!(
            Credentials::parse(&format!("{base}, qop=auth")),
            Err(DigestError::Missing("cnonce"))
        );
        assert!(matches!(
            Credentials::parse(&format!("{base}, qop=auth-int, cnonce=\"c\", nc=00000001")),
            Err(DigestError::UnsupportedQop(_))
        ));
        assert!(matches!(
            Credentials::parse(&format!("{base}, algorithm=SHA-512")),
            Err(DigestError::UnknownAlgorithm(_))
        ));
        assert_eq!(Credentials::parse("Digest username=\"open"), Err(DigestError::Syntax));
        assert_eq!(Credentials::parse("Digest =x"), Err(DigestError::Syntax));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let seeds = [
            "Digest username=\"alice\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"0\", qop=auth, cnonce=\"c\", nc=00000001",
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=\"auth,auth-int\", stale=TRUE",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for seed in seeds {
            for _ in 0..3000 {
                let mut bytes = seed.as_bytes().to_vec();
                for _ in 0..4 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let pos = (state % bytes.len() as u64) as usize;
                    match state % 3 {
                        0 => bytes[pos] = (state >> 8) as u8 & 0x7f,
                        1 => bytes.truncate(pos),
                        _ => bytes.insert(pos, b"\",= \\"[(state >> 16) as usize % 5]),
                    }
                    if bytes.is_empty() {
                        break;
                    }
                }
                if let Ok(s) = std::str::from_utf8(&bytes) {
                    let _ = Credentials::parse(s);
                    let _ = Challenge::parse(s);
                }
            }
        }
        let issuer = NonceIssuer::new(SECRET);
        for n in ["", "zz", &"g".repeat(64), &"0".repeat(64), "é".repeat(32).as_str()] {
            assert_eq!(issuer.check(n, 0), NonceStatus::Forged);
        }
    }

    #[test]
    fn nonce_counts_are_bounded_and_purged() {
        let mut counts = NonceCounts::new(2);
        assert!(counts.advance("a", 1, 100, 0));
        assert!(counts.advance("b", 1, 100, 0));
        assert!(counts.advance("c", 1, 100, 0));
        assert_eq!(counts.len(), 2, "the oldest is evicted");
        assert!(counts.advance("c", 2, 100, 0));
        assert!(!counts.advance("c", 2, 100, 0));
        counts.advance("d", 1, 100, 200);
        assert_eq!(counts.len(), 1, "expired nonces are purged");
    }

    #[test]
    fn ha1_hex_is_checked() {
        let h = Ha1::new(Algorithm::Md5, "a", "r", "p");
        assert!(Ha1::from_hex(Algorithm::Md5, h.as_hex()).is_some());
        assert!(Ha1::from_hex(Algorithm::Sha256, h.as_hex()).is_none());
        assert!(Ha1::from_hex(Algorithm::Md5, &"G".repeat(32)).is_none());
        assert_eq!(format!("{h:?}"), "Ha1(..)");
    }
}
