//! A browser agent for the media anchor's black-box tests (tests/late_offer.rs,
//! tests/reoffer.rs): SIP over WebSocket as JsSIP speaks it (registration with digest, calls,
//! responses, in-dialog requests), and WebRTC from str0m on a real UDP socket ([`Phone`]: ICE,
//! DTLS-SRTP, a PCMU frame every 20 ms toward the edge's WebRTC port) that takes new offers
//! and answers while its media runs, as a browser's `RTCPeerConnection` does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::Edge;
use super::ua::header;

/// The browser's Contact (what JsSIP registers).
pub const CONTACT: &str = "<sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws>";

/// A second browser of alice's ([`register_alice_as`]): its Contact and instance.
pub const CONTACT_2: &str = "<sip:x9c4m2pq@p7d2w5k1n8b3.invalid;transport=ws>";
pub const INSTANCE_2: &str = "0b7d6c1e-9a2f-4c3b-8e5d-1f4a2b6c9d70";

pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

// ---- SIP over WebSocket -----------------------------------------------------------------

/// Registers alice (password "secret") over WebSocket as JsSIP does (challenge, answer, 200).
pub async fn register_alice(edge: &Edge) -> Ws {
    register_alice_as(edge, CONTACT, "6f1c2b9e-3d4a-4e8b-9c1f-2a7d5e0b8c43").await
}

/// [`register_alice`] from another browser: its own Contact and instance (RFC 5626), so that
/// alice has one binding per browser and her calls fork to each.
pub async fn register_alice_as(edge: &Edge, contact: &str, instance: &str) -> Ws {
    use sip::digest::{Challenge, respond};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://{}/ws", edge.web);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let stream = TcpStream::connect(edge.web).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:localhost SIP/2.0\r\n\
Via: SIP/2.0/WS k3vq8d0h2m1a.invalid;branch=z9hG4bKreg{cseq}\r\n\
Max-Forwards: 69\r\n\
To: <sip:alice@localhost>\r\n\
From: <sip:alice@localhost>;tag=regtag\r\n\
Call-ID: reg-{instance}\r\n\
CSeq: {cseq} REGISTER\r\n\
{auth}Contact: {contact};+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:{instance}>\";expires=600\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    ws_send(&mut ws, register(1, "")).await;
    let reply = ws_recv_until(&mut ws, "SIP/2.0 401").await;
    let challenge = reply.lines().find_map(|l| l.strip_prefix("WWW-Authenticate: ")).unwrap();
    let challenge = Challenge::parse(challenge).unwrap();
    let auth = respond(&challenge, "alice", "secret", "REGISTER", "sip:localhost", "c1", 1);
    ws_send(&mut ws, register(2, &format!("Authorization: {auth}\r\n"))).await;
    let reply = ws_recv_until(&mut ws, "SIP/2.0 ").await;
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    ws
}

pub async fn ws_send(ws: &mut Ws, msg: String) {
    ws.send(Message::text(msg)).await.unwrap();
}

/// The next SIP message within 10 s.
pub async fn ws_recv(ws: &mut Ws) -> String {
    ws_recv_until(ws, "").await
}

/// The next SIP message starting with `prefix` within 10 s (others are skipped).
pub async fn ws_recv_until(ws: &mut Ws, prefix: &str) -> String {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with(prefix) => return t.to_string(),
                Some(Ok(_)) => {}
                other => panic!("the WebSocket ended: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {prefix:?} over the WebSocket"))
}

/// A message's body (empty without one).
pub fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The browser's answer to a request from the edge, with `sdp` as its body if any.
pub fn ws_response(req: &str, status: u16, sdp: Option<&str>) -> String {
    ws_response_with(req, status, "", sdp)
}

/// [`ws_response`] with more header lines (`extra`, each ending in CRLF).
pub fn ws_response_with(req: &str, status: u16, extra: &str, sdp: Option<&str>) -> String {
    ws_response_as(req, status, extra, sdp, "b-tag", CONTACT)
}

