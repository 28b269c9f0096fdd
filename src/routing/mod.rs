//! Routing: the dialplan (`[dialplan] dir`, DESIGN.md "Configuration contract") compiled into
//! an immutable table, and the holder that swaps it atomically on reload.
//!
//! # Which rules apply to a request
//!
//! - From a trunk — its source IP is the trunk URI's host (an IP address, or an address its
//!   DNS name resolves to: the core matches those, `crate::transport::dns`) or inside its
//!   `sources` — a request is inbound: the `[[inbound]]` rules map the dialled DID to an
//!   agent, a group or another trunk (transit). A trunk match wins over `[[trusted]]`.
//! - From an authenticated agent or a `[[trusted]]` network it is outbound: the `[[route]]`
//!   rules, first match in file order (files in name order), on the normalised number
//!   ([`normalise`]); a route's trunks are tried in order (failover).
//!
//! # Reload
//!
//! [`Dialplans::reload`] builds the new table aside and swaps it in only when every file is
//! valid; otherwise the running table stays and every problem is returned as `file:line`.
//!
//! The emergency section is parsed and validated here; what it drives (dialstrings, trunk
//! choice, callback leases) lives in [`crate::emergency`].

pub mod cidr;
mod file;
pub mod number;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use regex::Regex;
use sip::transport::Transport;

use cidr::Cidr;
pub use number::{E164, NumberRange, normalise};

/// The default port of SIP over TLS (RFC 3261 §26.2).
pub const TLS_PORT: u16 = 5061;

/// One problem in a dialplan file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialplanError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for DialplanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// The kind of a trunk (DESIGN.md): who provides the PSTN service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkKind {
    /// The carrier's own calling plan.
    DirectOffer,
    /// The customer's own SBC.
    DirectRouting,
}

/// The Request-URI form a trunk expects for emergency calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestUriForm {
    #[default]
    Dialstring,
    E164,
    Urn,
}

/// What a trunk expects on emergency calls.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrunkEmergency {
    /// `Resource-Priority` value (RFC 4412, e.g. `esnet.1`).
    pub resource_priority: Option<String>,
    /// Send a PIDF-LO location (RFC 6442).
    pub pidf: bool,
    pub request_uri: RequestUriForm,
}

/// A trunk toward the PSTN.
#[derive(Debug, Clone)]
pub struct Trunk {
    pub name: String,
    pub kind: TrunkKind,
    /// The URI as written.
    pub uri: String,
    /// Host as written (name, IPv4, bracketed IPv6).
    pub host: String,
    /// The host when it is an IP address (`None`: a DNS name, resolved off the core).
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub secure: bool,
    /// The transport the URI pins (`;transport=`), if any.
    pub transport: Option<Transport>,
    pub sources: Vec<Cidr>,
    /// DIDs this trunk owns.
    pub numbers: Vec<NumberRange>,
    pub emergency: TrunkEmergency,
    /// Probed with OPTIONS to detect a dead trunk (`probe = false` turns it off).
    pub probe: bool,
    /// `tls_ca`: the only certificate authorities a TLS connection to this trunk trusts
    /// (`None`: the system's roots).
    pub tls_ca: Option<TrunkCa>,
}

/// The trust anchors of one trunk's TLS connections (`tls_ca`, a PEM file).
#[derive(Debug, Clone)]
pub struct TrunkCa {
    /// The file as resolved (relative to the dialplan file that names it).
    pub path: PathBuf,
    pub roots: Arc<rustls::RootCertStore>,
}

impl Trunk {
    /// Whether a request from `ip` comes from this trunk, as far as the dialplan alone tells
    /// (an IP host or `sources`; the addresses of a host name are the resolver's).
    pub fn sends_from(&self, ip: IpAddr) -> bool {
        self.ip == Some(ip) || self.sources.iter().any(|c| c.contains(ip))
    }

    /// Whether connections to this trunk use TLS: a `sips:` URI or `;transport=tls`.
    pub fn uses_tls(&self) -> bool {
        self.transport.map_or(self.secure, |t| t == Transport::Tls)
    }

    /// The Request-URI for `user` on this trunk, over TCP when the request is too large for
    /// UDP and the trunk does not pin a transport (RFC 3261 §18.1.1: over 1300 bytes).
    pub fn request_uri(&self, user: &str, request_len: usize) -> String {
        self.uri_for(Some(user), request_len)
    }

    /// The trunk itself as a loose route (`<sip:host:port;transport=..;lr>`), for a Request-URI
    /// that names no host (an emergency URN, RFC 5031); the same transport rule.
    pub fn route(&self, request_len: usize) -> String {
        format!("<{};lr>", self.uri_for(None, request_len))
    }

    fn uri_for(&self, user: Option<&str>, request_len: usize) -> String {
        // Built piecewise: one per forwarded call, and `format!` per piece showed in profiles.
        let mut uri = String::with_capacity(64);
        uri.push_str(if self.secure { "sips:" } else { "sip:" });
        if let Some(u) = user {
            uri.push_str(u);
            uri.push('@');
        }
        uri.push_str(&self.host);
        if let Some(p) = self.port {
            uri.push(':');
            uri.push_str(&p.to_string());
        }
        match self.transport {
            Some(t) => {
                uri.push_str(";transport=");
                uri.push_str(t.uri_param());
            }
            None if request_len > 1300 => uri.push_str(";transport=tcp"),
            None => {}
        }
        uri
    }
}

