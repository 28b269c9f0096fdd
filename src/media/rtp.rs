//! Plain RTP (RFC 3550 §5.1) as the trunk side sends and receives it: a header checked before
//! it is read, and written back for the packets the anchor relays. Nothing here panics on
//! bytes from the network.

/// The fixed part of an RTP header.
pub const FIXED_HEADER: usize = 12;

/// What is wrong with a datagram that should be RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    /// Shorter than the header it announces.
    Truncated,
    /// Not version 2.
    Version,
    /// A padding count larger than the payload.
    Padding,
    /// An RTCP packet (payload types 72-76 with the marker bit, RFC 5761 §4).
    Rtcp,
}

/// A plain RTP packet, borrowed from the datagram it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtp<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The payload without header, CSRCs, extension or padding.
    pub payload: &'a [u8],
}

impl<'a> Rtp<'a> {
    /// Reads an RTP packet: fixed header, CSRC list and header extension skipped, padding
    /// removed.
    pub fn parse(bytes: &'a [u8]) -> Result<Rtp<'a>, RtpError> {
        let fixed = bytes.get(..FIXED_HEADER).ok_or(RtpError::Truncated)?;
        if fixed[0] >> 6 != 2 {
            return Err(RtpError::Version);
        }
        let padding = fixed[0] & 0x20 != 0;
        let extension = fixed[0] & 0x10 != 0;
        let csrcs = usize::from(fixed[0] & 0x0f);
        let marker = fixed[1] & 0x80 != 0;
        let payload_type = fixed[1] & 0x7f;
        if (72..=76).contains(&payload_type) && marker {
            return Err(RtpError::Rtcp);
        }
        let mut start = FIXED_HEADER + 4 * csrcs;
        if extension {
            let ext = bytes.get(start..start + 4).ok_or(RtpError::Truncated)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            start += 4 + 4 * words;
        }
        let mut end = bytes.len();
        if start > end {
            return Err(RtpError::Truncated);
        }
        if padding {
            let count = usize::from(*bytes.last().ok_or(RtpError::Truncated)?);
            if count == 0 || count > end - start {
                return Err(RtpError::Padding);
            }
            end -= count;
        }
        Ok(Rtp {
            marker,
            payload_type,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            payload: &bytes[start..end],
        })
    }

    /// The packet as bytes: a 12-byte header (no CSRC, no extension, no padding) and the
    /// payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_HEADER + self.payload.len());
        self.write_to(&mut out);
        out
    }

    /// The packet as [`Rtp::to_bytes`] writes it, into `out` (cleared first), whose capacity
    /// may come from a packet sent before.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(0x80);
        out.push(u8::from(self.marker) << 7 | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// Extends 16-bit RTP sequence numbers to 64 bits across wrap-arounds (RFC 3550 appendix A.1),
/// as SRTP's rollover counter needs (RFC 3711 §3.3.1).
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqExtender {
    last: Option<u64>,
}

impl SeqExtender {
    /// The extended number of `seq`: the candidate closest to the last one seen.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let Some(last) = self.last else {
            self.last = Some(u64::from(seq));
            return u64::from(seq);
        };
        let roc = last >> 16;
        let candidates = [roc.checked_sub(1), Some(roc), roc.checked_add(1)];
        let ext = candidates
            .into_iter()
            .flatten()
            .map(|r| (r << 16) | u64::from(seq))
            .min_by_key(|c| c.abs_diff(last))
            .unwrap_or(u64::from(seq));
        if ext > last {
            self.last = Some(ext);
        }
        ext
    }
}

/// What a receiver knows of one RTP stream (RFC 3550 §6.4.1): packets lost, from the extended
/// sequence numbers (appendix A.3), and the interarrival jitter (appendix A.8), in timestamp
/// units.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reception {
    base: Option<u64>,
    max: u64,
    received: u64,
    /// The last packet's relative transit time, in timestamp units.
    transit: Option<i64>,
    /// The jitter estimate times 16 (appendix A.8's integer form).
    jitter16: u64,
}

impl Reception {
    /// A packet with extended sequence number `seq` and RTP timestamp `timestamp` arrived at
    /// `arrival` (the receiver's clock, in the same timestamp units).
    pub fn packet(&mut self, seq: u64, timestamp: u32, arrival: u64) {
        let base = *self.base.get_or_insert(seq);
        if seq < base {
            self.base = Some(seq);
        }
        self.max = self.max.max(seq);
        self.received += 1;
        // Transit differences stay small; wrapping arithmetic keeps a timestamp wrap harmless.
        let transit = (arrival as i64).wrapping_sub(i64::from(timestamp));
        if let Some(last) = self.transit {
            let d = transit.wrapping_sub(last).unsigned_abs();
            // J += (|D| - J) / 16, kept times 16 (RFC 3550 A.8).
            self.jitter16 = self.jitter16 + d - (self.jitter16 + 8) / 16;
        }
        self.transit = Some(transit);
    }

