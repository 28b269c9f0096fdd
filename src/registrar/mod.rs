//! The registrar (RFC 3261 §10.3) and the location table it keeps.
//!
//! Pure rules over a parsed REGISTER: no I/O and no clock reads (`now` is passed in), so every
//! case is a table test. Authentication happens before (the caller passes the authenticated
//! user); persistence of the table (the registrations snapshot) happens after, in the store.
//!
//! # Flows (RFC 5626)
//!
//! A binding remembers the flow its REGISTER arrived on. Requests for the AoR are sent over
//! that flow, not to the Contact, when the Contact cannot be reached directly: a browser's
//! Contact host is `*.invalid` (JsSIP), a client asked for outbound (`+sip.instance` with
//! `reg-id`), or it registered over a connection (TCP, TLS, WS, WSS), which is the only way
//! back through its NAT. A UDP client whose Contact names a reachable address is reached at
//! that address. When a connection closes, the bindings that depend on it go
//! ([`Location::remove_flow`]).
//!
//! A snapshot of the table outlives a restart ([`snapshot`]): the UDP bindings, written by a
//! thread of their own a few seconds after a change and loaded back at start.

pub mod snapshot;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sip::header::typed::{Contact, NameAddr};
use sip::transaction::{FlowId, Peer};
use sip::{HeaderName, Request, Response, Uri};

/// Registrar policy (`[sip]` settings).
#[derive(Debug, Clone)]
pub struct Policy {
    /// The domain a REGISTER's Request-URI and To must name (`[sip] domain`).
    pub domain: String,
    /// Other hosts accepted in place of the domain: the edge's own addresses, so that phones
    /// configured with the edge's IP (SIPp, desk phones) register too.
    pub aliases: Vec<String>,
    /// Expiry granted when the client asks for none (RFC 3261 §10.3 step 7).
    pub default_expires: u32,
    /// Shorter non-zero expiries are refused with 423 (RFC 3261 §10.3 step 7).
    pub min_expires: u32,
    /// Longer expiries are shortened to this.
    pub max_expires: u32,
    /// Bindings per AoR; more are refused with 403.
    pub max_bindings: usize,
}

impl Policy {
    /// Whether `host` names this registrar (the domain or an alias).
    pub fn accepts(&self, host: &str) -> bool {
        host_is(host, &self.domain) || self.aliases.iter().any(|a| host_is(host, a))
    }

    pub fn new(domain: &str) -> Policy {
        Policy {
            domain: domain.to_owned(),
            aliases: Vec::new(),
            default_expires: 3600,
            min_expires: 60,
            max_expires: 7200,
            max_bindings: 10,
        }
    }
}

/// One registered contact of an AoR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The address-of-record's user part (the agent id).
    pub aor: String,
    /// The Contact URI as the client wrote it.
    pub contact: String,
    /// Preference, 0..=1000 (q=1.0 is 1000).
    pub q: u16,
    pub expires_at: Instant,
    pub call_id: String,
    pub cseq: u32,
    /// RFC 5626 `+sip.instance` and `reg-id`.
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
    /// Where the REGISTER came from (transport, address, connection).
    pub source: Peer,
    /// Whether requests must go over `source` rather than to the Contact (see module docs).
    pub via_flow: bool,
}

impl Binding {
    /// Seconds left, for the Contact `expires` parameter of a 200.
    pub fn remaining(&self, now: Instant) -> u64 {
        self.expires_at.saturating_duration_since(now).as_secs()
    }
}

/// Why a REGISTER was refused: each maps to one response (RFC 3261 §10.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// 404: the Request-URI or To names another domain (step 1, 5).
    NotOurDomain,
    /// 403: the authenticated user may not register this AoR (step 4).
    Forbidden,
    /// 400: `*` mixed with other contacts or with a non-zero expiry; an unparsable Contact.
    BadContact(&'static str),
    /// 423 with `Min-Expires` (step 7).
    IntervalTooBrief { min: u32 },
    /// 403: more bindings than the policy allows.
    TooManyBindings,
    /// 420: a Require option the registrar does not support (step 2).
    BadExtension(String),
}

impl RegisterError {
    /// The response to send, built from the request.
    pub fn response(&self, req: &Request) -> Response {
        let (status, reason) = match self {
            RegisterError::NotOurDomain => (404, "Not Found"),
            RegisterError::Forbidden => (403, "Forbidden"),
            RegisterError::BadContact(why) => (400, *why),
            RegisterError::IntervalTooBrief { .. } => (423, "Interval Too Brief"),
            RegisterError::TooManyBindings => (403, "Too Many Registrations"),
            RegisterError::BadExtension(_) => (420, "Bad Extension"),
        };
        let mut r = Response::for_request(req, status, reason);
        match self {
            RegisterError::IntervalTooBrief { min } => {
                r.headers_mut().push(HeaderName::MinExpires, min.to_string());
            }
            RegisterError::BadExtension(option) => {
                r.headers_mut().push(HeaderName::Unsupported, option.clone());
            }
            _ => {}
        }
        r
    }
}

/// Extensions this registrar understands in `Require` (RFC 3327 path, RFC 5626 outbound).
const SUPPORTED: &[&str] = &["path", "outbound", "gruu"];

