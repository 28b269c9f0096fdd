//! Hostile clients against the running edge (issue 5, "Bad input"): slow-loris connections on
//! TCP and on the web listener's `/ws`, oversized and malformed messages on every transport,
//! while well-behaved clients register and call through the same edge.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::Edge;
use common::ua::{parse_request, uas_response, udp_recv_until};
use futures_util::{SinkExt, StreamExt};
use sip::digest::{Challenge, respond};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The edge's clocks in these tests (`[limits] message_timeout_secs`, `idle_timeout_secs`).
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// How late after its deadline the edge may close a slow connection.
const SLACK: Duration = Duration::from_millis(1500);
/// How long a well-behaved client may wait for any answer while the slow ones hang on.
const PROMPT: Duration = Duration::from_millis(1000);

async fn edge() -> Edge {
    Edge::start_tuned(false, |c| {
        c.limits.message_timeout = MESSAGE_TIMEOUT;
        c.limits.idle_timeout = IDLE_TIMEOUT;
    })
    .await
}

/// A SIP client over a byte stream (TCP), framing what it reads like the edge does.
struct StreamUa<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamUa<S> {
    fn new(io: S) -> StreamUa<S> {
        StreamUa { io, buf: Vec::new() }
    }

    async fn send(&mut self, msg: &str) {
        self.io.write_all(msg.as_bytes()).await.unwrap();
    }

