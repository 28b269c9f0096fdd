//! The demo carrier's media: one UDP socket per call on the carrier's address, an echo and a
//! tone.
//!
//! # Contract
//!
//! - **Echo**: every RTP packet (RFC 3550 §5.1) that arrives is sent back, its payload and
//!   payload type unchanged, under the demo carrier's own SSRC and sequence numbers (a peer
//!   must not see its own SSRC come back, RFC 3550 §8.2), to the source the leg **latched**
//!   on: the first source that sent RTP (symmetric RTP, RFC 4961). Packets from another source
//!   are dropped; a new remote address from the SIP side (a re-INVITE) unlatches.
//! - **Tone**: while nothing has arrived for [`TONE_AFTER`] and the SIP side said where to
//!   send, a 440 Hz sine goes out in 20 ms G.711 frames (the law negotiated), so a caller that
//!   sends nothing still hears the call is up.
//! - Nothing is sent while the session says this side must not send (hold: `a=recvonly` or
//!   `inactive` in the carrier's answer).
//! - RTCP and datagrams that are not RTP are ignored. Nothing panics on network bytes.
//! - The leg ends when its [`Media`] is dropped (the task is aborted).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

use super::sdp::Law;
use crate::media::rtp::Rtp;

/// Silence from the peer for this long starts the tone.
pub const TONE_AFTER: Duration = Duration::from_secs(1);

/// One G.711 frame: 20 ms at 8 kHz.
const FRAME_SAMPLES: usize = 160;

/// The tone's frequency.
const TONE_HZ: f64 = 440.0;

/// The tone's amplitude (about -12 dBFS).
const TONE_AMPLITUDE: f64 = 8000.0;

/// What the SIP side tells a media leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Where the peer said it receives (its SDP); `None` until known.
    pub remote: Option<SocketAddr>,
    /// The payload type and law of the tone.
    pub voice: (u8, Law),
    /// Whether this side may send (the negotiated direction).
    pub send: bool,
}

/// A running media leg; dropping it stops the leg.
#[derive(Debug)]
pub struct Media {
    /// Where the leg receives: what the carrier's SDP announces.
    pub local: SocketAddr,
    params: watch::Sender<Params>,
    task: tokio::task::JoinHandle<()>,
}

impl Media {
    /// Starts a leg on `socket` (already bound).
    pub fn start(socket: UdpSocket, params: Params) -> std::io::Result<Media> {
        let local = socket.local_addr()?;
        let (tx, rx) = watch::channel(params);
        let task = tokio::spawn(run(socket, rx, random_u32(), random_u32()));
        Ok(Media { local, params: tx, task })
    }

    /// What the SIP side learnt since (a re-INVITE, the SDP in an ACK).
    pub fn update(&self, params: Params) {
        self.params.send_if_modified(|p| {
            let changed = *p != params;
            *p = params;
            changed
        });
    }

    /// The parameters in force.
    pub fn params(&self) -> Params {
        *self.params.borrow()
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The leg's loop: echo what arrives, a tone while nothing does.
async fn run(socket: UdpSocket, mut params: watch::Receiver<Params>, ssrc: u32, ts_offset: u32) {
    let mut p = *params.borrow_and_update();
    let mut latched: Option<SocketAddr> = None;
    let mut out = Sender { ssrc, sequence: random_u32() as u16, switched: true };
    let mut tone = Tone::default();
    let mut last_rx: Option<Instant> = None;
    let start = Instant::now();
    let mut frame = tokio::time::interval(Duration::from_millis(20));
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                let Ok(rtp) = Rtp::parse(&buf[..n]) else { continue };
                match latched {
                    None => {
                        tracing::debug!(%from, "demo media latched");
                        latched = Some(from);
                    }
                    Some(l) if l != from => continue,
                    Some(_) => {}
                }
                last_rx = Some(Instant::now());
                if p.send {
                    let echo = out.packet(
                        rtp.marker,
                        rtp.payload_type,
                        rtp.timestamp.wrapping_add(ts_offset),
                        rtp.payload,
                    );
                    let _ = socket.send_to(&echo, from).await;
                }
            }
            _ = frame.tick() => {
                let quiet = last_rx.unwrap_or(start).elapsed() >= TONE_AFTER;
                let Some(to) = latched.or(p.remote).filter(|_| p.send && quiet) else {
                    continue;
                };
                if last_rx.is_some_and(|t| t.elapsed() < TONE_AFTER + Duration::from_millis(40)) {
                    // The echo just stopped: mark the change of source.
                    out.switched = true;
                }
                let (pt, law) = p.voice;
                let (ts, payload) = tone.frame(law);
                let packet = out.packet(false, pt, ts, &payload);
                let _ = socket.send_to(&packet, to).await;
            }
            changed = params.changed() => {
                if changed.is_err() {
                    return;
                }
                let new = *params.borrow_and_update();
                if new.remote != p.remote {
                    latched = None;
                }
                p = new;
            }
        }
    }
}

/// The outgoing RTP stream: one SSRC and sequence for echo and tone alike.
#[derive(Debug)]
struct Sender {
    ssrc: u32,
    sequence: u16,
    /// The next packet starts a new talk spurt (marker bit, RFC 3551 §4.1).
    switched: bool,
}