/// The location table: AoR -> bindings.
#[derive(Debug, Default)]
pub struct Location {
    bindings: HashMap<String, Vec<Binding>>,
}

impl Location {
    pub fn new() -> Location {
        Location::default()
    }

    /// The AoR a REGISTER is for, if its To names our domain.
    pub fn aor_of(req: &Request, policy: &Policy) -> Result<String, RegisterError> {
        let to = req.headers().to().map_err(|_| RegisterError::BadContact("Bad To"))?;
        match to.uri {
            Uri::Sip(u) if policy.accepts(u.host_raw) => u
                .user_decoded()
                .and_then(|user| String::from_utf8(user.into_owned()).ok())
                .ok_or(RegisterError::NotOurDomain),
            _ => Err(RegisterError::NotOurDomain),
        }
    }

    /// Applies a REGISTER from `source`, already authenticated as `user`, and returns the
    /// 200 OK listing every current binding of the AoR (RFC 3261 §10.3 step 8).
    pub fn register(
        &mut self,
        now: Instant,
        req: &Request,
        source: Peer,
        user: &str,
        policy: &Policy,
    ) -> Result<Response, RegisterError> {
        // Step 1: the Request-URI names this registrar's domain.
        let ruri_ok = matches!(req.uri(), Ok(Uri::Sip(u)) if policy.accepts(u.host_raw));
        if !ruri_ok {
            return Err(RegisterError::NotOurDomain);
        }
        // Step 2: Require.
        for value in req.headers().get_all(HeaderName::Require) {
            let text = std::str::from_utf8(value).unwrap_or("");
            for option in sip::header::typed::tokens(text) {
                if !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(option)) {
                    return Err(RegisterError::BadExtension(option.to_owned()));
                }
            }
        }
        // Steps 4-5: the AoR, and whether this user may register it.
        let aor = Location::aor_of(req, policy)?;
        if aor != user {
            return Err(RegisterError::Forbidden);
        }
        let h = req.headers();
        let call_id = h.call_id().map_err(|_| RegisterError::BadContact("Bad Call-ID"))?.to_owned();
        let cseq = h.cseq().map_err(|_| RegisterError::BadContact("Bad CSeq"))?.seq;
        let header_expires = match h.get(HeaderName::Expires) {
            None => None,
            Some(v) => Some(
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|t| sip::header::typed::parse_number(t).ok())
                    .ok_or(RegisterError::BadContact("Bad Expires"))?,
            ),
        };

        // Step 6-7: the Contacts.
        let mut contacts = Vec::new();
        let mut star = false;
        for value in h.get_all(HeaderName::Contact) {
            let text =
                std::str::from_utf8(value).map_err(|_| RegisterError::BadContact("Bad Contact"))?;
            for c in Contact::parse_list(text) {
                match c.map_err(|_| RegisterError::BadContact("Bad Contact"))? {
                    Contact::Star => star = true,
                    Contact::Addr(a) => contacts.push(a),
                }
            }
        }
        let existing = self.bindings.entry(aor.clone()).or_default();
        if star {
            // RFC 3261 §10.2.2: `*` only alone and only with Expires: 0.
            if !contacts.is_empty() || header_expires != Some(0) {
                return Err(RegisterError::BadContact("Invalid Contact *"));
            }
            existing.retain(|b| b.call_id == call_id && b.cseq >= cseq);
        }
        let mut updates = Vec::with_capacity(contacts.len());
        for c in &contacts {
            let asked = c.expires().or(header_expires).unwrap_or(policy.default_expires);
            if asked != 0 && asked < policy.min_expires {
                return Err(RegisterError::IntervalTooBrief { min: policy.min_expires });
            }
            updates.push((c, asked.min(policy.max_expires)));
        }
        for (c, expires) in updates {
            let instance = c.sip_instance().map(str::to_owned);
            let reg_id = c.reg_id();
            let same = |b: &Binding| match (&instance, reg_id, &b.instance, b.reg_id) {
                // RFC 5626 §6: the same instance and reg-id is the same flow, whatever the URI.
                (Some(i), Some(r), Some(bi), Some(br)) => i == bi && r == br,
                _ => uri_eq(&b.contact, c.uri_raw),
            };
            let found = existing.iter().position(same);
            if let Some(i) = found {
                let b = &existing[i];
                // Step 7: an older or repeated request for the same Call-ID changes nothing.
                if b.call_id == call_id && cseq <= b.cseq {
                    continue;
                }
            }
            if expires == 0 {
                if let Some(i) = found {
                    existing.remove(i);
                }
                continue;
            }
            let binding = Binding {
                aor: aor.clone(),
                contact: c.uri_raw.to_owned(),
                q: c.q_millis().unwrap_or(1000),
                expires_at: now + Duration::from_secs(u64::from(expires)),
                call_id: call_id.clone(),
                cseq,
                via_flow: needs_flow(c, &source, reg_id),
                instance,
                reg_id,
                source,
            };
            match found {
                Some(i) => existing[i] = binding,
                None if existing.len() >= policy.max_bindings => {
                    return Err(RegisterError::TooManyBindings);
                }
                None => existing.push(binding),
            }
        }
        existing.retain(|b| b.expires_at > now);
        let current = existing.clone();
        if existing.is_empty() {
            self.bindings.remove(&aor);
        }

        let mut ok = Response::for_request(req, 200, "OK");
        for b in &current {
            ok.headers_mut()
                .push(HeaderName::Contact, format!("<{}>;expires={}", b.contact, b.remaining(now)));
        }
        if current.iter().any(|b| b.reg_id.is_some()) {
            // RFC 5626 §6: tell the client its outbound flow is in use.
            ok.headers_mut().push(HeaderName::Require, "outbound");
        }
        Ok(ok)
    }

    /// The live bindings of `aor`, best first (highest q, then most recent).
    pub fn lookup(&self, now: Instant, aor: &str) -> Vec<&Binding> {
        let mut v: Vec<&Binding> = self
            .bindings
            .get(aor)
            .map(|b| b.iter().filter(|b| b.expires_at > now).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| b.q.cmp(&a.q).then(b.expires_at.cmp(&a.expires_at)));
        v
    }

    /// The flow to reach a registered Contact over, when that binding needs its flow: how an
    /// in-dialog request whose Request-URI is a browser's `*.invalid` Contact finds its way.
    /// (A scan of the bindings: fine for a contact centre's few thousand agents; an index by
    /// Contact is the next step if it ever shows in a profile.)
    pub fn flow_for_contact(&self, now: Instant, contact: &str) -> Option<Peer> {
        self.bindings
            .values()
            .flatten()
            .find(|b| b.via_flow && b.expires_at > now && uri_eq(&b.contact, contact))
            .map(|b| b.source)
    }

    /// The agent with a live binding registered from `peer` (the same transport and address,
    /// and the same connection on connection transports): how an emergency INVITE from a
    /// registered softphone is attributed without a challenge (DESIGN.md, step 4).
    pub fn aor_for_source(&self, now: Instant, peer: &Peer) -> Option<&str> {
        self.bindings
            .values()
            .flatten()
            .find(|b| {
                b.expires_at > now
                    && b.source.transport == peer.transport
                    && b.source.addr == peer.addr
                    && (b.source.flow.is_none() || b.source.flow == peer.flow)
            })
            .map(|b| b.aor.as_str())
    }

    /// Drops every expired binding; returns how many went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut gone = 0;
        self.bindings.retain(|_, v| {
            let before = v.len();
            v.retain(|b| b.expires_at > now);
            gone += before - v.len();
            !v.is_empty()
        });
        gone
    }

    /// Drops the bindings reachable only over `flow` (its connection closed).
    pub fn remove_flow(&mut self, flow: FlowId) -> usize {
        let mut gone = 0;
        self.bindings.retain(|_, v| {
            let before = v.len();
            v.retain(|b| !(b.via_flow && b.source.flow == Some(flow)));
            gone += before - v.len();
            !v.is_empty()
        });
        gone
    }

    /// Every live binding (for the registrations snapshot and the admin API).
    pub fn all(&self, now: Instant) -> impl Iterator<Item = &Binding> {
        self.bindings.values().flatten().filter(move |b| b.expires_at > now)
    }

    /// Restores a binding from the snapshot.
    pub fn restore(&mut self, binding: Binding) {
        self.bindings.entry(binding.aor.clone()).or_default().push(binding);
    }

    /// Number of bindings (live or not yet expired by [`Location::expire`]).
    pub fn len(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }
}