    /// Packets expected but not received (duplicates can make the count go down, as in RFC
    /// 3550 A.3; it never goes below 0 here).
    pub fn lost(&self) -> u64 {
        let Some(base) = self.base else { return 0 };
        (self.max - base + 1).saturating_sub(self.received)
    }

    /// Packets expected from the sequence numbers seen.
    pub fn expected(&self) -> u64 {
        self.base.map_or(0, |base| self.max - base + 1)
    }

    /// The interarrival jitter, in timestamp units.
    pub fn jitter(&self) -> u64 {
        self.jitter16 / 16
    }

    /// Packets received (duplicates included, as RFC 3550 A.3 counts them).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The highest extended sequence number received (`None` before any packet).
    pub fn highest(&self) -> Option<u64> {
        self.base.map(|_| self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(first: u8, second: u8, tail: &[u8]) -> Vec<u8> {
        let mut v = vec![first, second, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xde, 0xad, 0xbe, 0xef];
        v.extend_from_slice(tail);
        v
    }

    #[test]
    fn reads_and_writes_a_pcmu_packet() {
        let bytes = packet(0x80, 0x80, &[0xff; 160]);
        let rtp = Rtp::parse(&bytes).expect("valid");
        assert_eq!(
            (rtp.marker, rtp.payload_type, rtp.sequence, rtp.timestamp, rtp.ssrc),
            (true, 0, 0x1234, 320, 0xdead_beef)
        );
        assert_eq!(rtp.payload.len(), 160);
        assert_eq!(rtp.to_bytes(), bytes);
    }

    #[test]
    fn skips_csrcs_and_extension_and_drops_padding() {
        // Two CSRCs, a one-word extension, then payload [1, 2, 3] and 2 bytes of padding.
        let mut tail = vec![0; 8];
        tail.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]);
        tail.extend_from_slice(&[1, 2, 3, 0, 2]);
        let bytes = packet(0x80 | 0x20 | 0x10 | 2, 126, &tail);
        let rtp = Rtp::parse(&bytes).expect("valid");
        assert_eq!(rtp.payload, &[1, 2, 3]);
        assert_eq!(rtp.payload_type, 126);
    }

    #[test]
    fn refuses_what_is_not_rtp() {
        assert_eq!(Rtp::parse(&[0x80; 11]), Err(RtpError::Truncated));
        assert_eq!(Rtp::parse(&packet(0x40, 0, &[])), Err(RtpError::Version));
        assert_eq!(Rtp::parse(&packet(0x8f, 0, &[0; 8])), Err(RtpError::Truncated));
        assert_eq!(Rtp::parse(&packet(0x90, 0, &[0, 0, 0xff, 0xff])), Err(RtpError::Truncated));
        assert_eq!(Rtp::parse(&packet(0xa0, 0, &[1, 9])), Err(RtpError::Padding));
        assert_eq!(Rtp::parse(&packet(0xa0, 0, &[1, 0])), Err(RtpError::Padding));
        // RTCP receiver report (PT 201 = marker + 73) on a multiplexed port.
        assert_eq!(Rtp::parse(&packet(0x81, 201, &[])), Err(RtpError::Rtcp));
    }

    #[test]
    fn never_panics_on_any_short_datagram() {
        for len in 0..40 {
            for first in [0x80u8, 0xbf, 0xff] {
                let mut v = vec![0xffu8; len];
                if let Some(b) = v.first_mut() {
                    *b = first;
                }
                let _ = Rtp::parse(&v);
            }
        }
    }

    #[test]
    fn reception_counts_gaps_and_jitter() {
        let mut r = Reception::default();
        // 20 ms PCMU (160 units) arriving on time: no jitter, no loss.
        for i in 0..10u64 {
            r.packet(100 + i, (i * 160) as u32, 1000 + i * 160);
        }
        assert_eq!((r.lost(), r.jitter()), (0, 0));
        // Two packets missing, then one 40 units late each time: jitter grows toward 40.
        for i in 12..200u64 {
            let late = if i % 2 == 0 { 40 } else { 0 };
            r.packet(100 + i, (i * 160) as u32, 1000 + i * 160 + late);
        }
        assert_eq!(r.lost(), 2);
        assert!((30..=42).contains(&r.jitter()), "{}", r.jitter());
    }

    #[test]
    fn sequence_numbers_extend_across_the_wrap() {
        let mut x = SeqExtender::default();
        assert_eq!(x.extend(65_534), 65_534);
        assert_eq!(x.extend(65_535), 65_535);
        assert_eq!(x.extend(0), 65_536);
        // A late packet from before the wrap keeps the old rollover count.
        assert_eq!(x.extend(65_533), 65_533);
        assert_eq!(x.extend(1), 65_537);
    }
}
