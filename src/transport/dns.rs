//! Trunk host names, resolved off the core (RFC 3263 §4: NAPTR, then SRV, then A and AAAA).
//!
//! A trunk URI may name its host (`sip:carrier.example`, `sip:sbc.carrier.example:5060`). The
//! core never waits for DNS: [`refresh`] runs on a task of its own, resolves every trunk host
//! name of the dialplan in force, and keeps the answers in [`TrunkHosts`], which the core, the
//! TLS connector and the admin API read synchronously.
//!
//! # Contract
//!
//! - **NAPTR.** A URI with a host name, no port and no `;transport=` gets a NAPTR query
//!   first (RFC 3263 §4.1, RFC 3403). Of its records, those with flags `s`, no regexp, a
//!   replacement, and a service we support ([`naptr_service`]: `SIP+D2U` UDP, `SIP+D2T` TCP,
//!   `SIPS+D2T` TLS) whose transport the URI allows ([`naptr_services`]: only `SIPS+D2T` for
//!   `sips:`) and the edge can send over ([`TrunkHosts::offering`]: it has a listen address
//!   of it) are kept; only those of the lowest order, by preference ([`naptr_order`]). The
//!   first whose replacement has SRV records gives the targets, as below, each with the
//!   record's transport ([`HostAddr::transport`]): the core sends to it over that transport,
//!   and probes it so. No usable record (none, NXDOMAIN, a server that refuses or fails the
//!   query, or no SRV records behind any): the SRV query the URI implies (`_sip._udp`), then,
//!   when that has no records, `_sip._tcp` when the edge has TCP (§4.1: "SRV queries for
//!   those transport protocols it supports"; its targets are TCP ones). A trunk that gets a
//!   NAPTR query is kept under its URI (`sip:carrier.example`, [`lookup_key`]).
//! - **Which lookup.** A URI with a host name and no port gets an SRV query (RFC 3263
//!   §4.2; the name from [`srv_query`]: `_sip._udp`, `_sip._tcp` or `_sips._tcp`). Its records
//!   are put in RFC 2782 order ([`srv_order`]: priority, then weighted random), and each
//!   record's target becomes its addresses, at the record's port: the A and
//!   AAAA records of the answer's additional section when it has them for that target, else
//!   A and AAAA queries of our own. A URI with a port, and a name whose SRV query finds no
//!   records (NXDOMAIN or an empty answer), is reached at the URI's port or the transport's
//!   default (5060, 5061 for TLS) at the name's A and AAAA addresses: asked of `[dns] servers`
//!   when that is set (with their TTL), else of the system resolver (`getaddrinfo` on tokio's
//!   blocking pool: `/etc/hosts` applies). A single SRV record whose target is `.` means the
//!   service is not offered: no address.
//! - **The exchange is ours** (the messages are `hickory-proto`'s): a query over UDP to each
//!   server in turn, a random id, recursion desired, [`QUERY_TIMEOUT`] each; a truncated
//!   answer (TC) is asked again over TCP (RFC 1035 §4.2.2, 2-byte length prefix). UDP queries
//!   carry an EDNS(0) OPT record (RFC 6891) advertising [`EDNS_PAYLOAD`] bytes, so that
//!   answers up to that size need no TCP retry; a server that answers FORMERR without an OPT
//!   record (it does not do EDNS, §7) is asked again without one. An answer
//!   is taken only from the server asked, with the id and question of the query. The servers
//!   are `[dns] servers`, or when that is empty the `nameserver` lines of `/etc/resolv.conf`
//!   (read at every round, port 53).
//! - **When.** A name is resolved when a dialplan that names it comes into force (checked
//!   every [`WATCH`]), then again when its answer expires: the smallest TTL of the NAPTR, SRV
//!   and address records used, bounded to [`MIN_TTL`]..[`MAX_TTL`]. `getaddrinfo` gives no TTL:
//!   [`REFRESH`] stands in for it, and for the retry after a failed lookup.
//! - **Serve stale.** A lookup that fails keeps the last good targets for [`STALE_FOR`] (a DNS
//!   outage does not take a carrier away, RFC 8767); an SRV query that fails (timeout,
//!   SERVFAIL, no server) with no good targets to keep falls back to the system resolver's
//!   A/AAAA, so that a trunk reachable at its default port stays reachable. After
//!   [`STALE_FOR`], or when the name never resolved, the trunk has no address and routing
//!   treats it like a trunk that is down: it is skipped (logged), its `lifeline_trunk_up` is
//!   0.
//! - **Never waited for.** A name not yet resolved (the first lookup still running) has no
//!   address either: a call routed at that moment skips it rather than waiting — an emergency
//!   call never waits for DNS.
//! - **Targets.** Each resolved (address, port) is a target of its own ([`HostAddr`]), in
//!   order: failing over from one to the next counts as trying the next target. The weighted
//!   order among SRV records of one priority is drawn again for every call
//!   ([`TrunkHosts::lookup`]), so that the weights share the calls between the targets (RFC
//!   2782) rather than sending every call to one target until the next refresh.
//! - **Sources.** A request whose source IP is one of a trunk's resolved addresses comes from
//!   that trunk (whatever transport NAPTR chose for it). The TLS connector verifies a target
//!   NAPTR sent to TLS as its trunk's ([`TrunkHosts::is_tls_target`]).
//!
//! # Not done
//!
//! - NAPTR records whose regexp is not empty, and non-terminal ones (flags other than `s`:
//!   `a`, or empty for another NAPTR lookup) are skipped, not followed. Only the first order
//!   that has a usable record is used (RFC 3403 §4.1); when none of its records leads to SRV
//!   records, the SRV fallback applies rather than the next order.
//! - NAPTR chooses the transport per trunk, not per request: the same targets serve every
//!   call until the next refresh.
//! - EDNS(0) falls back only on FORMERR; a server that drops queries with an OPT record (no
//!   answer at all) is not asked again without one.
//! - A target that fails a call is not marked down by that failure (RFC 3263 §4.3 leaves that
//!   to the client): routing fails over to the next target, and the trunk probes
//!   ([`crate::core::probe`], every target of a trunk with `probe = true`) put a target that
//!   stops answering after the live ones.
//! - IPv6 `nameserver` lines with a zone (`fe80::1%eth0`) are skipped.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use sip::transport::Transport;

use crate::routing::{Dialplan, Dialplans, Trunk};

/// How often a name resolved by the system resolver (no TTL) is resolved again, and how soon
/// a failed lookup is tried again.
pub const REFRESH: Duration = Duration::from_secs(60);

/// How often the dialplan in force is checked for new names and for answers that expired.
pub const WATCH: Duration = Duration::from_secs(1);

/// How long one system-resolver lookup may take before it counts as a failure.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one DNS server has to answer one query (UDP, and TCP after a truncated answer).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The shortest time an SRV answer is kept before it is asked again, whatever its TTL.
pub const MIN_TTL: Duration = Duration::from_secs(30);

/// The longest time an SRV answer is kept before it is asked again, whatever its TTL.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// How long the last good targets of a name are kept while its lookups fail.
pub const STALE_FOR: Duration = Duration::from_secs(600);

/// The UDP payload size our queries advertise (EDNS(0), RFC 6891 §6.2.5): 1232 bytes, which
/// no path with the IPv6 minimum MTU (1280) fragments (the value of DNS Flag Day 2020).
/// Larger answers come truncated, and are asked again over TCP.
pub const EDNS_PAYLOAD: u16 = 1232;

/// The port DNS servers from `/etc/resolv.conf` are asked at.
pub const DNS_PORT: u16 = 53;

/// One place a trunk name resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostAddr {
    pub ip: IpAddr,
    /// The SRV record's port; `None` (A/AAAA): the URI's port, or the transport's default.
    pub port: Option<u16>,
    /// The transport DNS chose for this target (RFC 3263 §4.1: the NAPTR record's service,
    /// or the SRV service found when the domain has no NAPTR records); `None`: the URI's
    /// (`;transport=`, `sips:`, else UDP).
    pub transport: Option<Transport>,
}

impl HostAddr {
    /// A target at `ip` (and the SRV `port`), over the URI's transport.
    pub fn at(ip: IpAddr, port: Option<u16>) -> HostAddr {
        HostAddr { ip, port, transport: None }
    }
}

impl fmt::Display for HostAddr {
    /// `192.0.2.1`, `192.0.2.1:5070`, or with the transport DNS chose,
    /// `192.0.2.1:5070;transport=tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}", SocketAddr::new(self.ip, port))?,
            None => write!(f, "{}", self.ip)?,
        }
        match self.transport {
            Some(t) => write!(f, ";transport={}", t.uri_param()),
            None => Ok(()),
        }
    }
}

/// What is known of one lookup (an SRV name, or a host name).
#[derive(Debug, Clone)]
struct Entry {
    /// The host name the lookup is for (the key without its SRV service).
    host: String,
    /// The targets in order (empty: none known).
    targets: Vec<HostAddr>,
    /// The SRV records behind `targets`, for the order drawn per call (empty: no SRV).
    records: Vec<Weighted>,
    /// When `targets` were last confirmed.
    good_at: Option<Instant>,
    /// The last lookup failed (and why).
    error: Option<String>,
}

