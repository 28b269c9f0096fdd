// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use str0m::change::SdpAnswer;
use str0m::media::Direction;
use str0m::rtp::RawPacket;
use str0m::rtp::rtcp::Rtcp;

use super::*;

const ANCHOR: &str = "127.0.0.1:40000";
const BROWSER: &str = "127.0.0.1:50000";
const TRUNK: &str = "127.0.0.2:30000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A second str0m playing the browser: full ICE, the offerer, the DTLS client, PCMU.
struct Browser {
    rtc: Rtc,
    mid: Mid,
    timeout: Instant,
    connected: bool,
    received: Vec<RtpPacket>,
    /// The sequence numbers of the SRTP audio the anchor sent it.
    srtp_seqs: Vec<u16>,
    /// The RTCP the anchor sent the trunk (on the RTCP port).
    rtcp_at_trunk: Vec<(SocketAddr, Vec<u8>)>,
    /// The RTCP str0m decrypted and read from the anchor, when.
    rtcp_received: Vec<(Instant, Rtcp)>,
}

impl Browser {
    /// A browser whose offer the anchor has answered.
    fn call(anchor: &mut Anchor, now: Instant) -> (Browser, LegId) {
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(crypto())
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_pcmu(true, false)
            .enable_raw_packets(true)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr(BROWSER), "udp").unwrap());
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let (leg, answer) = anchor
            .accept_offer(
                now,
                &offer.to_sdp_string(),
                Some(addr(TRUNK)),
                &[SdpCodec::Pcmu],
                Some(TELEPHONE_EVENT_PT),
            )
            .unwrap();
        assert!(answer.contains("a=ice-lite"), "{answer}");
        assert!(answer.contains("a=setup:passive"), "{answer}");
        assert!(answer.contains("PCMU/8000"), "{answer}");
        rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
        let browser = Browser {
            rtc,
            mid,
            timeout: now,
            connected: false,
            received: Vec::new(),
            srtp_seqs: Vec::new(),
            rtcp_at_trunk: Vec::new(),
            rtcp_received: Vec::new(),
        };
        (browser, leg)
    }

    /// Drains the browser's output: datagrams go to the anchor.
    fn drain(&mut self, anchor: &mut Anchor, now: Instant) -> bool {
        let mut moved = false;
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => {
                    self.timeout = t;
                    return moved;
                }
                Output::Transmit(t) => {
                    assert_eq!(t.destination, addr(ANCHOR));
                    anchor.handle_browser(now, t.source, &t.contents);
                    moved = true;
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::RtpPacket(p)) => self.received.push(p),
                Output::Event(Event::RawPacket(raw)) => {
                    if let RawPacket::RtcpRx(rtcp) = *raw {
                        self.rtcp_received.push((now, rtcp));
                    }
                }
                Output::Event(_) => {}
            }
        }
    }

    fn receive(&mut self, now: Instant, bytes: &[u8]) {
        let r = Receive::new(Protocol::Udp, addr(ANCHOR), addr(BROWSER), bytes).unwrap();
        self.rtc.handle_input(Input::Receive(now, r)).unwrap();
    }
}

/// Moves datagrams both ways until neither side has any; returns what went to the trunk.
fn pump(anchor: &mut Anchor, browser: &mut Browser, now: Instant) -> Vec<Vec<u8>> {
    let mut to_trunk = Vec::new();
    loop {
        let mut moved = browser.drain(anchor, now);
        while let Some(t) = anchor.poll_transmit() {
            moved = true;
            match t {
                Transmit::Browser { to, bytes } => {
                    assert_eq!(to, addr(BROWSER));
                    // SRTP carrying 160 bytes of PCMU: its (clear) sequence number.
                    if bytes.len() > 160 && bytes[0] >> 6 == 2 && bytes[1] & 0x7f == 0 {
                        browser.srtp_seqs.push(u16::from_be_bytes([bytes[2], bytes[3]]));
                    }
                    browser.receive(now, &bytes);
                }
                Transmit::Trunk { to, bytes, .. } => {
                    assert_eq!(to, addr(TRUNK));
                    to_trunk.push(bytes);
                }
                Transmit::TrunkRtcp { to, bytes, .. } => browser.rtcp_at_trunk.push((to, bytes)),
            }
        }
        if !moved {
            return to_trunk;
        }
    }
}

