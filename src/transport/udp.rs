//! The UDP listener: one datagram is one message (RFC 3261 §18.3); the flow is the source
//! ip:port.
//!
//! # Threads
//!
//! The UDP sockets live on a thread of their own (`lifeline-udp`, `app::thread_runtimes`),
//! apart from the core's: there datagrams are read and parsed ([`serve`]) and the core's
//! outgoing datagrams are written ([`send`]). Most of a datagram's cost is the kernel's (on
//! loopback a send delivers into the receiver's socket and wakes it), so this thread carries
//! about 40 % of the SIP work and the core's 60 %, and the edge uses two cores for SIP over
//! UDP.
//!
//! Both directions are batched: [`serve`] takes everything queued on the socket with one
//! `recvmmsg`, and the core hands over what one pass of its loop sends as one batch
//! ([`UdpOut`]), written with `sendmmsg`. Under load one system call carries tens of datagrams;
//! when idle a batch is a single datagram and nothing waits for company.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use sip::Framing;
use sip::transaction::{Peer, TxnKey};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::conn::ConnCtx;
use crate::core::CoreHandle;

/// The most datagrams one `recvmmsg` or `sendmmsg` takes.
const BATCH: usize = 32;

/// Batches from the core waiting for the UDP thread before the next one is dropped (the
/// transaction layer retransmits, as it would after a loss in the network).
pub const SEND_DEPTH: usize = 1024;

/// One datagram the core sends, and the transaction to tell when it certainly could not go.
#[derive(Debug)]
pub struct Datagram {
    pub to: SocketAddr,
    pub bytes: Bytes,
    pub txn: Option<TxnKey>,
}

/// The core's side of one UDP socket: datagrams queued while the core works, handed to the UDP
/// thread together by [`UdpOut::flush`].
#[derive(Debug)]
pub struct UdpOut {
    ipv4: bool,
    queued: Vec<Datagram>,
    tx: mpsc::Sender<Vec<Datagram>>,
    /// Emptied batches the UDP thread gives back, so that a pass of the core's loop does not
    /// allocate a fresh one.
    spare: Arc<Spare>,
}

/// Emptied batch vectors on their way back from the UDP thread to the core.
#[derive(Debug, Default)]
pub struct Spare(std::sync::Mutex<Vec<Vec<Datagram>>>);

impl Spare {
    /// Batches kept for reuse at most; more are freed.
    const KEEP: usize = 64;

    fn take(&self) -> Vec<Datagram> {
        self.0.lock().ok().and_then(|mut v| v.pop()).unwrap_or_else(|| Vec::with_capacity(BATCH))
    }

    fn give(&self, mut batch: Vec<Datagram>) {
        batch.clear();
        if let Ok(mut v) = self.0.lock()
            && v.len() < Self::KEEP
        {
            v.push(batch);
        }
    }
}

/// What the UDP thread's [`send`] task takes: the core's batches, and where emptied ones go.
#[derive(Debug)]
pub struct UdpQueue {
    rx: mpsc::Receiver<Vec<Datagram>>,
    spare: Arc<Spare>,
}

impl UdpOut {
    /// The core's side of a socket (IPv4 or not, to pick one by family), and the
    /// receiving end for [`send`].
    pub fn new(ipv4: bool) -> (UdpOut, UdpQueue) {
        let (tx, rx) = mpsc::channel(SEND_DEPTH);
        let spare = Arc::new(Spare::default());
        (UdpOut { ipv4, queued: Vec::new(), tx, spare: spare.clone() }, UdpQueue { rx, spare })
    }

    /// Whether the socket is IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.ipv4
    }

    /// Queues a datagram until the next [`UdpOut::flush`].
    pub fn push(&mut self, datagram: Datagram) {
        self.queued.push(datagram);
    }

    /// Hands what is queued to the UDP thread. A full hand-over queue (the thread is far
    /// behind) drops the batch like a full socket buffer would: the transactions retransmit.
    pub fn flush(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.queued, self.spare.take());
        if let Err(e) = self.tx.try_send(batch) {
            let dropped = match &e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => {
                    b.len()
                }
            };
            tracing::debug!(dropped, "udp send queue full or closed: datagrams dropped");
        }
    }
}

/// Receives datagrams until the shutdown signal in `ctx` turns `true`.
pub async fn serve(socket: Arc<UdpSocket>, ctx: ConnCtx) {
    // One byte more than the limit tells an oversized datagram from one that just fits.
    let mut bufs: Box<[Vec<u8>; BATCH]> =
        Box::new(std::array::from_fn(|_| vec![0u8; ctx.max_message + 1]));
    let mut got = [(0usize, None::<SocketAddr>); BATCH];
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let received = tokio::select! {
            r = receive(&socket, &mut bufs, &mut got) => r,
            _ = shutdown.changed() => return,
        };
        let n = match received {
            Ok(n) => n,
            Err(e) => {
                // ICMP port unreachable from an earlier send shows up here on Linux.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        for (&(len, from), buf) in got.iter().zip(bufs.iter()).take(n) {
            let Some(from) = from else { continue };
            datagram(&socket, &ctx, from, &buf[..len]);
        }
    }
}