/// The resolved targets of trunk host names, shared between the resolver task (writes) and
/// the core, the connector and the admin API (read, without waiting). Keyed by what was
/// asked ([`lookup_key`]): the URI whose NAPTR records choose the transport
/// (`sip:carrier.example`), the SRV name (`_sip._udp.carrier.example`) or the host name.
#[derive(Debug)]
pub struct TrunkHosts {
    names: RwLock<HashMap<String, Entry>>,
    /// The transports the edge can send over (it has a listen address of that transport for
    /// the Via): a NAPTR record or SRV service of another transport is not used.
    transports: Vec<Transport>,
}

impl Default for TrunkHosts {
    fn default() -> TrunkHosts {
        TrunkHosts::offering(&[Transport::Udp, Transport::Tcp, Transport::Tls])
    }
}

/// What routing may do with a name, now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// These targets, in order.
    Resolved(Vec<HostAddr>),
    /// No answer yet (the first lookup is still running, or the name is new).
    Pending,
    /// The name does not resolve (or not for longer than [`STALE_FOR`]).
    Failed,
}

impl TrunkHosts {
    /// For an edge that can send over UDP, TCP and TLS.
    pub fn new() -> TrunkHosts {
        TrunkHosts::default()
    }

    /// For an edge that can send over `transports` only (those of its listen addresses).
    pub fn offering(transports: &[Transport]) -> TrunkHosts {
        TrunkHosts { names: RwLock::default(), transports: transports.to_vec() }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves a plain map behind: still consistent.
        self.names.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.names.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is known of the lookup `name` (an SRV name or a host name, case-insensitive). The
    /// targets of SRV records sharing a priority come in a weighted order drawn for this call.
    pub fn lookup(&self, name: &str) -> Lookup {
        match self.read().get(&key(name)) {
            None => Lookup::Pending,
            Some(e) if !e.targets.is_empty() => {
                Lookup::Resolved(e.ordered(|sum| random_u32() % sum.saturating_add(1)))
            }
            Some(e) if e.error.is_some() => Lookup::Failed,
            Some(_) => Lookup::Pending,
        }
    }

    /// What is known of `trunk`'s name ([`Lookup::Failed`] for a trunk named by IP address,
    /// which needs no lookup: callers check `trunk.ip` first).
    pub fn lookup_trunk(&self, trunk: &Trunk) -> Lookup {
        match lookup_key(trunk) {
            Some(k) => self.lookup(&k),
            None => Lookup::Failed,
        }
    }

    /// The addresses of host name `host` (from its own lookup, else from an SRV lookup of
    /// it), empty when none are known. For next hops that name a trunk's host outside
    /// routing (in-dialog requests).
    pub fn addrs(&self, host: &str) -> Vec<IpAddr> {
        let host = key(host);
        let names = self.read();
        let entry = names
            .get(&host)
            .filter(|e| !e.targets.is_empty())
            .or_else(|| names.values().find(|e| e.host == host && !e.targets.is_empty()));
        entry.map(|e| e.targets.iter().map(|t| t.ip).collect()).unwrap_or_default()
    }

    /// Whether `ip` is one of the addresses found for host name `host` (by any lookup).
    pub fn has(&self, host: &str, ip: IpAddr) -> bool {
        let host = key(host);
        self.read().values().any(|e| e.host == host && e.targets.iter().any(|t| t.ip == ip))
    }

    /// Whether `ip` is one of the addresses of `trunk`'s targets.
    pub fn has_trunk(&self, trunk: &Trunk, ip: IpAddr) -> bool {
        lookup_key(trunk).is_some_and(|k| {
            self.read().get(&k).is_some_and(|e| e.targets.iter().any(|t| t.ip == ip))
        })
    }

    /// Whether `at` is one of `trunk`'s targets that DNS said to reach over TLS (a NAPTR
    /// `SIPS+D2T` record, or `_sips._tcp` found in its place): the TLS connector verifies it
    /// as that trunk's even though the URI names no TLS.
    pub fn is_tls_target(&self, trunk: &Trunk, at: SocketAddr) -> bool {
        lookup_key(trunk).is_some_and(|k| {
            self.read().get(&k).is_some_and(|e| {
                e.targets.iter().any(|t| {
                    t.ip == at.ip()
                        && t.port.is_none_or(|p| p == at.port())
                        && t.transport == Some(Transport::Tls)
                })
            })
        })
    }

    /// Records a lookup's outcome at `now`.
    fn record(&self, name: &str, host: &str, now: Instant, outcome: Result<Found, String>) {
        let mut names = self.write();
        let entry = names.entry(key(name)).or_insert(Entry {
            host: key(host),
            targets: Vec::new(),
            records: Vec::new(),
            good_at: None,
            error: None,
        });
        match outcome.map(|f| (f.targets, f.records)) {
            Ok((targets, records)) if !targets.is_empty() => {
                if entry.targets != targets {
                    let shown: Vec<String> = targets.iter().map(ToString::to_string).collect();
                    tracing::info!(name, targets = ?shown, "trunk host resolved");
                }
                *entry =
                    Entry { host: key(host), targets, records, good_at: Some(now), error: None };
            }
            outcome @ (Ok(_) | Err(_)) => {
                let error = outcome.err().unwrap_or_else(|| "no address".to_owned());
                let stale = entry.good_at.is_none_or(|t| now.duration_since(t) > STALE_FOR);
                if stale && (!entry.targets.is_empty() || entry.error.is_none()) {
                    tracing::warn!(name, %error, "trunk host does not resolve: its trunk is skipped");
                } else if !stale {
                    tracing::warn!(name, %error, "trunk host lookup failed: keeping the last addresses");
                }
                if stale {
                    entry.targets.clear();
                    entry.records.clear();
                }
                entry.error = Some(error);
            }
        }
    }

    /// Forgets the lookups not in `keep`.
    fn retain(&self, keep: &[String]) {
        self.write().retain(|name, _| keep.contains(name));
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// What [`TrunkHosts`] keeps `trunk`'s targets under: the URI without user, port or
/// parameters when NAPTR applies ([`naptr_services`]: `sip:carrier.example`,
/// `sips:carrier.example`), else its SRV name ([`srv_query`]) or its host name; `None` for a
/// trunk named by IP address.
pub fn lookup_key(trunk: &Trunk) -> Option<String> {
    if trunk.ip.is_some() {
        return None;
    }
    if !naptr_services(trunk).is_empty() {
        let scheme = if trunk.secure { "sips" } else { "sip" };
        return Some(format!("{scheme}:{}", key(&trunk.host)));
    }
    Some(srv_query(trunk).map_or_else(|| key(&trunk.host), |q| q.name))
}

/// One lookup the dialplan in force needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    /// [`lookup_key`].
    key: String,
    host: String,
    /// The transports a NAPTR record may choose (RFC 3263 §4.1), those the URI allows that
    /// the edge can send over; empty: no NAPTR query.
    naptr: Vec<Transport>,
    /// The SRV queries to make in turn when NAPTR chose nothing: the first with records
    /// gives the targets.
    srv: Vec<SrvStep>,
}

/// One SRV query of a [`Wanted`] lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SrvStep {
    query: SrvQuery,
    /// The targets carry the query's transport ([`HostAddr::transport`]): DNS chose it, not
    /// the URI (§4.1's fallback to `_sip._tcp`).
    chosen: bool,
}

impl Wanted {
    /// What resolving `trunk` (named by host name) takes, on an edge that can send over
    /// `transports`. NAPTR applies to a URI without port or transport (RFC 3263 §4.1); when
    /// it chooses nothing, `_sip._udp` (as without NAPTR), then `_sip._tcp` when the edge
    /// has TCP (§4.1: "SRV queries for those transport protocols it supports"); `_sips._tcp`
    /// for a `sips:` URI.
    fn of(trunk: &Trunk, transports: &[Transport]) -> Option<Wanted> {
        let lookup = lookup_key(trunk)?;
        let host = key(&trunk.host);
        let naptr: Vec<Transport> =
            naptr_services(trunk).into_iter().filter(|t| transports.contains(t)).collect();
        let mut srv: Vec<SrvStep> =
            srv_query(trunk).map(|query| SrvStep { query, chosen: false }).into_iter().collect();
        if !naptr_services(trunk).is_empty()
            && !trunk.secure
            && transports.contains(&Transport::Tcp)
        {
            let name = format!("_sip._tcp.{host}");
            let query = SrvQuery { name, transport: Transport::Tcp };
            srv.push(SrvStep { query, chosen: true });
        }
        Some(Wanted { key: lookup, host, naptr, srv })
    }
}

/// The lookups of the trunks of `plan` named by host name (not IP address), without
/// repeats, on an edge that can send over `transports`.
fn wanted(plan: &Dialplan, transports: &[Transport]) -> Vec<Wanted> {
    let mut wanted: Vec<Wanted> =
        plan.trunks.iter().filter_map(|t| Wanted::of(t, transports)).collect();
    wanted.sort_by(|a, b| a.key.cmp(&b.key));
    wanted.dedup_by(|a, b| a.key == b.key);
    wanted
}

/// What one lookup found: the targets in order, and how long they may be kept (`None`: the
/// system resolver, no TTL).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    /// Every target once, in the order drawn at the lookup.
    targets: Vec<HostAddr>,
    /// The SRV records the targets came from (empty: no SRV).
    records: Vec<Weighted>,
    ttl: Option<Duration>,
}

