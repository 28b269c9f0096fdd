//! Digest authentication of agents (RFC 3261 §22, RFC 7616, RFC 8760): challenges and checks
//! against the agents' stored HA1s. The realm is `[sip] domain` (DESIGN.md).
//!
//! Outcomes map to responses: no credentials for our realm -> 401/407 with both challenges
//! (MD5 first); right credentials on an old nonce -> 401/407 with `stale=true`; credentials
//! that do not parse or whose `uri` is not the Request-URI -> 400; an unknown user or a wrong
//! response -> 403 (RFC 3261 §22.1 allows re-challenging; a clear refusal stops clients from
//! retrying a wrong password forever).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sip::digest::{
    self, Algorithm, Challenge, Credentials, DEFAULT_ORDER, Ha1, NonceCounts, NonceIssuer, Verdict,
};
use sip::{HeaderName, Request};

use crate::agents::LiveRoster;

/// The stored HA1s of one agent.
#[derive(Debug, Clone)]
pub struct Secret {
    pub md5: Ha1,
    pub sha256: Ha1,
}

impl Secret {
    /// Both HA1s of a password (the password itself is not kept).
    pub fn from_password(user: &str, realm: &str, password: &str) -> Secret {
        Secret {
            md5: Ha1::new(Algorithm::Md5, user, realm, password),
            sha256: Ha1::new(Algorithm::Sha256, user, realm, password),
        }
    }

    fn for_algorithm(&self, a: Algorithm) -> &Ha1 {
        match a.base() {
            Algorithm::Md5 => &self.md5,
            _ => &self.sha256,
        }
    }
}

/// Who may authenticate: agent id -> HA1s.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    agents: HashMap<String, Secret>,
}

impl Directory {
    pub fn new() -> Directory {
        Directory::default()
    }

    pub fn insert(&mut self, agent: &str, secret: Secret) {
        self.agents.insert(agent.to_owned(), secret);
    }

    /// Whether `agent` may authenticate.
    pub fn contains(&self, agent: &str) -> bool {
        self.agents.contains_key(agent)
    }

    pub fn remove(&mut self, agent: &str) {
        self.agents.remove(agent);
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}

/// The result of checking a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated as this agent.
    Agent(String),
    /// Answer with these challenges (401 for REGISTER, 407 otherwise).
    Challenge(Vec<String>),
    /// 400: credentials that cannot be used.
    Bad(&'static str),
    /// 403: wrong password or unknown user.
    Forbidden,
}

/// The digest state of the edge.
#[derive(Debug)]
pub struct Auth {
    realm: String,
    issuer: NonceIssuer,
    counts: NonceCounts,
    order: Vec<Algorithm>,
    /// Who may authenticate: the directory of the roster in force (admin writes apply at once).
    roster: Arc<LiveRoster>,
}

impl Auth {
    /// An authenticator for `realm` with a fresh random nonce secret, challenging with
    /// `algorithms` in that order.
    pub fn new(realm: &str, algorithms: &[Algorithm], roster: Arc<LiveRoster>) -> Auth {
        let mut secret = [0u8; 32];
        fill_random(&mut secret);
        Auth {
            realm: realm.to_owned(),
            issuer: NonceIssuer::new(secret),
            counts: NonceCounts::new(100_000),
            order: if algorithms.is_empty() { DEFAULT_ORDER.to_vec() } else { algorithms.to_vec() },
            roster,
        }
    }

    /// The header that carries credentials for `req` (RFC 3261 §22.2, §22.3).
    fn header(req: &Request) -> HeaderName {
        if *req.method() == sip::Method::Register {
            HeaderName::Authorization
        } else {
            HeaderName::ProxyAuthorization
        }
    }

    /// The header that carries challenges in the response to `req`.
    pub fn challenge_header(req: &Request) -> HeaderName {
        if *req.method() == sip::Method::Register {
            HeaderName::WwwAuthenticate
        } else {
            HeaderName::ProxyAuthenticate
        }
    }

    /// Checks the credentials of `req`.
    pub fn check(&mut self, req: &Request) -> Outcome {
        let now = unix_now();
        let mut ours = None;
        for value in req.headers().get_all(Auth::header(req)) {
            let Ok(text) = std::str::from_utf8(value) else {
                return Outcome::Bad("Bad Authorization");
            };
            match Credentials::parse(text) {
                Ok(c) if c.realm == self.realm => {
                    ours = Some(c);
                    break;
                }
                // Credentials for another realm (a downstream proxy's) are not ours to judge.
                Ok(_) => {}
                // An unknown scheme (RFC 4475 regaut01) is treated as no credentials.
                Err(digest::DigestError::NotDigest) => {}
                Err(_) => return Outcome::Bad("Bad Authorization"),
            }
        }
        let Some(creds) = ours else { return self.challenge(req, now, false) };
        if creds.uri != req.uri_str() {
            return Outcome::Bad("Authorization URI Mismatch");
        }
        let roster = self.roster.current();
        let Some(secret) = roster.directory.agents.get(creds.username.as_ref()) else {
            return Outcome::Forbidden;
        };
        let ha1 = secret.for_algorithm(creds.algorithm).clone();
        let verdict = digest::verify(
            &creds,
            req.method().as_str(),
            &ha1,
            &self.realm,
            &self.issuer,
            &mut self.counts,
            now,
        );
        match verdict {
            Verdict::Verified => Outcome::Agent(creds.username.into_owned()),
            Verdict::Stale => self.challenge(req, now, true),
            // A forged or expired-and-forgotten nonce (e.g. from before a restart): ask again.
            Verdict::Rejected(digest::Rejection::ForgedNonce) => self.challenge(req, now, false),
            Verdict::Rejected(_) => Outcome::Forbidden,
        }
    }

    /// The challenges for `req`, MD5 where its client will answer it: browsers (JsSIP 3.13)
    /// keep only the *last* challenge header of a response and know only MD5, SIPp takes the
    /// first. So over WebSocket MD5 goes last (SHA-256 first, RFC 7616 §3.7's preference);
    /// elsewhere first.
    fn challenge(&self, req: &Request, now: u64, stale: bool) -> Outcome {
        let mut salt = [0u8; 8];
        fill_random(&mut salt);
        let browser = req.headers().top_via().is_ok_and(|v| {
            v.transport.eq_ignore_ascii_case("WS") || v.transport.eq_ignore_ascii_case("WSS")
        });
        let reversed: Vec<Algorithm>;
        let order: &[Algorithm] = if browser {
            reversed = self.order.iter().rev().copied().collect();
            &reversed
        } else {
            &self.order
        };
        let list = digest::challenges(&self.issuer, &self.realm, now, salt, order, stale);
        Outcome::Challenge(list.iter().map(Challenge::to_header_value).collect())
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Fills `buf` from the crypto provider's random generator (nonce secrets, the emergency
/// route marker).
pub(crate) fn fill_random(buf: &mut [u8]) {
    if crate::transport::tls::provider().secure_random.fill(buf).is_err() {
        // aws-lc-rs cannot fail here on Linux; if it ever did, a nonce secret from the clock
        // is weaker but the server keeps working.
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8;
        }
    }
}
