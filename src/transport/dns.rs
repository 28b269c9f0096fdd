//! Trunk host names, resolved off the core (RFC 3263 §4.2, A and AAAA only).
//!
//! A trunk URI may name its host (`sip:sbc.carrier.example:5060`). The core never waits for
//! DNS: [`refresh`] runs on a task of its own, resolves every trunk host name of the dialplan
//! in force with the system resolver (`getaddrinfo` on tokio's blocking pool, so `/etc/hosts`
//! and the system's DNS configuration apply), and keeps the answers in [`TrunkHosts`], which
//! the core reads synchronously when it routes.
//!
//! # Contract
//!
//! - A name is resolved when a dialplan that names it comes into force (checked every
//!   [`WATCH`]), then every [`REFRESH`]. `getaddrinfo` gives no TTL: the refresh period stands
//!   in for it.
//! - A lookup that fails keeps the last good addresses for [`STALE_FOR`] (a DNS outage does
//!   not take a carrier away, RFC 8767's "serve stale"); after that, or when the name never
//!   resolved, the trunk has no address and routing treats it like a trunk that is down: it is
//!   skipped (logged), its `lifeline_trunk_up` is 0.
//! - A name not yet resolved (the first lookup still running) has no address either: a call
//!   routed at that moment skips it rather than waiting — an emergency call never waits for
//!   DNS.
//! - Each resolved address is a target of its own: failing over from one address of a trunk
//!   to the next counts as trying the next target.
//! - A request whose source IP is one of a trunk's resolved addresses comes from that trunk.
//!
//! # Not done
//!
//! NAPTR and SRV lookups (RFC 3263 §4.1, §4.2): a URI without a port goes to the transport's
//! default port (5060, 5061 for TLS) at the A/AAAA addresses of the name. The system resolver
//! does not answer SRV queries, and the crate that would, hickory-resolver 0.25 (even without
//! its TLS features: `tokio`, `system-config`), adds about 20 crates to the tree (its own DNS
//! stack, moka, crossbeam, parking_lot, uuid). The rules an SRV lookup would follow are here
//! and tested, but nothing calls them yet: [`srv_query`] (which name to ask, from the URI)
//! and [`srv_order`] (RFC 2782 order: priority, then weighted random).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use sip::transport::Transport;

use crate::routing::{Dialplan, Dialplans};

/// How often every trunk name is resolved again.
pub const REFRESH: Duration = Duration::from_secs(60);

/// How often the dialplan in force is checked for new names.
pub const WATCH: Duration = Duration::from_secs(1);

/// How long one lookup may take before it counts as a failure.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the last good addresses of a name are kept while its lookups fail.
pub const STALE_FOR: Duration = Duration::from_secs(600);

/// What is known of one name.
#[derive(Debug, Clone)]
struct Entry {
    /// The addresses in the resolver's order (empty: none known).
    addrs: Vec<IpAddr>,
    /// When `addrs` were last confirmed.
    good_at: Option<Instant>,
    /// The last lookup failed (and why).
    error: Option<String>,
}

/// The resolved addresses of trunk host names, shared between the resolver task (writes) and
/// the core, the connector and the admin API (read, without waiting).
#[derive(Debug, Default)]
pub struct TrunkHosts {
    names: RwLock<HashMap<String, Entry>>,
}

/// What routing may do with a name, now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// These addresses, in order.
    Resolved(Vec<IpAddr>),
    /// No answer yet (the first lookup is still running, or the name is new).
    Pending,
    /// The name does not resolve (or not for longer than [`STALE_FOR`]).
    Failed,
}