impl Found {
    /// The same targets, reached over `transport` (DNS chose it).
    fn over(mut self, transport: Transport) -> Found {
        let mark = |t: &mut HostAddr| t.transport = Some(transport);
        self.targets.iter_mut().for_each(mark);
        self.records.iter_mut().flat_map(|r| r.targets.iter_mut()).for_each(mark);
        self
    }
}

/// One SRV record as kept for the per-call order: its priority and weight, and its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Weighted {
    priority: u16,
    weight: u16,
    targets: Vec<HostAddr>,
}

impl Entry {
    /// The targets, with the SRV records of each priority in a weighted order drawn with
    /// `random` ([`srv_order`]'s rule); as looked up when there was no SRV, or when no
    /// priority has more than one record.
    fn ordered(&self, random: impl FnMut(u32) -> u32) -> Vec<HostAddr> {
        let shared = self.records.windows(2).any(|w| w[0].priority == w[1].priority);
        if !shared {
            return self.targets.clone();
        }
        let mut out: Vec<HostAddr> = Vec::with_capacity(self.targets.len());
        for record in
            weighted_order(self.records.iter().collect(), |r| (r.priority, r.weight), random)
        {
            for t in &record.targets {
                if !out.contains(t) {
                    out.push(*t);
                }
            }
        }
        out
    }
}

/// Resolves one name with the system resolver: every A and AAAA address, in the resolver's
/// order, without repeats.
async fn resolve(name: &str) -> Result<Vec<IpAddr>, String> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0))).await {
        Ok(Ok(found)) => {
            let mut addrs: Vec<IpAddr> = Vec::new();
            for a in found {
                if !addrs.contains(&a.ip()) {
                    addrs.push(a.ip());
                }
            }
            Ok(addrs)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", LOOKUP_TIMEOUT.as_secs())),
    }
}

/// One wanted lookup (see the module doc): NAPTR, then SRV when the URI allows them, then
/// A/AAAA — asked of `servers` too when they are `[dns] servers` (`configured`), else of the
/// system resolver. `has_targets`: the last good targets are still there to be served
/// stale, so a failed SRV query keeps them rather than falling back. A NAPTR query that
/// fails (a server that refuses NAPTR queries, or no answer) counts as no NAPTR records: the
/// SRV queries follow.
async fn resolve_wanted(
    servers: &[SocketAddr],
    configured: bool,
    wanted: &Wanted,
    has_targets: bool,
) -> Result<Found, String> {
    if !wanted.naptr.is_empty() {
        match resolve_naptr(servers, &wanted.host, &wanted.naptr).await {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(e) => tracing::debug!(host = %wanted.host, error = %e, "NAPTR lookup failed: SRV"),
        }
    }
    let mut failed: Option<String> = None;
    for step in &wanted.srv {
        match resolve_srv(servers, &step.query).await {
            Ok(Some(found)) if step.chosen => return Ok(found.over(step.query.transport)),
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(e) => {
                failed = Some(format!("SRV {}: {e}", step.query.name));
                break;
            }
        }
    }
    if let Some(e) = failed {
        if has_targets {
            return Err(e);
        }
        tracing::debug!(name = %wanted.key, error = %e, "SRV lookup failed: A/AAAA");
    }
    if configured {
        let addrs = target_addresses(servers, &wanted.host).await?;
        let ttl = addrs.iter().map(|(_, ttl)| *ttl).min();
        return Ok(Found {
            targets: addrs.into_iter().map(|(ip, _)| HostAddr::at(ip, None)).collect(),
            records: Vec::new(),
            ttl: ttl.map(|t| Duration::from_secs(u64::from(t))),
        });
    }
    let addrs = resolve(&wanted.host).await?;
    Ok(Found {
        targets: addrs.into_iter().map(|ip| HostAddr::at(ip, None)).collect(),
        records: Vec::new(),
        ttl: None,
    })
}

/// Resolves `wanted` (all at once) into `hosts`; returns when each is due again.
async fn resolve_all(
    hosts: &TrunkHosts,
    servers: &[SocketAddr],
    configured: bool,
    wanted: &[Wanted],
) -> Vec<(String, Instant)> {
    let mut lookups = tokio::task::JoinSet::new();
    for w in wanted {
        let w = w.clone();
        let servers = servers.to_vec();
        let has_targets = matches!(hosts.lookup(&w.key), Lookup::Resolved(_));
        lookups.spawn(async move {
            let outcome = resolve_wanted(&servers, configured, &w, has_targets).await;
            (w, outcome)
        });
    }
    let mut due = Vec::new();
    while let Some(done) = lookups.join_next().await {
        let Ok((w, outcome)) = done else { continue };
        let now = Instant::now();
        let next = match &outcome {
            Ok(found) if !found.targets.is_empty() => {
                found.ttl.map_or(REFRESH, |t| t.clamp(MIN_TTL, MAX_TTL))
            }
            Ok(_) | Err(_) => REFRESH,
        };
        hosts.record(&w.key, &w.host, now, outcome);
        due.push((w.key, now + next));
    }
    due
}

/// Keeps `hosts` current for the dialplan in force until `stop` turns `true` (a lookup still
/// running then is abandoned: shutdown never waits for DNS). `servers`: `[dns] servers`;
/// empty, those of `/etc/resolv.conf`.
pub async fn refresh(
    hosts: Arc<TrunkHosts>,
    dialplans: Arc<Dialplans>,
    servers: Vec<SocketAddr>,
    mut stop: watch::Receiver<bool>,
) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    loop {
        let work = async {
            let wanted = wanted(&dialplans.current(), &hosts.transports);
            let keys: Vec<String> = wanted.iter().map(|w| w.key.clone()).collect();
            hosts.retain(&keys);
            due.retain(|k, _| keys.contains(k));
            let now = Instant::now();
            let now_due: Vec<Wanted> =
                wanted.into_iter().filter(|w| due.get(&w.key).is_none_or(|t| *t <= now)).collect();
            if !now_due.is_empty() {
                let configured = !servers.is_empty();
                let servers = if configured { servers.clone() } else { system_servers().await };
                due.extend(resolve_all(&hosts, &servers, configured, &now_due).await);
            }
            tokio::time::sleep(WATCH).await;
        };
        tokio::select! {
            () = work => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// The DNS servers of `/etc/resolv.conf` (none when it cannot be read).
async fn system_servers() -> Vec<SocketAddr> {
    let read = tokio::task::spawn_blocking(|| std::fs::read_to_string("/etc/resolv.conf")).await;
    match read {
        Ok(Ok(text)) => resolv_conf_servers(&text),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "/etc/resolv.conf cannot be read: no DNS server for SRV");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

/// The `nameserver` lines of a resolv.conf(5) text, at port 53, in order. Comments (`#`,
/// `;`) and other options are ignored, and so are addresses that do not parse (an IPv6
/// address with a zone among them).
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, DNS_PORT))
        })
        .collect()
}

/// Resolves `query`: `Ok(None)` when it has no SRV records (NXDOMAIN, or an answer without
/// any), else the targets in [`srv_order`] with the smallest TTL of the records used.
async fn resolve_srv(servers: &[SocketAddr], query: &SrvQuery) -> Result<Option<Found>, String> {
    let name = dns_name(&query.name)?;
    let answer = exchange(servers, &name, RecordType::SRV).await?;
    let records = srv_records(&answer);
    if records.is_empty() {
        return Ok(None);
    }
    let mut ttl = records.iter().map(|(_, ttl)| *ttl).min().unwrap_or(0);
    let ordered = srv_order(records.into_iter().map(|(r, _)| r).collect(), |sum| {
        random_u32() % sum.saturating_add(1)
    });
    let mut targets: Vec<HostAddr> = Vec::new();
    let mut weighted: Vec<Weighted> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for record in &ordered {
        let mut found = addresses_for(&answer, &record.target);
        if found.is_empty() {
            match target_addresses(servers, &record.target).await {
                Ok(f) => found = f,
                Err(e) => failures.push(format!("{}: {e}", record.target)),
            }
        }
        let mut of_record = Vec::new();
        for (ip, t) in found {
            ttl = ttl.min(t);
            let target = HostAddr::at(ip, Some(record.port));
            if !targets.contains(&target) {
                targets.push(target);
            }
            if !of_record.contains(&target) {
                of_record.push(target);
            }
        }
        weighted.push(Weighted {
            priority: record.priority,
            weight: record.weight,
            targets: of_record,
        });
    }
    if targets.is_empty() && !failures.is_empty() {
        return Err(failures.join("; "));
    }
    if !failures.is_empty() {
        tracing::debug!(name = %query.name, failures = ?failures, "some SRV targets have no address");
    }
    Ok(Some(Found { targets, records: weighted, ttl: Some(Duration::from_secs(u64::from(ttl))) }))
}

