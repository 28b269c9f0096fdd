//! How the core sends: without awaiting, to UDP sockets, to live flows, or through a new
//! outbound connection opened in the background.

use std::sync::Arc;

use sip::transaction::{Peer, Transmit, Transport};
use tokio::net::UdpSocket;

use crate::transport::connect::Connector;
use crate::transport::flows::Flows;

/// The core's outbound side.
#[derive(Debug, Clone)]
pub struct Net {
    /// UDP sockets with whether each is IPv4, to pick one by the destination's family.
    udp: Vec<(bool, Arc<UdpSocket>)>,
    flows: Arc<Flows>,
    connector: Option<Connector>,
}

impl Net {
    pub fn new(udp: Vec<Arc<UdpSocket>>, flows: Arc<Flows>, connector: Option<Connector>) -> Net {
        let udp =
            udp.into_iter().map(|s| (s.local_addr().map_or(true, |a| a.is_ipv4()), s)).collect();
        Net { udp, flows, connector }
    }

    /// Sends one message; `false` when it certainly could not be sent (the caller reports a
    /// transport error). A connection being opened reports its failure later.
    pub fn send(&self, t: &Transmit) -> bool {
        match t.to {
            Peer { transport: Transport::Udp, addr, .. } => {
                let Some(socket) = self.udp_for(addr) else {
                    return false;
                };
                match socket.try_send_to(&t.message, addr) {
                    Ok(_) => true,
                    // A full socket buffer loses the datagram like the network would; the
                    // transaction layer retransmits.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "udp send failed");
                        false
                    }
                }
            }
            Peer { flow: Some(flow), .. } => match self.flows.send(flow, t.message.clone()) {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(%flow, error = ?e, "flow send failed");
                    false
                }
            },
            Peer { transport, addr, flow: None } => {
                if let Some(flow) = self.flows.outbound(transport, addr) {
                    return self.flows.send(flow, t.message.clone()).is_ok();
                }
                match &self.connector {
                    // TCP, and TLS toward trunks (src/transport/tls_client.rs).
                    Some(c) if c.opens(transport) => {
                        c.connect_and_send(transport, addr, t.message.clone(), t.txn);
                        true
                    }
                    // WebSocket peers are only reachable over the connection they opened.
                    _ => false,
                }
            }
        }
    }

    /// The UDP socket of the same address family as `to`.
    fn udp_for(&self, to: std::net::SocketAddr) -> Option<&Arc<UdpSocket>> {
        self.udp
            .iter()
            .find(|(v4, _)| *v4 == to.is_ipv4())
            .or_else(|| self.udp.first())
            .map(|(_, s)| s)
    }
}
