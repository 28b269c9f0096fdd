//! HTTP Digest authentication for SIP: RFC 7616 as applied to SIP by RFC 8760, with the SIP
//! rules of RFC 3261 §22.
//!
//! # What is here
//!
//! - [`Algorithm`] and [`Ha1`]: `MD5`, `SHA-256`, `SHA-512-256` and their `-sess` variants
//!   (RFC 7616 §3.2, §3.4.2). The store keeps `H(username:realm:password)` per hash, never the
//!   password (RFC 7616 §5.2).
//! - [`Credentials`]: the value of an `Authorization` / `Proxy-Authorization` header, parsed
//!   from bytes and printed back (RFC 7616 §3.4, RFC 3261 §25.1 `digest-response`).
//! - [`Challenge`]: the value of a `WWW-Authenticate` / `Proxy-Authenticate` header, printed by
//!   the server and parsed by the client (RFC 7616 §3.3).
//! - [`NonceIssuer`]: stateless nonces. A nonce carries its issue time and a random salt,
//!   authenticated with HMAC-SHA-256 under a server secret, so the server keeps nothing per
//!   nonce to tell its own fresh nonces from stale ones and from forged ones.
//! - [`challenges`]: the challenges of a 401/407, one per algorithm, **MD5 first by default**:
//!   RFC 8760 §2.4 has a client use the topmost challenge it supports, but JsSIP and older SIPp
//!   releases take the first one and only know MD5, so SHA-256 comes second, for the clients
//!   that can choose. The order is the caller's to change.
//! - [`verify`]: checks credentials against the stored HA1; [`NonceCounts`] remembers the
//!   highest `nc` per live nonce so that a replayed request is refused (RFC 7616 §5.5).
//! - [`respond`]: the client side (tests play JsSIP and SIPp with it; the edge answers a trunk
//!   that challenges it).
//!
//! # The caller's contract (server side)
//!
//! 1. Read `Authorization` when answering with 401 (registrar, UAS) and `Proxy-Authorization`
//!    when answering with 407 (proxy); the challenges go in `WWW-Authenticate` and
//!    `Proxy-Authenticate` respectively (RFC 3261 §22.2, §22.3). Parse each value with
//!    [`Credentials::parse`]: credentials for another realm belong to another hop, and
//!    [`DigestError::NotDigest`] is another scheme — both count as "no credentials" (challenge).
//!    Any other [`DigestError`] is a 400; its `Display` is a safe reason phrase.
//! 2. **Compare `uri` with the Request-URI** (RFC 7616 §3.4.6, RFC 3261 §22.4): this module
//!    cannot see the request line; a mismatch is a 400. Without this check, credentials made
//!    for one request authorise another.
//! 3. **Pick the HA1 by algorithm**: look the user up and take the HA1 of
//!    [`Algorithm::base`] of the credentials' algorithm. [`verify`] refuses an HA1 of another
//!    hash ([`Rejection::AlgorithmMismatch`]). Answer an unknown user like a wrong password.
//! 4. Call [`verify`] with the same `now` clock that issues nonces. On [`Verdict::Stale`],
//!    **answer with a fresh challenge carrying `stale=true`** (RFC 7616 §3.3): the client then
//!    retries with the same password instead of failing. On [`Rejection::ForgedNonce`] (a
//!    nonce from another secret, e.g. from before a restart) challenge afresh; the other
//!    rejections are a 403.
//! 5. Keep one [`NonceIssuer`] and one [`NonceCounts`] for every request the realm sees.
//!
//! Credentials without `qop` (RFC 2069, allowed by RFC 3261 §22.4) carry no nonce count: they
//! verify, but nothing stops their replay while the nonce lives. A caller that wants no such
//! clients refuses credentials whose [`Credentials::qop`] is `None`.
//!
//! # Time and randomness
//!
//! Time is an argument (`now`, Unix seconds) and so is randomness (`salt`, `cnonce`, the nonce
//! secret): this module reads no clock and no entropy source, and does no I/O.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

