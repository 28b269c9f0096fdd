//! The flow table: every live connection (TCP, TLS, WS, WSS), by [`FlowId`], with the queue
//! its writer drains. The core sends to a flow without awaiting: a full queue is a slow or
//! dead peer, reported as a transport error, never a stall of the core.
//!
//! On UDP a flow is the source ip:port (DESIGN.md): UDP peers have no entry here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sip::transaction::{FlowId, Transport};
use tokio::sync::mpsc;

/// Messages queued toward one connection before it counts as stuck.
pub const QUEUE_DEPTH: usize = 512;

/// Why a message could not be queued to a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The connection is gone.
    Closed,
    /// Its queue is full: the peer does not read.
    Full,
}

#[derive(Debug)]
struct Entry {
    transport: Transport,
    peer: SocketAddr,
    tx: mpsc::Sender<Bytes>,
    /// Opened by the edge toward this address (reusable for later requests to it).
    outbound: bool,
}

/// Live connections by id, and outbound ones by (transport, address) for reuse.
#[derive(Debug, Default)]
pub struct Flows {
    next: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<FlowId, Entry>,
    outbound: HashMap<(Transport, SocketAddr), FlowId>,
}

impl Flows {
    pub fn new() -> Flows {
        Flows { next: AtomicU64::new(1), inner: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain maps behind: still consistent.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new connection; returns its id and the queue its writer drains.
    pub fn open(
        &self,
        transport: Transport,
        peer: SocketAddr,
        outbound: bool,
    ) -> (FlowId, mpsc::Receiver<Bytes>) {
        let id = FlowId(self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let mut inner = self.lock();
        inner.by_id.insert(id, Entry { transport, peer, tx, outbound });
        if outbound {
            inner.outbound.insert((transport, peer), id);
        }
        (id, rx)
    }

    /// Forgets a closed connection.
    pub fn close(&self, id: FlowId) {
        let mut inner = self.lock();
        if let Some(e) = inner.by_id.remove(&id)
            && e.outbound
            && inner.outbound.get(&(e.transport, e.peer)) == Some(&id)
        {
            inner.outbound.remove(&(e.transport, e.peer));
        }
    }

    /// Queues a message on a connection.
    pub fn send(&self, id: FlowId, message: Bytes) -> Result<(), SendError> {
        let tx = match self.lock().by_id.get(&id) {
            Some(e) => e.tx.clone(),
            None => return Err(SendError::Closed),
        };
        tx.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })
    }

    /// A live connection the edge opened toward `peer`, to reuse (RFC 3261 §18.1.1 lets a
    /// client reuse a connection to the same destination).
    pub fn outbound(&self, transport: Transport, peer: SocketAddr) -> Option<FlowId> {
        self.lock().outbound.get(&(transport, peer)).copied()
    }

    /// The number of live connections.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_send_close_and_reuse() {
        let flows = Flows::new();
        let addr: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let (id, mut rx) = flows.open(Transport::Tcp, addr, true);
        assert_eq!(flows.outbound(Transport::Tcp, addr), Some(id));
        assert_eq!(flows.outbound(Transport::Tls, addr), None);
        flows.send(id, Bytes::from_static(b"x")).unwrap();
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"x"));
        flows.close(id);
        assert_eq!(flows.send(id, Bytes::new()), Err(SendError::Closed));
        assert_eq!(flows.outbound(Transport::Tcp, addr), None);
        assert!(flows.is_empty());
    }

    #[test]
    fn a_stuck_reader_fills_the_queue() {
        let flows = Flows::new();
        let (id, _rx) = flows.open(Transport::Ws, "192.0.2.1:1".parse().unwrap(), false);
        for _ in 0..QUEUE_DEPTH {
            flows.send(id, Bytes::new()).unwrap();
        }
        assert_eq!(flows.send(id, Bytes::new()), Err(SendError::Full));
    }
}