/// Resolves `host`'s NAPTR records (RFC 3263 §4.1): `Ok(None)` when none is usable
/// ([`naptr_order`] over `allowed`) or none of the usable ones leads to SRV records; else the
/// targets of the first usable record whose replacement has SRV records, reached over that
/// record's transport, with the smallest TTL of the NAPTR, SRV and address records used.
async fn resolve_naptr(
    servers: &[SocketAddr],
    host: &str,
    allowed: &[Transport],
) -> Result<Option<Found>, String> {
    let answer = exchange(servers, &dns_name(host)?, RecordType::NAPTR).await?;
    let records = naptr_records(&answer);
    let ttl = records.iter().map(|(_, ttl)| *ttl).min().unwrap_or(0);
    let rules = naptr_order(records.into_iter().map(|(r, _)| r).collect(), allowed);
    let mut failures: Vec<String> = Vec::new();
    for rule in rules {
        let query = SrvQuery { name: rule.replacement.clone(), transport: rule.transport };
        match resolve_srv(servers, &query).await {
            Ok(Some(mut found)) => {
                found.ttl = found.ttl.map(|t| t.min(Duration::from_secs(u64::from(ttl))));
                tracing::debug!(%host, service = %rule.service, srv = %query.name, "NAPTR chose a transport");
                return Ok(Some(found.over(rule.transport)));
            }
            Ok(None) => {}
            Err(e) => failures.push(format!("{}: {e}", query.name)),
        }
    }
    if failures.is_empty() { Ok(None) } else { Err(failures.join("; ")) }
}

/// The NAPTR records of an answer, with their TTLs (names as [`Srv::target`] keeps them).
fn naptr_records(answer: &Message) -> Vec<(Naptr, u32)> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NAPTR(n) => Some((
                Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: text(&n.flags),
                    services: text(&n.services),
                    regexp: text(&n.regexp),
                    replacement: target_name(&n.replacement),
                },
                r.ttl,
            )),
            _ => None,
        })
        .collect()
}

/// The A and AAAA addresses of an SRV target, by queries of our own (A first, then AAAA).
async fn target_addresses(
    servers: &[SocketAddr],
    target: &str,
) -> Result<Vec<(IpAddr, u32)>, String> {
    let name = dns_name(target)?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for rtype in [RecordType::A, RecordType::AAAA] {
        match exchange(servers, &name, rtype).await {
            Ok(answer) => found.extend(addresses_for(&answer, target)),
            Err(e) => errors.push(e),
        }
    }
    if found.is_empty() && !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(found)
}

/// `name` as an absolute DNS name.
fn dns_name(name: &str) -> Result<Name, String> {
    let mut fqdn = key(name);
    fqdn.push('.');
    Name::from_ascii(&fqdn).map_err(|e| format!("'{name}' is not a DNS name: {e}"))
}

/// The SRV records of an answer, with their TTLs.
fn srv_records(answer: &Message) -> Vec<(Srv, u32)> {
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some((
                Srv {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: target_name(&srv.target),
                },
                r.ttl,
            )),
            _ => None,
        })
        .collect()
}

/// An SRV target as [`Srv::target`] keeps it: lowercase, without the final dot, `.` for the
/// root.
fn target_name(name: &Name) -> String {
    if name.is_root() { ".".to_owned() } else { key(&name.to_ascii()) }
}

/// The A and AAAA records for `target` anywhere in `answer` (an SRV answer's additional
/// section, or the answer to an A or AAAA query), with their TTLs, without repeats.
fn addresses_for(answer: &Message, target: &str) -> Vec<(IpAddr, u32)> {
    let target = key(target);
    let mut found: Vec<(IpAddr, u32)> = Vec::new();
    for r in answer.answers.iter().chain(&answer.additionals) {
        if key(&r.name.to_ascii()) != target {
            continue;
        }
        let ip = match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        if !found.iter().any(|(i, _)| *i == ip) {
            found.push((ip, r.ttl));
        }
    }
    found
}

/// Asks `servers` in turn for `name`'s `rtype` records; the first answer that is NOERROR or
/// NXDOMAIN (RFC 1035 §4.1.1) is the answer.
async fn exchange(
    servers: &[SocketAddr],
    name: &Name,
    rtype: RecordType,
) -> Result<Message, String> {
    if servers.is_empty() {
        return Err("no DNS server ([dns] servers is empty and /etc/resolv.conf names none)".into());
    }
    let mut last = String::new();
    for &server in servers {
        match ask(server, name, rtype).await {
            Ok(answer) => return Ok(answer),
            Err(e) => {
                tracing::debug!(%server, %name, ?rtype, error = %e, "DNS query failed");
                last = format!("{server}: {e}");
            }
        }
    }
    Err(last)
}

/// One query to one server: over UDP with EDNS(0) ([`EDNS_PAYLOAD`]); again without EDNS
/// when the server answers FORMERR without an OPT record (RFC 6891 §7: a server that does
/// not do EDNS); again over TCP when the answer is truncated.
async fn ask(server: SocketAddr, name: &Name, rtype: RecordType) -> Result<Message, String> {
    let timeout = |what: &str| format!("no {what} answer within {}s", QUERY_TIMEOUT.as_secs());
    let udp = |edns: bool| async move {
        let id = random_u32() as u16;
        let query = query_message(id, name, rtype, edns)?;
        let answer = tokio::time::timeout(QUERY_TIMEOUT, ask_udp(server, id, name, rtype, &query))
            .await
            .map_err(|_| timeout("UDP"))??;
        Ok::<_, String>((id, query, answer))
    };
    let (mut id, mut query, mut answer) = udp(true).await?;
    if answer.metadata.response_code == ResponseCode::FormErr && answer.edns.is_none() {
        tracing::debug!(%server, "FORMERR to EDNS(0): asking again without it");
        (id, query, answer) = udp(false).await?;
    }
    let answer = if answer.metadata.truncation {
        tokio::time::timeout(QUERY_TIMEOUT, ask_tcp(server, id, name, rtype, &query))
            .await
            .map_err(|_| timeout("TCP"))??
    } else {
        answer
    };
    match answer.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(answer),
        code => Err(format!("{code}")),
    }
}

async fn ask_udp(
    server: SocketAddr,
    id: u16,
    name: &Name,
    rtype: RecordType,
    query: &[u8],
) -> Result<Message, String> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = tokio::net::UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    // Connected: datagrams from anyone but the server are not delivered.
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(query).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        if let Some(answer) = accept(&buf[..n], id, name, rtype) {
            return Ok(answer);
        }
    }
}

async fn ask_tcp(
    server: SocketAddr,
    id: u16,
    name: &Name,
    rtype: RecordType,
    query: &[u8],
) -> Result<Message, String> {
    let mut stream = tokio::net::TcpStream::connect(server).await.map_err(|e| e.to_string())?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long".to_owned())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    accept(&buf, id, name, rtype).ok_or_else(|| "an answer to another question".to_owned())
}

/// A query for `name`'s `rtype` records with id `id`, recursion desired; with `edns`, an
/// OPT record (RFC 6891 §6.1.2: version 0, no options) advertising [`EDNS_PAYLOAD`].
fn query_message(id: u16, name: &Name, rtype: RecordType, edns: bool) -> Result<Vec<u8>, String> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name.clone(), rtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(EDNS_PAYLOAD);
        message.set_edns(opt);
    }
    message.to_vec().map_err(|e| e.to_string())
}

/// `bytes` as the answer to the query `id` for `name`'s `rtype` records, or `None` when it is
/// not one (does not parse, is a query, another id, another question): a spoofed or late
/// datagram is ignored, not taken for the answer.
fn accept(bytes: &[u8], id: u16, name: &Name, rtype: RecordType) -> Option<Message> {
    let answer = Message::from_vec(bytes).ok()?;
    let m = &answer.metadata;
    let asked = answer.queries.first()?;
    let ours = m.id == id
        && m.message_type == MessageType::Response
        && answer.queries.len() == 1
        && asked.query_type() == rtype
        && key(&asked.name().to_ascii()) == key(&name.to_ascii());
    ours.then_some(answer)
}

/// A random number from the process's crypto provider (DNS ids, SRV weights).
fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = super::tls::provider().secure_random.fill(&mut b);
    u32::from_be_bytes(b)
}

/// The SRV query for a trunk's URI (RFC 3263 §4.2): what to ask and the transport its
/// targets are reached over. `None` when the URI names an IP address or a port (§4.2: A and
/// AAAA at that port), or a transport without an SRV service here (WebSocket, SCTP).
///
/// The service follows what the URI says (§4.1): `;transport=tls` or a `sips:` URI is
/// `_sips._tcp`, `;transport=tcp` is `_sip._tcp`; a `sip:` URI that names no transport is
/// `_sip._udp` — asked when its NAPTR records ([`naptr_order`]) chose nothing.
pub fn srv_query(trunk: &Trunk) -> Option<SrvQuery> {
    if trunk.ip.is_some() || trunk.port.is_some() {
        return None;
    }
    let (service, transport) = match (trunk.transport, trunk.secure) {
        (Some(Transport::Tls), _) | (None | Some(Transport::Tcp), true) => {
            ("_sips._tcp", Transport::Tls)
        }
        (Some(Transport::Tcp), false) => ("_sip._tcp", Transport::Tcp),
        (None | Some(Transport::Udp), false) => ("_sip._udp", Transport::Udp),
        // UDP with `sips:` is no combination RFC 3261 §26.2.2 allows; WS, WSS and SCTP
        // trunks have no SRV service here.
        _ => return None,
    };
    Some(SrvQuery { name: format!("{service}.{}", key(&trunk.host)), transport })
}