/// A digest algorithm (RFC 7616 §3.2; the `-sess` variants per §3.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`: assumed when a challenge or credentials name none; the only one JsSIP speaks.
    Md5,
    /// `MD5-sess`: HA1 is re-hashed with the nonce and cnonce.
    Md5Sess,
    /// `SHA-256` (RFC 8760).
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256` (SHA-512/256, RFC 8760).
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl Algorithm {
    /// Every algorithm this module computes.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
        Algorithm::Sha512_256,
        Algorithm::Sha512_256Sess,
    ];

    /// Decodes an `algorithm` token, case-insensitively (`md5`, `SHA-256-sess`, ...).
    pub fn parse(token: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(token))
    }

    /// The token as RFC 7616 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// The algorithm whose HA1 the store keeps for this one: `-sess` variants start from the
    /// plain HA1 of their hash.
    pub fn base(self) -> Algorithm {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Algorithm::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => Algorithm::Sha256,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => Algorithm::Sha512_256,
        }
    }

    /// Whether this is a `-sess` variant (which needs a `cnonce`).
    pub fn is_sess(self) -> bool {
        self.base() != self
    }

    fn hash(self) -> Hash {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Hash::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => Hash::Sha256,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => Hash::Sha512_256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hash functions behind the algorithms.
#[derive(Clone, Copy)]
enum Hash {
    Md5,
    Sha256,
    Sha512_256,
}

impl Hash {
    /// Lowercase hex of the hash of `parts` joined with `:` (RFC 7616 §3.4.1 `H(a:b:...)`).
    fn hex(self, parts: &[&[u8]]) -> String {
        fn run<D: Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(part);
            }
            hex(&d.finalize())
        }
        match self {
            Hash::Md5 => run::<Md5>(parts),
            Hash::Sha256 => run::<Sha256>(parts),
            Hash::Sha512_256 => run::<Sha512_256>(parts),
        }
    }

    /// Hex digits of one hash.
    fn hex_len(self) -> usize {
        match self {
            Hash::Md5 => 32,
            Hash::Sha256 | Hash::Sha512_256 => 64,
        }
    }
}

/// `H(username:realm:password)` in lowercase hex, for one hash: what the store keeps instead
/// of a password (RFC 7616 §5.2). Its `Debug` never shows the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Ha1 {
    /// The plain algorithm of the hash ([`Algorithm::base`]).
    algorithm: Algorithm,
    hex: String,
}

impl Ha1 {
    /// Computes the HA1 of a password for `algorithm`'s hash.
    pub fn new(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> Ha1 {
        let parts: [&[u8]; 3] = [username.as_bytes(), realm.as_bytes(), password.as_bytes()];
        Ha1 { algorithm: algorithm.base(), hex: algorithm.hash().hex(&parts) }
    }

    /// Wraps a stored HA1: hex digits (either case) of the length of `algorithm`'s hash.
    pub fn from_hex(algorithm: Algorithm, hex: &str) -> Option<Ha1> {
        let ok =
            hex.len() == algorithm.hash().hex_len() && hex.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| Ha1 { algorithm: algorithm.base(), hex: hex.to_ascii_lowercase() })
    }

    /// The plain algorithm this HA1 is for (`MD5`, `SHA-256` or `SHA-512-256`).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex digits, to store.
    pub fn as_hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash of a password is as good as the password against this realm: never in logs.
        write!(f, "Ha1({}, ..)", self.algorithm)
    }
}

/// `H(username:realm:password)` for `algorithm`'s hash; the same as [`Ha1::new`].
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> Ha1 {
    Ha1::new(algorithm, username, realm, password)
}

/// Why a header value is not usable digest credentials or a digest challenge.
///
/// `Display` reads as a log line and as the reason phrase of the 400 that answers it: it is
/// printable ASCII whatever the input, and quotes at most a short excerpt of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestError {
    /// The value is not UTF-8.
    NotUtf8,
    /// The scheme is not `Digest` (e.g. `Basic`): to be treated as no credentials at all.
    NotDigest,
    /// The parameter list does not follow `name=value, ...`; says what was expected.
    Malformed(&'static str),
    /// A parameter appears twice (RFC 3261 §7.3.1).
    Duplicate(&'static str),
    /// A required parameter is missing.
    Missing(&'static str),
    /// A parameter's value is outside its grammar.
    Invalid {
        /// The parameter.
        param: &'static str,
        /// What its value must be.
        expected: &'static str,
    },
    /// An algorithm this module does not compute (an excerpt of it).
    UnknownAlgorithm(String),
    /// A qop other than `auth` or `auth-int`, or (in a challenge) no qop this module can answer.
    UnsupportedQop(String),
}

impl DigestError {
    const BAD_NC: DigestError =
        DigestError::Invalid { param: "nc", expected: "8 lowercase hex digits" };
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestError::NotUtf8 => f.write_str("Digest parameters are not UTF-8"),
            DigestError::NotDigest => f.write_str("Authentication scheme is not Digest"),
            DigestError::Malformed(what) => write!(f, "Malformed digest parameters: {what}"),
            DigestError::Duplicate(p) => write!(f, "Duplicate digest parameter {p}"),
            DigestError::Missing(p) => write!(f, "Missing digest parameter {p}"),
            DigestError::Invalid { param, expected } => {
                write!(f, "Bad digest parameter {param}: expected {expected}")
            }
            DigestError::UnknownAlgorithm(a) => write!(f, "Unknown digest algorithm {a}"),
            DigestError::UnsupportedQop(q) => write!(f, "Unsupported digest qop {q}"),
        }
    }
}

impl std::error::Error for DigestError {}

/// At most 32 characters of `text`, printable ASCII only: safe in a log line and a reason
/// phrase whatever a peer sent.
fn excerpt(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(32)
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect();
    if text.chars().nth(32).is_some() {
        out.push_str("...");
    }
    out
}

/// The quality of protection (RFC 7616 §3.3). This module answers and verifies `auth`;
/// `auth-int` (the body hashed too) is parsed but refused, and never offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// `auth`: the method and URI are protected.
    Auth,
    /// `auth-int`: the body too.
    AuthInt,
}

impl Qop {
    fn parse(token: &str) -> Option<Qop> {
        if token.eq_ignore_ascii_case("auth") {
            Some(Qop::Auth)
        } else if token.eq_ignore_ascii_case("auth-int") {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }

    /// The token.
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

impl fmt::Display for Qop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Credentials from an `Authorization` or `Proxy-Authorization` header (RFC 7616 §3.4).
///
/// Values borrow from the header when they had no escapes. `Display` prints the header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The user, as typed in the client; the key to look the HA1 up with.
    pub username: Cow<'a, str>,
    /// Must be this server's realm.
    pub realm: Cow<'a, str>,
    /// The nonce of the challenge being answered.
    pub nonce: Cow<'a, str>,
    /// The `digest-uri`: the caller compares it with the Request-URI (RFC 7616 §3.4.6).
    pub uri: Cow<'a, str>,
    /// The response hash, hex.
    pub response: Cow<'a, str>,
    /// `MD5` when the header names none.
    pub algorithm: Algorithm,
    /// The client nonce; present with `qop` and with `-sess` algorithms.
    pub cnonce: Option<Cow<'a, str>>,
    /// Echoed from the challenge; this module's challenges send none.
    pub opaque: Option<Cow<'a, str>>,
    /// `None` for RFC 2069 clients, which send no qop (and no nonce count).
    pub qop: Option<Qop>,
    /// The nonce count (`nc`, 8 lowercase hex digits on the wire); present with `qop`.
    pub nc: Option<u32>,
}

/// The parameters [`Credentials::parse`] reads; others are ignored.
const CREDENTIAL_PARAMS: [&str; 10] =
    ["username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "opaque", "qop", "nc"];

impl<'a> Credentials<'a> {
    /// Parses a header value (`Digest username="alice", ...`), as bytes or text.
    ///
    /// Tolerates linear whitespace (folded lines too) around every item, parameters in any
    /// order, quoted or bare values, any case in the scheme and parameter names; ignores
    /// parameters it does not know. Refuses a duplicate known parameter, a missing mandatory
    /// one (`username`, `realm`, `nonce`, `uri`, `response`; `cnonce` and `nc` with `qop`;
    /// `cnonce` with a `-sess` algorithm), an `nc` that is not 8 lowercase hex digits, and a
    /// `qop` other than `auth` or `auth-int`.
    pub fn parse<V: AsRef<[u8]> + ?Sized>(value: &'a V) -> Result<Credentials<'a>, DigestError> {
        let [username, realm, nonce, uri, response, algorithm, cnonce, opaque, qop, nc] =
            collect(value.as_ref(), &CREDENTIAL_PARAMS)?;
        let username = username.ok_or(DigestError::Missing("username"))?;
        let realm = realm.ok_or(DigestError::Missing("realm"))?;
        let nonce = nonce.ok_or(DigestError::Missing("nonce"))?;
        let uri = uri.ok_or(DigestError::Missing("uri"))?;
        let response = response.ok_or(DigestError::Missing("response"))?;
        if uri.is_empty() {
            return Err(DigestError::Invalid { param: "uri", expected: "a URI" });
        }
        let algorithm = parse_algorithm(algorithm.as_deref())?;
        let qop = qop
            .map(|q| Qop::parse(&q).ok_or_else(|| DigestError::UnsupportedQop(excerpt(&q))))
            .transpose()?;
        let nc = nc.map(|n| parse_nc(&n).ok_or(DigestError::BAD_NC)).transpose()?;
        if qop.is_some() && cnonce.is_none() {
            return Err(DigestError::Missing("cnonce"));
        }
        if qop.is_some() && nc.is_none() {
            return Err(DigestError::Missing("nc"));
        }
        if algorithm.is_sess() && cnonce.is_none() {
            return Err(DigestError::Missing("cnonce"));
        }
        Ok(Credentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
        })
    }
}

impl fmt::Display for Credentials<'_> {
    /// `Digest username="..", realm="..", nonce="..", uri="..", response="..", algorithm=..`
    /// then `cnonce`, `opaque`, `qop` and `nc` when present. Never prints a line break.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
            Quoted(&self.username),
            Quoted(&self.realm),
            Quoted(&self.nonce),
            Quoted(&self.uri),
            Quoted(&self.response),
            self.algorithm
        )?;
        if let Some(cnonce) = &self.cnonce {
            write!(f, ", cnonce=\"{}\"", Quoted(cnonce))?;
        }
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque=\"{}\"", Quoted(opaque))?;
        }
        if let Some(qop) = self.qop {
            write!(f, ", qop={qop}")?;
        }
        if let Some(nc) = self.nc {
            write!(f, ", nc={nc:08x}")?;
        }
        Ok(())
    }
}

fn parse_algorithm(token: Option<&str>) -> Result<Algorithm, DigestError> {
    match token {
        None => Ok(Algorithm::Md5),
        Some(a) => Algorithm::parse(a).ok_or_else(|| DigestError::UnknownAlgorithm(excerpt(a))),
    }
}

/// `nc-value = 8LHEX` (RFC 3261 §25.1). The client hashed the digits as it sent them, so
/// only the canonical lowercase form is accepted.
fn parse_nc(text: &str) -> Option<u32> {
    let digits = text.as_bytes();
    if digits.len() != 8 || !digits.iter().all(|&b| lhex(b).is_some()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

/// A challenge: the value of a `WWW-Authenticate` or `Proxy-Authenticate` header (RFC 7616
/// §3.3). `Display` prints `Digest realm="..", nonce="..", [opaque="..", ]algorithm=..,
/// qop="auth"[, stale=true]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The protection space; this server's is `[sip] domain`.
    pub realm: String,
    /// From [`NonceIssuer::issue`] on the server side.
    pub nonce: String,
    /// Echoed by the client; this server sends none (its nonces carry what it needs).
    pub opaque: Option<String>,
    /// `MD5` when the header names none.
    pub algorithm: Algorithm,
    /// Whether `qop="auth"` is offered (always, on this server's challenges); `false` for an
    /// RFC 2069 server, answered without qop.
    pub qop_auth: bool,
    /// `stale=true`: the previous credentials were right but their nonce had expired, so the
    /// client retries with the same password.
    pub stale: bool,
}

/// The parameters [`Challenge::parse`] reads; others (`domain`, `charset`, ...) are ignored.
const CHALLENGE_PARAMS: [&str; 6] = ["realm", "nonce", "opaque", "algorithm", "qop", "stale"];