/// An outbound route.
#[derive(Debug, Clone)]
pub struct Route {
    pub pattern: Regex,
    /// Indexes into [`Dialplan::trunks`], in failover order.
    pub trunks: Vec<usize>,
    pub file: PathBuf,
    pub line: usize,
}

/// Who an inbound call (or a PSAP callback fallback) rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundTarget {
    Agent(String),
    Group(String),
    Trunk(String),
    /// An E.164 number (only as `callback_fallback`).
    Number(String),
}

/// The `[emergency]` section, with DESIGN.md's defaults.
#[derive(Debug, Clone)]
pub struct Emergency {
    /// Dialstrings per location country.
    pub countries: BTreeMap<String, Vec<String>>,
    /// Test numbers (same path, marked as tests).
    pub test: Vec<String>,
    /// Outside-line prefixes an agent may dial first (`9` then `911`), per country: a prefix
    /// pairs only with its own country's dialstrings.
    pub outside_line: BTreeMap<String, Vec<String>>,
    pub callback_pool: Vec<NumberRange>,
    pub callback_lease: Duration,
    /// How long an expired callback number stays out of the pool, so that a late PSAP call
    /// never reaches another agent.
    pub callback_quarantine: Duration,
    pub callback_fallback: Option<InboundTarget>,
    pub site_number: Option<E164>,
    pub failover_after: Duration,
}

impl Default for Emergency {
    fn default() -> Emergency {
        let us = vec!["911".to_owned(), "933".to_owned()];
        Emergency {
            countries: BTreeMap::from([("US".to_owned(), us.clone()), ("PR".to_owned(), us)]),
            test: vec!["933".to_owned()],
            outside_line: BTreeMap::from([
                ("US".to_owned(), vec!["9".to_owned()]),
                ("PR".to_owned(), vec!["9".to_owned()]),
            ]),
            callback_pool: Vec::new(),
            callback_lease: Duration::from_secs(3600),
            callback_quarantine: Duration::from_secs(3600),
            callback_fallback: None,
            site_number: None,
            failover_after: Duration::from_secs(2),
        }
    }
}

/// A compiled, immutable dialplan.
#[derive(Debug, Clone)]
pub struct Dialplan {
    pub trunks: Vec<Trunk>,
    pub routes: Vec<Route>,
    inbound_exact: HashMap<String, InboundTarget>,
    inbound_patterns: Vec<(Regex, InboundTarget)>,
    trusted: Vec<Cidr>,
    pub emergency: Emergency,
    /// The files it was built from.
    pub files: Vec<PathBuf>,
}

impl Dialplan {
    /// A dialplan with no rules (and the emergency defaults).
    pub fn empty() -> Dialplan {
        Dialplan {
            trunks: Vec::new(),
            routes: Vec::new(),
            inbound_exact: HashMap::new(),
            inbound_patterns: Vec::new(),
            trusted: Vec::new(),
            emergency: Emergency::default(),
            files: Vec::new(),
        }
    }

    /// Reads and compiles every `*.toml` in `dir`.
    pub fn load(dir: &Path) -> Result<Dialplan, Vec<DialplanError>> {
        file::load_dir(dir)
    }

    /// Compiles dialplan texts given as (file name, contents).
    pub fn from_texts(files: &[(&str, &str)]) -> Result<Dialplan, Vec<DialplanError>> {
        file::compile_texts(files)
    }

    /// The trunk a request from `ip` comes from.
    pub fn trunk_for_source(&self, ip: IpAddr) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.sends_from(ip))
    }

    /// Whether `ip` is in a `[[trusted]]` network.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// The first route matching the normalised dialled number, with its trunks in order.
    pub fn outbound(&self, number: &str) -> Option<(&Route, Vec<&Trunk>)> {
        let route = self.routes.iter().find(|r| r.pattern.is_match(number))?;
        Some((route, route.trunks.iter().filter_map(|&i| self.trunks.get(i)).collect()))
    }

    /// Who an inbound call to `did` rings: an exact DID rule, else the first matching pattern.
    pub fn inbound(&self, did: &str) -> Option<&InboundTarget> {
        self.inbound_exact
            .get(did)
            .or_else(|| self.inbound_patterns.iter().find(|(p, _)| p.is_match(did)).map(|(_, t)| t))
    }

    /// The trunk named `name`.
    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.name == name)
    }
}

/// The running dialplan and where it is reloaded from.
#[derive(Debug)]
pub struct Dialplans {
    dir: PathBuf,
    current: RwLock<Arc<Dialplan>>,
}

impl Dialplans {
    /// Loads `dir`; fails with every problem when a file is invalid.
    pub fn load(dir: &Path) -> Result<Dialplans, Vec<DialplanError>> {
        let plan = Dialplan::load(dir)?;
        Ok(Dialplans { dir: dir.to_owned(), current: RwLock::new(Arc::new(plan)) })
    }

    /// A holder around a table built elsewhere (tests).
    pub fn with(dir: &Path, plan: Dialplan) -> Dialplans {
        Dialplans { dir: dir.to_owned(), current: RwLock::new(Arc::new(plan)) }
    }

    /// The table in force.
    pub fn current(&self) -> Arc<Dialplan> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Rebuilds from the directory; swaps only when everything is valid.
    pub fn reload(&self) -> Result<Arc<Dialplan>, Vec<DialplanError>> {
        let plan = Arc::new(Dialplan::load(&self.dir)?);
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = plan.clone();
        Ok(plan)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests;