fn host_is(host: &str, domain: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.trim_end_matches('.').eq_ignore_ascii_case(domain.trim_end_matches('.'))
}

/// Whether a binding must be reached over the flow it registered on (module docs).
fn needs_flow(c: &NameAddr<'_>, source: &Peer, reg_id: Option<u32>) -> bool {
    let invalid = matches!(c.uri, Uri::Sip(u) if invalid_host(u.host_raw));
    invalid || reg_id.is_some() || source.transport.is_reliable()
}

/// A Contact host no one can reach directly (`*.invalid`, RFC 7118 §5: what browsers send).
fn invalid_host(host: &str) -> bool {
    host.to_ascii_lowercase().ends_with(".invalid")
}

/// URI equality for bindings (RFC 3261 §19.1.4, the parts that matter for a registrar):
/// scheme, user and password case-sensitive, host case-insensitive, port and the `transport`,
/// `user`, `maddr` parameters compared; other parameters ignored.
fn uri_eq(a: &str, b: &str) -> bool {
    match (Uri::parse(a), Uri::parse(b)) {
        (Ok(Uri::Sip(x)), Ok(Uri::Sip(y))) => {
            let param = |u: &sip::uri::SipUri<'_>, n: &str| {
                u.params.get(n).flatten().map(str::to_ascii_lowercase)
            };
            x.secure == y.secure
                && x.user_decoded() == y.user_decoded()
                && x.password == y.password
                && x.host_raw.eq_ignore_ascii_case(y.host_raw)
                && x.port == y.port
                && ["transport", "user", "maddr"].iter().all(|n| param(&x, n) == param(&y, n))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests;
