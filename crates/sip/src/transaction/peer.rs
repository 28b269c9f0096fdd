//! Where a message came from and where it goes: the transport, the address and, on connection
//! transports, the connection (flow).
//!
//! These live here because the transaction layer is their first user; the edge's transport
//! module (`src/transport/`) maps its sockets and connections onto them.

use std::fmt;
use std::net::SocketAddr;

/// A SIP transport (RFC 3261 §18, RFC 7118 for WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    /// SIP over WebSocket (RFC 7118).
    Ws,
    /// SIP over secure WebSocket (RFC 7118).
    Wss,
}

impl Transport {
    /// Whether the transport delivers messages reliably. On a reliable transport the
    /// transaction layer does not retransmit (Timers A, E and G are not started) and the
    /// "absorb retransmissions" wait states last zero seconds (Timers D, I, J, K), RFC 3261 §17.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The name used in a Via header (`SIP/2.0/UDP`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// Decodes a Via transport token, case-insensitively; `None` for SCTP and unknown ones.
    pub fn from_via(token: &str) -> Option<Transport> {
        [Transport::Udp, Transport::Tcp, Transport::Tls, Transport::Ws, Transport::Wss]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(token))
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection: on TCP, TLS and WebSocket the driver numbers each connection, so that a
/// response goes back on the connection its request came in on (RFC 3261 §18.2.2) and a
/// registration can keep its flow (RFC 5626).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flow#{}", self.0)
    }
}

/// The other end of a message: the source of a received one, the destination of one to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// The connection on connection transports; `None` on UDP (where the flow is the address,
    /// DESIGN.md) or when the driver should open a new connection.
    pub flow: Option<FlowId>,
}

impl Peer {
    /// A UDP peer.
    pub fn udp(addr: SocketAddr) -> Peer {
        Peer { transport: Transport::Udp, addr, flow: None }
    }

    /// A peer on a connection transport, with its connection when there is one.
    pub fn stream(transport: Transport, addr: SocketAddr, flow: Option<FlowId>) -> Peer {
        Peer { transport, addr, flow }
    }

    /// Whether messages to this peer travel on a reliable transport.
    pub fn is_reliable(&self) -> bool {
        self.transport.is_reliable()
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)?;
        if let Some(flow) = self.flow {
            write!(f, " ({flow})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reliability_and_names() {
        assert!(!Transport::Udp.is_reliable());
        for t in [Transport::Tcp, Transport::Tls, Transport::Ws, Transport::Wss] {
            assert!(t.is_reliable());
            assert_eq!(Transport::from_via(&t.as_str().to_lowercase()), Some(t));
        }
        assert_eq!(Transport::from_via("SCTP"), None);
        let p = Peer::stream(Transport::Tls, "192.0.2.1:5061".parse().unwrap(), Some(FlowId(7)));
        assert_eq!(p.to_string(), "TLS:192.0.2.1:5061 (flow#7)");
    }
}