/// The transports a NAPTR record may choose for `trunk` (RFC 3263 §4.1), in no order: none
/// when its URI names an IP address, a port or a transport (the URI decides); only TLS
/// (`SIPS+D2T`) for a `sips:` URI (its client "MUST discard any services that do not contain
/// `SIPS` as the protocol"); UDP, TCP and TLS for a `sip:` URI (a client that does TLS
/// "SHOULD retain records with `SIPS` as the protocol").
pub fn naptr_services(trunk: &Trunk) -> Vec<Transport> {
    if trunk.ip.is_some() || trunk.port.is_some() || trunk.transport.is_some() {
        return Vec::new();
    }
    if trunk.secure {
        vec![Transport::Tls]
    } else {
        vec![Transport::Udp, Transport::Tcp, Transport::Tls]
    }
}

/// The transport of a NAPTR service field we support (RFC 3263 §4.1, case-insensitive):
/// `SIP+D2U` is UDP, `SIP+D2T` TCP, `SIPS+D2T` TLS.
pub fn naptr_service(services: &str) -> Option<Transport> {
    [("SIP+D2U", Transport::Udp), ("SIP+D2T", Transport::Tcp), ("SIPS+D2T", Transport::Tls)]
        .into_iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(services))
        .map(|(_, t)| t)
}

/// One NAPTR record (RFC 3403 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub regexp: String,
    /// The replacement (as [`Srv::target`] keeps names; `.`: none).
    pub replacement: String,
}

/// A NAPTR record to follow: its SRV name and the transport toward its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaptrRule {
    /// The service field, as written.
    pub service: String,
    pub transport: Transport,
    /// The SRV owner name to ask (the record's replacement).
    pub replacement: String,
}

/// The NAPTR records to follow, in order (RFC 3403 §4.1, RFC 3263 §4.1): those whose flags
/// are `s` (the next lookup is SRV), whose service is one we support ([`naptr_service`]) with
/// a transport in `allowed`, with a replacement and no regexp (a terminal `s` rule uses the
/// replacement); of those, only the ones of the lowest order (once a rule of one order
/// matches, records of another order are not considered), by preference.
pub fn naptr_order(mut records: Vec<Naptr>, allowed: &[Transport]) -> Vec<NaptrRule> {
    records.sort_by_key(|r| (r.order, r.preference));
    let usable = |r: &Naptr| {
        let transport = naptr_service(&r.services).filter(|t| allowed.contains(t))?;
        let ok = r.flags.eq_ignore_ascii_case("s") && r.regexp.is_empty() && r.replacement != ".";
        ok.then(|| NaptrRule {
            service: r.services.clone(),
            transport,
            replacement: r.replacement.clone(),
        })
    };
    let Some(order) = records.iter().find(|r| usable(r).is_some()).map(|r| r.order) else {
        return Vec::new();
    };
    records.iter().filter(|r| r.order == order).filter_map(usable).collect()
}

/// What [`srv_query`] asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvQuery {
    /// The owner name, e.g. `_sip._udp.carrier.example`.
    pub name: String,
    /// The transport toward every target of the answer.
    pub transport: Transport,
}

/// One SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host name (`.`: the service is decidedly not offered).
    pub target: String,
}

/// The order to try SRV records in (RFC 2782, "Usage rules"): ascending priority, and within
/// one priority a weighted random order. Each pick runs over the records left: weight-0
/// records are placed first, then `random(sum)` is drawn from `0..=sum` of their weights, and
/// the first record whose running sum is at least the draw is taken. `random` is passed in
/// (sans-IO: tests give a fixed sequence). A single record whose target is `.` means the
/// service is not offered: no targets.
pub fn srv_order(mut records: Vec<Srv>, random: impl FnMut(u32) -> u32) -> Vec<Srv> {
    if records.len() == 1 && records[0].target == "." {
        return Vec::new();
    }
    records.retain(|r| r.target != ".");
    weighted_order(records, |r| (r.priority, r.weight), random)
}

