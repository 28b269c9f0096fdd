//! Who this proxy is — the addresses it listens on and the names it answers to — and where a
//! URI says a request should go next (RFC 3261 §16.4, §16.6 step 7; RFC 3263 §4 without DNS).

use std::net::{IpAddr, SocketAddr};

use crate::header::typed::Via;
use crate::message::Request;
use crate::uri::{Host, SipUri, Uri, UriError};

use super::Reject;
pub use crate::transport::Transport;

/// A host reduced to what decides equality: an address, or a lower-cased name without a
/// trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum HostKey {
    Ip(IpAddr),
    Name(String),
}

impl HostKey {
    pub(crate) fn of(host: &Host<'_>) -> HostKey {
        match host {
            Host::Domain(d) => HostKey::Name(d.trim_end_matches('.').to_ascii_lowercase()),
            Host::V4(a) => HostKey::Ip(IpAddr::V4(*a)),
            Host::V6(a) => HostKey::Ip(IpAddr::V6(*a)).canonical(),
        }
    }

    /// Parses a hostname, an IPv4 address or an IPv6 address with or without brackets.
    pub(crate) fn parse(s: &str) -> Result<HostKey, UriError> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(HostKey::Ip(ip).canonical());
        }
        Host::parse(s).map(|h| HostKey::of(&h))
    }

    /// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, what a dual-stack socket reports) are the
    /// IPv4 address.
    fn canonical(self) -> HostKey {
        match self {
            HostKey::Ip(ip) => HostKey::Ip(ip.to_canonical()),
            other => other,
        }
    }
}

/// One address this proxy listens on, as it advertises it in Via and Record-Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    transport: Transport,
    /// As written in a Via sent-by or a URI: a name, an IPv4 address or a bracketed IPv6
    /// reference (RFC 5118).
    host: String,
    port: u16,
    key: HostKey,
    /// `host:port`, written once: every forwarded request carries it in its Via.
    sent_by: String,
}

impl ListenAddr {
    /// `host` is what peers must use to reach this address: a public name or address (behind
    /// NAT, the public one), never `0.0.0.0`. IPv6 addresses may be given with or without
    /// brackets.
    pub fn new(transport: Transport, host: &str, port: u16) -> Result<ListenAddr, UriError> {
        let key = HostKey::parse(host)?;
        let host = match key {
            HostKey::Ip(IpAddr::V6(a)) => format!("[{a}]"),
            HostKey::Ip(IpAddr::V4(a)) => a.to_string(),
            HostKey::Name(_) => host.to_owned(),
        };
        let sent_by = format!("{host}:{port}");
        Ok(ListenAddr { transport, host, port, key, sent_by })
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The host as written in Via and Record-Route.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, the Via sent-by (RFC 3261 §18.1.1) and the host part of our URIs.
    pub fn host_port(&self) -> &str {
        &self.sent_by
    }

    fn is_ipv6(&self) -> bool {
        matches!(self.key, HostKey::Ip(IpAddr::V6(_)))
    }
}

/// What the proxy rules need to know about this element: where it listens, which other names
/// mean "this proxy", which domains it serves and which Proxy-Require options it understands.
///
/// "A URI that points at me" (RFC 3261 §16.4) is a SIP URI whose host is one of the listen
/// hosts or aliases and whose port — written, or the default for its scheme and transport — is
/// one of the listen ports (the rule Kamailio's `check_self` uses). A served domain alone does
/// not make a URI point at the proxy: `sip:alice@example.com` is for Alice.
#[derive(Debug, Clone, Default)]
pub struct LocalIdentity {
    addresses: Vec<ListenAddr>,
    aliases: Vec<HostKey>,
    domains: Vec<HostKey>,
    proxy_options: Vec<String>,
}

impl LocalIdentity {
    pub fn new(addresses: Vec<ListenAddr>) -> LocalIdentity {
        LocalIdentity { addresses, ..LocalIdentity::default() }
    }

    /// Another name or address of this node (a DNS name, the bound address behind a NAT).
    pub fn with_alias(mut self, host: &str) -> Result<LocalIdentity, UriError> {
        self.aliases.push(HostKey::parse(host)?);
        Ok(self)
    }

    /// A domain this proxy is responsible for (`[sip] domain`; RFC 3261 §16.5).
    pub fn with_domain(mut self, domain: &str) -> Result<LocalIdentity, UriError> {
        self.domains.push(HostKey::parse(domain)?);
        Ok(self)
    }

    /// A Proxy-Require option tag this proxy implements (RFC 3261 §16.3 step 5).
    pub fn with_proxy_option(mut self, tag: &str) -> LocalIdentity {
        self.proxy_options.push(tag.to_owned());
        self
    }

    pub fn addresses(&self) -> &[ListenAddr] {
        &self.addresses
    }

    /// Whether the Proxy-Require option tag `tag` is understood (compared case-insensitively).
    pub fn understands(&self, tag: &str) -> bool {
        self.proxy_options.iter().any(|t| t.eq_ignore_ascii_case(tag))
    }

    fn is_my_host(&self, key: &HostKey) -> bool {
        self.addresses.iter().any(|a| a.key == *key) || self.aliases.contains(key)
    }