/// One received datagram: dropped when oversized or a keep-alive, otherwise parsed and handed
/// on; a stateless answer (400, 503) goes straight back.
fn datagram(socket: &UdpSocket, ctx: &ConnCtx, from: SocketAddr, bytes: &[u8]) {
    if bytes.len() > ctx.max_message {
        tracing::debug!(%from, bytes = bytes.len(), "oversized datagram dropped");
        return;
    }
    if bytes.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
        // A keep-alive (CRLF, RFC 5626 §3.5.1 over UDP uses STUN; some clients send CRLF).
        return;
    }
    if let Some(answer) =
        ctx.receive(Peer::udp(from), Bytes::copy_from_slice(bytes), Framing::Datagram)
    {
        let _ = socket.try_send_to(&answer, from);
    }
}

thread_local! {
    /// The `mmsghdr` arrays of `recvmmsg` and `sendmmsg`: one pair per thread (they hold raw
    /// pointers, so they may not live in a task), reused by every call.
    static RECV_HEADERS: std::cell::RefCell<MultiHeaders<SockaddrStorage>> =
        std::cell::RefCell::new(MultiHeaders::preallocate(BATCH, None));
    static SEND_HEADERS: std::cell::RefCell<MultiHeaders<SockaddrStorage>> =
        std::cell::RefCell::new(MultiHeaders::preallocate(BATCH, None));
}

/// Waits for datagrams and takes what is queued, up to [`BATCH`], in one `recvmmsg`: how many,
/// with each one's length and source in `got`.
///
/// Fewer than [`BATCH`] means the socket was emptied: the read then reports `WouldBlock` to the
/// reactor, which clears the readiness it saw without a further read that would only return
/// `EAGAIN`; a datagram that arrived since is a new readiness event, so none is left behind.
async fn receive(
    socket: &UdpSocket,
    bufs: &mut [Vec<u8>; BATCH],
    got: &mut [(usize, Option<SocketAddr>); BATCH],
) -> io::Result<usize> {
    loop {
        socket.readable().await?;
        let mut n = 0;
        let read = socket.try_io(Interest::READABLE, || {
            n = RECV_HEADERS.with_borrow_mut(|headers| {
                let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
                let received = recvmmsg(
                    socket.as_raw_fd(),
                    headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                )
                .map_err(io::Error::from)?;
                let mut n = 0;
                for (slot, msg) in got.iter_mut().zip(received) {
                    *slot = (msg.bytes, msg.address.as_ref().and_then(socket_addr));
                    n += 1;
                }
                Ok::<_, io::Error>(n)
            })?;
            if n < BATCH { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(()) }
        });
        match read {
            _ if n > 0 => return Ok(n),
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// A socket address as `recvmmsg` gives it, as the standard library's (the media engine's
/// batched reads use it too).
pub(crate) fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Writes the core's batches to `socket` until the core drops its [`UdpOut`]. A datagram that
/// certainly could not go (not a full buffer: that is a loss the transaction layer repairs) is
/// reported to the core as a transport error of its transaction.
pub async fn send(socket: Arc<UdpSocket>, queue: UdpQueue, core: CoreHandle) {
    let UdpQueue { mut rx, spare } = queue;
    let mut batches = Vec::with_capacity(16);
    let mut addrs = Vec::with_capacity(BATCH);
    let mut failed = Vec::new();
    while rx.recv_many(&mut batches, 16).await > 0 {
        for batch in batches.drain(..) {
            for chunk in batch.chunks(BATCH) {
                send_chunk(&socket, chunk, &mut addrs, &mut failed);
            }
            spare.give(batch);
        }
        for key in failed.drain(..) {
            core.send_failed(key).await;
        }
    }
}

/// Sends up to [`BATCH`] datagrams with as few `sendmmsg` calls as the kernel allows; the keys
/// of those that failed for good go to `failed`.
fn send_chunk(
    socket: &UdpSocket,
    chunk: &[Datagram],
    addrs: &mut Vec<Option<SockaddrStorage>>,
    failed: &mut Vec<TxnKey>,
) {
    let chunk = chunk.get(..BATCH).unwrap_or(chunk);
    let slices: [[IoSlice<'_>; 1]; BATCH] =
        std::array::from_fn(|i| [IoSlice::new(chunk.get(i).map_or(&[][..], |d| &d.bytes))]);
    let slices = &slices[..chunk.len()];
    addrs.clear();
    addrs.extend(chunk.iter().map(|d| Some(SockaddrStorage::from(d.to))));
    let mut start = 0;
    while start < chunk.len() {
        let sent = SEND_HEADERS.with_borrow_mut(|headers| {
            sendmmsg(
                socket.as_raw_fd(),
                headers,
                &slices[start..],
                &addrs[start..],
                [] as [ControlMessage<'_>; 0],
                MsgFlags::MSG_DONTWAIT,
            )
            .map(Iterator::count)
        });
        match sent {
            Ok(0) => break,
            Ok(n) => start += n,
            // A full socket buffer loses the datagram like the network would.
            Err(nix::errno::Errno::EAGAIN) => start += 1,
            Err(e) => {
                let d = &chunk[start];
                tracing::debug!(to = %d.to, error = %e, "udp send failed");
                failed.extend(d.txn);
                start += 1;
            }
        }
    }
}