/// [`srv_order`]'s rule over anything with a (priority, weight).
fn weighted_order<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> (u16, u16),
    mut random: impl FnMut(u32) -> u32,
) -> Vec<T> {
    items.sort_by_key(|r| {
        let (priority, weight) = key(r);
        (priority, weight != 0)
    });
    let mut ordered = Vec::with_capacity(items.len());
    let mut items = std::collections::VecDeque::from(items);
    while let Some(first) = items.front() {
        let priority = key(first).0;
        let mut group: Vec<T> = Vec::new();
        while items.front().is_some_and(|r| key(r).0 == priority) {
            group.extend(items.pop_front());
        }
        while !group.is_empty() {
            let sum: u32 = group.iter().map(|r| u32::from(key(r).1)).sum();
            let draw = random(sum).min(sum);
            let mut running = 0u32;
            let at = group
                .iter()
                .position(|r| {
                    running += u32::from(key(r).1);
                    running >= draw
                })
                .unwrap_or(group.len() - 1);
            ordered.push(group.remove(at));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, AAAA, NAPTR, SRV};

    fn plain(host: &str) -> Wanted {
        Wanted { key: key(host), host: key(host), naptr: Vec::new(), srv: Vec::new() }
    }

    #[tokio::test]
    async fn localhost_resolves_and_invalid_does_not() {
        let hosts = TrunkHosts::new();
        assert_eq!(hosts.lookup("localhost"), Lookup::Pending);
        let due =
            resolve_all(&hosts, &[], false, &[plain("localhost"), plain("nonexistent.invalid")])
                .await;
        assert_eq!(due.len(), 2);
        let addrs = hosts.addrs("LOCALHOST.");
        assert!(addrs.iter().all(IpAddr::is_loopback) && !addrs.is_empty(), "{addrs:?}");
        assert!(hosts.has("localhost", "127.0.0.1".parse().unwrap()));
        assert_eq!(hosts.lookup("nonexistent.invalid"), Lookup::Failed);
    }

    #[test]
    fn failed_lookups_keep_the_last_addresses_for_a_while() {
        let hosts = TrunkHosts::new();
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let at = vec![HostAddr::at(ip, None)];
        hosts.record("sbc.example", "sbc.example", t0, Ok(plain_found(at.clone())));
        hosts.record("sbc.example", "sbc.example", t0 + REFRESH, Err("timeout".into()));
        assert_eq!(hosts.lookup("sbc.example"), Lookup::Resolved(at.clone()));
        hosts.record("sbc.example", "sbc.example", t0 + STALE_FOR + REFRESH, Err("timeout".into()));
        assert_eq!(hosts.lookup("sbc.example"), Lookup::Failed);
        hosts.record("sbc.example", "sbc.example", t0 + STALE_FOR * 2, Ok(plain_found(at)));
        assert!(hosts.has("sbc.example", ip));
        hosts.retain(&[]);
        assert_eq!(hosts.lookup("sbc.example"), Lookup::Pending);
    }

    fn trunk(host: &str, port: Option<u16>, secure: bool, transport: Option<Transport>) -> Trunk {
        Trunk {
            name: "t".into(),
            kind: crate::routing::TrunkKind::DirectOffer,
            uri: String::new(),
            host: host.into(),
            ip: host.parse().ok(),
            port,
            secure,
            transport,
            sources: Vec::new(),
            numbers: Vec::new(),
            emergency: crate::routing::TrunkEmergency::default(),
            probe: false,
            tls_ca: None,
        }
    }

    #[test]
    fn the_srv_name_follows_the_uri() {
        let query = |host, port, secure, transport| {
            srv_query(&trunk(host, port, secure, transport)).map(|q| (q.name, q.transport))
        };
        let q = |name: &str, t| Some((name.to_owned(), t));
        assert_eq!(
            query("Carrier.Example.", None, false, None),
            q("_sip._udp.carrier.example", Transport::Udp)
        );
        assert_eq!(
            query("c.example", None, false, Some(Transport::Udp)),
            q("_sip._udp.c.example", Transport::Udp)
        );
        assert_eq!(
            query("c.example", None, false, Some(Transport::Tcp)),
            q("_sip._tcp.c.example", Transport::Tcp)
        );
        assert_eq!(
            query("c.example", None, false, Some(Transport::Tls)),
            q("_sips._tcp.c.example", Transport::Tls)
        );
        assert_eq!(query("c.example", None, true, None), q("_sips._tcp.c.example", Transport::Tls));
        // A port or an IP address: A/AAAA (or nothing) at that port, no SRV (§4.2).
        assert_eq!(query("c.example", Some(5060), false, None), None);
        assert_eq!(query("192.0.2.1", None, false, None), None);
        assert_eq!(query("c.example", None, false, Some(Transport::Ws)), None);
    }

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv { priority, weight, port: 5060, target: target.to_owned() }
    }

    #[test]
    fn srv_records_go_by_priority_then_weighted_random() {
        let records = vec![srv(20, 0, "c"), srv(10, 60, "a"), srv(10, 40, "b"), srv(30, 5, "d")];
        // A draw of 0 takes the first record of the priority (weight-0 ones come first); a
        // draw of the sum takes the last whose running sum reaches it.
        let first = srv_order(records.clone(), |_| 0);
        let names: Vec<&str> = first.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let last = srv_order(records.clone(), |sum| sum);
        let names: Vec<&str> = last.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["b", "a", "c", "d"]);
        // 61 is past a's running sum (60): b first.
        let mid = srv_order(records, |sum| if sum == 100 { 61 } else { 0 });
        assert_eq!(mid[0].target, "b");
        // Over many draws the weights show: a (60) leads about 60 % of the time.
        let mut seed = 0x2545_f491_u32;
        let mut a_first = 0;
        for _ in 0..10_000 {
            let order = srv_order(vec![srv(10, 60, "a"), srv(10, 40, "b")], |sum| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed % (sum + 1)
            });
            a_first += usize::from(order[0].target == "a");
        }
        assert!((5_500..6_500).contains(&a_first), "{a_first}");
    }

    fn plain_found(targets: Vec<HostAddr>) -> Found {
        Found { targets, records: Vec::new(), ttl: None }
    }

    #[test]
    fn every_call_draws_the_weighted_order_again() {
        let at = |ip: &str, port| HostAddr::at(ip.parse().unwrap(), Some(port));
        let (a, b, c) = (at("192.0.2.1", 5070), at("192.0.2.2", 5080), at("192.0.2.3", 5090));
        // a (weight 1) and b (weight 3) share priority 10; c (priority 20) comes last.
        let records = vec![
            Weighted { priority: 10, weight: 1, targets: vec![a] },
            Weighted { priority: 10, weight: 3, targets: vec![b] },
            Weighted { priority: 20, weight: 0, targets: vec![c] },
        ];
        let hosts = TrunkHosts::new();
        let found = Found { targets: vec![a, b, c], records, ttl: None };
        hosts.record("_sip._udp.carrier.example", "carrier.example", Instant::now(), Ok(found));
        let mut b_first = 0;
        for _ in 0..2_000 {
            let Lookup::Resolved(order) = hosts.lookup("_sip._udp.carrier.example") else {
                panic!("resolved")
            };
            assert_eq!(order.len(), 3);
            assert_eq!(order[2], c, "the next priority always after");
            b_first += usize::from(order[0] == b);
        }
        // RFC 2782 draws from 0 to the sum (4) inclusive and a draw of 0 or 1 takes a: b leads
        // three calls in five (1,200 expected, standard deviation 22).
        assert!((1_080..1_320).contains(&b_first), "{b_first}");
        // Without a shared priority the order is the lookup's.
        let hosts = TrunkHosts::new();
        let records = vec![
            Weighted { priority: 10, weight: 1, targets: vec![b] },
            Weighted { priority: 20, weight: 3, targets: vec![a] },
        ];
        let found = Found { targets: vec![b, a], records, ttl: None };
        hosts.record("x", "x", Instant::now(), Ok(found));
        assert_eq!(hosts.lookup("x"), Lookup::Resolved(vec![b, a]));
    }

    #[test]
    fn a_dot_target_means_no_service() {
        assert!(srv_order(vec![srv(0, 0, ".")], |_| 0).is_empty());
        assert_eq!(srv_order(vec![srv(0, 0, "."), srv(1, 0, "x")], |_| 0), [srv(1, 0, "x")]);
    }

    #[test]
    fn resolv_conf_gives_its_nameservers_at_port_53() {
        let text = "# generated\nsearch example.com\nnameserver 192.0.2.53\n; old\n\
                    nameserver  2001:db8::53 \nnameserver fe80::1%eth0\nnameserver\n\
                    options ndots:2\n#nameserver 192.0.2.99\n";
        let want: Vec<SocketAddr> =
            vec!["192.0.2.53:53".parse().unwrap(), "[2001:db8::53]:53".parse().unwrap()];
        assert_eq!(resolv_conf_servers(text), want);
        assert!(resolv_conf_servers("").is_empty());
    }

    fn name(s: &str) -> Name {
        dns_name(s).unwrap()
    }

    /// The answer a server would give to query `id` for `qname`'s `rtype` records.
    fn response(id: u16, qname: &str, rtype: RecordType) -> Message {
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name(qname), rtype));
        m
    }

    fn srv_rr(owner: &str, ttl: u32, priority: u16, port: u16, target: &str) -> Record {
        let data = RData::SRV(SRV::new(priority, 50, port, name(target)));
        Record::from_rdata(name(owner), ttl, data)
    }

    fn a_rr(owner: &str, ttl: u32, ip: &str) -> Record {
        let data = match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        Record::from_rdata(name(owner), ttl, data)
    }

    #[test]
    fn only_the_answer_to_our_question_is_taken() {
        let q = name("_sip._udp.carrier.example");
        let bytes = query_message(0x1234, &q, RecordType::SRV, true).unwrap();
        let query = Message::from_vec(&bytes).unwrap();
        assert!(query.metadata.recursion_desired);
        assert_eq!(query.metadata.id, 0x1234);
        // A query is not an answer, even with our id.
        assert!(accept(&bytes, 0x1234, &q, RecordType::SRV).is_none());
        let ours = response(0x1234, "_SIP._udp.Carrier.example", RecordType::SRV);
        let bytes = ours.to_vec().unwrap();
        assert!(accept(&bytes, 0x1234, &q, RecordType::SRV).is_some(), "case-insensitive");
        assert!(accept(&bytes, 0x1235, &q, RecordType::SRV).is_none(), "another id");
        assert!(accept(&bytes, 0x1234, &q, RecordType::A).is_none(), "another type");
        let other = name("_sip._udp.elsewhere.example");
        assert!(accept(&bytes, 0x1234, &other, RecordType::SRV).is_none(), "another name");
        assert!(accept(b"\x12\x34garbage", 0x1234, &q, RecordType::SRV).is_none());
    }

    #[test]
    fn an_srv_answer_gives_its_records_and_the_addresses_of_its_targets() {
        let mut m = response(7, "_sip._udp.carrier.example", RecordType::SRV);
        m.add_answer(srv_rr("_sip._udp.carrier.example", 300, 10, 5070, "SBC1.carrier.example."));
        m.add_answer(srv_rr("_sip._udp.carrier.example", 120, 20, 5080, "sbc2.carrier.example"));
        m.add_additional(a_rr("sbc1.carrier.example", 90, "192.0.2.1"));
        m.add_additional(a_rr("sbc1.carrier.example", 90, "2001:db8::1"));
        m.add_additional(a_rr("sbc1.carrier.example", 90, "192.0.2.1"));
        m.add_additional(a_rr("other.example", 90, "192.0.2.9"));
        let m = Message::from_vec(&m.to_vec().unwrap()).unwrap();
        let records = srv_records(&m);
        assert_eq!(
            records,
            [
                (
                    Srv {
                        priority: 10,
                        weight: 50,
                        port: 5070,
                        target: "sbc1.carrier.example".into()
                    },
                    300
                ),
                (
                    Srv {
                        priority: 20,
                        weight: 50,
                        port: 5080,
                        target: "sbc2.carrier.example".into()
                    },
                    120
                ),
            ]
        );
        let glue = addresses_for(&m, "sbc1.carrier.example.");
        let ips: Vec<String> = glue.iter().map(|(ip, _)| ip.to_string()).collect();
        assert_eq!(ips, ["192.0.2.1", "2001:db8::1"]);
        assert!(addresses_for(&m, "sbc2.carrier.example").is_empty(), "no glue: ask");
        // A target of `.` (service not offered) reads as such.
        let mut dot = response(8, "_sip._udp.carrier.example", RecordType::SRV);
        dot.add_answer(srv_rr("_sip._udp.carrier.example", 60, 0, 0, "."));
        let dot = Message::from_vec(&dot.to_vec().unwrap()).unwrap();
        assert_eq!(srv_records(&dot)[0].0.target, ".");
    }

    #[test]
    fn trunks_are_looked_up_by_uri_srv_name_or_host_name() {
        // No port, no transport: NAPTR decides, under the URI's scheme and host.
        assert_eq!(
            lookup_key(&trunk("Carrier.Example", None, false, None)).as_deref(),
            Some("sip:carrier.example")
        );
        assert_eq!(
            lookup_key(&trunk("carrier.example", None, true, None)).as_deref(),
            Some("sips:carrier.example")
        );
        assert_eq!(
            lookup_key(&trunk("carrier.example", None, false, Some(Transport::Udp))).as_deref(),
            Some("_sip._udp.carrier.example")
        );
        assert_eq!(
            lookup_key(&trunk("carrier.example", Some(5060), false, None)).as_deref(),
            Some("carrier.example")
        );
        assert_eq!(lookup_key(&trunk("192.0.2.1", None, false, None)), None);
        let hosts = TrunkHosts::new();
        let t = trunk("carrier.example", None, false, None);
        let at = |ip: &str, port| HostAddr::at(ip.parse().unwrap(), port);
        let targets = vec![at("192.0.2.1", Some(5070)), at("192.0.2.2", Some(5080))];
        hosts.record(
            "sip:carrier.example",
            "carrier.example",
            Instant::now(),
            Ok(plain_found(targets.clone())),
        );
        assert_eq!(hosts.lookup_trunk(&t), Lookup::Resolved(targets));
        assert!(hosts.has_trunk(&t, "192.0.2.2".parse().unwrap()));
        assert!(!hosts.has_trunk(&t, "192.0.2.3".parse().unwrap()));
        assert!(hosts.has("Carrier.Example.", "192.0.2.1".parse().unwrap()));
        assert_eq!(
            hosts.addrs("carrier.example"),
            ["192.0.2.1".parse::<IpAddr>().unwrap(), "192.0.2.2".parse().unwrap()]
        );
        // The same host with a port is another lookup, not yet done.
        assert_eq!(
            hosts.lookup_trunk(&trunk("carrier.example", Some(5060), false, None)),
            Lookup::Pending
        );
        assert_eq!(at("192.0.2.1", Some(5070)).to_string(), "192.0.2.1:5070");
        assert_eq!(at("2001:db8::1", None).to_string(), "2001:db8::1");
        let tls = HostAddr { transport: Some(Transport::Tls), ..at("192.0.2.1", Some(5071)) };
        assert_eq!(tls.to_string(), "192.0.2.1:5071;transport=tls");
    }

    fn naptr(order: u16, preference: u16, flags: &str, services: &str, to: &str) -> Naptr {
        Naptr {
            order,
            preference,
            flags: flags.into(),
            services: services.into(),
            regexp: String::new(),
            replacement: to.into(),
        }
    }

    #[test]
    fn naptr_records_go_by_order_then_preference_and_only_supported_services_count() {
        use Transport::{Tcp, Tls, Udp};
        let all = [Udp, Tcp, Tls];
        let records = vec![
            naptr(20, 10, "s", "SIP+D2U", "_sip._udp.c.example"),
            naptr(10, 30, "S", "sip+d2t", "_sip._tcp.c.example"),
            naptr(10, 20, "s", "SIPS+D2T", "_sips._tcp.c.example"),
            // Not for us: another service, another flag, no replacement, a regexp.
            naptr(5, 10, "s", "SIP+D2S", "_sip._sctp.c.example"),
            naptr(5, 10, "s", "SIPS+D2W", "_sips._ws.c.example"),
            naptr(5, 10, "a", "SIP+D2T", "sbc.c.example"),
            naptr(5, 10, "s", "SIP+D2U", "."),
            Naptr { regexp: "!^.*$!sip:x@y!".into(), ..naptr(5, 10, "s", "SIP+D2U", "x") },
        ];
        let rules = naptr_order(records.clone(), &all);
        let seen: Vec<(Transport, &str)> =
            rules.iter().map(|r| (r.transport, r.replacement.as_str())).collect();
        // Order 10 is the lowest with a usable record: its records by preference; order 20
        // is never considered (RFC 3403 §4.1).
        assert_eq!(seen, [(Tls, "_sips._tcp.c.example"), (Tcp, "_sip._tcp.c.example")]);
        // An edge without TLS (or a service the URI rules out) skips SIPS+D2T.
        let rules = naptr_order(records.clone(), &[Udp, Tcp]);
        assert_eq!(rules[0].transport, Tcp);
        assert_eq!(rules.len(), 1);
        // A `sips:` URI keeps only SIPS+D2T.
        let rules = naptr_order(records, &[Tls]);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].replacement, "_sips._tcp.c.example");
        assert!(naptr_order(vec![naptr(1, 1, "s", "SIP+D2U", "x")], &[Tcp]).is_empty());
        assert!(naptr_order(Vec::new(), &all).is_empty());
        assert_eq!(naptr_service("SIP+D2U"), Some(Udp));
        assert_eq!(naptr_service("E2U+sip"), None);
    }

    #[test]
    fn naptr_applies_to_a_uri_without_port_or_transport() {
        use Transport::{Tcp, Tls, Udp};
        let all = [Udp, Tcp, Tls];
        let plain = Wanted::of(&trunk("c.example", None, false, None), &all).unwrap();
        assert_eq!(plain.naptr, [Udp, Tcp, Tls]);
        let names: Vec<(&str, bool)> =
            plain.srv.iter().map(|s| (s.query.name.as_str(), s.chosen)).collect();
        // Without NAPTR: `_sip._udp` as the URI implies, then `_sip._tcp` (§4.1).
        assert_eq!(names, [("_sip._udp.c.example", false), ("_sip._tcp.c.example", true)]);
        let secure = Wanted::of(&trunk("c.example", None, true, None), &all).unwrap();
        assert_eq!(secure.naptr, [Tls]);
        assert_eq!(secure.srv.len(), 1);
        assert_eq!(secure.srv[0].query.name, "_sips._tcp.c.example");
        // An edge with UDP only: NAPTR may choose UDP alone, and no `_sip._tcp`.
        let udp_only = Wanted::of(&trunk("c.example", None, false, None), &[Udp]).unwrap();
        assert_eq!(udp_only.naptr, [Udp]);
        assert_eq!(udp_only.srv.len(), 1);
        // The URI decides: no NAPTR.
        for t in [
            trunk("c.example", Some(5060), false, None),
            trunk("c.example", None, false, Some(Tcp)),
            trunk("c.example", None, true, Some(Tls)),
        ] {
            assert!(Wanted::of(&t, &all).unwrap().naptr.is_empty(), "{t:?}");
        }
        assert!(Wanted::of(&trunk("192.0.2.1", None, false, None), &all).is_none());
    }

    /// A DNS server on loopback (UDP and TCP on one port) answering every query with
    /// `answer(query, over_tcp)`.
    async fn fake_server(
        answer: impl Fn(&Message, bool) -> Message + Send + Sync + 'static,
    ) -> SocketAddr {
        let answer = Arc::new(answer);
        let (udp, tcp) = loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = tokio::net::TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let a = answer.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                let q = Message::from_vec(&buf[..n]).unwrap();
                let _ = udp.send_to(&a(&q, false).to_vec().unwrap(), from).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                let mut len = [0u8; 2];
                s.read_exact(&mut len).await.unwrap();
                let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                s.read_exact(&mut buf).await.unwrap();
                let q = Message::from_vec(&buf).unwrap();
                let bytes = answer(&q, true).to_vec().unwrap();
                let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                s.write_all(&framed).await.unwrap();
            }
        });
        addr
    }

    fn naptr_rr(owner: &str, order: u16, pref: u16, services: &str, to: &str) -> Record {
        let data = RData::NAPTR(NAPTR::new(
            order,
            pref,
            b"S".to_vec().into_boxed_slice(),
            services.as_bytes().to_vec().into_boxed_slice(),
            Box::default(),
            name(to),
        ));
        Record::from_rdata(name(owner), 120, data)
    }

    /// A zone for `carrier.example`: NAPTR (when `with_naptr`) preferring TCP over UDP, SRV
    /// for both, and the targets' addresses (no glue); every query logged.
    fn carrier_zone(
        with_naptr: bool,
        asked: Arc<std::sync::Mutex<Vec<String>>>,
    ) -> impl Fn(&Message, bool) -> Message + Send + Sync + 'static {
        move |q, _| {
            let mut m = reply_to(q);
            let owner = key(&q.queries[0].name().to_ascii());
            let rtype = q.queries[0].query_type();
            asked.lock().unwrap().push(format!("{rtype} {owner}"));
            match (rtype, owner.as_str()) {
                (RecordType::NAPTR, "carrier.example") if with_naptr => {
                    m.add_answer(naptr_rr(&owner, 10, 20, "SIP+D2U", "_sip._udp.carrier.example"));
                    m.add_answer(naptr_rr(&owner, 10, 10, "SIP+D2T", "_sip._tcp.carrier.example"));
                    m.add_answer(naptr_rr(&owner, 10, 5, "SIP+D2S", "_sip._sctp.carrier.example"));
                }
                (RecordType::SRV, "_sip._udp.carrier.example") => {
                    m.add_answer(srv_rr(&owner, 300, 10, 5060, "udp.carrier.example"));
                }
                (RecordType::SRV, "_sip._tcp.carrier.example") => {
                    m.add_answer(srv_rr(&owner, 300, 10, 5062, "tcp.carrier.example"));
                }
                (RecordType::A, "udp.carrier.example") => {
                    m.add_answer(a_rr(&owner, 60, "192.0.2.1"));
                }
                (RecordType::A, "tcp.carrier.example") => {
                    m.add_answer(a_rr(&owner, 60, "192.0.2.2"));
                }
                (RecordType::A | RecordType::AAAA, _) => {}
                // A server that will not answer NAPTR queries: the SRV queries follow.
                (RecordType::NAPTR, _) => m.metadata.response_code = ResponseCode::Refused,
                _ => m.metadata.response_code = ResponseCode::NXDomain,
            }
            m
        }
    }

    #[tokio::test]
    async fn naptr_chooses_the_transport_and_without_it_udp_then_tcp_srv() {
        use Transport::{Tcp, Tls, Udp};
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server = fake_server(carrier_zone(true, asked.clone())).await;
        let wanted =
            Wanted::of(&trunk("carrier.example", None, false, None), &[Udp, Tcp, Tls]).unwrap();
        let found = resolve_wanted(&[server], true, &wanted, false).await.unwrap();
        // SIP+D2S (SCTP) is preferred but not ours; SIP+D2T before SIP+D2U.
        let shown: Vec<String> = found.targets.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["192.0.2.2:5062;transport=tcp"]);
        assert_eq!(found.ttl, Some(Duration::from_secs(60)));
        assert_eq!(
            *asked.lock().unwrap(),
            [
                "NAPTR carrier.example",
                "SRV _sip._tcp.carrier.example",
                "A tcp.carrier.example",
                "AAAA tcp.carrier.example"
            ]
        );
        // The record the per-call order draws from carries the transport too.
        let hosts = TrunkHosts::new();
        hosts.record(&wanted.key, &wanted.host, Instant::now(), Ok(found));
        let tcp = HostAddr {
            transport: Some(Tcp),
            ..HostAddr::at("192.0.2.2".parse().unwrap(), Some(5062))
        };
        let t = trunk("carrier.example", None, false, None);
        assert_eq!(hosts.lookup_trunk(&t), Lookup::Resolved(vec![tcp]));
        assert!(hosts.has_trunk(&t, "192.0.2.2".parse().unwrap()), "a source of the trunk");
        assert!(!hosts.is_tls_target(&t, "192.0.2.2:5062".parse().unwrap()));

        // An edge without TCP: SIP+D2U.
        let wanted = Wanted::of(&t, &[Udp]).unwrap();
        let found = resolve_wanted(&[server], true, &wanted, false).await.unwrap();
        assert_eq!(found.targets[0].to_string(), "192.0.2.1:5060;transport=udp");

        // No NAPTR records (the server refuses the query): `_sip._udp` as before (the URI's
        // transport, none chosen).
        let server = fake_server(carrier_zone(false, Arc::default())).await;
        let wanted = Wanted::of(&t, &[Udp, Tcp, Tls]).unwrap();
        let found = resolve_wanted(&[server], true, &wanted, false).await.unwrap();
        assert_eq!(found.targets, [HostAddr::at("192.0.2.1".parse().unwrap(), Some(5060))]);
    }

    #[tokio::test]
    async fn without_naptr_or_udp_srv_the_tcp_srv_is_tried() {
        let server = fake_server(|q, _| {
            let mut m = reply_to(q);
            let owner = key(&q.queries[0].name().to_ascii());
            match (q.queries[0].query_type(), owner.as_str()) {
                (RecordType::SRV, "_sip._tcp.tcponly.example") => {
                    m.add_answer(srv_rr(&owner, 300, 10, 5062, "sbc.tcponly.example"));
                    m.add_additional(a_rr("sbc.tcponly.example", 300, "192.0.2.9"));
                }
                (RecordType::NAPTR | RecordType::SRV, _) => {
                    m.metadata.response_code = ResponseCode::NXDomain;
                }
                _ => {}
            }
            m
        })
        .await;
        let t = trunk("tcponly.example", None, false, None);
        let wanted = Wanted::of(&t, &[Transport::Udp, Transport::Tcp]).unwrap();
        let found = resolve_wanted(&[server], true, &wanted, false).await.unwrap();
        assert_eq!(found.targets[0].to_string(), "192.0.2.9:5062;transport=tcp");
    }

    #[tokio::test]
    async fn queries_carry_edns_and_a_server_without_it_is_asked_again_without() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // A server that does not do EDNS(0): FORMERR to any query with an OPT record.
        let with_opt = Arc::new(AtomicUsize::new(0));
        let counted = with_opt.clone();
        let old = fake_server(move |q, _| {
            let mut m = reply_to(q);
            if let Some(edns) = &q.edns {
                assert_eq!(edns.max_payload(), EDNS_PAYLOAD);
                assert_eq!(edns.version(), 0);
                counted.fetch_add(1, Ordering::SeqCst);
                m.metadata.response_code = ResponseCode::FormErr;
            } else {
                m.add_answer(a_rr("sbc.example", 60, "192.0.2.5"));
            }
            m
        })
        .await;
        let answer = exchange(&[old], &name("sbc.example"), RecordType::A).await.unwrap();
        assert_eq!(addresses_for(&answer, "sbc.example")[0].0.to_string(), "192.0.2.5");
        assert_eq!(with_opt.load(Ordering::SeqCst), 1, "asked with EDNS first");
        // A FORMERR that carries an OPT record is a real format error: not asked again.
        let strict = fake_server(|q, _| {
            let mut m = reply_to(q);
            m.metadata.response_code = ResponseCode::FormErr;
            m.set_edns(Edns::new());
            m
        })
        .await;
        let error = exchange(&[strict], &name("sbc.example"), RecordType::A).await.unwrap_err();
        assert!(error.contains("Form"), "{error}");
        // An answer larger than 512 bytes comes over UDP when it fits the advertised size
        // (the server truncates, as a real one does, past what the query advertises).
        let big = fake_server(|q, tcp| {
            assert!(!tcp, "no TCP retry for an answer that fits {EDNS_PAYLOAD} bytes");
            let mut m = reply_to(q);
            m.set_edns(Edns::new());
            for i in 0..40u8 {
                m.add_answer(a_rr("many.example", 60, &format!("192.0.2.{i}")));
            }
            if m.to_vec().unwrap().len() > usize::from(q.max_payload()) {
                m.answers.clear();
                m.metadata.truncation = true;
            }
            m
        })
        .await;
        let answer = exchange(&[big], &name("many.example"), RecordType::A).await.unwrap();
        assert_eq!(addresses_for(&answer, "many.example").len(), 40);
        assert!(answer.to_vec().unwrap().len() > 512);
    }

    fn reply_to(q: &Message) -> Message {
        let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
        m.add_queries(q.queries.clone());
        m
    }

    #[tokio::test]
    async fn a_truncated_answer_is_asked_again_over_tcp_and_a_failing_server_is_passed() {
        let failing = fake_server(|q, _| {
            let mut m = reply_to(q);
            m.metadata.response_code = ResponseCode::ServFail;
            m
        })
        .await;
        let server = fake_server(|q, tcp| {
            let mut m = reply_to(q);
            if tcp {
                m.add_answer(srv_rr(
                    "_sip._udp.carrier.example",
                    40,
                    10,
                    5070,
                    "sbc1.carrier.example",
                ));
                m.add_additional(a_rr("sbc1.carrier.example", 3600, "192.0.2.1"));
            } else {
                m.metadata.truncation = true;
            }
            m
        })
        .await;
        let query =
            SrvQuery { name: "_sip._udp.carrier.example".into(), transport: Transport::Udp };
        let found = resolve_srv(&[failing, server], &query).await.unwrap().unwrap();
        assert_eq!(found.targets, [HostAddr::at("192.0.2.1".parse().unwrap(), Some(5070))]);
        assert_eq!(found.ttl, Some(Duration::from_secs(40)), "the smallest TTL");
        // Only the failing server: an error (the caller serves stale or falls back).
        let error = resolve_srv(&[failing], &query).await.unwrap_err();
        assert!(error.contains(&failing.to_string()), "{error}");
        assert!(resolve_srv(&[failing], &query).await.is_err());
        assert!(resolve_srv(&[], &query).await.is_err());
    }

    #[tokio::test]
    async fn targets_without_glue_are_asked_for_and_no_records_means_none() {
        let server = fake_server(|q, _| {
            let mut m = reply_to(q);
            let asked = q.queries[0].name().to_ascii();
            match q.queries[0].query_type() {
                RecordType::SRV if asked.starts_with("_sip._udp.carrier") => {
                    m.add_answer(srv_rr(&asked, 300, 20, 5080, "sbc2.carrier.example"));
                    m.add_answer(srv_rr(&asked, 300, 10, 5070, "sbc1.carrier.example"));
                }
                RecordType::SRV => m.metadata.response_code = ResponseCode::NXDomain,
                RecordType::A if asked.starts_with("sbc1") => {
                    m.add_answer(a_rr(&asked, 60, "192.0.2.1"));
                }
                RecordType::A if asked.starts_with("sbc2") => {
                    m.add_answer(a_rr(&asked, 60, "192.0.2.2"));
                }
                RecordType::AAAA if asked.starts_with("sbc2") => {
                    m.add_answer(a_rr(&asked, 10, "2001:db8::2"));
                }
                _ => {}
            }
            m
        })
        .await;
        let query =
            SrvQuery { name: "_sip._udp.carrier.example".into(), transport: Transport::Udp };
        let found = resolve_srv(&[server], &query).await.unwrap().unwrap();
        let shown: Vec<String> = found.targets.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["192.0.2.1:5070", "192.0.2.2:5080", "[2001:db8::2]:5080"]);
        assert_eq!(found.ttl, Some(Duration::from_secs(10)));
        let none = SrvQuery { name: "_sip._udp.nosrv.example".into(), transport: Transport::Udp };
        assert_eq!(resolve_srv(&[server], &none).await, Ok(None));
    }
}