    fn is_my_port(&self, port: u16) -> bool {
        self.addresses.iter().any(|a| a.port == port)
    }

    /// Whether `uri` points at this proxy (RFC 3261 §16.4): see the type docs.
    pub fn is_me(&self, uri: &SipUri<'_>) -> bool {
        let port = uri.port.unwrap_or_else(|| uri_transport(uri).default_port());
        self.is_my_host(&HostKey::of(&uri.host)) && self.is_my_port(port)
    }

    /// Whether the URI's host is a domain this proxy serves (RFC 3261 §16.5).
    pub fn serves(&self, uri: &SipUri<'_>) -> bool {
        self.domains.contains(&HostKey::of(&uri.host))
    }

    /// Whether a Via was written by this proxy: its sent-by is one of the listen addresses
    /// (RFC 3261 §18.1.2, §16.3 step 4).
    pub fn is_my_sent_by(&self, via: &Via<'_>) -> bool {
        let port = via.port.unwrap_or_else(|| {
            Transport::from_via(via.transport).unwrap_or(Transport::Udp).default_port()
        });
        let key = HostKey::of(&via.host);
        self.addresses.iter().any(|a| a.key == key && a.port == port)
            || (self.aliases.contains(&key) && self.is_my_port(port))
    }

    /// Whether a request is addressed to this proxy itself rather than to a user or another
    /// element: a SIP Request-URI without a user part that points at this proxy or names a
    /// served domain (`OPTIONS sip:edge.example.com`).
    pub fn is_addressed_to_me(&self, request: &Request) -> bool {
        match request.uri() {
            Ok(Uri::Sip(u)) => u.user.is_none() && (self.is_me(&u) || self.serves(&u)),
            _ => false,
        }
    }

    /// The listen address to send toward `hop` from: the first one with the hop's transport and,
    /// when the hop is an IP address, the same address family.
    pub fn outbound_for(&self, hop: &NextHop) -> Option<&ListenAddr> {
        let same_transport = |a: &&ListenAddr| a.transport == hop.transport;
        match &hop.host {
            HopHost::Ip(ip) => self
                .addresses
                .iter()
                .filter(same_transport)
                .find(|a| match &a.key {
                    HostKey::Ip(mine) => mine.is_ipv6() == ip.is_ipv6(),
                    HostKey::Name(_) => true,
                })
                .or_else(|| {
                    self.addresses
                        .iter()
                        .filter(same_transport)
                        .find(|a| a.is_ipv6() == ip.is_ipv6())
                }),
            HopHost::Name(_) => self.addresses.iter().find(same_transport),
        }
    }
}

/// The transport a SIP URI implies when its `transport` parameter is absent or unknown: UDP,
/// or TLS for `sips:`. Used for default ports.
fn uri_transport(uri: &SipUri<'_>) -> Transport {
    uri.transport()
        .and_then(|t| Transport::from_uri_param(t, uri.secure))
        .unwrap_or(if uri.secure { Transport::Tls } else { Transport::Udp })
}

/// Where to send a message next, as far as RFC 3263 gets without DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub transport: Transport,
    pub host: HopHost,
    pub port: u16,
    /// What a resolver still has to do before `host` is an address.
    pub resolve: Resolve,
}

/// The host of a [`NextHop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopHost {
    Ip(IpAddr),
    /// A DNS name, lower-cased.
    Name(String),
}

/// The DNS work RFC 3263 leaves for a [`NextHop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// The host is an address: nothing to resolve.
    Nothing,
    /// A name with an explicit port: A/AAAA records only (RFC 3263 §4.2).
    Address,
    /// A name without a port: NAPTR and SRV first (RFC 3263 §4.1, §4.2). `transport` and `port`
    /// are then only the fallback (UDP 5060, TLS 5061 for `sips:`) unless the URI named a
    /// transport.
    Service,
}

impl NextHop {
    /// The next hop for a SIP URI (RFC 3263 §4): the `maddr` parameter or the host; the
    /// `transport` parameter, else UDP (TLS for `sips:`); the port, else the transport's default.
    pub fn for_uri(uri: &SipUri<'_>) -> Result<NextHop, Reject> {
        let transport = match uri.transport() {
            Some(t) => {
                Transport::from_uri_param(t, uri.secure).ok_or(Reject::UnsupportedTransport)?
            }
            None if uri.secure => Transport::Tls,
            None => Transport::Udp,
        };
        let maddr = uri
            .params
            .get("maddr")
            .flatten()
            .map(|m| HostKey::parse(m).map_err(|_| Reject::BadRequestUri))
            .transpose()?;
        let key = maddr.unwrap_or_else(|| HostKey::of(&uri.host));
        let port = uri.port.unwrap_or(transport.default_port());
        let (host, resolve) = match key {
            HostKey::Ip(ip) => (HopHost::Ip(ip), Resolve::Nothing),
            HostKey::Name(n) => {
                let resolve = if uri.port.is_some() { Resolve::Address } else { Resolve::Service };
                (HopHost::Name(n), resolve)
            }
        };
        Ok(NextHop { transport, host, port, resolve })
    }

    /// The socket address, when the host is an IP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            HopHost::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            HopHost::Name(_) => None,
        }
    }
}
