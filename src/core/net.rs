//! How the core sends: without awaiting, to the UDP thread (batched, see
//! [`crate::transport::udp`]), to live flows, or through a new outbound connection opened in the
//! background.

use std::sync::Arc;

use sip::transaction::{Peer, Transmit, Transport};

use crate::transport::connect::Connector;
use crate::transport::flows::Flows;
use crate::transport::udp::{Datagram, UdpOut};

/// The core's outbound side.
#[derive(Debug)]
pub struct Net {
    /// One per UDP socket: datagrams queued until [`Net::flush`].
    udp: Vec<UdpOut>,
    flows: Arc<Flows>,
    connector: Option<Connector>,
}

impl Net {
    pub fn new(udp: Vec<UdpOut>, flows: Arc<Flows>, connector: Option<Connector>) -> Net {
        Net { udp, flows, connector }
    }

    /// Sends one message; `false` when it certainly could not be sent (the caller reports a
    /// transport error). A connection being opened, and a UDP send, report a failure later
    /// (`Input::SendFailed`). Datagrams leave at the next [`Net::flush`].
    pub fn send(&mut self, t: Transmit) -> bool {
        match t.to {
            Peer { transport: Transport::Udp, addr, .. } => {
                let Some(out) = self.udp_for(addr) else {
                    return false;
                };
                out.push(Datagram { to: addr, bytes: t.message, txn: t.txn });
                true
            }
            Peer { flow: Some(flow), .. } => match self.flows.send(flow, t.message) {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(%flow, error = ?e, "flow send failed");
                    false
                }
            },
            Peer { transport, addr, flow: None } => {
                if let Some(flow) = self.flows.outbound(transport, addr) {
                    return self.flows.send(flow, t.message).is_ok();
                }
                match &self.connector {
                    // TCP, and TLS toward trunks (src/transport/tls_client.rs).
                    Some(c) if c.opens(transport) => {
                        c.connect_and_send(transport, addr, t.message, t.txn);
                        true
                    }
                    // WebSocket peers are only reachable over the connection they opened.
                    _ => false,
                }
            }
        }
    }

    /// Hands the datagrams queued since the last flush to the UDP thread, one batch per socket.
    pub fn flush(&mut self) {
        for out in &mut self.udp {
            out.flush();
        }
    }

    /// The UDP socket of the same address family as `to`.
    fn udp_for(&mut self, to: std::net::SocketAddr) -> Option<&mut UdpOut> {
        let i = self.udp.iter().position(|o| o.is_ipv4() == to.is_ipv4()).unwrap_or(0);
        self.udp.get_mut(i)
    }
}
