//! `webrtc-load`: N browsers' worth of WebRTC calls through the edge, for the media benchmark
//! (issue 7). SIPp cannot do ICE or DTLS-SRTP; this plays the browsers.
//!
//! Each call is what Chromium does: a str0m peer (full ICE, controlling, the DTLS client, PCMU
//! on `UDP/TLS/RTP/SAVPF`, rtcp-mux) on a UDP socket of its own, an INVITE with its offer over
//! UDP from a trusted address (no challenge), the edge's answer accepted, then 20 ms PCMU
//! frames sent for `--hold` seconds while every packet that comes back (a SIPp UAS with
//! `-rtp_echo` behind the edge) is counted, then BYE. Calls start at `--rate` per second.
//!
//! ```text
//! cargo run --release --example webrtc-load -- --edge 127.0.0.1:5080 --from 127.0.0.2 \
//!     --calls 200 --rate 50 --hold 30 --to service
//! ```
//!
//! It prints one line per second (calls up, DTLS connected, packets sent and received) and a
//! last summary line `result calls=.. up=.. connected=.. sent=.. received=.. loss=..%`. Loss
//! counts packets that did not come back the whole way (edge, SIPp echo, edge again).

// A benchmark tool: a panic is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
struct Args {
    edge: SocketAddr,
    from: IpAddr,
    calls: u32,
    rate: f64,
    hold: Duration,
    to: String,
}

fn args() -> Args {
    let mut a = Args {
        edge: "127.0.0.1:5080".parse().unwrap(),
        from: "127.0.0.2".parse().unwrap(),
        calls: 10,
        rate: 10.0,
        hold: Duration::from_secs(20),
        to: "service".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--edge" => a.edge = v.parse().expect("--edge IP:PORT"),
            "--from" => a.from = v.parse().expect("--from IP"),
            "--calls" => a.calls = v.parse().expect("--calls N"),
            "--rate" => a.rate = v.parse().expect("--rate CALLS_PER_SECOND"),
            "--hold" => a.hold = Duration::from_secs(v.parse().expect("--hold SECONDS")),
            "--to" => a.to = v,
            _ => panic!("unknown option {k}"),
        }
    }
    a
}

#[derive(Debug, Default)]
struct Totals {
    up: AtomicU64,
    connected: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    failed: AtomicU64,
}

/// The SIP side: one socket, responses handed to their call by Call-ID.
struct Sip {
    socket: UdpSocket,
    calls: Mutex<HashMap<String, mpsc::UnboundedSender<sip::Response>>>,
}

async fn sip_reader(sip: Arc<Sip>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = sip.socket.recv_from(&mut buf).await else { continue };
        let bytes = Bytes::copy_from_slice(&buf[..n]);
        match sip::Message::parse(bytes, sip::Framing::Datagram) {
            Ok(sip::Message::Response(r)) => {
                let id = r.headers().call_id().unwrap_or_default().to_owned();
                if let Some(tx) = sip.calls.lock().unwrap().get(&id) {
                    let _ = tx.send(r);
                }
            }
            Ok(sip::Message::Request(req)) => {
                // A BYE or OPTIONS from the edge: 200, nothing else to do.
                if *req.method() != sip::Method::Ack {
                    let r = sip::Response::for_request(&req, 200, "OK");
                    let _ = sip.socket.send_to(&r.to_bytes(), from).await;
                }
            }
            Err(_) => {}
        }
    }
}

