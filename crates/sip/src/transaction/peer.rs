//! Where a message came from and where it goes: the transport, the address and, on connection
//! transports, the connection (flow).
//!
//! These live here because the transaction layer is their first user; the edge's transport
//! module (`src/transport/`) maps its sockets and connections onto them.

use std::fmt;
use std::net::SocketAddr;

pub use crate::transport::Transport;

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
        let p = Peer::stream(Transport::Tls, "192.0.2.1:5061".parse().unwrap(), Some(FlowId(7)));
        assert_eq!(p.to_string(), "TLS:192.0.2.1:5061 (flow#7)");
    }
}
