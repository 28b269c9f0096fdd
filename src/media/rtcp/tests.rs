// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, UNIX_EPOCH};

use str0m::rtp::rtcp::{Rtcp, SdesType};

use super::*;

/// Each packet of `compound` as str0m's RTCP parser reads it (RFC 3550 §6.4-§6.6).
fn parse(compound: &[u8]) -> Vec<Rtcp> {
    let packets = packets(compound).expect("a valid compound packet");
    assert_eq!(packets.iter().map(|p| p.bytes.len()).sum::<usize>(), compound.len());
    packets.iter().map(|p| Rtcp::try_from(p.bytes).expect("str0m reads it")).collect()
}

fn block() -> ReportBlock {
    ReportBlock {
        ssrc: 0xb0b0_b0b0,
        fraction_lost: 64,
        lost: 3,
        highest: 0x0001_0010,
        jitter: 12,
        lsr: 0x1234_5678,
        dlsr: 0x0001_8000,
    }
}

#[test]
fn a_sender_report_with_a_block_and_cname_reads_back_in_str0m() {
    let since_unix = Duration::new(1_764_000_000, 250_000_000);
    let sender = SenderInfo { ntp: ntp(since_unix), rtp: 160_000, packets: 250, octets: 40_000 };
    let mut out = Vec::new();
    write_report(0xa1a1_a1a1, Some(sender), Some(block()), "anchor@lifeline", &mut out);
    assert_eq!(out.len() % 4, 0);
    let parsed = parse(&out);
    assert_eq!(parsed.len(), 2, "{parsed:?}");
    let Rtcp::SenderReport(sr) = &parsed[0] else { panic!("{parsed:?}") };
    assert_eq!(*sr.sender_info.ssrc, 0xa1a1_a1a1);
    assert_eq!(sr.sender_info.sender_packet_count, 250);
    assert_eq!(sr.sender_info.sender_octet_count, 40_000);
    assert_eq!(sr.sender_info.rtp_time.numer(), 160_000);
    let wall = sr.sender_info.ntp_time.duration_since(UNIX_EPOCH).unwrap();
    assert!(wall.abs_diff(since_unix) < Duration::from_micros(1), "{wall:?}");
    let r = &sr.reports[0];
    assert_eq!(
        (*r.ssrc, r.fraction_lost, r.packets_lost, r.max_seq, r.jitter),
        (0xb0b0_b0b0, 64, 3, 0x0001_0010, 12)
    );
    assert_eq!((r.last_sr_time, r.last_sr_delay), (0x1234_5678, 0x0001_8000));
    let Rtcp::SourceDescription(d) = &parsed[1] else { panic!("{parsed:?}") };
    assert_eq!(*d.reports[0].ssrc, 0xa1a1_a1a1);
    assert_eq!(d.reports[0].values[0], (SdesType::CNAME, "anchor@lifeline".to_owned()));
}

#[test]
fn a_receiver_report_without_blocks_and_every_cname_length_is_well_formed() {
    for len in 0..12 {
        let cname = "c".repeat(len);
        let mut out = Vec::new();
        write_report(7, None, None, &cname, &mut out);
        let parsed = parse(&out);
        let Rtcp::ReceiverReport(rr) = &parsed[0] else { panic!("{parsed:?}") };
        assert_eq!((*rr.sender_ssrc, rr.reports.len()), (7, 0));
        let Rtcp::SourceDescription(d) = &parsed[1] else { panic!("{parsed:?}") };
        // str0m reads an empty CNAME as no item.
        if len > 0 {
            assert_eq!(d.reports[0].values[0].1, cname);
        }
    }
    // Negative cumulative loss (duplicates) is written as 24-bit two's complement.
    let mut out = Vec::new();
    write_report(7, None, Some(ReportBlock { lost: -2, ..block() }), "x", &mut out);
    assert_eq!(&out[12..16], &[64, 0xff, 0xff, 0xfe]);
}