/// Runs virtual time in 5 ms steps until both sides are connected.
fn connect(anchor: &mut Anchor, browser: &mut Browser, leg: LegId, mut now: Instant) -> Instant {
    for _ in 0..2_000 {
        pump(anchor, browser, now);
        if browser.connected && anchor.is_connected(leg) {
            return now;
        }
        now += Duration::from_millis(5);
        browser.rtc.handle_input(Input::Timeout(now)).unwrap();
        anchor.handle_timeout(now);
    }
    panic!("ICE and DTLS never completed: {:?}", anchor.legs.get(&leg));
}

/// Lets 100 ms of virtual time pass, moving datagrams: str0m paces what it sends, so a packet
/// written now may leave at the next timeout.
fn settle(anchor: &mut Anchor, browser: &mut Browser, mut now: Instant) -> (Instant, Vec<Vec<u8>>) {
    let mut to_trunk = pump(anchor, browser, now);
    for _ in 0..20 {
        now += Duration::from_millis(5);
        browser.rtc.handle_input(Input::Timeout(now)).unwrap();
        anchor.handle_timeout(now);
        to_trunk.extend(pump(anchor, browser, now));
    }
    (now, to_trunk)
}

fn pcmu(seq: u16, ts: u32, fill: u8) -> Vec<u8> {
    Rtp {
        marker: false,
        payload_type: 0,
        sequence: seq,
        timestamp: ts,
        ssrc: 0x1234_5678,
        payload: &[fill; 160],
    }
    .to_bytes()
}

#[test]
fn a_browser_connects_and_audio_flows_both_ways_as_plain_rtp() {
    let start = Instant::now();
    let mut anchor = Anchor::new(addr(ANCHOR));
    let (mut browser, leg) = Browser::call(&mut anchor, start);
    let mut now = connect(&mut anchor, &mut browser, leg, start);

    // Browser -> trunk: SRTP in, plain RTP out with the same payload type, timestamp, payload.
    let mut at_trunk = Vec::new();
    for i in 0..10u16 {
        let mut api = browser.rtc.direct_api();
        let stream = api.stream_tx_by_mid(browser.mid, None).unwrap();
        let seq = SeqNo::from(u64::from(100 + i));
        stream.write_rtp(RtpWrite::new(Pt::from(0), seq, 160 * u32::from(i), now, vec![0x55; 160]));
        at_trunk.extend(pump(&mut anchor, &mut browser, now));
        now += Duration::from_millis(20);
        browser.rtc.handle_input(Input::Timeout(now)).unwrap();
        anchor.handle_timeout(now);
    }
    let (mut now, rest) = settle(&mut anchor, &mut browser, now);
    at_trunk.extend(rest);
    let rtp: Vec<Rtp<'_>> = at_trunk.iter().map(|b| Rtp::parse(b).unwrap()).collect();
    assert_eq!(rtp.len(), 10, "every packet reached the trunk");
    assert!(rtp.iter().all(|p| p.payload_type == 0 && p.payload == [0x55; 160]));
    assert_eq!(rtp[3].sequence, 103);
    assert_eq!(rtp[3].timestamp, 480);
    assert_eq!(anchor.counters(leg).unwrap().to_trunk, 10);

    // Trunk -> browser: plain RTP in (latching the trunk's address), SRTP out.
    for i in 0..10u16 {
        anchor.handle_trunk(now, leg, addr(TRUNK), &pcmu(7 + i, 1000 + 160 * u32::from(i), 0xaa));
        pump(&mut anchor, &mut browser, now);
        now += Duration::from_millis(20);
        browser.rtc.handle_input(Input::Timeout(now)).unwrap();
        anchor.handle_timeout(now);
    }
    let (now, _) = settle(&mut anchor, &mut browser, now);
    // The anchor sent every packet, in order, as SRTP.
    assert_eq!(browser.srtp_seqs, (7..17).collect::<Vec<u16>>());
    assert_eq!(anchor.counters(leg).unwrap().to_browser, 10);
    // The browser (str0m here) decrypts every one: SRTP keys and ROC agree.
    let seqs: Vec<u16> = browser.received.iter().map(|p| p.header.sequence_number).collect();
    assert_eq!(seqs, (7..17).collect::<Vec<u16>>());
    let first = &browser.received[0];
    assert_eq!(*first.header.payload_type, 0);
    assert_eq!(first.header.sequence_number, 7);
    assert_eq!(first.header.timestamp, 1000);
    assert_eq!(&*first.payload, &[0xaa; 160]);

    // After latching, a stranger's packets are dropped.
    let before = anchor.counters(leg).unwrap();
    anchor.handle_trunk(now, leg, addr("127.0.0.9:30000"), &pcmu(20, 9999, 0x11));
    settle(&mut anchor, &mut browser, now);
    assert_eq!(browser.received.len(), seqs.len());
    assert_eq!(anchor.counters(leg).unwrap().dropped, before.dropped + 1);

    anchor.remove(leg);
    assert!(anchor.is_closed(leg));
}

