//! Trunk health: an OPTIONS to every trunk every [`PROBE_INTERVAL`] (Kamailio's dispatcher
//! does the same). Any final response counts as alive (a 404 or 405 to OPTIONS still proves
//! the trunk is there), except 503 (RFC 3261 §21.5.4: the server is overloaded or down for
//! maintenance); a probe that times out or cannot be sent counts as dead.
//!
//! - A trunk named by IP address is probed there; when its probe fails it is marked down
//!   (`lifeline_trunk_up` 0) and routing tries it after the trunks that are up, until a probe
//!   is answered again.
//! - A trunk named by DNS name is probed at **every** target of its name ([`super::resolve`]:
//!   each address, or each SRV (address, port), over the transport NAPTR chose for it when it
//!   did) — as soon as its name first resolves, then
//!   with the others. A target that fails is tried after the trunk's live targets (RFC 3263
//!   §4.3 leaves marking a failed target to the client); the trunk is down only when every
//!   target failed. It is reported down while its name has no address.
//!
//! When every trunk of a route (or every target of a trunk) is down, routing still tries them
//! all: a stale health view must never make the edge refuse a call it could have placed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip::proxy::{HopHost, NextHop};
use sip::transaction::{ClientKey, Transport};
use sip::{HeaderName, Method, Request};

use super::Core;
use crate::transport::dns::HostAddr;

/// How often each trunk is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// Probes in flight and what they found.
#[derive(Debug, Default)]
pub struct Probes {
    next: Option<Instant>,
    /// When the next full round is due (`next` comes sooner while a trunk name waits for its
    /// first address).
    round: Option<Instant>,
    /// Trunks probed at least once (by name): a trunk whose name resolves late is probed at
    /// once, not at the next round.
    probed: std::collections::HashSet<String>,
    /// Probes waiting for their answer: the trunk, and the target for a trunk named by DNS
    /// name.
    in_flight: HashMap<ClientKey, (String, Option<SocketAddr>)>,
    /// Trunks known to be down (by name).
    down: HashMap<String, Instant>,
    /// The targets of trunks named by DNS name (by trunk name) and whether each answered its
    /// last probe (`true` until it has been asked).
    targets: HashMap<String, HashMap<SocketAddr, bool>>,
    sequence: u64,
}

impl Probes {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Whether `trunk` answered its last probe (or has not been probed yet).
    pub(super) fn is_up(&self, trunk: &str) -> bool {
        !self.down.contains_key(trunk)
    }

    /// Whether the target `at` of `trunk` answered its last probe (or has not been probed).
    pub(super) fn target_is_up(&self, trunk: &str, at: SocketAddr) -> bool {
        self.targets.get(trunk).and_then(|t| t.get(&at)).copied().unwrap_or(true)
    }

    /// Records a target's probe, logging when its state changed.
    fn target_result(&mut self, trunk: &str, at: SocketAddr, alive: bool) {
        let Some(targets) = self.targets.get_mut(trunk) else { return };
        if let Some(was) = targets.insert(at, alive)
            && was != alive
        {
            if alive {
                tracing::info!(%trunk, target = %at, "trunk target is answering again");
            } else {
                tracing::warn!(%trunk, target = %at, "trunk target is not answering OPTIONS: tried last");
            }
        }
    }
}

impl Core {
    /// Sends the probes due at `now` and schedules the next round.
    pub(super) fn probe_trunks(&mut self, now: Instant) {
        if self.probes.next.is_some_and(|t| t > now) {
            return;
        }
        let full = self.probes.round.is_none_or(|t| t <= now);
        if full {
            self.probes.round = Some(now + PROBE_INTERVAL);
        }
        let mut waiting = false;
        let plan = self.dialplans.current();
        self.probes.targets.retain(|name, _| plan.trunks.iter().any(|t| t.name == *name));
        for trunk in &plan.trunks {
            // A trunk named by DNS name is probed at each of its targets (address, port and
            // the transport DNS chose).
            let (ips, by_name): (Vec<HostAddr>, bool) = match self.trunk_addrs(trunk) {
                super::resolve::TrunkAddrs::Literal => {
                    (trunk.ip.map(|ip| HostAddr::at(ip, None)).into_iter().collect(), false)
                }
                super::resolve::TrunkAddrs::Resolved(addrs) => (addrs, true),
                super::resolve::TrunkAddrs::Unresolved => (Vec::new(), true),
            };
            if ips.is_empty() {
                // A name with no address: down until it resolves (and is probed).
                waiting = true;
                self.config.metrics.set_trunk(&trunk.name, false);
                self.probes.probed.remove(&trunk.name);
                continue;
            }
            if !trunk.probe {
                if trunk.ip.is_none() {
                    // Not probed: up as far as DNS can tell.
                    self.config.metrics.set_trunk(&trunk.name, true);
                }
                continue;
            }
            if !full && self.probes.probed.contains(&trunk.name) {
                continue;
            }
            let at: Vec<(Transport, SocketAddr)> = ips
                .iter()
                .map(|a| {
                    let transport = a.transport.unwrap_or_else(|| trunk_transport(trunk));
                    let port = a.port.or(trunk.port).unwrap_or(transport.default_port());
                    (transport, SocketAddr::new(a.ip, port))
                })
                .collect();
            if by_name {
                // The targets of this round: those gone are forgotten, new ones are up until
                // their probe says otherwise.
                let known = self.probes.targets.entry(trunk.name.clone()).or_default();
                known.retain(|a, _| at.iter().any(|(_, t)| t == a));
                for (_, a) in &at {
                    known.entry(*a).or_insert(true);
                }
            }
            for (transport, a) in at {
                self.probe_target(now, trunk, transport, a, by_name);
            }
        }
        // While a name waits for an address, look again every second (a cheap walk of the
        // trunks; only those never probed are probed).
        self.probes.next = match (waiting, self.probes.round) {
            (true, Some(round)) => Some(round.min(now + Duration::from_secs(1))),
            (_, round) => round,
        };
    }

