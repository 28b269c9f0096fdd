//! The registrations snapshot (issue 5 §3; DESIGN.md, "Durability": registrations live in
//! memory, and a snapshot in the store shortens the gap after a restart).
//!
//! # Contract
//!
//! - **Off the core's thread.** The core marks the location table changed after an accepted
//!   REGISTER ([`Snapshots::changed`]). At most [`EVERY`] later ([`Snapshots::poll`], on the
//!   core's thread, no I/O) it copies the bindings that can survive a restart and hands the
//!   copy to a writer thread, which replaces the stored snapshot with it
//!   ([`crate::store::Store::snapshot_registrations`]). The writer writes only the newest copy
//!   it holds: a slow disk skips copies, it never queues them.
//! - **Shutdown.** A graceful stop writes one last copy and waits for it
//!   ([`Snapshots::finish`]). After a crash (`kill -9`, power cut) the registrations accepted in
//!   the last [`EVERY`] before it are lost: those clients are unreachable until they register
//!   again (at their next refresh).
//! - **Start.** [`load`] puts the snapshot's unexpired bindings back into the table before the
//!   listeners take traffic. Expiry times are kept as Unix seconds, so a binding that expired
//!   while the edge was down stays gone.
//! - **What survives.** Bindings registered over UDP: their flow is the source address
//!   (DESIGN.md, "Decisions"), which a restart does not change, so an RFC 5626 client over UDP
//!   (`reg-id`, or a `*.invalid` Contact) is reached at that address again, and any other UDP
//!   client at its Contact. Bindings registered over a connection (TCP, TLS, WS, WSS) are never
//!   snapshotted: the connection dies with the process, and with it the only way back to the
//!   client (RFC 5626 §4.4: the client registers again when it sees its flow fail).
//!
//! The Call-ID and CSeq of a restored binding are not kept: the client's next REGISTER
//! replaces the binding whatever its CSeq (RFC 3261 §10.3 step 7 compares within a Call-ID).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sip::Uri;
use sip::transaction::{Peer, Transport};

use super::{Binding, Location};
use crate::store::{self, AgentId, Store, UnixTime};

/// How long after a change the snapshot is written: what a crash may lose.
pub const EVERY: Duration = Duration::from_secs(2);

/// The snapshot schedule and its writer.
#[derive(Debug)]
pub struct Snapshots {
    /// When the next copy is due; `None` while nothing changed since the last one.
    due: Option<Instant>,
    writer: Option<Writer>,
}

#[derive(Debug)]
struct Writer {
    tx: std::sync::mpsc::Sender<Vec<store::Binding>>,
    thread: std::thread::JoinHandle<()>,
}

impl Snapshots {
    /// Starts the writer thread; it stops once [`Snapshots::finish`] (or a drop) closes it.
    pub fn spawn(store: Arc<dyn Store>) -> Snapshots {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<store::Binding>>();
        let spawned =
            std::thread::Builder::new().name("lifeline-regsnap".into()).spawn(move || {
                while let Ok(mut latest) = rx.recv() {
                    while let Ok(newer) = rx.try_recv() {
                        latest = newer;
                    }
                    match store.snapshot_registrations(&latest) {
                        Ok(()) => {
                            tracing::debug!(bindings = latest.len(), "registrations snapshot")
                        }
                        Err(e) => tracing::error!(error = %e, "registrations snapshot not written"),
                    }
                }
            });
        let writer = match spawned {
            Ok(thread) => Some(Writer { tx, thread }),
            Err(e) => {
                tracing::error!(error = %e, "no snapshot writer: registrations will not survive a restart");
                None
            }
        };
        Snapshots { due: None, writer }
    }

    /// The table changed at `now`: a copy is due at most [`EVERY`] later (a steady stream of
    /// REGISTERs still gets one copy per interval).
    pub fn changed(&mut self, now: Instant) {
        self.due.get_or_insert(now + EVERY);
    }

