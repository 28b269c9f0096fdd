//! Loopback port numbers for peers that must be told a port before they bind it: SIPp (whose
//! `-p` cannot be 0, see [`super::sipp`]), the trunk ports of a dialplan written before the
//! trunk listens, the listeners of the real binary's configuration file, and an SMTP relay
//! started after the edge was told where it is. A socket the test binds itself binds port 0
//! and reads its port instead; none of this is needed there.
//!
//! # Why not "bind port 0, read the port, close it, hand the number out"
//!
//! That number comes from the kernel's ephemeral range (`net.ipv4.ip_local_port_range`,
//! 32768-60999 by default). Between the close and the peer's bind, any process on the machine
//! that binds port 0 or connects out may be given it. `cargo nextest` runs every test in a
//! process of its own, several at once, each binding port 0 all the time: CI once failed
//! that way (SIPp: "Unable to bind main socket, errno = 98").
//!
//! # What [`reserve`] does instead
//!
//! - It hands out ports from [`RANGE`], below the ephemeral range: the kernel never gives
//!   one of them to a socket that binds port 0 or connects out. Only a program that names
//!   the port can take it.
//! - Every test that names a port takes it from here, and each port is claimed across
//!   processes with an exclusive lock (`flock`) on `$TMPDIR/lifeline-test-ports/PORT.lock`.
//!   The test process holds the lock until it exits, and the kernel drops it then, also on a
//!   crash or a SIGKILL. No two test processes hold the same port at the same time, and one
//!   process never hands a port out twice.
//! - A claimed port is bound once (UDP and TCP, on every address) before it is handed out.
//!   A port held by something outside this scheme, such as a SIPp left over from a killed
//!   run, is passed over.
//! - What else binds named ports here lies outside [`RANGE`] or is left out of it: the
//!   embedded defaults of `tests/demo.rs` (5060, 5090, 8080, 8088, and 19800, [`FIXED`]),
//!   the edge's RTP ports (20000-29999 by default; 31000-32999 and 35000-35199 in
//!   `tests/media.rs`, 33000-33399 in `tests/late_offer.rs`, 34000-34399 in
//!   `tests/reoffer.rs`), and
//!   SIPp's own side sockets (media from 6000 and control from 8888, each scanning upward
//!   from there). baresip's RTP ports are set outside it in `tests/baresip.rs`.
//!
//! The search starts at an offset derived from the process id, so that processes started
//! together rarely try the same lock files.

use std::fs::{File, OpenOptions, TryLockError};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Mutex;

/// Where the ports come from: below the kernel's ephemeral range (checked by [`reserve`]).
pub const RANGE: RangeInclusive<u16> = 10000..=19999;

/// Ports in [`RANGE`] that something binds by number outside this scheme: the embedded
/// defaults' WebRTC port (`src/config/defaults.toml`, used by `tests/demo.rs`).
pub const FIXED: [u16; 1] = [19800];

/// The ports this process holds, with the lock file that keeps other processes off each
/// one.
static HELD: Mutex<Vec<(u16, File)>> = Mutex::new(Vec::new());

/// A loopback port number that nothing else binds until this test process ends: free now
/// on UDP and TCP, on any address, and handed to no other test process. Hand it to the
/// peer that is going to bind it. See the module doc.
pub fn reserve() -> u16 {
    check_ephemeral_range();
    let dir = lock_dir();
    let mut held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (first, span) = (u32::from(*RANGE.start()), u32::from(*RANGE.end() - *RANGE.start()) + 1);
    // After the last port this process took, or at a spot of its own for its first.
    let start = match held.last() {
        Some((port, _)) => u32::from(*port) + 1 - first,
        None => std::process::id().wrapping_mul(7919) % span,
    };
    for i in 0..span {
        let port = u16::try_from(first + (start + i) % span).unwrap();
        if claim(port, &dir, &mut held) {
            return port;
        }
    }
    panic!("no free port left in {RANGE:?} (every one is held or in use)");
}

/// A port P reserved as by [`reserve`] with P + 2 reserved as well: SIPp's `-mp P` with
/// `-rtp_echo` binds both (audio and video echo).
pub fn reserve_media() -> u16 {
    loop {
        let port = reserve();
        let dir = lock_dir();
        let mut held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if port.checked_add(2).is_some_and(|next| claim(next, &dir, &mut held)) {
            return port;
        }
        // P stays held, unused; the next try starts after it.
    }
}

/// Claims `port` for this process: not [`FIXED`], not held here already, its lock file
/// locked, and bindable now. On success it joins `held`.
fn claim(port: u16, dir: &std::path::Path, held: &mut Vec<(u16, File)>) -> bool {
    if !RANGE.contains(&port) || FIXED.contains(&port) || held.iter().any(|(p, _)| *p == port) {
        return false;
    }
    let path = dir.join(format!("{port}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open the port lock {}: {e}", path.display()));
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return false,
        Err(TryLockError::Error(e)) => panic!("cannot lock {}: {e}", path.display()),
    }
    if !bindable(port) {
        return false; // the lock goes with the file
    }
    held.push((port, file));
    true
}

/// `$TMPDIR/lifeline-test-ports`, shared by every test process of the machine.
fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("lifeline-test-ports");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Whether nothing holds `port` now, on UDP or TCP, on any address.
fn bindable(port: u16) -> bool {
    std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok()
        && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// Fails at once, and says why, on a machine whose ephemeral range overlaps [`RANGE`]: the
/// kernel could then give a reserved port to anyone binding port 0.
fn check_ephemeral_range() {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return;
    };
    let mut bounds = text.split_whitespace().filter_map(|n| n.parse::<u16>().ok());
    if let (Some(low), Some(high)) = (bounds.next(), bounds.next()) {
        assert!(
            high < *RANGE.start() || low > *RANGE.end(),
            "the kernel's ephemeral ports ({low}-{high}, net.ipv4.ip_local_port_range) overlap \
             the test ports {RANGE:?}: tests/common/ports.rs cannot keep them apart"
        );
    }
}