    /// Sends one OPTIONS probe to `trunk` at `at`; `by_name`: one of the targets of its name.
    fn probe_target(
        &mut self,
        now: Instant,
        trunk: &crate::routing::Trunk,
        transport: Transport,
        at: SocketAddr,
        by_name: bool,
    ) {
        let port = at.port();
        let hop = NextHop {
            transport,
            host: HopHost::Ip(at.ip()),
            port,
            resolve: sip::proxy::Resolve::Nothing,
        };
        let Some((peer, out)) = self.resolve_hop(&hop) else { return };
        self.probes.sequence += 1;
        let seq = self.probes.sequence;
        let scheme = if trunk.secure { "sips" } else { "sip" };
        let Ok(mut req) = Request::new(Method::Options, &format!("{scheme}:{}:{port}", trunk.host))
        else {
            return;
        };
        let domain = &self.config.registrar.domain;
        let h = req.headers_mut();
        h.push(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch=z9hG4bKprobe{seq:x}",
                transport.as_str(),
                out.host_port()
            ),
        );
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, format!("<sip:lifeline@{domain}>;tag=probe{seq:x}"));
        h.push(HeaderName::To, format!("<{scheme}:{}:{port}>", trunk.host));
        h.push(HeaderName::CallId, format!("probe-{seq:x}@{domain}"));
        h.push(HeaderName::CSeq, "1 OPTIONS");
        h.push(HeaderName::ContentLength, "0");
        match self.txn.send_request(now, peer, req) {
            Ok(key) => {
                let target = by_name.then_some(at);
                self.probes.in_flight.insert(key, (trunk.name.clone(), target));
                self.probes.probed.insert(trunk.name.clone());
            }
            Err(e) => tracing::debug!(trunk = %trunk.name, error = %e, "probe not sent"),
        }
    }

    /// A response or failure on a client transaction: `true` when it was a probe's.
    pub(super) fn probe_result(&mut self, key: ClientKey, status: Option<u16>) -> bool {
        let Some((trunk, target)) = self.probes.in_flight.get(&key).cloned() else { return false };
        if status.is_some_and(|s| s < 200) {
            return true;
        }
        let alive = status.is_some_and(|s| s != 503);
        // A trunk named by DNS name is alive while any of its targets is.
        let alive = match target {
            Some(at) => {
                self.probes.target_result(&trunk, at, alive);
                self.probes.targets.get(&trunk).is_none_or(|t| t.values().any(|up| *up))
            }
            None => alive,
        };
        match status {
            _ if alive => {
                if self.probes.down.remove(&trunk).is_some() {
                    tracing::info!(%trunk, ?status, "trunk is answering again");
                }
            }
            _ => {
                if !self.probes.down.contains_key(&trunk) {
                    tracing::warn!(%trunk, ?status, "trunk is not answering OPTIONS: skipped by routing");
                    self.probes.down.insert(trunk.clone(), Instant::now());
                }
            }
        }
        self.probes.in_flight.remove(&key);
        self.config.metrics.set_trunk(&trunk, self.probes.is_up(&trunk));
        true
    }

    /// A probe's transaction ended.
    pub(super) fn probe_terminated(&mut self, key: ClientKey) {
        self.probes.in_flight.remove(&key);
    }
}

/// The transport toward `trunk`: its URI's, else TLS for `sips:`, else UDP.
pub(super) fn trunk_transport(trunk: &crate::routing::Trunk) -> Transport {
    trunk.transport.unwrap_or(if trunk.secure { Transport::Tls } else { Transport::Udp })
}