impl Challenge {
    /// Parses a challenge (client side), with the tolerance of [`Credentials::parse`]. A
    /// challenge whose qop list has no `auth` (only `auth-int`, which needs the body) cannot
    /// be answered and is refused with [`DigestError::UnsupportedQop`].
    pub fn parse<V: AsRef<[u8]> + ?Sized>(value: &V) -> Result<Challenge, DigestError> {
        let [realm, nonce, opaque, algorithm, qop, stale] =
            collect(value.as_ref(), &CHALLENGE_PARAMS)?;
        let realm = realm.ok_or(DigestError::Missing("realm"))?.into_owned();
        let nonce = nonce.ok_or(DigestError::Missing("nonce"))?.into_owned();
        let algorithm = parse_algorithm(algorithm.as_deref())?;
        let qop_auth = match qop {
            None => false,
            Some(list) => {
                let mut options = list.split(',').map(|o| o.trim_matches(is_lws_char));
                if !options.any(|o| Qop::parse(o) == Some(Qop::Auth)) {
                    return Err(DigestError::UnsupportedQop(excerpt(&list)));
                }
                true
            }
        };
        Ok(Challenge {
            realm,
            nonce,
            opaque: opaque.map(Cow::into_owned),
            algorithm,
            qop_auth,
            stale: stale.is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The header value; the same as `to_string()`.
    pub fn to_header_value(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest realm=\"{}\", nonce=\"{}\"", Quoted(&self.realm), Quoted(&self.nonce))?;
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque=\"{}\"", Quoted(opaque))?;
        }
        write!(f, ", algorithm={}", self.algorithm)?;
        if self.qop_auth {
            f.write_str(", qop=\"auth\"")?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        Ok(())
    }
}

/// Prints the inside of a quoted-string (RFC 3261 §25.1): `"` and `\` and control characters
/// escaped; CR and LF, which no quoted-pair can carry, as spaces so that a header never
/// breaks.
struct Quoted<'s>(&'s str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(|c: char| c == '"' || c == '\\' || c.is_ascii_control()) {
            let (plain, tail) = rest.split_at(i);
            f.write_str(plain)?;
            let mut chars = tail.chars();
            match chars.next() {
                Some('\r' | '\n') => f.write_str(" ")?,
                Some(c) => write!(f, "\\{c}")?,
                None => {}
            }
            rest = chars.as_str();
        }
        f.write_str(rest)
    }
}

/// The known parameters of a `Digest` value, in the order of `names`; unknown ones skipped.
fn collect<'a, const N: usize>(
    value: &'a [u8],
    names: &[&'static str; N],
) -> Result<[Option<Cow<'a, str>>; N], DigestError> {
    let mut params = Params::new(value)?;
    let mut found = [const { None }; N];
    while let Some((name, value)) = params.next_param()? {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            if found[i].is_some() {
                return Err(DigestError::Duplicate(names[i]));
            }
            found[i] = Some(value);
        }
    }
    Ok(found)
}

/// Reads `Digest name=value, name="quoted value", ...` one parameter at a time
/// (RFC 3261 §25.1 `digest-response` / `digest-cln`, RFC 7616 §3.4.5).
struct Params<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Params<'a> {
    /// Checks the scheme and stands after it.
    fn new(value: &'a [u8]) -> Result<Params<'a>, DigestError> {
        // The scheme first, on bytes: another scheme is `NotDigest` whatever it carries.
        let start = value.iter().position(|&b| !is_lws(b)).unwrap_or(value.len());
        let len = value[start..].iter().position(|&b| !is_token(b)).unwrap_or(value.len() - start);
        if !value[start..start + len].eq_ignore_ascii_case(b"Digest") {
            return Err(DigestError::NotDigest);
        }
        let pos = start + len;
        if value.get(pos).is_some_and(|&b| !is_lws(b)) {
            return Err(DigestError::Malformed("expected a space after Digest"));
        }
        let text = std::str::from_utf8(value).map_err(|_| DigestError::NotUtf8)?;
        Ok(Params { text, pos })
    }

    /// The next `(name, value)`, quoted-string escapes undone; `None` at the end.
    fn next_param(&mut self) -> Result<Option<(&'a str, Cow<'a, str>)>, DigestError> {
        // Empty list elements (`a=1,,b=2`) are allowed, as in every `#rule` list.
        loop {
            self.skip_lws();
            if self.peek() != Some(b',') {
                break;
            }
            self.pos += 1;
        }
        if self.peek().is_none() {
            return Ok(None);
        }
        let name = self.take_while(is_token);
        if name.is_empty() {
            return Err(DigestError::Malformed("expected a parameter name"));
        }
        self.skip_lws();
        if self.peek() != Some(b'=') {
            return Err(DigestError::Malformed("expected '=' after a parameter name"));
        }
        self.pos += 1;
        self.skip_lws();
        let value = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            // A token, or more tolerantly anything up to a comma or a space (some clients
            // send `uri=sip:bob@example.com` unquoted).
            let bare = self.take_while(|b| b != b',' && b != b'"' && !is_lws(b));
            if bare.is_empty() {
                return Err(DigestError::Malformed("expected a parameter value"));
            }
            Cow::Borrowed(bare)
        };
        self.skip_lws();
        match self.peek() {
            None | Some(b',') => Ok(Some((name, value))),
            Some(_) => Err(DigestError::Malformed("expected ',' between parameters")),
        }
    }

    /// A quoted-string, standing on its opening quote. Escapes are undone and a folded line
    /// (whitespace around CR/LF) becomes one space (RFC 3261 §7.3.1), so no value ever holds
    /// a line break.
    fn quoted(&mut self) -> Result<Cow<'a, str>, DigestError> {
        let bytes = self.text.as_bytes();
        self.pos += 1;
        let start = self.pos;
        // Where the text not yet copied into `owned` starts.
        let mut copied = start;
        let mut owned: Option<String> = None;
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b'"' => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(self.slice(start, end)),
                        Some(mut s) => {
                            s.push_str(self.slice(copied, end));
                            Cow::Owned(s)
                        }
                    });
                }
                b'\\' => {
                    // quoted-pair: any ASCII character but CR and LF.
                    let escaped = bytes
                        .get(self.pos + 1)
                        .copied()
                        .filter(|&c| c.is_ascii() && c != b'\r' && c != b'\n')
                        .ok_or(DigestError::Malformed("bad escape in a quoted string"))?;
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(self.slice(copied, self.pos));
                    s.push(char::from(escaped));
                    self.pos += 2;
                    copied = self.pos;
                }
                b'\r' | b'\n' => {
                    let mut ws_start = self.pos;
                    while ws_start > copied && matches!(bytes.get(ws_start - 1), Some(b' ' | b'\t'))
                    {
                        ws_start -= 1;
                    }
                    while bytes.get(self.pos).is_some_and(|&c| is_lws(c)) {
                        self.pos += 1;
                    }
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(self.slice(copied, ws_start));
                    s.push(' ');
                    copied = self.pos;
                }
                c if (c < 0x20 && c != b'\t') || c == 0x7f => {
                    return Err(DigestError::Malformed("control character in a quoted string"));
                }
                _ => self.pos += 1,
            }
        }
        Err(DigestError::Malformed("unterminated quoted string"))
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_lws(&mut self) {
        self.take_while(is_lws);
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    /// Text between two positions; they always sit on ASCII bytes or at the end, but a slip
    /// gives an empty string rather than a panic.
    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.text.get(start..end).unwrap_or_default()
    }
}

/// Linear whitespace, folded lines included (RFC 3261 §25.1 `LWS`).
fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_lws_char(c: char) -> bool {
    c.is_ascii() && is_lws(c as u8)
}

/// RFC 3261 §25.1 `token` characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// The value of a lowercase hex digit (`LHEX`).
fn lhex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
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

/// `N` bytes from exactly `2N` lowercase hex digits.
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let &[hi, lo] = pair else { return None };
        *byte = (lhex(hi)? << 4) | lhex(lo)?;
    }
    Some(out)
}

/// Stateless nonces (RFC 7616 §3.3 suggests a time stamp and a hash with a server secret).
///
/// A nonce is 64 lowercase hex digits: the issue time (8 bytes, Unix seconds, big endian), a
/// salt from the caller (8 random bytes: two challenges issued in the same second differ),
/// and the first 16 bytes of HMAC-SHA-256 over both under the server's secret. A nonce whose
/// MAC checks was issued by this server with this secret; its age says whether it is fresh.
#[derive(Clone)]
pub struct NonceIssuer {
    /// HMAC-SHA-256 keyed with the secret, cloned for each nonce.
    mac: Hmac<Sha256>,
    /// Seconds a nonce stays fresh.
    lifetime: u64,
}