fn browser(local: SocketAddr) -> (Rtc, Mid, String, str0m::change::SdpPendingOffer) {
    let mut rtc = RtcConfig::new()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_pcmu(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    (rtc, mid, offer.to_sdp_string(), pending)
}

fn body_of(r: &sip::Response) -> String {
    String::from_utf8_lossy(r.body()).into_owned()
}

async fn call(i: u32, a: Arc<Args>, sip: Arc<Sip>, totals: Arc<Totals>) {
    let media = UdpSocket::bind((a.from, 0)).await.unwrap();
    let local = media.local_addr().unwrap();
    let (mut rtc, mid, offer, pending) = browser(local);
    let me = sip.socket.local_addr().unwrap();
    let call_id = format!("wl-{i}-{}@{}", std::process::id(), a.from);
    let (tx, mut rx) = mpsc::unbounded_channel();
    sip.calls.lock().unwrap().insert(call_id.clone(), tx);
    let ruri = format!("sip:{}@{}", a.to, a.edge);
    let head = |method: &str, cseq: u32, to_tag: &str, branch: &str| {
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:load{i}@{}>;tag=f{i}\r\nTo: <sip:{}@{}>{to_tag}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:load{i}@{me}>\r\n",
            a.from, a.to, a.edge
        )
    };
    let invite = format!(
        "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        head("INVITE", 1, "", &format!("inv{i}")),
        offer.len()
    );
    // INVITE, retransmitted until something answers (RFC 3261 Timer A, roughly).
    let mut answer = None;
    let give_up = Instant::now() + Duration::from_secs(32);
    let mut next_send = Instant::now();
    while answer.is_none() && Instant::now() < give_up {
        if Instant::now() >= next_send {
            let _ = sip.socket.send_to(invite.as_bytes(), a.edge).await;
            next_send = Instant::now() + Duration::from_millis(500);
        }
        match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            Ok(Some(r)) if r.status() >= 200 => answer = Some(r),
            Ok(Some(_)) => next_send = give_up,
            _ => {}
        }
    }
    let Some(ok) = answer.filter(|r| (200..300).contains(&r.status())) else {
        totals.failed.fetch_add(1, Ordering::Relaxed);
        sip.calls.lock().unwrap().remove(&call_id);
        return;
    };
    let to_tag = ok
        .headers()
        .to()
        .ok()
        .and_then(|t| t.tag().map(|t| format!(";tag={t}")))
        .unwrap_or_default();
    let routes: Vec<String> = ok
        .headers()
        .get_all(sip::HeaderName::RecordRoute)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let route: String = routes.iter().rev().map(|r| format!("Route: {r}\r\n")).collect();
    let ack =
        format!("{}{route}Content-Length: 0\r\n\r\n", head("ACK", 1, &to_tag, &format!("ack{i}")));
    let _ = sip.socket.send_to(ack.as_bytes(), a.edge).await;
    let answer = SdpAnswer::from_sdp_string(&body_of(&ok)).expect("the edge's SDP answer");
    rtc.sdp_api().accept_answer(pending, answer).expect("answer accepted");
    totals.up.fetch_add(1, Ordering::Relaxed);

    // Media: 20 ms PCMU frames out, every packet back counted.
    let payload = vec![0xffu8; 160];
    let mut buf = vec![0u8; 2048];
    let mut connected = false;
    let mut seq: u64 = 1;
    let mut ts: u32 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let end = Instant::now() + a.hold;
    let mut next_timeout = Instant::now();
    while Instant::now() < end {
        loop {
            match rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = media.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Timeout(t)) => {
                    next_timeout = t;
                    break;
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        connected = true;
                        totals.connected.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::RtpPacket(_) => {
                        totals.received.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                },
                Err(e) => {
                    eprintln!("call {i}: {e}");
                    break;
                }
            }
        }
        let wake = next_timeout.max(Instant::now()).min(end);
        tokio::select! {
            r = media.recv_from(&mut buf) => {
                if let Ok((n, source)) = r
                    && let Ok(rx) = Receive::new(Protocol::Udp, source, local, &buf[..n])
                {
                    let _ = rtc.handle_input(Input::Receive(Instant::now(), rx));
                }
            }
            _ = tick.tick() => {
                if connected
                    && let Some(stream) = rtc.direct_api().stream_tx_by_mid(mid, None)
                {
                    let w = RtpWrite::new(Pt::from(0), SeqNo::from(seq), ts, Instant::now(), payload.clone());
                    stream.write_rtp(w);
                    seq += 1;
                    ts = ts.wrapping_add(160);
                    totals.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
    let bye =
        format!("{}{route}Content-Length: 0\r\n\r\n", head("BYE", 2, &to_tag, &format!("bye{i}")));
    let _ = sip.socket.send_to(bye.as_bytes(), a.edge).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
    sip.calls.lock().unwrap().remove(&call_id);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = Arc::new(args());
    let sip = Arc::new(Sip {
        socket: UdpSocket::bind((a.from, 0)).await.unwrap(),
        calls: Mutex::new(HashMap::new()),
    });
    tokio::spawn(sip_reader(sip.clone()));
    let totals = Arc::new(Totals::default());
    let started = Instant::now();
    let reporter = {
        let totals = totals.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(1));
            loop {
                t.tick().await;
                println!(
                    "t={:>4}s up={} connected={} sent={} received={} failed={}",
                    started.elapsed().as_secs(),
                    totals.up.load(Ordering::Relaxed),
                    totals.connected.load(Ordering::Relaxed),
                    totals.sent.load(Ordering::Relaxed),
                    totals.received.load(Ordering::Relaxed),
                    totals.failed.load(Ordering::Relaxed),
                );
            }
        })
    };
    let gap = Duration::from_secs_f64(1.0 / a.rate.max(0.01));
    let mut tasks = Vec::new();
    for i in 0..a.calls {
        tasks.push(tokio::spawn(call(i, a.clone(), sip.clone(), totals.clone())));
        tokio::time::sleep(gap).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    reporter.abort();
    let (sent, received) =
        (totals.sent.load(Ordering::Relaxed), totals.received.load(Ordering::Relaxed));
    let loss = if sent == 0 { 100.0 } else { 100.0 * (1.0 - received as f64 / sent as f64) };
    println!(
        "result calls={} up={} connected={} sent={sent} received={received} loss={loss:.3}%",
        a.calls,
        totals.up.load(Ordering::Relaxed),
        totals.connected.load(Ordering::Relaxed),
    );
}