#[test]
fn garbage_is_ignored_and_harms_no_live_leg() {
    let start = Instant::now();
    let mut anchor = Anchor::new(addr(ANCHOR));
    let (mut browser, leg) = Browser::call(&mut anchor, start);
    let now = connect(&mut anchor, &mut browser, leg, start);

    // On the WebRTC address: nothing str0m can classify, or nothing any leg accepts.
    assert!(!anchor.handle_browser(now, addr("127.0.0.7:1"), b""));
    assert!(!anchor.handle_browser(now, addr("127.0.0.7:1"), &[0xff; 300]));
    assert!(!anchor.handle_browser(now, addr("127.0.0.7:1"), &pcmu(1, 1, 0)));
    assert_eq!(anchor.stray, 3);
    // On the trunk side: not RTP.
    anchor.handle_trunk(now, leg, addr(TRUNK), b"hello");
    anchor.handle_trunk(now, leg, addr(TRUNK), &[0x80; 5]);
    assert_eq!(anchor.counters(leg).unwrap().dropped, 2);
    // An unknown leg is not an error.
    anchor.handle_trunk(now, LegId(999), addr(TRUNK), &pcmu(1, 1, 0));

    // The call still works.
    anchor.handle_trunk(now, leg, addr(TRUNK), &pcmu(1, 160, 0x42));
    settle(&mut anchor, &mut browser, now);
    assert_eq!(browser.received.len(), 1);
    assert!(anchor.is_connected(leg));
}

#[test]
fn an_unreadable_offer_is_an_error_and_makes_no_leg() {
    let mut anchor = Anchor::new(addr(ANCHOR));
    let err =
        anchor.accept_offer(Instant::now(), "not sdp", None, &[SdpCodec::Pcmu], None).unwrap_err();
    assert!(matches!(err, MediaError::BadOffer(_)), "{err}");
    assert!(anchor.next_timeout().is_none());
}

#[test]
fn media_waits_for_the_connection() {
    let now = Instant::now();
    let mut anchor = Anchor::new(addr(ANCHOR));
    let (_browser, leg) = Browser::call(&mut anchor, now);
    assert!(!anchor.is_connected(leg));
    // Trunk audio before DTLS is up: dropped, not queued.
    anchor.handle_trunk(now, leg, addr(TRUNK), &pcmu(1, 160, 0));
    assert_eq!(anchor.counters(leg).unwrap().dropped, 1);
    assert!(anchor.next_timeout().is_some());
}

#[test]
fn a_trunk_packet_leaves_for_the_browser_at_once() {
    let start = Instant::now();
    let mut anchor = Anchor::new(addr(ANCHOR));
    let (mut browser, leg) = Browser::call(&mut anchor, start);
    let now = connect(&mut anchor, &mut browser, leg, start);
    settle(&mut anchor, &mut browser, now);
    // No timeout between the trunk's packet and the SRTP it becomes.
    anchor.handle_trunk(now, leg, addr(TRUNK), &pcmu(1, 160, 0x42));
    let out: Vec<Transmit> = std::iter::from_fn(|| anchor.poll_transmit()).collect();
    assert!(
        out.iter().any(|t| matches!(t, Transmit::Browser { bytes, .. } if bytes.len() > 160)),
        "{out:?}"
    );
}

/// The value of the first `a=NAME:` line of `sdp`.
fn attribute<'a>(sdp: &'a str, name: &str) -> &'a str {
    let prefix = format!("a={name}:");
    sdp.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("{sdp}"))
}