/// [`ws_response_with`] from a browser whose tag and Contact are `tag` and `contact` (another
/// binding of alice's, see [`register_alice_as`]).
pub fn ws_response_as(
    req: &str,
    status: u16,
    extra: &str,
    sdp: Option<&str>,
    tag: &str,
    contact: &str,
) -> String {
    let req = super::ua::parse_request(req);
    let reason = match status {
        180 => "Ringing",
        183 => "Session Progress",
        487 => "Request Terminated",
        _ => "OK",
    };
    let mut r = sip::Response::for_request(&req, status, reason);
    r.set_to_tag(tag);
    for rr in req.headers().get_all(sip::HeaderName::RecordRoute) {
        r.headers_mut().push(sip::HeaderName::RecordRoute, bytes::Bytes::copy_from_slice(rr));
    }
    r.headers_mut().push(sip::HeaderName::Contact, contact.to_owned());
    if let Some(sdp) = sdp {
        r.set_body(Some("application/sdp"), bytes::Bytes::from(sdp.to_owned()));
    }
    let text = String::from_utf8(r.to_bytes().to_vec()).unwrap();
    let (first, rest) = text.split_once("\r\n").unwrap();
    format!("{first}\r\n{extra}{rest}")
}

/// The browser's initial INVITE to `user` (CSeq `cseq`, with `auth` headers), with `sdp` as
/// its body if any.
pub fn ws_invite(call: &str, user: &str, cseq: u32, auth: &str, sdp: Option<&str>) -> String {
    let (ct, body) = match sdp {
        Some(s) => ("Content-Type: application/sdp\r\n", s),
        None => ("", ""),
    };
    format!(
        "INVITE sip:{user}@localhost SIP/2.0\r\n\
Via: SIP/2.0/WS k3vq8d0h2m1a.invalid;branch=z9hG4bK{call}{cseq}\r\n\
Max-Forwards: 69\r\n\
From: <sip:alice@localhost>;tag=a-{call}\r\n\
To: <sip:{user}@localhost>\r\n\
Call-ID: {call}\r\n\
CSeq: {cseq} INVITE\r\n\
Contact: {CONTACT}\r\n\
{auth}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// alice calls `user` as JsSIP does: the INVITE, the edge's 407 (acknowledged), the INVITE
/// again with her credentials (CSeq 2).
pub async fn ws_call(ws: &mut Ws, call: &str, user: &str, sdp: Option<&str>) {
    use sip::digest::{Challenge, respond};
    ws_send(ws, ws_invite(call, user, 1, "", sdp)).await;
    let reply = ws_recv_until(ws, "SIP/2.0 407").await;
    let ack = format!(
        "ACK sip:{user}@localhost SIP/2.0\r\n\
Via: SIP/2.0/WS k3vq8d0h2m1a.invalid;branch=z9hG4bK{call}1\r\n\
Max-Forwards: 69\r\n\
From: <sip:alice@localhost>;tag=a-{call}\r\n\
To: {}\r\n\
Call-ID: {call}\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n",
        header(&reply, "To")[0]
    );
    ws_send(ws, ack).await;
    let challenge = reply.lines().find_map(|l| l.strip_prefix("Proxy-Authenticate: ")).unwrap();
    let challenge = Challenge::parse(challenge).unwrap();
    let uri = format!("sip:{user}@localhost");
    let auth = respond(&challenge, "alice", "secret", "INVITE", &uri, "c2", 1);
    ws_send(ws, ws_invite(call, user, 2, &format!("Proxy-Authorization: {auth}\r\n"), sdp)).await;
}

/// A request of the browser in the dialog its INVITE's 200 `ok` set up (RFC 3261 §12.2.1.1:
/// the route set is the Record-Route reversed, the Request-URI the remote Contact).
pub fn ws_in_dialog(ok: &str, method: &str, cseq: u32, sdp: Option<&str>) -> String {
    let contact = header(ok, "Contact")[0];
    let uri = contact.trim_start_matches('<').split('>').next().unwrap();
    let route: String =
        header(ok, "Record-Route").iter().rev().map(|r| format!("Route: {r}\r\n")).collect();
    let (ct, body) = match sdp {
        Some(s) => ("Content-Type: application/sdp\r\n", s),
        None => ("", ""),
    };
    // A target refresh (RFC 3261 §12.2; RFC 3311 §5.1) names the browser's Contact again.
    let contact = match method {
        "INVITE" | "UPDATE" => format!("Contact: {CONTACT}\r\n"),
        _ => String::new(),
    };
    format!(
        "{method} {uri} SIP/2.0\r\n\
Via: SIP/2.0/WS k3vq8d0h2m1a.invalid;branch=z9hG4bK{method}{cseq}x\r\n\
{route}Max-Forwards: 69\r\n\
From: {}\r\n\
To: {}\r\n\
Call-ID: {}\r\n\
CSeq: {cseq} {method}\r\n\
{contact}{ct}Content-Length: {}\r\n\r\n{body}",
        header(ok, "From")[0],
        header(ok, "To")[0],
        header(ok, "Call-ID")[0],
        body.len()
    )
}

/// A request of the called browser (tag `b-tag`) in the early or confirmed dialog of the
/// INVITE `invite` it received (RFC 3261 §12.1.1: the route set is the Record-Route in order,
/// the Request-URI the caller's Contact).
pub fn ws_callee_request(invite: &str, method: &str, cseq: u32, sdp: Option<&str>) -> String {
    let contact = header(invite, "Contact")[0];
    let uri = contact.trim_start_matches('<').split('>').next().unwrap();
    let route: String =
        header(invite, "Record-Route").iter().map(|r| format!("Route: {r}\r\n")).collect();
    let (ct, body) = match sdp {
        Some(s) => ("Content-Type: application/sdp\r\n", s),
        None => ("", ""),
    };
    format!(
        "{method} {uri} SIP/2.0\r\n\
Via: SIP/2.0/WS k3vq8d0h2m1a.invalid;branch=z9hG4bKb{method}{cseq}\r\n\
{route}Max-Forwards: 69\r\n\
From: {};tag=b-tag\r\n\
To: {}\r\n\
Call-ID: {}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: {CONTACT}\r\n\
{ct}Content-Length: {}\r\n\r\n{body}",
        header(invite, "To")[0],
        header(invite, "From")[0],
        header(invite, "Call-ID")[0],
        body.len()
    )
}

// ---- the browser's WebRTC: str0m on a real UDP socket ----------------------------------

/// A browser's WebRTC stack: PCMU, PCMA and telephone-event at 101, one host candidate.
pub async fn browser_rtc() -> (Rtc, UdpSocket) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut config = RtcConfig::new()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .clear_codecs()
        .enable_pcmu(true, false)
        .enable_pcma(true, false);
    config.codec_config().add_config(
        Pt::from(101),
        None,
        Codec::Tele,
        Frequency::EIGHT_KHZ,
        None,
        FormatParams::parse_line("0-16"),
    );
    let mut rtc = config.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(sock.local_addr().unwrap(), "udp").unwrap());
    (rtc, sock)
}