/// What [`NonceIssuer::check`] found a nonce to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Issued here and still fresh; fresh until this Unix time (inclusive).
    Fresh {
        /// The last second at which the nonce is fresh.
        expires: u64,
    },
    /// Issued here but too old (or too far in the future, after the clock stepped back):
    /// re-challenge with `stale=true` if the response was right.
    Stale,
    /// Not issued here under this secret: forged, garbled, or from before a secret change.
    Invalid,
}

impl NonceIssuer {
    /// Seconds a nonce stays fresh unless [`NonceIssuer::with_lifetime`] says otherwise.
    pub const DEFAULT_LIFETIME: u64 = 300;

    /// Nonces issued this far ahead of `now` (a clock stepped back) still count as fresh.
    const MAX_SKEW: u64 = 5;

    /// Separates this use of the secret from any other.
    const CONTEXT: &'static [u8] = b"lifeline digest nonce v1";

    /// An issuer keyed with `secret` (random, kept as long as nonces must stay valid: a new
    /// secret makes every outstanding nonce [`NonceStatus::Invalid`]).
    pub fn new(secret: [u8; 32]) -> NonceIssuer {
        // HMAC pads a key shorter than its block with zeros (RFC 2104 §2): the zero-padded
        // block is the same key as the 32 bytes, and this way keying cannot fail.
        let mut key = hmac::digest::Key::<Hmac<Sha256>>::default();
        for (k, s) in key.iter_mut().zip(secret) {
            *k = s;
        }
        NonceIssuer { mac: <Hmac<Sha256> as KeyInit>::new(&key), lifetime: Self::DEFAULT_LIFETIME }
    }

    /// The same issuer with nonces fresh for `seconds`.
    pub fn with_lifetime(self, seconds: u64) -> NonceIssuer {
        NonceIssuer { lifetime: seconds, ..self }
    }

    /// Seconds a nonce stays fresh.
    pub fn lifetime(&self) -> u64 {
        self.lifetime
    }

    /// A new nonce issued at `now` (Unix seconds) with 8 random bytes from the caller.
    pub fn issue(&self, now: u64, salt: [u8; 8]) -> String {
        let tag = self.tag(now, &salt).finalize().into_bytes();
        let mut raw = [0u8; 32];
        let fields = now.to_be_bytes().into_iter().chain(salt).chain(tag.iter().copied().take(16));
        for (r, b) in raw.iter_mut().zip(fields) {
            *r = b;
        }
        hex(&raw)
    }

    /// Checks a nonce presented at `now` (Unix seconds). The MAC is compared in constant time.
    pub fn check(&self, nonce: &str, now: u64) -> NonceStatus {
        let Some(raw) = unhex::<32>(nonce) else { return NonceStatus::Invalid };
        let (issued, rest) = raw.split_at(8);
        let (salt, tag) = rest.split_at(8);
        let (Ok(issued), Ok(salt)) = (<[u8; 8]>::try_from(issued), <[u8; 8]>::try_from(salt))
        else {
            return NonceStatus::Invalid;
        };
        let issued = u64::from_be_bytes(issued);
        if self.tag(issued, &salt).verify_truncated_left(tag).is_err() {
            return NonceStatus::Invalid;
        }
        let expires = issued.saturating_add(self.lifetime);
        if now > expires || issued > now.saturating_add(Self::MAX_SKEW) {
            NonceStatus::Stale
        } else {
            NonceStatus::Fresh { expires }
        }
    }

    fn tag(&self, issued: u64, salt: &[u8; 8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(Self::CONTEXT);
        mac.update(&issued.to_be_bytes());
        mac.update(salt);
        mac
    }
}

impl fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keyed MAC state is as secret as the key.
        f.debug_struct("NonceIssuer").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

/// The default challenge order: MD5 first (SIPp answers the first challenge and knows only
/// MD5), SHA-256 second. JsSIP 3.13 keeps the *last* challenge header instead, so the edge
/// reverses this order for WebSocket clients.
pub const DEFAULT_ORDER: [Algorithm; 2] = [Algorithm::Md5, Algorithm::Sha256];

/// The challenges of a 401/407, one per algorithm of `order` (e.g. [`DEFAULT_ORDER`]), all
/// with one fresh nonce issued at `now` with `salt`, `qop="auth"`, and `stale=true` when the
/// previous credentials were [`Verdict::Stale`]. Each goes in its own header, in this order.
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

/// Why [`verify`] refused credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The realm is not this server's.
    WrongRealm,
    /// The HA1 given is for another hash than the credentials' algorithm: the caller holds
    /// no HA1 for that algorithm (or picked the wrong one).
    AlgorithmMismatch,
    /// `qop=auth-int`, which this server never offers.
    UnsupportedQop,
    /// The nonce was not issued by this server under its current secret.
    ForgedNonce,
    /// The response hash is wrong: a wrong password, or a field changed on the way.
    WrongResponse,
    /// The nonce count did not increase: a replayed request (RFC 7616 §5.5).
    Replay,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::WrongRealm => "credentials for another realm",
            Rejection::AlgorithmMismatch => "no HA1 for the credentials' algorithm",
            Rejection::UnsupportedQop => "qop=auth-int was not offered",
            Rejection::ForgedNonce => "nonce not issued by this server",
            Rejection::WrongResponse => "wrong digest response",
            Rejection::Replay => "replayed nonce count",
        })
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are right, the nonce fresh and the count new.
    Verified,
    /// The response is right but the nonce is old: challenge again with `stale=true`.
    Stale,
    /// Refused.
    Rejected(Rejection),
}

/// Verifies `creds` for a request with `method`, at `now` (Unix seconds), against `ha1`, the
/// stored HA1 for `creds.algorithm.base()`, and records the nonce count when verified.
///
/// Checks, in order: the realm, that `ha1` fits the algorithm, the qop, the nonce's MAC, the
/// response (in constant time), the nonce's age, the nonce count. A stale nonce is reported
/// only with a right response, so `stale=true` never tells a guesser anything. The caller
/// still compares `creds.uri` with the Request-URI (see the module docs).
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
    if ha1.algorithm() != creds.algorithm.base() {
        return Verdict::Rejected(Rejection::AlgorithmMismatch);
    }
    if creds.qop == Some(Qop::AuthInt) {
        return Verdict::Rejected(Rejection::UnsupportedQop);
    }
    let status = issuer.check(&creds.nonce, now);
    if status == NonceStatus::Invalid {
        return Verdict::Rejected(Rejection::ForgedNonce);
    }
    if !digests_match(&request_digest(creds, method, ha1), &creds.response) {
        return Verdict::Rejected(Rejection::WrongResponse);
    }
    let NonceStatus::Fresh { expires } = status else { return Verdict::Stale };
    match (creds.qop, creds.nc) {
        // Without qop there is no count (RFC 2069): such credentials stay usable until the
        // nonce expires.
        (Some(_), Some(nc)) if !counts.advance(&creds.nonce, nc, expires, now) => {
            Verdict::Rejected(Rejection::Replay)
        }
        _ => Verdict::Verified,
    }
}

