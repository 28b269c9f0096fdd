// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The two ends of one DTLS association: the client's and the server's SRTP.
fn pair(profile: SrtpProfile, len: usize) -> (Srtp, Srtp) {
    let material: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    let crypto = provider();
    let client = Keys { material: material.clone(), profile, active: true };
    let server = Keys { material, profile, active: false };
    (Srtp::new(&crypto, &client).unwrap(), Srtp::new(&crypto, &server).unwrap())
}

const PROFILES: [(SrtpProfile, usize); 3] = [
    (SrtpProfile::AES128_CM_SHA1_80, 60),
    (SrtpProfile::AEAD_AES_128_GCM, 56),
    (SrtpProfile::AEAD_AES_256_GCM, 88),
];

fn header(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut h = vec![0x80, 0x00];
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    h.extend_from_slice(&ssrc.to_be_bytes());
    h
}

fn send(from: &mut Srtp, index: u64, fill: u8) -> Vec<u8> {
    let mut out = Vec::new();
    assert!(from.protect(&header(index as u16, 0xabcd), &[fill; 160], 0xabcd, index, &mut out));
    out
}

#[test]
fn the_session_keys_are_those_of_rfc_3711_appendix_b3() {
    // RFC 3711 B.3: the AES-CM PRF at key derivation rate 0.
    let master = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
    let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
    let srtp = provider().srtp_provider;
    let mut key = [0u8; 16];
    derive(srtp, &master, &salt, 0, &mut key);
    assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut session_salt = [0u8; 14];
    derive(srtp, &master, &salt, 2, &mut session_salt);
    assert_eq!(session_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    let mut auth = [0u8; 20];
    derive(srtp, &master, &salt, 1, &mut auth);
    assert_eq!(auth.to_vec(), hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
}

#[test]
fn every_profile_round_trips_both_ways_and_refuses_tampering() {
    for (profile, len) in PROFILES {
        let (mut client, mut server) = pair(profile, len);
        let packet = send(&mut client, 1000, 0x42);
        assert_ne!(&packet[12..172], &[0x42; 160][..], "{profile:?}: encrypted");
        let mut out = Vec::new();
        let got = server.unprotect(&packet, &mut out).expect("authentic");
        assert_eq!(
            (got.sequence, got.index, got.ssrc, got.timestamp),
            (1000, 1000, 0xabcd, 160_000)
        );
        assert_eq!(out, vec![0x42; 160], "{profile:?}");
        // The other way, with the other key.
        let back = send(&mut server, 7, 0x17);
        out.clear();
        assert!(client.unprotect(&back, &mut out).is_some(), "{profile:?}");
        assert_eq!(out, vec![0x17; 160]);
        // A packet of one direction does not authenticate as the other's.
        let own = send(&mut client, 1001, 0);
        assert!(client.unprotect(&own, &mut Vec::new()).is_none());
        // One flipped bit anywhere: refused, and the output left as it was.
        for at in [1, 5, 12, 100, packet.len() - 1] {
            let mut bad = send(&mut client, 2000 + at as u64, 0x42);
            bad[at] ^= 0x01;
            let mut out = vec![9];
            assert!(server.unprotect(&bad, &mut out).is_none(), "{profile:?} byte {at}");
            assert_eq!(out, vec![9]);
        }
    }
}

#[test]
fn a_replayed_or_too_old_packet_is_refused() {
    for (profile, len) in PROFILES {
        let (mut client, mut server) = pair(profile, len);
        let first = send(&mut client, 500, 1);
        let mut out = Vec::new();
        assert!(server.unprotect(&first, &mut out).is_some());
        assert!(server.unprotect(&first, &mut out).is_none(), "{profile:?}: replay");
        // Late but inside the window, once; then a replay.
        let later = send(&mut client, 700, 2);
        let late = send(&mut client, 650, 3);
        assert!(server.unprotect(&later, &mut out).is_some());
        assert!(server.unprotect(&late, &mut out).is_some(), "{profile:?}: reordered");
        assert!(server.unprotect(&late, &mut out).is_none(), "{profile:?}: replayed");
        // Older than the window: refused although never seen.
        // (Sent by a twin of the client: the client itself refuses an index that old.)
        let (mut twin, _) = pair(profile, len);
        let ancient = send(&mut twin, 700 - WINDOW, 4);
        assert!(server.unprotect(&ancient, &mut out).is_none(), "{profile:?}: too old");
    }
}

#[test]
fn an_index_is_never_encrypted_twice() {
    let (mut client, _) = pair(SrtpProfile::AEAD_AES_256_GCM, 88);
    let mut out = Vec::new();
    let h = header(10, 1);
    assert!(client.protect(&h, &[1; 10], 1, 10, &mut out));
    assert!(!client.protect(&h, &[2; 10], 1, 10, &mut out), "same index again");
    assert!(client.protect(&header(9, 1), &[1; 10], 1, 9, &mut out), "reordered, new");
    assert!(client.protect(&header(300, 1), &[1; 10], 1, 300, &mut out));
    assert!(!client.protect(&header(100, 1), &[1; 10], 1, 100, &mut out), "too old");
}

#[test]
fn the_rollover_counter_follows_the_sequence_numbers_across_the_wrap() {
    for (profile, len) in PROFILES {
        let (mut client, mut server) = pair(profile, len);
        let mut out = Vec::new();
        // 65530 .. 65535, 0 .. 9 of the next cycle (index 65536 + n), one reordered across.
        let mut indices: Vec<u64> = (65_530..65_546).collect();
        indices.swap(5, 6);
        for index in indices {
            let packet = send(&mut client, index, index as u8);
            out.clear();
            let got = server.unprotect(&packet, &mut out).unwrap_or_else(|| panic!("{index}"));
            assert_eq!(got.index, index, "{profile:?}");
            assert_eq!(out, vec![index as u8; 160]);
        }
    }
}

#[test]
fn the_index_estimate_is_rfc_3711_appendix_a() {
    let w = |top: u64| Window::new(top);
    assert_eq!(w(100).estimate(101), Some(101));
    assert_eq!(w(100).estimate(50_000), None, "before the first index");
    assert_eq!(w(65_536 + 100).estimate(65_000), Some(65_000), "previous cycle");
    assert_eq!(w(65_000).estimate(5), Some(65_536 + 5), "next cycle");
    assert_eq!(w(40_000).estimate(39_000), Some(39_000));
}

#[test]
fn garbage_is_refused_without_panicking() {
    let (_, mut server) = pair(SrtpProfile::AEAD_AES_256_GCM, 88);
    let mut out = Vec::new();
    for bytes in [&[][..], &[0x80; 11], &[0x90; 16], &[0x8f; 40], &[0x40; 40], &[0x80; 28]] {
        assert!(server.unprotect(bytes, &mut out).is_none());
        assert!(out.is_empty());
    }
    let keys = Keys { material: vec![0; 10], profile: SrtpProfile::AEAD_AES_256_GCM, active: true };
    assert!(Srtp::new(&provider(), &keys).is_none(), "keying material of the wrong length");
}