    /// The next whole message, within [`PROMPT`].
    async fn recv(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + PROMPT;
        loop {
            match sip::framing::check(&self.buf, 65535).unwrap() {
                sip::framing::Frame::Message { len } => {
                    let msg: Vec<u8> = self.buf.drain(..len).collect();
                    return String::from_utf8(msg).unwrap();
                }
                sip::framing::Frame::KeepAlive { len, .. } => {
                    self.buf.drain(..len);
                }
                sip::framing::Frame::Incomplete => {
                    let mut chunk = [0; 4096];
                    let n = tokio::time::timeout_at(deadline, self.io.read(&mut chunk))
                        .await
                        .expect("the edge did not answer promptly")
                        .unwrap();
                    assert!(n > 0, "the edge closed a well-behaved connection");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }

    async fn recv_until(&mut self, prefix: &str) -> String {
        loop {
            let m = self.recv().await;
            if m.starts_with(prefix) {
                return m;
            }
        }
    }
}

fn register(transport: &str, via_host: &str, cseq: u32, auth: &str) -> String {
    let t = transport.to_ascii_lowercase();
    format!(
        "REGISTER sip:localhost SIP/2.0\r\n\
Via: SIP/2.0/{transport} {via_host};branch=z9hG4bKreg{t}{cseq}\r\n\
Max-Forwards: 70\r\n\
To: <sip:alice@localhost>\r\n\
From: <sip:alice@localhost>;tag=reg{t}\r\n\
Call-ID: hostile-reg-{t}\r\n\
CSeq: {cseq} REGISTER\r\n\
{auth}Contact: <sip:alice@{via_host};transport={t}>;expires=600\r\n\
Content-Length: 0\r\n\r\n"
    )
}

fn options(transport: &str, via_host: &str, call_id: &str) -> String {
    format!(
        "OPTIONS sip:edge@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/{transport} {via_host};branch=z9hG4bK-{call_id}\r\n\
Max-Forwards: 70\r\n\
From: <sip:probe@127.0.0.1>;tag=p1\r\n\
To: <sip:edge@127.0.0.1>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
    )
}

fn challenge(reply: &str, header: &str) -> Challenge {
    let prefix = format!("{header}: ");
    // The last challenge is MD5 (what every client understands).
    let value = reply.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).next_back();
    Challenge::parse(value.unwrap_or_else(|| panic!("no {header}: {reply}"))).unwrap()
}

/// A well-behaved UDP client: OPTIONS, then REGISTER with digest; each answer within
/// [`PROMPT`].
async fn good_udp_client(edge: std::net::SocketAddr, round: u32) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let host = sock.local_addr().unwrap().to_string();
    let exchange = async |msg: String| {
        let started = Instant::now();
        sock.send_to(msg.as_bytes(), edge).await.unwrap();
        let mut buf = vec![0; 65536];
        let (n, _) = tokio::time::timeout(PROMPT, sock.recv_from(&mut buf))
            .await
            .expect("no prompt answer over UDP")
            .unwrap();
        assert!(started.elapsed() < PROMPT);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let reply = exchange(options("UDP", &host, &format!("udp-opt-{round}"))).await;
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    let reply = exchange(register("UDP", &host, 1, "")).await;
    assert!(reply.starts_with("SIP/2.0 401 "), "{reply}");
    let ch = challenge(&reply, "WWW-Authenticate");
    let auth = respond(&ch, "alice", "secret", "REGISTER", "sip:localhost", "u", 1);
    let reply = exchange(register("UDP", &host, 2, &format!("Authorization: {auth}\r\n"))).await;
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
}

/// A well-behaved TCP client: registers alice with digest, then calls a US number that the
/// dialplan sends to the primary trunk (a UDP socket on 127.0.0.2 here), which answers 486.
async fn good_tcp_client(edge: &Edge, trunk: &UdpSocket, round: u32) {
    let stream = TcpStream::connect(edge.tcp).await.unwrap();
    let host = stream.local_addr().unwrap().to_string();
    let mut ua = StreamUa::new(stream);
    ua.send(&register("TCP", &host, 1, "")).await;
    let reply = ua.recv().await;
    assert!(reply.starts_with("SIP/2.0 401 "), "{reply}");
    let ch = challenge(&reply, "WWW-Authenticate");
    let auth = respond(&ch, "alice", "secret", "REGISTER", "sip:localhost", "t", 1);
    ua.send(&register("TCP", &host, 2, &format!("Authorization: {auth}\r\n"))).await;
    let reply = ua.recv().await;
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");

    let call_id = format!("hostile-call-{round}");
    let uri = "sip:+12025550123@localhost";
    let invite = |cseq: u32, auth: &str| {
        format!(
            "INVITE {uri} SIP/2.0\r\n\
Via: SIP/2.0/TCP {host};branch=z9hG4bKinv{round}x{cseq}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@localhost>;tag=inv{round}\r\n\
To: <{uri}>\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} INVITE\r\n\
Contact: <sip:alice@{host};transport=tcp>\r\n\
{auth}Content-Length: 0\r\n\r\n"
        )
    };
    ua.send(&invite(1, "")).await;
    let reply = ua.recv_until("SIP/2.0 407").await;
    ua.send(&format!(
        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/TCP {host};branch=z9hG4bKinv{round}x1\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@localhost>;tag=inv{round}\r\nTo: <{uri}>;tag={}\r\n\
Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        reply
            .lines()
            .find_map(|l| l.strip_prefix("To: "))
            .and_then(|t| t.split(";tag=").nth(1))
            .unwrap_or("x")
    ))
    .await;
    let ch = challenge(&reply, "Proxy-Authenticate");
    let auth = respond(&ch, "alice", "secret", "INVITE", uri, "i", 1);
    let started = Instant::now();
    ua.send(&invite(2, &format!("Proxy-Authorization: {auth}\r\n"))).await;
    let at_trunk = tokio::time::timeout(PROMPT, udp_recv_until(trunk, "INVITE "))
        .await
        .expect("the call did not reach the trunk promptly");
    assert!(at_trunk.contains(&format!("Call-ID: {call_id}\r\n")), "{at_trunk}");
    let busy = uas_response(&parse_request(&at_trunk), 486, "Busy Here", "b", "<sip:b@127.0.0.2>");
    trunk.send_to(busy.as_bytes(), edge.udp).await.unwrap();
    let reply = ua.recv_until("SIP/2.0 486").await;
    assert!(reply.contains(&format!("Call-ID: {call_id}\r\n")), "{reply}");
    assert!(started.elapsed() < PROMPT, "the call took {:?}", started.elapsed());
}

/// Reads from `rd` until the edge closes the connection; how long that took from `since`.
/// Panics if it stays open past `bound`.
async fn closed_within<R: AsyncRead + Unpin>(
    what: &str,
    mut rd: R,
    since: Instant,
    bound: Duration,
) -> Duration {
    let mut buf = [0; 4096];
    loop {
        let left = bound.saturating_sub(since.elapsed());
        match tokio::time::timeout(left, rd.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("{what}: still open after {bound:?}"),
        }
    }
}

/// Writes `bytes` one at a time, `gap` apart, until done or the edge closes the connection.
async fn trickle<W: AsyncWrite + Unpin>(mut wr: W, bytes: Vec<u8>, gap: Duration) {
    for b in bytes {
        if wr.write_all(&[b]).await.is_err() {
            return;
        }
        tokio::time::sleep(gap).await;
    }
    // Then nothing: hold the connection open.
    std::future::pending::<()>().await;
}

/// The upgrade request of RFC 6455 §4.1 for `/ws` with the `sip` subprotocol.
fn ws_upgrade_request(web: std::net::SocketAddr) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Protocol: sip\r\n\r\n"
    )
}