#[test]
fn the_edge_offers_the_browser_again_on_the_same_session_hold_resume_and_refresh() {
    let start = Instant::now();
    let mut anchor = Anchor::new(addr(ANCHOR));
    let (mut browser, leg) = Browser::call(&mut anchor, start);
    let first = anchor.legs.get_mut(&leg).unwrap().rtc.direct_api().local_ice_credentials();
    let now = connect(&mut anchor, &mut browser, leg, start);
    let (mut now, _) = settle(&mut anchor, &mut browser, now);

    let mut fingerprint = None;
    let mut version = 2;
    // Hold (the trunk's sendonly), resume, and a session refresh that changes nothing.
    for (direction, written) in [
        (SdpDirection::SendOnly, "a=sendonly"),
        (SdpDirection::SendRecv, "a=sendrecv"),
        (SdpDirection::SendRecv, "a=sendrecv"),
    ] {
        let offer = anchor.offer_again(leg, direction).unwrap();
        version += 1;
        assert!(offer.contains(&format!(" {version} IN IP4 ")), "o= version {version}: {offer}");
        assert!(offer.contains(written), "{offer}");
        assert!(offer.contains("a=setup:actpass") && offer.contains("a=ice-lite"), "{offer}");
        assert_eq!(attribute(&offer, "ice-ufrag"), first.ufrag, "the same ICE session");
        assert_eq!(attribute(&offer, "ice-pwd"), first.pass);
        let fp = attribute(&offer, "fingerprint").to_owned();
        assert_eq!(fingerprint.get_or_insert(fp.clone()), &fp, "the same DTLS session");
        assert_eq!(attribute(&offer, "mid"), browser.mid.to_string());
        let answer = browser
            .rtc
            .sdp_api()
            .accept_offer(str0m::change::SdpOffer::from_sdp_string(&offer).unwrap())
            .unwrap()
            .to_sdp_string();
        anchor.accept_answer(now, leg, &answer).unwrap();
        (now, _) = settle(&mut anchor, &mut browser, now);
        assert!(anchor.is_connected(leg) && browser.connected, "DTLS survived the re-offer");
    }

    // Audio both ways afterwards, without a new handshake.
    let before = anchor.counters(leg).unwrap();
    let received = browser.received.len();
    for i in 0..5u16 {
        anchor.handle_trunk(now, leg, addr(TRUNK), &pcmu(50 + i, 8000 + 160 * u32::from(i), 1));
        let mut api = browser.rtc.direct_api();
        let stream = api.stream_tx_by_mid(browser.mid, None).unwrap();
        let seq = SeqNo::from(u64::from(300 + i));
        stream.write_rtp(RtpWrite::new(Pt::from(0), seq, 160 * u32::from(i), now, vec![2; 160]));
        (now, _) = settle(&mut anchor, &mut browser, now);
    }
    let after = anchor.counters(leg).unwrap();
    assert_eq!(after.to_trunk - before.to_trunk, 5, "{after:?}");
    assert_eq!(after.to_browser - before.to_browser, 5, "{after:?}");
    assert!(browser.received.len() > received, "SRTP still decrypts");
}

#[test]
fn a_refused_new_offer_leaves_the_leg_as_it_was() {
    let start = Instant::now();
    let mut anchor = Anchor::new(addr(ANCHOR));
    let (mut browser, leg) = Browser::call(&mut anchor, start);
    let now = connect(&mut anchor, &mut browser, leg, start);
    let mid = anchor.legs[&leg].mid.unwrap();
    let direction = |a: &Anchor| a.legs[&leg].rtc.media(mid).unwrap().direction();
    assert_eq!(direction(&anchor), Direction::SendRecv);
    anchor.offer_again(leg, SdpDirection::Inactive).unwrap();
    anchor.withdraw_offer(leg);
    assert_eq!(direction(&anchor), Direction::SendRecv);
    // An answer that is not one: refused, and the leg as before.
    anchor.offer_again(leg, SdpDirection::SendOnly).unwrap();
    assert!(anchor.accept_answer(now, leg, "v=0\r\n").is_err());
    assert_eq!(direction(&anchor), Direction::SendRecv);
    // No offer pending: an answer is refused.
    assert!(anchor.accept_answer(now, leg, "v=0\r\n").is_err());
    assert!(anchor.is_connected(leg));
}

#[test]
fn the_origin_version_and_the_audio_mid_are_read_and_written_in_place() {
    let sdp = "v=0\r\no=str0m-0.25.0 123 2 IN IP4 0.0.0.0\r\ns=-\r\nm=video 9 X 96\r\n\
               a=mid:v\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:a0\r\n";
    let stamped = with_version(sdp, 7);
    assert!(stamped.starts_with("v=0\r\no=str0m-0.25.0 123 7 IN IP4 0.0.0.0\r\ns=-\r\n"));
    assert_eq!(stamped.len(), sdp.len());
    assert_eq!(audio_mid(sdp), Some(Mid::from("a0")));
    assert_eq!(audio_mid("v=0\r\nm=video 9 X 96\r\na=mid:v\r\n"), None);
}