impl Sender {
    fn packet(
        &mut self,
        marker: bool,
        payload_type: u8,
        timestamp: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let rtp = Rtp {
            marker: marker || std::mem::take(&mut self.switched),
            payload_type,
            sequence: self.sequence,
            timestamp,
            ssrc: self.ssrc,
            payload,
        };
        self.sequence = self.sequence.wrapping_add(1);
        rtp.to_bytes()
    }
}

/// A continuous sine, frame by frame.
#[derive(Debug, Default)]
struct Tone {
    /// Samples generated so far: the phase, and the RTP timestamp.
    samples: u64,
}

impl Tone {
    /// The next 20 ms frame: its RTP timestamp and G.711 payload.
    fn frame(&mut self, law: Law) -> (u32, Vec<u8>) {
        let ts = self.samples as u32;
        let payload = (0..FRAME_SAMPLES as u64)
            .map(|i| {
                let t = (self.samples + i) as f64 / f64::from(super::sdp::CLOCK);
                let s = (TONE_AMPLITUDE * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin()) as i16;
                match law {
                    Law::Mu => ulaw(s),
                    Law::A => alaw(s),
                }
            })
            .collect();
        self.samples += FRAME_SAMPLES as u64;
        (ts, payload)
    }
}

/// ITU-T G.711 µ-law of a 16-bit linear sample.
pub fn ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    // The segment: the position of the highest bit above bit 7 (0..=7).
    let exponent = (31 - s.leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// ITU-T G.711 A-law of a 16-bit linear sample.
pub fn alaw(sample: i16) -> u8 {
    const SEGMENT_END: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
    let mut pcm = i32::from(sample) >> 3;
    let mask = if pcm >= 0 {
        0xd5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let Some(seg) = SEGMENT_END.iter().position(|&end| pcm <= end) else {
        return 0x7f ^ mask;
    };
    let shift = if seg < 2 { 1 } else { seg };
    let value = ((seg as i32) << 4) | ((pcm >> shift) & 0x0f);
    (value as u8) ^ mask
}

/// A random 32-bit number (SSRC, first sequence number, timestamp offset: RFC 3550 §5.1 wants
/// them random).
fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = crate::transport::tls::provider().secure_random.fill(&mut b);
    u32::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_matches_the_reference_values() {
        // Values from the ITU-T G.711 tables (as Sun's g711.c computes them).
        assert_eq!(ulaw(0), 0xff);
        assert_eq!(ulaw(-1), 0x7f);
        assert_eq!(ulaw(i16::MAX), 0x80);
        assert_eq!(ulaw(i16::MIN), 0x00);
        assert_eq!(ulaw(1000), 0xce);
        assert_eq!(alaw(0), 0xd5);
        assert_eq!(alaw(-8), 0x55);
        assert_eq!(alaw(i16::MAX), 0xaa);
        assert_eq!(alaw(i16::MIN), 0x2a);
        assert_eq!(alaw(1000), 0xfa);
    }

    #[test]
    fn the_tone_is_continuous_20_ms_frames() {
        let mut t = Tone::default();
        let (ts0, f0) = t.frame(Law::Mu);
        let (ts1, f1) = t.frame(Law::A);
        assert_eq!((ts0, ts1), (0, 160));
        assert_eq!((f0.len(), f1.len()), (160, 160));
        assert_eq!(f0[0], ulaw(0));
        assert!(f0.iter().any(|&b| b != f0[0]), "not silence");
    }

    #[tokio::test]
    async fn echoes_to_the_latched_source_under_its_own_ssrc_and_tones_when_quiet() {
        let leg = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let params = Params { remote: None, voice: (0, Law::Mu), send: true };
        let media = Media::start(leg, params).unwrap();
        let sent = Rtp {
            marker: false,
            payload_type: 8,
            sequence: 7,
            timestamp: 1000,
            ssrc: 0x1234_5678,
            payload: b"hello",
        };
        peer.send_to(&sent.to_bytes(), media.local).await.unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), peer.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, media.local);
        let echo = Rtp::parse(&buf[..n]).unwrap();
        assert_eq!((echo.payload, echo.payload_type), (&b"hello"[..], 8));
        assert_ne!(echo.ssrc, sent.ssrc, "its own SSRC, not the peer's");
        // Someone else is not echoed once the leg latched.
        stranger.send_to(&sent.to_bytes(), media.local).await.unwrap();
        let nothing =
            tokio::time::timeout(Duration::from_millis(300), stranger.recv_from(&mut buf)).await;
        assert!(nothing.is_err(), "a stranger got an echo");
        // Nothing more from the peer: after a second the tone comes, in PCMU.
        let (n, _) = tokio::time::timeout(Duration::from_secs(3), peer.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let tone = Rtp::parse(&buf[..n]).unwrap();
        assert_eq!((tone.payload_type, tone.payload.len()), (0, 160));
        // Garbage does not stop it.
        peer.send_to(b"\x00\x01", media.local).await.unwrap();
        drop(media);
    }
}