/// The browser answers an offer from the edge.
pub fn answer_offer(rtc: &mut Rtc, offer: &str) -> String {
    let offer = SdpOffer::from_sdp_string(offer).unwrap();
    rtc.sdp_api().accept_offer(offer).unwrap().to_sdp_string()
}

/// The browser's first offer (one audio section, send and receive), its pending state and
/// its audio's mid (str0m reports MediaAdded only for media the other side adds).
pub fn make_offer(rtc: &mut Rtc) -> (String, SdpPendingOffer, Mid) {
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    (offer.to_sdp_string(), pending, mid)
}

/// What the browser's media did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Heard {
    pub connected: bool,
    /// PCMU frames written toward the edge.
    pub sent: u64,
    /// Audio frames that came back.
    pub received: u64,
    /// RTCP sender reports read for the audio that came back, and the last one's packet count.
    pub sender_reports: u64,
    pub last_sr_packets: u32,
}

/// What the test asks of a [`Phone`] while its media runs.
enum Cmd {
    AcceptOffer(String, oneshot::Sender<String>),
    AcceptAnswer(String, oneshot::Sender<Result<(), String>>),
    Offer(Direction, oneshot::Sender<String>),
    Heard(oneshot::Sender<Heard>),
}

/// A browser's media running in a task, as its `RTCPeerConnection`: ICE and DTLS with the
/// edge, then a PCMU frame every 20 ms while it sends; it counts the frames that come back.
/// New offers and answers go in while it runs.
pub struct Phone {
    cmds: mpsc::UnboundedSender<Cmd>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Heard>,
}