/// The relayed RTP goes through the anchor's own SRTP once DTLS is up: str0m (the browser here)
/// decrypts what it sends and the anchor decrypts what str0m sends, across the 16-bit
/// sequence-number wrap both ways (rollover counter, RFC 3711 §3.3.1).
#[test]
fn srtp_keeps_the_rollover_counter_across_the_wrap_both_ways() {
    let start = Instant::now();
    let mut anchor = Anchor::new(addr(ANCHOR));
    let (mut browser, leg) = Browser::call(&mut anchor, start);
    let now = connect(&mut anchor, &mut browser, leg, start);
    let (mut now, _) = settle(&mut anchor, &mut browser, now);

    // Trunk -> browser: 65530 .. 65535, 0 .. 9.
    for i in 0..16u16 {
        let seq = 65_530u16.wrapping_add(i);
        anchor.handle_trunk(now, leg, addr(TRUNK), &pcmu(seq, 160 * u32::from(i), i as u8));
        pump(&mut anchor, &mut browser, now);
        now += Duration::from_millis(20);
        browser.rtc.handle_input(Input::Timeout(now)).unwrap();
        anchor.handle_timeout(now);
    }
    let (mut now, _) = settle(&mut anchor, &mut browser, now);
    let got: Vec<(u64, u8)> = browser.received.iter().map(|p| (*p.seq_no, p.payload[0])).collect();
    let want: Vec<(u64, u8)> = (0..16u64).map(|i| (65_530 + i, i as u8)).collect();
    assert_eq!(got, want, "str0m decrypts every packet, the index past 65535 included");
    let ssrc = browser.received[0].header.ssrc;
    assert!(browser.received.iter().all(|p| p.header.ssrc == ssrc), "one stream");
    assert_eq!(anchor.legs[&leg].relay.as_ref().map(|r| r.ssrc), Some(*ssrc), "the anchor's SRTP");

    // Browser -> trunk, the same across the wrap.
    let mut at_trunk = Vec::new();
    for i in 0..16u64 {
        let mut api = browser.rtc.direct_api();
        let stream = api.stream_tx_by_mid(browser.mid, None).unwrap();
        let seq = SeqNo::from(65_530 + i);
        stream.write_rtp(RtpWrite::new(Pt::from(0), seq, 160 * i as u32, now, vec![i as u8; 160]));
        at_trunk.extend(pump(&mut anchor, &mut browser, now));
        now += Duration::from_millis(20);
        browser.rtc.handle_input(Input::Timeout(now)).unwrap();
        anchor.handle_timeout(now);
    }
    let (_, rest) = settle(&mut anchor, &mut browser, now);
    at_trunk.extend(rest);
    let got: Vec<(u16, u8)> = at_trunk
        .iter()
        .map(|b| Rtp::parse(b).unwrap())
        .map(|p| (p.sequence, p.payload[0]))
        .collect();
    let want: Vec<(u16, u8)> = (0..16u16).map(|i| (65_530u16.wrapping_add(i), i as u8)).collect();
    assert_eq!(got, want);
    assert_eq!(anchor.counters(leg).unwrap().to_trunk, 16);
}

/// SRTP from the browser that was already taken (a replay) or that does not authenticate is
/// dropped and counted; the call goes on.
#[test]
fn a_replayed_or_forged_srtp_packet_never_reaches_the_trunk() {
    let start = Instant::now();
    let mut anchor = Anchor::new(addr(ANCHOR));
    let (mut browser, leg) = Browser::call(&mut anchor, start);
    let now = connect(&mut anchor, &mut browser, leg, start);
    let (now, _) = settle(&mut anchor, &mut browser, now);

    // One packet from the browser, caught on the wire.
    let packet = srtp_from_browser(&mut browser, now);
    let before = anchor.counters(leg).unwrap();
    assert!(anchor.handle_browser(now, addr(BROWSER), &packet));
    assert!(anchor.handle_browser(now, addr(BROWSER), &packet), "taken, and dropped");
    let mut forged = packet.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x80;
    forged[3] = forged[3].wrapping_add(1);
    assert!(anchor.handle_browser(now, addr(BROWSER), &forged));
    let to_trunk: Vec<Transmit> = std::iter::from_fn(|| anchor.poll_transmit())
        .filter(|t| matches!(t, Transmit::Trunk { .. }))
        .collect();
    assert_eq!(to_trunk.len(), 1, "{to_trunk:?}");
    let after = anchor.counters(leg).unwrap();
    assert_eq!(after.to_trunk, before.to_trunk + 1);
    assert_eq!(after.dropped, before.dropped + 2);
    assert!(anchor.is_connected(leg));
}

