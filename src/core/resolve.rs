//! Trunk host names as the core sees them: read from the cache that
//! [`crate::transport::dns`] keeps current off the core, never waited for.
//!
//! - A trunk named by IP address is one target, as before.
//! - A trunk named by DNS name is one target per resolved address, in the resolver's order
//!   ([`Target::addr`]): the Request-URI keeps the name, the branch goes to the address, and
//!   failing over to the next address is trying the next target.
//! - A trunk whose name was resolved through SRV (RFC 3263 §4.2: a host name without a port)
//!   is one target per (address, port), in RFC 2782 order ([`Target::addr`] and
//!   [`Target::port`]): the branch goes to that port, not the URI's default; the Request-URI
//!   still keeps the name.
//! - A trunk whose NAPTR records chose its transport (RFC 3263 §4.1: a host name without
//!   port or `;transport=`) is one target per (address, port) of the chosen record's SRV
//!   name, each sent over that transport ([`Target::transport`]): TCP or TLS opens a
//!   connection to the target, from the `tcp:` or `tls:` listen address (the Via's sent-by),
//!   and a target whose transport has no listen address fails like an unreachable one. A
//!   request the URI sends over TCP because it is large (RFC 3261 §18.1.1) stays on TCP when
//!   NAPTR chose UDP.
//! - Targets whose probe failed ([`super::probe`]) come after the trunk's live ones.
//! - A trunk whose name has no address (it does not resolve, or its first lookup has not
//!   answered yet) gives no target: it is skipped with a log line, as a trunk that is down.
//! - Other next hops that are names (an in-dialog request toward a Contact or Record-Route
//!   naming a trunk's host) go to the first cached address of that name, if any.
//! - A request from one of a trunk's resolved addresses (its SRV targets' too, whatever their
//!   port) is from that trunk.

use std::net::{IpAddr, SocketAddr};

use sip::proxy::{HopHost, ListenAddr, NextHop};
use sip::transaction::{Peer, Transport};

use super::Core;
use super::proxy::Target;
use crate::routing::{Dialplan, Trunk};
use crate::transport::dns::{HostAddr, Lookup};

/// Where a trunk can be reached now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TrunkAddrs {
    /// Its URI names an IP address.
    Literal,
    /// The resolved targets of its name, in order (with the SRV port when SRV gave them).
    Resolved(Vec<HostAddr>),
    /// Its name has no address (yet): skip it.
    Unresolved,
}

impl Core {
    /// Where `trunk` can be reached now, from the cache.
    pub(super) fn trunk_addrs(&self, trunk: &Trunk) -> TrunkAddrs {
        if trunk.ip.is_some() {
            return TrunkAddrs::Literal;
        }
        match self.config.trunk_hosts.lookup_trunk(trunk) {
            Lookup::Resolved(addrs) => TrunkAddrs::Resolved(addrs),
            Lookup::Pending | Lookup::Failed => TrunkAddrs::Unresolved,
        }
    }

    /// The targets of `trunk` (as [`Core::trunk_targets`]) from one read of the cache, or
    /// `None` when its host name has no address now: routing skips it like a trunk that is
    /// down.
    pub(super) fn reachable_targets(&self, trunk: &Trunk, base: Target) -> Option<Vec<Target>> {
        let targets = targets_at(base, self.trunk_addrs(trunk)).map(|t| self.live_first(trunk, t));
        if targets.is_none() {
            // Debug only: the resolver warns once when the name stops resolving, and an
            // ordinary call per second must not add a warning each.
            tracing::debug!(trunk = %trunk.name, host = %trunk.host, "trunk host name has no address: skipped");
        }
        targets
    }

    /// The targets of `trunk` (see the module docs): `base` once, or once per resolved address.
    pub(super) fn trunk_targets(&self, trunk: &Trunk, base: Target) -> Vec<Target> {
        match targets_at(base, self.trunk_addrs(trunk)) {
            Some(targets) => self.live_first(trunk, targets),
            None => {
                tracing::warn!(trunk = %trunk.name, host = %trunk.host, "trunk host name has no address: skipped");
                Vec::new()
            }
        }
    }

    /// `targets` of `trunk` with those whose probe failed moved last, in their order
    /// ([`super::probe`]): still tried, after the live ones.
    fn live_first(&self, trunk: &Trunk, mut targets: Vec<Target>) -> Vec<Target> {
        let default_port = super::probe::trunk_transport(trunk).default_port();
        targets.sort_by_key(|t| {
            t.addr.is_some_and(|ip| {
                let default_port = t.transport.map_or(default_port, Transport::default_port);
                let at = SocketAddr::new(ip, t.port.or(trunk.port).unwrap_or(default_port));
                !self.probes.target_is_up(&trunk.name, at)
            })
        });
        targets
    }

