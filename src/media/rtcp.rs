//! RTCP (RFC 3550 §6) as the anchor relays it between a WebRTC leg's two sides and as it
//! writes its own reports: compound packets checked, filtered and readdressed, sender and
//! receiver reports with SDES CNAME written. No I/O, no clock; nothing here panics on bytes
//! from the network.
//!
//! # Contract
//!
//! - A compound packet is taken only if it passes RFC 3550 appendix A.2's check: version 2
//!   throughout, the first packet a sender or receiver report (§6.1) without padding, the
//!   lengths adding up to the datagram's.
//! - Relaying ([`relay`]) keeps sender reports, receiver reports, SDES and BYE (the packets
//!   RTP/AVP and RTP/SAVPF share, §6.4-§6.6), and drops the rest: AVPF feedback (RFC 4585
//!   §6: NACK, PLI, REMB...), extended reports (RFC 3611) and APP, which name streams or
//!   capabilities the other side never negotiated. A compound left without its report is not
//!   sent at all.
//! - SSRCs: the anchor sends the trunk's RTP to the browser under the leg's own SSRC, and the
//!   browser's RTP to the trunk under the browser's SSRC. [`Rename`] applies the same to RTCP:
//!   toward the browser, the sender's SSRC fields (the report's sender, SDES chunks, BYE)
//!   become the leg's; toward the trunk, report blocks about the leg's SSRC become blocks
//!   about the trunk's stream. Sequence numbers and timestamps are relayed unchanged, so the
//!   counts, extended sequence numbers and NTP/RTP timestamp pairs stay true.
//! - [`write_report`] makes one compound packet (§6.1): an SR (§6.4.1) when the anchor sent
//!   the stream, else an RR (§6.4.2), with at most one report block, then SDES with the
//!   CNAME (§6.5.1).

/// RTCP packet types (RFC 3550 §12.1).
pub const SR: u8 = 200;
pub const RR: u8 = 201;
pub const SDES: u8 = 202;
pub const BYE: u8 = 203;

/// The SDES item type of the canonical name (RFC 3550 §6.5.1).
const CNAME: u8 = 1;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX: u64 = 2_208_988_800;

/// One packet of a compound: its type, its count field (report blocks, SDES chunks, BYE
/// sources) and its bytes (header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub kind: u8,
    pub count: u8,
    pub bytes: &'a [u8],
}

/// The packets of a valid compound packet (RFC 3550 A.2), or `None`.
pub fn packets(compound: &[u8]) -> Option<Vec<Packet<'_>>> {
    let first = compound.get(..2)?;
    // Version 2, no padding, SR or RR first.
    if first[0] & 0xe0 != 0x80 || !matches!(first[1], SR | RR) {
        return None;
    }
    let mut out = Vec::with_capacity(4);
    let mut rest = compound;
    while !rest.is_empty() {
        let header = rest.get(..4)?;
        if header[0] >> 6 != 2 {
            return None;
        }
        let len = 4 * (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1);
        let bytes = rest.get(..len)?;
        out.push(Packet { kind: header[1], count: header[0] & 0x1f, bytes });
        rest = &rest[len..];
    }
    Some(out)
}

/// How a relayed compound's SSRCs change (see the module contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rename {
    /// Toward the browser: every SSRC of the sender (report sender, SDES chunks, BYE) becomes
    /// this one; report blocks stay.
    Sender(u32),
    /// Toward the trunk: report blocks about the first SSRC are about the second.
    About(u32, u32),
}

/// `compound`, filtered and renamed as the module contract says, into `out` (cleared first).
/// `false`: not valid RTCP, or nothing to relay.
pub fn relay(compound: &[u8], rename: Rename, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Some(packets) = packets(compound) else { return false };
    for p in packets.iter().filter(|p| matches!(p.kind, SR | RR | SDES | BYE)) {
        let start = out.len();
        out.extend_from_slice(p.bytes);
        let packet = &mut out[start..];
        match (p.kind, rename) {
            (SR | RR, Rename::Sender(ssrc)) => set_u32(packet, 4, ssrc),
            (SR | RR, Rename::About(from, to)) => {
                let blocks = if p.kind == SR { 28 } else { 8 };
                for n in 0..usize::from(p.count) {
                    let at = blocks + 24 * n;
                    if get_u32(packet, at) == Some(from) {
                        set_u32(packet, at, to);
                    }
                }
            }
            (SDES, Rename::Sender(ssrc)) => {
                // Chunks: SSRC, items (type, length, text), a null item, padded to 32 bits.
                let mut at = 4;
                for _ in 0..p.count {
                    if at + 4 > packet.len() {
                        break;
                    }
                    set_u32(packet, at, ssrc);
                    at += 4;
                    while let Some(&kind) = packet.get(at) {
                        if kind == 0 {
                            break;
                        }
                        at += 2 + usize::from(packet.get(at + 1).copied().unwrap_or(0));
                    }
                    at = (at + 4) & !3;
                }
            }
            (BYE, Rename::Sender(ssrc)) => {
                for n in 0..usize::from(p.count) {
                    set_u32(packet, 4 + 4 * n, ssrc);
                }
            }
            _ => {}
        }
    }
    // The compound must still start with its report (RFC 3550 §6.1).
    let ok = out.get(1).is_some_and(|t| matches!(*t, SR | RR));
    if !ok {
        out.clear();
    }
    ok
}