/// The next SRTP packet the browser sends: one frame written, its datagram taken off the wire
/// (what else it sends, RTCP, is not delivered).
fn srtp_from_browser(browser: &mut Browser, now: Instant) -> Vec<u8> {
    let mut api = browser.rtc.direct_api();
    let stream = api.stream_tx_by_mid(browser.mid, None).unwrap();
    stream.write_rtp(RtpWrite::new(Pt::from(0), SeqNo::from(40), 0, now, vec![0x33; 160]));
    browser.rtc.handle_input(Input::Timeout(now)).unwrap();
    loop {
        match browser.rtc.poll_output().unwrap() {
            Output::Transmit(t) if is_srtp(&t.contents) => return t.contents.to_vec(),
            Output::Timeout(_) => panic!("the browser sent no SRTP"),
            _ => {}
        }
    }
}

/// RTCP of a call in which both sides send audio for `seconds`, the trunk none: what the
/// browser (str0m) reads, and what reaches the trunk, from the anchor.
fn call_with_audio(seconds: u64) -> (Anchor, Browser, LegId, Instant) {
    call_with_loss(seconds, u64::MAX)
}

/// [`call_with_audio`] with every `nth` packet of the browser's never sent (a sequence gap).
fn call_with_loss(seconds: u64, nth: u64) -> (Anchor, Browser, LegId, Instant) {
    let start = Instant::now();
    let mut anchor = Anchor::new(addr(ANCHOR));
    anchor.set_wall_clock(start, Duration::from_secs(1_764_000_000));
    let (mut browser, leg) = Browser::call(&mut anchor, start);
    let mut now = connect(&mut anchor, &mut browser, leg, start);
    for i in 0..(seconds * 50) {
        let seq = 1000 + i as u16;
        let ts = 160 * i as u32;
        anchor.handle_trunk(now, leg, addr(TRUNK), &pcmu(seq, ts, 0xaa));
        let mut api = browser.rtc.direct_api();
        let stream = api.stream_tx_by_mid(browser.mid, None).unwrap();
        let write = RtpWrite::new(Pt::from(0), SeqNo::from(500 + i), ts, now, vec![0x55; 160]);
        if (i + 1) % nth != 0 {
            stream.write_rtp(write);
        }
        for _ in 0..4 {
            pump(&mut anchor, &mut browser, now);
            now += Duration::from_millis(5);
            browser.rtc.handle_input(Input::Timeout(now)).unwrap();
            anchor.handle_timeout(now);
        }
    }
    let (now, _) = settle(&mut anchor, &mut browser, now);
    (anchor, browser, leg, now)
}

#[test]
fn the_anchor_reports_to_the_browser_what_it_relayed_and_received() {
    let (anchor, mut browser, leg, _) = call_with_audio(8);
    let leg_ssrc = *browser.received[0].header.ssrc;
    let browser_ssrc =
        *browser.rtc.direct_api().stream_tx_by_mid(browser.mid, None).unwrap().ssrc();
    // Every report the browser got is the anchor's SR for the stream it receives (str0m's,
    // which counted nothing, never leaves), and it came every 2.5-7.5 s.
    let reports: Vec<(Instant, &str0m::rtp::rtcp::SenderReport)> = browser
        .rtcp_received
        .iter()
        .filter_map(|(at, r)| match r {
            Rtcp::SenderReport(sr) => Some((*at, sr)),
            Rtcp::ReceiverReport(rr) => panic!("a receiver report from the anchor: {rr:?}"),
            _ => None,
        })
        .collect();
    assert!((1..=4).contains(&reports.len()), "{:?}", browser.rtcp_received);
    for pair in reports.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(2400) && gap <= Duration::from_millis(7600),
            "{gap:?}"
        );
    }
    let (at, last) = reports.last().unwrap();
    let info = &last.sender_info;
    assert_eq!(*info.ssrc, leg_ssrc);
    // Everything relayed before the report, counted: packets and payload octets.
    let sent = browser.received.iter().filter(|p| p.timestamp <= *at).count() as u32;
    assert!(info.sender_packet_count.abs_diff(sent) <= 1, "{} vs {sent}", info.sender_packet_count);
    assert_eq!(info.sender_octet_count, 160 * info.sender_packet_count);
    // The NTP time is the wall clock given; the RTP time goes on from the last packet's.
    let wall = info.ntp_time.duration_since(std::time::UNIX_EPOCH).unwrap();
    assert!(wall > Duration::from_secs(1_764_000_000) && wall < Duration::from_secs(1_764_000_020));
    // (A report may come after the audio stopped: the time since the last packet counts.)
    let rtp = info.rtp_time.numer() as u32;
    let last_packet = browser.received.iter().rev().find(|p| p.timestamp <= *at).unwrap();
    let since =
        u32::try_from(at.saturating_duration_since(last_packet.timestamp).as_millis()).unwrap() * 8;
    let expected = 160 * (info.sender_packet_count - 1) + since;
    assert!(rtp.abs_diff(expected) <= 160, "{rtp} vs {expected}");
    // The report block: the browser's stream, no loss, its highest sequence number.
    let block = &last.reports[0];
    assert_eq!(*block.ssrc, browser_ssrc);
    assert_eq!((block.fraction_lost, block.packets_lost), (0, 0));
    assert!((500..900).contains(&block.max_seq), "{}", block.max_seq);
    assert!(block.jitter < 80, "{}", block.jitter);
    let c = anchor.counters(leg).unwrap();
    assert_eq!(c.rtcp_to_browser, reports.len() as u64);
}