    /// The trunk a request from `ip` comes from: its URI's IP address or a resolved address of
    /// its name, or one of its `sources`.
    pub(super) fn trunk_for_source<'p>(&self, plan: &'p Dialplan, ip: IpAddr) -> Option<&'p Trunk> {
        plan.trunks.iter().find(|t| {
            t.sends_from(ip) || (t.ip.is_none() && self.config.trunk_hosts.has_trunk(t, ip))
        })
    }

    /// Where to send toward `hop`, and from which listen address. A name goes to `addr` when
    /// the target chose one of its addresses, else to its first cached address; at `port`
    /// when the target has one (SRV), else at the hop's port; over `transport` when DNS
    /// chose one ([`chosen_transport`]), else the hop's. `None` when the name has no
    /// address, or when no listen address has that transport (TLS toward a trunk needs a
    /// `tls:` listener, the Via's sent-by).
    pub(super) fn resolve_hop_at(
        &self,
        hop: &NextHop,
        addr: Option<IpAddr>,
        port: Option<u16>,
        transport: Option<Transport>,
    ) -> Option<(Peer, ListenAddr)> {
        let ip = match (&hop.host, addr) {
            (HopHost::Ip(ip), _) => *ip,
            (HopHost::Name(_), Some(a)) => a,
            (HopHost::Name(name), None) => *self.config.trunk_hosts.addrs(name).first()?,
        };
        let transport = chosen_transport(hop.transport, transport);
        let hop = &NextHop { host: HopHost::Ip(ip), transport, ..hop.clone() };
        let Some(out) = self.local.outbound_for(hop).cloned() else {
            if hop.transport == Transport::Tls {
                // A configuration problem: TLS toward a trunk needs a `tls:` listener.
                tracing::warn!("no tls: listener: a TLS next hop cannot be reached");
            } else {
                tracing::debug!(
                    transport = hop.transport.as_str(),
                    "no listen address for the next hop's transport"
                );
            }
            return None;
        };
        let to = SocketAddr::new(ip, port.unwrap_or(hop.port));
        let peer = match hop.transport {
            Transport::Udp => Peer::udp(to),
            t => Peer::stream(t, to, None),
        };
        Some((peer, out))
    }
}

/// The transport toward a target: the one DNS chose (`dns`), else the hop's (`uri`, from
/// the Request-URI) — except that a request the Request-URI sends over TCP for its size
/// (RFC 3261 §18.1.1) is not put back on UDP.
fn chosen_transport(uri: Transport, dns: Option<Transport>) -> Transport {
    match (uri, dns) {
        (Transport::Tcp, Some(Transport::Udp)) | (_, None) => uri,
        (_, Some(t)) => t,
    }
}

/// A trunk's targets at `addrs`: `base` once for a literal address, once per resolved
/// (address, port, transport) for a name; `None` when the name has none.
fn targets_at(base: Target, addrs: TrunkAddrs) -> Option<Vec<Target>> {
    match addrs {
        TrunkAddrs::Literal => Some(vec![base]),
        TrunkAddrs::Resolved(addrs) => Some(
            addrs
                .into_iter()
                .map(|a| Target {
                    addr: Some(a.ip),
                    port: a.port,
                    transport: a.transport,
                    ..base.clone()
                })
                .collect(),
        ),
        TrunkAddrs::Unresolved => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_target_per_address_and_port_in_order() {
        let base = Target::uri("sip:+12025550199@carrier.example".into());
        let at = |ip: &str, port| HostAddr::at(ip.parse().unwrap(), port);
        let srv =
            vec![at("192.0.2.1", Some(5070)), at("192.0.2.2", Some(5080)), at("192.0.2.1", None)];
        let targets = targets_at(base.clone(), TrunkAddrs::Resolved(srv)).unwrap();
        let seen: Vec<(Option<IpAddr>, Option<u16>)> =
            targets.iter().map(|t| (t.addr, t.port)).collect();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            seen,
            [(ip("192.0.2.1"), Some(5070)), (ip("192.0.2.2"), Some(5080)), (ip("192.0.2.1"), None)]
        );
        // The Request-URI keeps the name.
        assert!(targets.iter().all(|t| t.uri == base.uri));
        let literal = targets_at(base.clone(), TrunkAddrs::Literal).unwrap();
        assert_eq!((literal.len(), literal[0].addr, literal[0].port), (1, None, None));
        assert!(targets_at(base.clone(), TrunkAddrs::Unresolved).is_none());
        // The transport NAPTR chose goes with each target.
        let tcp = HostAddr { transport: Some(Transport::Tcp), ..at("192.0.2.3", Some(5062)) };
        let targets = targets_at(base, TrunkAddrs::Resolved(vec![tcp])).unwrap();
        assert_eq!(targets[0].transport, Some(Transport::Tcp));
    }

    #[test]
    fn the_transport_dns_chose_wins_but_a_large_request_stays_on_tcp() {
        use Transport::{Tcp, Tls, Udp};
        assert_eq!(chosen_transport(Udp, None), Udp);
        assert_eq!(chosen_transport(Udp, Some(Tcp)), Tcp);
        assert_eq!(chosen_transport(Udp, Some(Tls)), Tls);
        assert_eq!(chosen_transport(Tcp, Some(Tls)), Tls);
        assert_eq!(chosen_transport(Tcp, Some(Udp)), Tcp, "RFC 3261 §18.1.1");
    }
}