    /// When [`Snapshots::poll`] has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.due
    }

    /// Hands a copy of `location` to the writer when one is due.
    pub fn poll(&mut self, now: Instant, location: &Location) {
        if self.due.is_some_and(|due| due <= now) {
            self.due = None;
            self.send(now, location);
        }
    }

    /// The last copy, at shutdown: returns the writer's thread, which ends once the copy is
    /// written (join it off the async runtime).
    pub fn finish(
        mut self,
        now: Instant,
        location: &Location,
    ) -> Option<std::thread::JoinHandle<()>> {
        self.send(now, location);
        self.writer.take().map(|w| w.thread)
    }

    fn send(&self, now: Instant, location: &Location) {
        if let Some(w) = &self.writer {
            let _ = w.tx.send(to_store(location, now, unix_now()));
        }
    }
}

/// Loads the snapshot into a fresh table (at start, before any listener serves). A store
/// that cannot be read gives an empty table: clients register again, as without a snapshot.
pub fn load(store: &dyn Store, now: Instant) -> Location {
    let unix = unix_now();
    let mut location = Location::new();
    match store.load_registrations(unix) {
        Ok(rows) => {
            let stored = rows.len();
            let mut restored = 0;
            for b in rows.into_iter().filter_map(|b| from_store(b, now, unix)) {
                location.restore(b);
                restored += 1;
            }
            tracing::info!(
                restored,
                skipped = stored - restored,
                "registrations restored from the snapshot"
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "registrations snapshot not read: clients must register again");
        }
    }
    location
}

/// The bindings of `location` that can survive a restart (module docs), as the store keeps
/// them: expiry in Unix seconds (`unix` is `now` on the wall clock).
pub fn to_store(location: &Location, now: Instant, unix: UnixTime) -> Vec<store::Binding> {
    location
        .all(now)
        .filter(|b| b.source.transport == Transport::Udp)
        .filter_map(|b| {
            let aor: AgentId = b.aor.parse().ok()?;
            let left = i64::try_from(b.remaining(now)).unwrap_or(i64::MAX);
            Some(store::Binding {
                aor,
                contact: b.contact.clone(),
                instance: b.instance.clone(),
                reg_id: b.reg_id,
                flow: format!("udp:{}", b.source.addr),
                expires_at: unix.saturating_add(left),
                q: Some(b.q),
                path: None,
                received: Some(b.source.addr.to_string()),
            })
        })
        .collect()
}

/// A stored binding back as a live one, unless it has expired by `unix` or its flow cannot
/// be reached again (not UDP).
pub fn from_store(b: store::Binding, now: Instant, unix: UnixTime) -> Option<Binding> {
    let left = u64::try_from(b.expires_at.checked_sub(unix)?).ok().filter(|s| *s > 0)?;
    let addr: SocketAddr = b.flow.strip_prefix("udp:")?.parse().ok()?;
    let via_flow = b.reg_id.is_some()
        || matches!(Uri::parse(&b.contact), Ok(Uri::Sip(u)) if super::invalid_host(u.host_raw));
    Some(Binding {
        aor: b.aor.as_str().to_owned(),
        q: b.q.unwrap_or(1000).min(1000),
        expires_at: now + Duration::from_secs(left),
        call_id: String::new(),
        cseq: 0,
        instance: b.instance,
        reg_id: b.reg_id,
        source: Peer::udp(addr),
        via_flow,
        contact: b.contact,
    })
}

