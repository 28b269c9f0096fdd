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

/// An RTCP receiver report from `ssrc` with one SDES CNAME chunk (RFC 3550 §6.4.2, §6.5.1).
fn rtcp(ssrc: u32) -> Vec<u8> {
    let mut v = vec![0x80, 201, 0, 1];
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(&[0x81, 202, 0, 3]);
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(&[1, 5, b'a', b'b', b'c', b'd', b'e', 0]);
    v
}

#[test]
fn srtcp_is_rfc_7714_section_17_1() {
    // RFC 7714 §17.1: AEAD_AES_128_GCM with the session key 00..0f, the salt "Quid pro quo",
    // SRTCP index 0x5d4, encrypted.
    let (mut client, mut server) = pair(SrtpProfile::AEAD_AES_128_GCM, 56);
    let srtp = provider().srtp_provider;
    let key: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
    let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().unwrap();
    client.rtcp_tx =
        Cipher::Gcm128 { cipher: srtp.aead_aes_128_gcm().create_cipher(key, true), salt };
    server.rtcp_rx =
        Cipher::Gcm128 { cipher: srtp.aead_aes_128_gcm().create_cipher(key, false), salt };
    client.rtcp_index = 0x5d4;
    let plain = hex("81c8000d4d6172734e5450314e5450325254502000000\
         42a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef");
    let wire =
        hex("81c8000d4d61727363e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda\
         4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4");
    let mut out = Vec::new();
    assert!(client.protect_rtcp(&plain, &mut out));
    assert_eq!(out, wire);
    assert_eq!(client.rtcp_index, 0x5d5, "one index per packet");
    let mut back = Vec::new();
    assert!(server.unprotect_rtcp(&wire, &mut back));
    assert_eq!(back, plain);
}

#[test]
fn srtcp_round_trips_every_profile_and_refuses_tampering_and_replays() {
    for (profile, len) in PROFILES {
        let (mut client, mut server) = pair(profile, len);
        let plain = rtcp(0xabcd);
        let mut first = Vec::new();
        assert!(client.protect_rtcp(&plain, &mut first));
        assert_eq!(&first[..8], &plain[..8], "{profile:?}: header and SSRC in the clear");
        assert_ne!(&first[8..plain.len()], &plain[8..], "{profile:?}: encrypted");
        // The E-bit and index 0 (RFC 3711 §3.4).
        let trailer = match profile {
            SrtpProfile::AES128_CM_SHA1_80 => &first[plain.len()..plain.len() + 4],
            _ => &first[first.len() - 4..],
        };
        assert_eq!(trailer, &[0x80, 0, 0, 0], "{profile:?}");
        let mut out = vec![7];
        assert!(server.unprotect_rtcp(&first, &mut out), "{profile:?}");
        assert_eq!(&out[1..], &plain[..], "{profile:?}: appended");
        // Replayed: refused; the next index: taken; the other direction's key: refused.
        assert!(!server.unprotect_rtcp(&first, &mut Vec::new()), "{profile:?}: replay");
        let mut second = Vec::new();
        assert!(client.protect_rtcp(&plain, &mut second));
        assert_ne!(first, second, "{profile:?}: a new index, a new ciphertext");
        assert!(server.unprotect_rtcp(&second, &mut Vec::new()), "{profile:?}");
        assert!(!client.unprotect_rtcp(&second, &mut Vec::new()), "{profile:?}: own key");
        // The other way round, with the server's key.
        let mut back = Vec::new();
        assert!(server.protect_rtcp(&rtcp(0x1111), &mut back));
        let mut got = Vec::new();
        assert!(client.unprotect_rtcp(&back, &mut got));
        assert_eq!(got, rtcp(0x1111));
        // One flipped bit anywhere (E-bit and index included): refused, `out` untouched.
        let mut fresh = Vec::new();
        assert!(client.protect_rtcp(&plain, &mut fresh));
        for at in [0, 4, 9, plain.len() - 1, plain.len(), fresh.len() - 4, fresh.len() - 1] {
            let mut bad = fresh.clone();
            bad[at] ^= 0x01;
            let mut out = vec![9];
            assert!(!server.unprotect_rtcp(&bad, &mut out), "{profile:?} byte {at}");
            assert_eq!(out, vec![9]);
        }
        assert!(server.unprotect_rtcp(&fresh, &mut Vec::new()), "{profile:?}: the original");
    }
}

#[test]
fn srtcp_reordered_inside_the_window_is_taken_once_and_too_old_never() {
    let (mut client, mut server) = pair(SrtpProfile::AES128_CM_SHA1_80, 60);
    let packets: Vec<Vec<u8>> = (0..200)
        .map(|_| {
            let mut out = Vec::new();
            assert!(client.protect_rtcp(&rtcp(5), &mut out));
            out
        })
        .collect();
    assert!(server.unprotect_rtcp(&packets[150], &mut Vec::new()));
    assert!(server.unprotect_rtcp(&packets[100], &mut Vec::new()), "late, in the window");
    assert!(!server.unprotect_rtcp(&packets[100], &mut Vec::new()), "replayed");
    assert!(!server.unprotect_rtcp(&packets[150 - WINDOW as usize], &mut Vec::new()), "too old");
    // Another sender SSRC has a window of its own.
    let mut other = Vec::new();
    assert!(client.protect_rtcp(&rtcp(6), &mut other));
    assert!(server.unprotect_rtcp(&other, &mut Vec::new()));
}

#[test]
fn unencrypted_srtcp_is_taken_when_authentic() {
    // AES-CM with the E-bit clear (RFC 3711 §3.4): the compound in the clear, then the index
    // and the tag over both.
    let (client, mut server) = pair(SrtpProfile::AES128_CM_SHA1_80, 60);
    let Cipher::Cm { auth, .. } = &client.rtcp_tx else { panic!() };
    let plain = rtcp(9);
    let mut wire = plain.clone();
    wire.extend_from_slice(&[0, 0, 0, 3]);
    wire.extend_from_slice(&[0; 10]);
    let sha1 = client.sha1_hmac;
    let at = plain.len() + 4;
    Aes128CmSha1_80::rtcp_hmac(|k: &[u8], p: &[&[u8]]| sha1.sha1_hmac(k, p), auth, &mut wire, at);
    let mut out = Vec::new();
    assert!(server.unprotect_rtcp(&wire, &mut out));
    assert_eq!(out, plain);
    wire[9] ^= 1;
    assert!(!server.unprotect_rtcp(&wire, &mut Vec::new()));
}

#[test]
fn srtcp_garbage_is_refused_without_panicking() {
    for (profile, len) in PROFILES {
        let (mut client, mut server) = pair(profile, len);
        let mut out = Vec::new();
        for n in 0..60 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 31 + 0x80) as u8).collect();
            assert!(!server.unprotect_rtcp(&junk, &mut out));
            assert!(out.is_empty());
        }
        assert!(!client.protect_rtcp(&[0x80, 201, 0], &mut out), "shorter than a header");
        client.rtcp_index = 0x8000_0000;
        assert!(
            !client.protect_rtcp(&rtcp(1), &mut out),
            "{profile:?}: the index space is used up"
        );
    }
}
