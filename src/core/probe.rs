//! Trunk health: an OPTIONS to every trunk every [`PROBE_INTERVAL`] (Kamailio's dispatcher
//! does the same); a trunk named by DNS name is probed at the first of its cached addresses
//! ([`super::resolve`]) — as soon as its name first resolves, then with the others — and is
//! reported down (`lifeline_trunk_up` 0) while its name has no address. A trunk whose probe times out or fails to send is
//! marked down and skipped by routing until a probe is answered again; any final response
//! counts as alive (a 404 or 405 to OPTIONS still proves the trunk is there), except 503
//! (RFC 3261 §21.5.4: the server is overloaded or down for maintenance).
//!
//! When every trunk of a route is down, routing still tries them all: a stale health view
//! must never make the edge refuse a call it could have placed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sip::proxy::{HopHost, NextHop};
use sip::transaction::{ClientKey, Transport};
use sip::{HeaderName, Method, Request};

use super::Core;

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
    in_flight: HashMap<ClientKey, String>,
    /// Trunks known to be down (by name).
    down: HashMap<String, Instant>,
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
        for trunk in &plan.trunks {
            // An SRV-resolved trunk is probed at its first target's address and port.
            let (ip, srv_port) = match self.trunk_addrs(trunk) {
                super::resolve::TrunkAddrs::Literal => (trunk.ip, None),
                super::resolve::TrunkAddrs::Resolved(addrs) => {
                    (addrs.first().map(|a| a.ip), addrs.first().and_then(|a| a.port))
                }
                super::resolve::TrunkAddrs::Unresolved => (None, None),
            };
            let Some(ip) = ip else {
                // A name with no address: down until it resolves (and is probed).
                waiting = true;
                self.config.metrics.set_trunk(&trunk.name, false);
                self.probes.probed.remove(&trunk.name);
                continue;
            };
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
            let transport = trunk.transport.unwrap_or(if trunk.secure {
                Transport::Tls
            } else {
                Transport::Udp
            });
            let port = srv_port.or(trunk.port).unwrap_or_else(|| transport.default_port());
            let hop = NextHop {
                transport,
                host: HopHost::Ip(ip),
                port,
                resolve: sip::proxy::Resolve::Nothing,
            };
            let Some((peer, out)) = self.resolve_hop(&hop) else { continue };
            self.probes.sequence += 1;
            let seq = self.probes.sequence;
            let scheme = if trunk.secure { "sips" } else { "sip" };
            let Ok(mut req) =
                Request::new(Method::Options, &format!("{scheme}:{}:{port}", trunk.host))
            else {
                continue;
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
                    self.probes.in_flight.insert(key, trunk.name.clone());
                    self.probes.probed.insert(trunk.name.clone());
                }
                Err(e) => tracing::debug!(trunk = %trunk.name, error = %e, "probe not sent"),
            }
        }
        // While a name waits for an address, look again every second (a cheap walk of the
        // trunks; only those never probed are probed).
        self.probes.next = match (waiting, self.probes.round) {
            (true, Some(round)) => Some(round.min(now + Duration::from_secs(1))),
            (_, round) => round,
        };
    }

    /// A response or failure on a client transaction: `true` when it was a probe's.
    pub(super) fn probe_result(&mut self, key: ClientKey, status: Option<u16>) -> bool {
        let Some(trunk) = self.probes.in_flight.get(&key).cloned() else { return false };
        match status {
            Some(s) if s < 200 => return true,
            Some(s) if s != 503 => {
                if self.probes.down.remove(&trunk).is_some() {
                    tracing::info!(%trunk, status = s, "trunk is answering again");
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