#[test]
fn the_browsers_rtcp_reaches_the_trunk_in_the_clear_about_the_trunks_stream() {
    let (anchor, mut browser, leg, _) = call_with_audio(8);
    let browser_ssrc =
        *browser.rtc.direct_api().stream_tx_by_mid(browser.mid, None).unwrap().ssrc();
    assert!(!browser.rtcp_at_trunk.is_empty(), "the browser's reports went on");
    let rtcp_port = SocketAddr::new(addr(TRUNK).ip(), addr(TRUNK).port() + 1);
    let mut blocks = 0;
    for (to, bytes) in &browser.rtcp_at_trunk {
        assert_eq!(*to, rtcp_port, "RFC 3550 §11: the port above RTP");
        let packets = rtcp::packets(bytes).expect("valid plain RTCP");
        for p in packets {
            assert!(matches!(p.kind, rtcp::SR | rtcp::RR | rtcp::SDES | rtcp::BYE), "{p:?}");
            match Rtcp::try_from(p.bytes).unwrap() {
                Rtcp::SenderReport(sr) => {
                    assert_eq!(*sr.sender_info.ssrc, browser_ssrc);
                    for r in sr.reports.iter() {
                        assert_eq!(*r.ssrc, 0x1234_5678, "about the trunk's own SSRC");
                        blocks += 1;
                    }
                }
                Rtcp::ReceiverReport(rr) => {
                    for r in rr.reports.iter() {
                        assert_eq!(*r.ssrc, 0x1234_5678, "about the trunk's own SSRC");
                        blocks += 1;
                    }
                }
                _ => {}
            }
        }
    }
    assert!(blocks > 0, "{:?}", browser.rtcp_at_trunk);
    let c = anchor.counters(leg).unwrap();
    assert_eq!(c.rtcp_to_trunk, browser.rtcp_at_trunk.len() as u64);
}