/// The `response` the credentials' fields give for `method` (RFC 7616 §3.4.1-§3.4.3 for
/// qop=auth; RFC 2069 `H(HA1:nonce:HA2)` without qop).
fn request_digest(c: &Credentials<'_>, method: &str, ha1: &Ha1) -> String {
    let hash = c.algorithm.hash();
    let cnonce = c.cnonce.as_deref().unwrap_or("");
    let session_key;
    let ha1 = if c.algorithm.is_sess() {
        session_key = hash.hex(&[ha1.hex.as_bytes(), c.nonce.as_bytes(), cnonce.as_bytes()]);
        &session_key
    } else {
        &ha1.hex
    };
    let ha2 = hash.hex(&[method.as_bytes(), c.uri.as_bytes()]);
    match (c.qop, c.nc) {
        (Some(qop), Some(nc)) => {
            let nc = format!("{nc:08x}");
            hash.hex(&[
                ha1.as_bytes(),
                c.nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                qop.as_str().as_bytes(),
                ha2.as_bytes(),
            ])
        }
        _ => hash.hex(&[ha1.as_bytes(), c.nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// Compares the expected lowercase hex digest with the one received (hex digits of any case)
/// in time that depends only on their lengths.
fn digests_match(expected: &str, received: &str) -> bool {
    let (a, b) = (expected.as_bytes(), received.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y.to_ascii_lowercase()));
    std::hint::black_box(diff) == 0
}

/// The highest nonce count seen per live nonce (RFC 7616 §5.5), bounded in size.
///
/// Only nonces whose credentials verified are counted, so the table fills with authenticated
/// requests only. When full, the nonce counted first is forgotten: size it above the number
/// of nonces in use during one nonce lifetime, or a forgotten nonce's requests can be replayed
/// until it expires.
#[derive(Debug)]
pub struct NonceCounts {
    capacity: usize,
    /// The highest count per nonce.
    last: HashMap<Box<str>, u32>,
    /// The counted nonces, first counted first, with their expiry: for purging and eviction.
    order: VecDeque<(Box<str>, u64)>,
}

impl NonceCounts {
    /// A table remembering at most `capacity` nonces (at least one).
    pub fn new(capacity: usize) -> NonceCounts {
        NonceCounts { capacity: capacity.max(1), last: HashMap::new(), order: VecDeque::new() }
    }

    /// Records `nc` for `nonce` (fresh until `expires`) at `now`, if it is higher than any
    /// count seen for that nonce; `false` for a replay. Purges expired nonces on the way.
    pub fn advance(&mut self, nonce: &str, nc: u32, expires: u64, now: u64) -> bool {
        self.purge(now);
        if let Some(last) = self.last.get_mut(nonce) {
            if nc <= *last {
                return false;
            }
            *last = nc;
            return true;
        }
        while self.last.len() >= self.capacity {
            let Some((oldest, _)) = self.order.pop_front() else { break };
            self.last.remove(&oldest);
        }
        self.last.insert(nonce.into(), nc);
        self.order.push_back((nonce.into(), expires));
        true
    }

    /// Forgets the nonces at the front that have expired. All nonces live equally long, so
    /// the front is roughly the oldest; one counted late may linger a little, harmlessly (its
    /// requests are stale before they reach this table).
    fn purge(&mut self, now: u64) {
        while let Some((nonce, expires)) = self.order.front() {
            if *expires >= now {
                break;
            }
            self.last.remove(nonce);
            self.order.pop_front();
        }
    }

    /// Nonces remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// The most nonces remembered at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// What a client proves it knows: the password, or the HA1 of the challenge's hash.
#[derive(Clone, Copy)]
pub enum ClientSecret<'a> {
    /// The password itself.
    Password(&'a str),
    /// A precomputed HA1; it must be for the challenge's [`Algorithm::base`], or the server
    /// will find the response wrong.
    Ha1(&'a Ha1),
}

impl<'a> From<&'a str> for ClientSecret<'a> {
    fn from(password: &'a str) -> ClientSecret<'a> {
        ClientSecret::Password(password)
    }
}

impl<'a> From<&'a String> for ClientSecret<'a> {
    fn from(password: &'a String) -> ClientSecret<'a> {
        ClientSecret::Password(password)
    }
}

impl<'a> From<&'a Ha1> for ClientSecret<'a> {
    fn from(ha1: &'a Ha1) -> ClientSecret<'a> {
        ClientSecret::Ha1(ha1)
    }
}

impl fmt::Debug for ClientSecret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientSecret::Password(_) => "Password(..)",
            ClientSecret::Ha1(_) => "Ha1(..)",
        })
    }
}

/// Answers `challenge` as a client would, for a request with `method` and Request-URI `uri`:
/// with `qop=auth`, the caller's random `cnonce` and nonce count `nc` (1 for the first
/// request on a nonce, then 2, 3, ...) when the challenge offers it; as RFC 2069 otherwise.
/// Print the result for the `Authorization` / `Proxy-Authorization` header value.
pub fn respond<'a, 's>(
    challenge: &'a Challenge,
    username: &'a str,
    secret: impl Into<ClientSecret<'s>>,
    method: &str,
    uri: &'a str,
    cnonce: &'a str,
    nc: u32,
) -> Credentials<'a> {
    let qop = challenge.qop_auth.then_some(Qop::Auth);
    let mut creds = Credentials {
        username: Cow::Borrowed(username),
        realm: Cow::Borrowed(&challenge.realm),
        nonce: Cow::Borrowed(&challenge.nonce),
        uri: Cow::Borrowed(uri),
        response: Cow::Borrowed(""),
        algorithm: challenge.algorithm,
        cnonce: (qop.is_some() || challenge.algorithm.is_sess()).then_some(Cow::Borrowed(cnonce)),
        opaque: challenge.opaque.as_deref().map(Cow::Borrowed),
        qop,
        nc: qop.map(|_| nc),
    };
    let computed;
    let ha1 = match secret.into() {
        ClientSecret::Password(password) => {
            computed = Ha1::new(challenge.algorithm, username, &challenge.realm, password);
            &computed
        }
        ClientSecret::Ha1(ha1) => ha1,
    };
    creds.response = Cow::Owned(request_digest(&creds, method, ha1));
    creds
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];
    const REALM: &str = "cc.example.com";
    const NOW: u64 = 1_800_000_000;

    fn md5_hex(text: &str) -> String {
        hex(&Md5::digest(text.as_bytes()))
    }

    /// RFC 7616 §3.9.1 (GET /dir/index.html, Mufasa / Circle of Life) as a challenge.
    fn rfc7616_challenge(algorithm: Algorithm) -> Challenge {
        Challenge {
            realm: "http-auth@example.org".into(),
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            opaque: Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS".into()),
            algorithm,
            qop_auth: true,
            stale: false,
        }
    }

    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    #[test]
    fn rfc7616_worked_example() {
        // The two responses RFC 7616 §3.9.1 publishes.
        for (algorithm, expected) in [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (Algorithm::Sha256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ] {
            let ch = rfc7616_challenge(algorithm);
            let c = respond(
                &ch,
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                RFC7616_CNONCE,
                1,
            );
            assert_eq!(c.response, expected, "{algorithm}");
            // The header the RFC shows parses back to the same credentials.
            let header = format!(
                "Digest username=\"Mufasa\",\r\n    realm=\"http-auth@example.org\",\r\n    uri=\"/dir/index.html\",\r\n    algorithm={algorithm},\r\n    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n    nc=00000001,\r\n    cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n    qop=auth,\r\n    response=\"{expected}\",\r\n    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            );
            assert_eq!(Credentials::parse(header.as_bytes()).unwrap(), c);
            // An HA1 instead of the password gives the same response.
            let ha1 = ha1(algorithm, "Mufasa", "http-auth@example.org", "Circle of Life");
            let by_ha1 = respond(&ch, "Mufasa", &ha1, "GET", "/dir/index.html", RFC7616_CNONCE, 1);
            assert_eq!(by_ha1.response, expected);
        }
    }

    #[test]
    fn other_algorithms_match_independent_computations() {
        // The RFC 7616 §3.9.1 inputs with the other algorithms, as SIPp computes them with
        // OpenSSL (its auth.cpp unit tests).
        for (algorithm, expected) in [
            (Algorithm::Md5Sess, "e783283f46242139c486a698fec7211d"),
            (
                Algorithm::Sha256Sess,
                "2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7",
            ),
            (
                Algorithm::Sha512_256,
                "430d05014cecc49cab6fbe03176d41a1da86cbfe24a16580e22aaad928d960d0",
            ),
            (
                Algorithm::Sha512_256Sess,
                "3f2a34f923c38b0fb26dce2fdfc2ce326c23cecf86fbb1444f3e51fbbc2cb92e",
            ),
        ] {
            let ch = rfc7616_challenge(algorithm);
            let c = respond(
                &ch,
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                RFC7616_CNONCE,
                1,
            );
            assert_eq!(c.response, expected, "{algorithm}");
        }
        // RFC 7616 §3.9.2 (SHA-512-256; the response as corrected by erratum 4897).
        let ch = Challenge {
            realm: "api@example.org".into(),
            nonce: "5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK".into(),
            opaque: None,
            algorithm: Algorithm::Sha512_256,
            qop_auth: true,
            stale: false,
        };
        let cnonce = "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v";
        let c =
            respond(&ch, "J\u{e4}s\u{f8}n Doe", "Secret, or not?", "GET", "/doe.json", cnonce, 1);
        assert_eq!(c.response, "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5");
        // Without qop (RFC 2069), as SIPp answers a challenge that offers none.
        for (algorithm, nonce, expected) in [
            (
                Algorithm::Md5,
                "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                "db94e01e92f2b09a52a234eeca8b90f7",
            ),
            (
                Algorithm::Sha256,
                "ZaGxV2WhsCtREI2EsiD1LR0RYd",
                "91b58523b983191b52d14455a2599631990110c974ed2e4b4b49bc6053af04ce",
            ),
        ] {
            let ch = Challenge::parse(&format!(
                "Digest \r\n realm=\"testrealm@host.com\",\r\n nonce=\"{nonce}\"\r\n, algorithm={algorithm}"
            ))
            .unwrap();
            assert!(!ch.qop_auth);
            let c =
                respond(&ch, "testuser", "secret", "REGISTER", "sip:sip:example.com", "unused", 1);
            assert_eq!((c.response.as_ref(), c.qop, c.cnonce, c.nc), (expected, None, None, None));
        }
    }

    #[test]
    fn round_trip_for_each_algorithm() {
        let issuer = NonceIssuer::new(SECRET);
        let order =
            [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha512_256, Algorithm::Sha256Sess];
        let list = challenges(&issuer, REALM, NOW, [1; 8], &order, false);
        assert_eq!(list.len(), order.len());
        for ch in &list {
            let mut counts = NonceCounts::new(16);
            let parsed = Challenge::parse(ch.to_header_value().as_bytes()).unwrap();
            assert_eq!(&parsed, ch);
            let header =
                respond(&parsed, "alice", "secret", "REGISTER", "sip:cc.example.com", "abc", 1)
                    .to_string();
            let creds = Credentials::parse(header.as_bytes()).unwrap();
            assert_eq!(creds.algorithm, ch.algorithm);
            let ha1 = Ha1::new(creds.algorithm.base(), "alice", REALM, "secret");
            let verdict = verify(&creds, "REGISTER", &ha1, REALM, &issuer, &mut counts, NOW + 10);
            assert_eq!(verdict, Verdict::Verified, "{}", ch.algorithm);
        }
        // Every challenge carries the same nonce, so a client may answer any of them.
        assert!(list.windows(2).all(|w| w[0].nonce == w[1].nonce));
    }

    #[test]
    fn default_challenges_offer_md5_first() {
        let issuer = NonceIssuer::new(SECRET);
        let list = challenges(&issuer, REALM, NOW, [9; 8], &DEFAULT_ORDER, false);
        let nonce = issuer.issue(NOW, [9; 8]);
        let printed: Vec<String> = list.iter().map(Challenge::to_header_value).collect();
        assert_eq!(
            printed,
            [
                format!(
                    "Digest realm=\"cc.example.com\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\""
                ),
                format!(
                    "Digest realm=\"cc.example.com\", nonce=\"{nonce}\", algorithm=SHA-256, qop=\"auth\""
                ),
            ]
        );
        let stale =
            challenges(&issuer, REALM, NOW, [9; 8], &[Algorithm::Sha256, Algorithm::Md5], true);
        assert_eq!(stale[0].algorithm, Algorithm::Sha256, "the order is the caller's");
        assert!(stale[0].to_string().ends_with(", algorithm=SHA-256, qop=\"auth\", stale=true"));
        assert!(Challenge::parse(&stale[1].to_string()).unwrap().stale);
    }

    /// The MD5 response computed step by step from RFC 2617 §3.2.2, independently of the code
    /// under test.
    fn md5_response(
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nonce: &str,
        cnonce: &str,
    ) -> String {
        let ha1 = md5_hex(&format!("{user}:{REALM}:{password}"));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        md5_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"))
    }

    #[test]
    fn sipp_authorization_verifies() {
        // SIPp's [authentication] keyword: no spaces, cnonce/nc/qop before uri.
        let issuer = NonceIssuer::new(SECRET);
        let nonce = issuer.issue(NOW, [2; 8]);
        let uri = "sip:cc.example.com:5060";
        let response = md5_response("1001", "s3cret", "REGISTER", uri, &nonce, "6b8b4567327b23c6");
        let line = format!(
            "Digest username=\"1001\",realm=\"cc.example.com\",cnonce=\"6b8b4567327b23c6\",nc=00000001,qop=auth,uri=\"{uri}\",nonce=\"{nonce}\",response=\"{response}\",algorithm=MD5"
        );
        let creds = Credentials::parse(line.as_bytes()).unwrap();
        assert_eq!((creds.username.as_ref(), creds.uri.as_ref()), ("1001", uri));
        assert_eq!((creds.qop, creds.nc), (Some(Qop::Auth), Some(1)));
        let ha1 = Ha1::new(Algorithm::Md5, "1001", REALM, "s3cret");
        let mut counts = NonceCounts::new(8);
        assert_eq!(
            verify(&creds, "REGISTER", &ha1, REALM, &issuer, &mut counts, NOW),
            Verdict::Verified
        );
    }

    #[test]
    fn jssip_authorization_verifies() {
        // JsSIP 3.x DigestAuthentication.toString(): algorithm first, ", " between params,
        // qop and nc bare; here a Proxy-Authorization for an INVITE.
        let issuer = NonceIssuer::new(SECRET);
        let nonce = issuer.issue(NOW, [3; 8]);
        let uri = "sip:+12025550199@cc.example.com";
        let response = md5_response("agent1042", "pw", "INVITE", uri, &nonce, "q8v1x0pk2l7m");
        let line = format!(
            "Digest algorithm=MD5, username=\"agent1042\", realm=\"cc.example.com\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", qop=auth, cnonce=\"q8v1x0pk2l7m\", nc=00000001"
        );
        let creds = Credentials::parse(line.as_bytes()).unwrap();
        let ha1 = Ha1::new(Algorithm::Md5, "agent1042", REALM, "pw");
        let mut counts = NonceCounts::new(8);
        assert_eq!(
            verify(&creds, "INVITE", &ha1, REALM, &issuer, &mut counts, NOW + 1),
            Verdict::Verified
        );
        // The same credentials on a REGISTER do not verify: the method is hashed in.
        let mut counts = NonceCounts::new(8);
        assert_eq!(
            verify(&creds, "REGISTER", &ha1, REALM, &issuer, &mut counts, NOW + 1),
            Verdict::Rejected(Rejection::WrongResponse)
        );
    }

    /// Credentials for `nc` on a nonce issued at `issued`, with `password`.
    fn answer(issuer: &NonceIssuer, issued: u64, password: &str, nc: u32) -> Credentials<'static> {
        let ch = challenges(issuer, REALM, issued, [5; 8], &DEFAULT_ORDER, false).remove(0);
        let header =
            respond(&ch, "alice", password, "REGISTER", "sip:cc.example.com", "cn", nc).to_string();
        let creds = Credentials::parse(header.as_bytes()).unwrap();
        // Owned, so the test can keep it past `header`.
        Credentials {
            username: creds.username.into_owned().into(),
            realm: creds.realm.into_owned().into(),
            nonce: creds.nonce.into_owned().into(),
            uri: creds.uri.into_owned().into(),
            response: creds.response.into_owned().into(),
            algorithm: creds.algorithm,
            cnonce: creds.cnonce.map(|c| c.into_owned().into()),
            opaque: None,
            qop: creds.qop,
            nc: creds.nc,
        }
    }

    fn check(
        creds: &Credentials<'_>,
        issuer: &NonceIssuer,
        counts: &mut NonceCounts,
        now: u64,
    ) -> Verdict {
        let ha1 = Ha1::new(Algorithm::Md5, "alice", REALM, "secret");
        verify(creds, "REGISTER", &ha1, REALM, issuer, counts, now)
    }

    #[test]
    fn stale_nonce() {
        let issuer = NonceIssuer::new(SECRET).with_lifetime(60);
        let mut counts = NonceCounts::new(8);
        let creds = answer(&issuer, NOW, "secret", 1);
        assert_eq!(issuer.check(&creds.nonce, NOW + 60), NonceStatus::Fresh { expires: NOW + 60 });
        assert_eq!(check(&creds, &issuer, &mut counts, NOW + 61), Verdict::Stale);
        // A wrong password on a stale nonce is just wrong: stale=true is for the right one.
        let wrong = answer(&issuer, NOW, "guess", 1);
        assert_eq!(
            check(&wrong, &issuer, &mut counts, NOW + 61),
            Verdict::Rejected(Rejection::WrongResponse)
        );
        // Issued well in the future (the clock stepped back): stale as well.
        let ahead = answer(&issuer, NOW + 100, "secret", 1);
        assert_eq!(check(&ahead, &issuer, &mut counts, NOW), Verdict::Stale);
        assert_eq!(NonceIssuer::new(SECRET).lifetime(), 300);
    }

    #[test]
    fn forged_nonces() {
        let issuer = NonceIssuer::new(SECRET);
        let mut counts = NonceCounts::new(8);
        let creds = answer(&issuer, NOW, "secret", 1);
        // Another secret (e.g. before a restart).
        let other = NonceIssuer::new([8; 32]);
        assert_eq!(
            check(&creds, &other, &mut counts, NOW),
            Verdict::Rejected(Rejection::ForgedNonce)
        );
        // The issue time pushed forward to live longer, a MAC digit changed, garbage.
        let nonce = creds.nonce.to_string();
        let later = format!("{:016x}{}", NOW + 3600, &nonce[16..]);
        let flipped = format!("{}{}", &nonce[..63], if nonce.ends_with('0') { '1' } else { '0' });
        for bad in
            [later, flipped, nonce.to_uppercase(), String::new(), "zz".into(), "é".repeat(32)]
        {
            assert_eq!(issuer.check(&bad, NOW), NonceStatus::Invalid, "{bad}");
        }
        // Even with a response computed for the forged nonce, it is refused before the hash.
        let mut forged = creds.clone();
        forged.nonce = format!("{:016x}{}", NOW + 3600, &nonce[16..]).into();
        assert_eq!(
            check(&forged, &issuer, &mut counts, NOW),
            Verdict::Rejected(Rejection::ForgedNonce)
        );
        assert_eq!(check(&creds, &issuer, &mut counts, NOW), Verdict::Verified);
    }

    #[test]
    fn wrong_password_realm_and_algorithm() {
        let issuer = NonceIssuer::new(SECRET);
        let mut counts = NonceCounts::new(8);
        let wrong = answer(&issuer, NOW, "guess", 1);
        assert_eq!(
            check(&wrong, &issuer, &mut counts, NOW),
            Verdict::Rejected(Rejection::WrongResponse)
        );
        let creds = answer(&issuer, NOW, "secret", 2);
        let ha1 = Ha1::new(Algorithm::Md5, "alice", REALM, "secret");
        assert_eq!(
            verify(&creds, "REGISTER", &ha1, "other.example.com", &issuer, &mut counts, NOW),
            Verdict::Rejected(Rejection::WrongRealm)
        );
        let sha = Ha1::new(Algorithm::Sha256, "alice", REALM, "secret");
        assert_eq!(
            verify(&creds, "REGISTER", &sha, REALM, &issuer, &mut counts, NOW),
            Verdict::Rejected(Rejection::AlgorithmMismatch)
        );
        let mut auth_int = creds.clone();
        auth_int.qop = Some(Qop::AuthInt);
        assert_eq!(
            check(&auth_int, &issuer, &mut counts, NOW),
            Verdict::Rejected(Rejection::UnsupportedQop)
        );
        // A tampered field (here the URI) changes the expected response.
        let mut moved = creds.clone();
        moved.uri = "sip:elsewhere.example.com".into();
        assert_eq!(
            check(&moved, &issuer, &mut counts, NOW),
            Verdict::Rejected(Rejection::WrongResponse)
        );
        // The response compares case-insensitively (hex digits).
        let mut upper = creds.clone();
        upper.response = creds.response.to_uppercase().into();
        assert_eq!(check(&upper, &issuer, &mut counts, NOW), Verdict::Verified);
    }

    #[test]
    fn replayed_nonce_count() {
        let issuer = NonceIssuer::new(SECRET);
        let mut counts = NonceCounts::new(8);
        let first = answer(&issuer, NOW, "secret", 1);
        assert_eq!(check(&first, &issuer, &mut counts, NOW), Verdict::Verified);
        assert_eq!(
            check(&first, &issuer, &mut counts, NOW + 1),
            Verdict::Rejected(Rejection::Replay)
        );
        let third = answer(&issuer, NOW, "secret", 3);
        assert_eq!(check(&third, &issuer, &mut counts, NOW + 2), Verdict::Verified);
        // A lower count than the last is a replay too.
        let second = answer(&issuer, NOW, "secret", 2);
        assert_eq!(
            check(&second, &issuer, &mut counts, NOW + 3),
            Verdict::Rejected(Rejection::Replay)
        );
        // Counting starts afresh on another nonce.
        let other = answer(&issuer, NOW + 1, "secret", 1);
        assert_eq!(check(&other, &issuer, &mut counts, NOW + 3), Verdict::Verified);
        // RFC 2069 credentials (no qop) have no count to check.
        let mut no_qop = first.clone();
        (no_qop.qop, no_qop.nc, no_qop.cnonce) = (None, None, None);
        no_qop.response = request_digest(
            &no_qop,
            "REGISTER",
            &Ha1::new(Algorithm::Md5, "alice", REALM, "secret"),
        )
        .into();
        assert_eq!(check(&no_qop, &issuer, &mut counts, NOW + 4), Verdict::Verified);
        assert_eq!(check(&no_qop, &issuer, &mut counts, NOW + 4), Verdict::Verified);
    }

    #[test]
    fn nonce_counts_are_bounded_and_purged() {
        let mut counts = NonceCounts::new(2);
        assert!(counts.advance("a", 1, 100, 0));
        assert!(counts.advance("b", 1, 100, 0));
        assert!(counts.advance("c", 1, 100, 0));
        assert_eq!((counts.len(), counts.capacity()), (2, 2), "the oldest is evicted");
        assert!(counts.advance("a", 1, 100, 0), "an evicted nonce is forgotten");
        assert!(counts.advance("a", 2, 100, 0));
        assert!(!counts.advance("a", 2, 100, 0));
        assert!(counts.advance("d", 1, 300, 200));
        assert_eq!(counts.len(), 1, "expired nonces are purged");
        assert!(!counts.is_empty());
        assert_eq!(NonceCounts::new(0).capacity(), 1);
    }

    #[test]
    fn tolerant_parsing() {
        // Folded lines, tabs, spaces around '=', any case, escapes, unknown params, empty
        // list elements, quoted qop/nc/algorithm, unquoted values.
        let odd = b"  dIGEST\tUSERNAME = \"a\\\"b\\\\c\" ,\r\n\t realm=\"r\",,nonce=n, Uri=sip:bob@example.com,\r\n response=\"x\", foo=\"bar, baz\", qop=\"auth\", nc=\"0000000a\", cnonce=\"c\", Algorithm=\"sha-256\", userhash=false";
        let c = Credentials::parse(&odd[..]).unwrap();
        assert_eq!(c.username, "a\"b\\c");
        assert_eq!(
            (c.realm.as_ref(), c.nonce.as_ref(), c.uri.as_ref()),
            ("r", "n", "sip:bob@example.com")
        );
        assert_eq!((c.algorithm, c.qop, c.nc), (Algorithm::Sha256, Some(Qop::Auth), Some(10)));
        // Values without escapes borrow from the header.
        assert!(matches!(c.realm, Cow::Borrowed(_)));
        // A folded line inside a quoted string is one space; UTF-8 survives.
        let c = Credentials::parse(
            "Digest username=\"J\u{e4}s\u{f8}n \r\n  Doe\", realm=r, nonce=n, uri=u, response=x",
        )
        .unwrap();
        assert_eq!(c.username, "J\u{e4}s\u{f8}n Doe");
        // No qop: RFC 2069 credentials.
        let c =
            Credentials::parse("Digest username=a, realm=r, nonce=n, uri=u, response=x").unwrap();
        assert_eq!((c.qop, c.nc, c.cnonce, c.algorithm), (None, None, None, Algorithm::Md5));
        // Printing escapes what needs it and parses back the same.
        let printed =
            respond(&rfc7616_challenge(Algorithm::Md5), "a\"b\\c", "p", "GET", "/", "c", 7)
                .to_string();
        assert!(printed.contains("username=\"a\\\"b\\\\c\""), "{printed}");
        assert_eq!(Credentials::parse(&printed).unwrap().username, "a\"b\\c");
    }

    #[test]
    fn printing_never_breaks_a_header() {
        let ch = rfc7616_challenge(Algorithm::Md5);
        let mut c = respond(&ch, "evil\r\nVia: x", "p", "GET", "/", "c", 1);
        c.opaque = Some("o\n".into());
        let printed = c.to_string();
        assert!(!printed.contains(['\r', '\n']), "{printed}");
        assert_eq!(Credentials::parse(&printed).unwrap().username, "evil  Via: x");
        let ch = Challenge { realm: "r\r\n".into(), ..rfc7616_challenge(Algorithm::Md5) };
        assert!(!ch.to_string().contains(['\r', '\n']));
    }

    #[test]
    fn parse_errors() {
        use DigestError::*;
        let base = "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"";
        let cases: &[(&str, DigestError)] = &[
            ("Basic dXNlcjpwYXNz", NotDigest),
            ("", NotDigest),
            ("Digestive username=a", NotDigest),
            ("Digest=x", Malformed("expected a space after Digest")),
            ("Digest username=\"a\", username=\"b\"", Duplicate("username")),
            ("Digest username=a, realm=r, nonce=n, uri=u, NONCE=m", Duplicate("nonce")),
            ("Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\"", Missing("response")),
            ("Digest realm=r", Missing("username")),
            ("Digest", Missing("username")),
            (
                "Digest username=a, realm=r, nonce=n, uri=\"\", response=x",
                Invalid { param: "uri", expected: "a URI" },
            ),
            ("Digest username=\"open", Malformed("unterminated quoted string")),
            ("Digest username=\"a\\", Malformed("bad escape in a quoted string")),
            ("Digest username=\"a\u{1}\"", Malformed("control character in a quoted string")),
            ("Digest =x", Malformed("expected a parameter name")),
            ("Digest username", Malformed("expected '=' after a parameter name")),
            ("Digest username=", Malformed("expected a parameter value")),
            ("Digest username=a realm=r", Malformed("expected ',' between parameters")),
            ("Digest username=\"a\"realm=r", Malformed("expected ',' between parameters")),
        ];
        for (value, error) in cases {
            assert_eq!(Credentials::parse(*value).as_ref(), Err(error), "{value}");
        }
        let with =
            |extra: &str| Credentials::parse(&format!("{base}, {extra}")).map(|_| ()).unwrap_err();
        let bad_nc = Invalid { param: "nc", expected: "8 lowercase hex digits" };
        for nc in ["1", "000000001", "0000000A", "0000000g", "\"\""] {
            assert_eq!(with(&format!("qop=auth, cnonce=c, nc={nc}")), bad_nc, "{nc}");
        }
        assert_eq!(with("qop=auth, nc=00000001"), Missing("cnonce"));
        assert_eq!(with("qop=auth, cnonce=c"), Missing("nc"));
        assert_eq!(with("algorithm=MD5-sess"), Missing("cnonce"));
        assert_eq!(
            with("qop=auth-conf, cnonce=c, nc=00000001"),
            UnsupportedQop("auth-conf".into())
        );
        assert_eq!(with("algorithm=SHA-512"), UnknownAlgorithm("SHA-512".into()));
        assert_eq!(Credentials::parse(&b"Digest username=\"\xff\""[..]), Err(NotUtf8));
        // auth-int parses (the verifier refuses it).
        let auth_int = format!("{base}, qop=auth-int, cnonce=c, nc=00000001");
        let c = Credentials::parse(&auth_int).unwrap();
        assert_eq!(c.qop, Some(Qop::AuthInt));
        // Challenges.
        assert_eq!(Challenge::parse("Digest nonce=n"), Err(Missing("realm")));
        assert_eq!(Challenge::parse("Digest realm=r"), Err(Missing("nonce")));
        assert_eq!(
            Challenge::parse("Digest realm=r, nonce=n, qop=\"auth-int\""),
            Err(UnsupportedQop("auth-int".into()))
        );
        let ch = Challenge::parse(
            "Digest realm=r, nonce=n, qop=\"auth-int, auth\", stale=TRUE, domain=\"sip:x\"",
        )
        .unwrap();
        assert!(ch.qop_auth && ch.stale);
    }

    #[test]
    fn errors_read_well_and_stay_on_one_line() {
        let e = Credentials::parse(
            "Digest username=a, realm=r, nonce=n, uri=u, response=x, nc=1, qop=auth, cnonce=c",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "Bad digest parameter nc: expected 8 lowercase hex digits");
        assert_eq!(DigestError::Missing("uri").to_string(), "Missing digest parameter uri");
        assert_eq!(DigestError::NotDigest.to_string(), "Authentication scheme is not Digest");
        let hostile = "Digest username=a, realm=r, nonce=n, uri=u, response=x, algorithm=\"MD5\\\u{1}\r\n 9\u{e9}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"";
        let e = Credentials::parse(hostile).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("Unknown digest algorithm MD5"), "{text}");
        assert!(text.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{text}");
        assert!(text.len() < 80, "{text}");
        assert_eq!(Rejection::Replay.to_string(), "replayed nonce count");
    }

    #[test]
    fn algorithms_and_ha1() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::parse(a.as_str()), Some(a));
            assert_eq!(Algorithm::parse(&a.as_str().to_lowercase()), Some(a));
            assert_eq!(Algorithm::parse(&a.to_string().to_uppercase()), Some(a));
            assert_eq!(a.base().base(), a.base());
            assert_eq!(a.is_sess(), a.as_str().ends_with("-sess"));
        }
        assert_eq!(Algorithm::parse("SHA-512"), None);
        let md5 = ha1(Algorithm::Md5Sess, "a", "r", "p");
        assert_eq!(md5.algorithm(), Algorithm::Md5);
        assert_eq!(md5.as_hex(), md5_hex("a:r:p"));
        assert_eq!(Ha1::from_hex(Algorithm::Md5, &md5.as_hex().to_uppercase()), Some(md5.clone()));
        assert_eq!(Ha1::from_hex(Algorithm::Sha256, md5.as_hex()), None);
        assert_eq!(Ha1::from_hex(Algorithm::Md5, &"g".repeat(32)), None);
        let sha = Ha1::new(Algorithm::Sha512_256, "a", "r", "p");
        assert_eq!(
            Ha1::from_hex(Algorithm::Sha512_256, sha.as_hex()).map(|h| h.algorithm()),
            Some(Algorithm::Sha512_256)
        );
        // Secrets stay out of logs.
        assert_eq!(format!("{md5:?}"), "Ha1(MD5, ..)");
        assert_eq!(format!("{:?}", ClientSecret::from("pw")), "Password(..)");
        assert!(!format!("{:?}", NonceIssuer::new(SECRET)).contains('7'));
    }

    /// A tiny deterministic generator (xorshift64) for the mutation test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let issuer = NonceIssuer::new(SECRET);
        let nonce = issuer.issue(NOW, [4; 8]);
        let seeds = [
            format!(
                "Digest username=\"alice\", realm=\"cc.example.com\", nonce=\"{nonce}\", uri=\"sip:x\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5-sess, qop=auth, cnonce=\"c\", nc=00000001"
            ),
            format!(
                "Digest realm=\"r\", nonce=\"{nonce}\", algorithm=SHA-256, qop=\"auth,auth-int\", stale=TRUE, opaque=\"o\\\"\""
            ),
            "Digest username=\"J\u{e4}s\u{f8}n\r\n Doe\", realm=r, nonce=n, uri=u, response=x"
                .to_owned(),
        ];
        let specials = b"\",=\\ \t\r\n\x00\x7f\xc3\xa4\xff";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut counts = NonceCounts::new(64);
        let ha1 = Ha1::new(Algorithm::Md5, "alice", REALM, "secret");
        for seed in &seeds {
            for _ in 0..5000 {
                let mut bytes = seed.as_bytes().to_vec();
                for _ in 0..1 + rng.below(6) {
                    let pos = rng.below(bytes.len() + 1);
                    match rng.below(5) {
                        0 if pos < bytes.len() => bytes[pos] = rng.next() as u8,
                        1 => bytes.truncate(pos),
                        2 => bytes.insert(pos, specials[rng.below(specials.len())]),
                        3 if pos < bytes.len() => {
                            bytes.remove(pos);
                        }
                        _ => {
                            let from = rng.below(bytes.len());
                            let piece: Vec<u8> =
                                bytes[from..].iter().take(rng.below(12)).copied().collect();
                            bytes.splice(pos..pos, piece);
                        }
                    }
                }
                if let Ok(creds) = Credentials::parse(&bytes[..]) {
                    let _ = verify(&creds, "REGISTER", &ha1, REALM, &issuer, &mut counts, NOW);
                    Credentials::parse(&creds.to_string()).unwrap();
                }
                if let Ok(ch) = Challenge::parse(&bytes[..]) {
                    assert_eq!(Challenge::parse(&ch.to_string()).unwrap(), ch);
                }
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    let _ = issuer.check(text, NOW);
                    let _ = issuer.check(text.get(..64).unwrap_or(text), NOW);
                }
            }
        }
    }
}