impl Phone {
    /// Starts the media of `rtc` (its offer/answer with the edge done, or its answer pending)
    /// on `sock`.
    pub fn start(rtc: Rtc, sock: UdpSocket) -> Phone {
        Phone::run(rtc, sock, None, None)
    }

    /// [`Phone::start`] with the browser's first offer ([`make_offer`]: its pending state and
    /// mid) still waiting for its answer ([`Phone::accept_answer`] takes it).
    pub fn start_pending(rtc: Rtc, sock: UdpSocket, pending: SdpPendingOffer, mid: Mid) -> Phone {
        Phone::run(rtc, sock, Some(pending), Some(mid))
    }

    fn run(rtc: Rtc, sock: UdpSocket, pending: Option<SdpPendingOffer>, mid: Option<Mid>) -> Phone {
        let (cmds, rx) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(rtc, sock, pending, mid, rx, stopped));
        Phone { cmds, stop: Some(stop), task }
    }

    /// Answers a new offer from the edge.
    pub async fn accept_offer(&self, offer: &str) -> String {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::AcceptOffer(offer.to_owned(), tx)).unwrap();
        rx.await.unwrap()
    }

    /// Takes the edge's answer to the browser's last offer.
    pub async fn accept_answer(&self, answer: &str) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::AcceptAnswer(answer.to_owned(), tx)).unwrap();
        rx.await.unwrap()
    }

    /// A new offer of the same session with `direction` (as `createOffer` makes one for a
    /// re-INVITE without SDP: an unchanged direction is offered all the same).
    pub async fn offer(&self, direction: Direction) -> String {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Offer(direction, tx)).unwrap();
        rx.await.unwrap()
    }

    /// What the media did so far.
    pub async fn heard(&self) -> Heard {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Heard(tx)).unwrap();
        rx.await.unwrap()
    }

    /// What the media did while `wait` passes.
    pub async fn heard_during(&self, wait: Duration) -> Heard {
        let before = self.heard().await;
        tokio::time::sleep(wait).await;
        let after = self.heard().await;
        Heard {
            sent: after.sent - before.sent,
            received: after.received - before.received,
            sender_reports: after.sender_reports - before.sender_reports,
            ..after
        }
    }

    /// Stops the media; what it did.
    pub async fn stop(mut self) -> Heard {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap()
    }
}