#[test]
fn the_trunks_rtcp_reaches_the_browser_as_srtcp_and_replaces_the_anchors() {
    let (mut anchor, mut browser, leg, mut now) = call_with_audio(3);
    let leg_ssrc = *browser.received[0].header.ssrc;
    let from = SocketAddr::new(addr(TRUNK).ip(), addr(TRUNK).port() + 1);
    let mut sr = Vec::new();
    let info = rtcp::SenderInfo { ntp: 77 << 32, rtp: 4242, packets: 4242, octets: 99 };
    let block = rtcp::ReportBlock { ssrc: 0xdead, highest: 5, ..Default::default() };
    rtcp::write_report(0x1234_5678, Some(info), Some(block), "trunk", &mut sr);
    let before = browser.rtcp_received.len();
    anchor.handle_trunk_rtcp(now, leg, from, &sr);
    // A stranger's RTCP, after the trunk's latched: dropped.
    anchor.handle_trunk_rtcp(now, leg, addr("127.0.0.9:1"), &sr);
    // Garbage from the trunk: dropped.
    anchor.handle_trunk_rtcp(now, leg, from, b"not rtcp");
    pump(&mut anchor, &mut browser, now);
    let got: Vec<&Rtcp> = browser.rtcp_received[before..].iter().map(|(_, r)| r).collect();
    let [Rtcp::SenderReport(relayed), Rtcp::SourceDescription(sdes)] = got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(*relayed.sender_info.ssrc, leg_ssrc, "the trunk's SSRC as the leg's");
    assert_eq!(relayed.sender_info.sender_packet_count, 4242);
    assert_eq!(*relayed.reports[0].ssrc, 0xdead);
    assert_eq!(*sdes.reports[0].ssrc, leg_ssrc);
    assert_eq!(anchor.counters(leg).unwrap().dropped, 2);
    // For the next 15 s the anchor makes no report of its own.
    let before = browser.rtcp_received.len();
    for _ in 0..2000 {
        now += Duration::from_millis(5);
        browser.rtc.handle_input(Input::Timeout(now)).unwrap();
        anchor.handle_timeout(now);
        pump(&mut anchor, &mut browser, now);
    }
    let own = browser.rtcp_received[before..]
        .iter()
        .filter(|(_, r)| matches!(r, Rtcp::SenderReport(_) | Rtcp::ReceiverReport(_)))
        .count();
    assert_eq!(own, 0, "{:?}", &browser.rtcp_received[before..]);
    // The trunk stays silent: after 15 s the anchor reports again, and as nothing was relayed
    // for two intervals, as a receiver (RFC 3550 §6.4). Its interval is 5 s ± 50 %, drawn at
    // random: the next report may come up to 7.5 s after the silence ends, so wait 20 s.
    for _ in 0..4000 {
        now += Duration::from_millis(5);
        browser.rtc.handle_input(Input::Timeout(now)).unwrap();
        anchor.handle_timeout(now);
        pump(&mut anchor, &mut browser, now);
    }
    let again: Vec<&Rtcp> = browser.rtcp_received[before..]
        .iter()
        .map(|(_, r)| r)
        .filter(|r| matches!(r, Rtcp::SenderReport(_) | Rtcp::ReceiverReport(_)))
        .collect();
    assert!(!again.is_empty());
    for r in again {
        let Rtcp::ReceiverReport(rr) = r else { panic!("{r:?}") };
        assert_eq!(*rr.sender_ssrc, leg_ssrc);
    }
}

#[test]
fn the_anchors_report_block_counts_the_browsers_lost_packets() {
    // Every 10th packet of the browser's never sent: 10 % lost, in every interval.
    let (_, browser, _, _) = call_with_loss(8, 10);
    let blocks: Vec<_> = browser
        .rtcp_received
        .iter()
        .filter_map(|(_, r)| match r {
            Rtcp::SenderReport(sr) => sr.reports.iter().next().cloned(),
            _ => None,
        })
        .collect();
    assert!(!blocks.is_empty());
    for b in &blocks {
        // 10 % is 25.6 in 256ths; the interval's edges move it by a packet or so.
        assert!((20..=32).contains(&b.fraction_lost), "{b:?}");
        let expected = b.max_seq - 500 + 1;
        assert!(b.packets_lost.abs_diff(expected / 10) <= 1, "{b:?}");
    }
}

/// A call on hold (no audio either way, RFC 3264 §8.4) is alive as long as RTCP and the
/// browser's consent checks go on: the media timeout must not end it.
#[test]
fn a_held_call_without_audio_stays_alive() {
    let (mut anchor, mut browser, leg, mut now) = call_with_audio(1);
    let held_at = now;
    // 40 s without RTP either way: the trunk sends RTCP every 5 s, the browser its own
    // reports and consent checks (str0m does both as Chromium does).
    for step in 0..8_000u32 {
        now += Duration::from_millis(5);
        if step % 1_000 == 0 {
            let mut sr = Vec::new();
            let info = rtcp::SenderInfo { ntp: 0, rtp: 0, packets: 50, octets: 8_000 };
            rtcp::write_report(0x1234_5678, Some(info), None, "trunk", &mut sr);
            anchor.handle_trunk(now, leg, addr(TRUNK), &sr);
        }
        browser.rtc.handle_input(Input::Timeout(now)).unwrap();
        anchor.handle_timeout(now);
        pump(&mut anchor, &mut browser, now);
    }
    let last = anchor.last_media(leg).unwrap();
    assert!(last > held_at + Duration::from_secs(30), "the held call looked dead");
    assert!(now.saturating_duration_since(last) < Duration::from_secs(10));
    assert!(!anchor.is_closed(leg));
}