fn unix_now() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::Policy;

    fn register(loc: &mut Location, now: Instant, source: Peer, contact: &str, expires: u32) {
        let text = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{expires}\r\n\
             From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n\
             Call-ID: reg-{contact}\r\nCSeq: 1 REGISTER\r\nContact: {contact}\r\n\
             Expires: {expires}\r\nContent-Length: 0\r\n\r\n"
        );
        let req = match sip::Message::parse(bytes::Bytes::from(text), sip::Framing::Datagram) {
            Ok(sip::Message::Request(r)) => r,
            other => panic!("{other:?}"),
        };
        loc.register(now, &req, source, "alice", &Policy::new("example.com")).expect("200");
    }

    #[test]
    fn udp_bindings_go_round_trip_and_connection_bindings_stay_behind() {
        let now = Instant::now();
        let udp: SocketAddr = "192.0.2.1:5070".parse().unwrap();
        let mut loc = Location::new();
        register(&mut loc, now, Peer::udp(udp), "<sip:alice@192.0.2.1:5070>", 600);
        register(
            &mut loc,
            now,
            Peer::udp("192.0.2.2:6000".parse().unwrap()),
            "<sip:x@abc.invalid;transport=udp>",
            300,
        );
        let tcp = Peer::stream(Transport::Tcp, "192.0.2.3:40000".parse().unwrap(), None);
        register(&mut loc, now, tcp, "<sip:alice@192.0.2.3:5060;transport=tcp>", 600);
        assert_eq!(loc.len(), 3);

        let rows = to_store(&loc, now, 1_000_000);
        assert_eq!(rows.len(), 2, "the TCP binding dies with its connection: {rows:?}");
        let direct = rows.iter().find(|r| r.contact.contains("5070")).unwrap();
        assert_eq!(direct.flow, "udp:192.0.2.1:5070");
        assert_eq!(direct.expires_at, 1_000_600);

        // Restored ten seconds of wall clock later, on another process's monotonic clock.
        let later = now + Duration::from_secs(1234);
        let back: Vec<Binding> =
            rows.into_iter().filter_map(|r| from_store(r, later, 1_000_010)).collect();
        assert_eq!(back.len(), 2);
        let invalid = back.iter().find(|b| b.contact.contains(".invalid")).unwrap();
        assert!(invalid.via_flow, "a *.invalid Contact is reached over its flow (UDP source)");
        assert_eq!(invalid.source, Peer::udp("192.0.2.2:6000".parse().unwrap()));
        assert_eq!(invalid.remaining(later), 290);
        let direct = back.iter().find(|b| b.contact.contains("5070")).unwrap();
        assert!(!direct.via_flow);
        assert_eq!((direct.aor.as_str(), direct.q), ("alice", 1000));
        assert_eq!(direct.remaining(later), 590);
    }

    #[test]
    fn expired_and_unreachable_rows_are_not_restored() {
        let now = Instant::now();
        let row = |flow: &str, expires_at| store::Binding {
            aor: "alice".parse().unwrap(),
            contact: "sip:alice@192.0.2.1".into(),
            instance: None,
            reg_id: None,
            flow: flow.into(),
            expires_at,
            q: None,
            path: None,
            received: None,
        };
        assert!(from_store(row("udp:192.0.2.1:5060", 100), now, 100).is_none(), "expired");
        assert!(from_store(row("udp:192.0.2.1:5060", 99), now, 100).is_none(), "expired");
        assert!(from_store(row("tcp:192.0.2.1:5060", 200), now, 100).is_none(), "a connection");
        assert!(from_store(row("udp:nonsense", 200), now, 100).is_none());
        let b = from_store(row("udp:192.0.2.1:5060", 101), now, 100).unwrap();
        assert_eq!(b.remaining(now), 1);
    }

    #[test]
    fn a_copy_is_due_one_interval_after_the_first_change() {
        let mut s = Snapshots { due: None, writer: None };
        let t = Instant::now();
        assert_eq!(s.next_deadline(), None);
        s.changed(t);
        s.changed(t + Duration::from_secs(1));
        assert_eq!(s.next_deadline(), Some(t + EVERY));
        s.poll(t + Duration::from_secs(1), &Location::new());
        assert_eq!(s.next_deadline(), Some(t + EVERY), "not yet");
        s.poll(t + EVERY, &Location::new());
        assert_eq!(s.next_deadline(), None);
    }
}