#[test]
fn relaying_renames_the_sender_toward_the_browser_and_drops_feedback() {
    let mut compound = Vec::new();
    write_report(0x7777_7777, None, Some(block()), "trunk", &mut compound);
    // A PLI (RFC 4585 §6.3.1) and a BYE after it.
    compound.extend_from_slice(&[0x81, 206, 0, 2, 0x77, 0x77, 0x77, 0x77, 0, 0, 0, 1]);
    compound.extend_from_slice(&[0x81, BYE, 0, 1, 0x77, 0x77, 0x77, 0x77]);
    let mut out = Vec::new();
    assert!(relay(&compound, Rename::Sender(0xa1a1_a1a1), &mut out));
    let parsed = parse(&out);
    assert_eq!(parsed.len(), 3, "the PLI is gone: {parsed:?}");
    let Rtcp::ReceiverReport(rr) = &parsed[0] else { panic!() };
    assert_eq!(*rr.sender_ssrc, 0xa1a1_a1a1);
    assert_eq!(*rr.reports[0].ssrc, 0xb0b0_b0b0, "report blocks stay");
    let Rtcp::SourceDescription(d) = &parsed[1] else { panic!() };
    assert_eq!(*d.reports[0].ssrc, 0xa1a1_a1a1);
    let Rtcp::Goodbye(bye) = &parsed[2] else { panic!() };
    assert_eq!(*bye.reports[0], 0xa1a1_a1a1);
}

#[test]
fn relaying_readdresses_blocks_about_the_leg_toward_the_trunk() {
    let sender = SenderInfo { ntp: 1 << 32, rtp: 1, packets: 2, octets: 3 };
    let mut compound = Vec::new();
    write_report(
        0xb0b0_b0b0,
        Some(sender),
        Some(ReportBlock { ssrc: 0xa1a1, ..block() }),
        "b",
        &mut compound,
    );
    let mut out = Vec::new();
    assert!(relay(&compound, Rename::About(0xa1a1, 0x7777), &mut out));
    let parsed = parse(&out);
    let Rtcp::SenderReport(sr) = &parsed[0] else { panic!() };
    assert_eq!(*sr.sender_info.ssrc, 0xb0b0_b0b0, "the sender stays");
    assert_eq!(*sr.reports[0].ssrc, 0x7777);
    assert_eq!(sender_report(&out), Some((0xb0b0_b0b0, 1 << 32)));
}

#[test]
fn what_is_not_a_valid_compound_is_refused() {
    let mut out = vec![1];
    let mut good = Vec::new();
    write_report(1, None, None, "x", &mut good);
    // Not starting with SR or RR (a lone SDES), bad version, padding first, bad lengths.
    assert!(!relay(&good[8..], Rename::Sender(2), &mut out));
    assert!(out.is_empty());
    let mut v1 = good.clone();
    v1[0] = 0x41;
    assert!(packets(&v1).is_none());
    let mut padded = good.clone();
    padded[0] |= 0x20;
    assert!(packets(&padded).is_none());
    assert!(packets(&good[..good.len() - 1]).is_none());
    let mut long = good.clone();
    long[3] += 1;
    assert!(packets(&long).is_none());
    // Only feedback after the report: the report alone goes on.
    let mut fb = good[..8].to_vec();
    fb.extend_from_slice(&[0x81, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    assert!(relay(&fb, Rename::Sender(2), &mut out));
    assert_eq!(out.len(), 8);
    for len in 0..40 {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x80) as u8).collect();
        let _ = relay(&junk, Rename::About(1, 2), &mut out);
        let _ = sender_report(&junk);
    }
}

#[test]
fn ntp_and_dlsr_units() {
    assert_eq!(ntp(Duration::ZERO), 2_208_988_800 << 32);
    assert_eq!(ntp(Duration::from_millis(500)) & 0xffff_ffff, 1 << 31);
    assert_eq!(dlsr(Duration::from_millis(1500)), 98_304);
}