async fn run(
    mut rtc: Rtc,
    sock: UdpSocket,
    mut pending: Option<SdpPendingOffer>,
    mut mid: Option<Mid>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    mut stop: oneshot::Receiver<()>,
) -> Heard {
    let local = sock.local_addr().unwrap();
    let mut heard = Heard::default();
    let mut next_frame = Instant::now();
    let mut ts = 0u64;
    let mut buf = vec![0u8; 2048];
    loop {
        let timeout = match rtc.poll_output().unwrap() {
            Output::Timeout(t) => t,
            Output::Transmit(t) => {
                let _ = sock.send_to(&t.contents, t.destination).await;
                continue;
            }
            Output::Event(e) => {
                match e {
                    Event::Connected => heard.connected = true,
                    Event::MediaAdded(m) if m.kind == MediaKind::Audio => mid = Some(m.mid),
                    Event::MediaData(_) => heard.received += 1,
                    Event::SenderFeedback(f) => {
                        heard.sender_reports += 1;
                        heard.last_sr_packets = f.sender_info.sender_packet_count;
                    }
                    _ => {}
                }
                continue;
            }
        };
        let wake = timeout.min(next_frame);
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
                if let Ok(receive) = Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                    let _ = rtc.handle_input(Input::Receive(Instant::now(), receive));
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                rtc.handle_input(Input::Timeout(now)).unwrap();
                if now >= next_frame {
                    next_frame = now + Duration::from_millis(20);
                    if let (true, Some(mid)) = (heard.connected, mid)
                        && let Some(writer) = rtc.writer(mid)
                    {
                        let pt = writer
                            .payload_params()
                            .find(|p| p.spec().codec == Codec::PCMU)
                            .map(|p| p.pt());
                        if let Some(pt) = pt {
                            let time = MediaTime::new(ts, Frequency::EIGHT_KHZ);
                            if writer.write(pt, now, time, vec![0x55u8; 160]).is_ok() {
                                heard.sent += 1;
                                ts += 160;
                            }
                        }
                    }
                }
            }
            Some(cmd) = cmds.recv() => match cmd {
                Cmd::AcceptOffer(offer, reply) => {
                    let _ = reply.send(answer_offer(&mut rtc, &offer));
                }
                Cmd::AcceptAnswer(answer, reply) => {
                    let r = match (pending.take(), SdpAnswer::from_sdp_string(&answer)) {
                        (Some(p), Ok(a)) => {
                            rtc.sdp_api().accept_answer(p, a).map_err(|e| e.to_string())
                        }
                        (None, _) => Err("no offer pending".to_owned()),
                        (_, Err(e)) => Err(e.to_string()),
                    };
                    let _ = reply.send(r);
                }
                Cmd::Offer(direction, reply) => {
                    let mid = mid.expect("the browser's audio is up before it offers again");
                    let before = rtc.media(mid).unwrap().direction();
                    let mut change = rtc.sdp_api();
                    if before == direction {
                        let away = if direction == Direction::Inactive {
                            Direction::SendRecv
                        } else {
                            Direction::Inactive
                        };
                        change.set_direction(mid, away);
                    }
                    change.set_direction(mid, direction);
                    let (offer, p) = change.apply().unwrap();
                    pending = Some(p);
                    let _ = reply.send(offer.to_sdp_string());
                }
                Cmd::Heard(reply) => {
                    let _ = reply.send(heard);
                }
            },
            _ = &mut stop => return heard,
        }
    }
}

/// The edge's media counters (brought up to date every second): packets relayed to the plain
/// side, to browsers, and the live legs.
pub async fn media_metrics(edge: &Edge) -> (u64, u64, u64) {
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let text = edge.metrics().await;
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    };
    (
        value("lifeline_media_packets_total{dir=\"to_plain\"}"),
        value("lifeline_media_packets_total{dir=\"to_browser\"}"),
        value("lifeline_media_legs"),
    )
}

// ---- Assertions on SDP and audio ----------------------------------------------------------

/// The value of the first `a=NAME:` line of an SDP.
pub fn attribute<'a>(sdp: &'a str, name: &str) -> &'a str {
    let prefix = format!("a={name}:");
    sdp.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("{sdp}"))
}

/// An offer of the edge to the browser on the session its first offer or answer (`first`)
/// set up: WebRTC, ICE-lite, the same ICE credentials and DTLS fingerprint, `actpass` (RFC
/// 8842 §5.2), with `direction`.
pub fn assert_same_session(offer: &str, first: &str, direction: lifeline::media::sdp::Direction) {
    let sdp = lifeline::media::sdp::Sdp::parse(offer).unwrap();
    assert!(sdp.is_webrtc() && offer.contains("a=ice-lite"), "{offer}");
    assert!(offer.contains("a=setup:actpass"), "{offer}");
    for name in ["ice-ufrag", "ice-pwd", "fingerprint"] {
        assert_eq!(attribute(offer, name), attribute(first, name), "{name}: {offer}");
    }
    assert_eq!(sdp.direction, direction, "{offer}");
}

/// Audio both ways through the edge while a second passes: what the browser sent reached the
/// far end (SIPp, a scripted carrier) and its echo came back.
pub async fn assert_audio_both_ways(phone: &Phone, when: &str) {
    for _ in 0..100 {
        if phone.heard().await.connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let heard = phone.heard_during(Duration::from_millis(1200)).await;
    assert!(heard.sent > 30, "{when}: the browser sends: {heard:?}");
    assert!(
        heard.received > 30,
        "{when}: the far end's echo comes back through the edge: {heard:?}"
    );
}