/// Opens `/ws`; returns the raw stream after the 101 answer.
async fn ws_open_raw(web: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(web).await.unwrap();
    s.write_all(ws_upgrade_request(web).as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut byte = [0; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PROMPT, s.read(&mut byte)).await.unwrap().unwrap();
        assert_eq!(n, 1, "closed during the upgrade");
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    s
}

/// A masked client text frame of RFC 6455 §5.2 carrying `payload` (< 126 bytes).
fn ws_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[tokio::test]
async fn slow_loris_connections_are_closed_and_good_clients_are_served() {
    let edge = edge().await;
    let trunk = UdpSocket::bind((common::TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    let partial = options("TCP", "127.0.0.1:5099", "loris").into_bytes();
    let gap = Duration::from_millis(700);
    let mut slow = tokio::task::JoinSet::new();
    let bound = MESSAGE_TIMEOUT + SLACK;

    // 40 TCP connections: half trickle a message a byte at a time, half say nothing.
    for i in 0..40 {
        let stream = TcpStream::connect(edge.tcp).await.unwrap();
        let since = Instant::now();
        let (rd, wr) = stream.into_split();
        if i % 2 == 0 {
            let bytes = partial.clone();
            slow.spawn(async move {
                let writer = tokio::spawn(trickle(wr, bytes, gap));
                let took = closed_within("tcp trickle", rd, since, bound).await;
                writer.abort();
                ("tcp trickle", took)
            });
        } else {
            slow.spawn(async move {
                let took = closed_within("tcp silent", rd, since, bound).await;
                drop(wr);
                ("tcp silent", took)
            });
        }
    }
    // On the web listener: an HTTP client that never finishes its upgrade request, one that
    // says nothing, WebSockets silent after the upgrade, and WebSockets that speak once and
    // then trickle a frame.
    for i in 0..4 {
        let stream = TcpStream::connect(edge.web).await.unwrap();
        let since = Instant::now();
        let (rd, wr) = stream.into_split();
        let request = if i % 2 == 0 { ws_upgrade_request(edge.web).into_bytes() } else { vec![] };
        slow.spawn(async move {
            let writer = tokio::spawn(trickle(wr, request, gap));
            let took = closed_within("http trickle/silent", rd, since, bound).await;
            writer.abort();
            ("http trickle/silent", took)
        });
    }
    for i in 0..8 {
        let mut ws = ws_open_raw(edge.web).await;
        if i % 2 == 0 {
            let since = Instant::now();
            slow.spawn(async move {
                let took = closed_within("ws silent", ws, since, bound).await;
                ("ws silent", took)
            });
        } else {
            let msg = options("WS", "df7jal23ls0d.invalid", &format!("ws-once-{i}"));
            let mut frame = Vec::new();
            // Longer than one small frame allows: a fragmented text message (RFC 6455 §5.4),
            // its first fragment now, the final one trickled and never finished.
            let (a, b) = msg.as_bytes().split_at(100);
            let mut first = ws_frame(a);
            first[0] = 0x01; // text, FIN clear
            frame.extend(first);
            let mut last = ws_frame(&b[..b.len().min(100)]);
            last[0] = 0x80; // continuation, FIN
            ws.write_all(&frame).await.unwrap();
            let since = Instant::now();
            let (rd, wr) = ws.into_split();
            slow.spawn(async move {
                let writer = tokio::spawn(trickle(wr, last, gap));
                let took = closed_within("ws trickle", rd, since, IDLE_TIMEOUT + SLACK).await;
                writer.abort();
                ("ws trickle", took)
            });
        }
    }

    // Meanwhile, well-behaved clients register and call, several rounds while the slow ones
    // hang on.
    for round in 0..3 {
        good_udp_client(edge.udp, round).await;
        good_tcp_client(&edge, &trunk, round).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let mut closed = 0;
    while let Some(result) = slow.join_next().await {
        let (what, took) = result.unwrap();
        // Closed by the clock, not by accident: not before the message deadline.
        assert!(
            took >= MESSAGE_TIMEOUT - Duration::from_millis(100),
            "{what} closed after {took:?}"
        );
        closed += 1;
    }
    assert_eq!(closed, 52);
    // Still serving after the storm.
    good_udp_client(edge.udp, 9).await;
    good_tcp_client(&edge, &trunk, 9).await;
    let metrics = edge.metrics().await;
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lifeline_sip_slow_connections_closed_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Every TCP and WebSocket one (the HTTP ones never became SIP connections).
    assert!(counted >= 48, "{metrics}");
    edge.stop().await;
}

#[tokio::test]
async fn a_connection_idle_between_messages_is_closed_at_the_idle_timeout() {
    let edge = edge().await;
    let stream = TcpStream::connect(edge.tcp).await.unwrap();
    let mut ua = StreamUa::new(stream);
    ua.send(&options("TCP", "127.0.0.1:5099", "idle-1")).await;
    assert!(ua.recv().await.starts_with("SIP/2.0 200 OK\r\n"));
    // Keep-alives keep it open past the idle timeout...
    let since = Instant::now();
    while since.elapsed() < IDLE_TIMEOUT + Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        ua.send("\r\n\r\n").await;
    }
    ua.send(&options("TCP", "127.0.0.1:5099", "idle-2")).await;
    assert!(ua.recv().await.starts_with("SIP/2.0 200 OK\r\n"));
    // ...and silence closes it, at the idle timeout (not the shorter message one).
    let since = Instant::now();
    let took = closed_within("idle tcp", ua.io, since, IDLE_TIMEOUT + SLACK).await;
    assert!(took >= IDLE_TIMEOUT - Duration::from_millis(100), "closed after {took:?}");
    edge.stop().await;
}

#[tokio::test]
async fn oversized_messages_are_dropped_on_every_transport_and_others_are_served() {
    // The test edge's `[limits] max_message_bytes` is 4096.
    let edge = edge().await;
    let pad = |msg: String| {
        msg.replace(
            "Content-Length: 0\r\n",
            &format!("X-Pad: {}\r\nContent-Length: 0\r\n", "a".repeat(5000)),
        )
    };
    // A good client on each transport, connected before and used after.
    let good_tcp = TcpStream::connect(edge.tcp).await.unwrap();
    let mut good_tcp = StreamUa::new(good_tcp);
    let url = format!("ws://{}/ws", edge.web);
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (mut good_ws, _) =
        tokio_tungstenite::client_async(req.clone(), TcpStream::connect(edge.web).await.unwrap())
            .await
            .unwrap();

    // UDP: dropped, no answer.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(pad(options("UDP", "127.0.0.1:5099", "big-udp")).as_bytes(), edge.udp)
        .await
        .unwrap();
    let mut buf = vec![0; 65536];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await.is_err(),
        "an oversized datagram was answered"
    );

    // TCP: a whole, well-formed message over the limit ends the connection; so does one whose
    // Content-Length announces a body over the limit, before the body arrives.
    let mut big = TcpStream::connect(edge.tcp).await.unwrap();
    big.write_all(pad(options("TCP", "127.0.0.1:5099", "big-tcp")).as_bytes()).await.unwrap();
    closed_within("oversized tcp", big, Instant::now(), PROMPT).await;
    let mut announced = TcpStream::connect(edge.tcp).await.unwrap();
    let head = options("TCP", "127.0.0.1:5099", "big-cl")
        .replace("Content-Length: 0", "Content-Type: text/plain\r\nContent-Length: 1000000");
    announced.write_all(head.as_bytes()).await.unwrap();
    closed_within("oversized announced", announced, Instant::now(), PROMPT).await;

    // WebSocket: a message over the limit ends that WebSocket.
    let (mut big_ws, _) =
        tokio_tungstenite::client_async(req, TcpStream::connect(edge.web).await.unwrap())
            .await
            .unwrap();
    big_ws
        .send(WsMessage::text(pad(options("WS", "df7jal23ls0d.invalid", "big-ws"))))
        .await
        .unwrap();
    let ended = tokio::time::timeout(PROMPT, async {
        loop {
            match big_ws.next().await {
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return,
                Some(Ok(WsMessage::Text(t))) => panic!("an oversized message was answered: {t}"),
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the WebSocket stayed open after an oversized message");

    // The others are unaffected.
    assert!(
        common::ua::udp_recv(&{
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.send_to(options("UDP", "127.0.0.1:5099", "ok-udp").as_bytes(), edge.udp)
                .await
                .unwrap();
            s
        })
        .await
        .starts_with("SIP/2.0 200 OK\r\n")
    );
    good_tcp.send(&options("TCP", "127.0.0.1:5099", "ok-tcp")).await;
    assert!(good_tcp.recv().await.starts_with("SIP/2.0 200 OK\r\n"));
    good_ws.send(WsMessage::text(options("WS", "df7jal23ls0d.invalid", "ok-ws"))).await.unwrap();
    match tokio::time::timeout(PROMPT, good_ws.next()).await.unwrap() {
        Some(Ok(WsMessage::Text(t))) => assert!(t.starts_with("SIP/2.0 200 OK\r\n"), "{t}"),
        other => panic!("no answer over the good WebSocket: {other:?}"),
    }
    edge.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_400_with_the_reason_on_every_transport() {
    use rustls::pki_types::ServerName;
    let edge = Edge::start_with(true).await;
    // A request whose CSeq method is not its method (RFC 3261 §8.1.1.5), and a response with
    // the same defect, which is dropped (there is no one to answer).
    let bad = |transport: &str, call_id: &str| {
        options(transport, "127.0.0.1:5099", call_id).replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE")
    };
    let bad_response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKr\r\n\
Call-ID: r\r\nCSeq: x\r\nContent-Length: 0\r\n\r\n";
    let expect_400 = |reply: &str, call_id: &str| {
        assert!(reply.starts_with("SIP/2.0 400 CSeq Method Mismatch\r\n"), "{reply}");
        assert!(reply.contains(&format!("Call-ID: {call_id}\r\n")), "{reply}");
    };

    // UDP.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bad("UDP", "bad-udp").as_bytes(), edge.udp).await.unwrap();
    expect_400(&common::ua::udp_recv(&sock).await, "bad-udp");

    // TCP: the 400, then the connection still serves (the stream stayed in sync).
    let mut tcp = StreamUa::new(TcpStream::connect(edge.tcp).await.unwrap());
    tcp.send(bad_response).await;
    tcp.send(&bad("TCP", "bad-tcp")).await;
    expect_400(&tcp.recv().await, "bad-tcp");
    tcp.send(&options("TCP", "127.0.0.1:5099", "ok-tcp")).await;
    assert!(tcp.recv().await.starts_with("SIP/2.0 200 OK\r\n"));

    // TLS.
    let (addr, der) = edge.tls.clone().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(lifeline::transport::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tls = connector
        .connect(
            ServerName::try_from("localhost").unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        )
        .await
        .unwrap();
    let mut tls = StreamUa::new(tls);
    tls.send(bad_response).await;
    tls.send(&bad("TLS", "bad-tls")).await;
    expect_400(&tls.recv().await, "bad-tls");
    tls.send(&options("TLS", "127.0.0.1:5099", "ok-tls")).await;
    assert!(tls.recv().await.starts_with("SIP/2.0 200 OK\r\n"));

    // WSS (the web listener is HTTPS with [tls]).
    let tcp = TcpStream::connect(edge.web).await.unwrap();
    let stream = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let url = format!("wss://localhost:{}/ws", edge.web.port());
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    // The malformed response first: were it answered, that answer would come before the 400.
    ws.send(WsMessage::text(bad_response.replace("/TCP", "/WSS"))).await.unwrap();
    let bad_ws = bad("WSS", "bad-ws").replace("127.0.0.1:5099", "df7jal23ls0d.invalid");
    ws.send(WsMessage::text(bad_ws)).await.unwrap();
    match tokio::time::timeout(PROMPT, ws.next()).await.unwrap() {
        Some(Ok(WsMessage::Text(t))) => expect_400(&t, "bad-ws"),
        other => panic!("no answer over the WebSocket: {other:?}"),
    }
    edge.stop().await;
}

#[tokio::test]
async fn a_bad_dialplan_reload_is_refused_and_calls_keep_routing() {
    let edge = edge().await;
    let trunk = UdpSocket::bind((common::TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    good_tcp_client(&edge, &trunk, 0).await;
    // A broken file next to the good one: the route of line 1 has a bad regex (errors name
    // the line of the entry).
    let bad = edge.data.join("dialplans").join("zz-broken.toml");
    std::fs::write(&bad, "[[route]]\ntrunks = [\"primary\"]\npattern = '^(+1'\n").unwrap();
    let (status, body) = edge.api("POST", "/api/dialplan/reload", None).await;
    assert_eq!(status, 400, "{body}");
    let text = body.to_string();
    assert!(text.contains("zz-broken.toml:1: route pattern"), "no file:line in {text}");
    // The table in force still routes US numbers to the primary trunk.
    good_tcp_client(&edge, &trunk, 1).await;
    good_udp_client(edge.udp, 1).await;
    std::fs::remove_file(&bad).unwrap();
    edge.stop().await;
}