impl TrunkHosts {
    pub fn new() -> TrunkHosts {
        TrunkHosts::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves a plain map behind: still consistent.
        self.names.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.names.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is known of `name` (case-insensitive).
    pub fn lookup(&self, name: &str) -> Lookup {
        match self.read().get(&key(name)) {
            None => Lookup::Pending,
            Some(e) if !e.addrs.is_empty() => Lookup::Resolved(e.addrs.clone()),
            Some(e) if e.error.is_some() => Lookup::Failed,
            Some(_) => Lookup::Pending,
        }
    }

    /// The addresses of `name`, empty when none are known.
    pub fn addrs(&self, name: &str) -> Vec<IpAddr> {
        match self.lookup(name) {
            Lookup::Resolved(a) => a,
            Lookup::Pending | Lookup::Failed => Vec::new(),
        }
    }

    /// Whether `ip` is one of the addresses of `name`.
    pub fn has(&self, name: &str, ip: IpAddr) -> bool {
        self.read().get(&key(name)).is_some_and(|e| e.addrs.contains(&ip))
    }

    /// Records a lookup's outcome at `now`.
    fn record(&self, name: &str, now: Instant, outcome: Result<Vec<IpAddr>, String>) {
        let mut names = self.write();
        let entry = names.entry(key(name)).or_insert(Entry {
            addrs: Vec::new(),
            good_at: None,
            error: None,
        });
        match outcome {
            Ok(addrs) if !addrs.is_empty() => {
                if entry.addrs != addrs {
                    tracing::info!(host = name, addresses = ?addrs, "trunk host resolved");
                }
                *entry = Entry { addrs, good_at: Some(now), error: None };
            }
            Ok(_) | Err(_) => {
                let error = outcome.err().unwrap_or_else(|| "no address".to_owned());
                let stale = entry.good_at.is_none_or(|t| now.duration_since(t) > STALE_FOR);
                if stale && (!entry.addrs.is_empty() || entry.error.is_none()) {
                    tracing::warn!(host = name, %error, "trunk host does not resolve: its trunk is skipped");
                } else if !stale {
                    tracing::warn!(host = name, %error, "trunk host lookup failed: keeping the last addresses");
                }
                if stale {
                    entry.addrs.clear();
                }
                entry.error = Some(error);
            }
        }
    }

    /// Forgets the names not in `keep`.
    fn retain(&self, keep: &[String]) {
        self.write().retain(|name, _| keep.contains(name));
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The host names (not IP addresses) of the trunks of `plan`.
pub fn names(plan: &Dialplan) -> Vec<String> {
    let mut names: Vec<String> =
        plan.trunks.iter().filter(|t| t.ip.is_none()).map(|t| key(&t.host)).collect();
    names.sort();
    names.dedup();
    names
}

/// Resolves one name: every A and AAAA address, in the resolver's order, without repeats.
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

/// Resolves `names` (all at once) into `hosts`.
async fn resolve_all(hosts: &TrunkHosts, names: &[String]) {
    let mut lookups = tokio::task::JoinSet::new();
    for name in names {
        let name = name.clone();
        lookups.spawn(async move {
            let outcome = resolve(&name).await;
            (name, outcome)
        });
    }
    while let Some(done) = lookups.join_next().await {
        if let Ok((name, outcome)) = done {
            hosts.record(&name, Instant::now(), outcome);
        }
    }
}

/// Keeps `hosts` current for the dialplan in force until `stop` turns `true` (a lookup still
/// running then is abandoned: shutdown never waits for DNS).
pub async fn refresh(
    hosts: Arc<TrunkHosts>,
    dialplans: Arc<Dialplans>,
    mut stop: watch::Receiver<bool>,
) {
    let mut known: Vec<String> = Vec::new();
    let mut next_refresh = Instant::now();
    loop {
        let work = async {
            let wanted = names(&dialplans.current());
            let now = Instant::now();
            if now >= next_refresh {
                next_refresh = now + REFRESH;
                hosts.retain(&wanted);
                resolve_all(&hosts, &wanted).await;
                known = wanted;
            } else if wanted != known {
                // A reloaded dialplan: its new names at once, the others at the next refresh.
                let new: Vec<String> =
                    wanted.iter().filter(|n| !known.contains(n)).cloned().collect();
                hosts.retain(&wanted);
                resolve_all(&hosts, &new).await;
                known = wanted;
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

/// The SRV query for a trunk's URI (RFC 3263 §4.2): what to ask and the transport its
/// targets are reached over. `None` when the URI names an IP address or a port (§4.2: A and
/// AAAA at that port), or a transport without an SRV service here (WebSocket, SCTP).
///
/// The service follows what the URI says (§4.1): `;transport=tls` or a `sips:` URI is
/// `_sips._tcp`, `;transport=tcp` is `_sip._tcp`; a `sip:` URI that names no transport is
/// `_sip._udp` (no NAPTR, which would choose among the transports the domain offers).
///
/// Not wired in yet: [`refresh`] still resolves A and AAAA only (see the module doc).
pub fn srv_query(trunk: &crate::routing::Trunk) -> Option<SrvQuery> {
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
pub fn srv_order(mut records: Vec<Srv>, mut random: impl FnMut(u32) -> u32) -> Vec<Srv> {
    if records.len() == 1 && records[0].target == "." {
        return Vec::new();
    }
    records.retain(|r| r.target != ".");
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let mut group: Vec<Srv> = Vec::new();
        while records.first().is_some_and(|r| r.priority == priority) {
            group.push(records.remove(0));
        }
        while !group.is_empty() {
            let sum: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let draw = random(sum).min(sum);
            let mut running = 0u32;
            let at = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
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
    use crate::routing::Trunk;

    #[tokio::test]
    async fn localhost_resolves_and_invalid_does_not() {
        let hosts = TrunkHosts::new();
        assert_eq!(hosts.lookup("localhost"), Lookup::Pending);
        resolve_all(&hosts, &["localhost".to_owned(), "nonexistent.invalid".to_owned()]).await;
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
        hosts.record("sbc.example", t0, Ok(vec![ip]));
        hosts.record("sbc.example", t0 + REFRESH, Err("timeout".into()));
        assert_eq!(hosts.lookup("sbc.example"), Lookup::Resolved(vec![ip]));
        hosts.record("sbc.example", t0 + STALE_FOR + REFRESH, Err("timeout".into()));
        assert_eq!(hosts.lookup("sbc.example"), Lookup::Failed);
        hosts.record("sbc.example", t0 + STALE_FOR * 2, Ok(vec![ip]));
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

    #[test]
    fn a_dot_target_means_no_service() {
        assert!(srv_order(vec![srv(0, 0, ".")], |_| 0).is_empty());
        assert_eq!(srv_order(vec![srv(0, 0, "."), srv(1, 0, "x")], |_| 0), [srv(1, 0, "x")]);
    }
}