fn get_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    if let Some(b) = bytes.get_mut(at..at + 4) {
        b.copy_from_slice(&value.to_be_bytes());
    }
}

/// The sender information of a sender report (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// The 64-bit NTP timestamp of the report ([`ntp`]).
    pub ntp: u64,
    /// The same instant in the stream's RTP timestamp units.
    pub rtp: u32,
    /// Packets and payload octets sent since the stream started.
    pub packets: u32,
    pub octets: u32,
}

/// A report block (RFC 3550 §6.4.1) about the stream of `ssrc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Lost since the last report, in 256ths.
    pub fraction_lost: u8,
    /// Lost since the start (24-bit signed; clamped to it).
    pub lost: i64,
    pub highest: u32,
    pub jitter: u32,
    /// The middle 32 bits of the NTP timestamp of the last SR from that stream's sender, and
    /// the delay since it came, in 1/65536 s (0 and 0 without one).
    pub lsr: u32,
    pub dlsr: u32,
}

/// A sender (or receiver, without `sender`) report from `ssrc` with `block`, then SDES with
/// `cname`: one compound packet into `out` (cleared first).
pub fn write_report(
    ssrc: u32,
    sender: Option<SenderInfo>,
    block: Option<ReportBlock>,
    cname: &str,
    out: &mut Vec<u8>,
) {
    out.clear();
    let count = u8::from(block.is_some());
    let kind = if sender.is_some() { SR } else { RR };
    let words = 1 + if sender.is_some() { 5 } else { 0 } + 6 * usize::from(count);
    out.extend_from_slice(&[0x80 | count, kind]);
    out.extend_from_slice(&u16::try_from(words).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(s) = sender {
        out.extend_from_slice(&s.ntp.to_be_bytes());
        out.extend_from_slice(&s.rtp.to_be_bytes());
        out.extend_from_slice(&s.packets.to_be_bytes());
        out.extend_from_slice(&s.octets.to_be_bytes());
    }
    if let Some(b) = block {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        let lost = b.lost.clamp(-0x80_0000, 0x7f_ffff) as i32 as u32 & 0x00ff_ffff;
        out.extend_from_slice(&(u32::from(b.fraction_lost) << 24 | lost).to_be_bytes());
        out.extend_from_slice(&b.highest.to_be_bytes());
        out.extend_from_slice(&b.jitter.to_be_bytes());
        out.extend_from_slice(&b.lsr.to_be_bytes());
        out.extend_from_slice(&b.dlsr.to_be_bytes());
    }
    // SDES: one chunk, CNAME (at most 255 octets), the null item, padded to 32 bits.
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let chunk = (4 + 2 + cname.len() + 1).div_ceil(4) * 4;
    out.extend_from_slice(&[0x81, SDES]);
    out.extend_from_slice(&u16::try_from(chunk / 4).unwrap_or(0).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&[CNAME, u8::try_from(cname.len()).unwrap_or(0)]);
    out.extend_from_slice(cname);
    out.resize(start + chunk, 0);
}

/// The sender SSRC and NTP timestamp of the first sender report in a valid compound packet.
pub fn sender_report(compound: &[u8]) -> Option<(u32, u64)> {
    let p = packets(compound)?.into_iter().find(|p| p.kind == SR)?;
    let ssrc = get_u32(p.bytes, 4)?;
    let ntp = u64::from(get_u32(p.bytes, 8)?) << 32 | u64::from(get_u32(p.bytes, 12)?);
    Some((ssrc, ntp))
}

/// The 64-bit NTP timestamp (RFC 3550 §4) of `since_unix`, a time since the Unix epoch.
pub fn ntp(since_unix: std::time::Duration) -> u64 {
    let seconds = since_unix.as_secs() + NTP_UNIX;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    seconds << 32 | fraction
}

/// A delay in the 1/65536 s units of DLSR (RFC 3550 §6.4.1).
pub fn dlsr(delay: std::time::Duration) -> u32 {
    u32::try_from(delay.as_micros() * 65_536 / 1_000_000).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
