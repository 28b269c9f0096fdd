//! Black-box tests of the running edge over real sockets on loopback (port 0).

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

mod common;

use common::Edge;
use common::ua::{header, parse_request, uas_response, udp_recv, udp_recv_until};
use common::webrtc::{Ws, register_alice, ws_send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn options(branch: &str, call_id: &str, transport: &str) -> String {
    format!(
        "OPTIONS sip:edge@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/{transport} 127.0.0.1:5099;branch=z9hG4bK-{branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:probe@127.0.0.1>;tag=p1\r\n\
To: <sip:edge@127.0.0.1>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
    )
}

fn status_line(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    text.lines().next().unwrap_or("").to_owned()
}

async fn udp_exchange(edge: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(msg, edge).await.unwrap();
    let mut buf = vec![0; 65536];
    match tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

#[tokio::test]
async fn udp_options_and_errors() {
    let edge = Edge::start().await;
    let reply = udp_exchange(edge.udp, options("1", "c1", "UDP").as_bytes()).await.unwrap();
    assert_eq!(status_line(&reply), "SIP/2.0 200 OK");
    assert!(String::from_utf8_lossy(&reply).contains("Call-ID: c1\r\n"));

    let broken = options("2", "c2", "UDP").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    let reply = udp_exchange(edge.udp, broken.as_bytes()).await.unwrap();
    assert_eq!(status_line(&reply), "SIP/2.0 400 CSeq Method Mismatch");

    // A malformed response and raw garbage get no answer, and the edge keeps serving.
    assert!(udp_exchange(edge.udp, b"SIP/2.0 200 OK\r\n\r\n").await.is_none());
    assert!(udp_exchange(edge.udp, &[0xff; 300]).await.is_none());
    // Over the size limit: dropped.
    let mut huge = options("3", "c3", "UDP");
    huge.insert_str(huge.len() - 4, &format!("\r\nX-Pad: {}", "a".repeat(5000)));
    assert!(udp_exchange(edge.udp, huge.as_bytes()).await.is_none());
    let reply = udp_exchange(edge.udp, options("4", "c4", "UDP").as_bytes()).await.unwrap();
    assert_eq!(status_line(&reply), "SIP/2.0 200 OK");
    edge.stop().await;
}

async fn read_some(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0; 65536];
    let n =
        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await.unwrap().unwrap();
    buf[..n].to_vec()
}

#[tokio::test]
async fn tcp_framing_keepalive_and_limits() {
    let edge = Edge::start().await;
    let mut s = TcpStream::connect(edge.tcp).await.unwrap();
    // A message split across writes, then a keep-alive ping.
    let msg = options("t1", "tc1", "TCP");
    let (a, b) = msg.split_at(40);
    s.write_all(a.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.write_all(b.as_bytes()).await.unwrap();
    assert_eq!(status_line(&read_some(&mut s).await), "SIP/2.0 200 OK");
    s.write_all(b"\r\n\r\n").await.unwrap();
    assert_eq!(read_some(&mut s).await, b"\r\n");

    // A stream message without Content-Length cannot be framed: the connection is closed.
    let mut bad = TcpStream::connect(edge.tcp).await.unwrap();
    let no_cl = options("t2", "tc2", "TCP").replace("Content-Length: 0\r\n", "");
    bad.write_all(no_cl.as_bytes()).await.unwrap();
    assert!(read_some(&mut bad).await.is_empty(), "connection should close");

    // An endless header section is cut at the size limit.
    let mut big = TcpStream::connect(edge.tcp).await.unwrap();
    let _ = big.write_all(&vec![b'A'; 8192]).await;
    assert!(read_some(&mut big).await.is_empty(), "connection should close");

    // The first connection is unharmed.
    s.write_all(options("t3", "tc3", "TCP").as_bytes()).await.unwrap();
    assert_eq!(status_line(&read_some(&mut s).await), "SIP/2.0 200 OK");
    edge.stop().await;
}

#[tokio::test]
async fn tls_listener_answers_over_tls_and_drops_plain_text() {
    use rustls::pki_types::ServerName;

    let edge = Edge::start_with(true).await;
    let (addr, der) = edge.tls.clone().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(lifeline::transport::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    tls.write_all(options("s1", "tls1", "TLS").as_bytes()).await.unwrap();
    let mut buf = vec![0; 4096];
    let n =
        tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(status_line(&buf[..n]), "SIP/2.0 200 OK");

    // Plain SIP on the TLS port is not a handshake: at most a TLS alert comes back, never SIP.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    let probe = options("s2", "tls2", "TCP");
    plain.write_all(probe.as_bytes()).await.unwrap();
    let reply = read_some(&mut plain).await;
    assert!(!reply.starts_with(b"SIP/"), "{reply:?}");
    edge.stop().await;
}

/// Opens `/ws` with the given Origin and subprotocol offer over `stream` (plain or TLS).
async fn ws_handshake<S>(
    stream: S,
    url: &str,
    origin: Option<&str>,
    protocol: Option<&str>,
) -> Result<tokio_tungstenite::WebSocketStream<S>, tokio_tungstenite::tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    if let Some(p) = protocol {
        req.headers_mut().insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    tokio_tungstenite::client_async(req, stream).await.map(|(ws, resp)| {
        if protocol.is_some() {
            assert_eq!(resp.headers().get("Sec-WebSocket-Protocol").unwrap(), "sip");
        }
        ws
    })
}

fn http_status(e: tokio_tungstenite::tungstenite::Error) -> u16 {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

async fn ws_options<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, call_id: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let msg = options(call_id, call_id, "WS").replace("127.0.0.1:5099", "df7jal23ls0d.invalid");
    ws.send(Message::text(msg)).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(2), ws.next()).await.unwrap() {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("no SIP answer: {other:?}"),
    }
}

#[tokio::test]
async fn websocket_sip_subprotocol_and_origin_check() {
    let edge = Edge::start().await;
    let url = format!("ws://{}/ws", edge.web);
    let connect = || TcpStream::connect(edge.web);

    // A non-browser client (no Origin) offering "sip" is served.
    let mut ws = ws_handshake(connect().await.unwrap(), &url, None, Some("sip")).await.unwrap();
    assert!(ws_options(&mut ws, "ws1").await.starts_with("SIP/2.0 200 OK\r\n"));

    // The edge's own origin and configured origins are allowed.
    let own = format!("http://{}", edge.web);
    let mut ws2 =
        ws_handshake(connect().await.unwrap(), &url, Some(&own), Some("sip")).await.unwrap();
    assert!(ws_options(&mut ws2, "ws2").await.starts_with("SIP/2.0 200 OK\r\n"));
    let configured = Some("https://agents.example.com");
    assert!(ws_handshake(connect().await.unwrap(), &url, configured, Some("sip")).await.is_ok());

    // Another site's page gets 403; a client not offering "sip" gets 400.
    let evil =
        ws_handshake(connect().await.unwrap(), &url, Some("https://evil.example.net"), Some("sip"));
    assert_eq!(http_status(evil.await.unwrap_err()), 403);
    let no_sip = ws_handshake(connect().await.unwrap(), &url, None, Some("chat"));
    assert_eq!(http_status(no_sip.await.unwrap_err()), 400);
    edge.stop().await;
}

#[tokio::test]
async fn secure_websocket_when_tls_is_configured() {
    use rustls::pki_types::ServerName;
    let edge = Edge::start_with(true).await;
    let (_, der) = edge.tls.clone().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(lifeline::transport::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = TcpStream::connect(edge.web).await.unwrap();
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let url = format!("wss://localhost:{}/ws", edge.web.port());
    let mut ws = ws_handshake(tls, &url, None, Some("sip")).await.unwrap();
    assert!(ws_options(&mut ws, "wss1").await.starts_with("SIP/2.0 200 OK\r\n"));
    edge.stop().await;
}

#[tokio::test]
async fn websocket_register_with_digest_auth() {
    use futures_util::{SinkExt, StreamExt};
    use sip::digest::{Challenge, respond};
    use tokio_tungstenite::tungstenite::Message;
    let edge = Edge::start().await;
    let url = format!("ws://{}/ws", edge.web);
    let stream = TcpStream::connect(edge.web).await.unwrap();
    let mut ws = ws_handshake(stream, &url, None, Some("sip")).await.unwrap();
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:localhost SIP/2.0\r\n\
Via: SIP/2.0/WS k3vq8d0h2m1a.invalid;branch=z9hG4bK837194{cseq}\r\n\
Max-Forwards: 69\r\n\
To: <sip:alice@localhost>\r\n\
From: <sip:alice@localhost>;tag=5ld3m0q7vu\r\n\
Call-ID: ugf0s1rbdqm8o3v2hk6l9a\r\n\
CSeq: {cseq} REGISTER\r\n\
{auth}\
Contact: <sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:6f1c2b9e-3d4a-4e8b-9c1f-2a7d5e0b8c43>\";expires=600\r\n\
Expires: 600\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    let mut exchange = async |msg: String| {
        ws.send(Message::text(msg)).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(2), ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => t.to_string(),
            other => panic!("no answer: {other:?}"),
        }
    };
    // First: 401 with both challenges; over WebSocket MD5 last (JsSIP keeps the last one).
    let reply = exchange(register(1, "")).await;
    assert!(reply.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{reply}");
    let challenges: Vec<&str> =
        reply.lines().filter_map(|l| l.strip_prefix("WWW-Authenticate: ")).collect();
    assert_eq!(challenges.len(), 2, "{reply}");
    assert!(challenges[0].contains("algorithm=SHA-256"), "{reply}");
    assert!(challenges[1].contains("algorithm=MD5"), "{reply}");
    let challenge = Challenge::parse(challenges[1]).unwrap();
    assert_eq!(challenge.realm, "localhost");

    // A wrong password: 403.
    let wrong = respond(&challenge, "alice", "guess", "REGISTER", "sip:localhost", "c0", 1);
    let reply = exchange(register(2, &format!("Authorization: {wrong}\r\n"))).await;
    assert!(reply.starts_with("SIP/2.0 403 Forbidden\r\n"), "{reply}");

    // The right one: 200 with the binding.
    let right = respond(&challenge, "alice", "secret", "REGISTER", "sip:localhost", "c1", 2);
    let reply = exchange(register(3, &format!("Authorization: {right}\r\n"))).await;
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    assert!(
        reply.contains("Contact: <sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws>;expires=600\r\n"),
        "{reply}"
    );
    // Replaying the same credentials (same nonce count) is refused.
    let reply = exchange(register(4, &format!("Authorization: {right}\r\n"))).await;
    assert!(reply.starts_with("SIP/2.0 403 Forbidden\r\n"), "{reply}");
    edge.stop().await;
}

/// One HTTP/1.1 request over a fresh connection; returns (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn admin_health_metrics_and_token() {
    let edge = Edge::start().await;
    assert_eq!(http(edge.admin, "GET", "/live", None).await.0, 200);
    // Ready once the listeners serve (the edge signals it right after spawning them).
    let mut ready = 0;
    for _ in 0..50 {
        ready = http(edge.admin, "GET", "/ready", None).await.0;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready, 200);
    let (status, body) = http(edge.admin, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("lifeline_up 1"), "{body}");

    // The API needs the bearer token and answers errors as JSON naming no field.
    let (status, body) = http(edge.admin, "GET", "/api", None).await;
    assert_eq!(status, 401);
    assert!(body.contains(r#""code":"unauthorized""#), "{body}");
    assert_eq!(http(edge.admin, "GET", "/api", Some("wrong")).await.0, 401);
    let (status, body) = http(edge.admin, "GET", "/api", Some(&edge.token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""name":"lifeline""#), "{body}");
    let (status, body) = http(edge.admin, "GET", "/api/nothing-here", Some(&edge.token)).await;
    assert_eq!(status, 404);
    assert!(body.contains(r#""code":"not_found""#), "{body}");
    edge.stop().await;
}

async fn ws_recv(ws: &mut Ws) -> String {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    match tokio::time::timeout(Duration::from_secs(3), ws.next()).await.unwrap() {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("nothing from the edge: {other:?}"),
    }
}

/// Receives over the WebSocket until a message starting with `prefix` (skipping 100 Trying).
async fn ws_recv_until(ws: &mut Ws, prefix: &str) -> String {
    loop {
        let m = ws_recv(ws).await;
        if m.starts_with(prefix) {
            return m;
        }
    }
}

#[tokio::test]
async fn trunk_calls_a_registered_browser_agent_and_she_hangs_up() {
    let edge = Edge::start().await;
    let mut ws = register_alice(&edge).await;
    let trunk = UdpSocket::bind((common::TRUNK_IP, 0)).await.unwrap();
    let trunk_addr = trunk.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:alice@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP {trunk_addr};branch=z9hG4bKinv1\r\n\
Max-Forwards: 70\r\n\
From: <sip:+12025550199@{trunk_addr}>;tag=trunk1\r\n\
To: <sip:alice@127.0.0.1>\r\n\
Call-ID: call-1@trunk\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:+12025550199@{trunk_addr}>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n"
    );
    trunk.send_to(invite.as_bytes(), edge.udp).await.unwrap();
    assert!(udp_recv(&trunk).await.starts_with("SIP/2.0 100 Trying\r\n"));

    // The browser gets the INVITE on its registration's connection, record-routed on both
    // legs (UDP toward the trunk, WS toward the browser, RFC 5658).
    let at_agent = ws_recv(&mut ws).await;
    assert!(
        at_agent.starts_with("INVITE sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws SIP/2.0\r\n"),
        "{at_agent}"
    );
    let rr = header(&at_agent, "Record-Route");
    assert_eq!(rr.len(), 2, "{at_agent}");
    assert!(rr[0].contains("transport=ws") && rr[1].contains("transport=udp"), "{rr:?}");
    assert_eq!(header(&at_agent, "Max-Forwards"), ["69"]);
    assert!(at_agent.ends_with("\r\n\r\nv=0\n"));
    let inv = parse_request(&at_agent);
    let contact = "<sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws>";
    ws_send(&mut ws, uas_response(&inv, 180, "Ringing", "agent1", contact)).await;
    let ringing = udp_recv_until(&trunk, "SIP/2.0 180").await;
    assert_eq!(header(&ringing, "Via").len(), 1, "the edge's Via is popped: {ringing}");
    ws_send(&mut ws, uas_response(&inv, 200, "OK", "agent1", contact)).await;
    let ok = udp_recv_until(&trunk, "SIP/2.0 200").await;
    let route_set: Vec<&str> = header(&ok, "Record-Route").into_iter().rev().collect();
    assert_eq!(route_set.len(), 2);

    // The trunk's ACK follows the route set to the browser's flow.
    let ack = format!(
        "ACK sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws SIP/2.0\r\n\
Via: SIP/2.0/UDP {trunk_addr};branch=z9hG4bKack1\r\n\
Max-Forwards: 70\r\n\
Route: {}\r\n\
From: <sip:+12025550199@{trunk_addr}>;tag=trunk1\r\n\
To: <sip:alice@127.0.0.1>;tag=agent1\r\n\
Call-ID: call-1@trunk\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n",
        route_set.join(", ")
    );
    trunk.send_to(ack.as_bytes(), edge.udp).await.unwrap();
    let at_agent = ws_recv(&mut ws).await;
    assert!(
        at_agent.starts_with("ACK sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws SIP/2.0\r\n"),
        "{at_agent}"
    );
    assert!(header(&at_agent, "Route").is_empty(), "our routes are popped: {at_agent}");

    // The agent hangs up: her BYE follows the route set (as the UAS she uses it in order).
    let inv_text = String::from_utf8(inv.to_bytes().to_vec()).unwrap();
    let routes = header(&inv_text, "Record-Route").join(", ");
    let bye = format!(
        "BYE sip:+12025550199@{trunk_addr} SIP/2.0\r\n\
Via: SIP/2.0/WS k3vq8d0h2m1a.invalid;branch=z9hG4bKbye1\r\n\
Max-Forwards: 70\r\n\
Route: {routes}\r\n\
From: <sip:alice@127.0.0.1>;tag=agent1\r\n\
To: <sip:+12025550199@{trunk_addr}>;tag=trunk1\r\n\
Call-ID: call-1@trunk\r\n\
CSeq: 1 BYE\r\n\
Content-Length: 0\r\n\r\n"
    );
    ws_send(&mut ws, bye).await;
    let at_trunk = udp_recv_until(&trunk, "BYE ").await;
    assert!(header(&at_trunk, "Route").is_empty(), "{at_trunk}");
    assert_eq!(header(&at_trunk, "Via").len(), 2, "{at_trunk}");
    let req = parse_request(&at_trunk);
    let ok = sip::Response::for_request(&req, 200, "OK");
    trunk.send_to(&ok.to_bytes(), edge.udp).await.unwrap();
    let answer = ws_recv(&mut ws).await;
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("CSeq: 1 BYE\r\n"), "{answer}");
    edge.stop().await;
}

#[tokio::test]
async fn unknown_and_unregistered_users_and_cancel() {
    let edge = Edge::start().await;
    let trunk = UdpSocket::bind((common::TRUNK_IP, 0)).await.unwrap();
    let trunk_addr = trunk.local_addr().unwrap();
    let invite = |user: &str, branch: &str| {
        format!(
            "INVITE sip:{user}@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP {trunk_addr};branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+12025550199@{trunk_addr}>;tag=t-{branch}\r\n\
To: <sip:{user}@127.0.0.1>\r\n\
Call-ID: {branch}@trunk\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    // Nobody of that name: 404. Alice exists but is not registered: 480.
    trunk.send_to(invite("nobody", "n1").as_bytes(), edge.udp).await.unwrap();
    assert!(udp_recv_until(&trunk, "SIP/2.0 4").await.starts_with("SIP/2.0 404 Not Found\r\n"));
    trunk.send_to(invite("alice", "n2").as_bytes(), edge.udp).await.unwrap();
    assert!(
        udp_recv_until(&trunk, "SIP/2.0 4")
            .await
            .starts_with("SIP/2.0 480 Temporarily Unavailable\r\n")
    );

    // Registered: the call rings her, then the trunk cancels it.
    let mut ws = register_alice(&edge).await;
    trunk.send_to(invite("alice", "c3").as_bytes(), edge.udp).await.unwrap();
    let at_agent = ws_recv(&mut ws).await;
    let inv = parse_request(&at_agent);
    ws_send(
        &mut ws,
        uas_response(
            &inv,
            180,
            "Ringing",
            "a3",
            "<sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws>",
        ),
    )
    .await;
    udp_recv_until(&trunk, "SIP/2.0 180").await;
    let cancel = format!(
        "CANCEL sip:alice@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP {trunk_addr};branch=z9hG4bKc3\r\n\
Max-Forwards: 70\r\n\
From: <sip:+12025550199@{trunk_addr}>;tag=t-c3\r\n\
To: <sip:alice@127.0.0.1>\r\n\
Call-ID: c3@trunk\r\n\
CSeq: 1 CANCEL\r\n\
Content-Length: 0\r\n\r\n"
    );
    trunk.send_to(cancel.as_bytes(), edge.udp).await.unwrap();
    let at_agent = ws_recv(&mut ws).await;
    assert!(
        at_agent.starts_with("CANCEL sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws SIP/2.0\r\n"),
        "{at_agent}"
    );
    let c = parse_request(&at_agent);
    ws_send(
        &mut ws,
        String::from_utf8(sip::Response::for_request(&c, 200, "OK").to_bytes().to_vec()).unwrap(),
    )
    .await;
    ws_send(&mut ws, uas_response(&inv, 487, "Request Terminated", "a3", "<sip:x@y.invalid>"))
        .await;
    // The trunk gets 200 for its CANCEL and 487 for its INVITE.
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = udp_recv(&trunk).await;
        if m.starts_with("SIP/2.0 200") || m.starts_with("SIP/2.0 487") {
            got.push(m.lines().next().unwrap().to_owned());
        }
    }
    got.sort();
    assert_eq!(got, ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"]);
    edge.stop().await;
}

#[tokio::test]
async fn agent_calls_out_with_proxy_auth_and_fails_over_to_the_second_trunk() {
    use sip::digest::{Challenge, respond};
    let edge = Edge::start().await;
    let mut ws = register_alice(&edge).await;
    let primary = UdpSocket::bind((common::TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    let secondary = UdpSocket::bind((common::TRUNK_IP, edge.trunk_ports.1)).await.unwrap();
    let invite = |cseq: u32, auth: &str| {
        format!(
            "INVITE sip:+12025550199@localhost SIP/2.0\r\n\
Via: SIP/2.0/WS k3vq8d0h2m1a.invalid;branch=z9hG4bKout{cseq}\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@localhost>;tag=out1\r\n\
To: <sip:+12025550199@localhost>\r\n\
Call-ID: out-call-1\r\n\
CSeq: {cseq} INVITE\r\n\
{auth}Contact: <sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws;ob>\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    // Unauthenticated: 407 with both challenges.
    ws_send(&mut ws, invite(1, "")).await;
    let reply = ws_recv_until(&mut ws, "SIP/2.0 4").await;
    assert!(reply.starts_with("SIP/2.0 407 Proxy Authentication Required\r\n"), "{reply}");
    let ch = Challenge::parse(header(&reply, "Proxy-Authenticate")[0]).unwrap();
    ws_send(&mut ws, format!("ACK sip:+12025550199@localhost SIP/2.0\r\nVia: SIP/2.0/WS k3vq8d0h2m1a.invalid;branch=z9hG4bKout1\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@localhost>;tag=out1\r\nTo: <sip:+12025550199@localhost>;tag={}\r\nCall-ID: out-call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", "x")).await;

    let auth = respond(&ch, "alice", "secret", "INVITE", "sip:+12025550199@localhost", "cn", 1);
    ws_send(&mut ws, invite(2, &format!("Proxy-Authorization: {auth}\r\n"))).await;
    assert!(ws_recv(&mut ws).await.starts_with("SIP/2.0 100 Trying\r\n"));

    // The primary trunk answers 503: the secondary gets the call.
    let at_primary = udp_recv_until(&primary, "INVITE ").await;
    let port = edge.trunk_ports.0;
    assert!(
        at_primary.starts_with(&format!(
            "INVITE sip:+12025550199@127.0.0.2:{port};transport=udp SIP/2.0\r\n"
        )),
        "{at_primary}"
    );
    let inv = parse_request(&at_primary);
    let busy = uas_response(&inv, 503, "Service Unavailable", "p1", "<sip:p@127.0.0.2>");
    primary.send_to(busy.as_bytes(), edge.udp).await.unwrap();
    // The edge ACKs the 503 (hop by hop, RFC 3261 §17.1.1.3).
    assert!(udp_recv_until(&primary, "ACK ").await.contains("CSeq: 2 ACK\r\n"));

    let at_secondary = udp_recv_until(&secondary, "INVITE ").await;
    let inv = parse_request(&at_secondary);
    let ok = uas_response(
        &inv,
        200,
        "OK",
        "s1",
        &format!("<sip:+12025550199@127.0.0.2:{}>", edge.trunk_ports.1),
    );
    secondary.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let reply = ws_recv_until(&mut ws, "SIP/2.0 2").await;
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    assert!(reply.contains(";tag=s1"), "{reply}");
    edge.stop().await;
}

#[tokio::test]
async fn a_did_rings_its_agent_and_strangers_are_challenged() {
    let edge = Edge::start().await;
    let mut ws = register_alice(&edge).await;
    let trunk = UdpSocket::bind((common::TRUNK_IP, 0)).await.unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let invite = |from: SocketAddr, ruri: &str, branch: &str| {
        format!(
            "INVITE {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP {from};branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+12025550199@{from}>;tag=t-{branch}\r\n\
To: <{ruri}>\r\n\
Call-ID: {branch}@x\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    // The DID +15550100123 belongs to alice (an [[inbound]] rule): it rings her.
    let from = trunk.local_addr().unwrap();
    trunk
        .send_to(invite(from, "sip:+15550100123@127.0.0.1", "did1").as_bytes(), edge.udp)
        .await
        .unwrap();
    let at_agent = ws_recv(&mut ws).await;
    assert!(
        at_agent.starts_with("INVITE sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws SIP/2.0\r\n"),
        "{at_agent}"
    );
    // A DID matching a pattern rule for the support group rings its members (alice).
    let grp = invite(from, "sip:+15550100125@127.0.0.1", "grp1");
    trunk.send_to(grp.as_bytes(), edge.udp).await.unwrap();
    let at_agent = ws_recv_until(&mut ws, "INVITE ").await;
    assert!(at_agent.contains("Call-ID: grp1@x\r\n"), "{at_agent}");
    // Someone who is neither a trunk nor trusted nor authenticated is challenged, not routed.
    let from = stranger.local_addr().unwrap();
    stranger
        .send_to(invite(from, "sip:+12025550199@127.0.0.1", "s1").as_bytes(), edge.udp)
        .await
        .unwrap();
    let reply = udp_recv_until(&stranger, "SIP/2.0 4").await;
    assert!(reply.starts_with("SIP/2.0 407 "), "{reply}");
    edge.stop().await;
}

#[tokio::test]
async fn per_source_rate_limit_spares_emergency_calls() {
    let edge = Edge::start_tuned(false, |c| c.limits.per_source_rps = 5).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..8 {
        sock.send_to(options(&format!("rl{i}"), &format!("rl{i}"), "UDP").as_bytes(), edge.udp)
            .await
            .unwrap();
    }
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(status_line(udp_recv(&sock).await.as_bytes()));
    }
    assert_eq!(
        statuses.iter().filter(|s| s.as_str() == "SIP/2.0 200 OK").count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| s.starts_with("SIP/2.0 503")).count(), 3, "{statuses:?}");
    // Over the limit, an emergency call still goes through to the core.
    let from = sock.local_addr().unwrap();
    let sos = format!(
        "INVITE sip:911@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKsos1\r\nMax-Forwards: 70\r\n\
From: <sip:alice@localhost>;tag=s1\r\nTo: <sip:911@127.0.0.1>\r\nCall-ID: sos1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(sos.as_bytes(), edge.udp).await.unwrap();
    let reply = udp_recv(&sock).await;
    assert!(!reply.starts_with("SIP/2.0 503"), "{reply}");
    assert!(reply.contains("Call-ID: sos1\r\n"), "{reply}");
    edge.stop().await;
}

#[tokio::test]
async fn admin_api_registrations_dialplan_and_agents() {
    let edge = Edge::start().await;
    let _ws = register_alice(&edge).await;
    let token = Some(edge.token.as_str());
    let (status, body) = http(edge.admin, "GET", "/api/registrations", token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""aor":"alice""#), "{body}");
    assert!(body.contains(r#""transport":"WS""#), "{body}");
    assert!(body.contains(r#""via_flow":true"#), "{body}");

    let (status, body) = http(edge.admin, "GET", "/api/dialplan", token).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""name":"primary""#)
            && body.contains(r#""trunks":["primary","secondary"]"#),
        "{body}"
    );

    let (status, body) = http(edge.admin, "GET", "/api/agents", token).await;
    assert_eq!(status, 200);
    assert!(body.starts_with('[') && body.contains(r#""id":"alice""#), "{body}");
    assert!(!body.contains("secret"), "no credentials in the API: {body}");
    assert_eq!(http(edge.admin, "GET", "/api/agents/nobody", token).await.0, 404);

    // A bad dialplan file: the reload is refused with file:line, the old table stays.
    let plans = edge.data.join("dialplans");
    std::fs::write(plans.join("zz-bad.toml"), "[[route]]\npattern = '('\ntrunks = ['primary']\n")
        .unwrap();
    let (status, body) = http(edge.admin, "POST", "/api/dialplan/reload", token).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(r#""field":"dialplan""#) && body.contains("zz-bad.toml:1:"), "{body}");
    let (_, body) = http(edge.admin, "GET", "/api/dialplan", token).await;
    assert!(body.contains(r#""name":"primary""#), "{body}");
    std::fs::remove_file(plans.join("zz-bad.toml")).unwrap();
    let (status, body) = http(edge.admin, "POST", "/api/dialplan/reload", token).await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = http(edge.admin, "GET", "/metrics", None).await;
    assert!(metrics.contains("lifeline_dialplan_reload_failures_total 1"), "{metrics}");
    assert!(metrics.contains("lifeline_dialplan_reloads_total 1"), "{metrics}");
    edge.stop().await;
}

#[tokio::test]
async fn a_trunk_failing_its_probe_is_skipped() {
    use sip::digest::{Challenge, respond};
    let edge = Edge::start().await;
    let primary = UdpSocket::bind((common::TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    // The "dead" trunk refuses TCP connections: its first probe fails at once.
    let mut down = false;
    for _ in 0..100 {
        let (_, metrics) = http(edge.admin, "GET", "/metrics", None).await;
        if metrics.contains("lifeline_trunk_up{trunk=\"dead\"} 0") {
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(down, "the dead trunk was never marked down");
    // A call routed to [dead, primary] goes straight to the primary.
    let mut ws = register_alice(&edge).await;
    let invite = |cseq: u32, auth: &str| {
        format!(
            "INVITE sip:+442071234567@localhost SIP/2.0\r\n\
Via: SIP/2.0/WS k3vq8d0h2m1a.invalid;branch=z9hG4bKuk{cseq}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@localhost>;tag=uk1\r\n\
To: <sip:+442071234567@localhost>\r\n\
Call-ID: uk-call\r\n\
CSeq: {cseq} INVITE\r\n\
{auth}Content-Length: 0\r\n\r\n"
        )
    };
    ws_send(&mut ws, invite(1, "")).await;
    let reply = ws_recv_until(&mut ws, "SIP/2.0 407").await;
    let ch = Challenge::parse(header(&reply, "Proxy-Authenticate")[0]).unwrap();
    let auth = respond(&ch, "alice", "secret", "INVITE", "sip:+442071234567@localhost", "c", 1);
    ws_send(&mut ws, invite(2, &format!("Proxy-Authorization: {auth}\r\n"))).await;
    let at_primary = udp_recv_until(&primary, "INVITE ").await;
    assert!(at_primary.contains("Call-ID: uk-call\r\n"), "{at_primary}");
    let busy =
        uas_response(&parse_request(&at_primary), 486, "Busy Here", "b", "<sip:b@127.0.0.2>");
    primary.send_to(busy.as_bytes(), edge.udp).await.unwrap();
    assert!(ws_recv_until(&mut ws, "SIP/2.0 486").await.contains("Call-ID: uk-call\r\n"));
    edge.stop().await;
}

#[tokio::test]
async fn a_changed_dialplan_file_is_reloaded_and_a_bad_one_is_not() {
    let edge = Edge::start().await;
    let token = Some(edge.token.as_str());
    let plans = edge.data.join("dialplans");
    let wait_for = async |needle: &str, present: bool| {
        for _ in 0..100 {
            let (_, body) = http(edge.admin, "GET", "/api/dialplan", token).await;
            if body.contains(needle) == present {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    std::fs::write(
        plans.join("extra.toml"),
        "[[trunk]]\nname = \"extra\"\nkind = \"direct-routing\"\nuri = \"sip:127.0.0.9\"\n",
    )
    .unwrap();
    assert!(wait_for(r#""name":"extra""#, true).await, "the new file was not picked up");
    // A broken edit is refused: the running table keeps the trunk.
    std::fs::write(
        plans.join("extra.toml"),
        "[[trunk]]\nname = \"extra\"\nkind = \"sideways\"\nuri = \"sip:127.0.0.9\"\n",
    )
    .unwrap();
    let mut refused = false;
    for _ in 0..100 {
        let (_, metrics) = http(edge.admin, "GET", "/metrics", None).await;
        if metrics.contains("lifeline_dialplan_reload_failures_total 1") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the broken file was not noticed");
    assert!(wait_for(r#""name":"extra""#, true).await);
    edge.stop().await;
}

#[tokio::test]
async fn an_in_dialog_request_to_the_edge_itself_gets_481_not_a_loop() {
    // A client that learnt no Contact sends its BYE to the Request-URI of its INVITE: the edge.
    // Forwarding it would send it to the edge again (482 from itself); it is answered 481.
    let edge = Edge::start().await;
    let bye = format!(
        "BYE sip:service@{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKself1\r\n\
Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:service@{0}>;tag=2\r\nCall-ID: self-1\r\n\
CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        edge.udp
    );
    let reply = udp_exchange(edge.udp, bye.as_bytes()).await.expect("an answer");
    assert_eq!(status_line(&reply), "SIP/2.0 481 Call/Transaction Does Not Exist");
    edge.stop().await;
}

/// An initial INVITE from a stranger with a preloaded Route to the edge is challenged like any
/// other, and never relayed to the host of its Request-URI (it was, once: an open relay).
#[tokio::test]
async fn a_preloaded_route_to_the_edge_is_no_way_around_authentication() {
    let edge = Edge::start().await;
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let victim = UdpSocket::bind("127.0.0.9:0").await.unwrap();
    let me = stranger.local_addr().unwrap();
    let target = victim.local_addr().unwrap();
    for (ruri, call) in [
        (format!("sip:+12025550123@{target}"), "relay-1"),
        ("sip:+12025550123@localhost".to_owned(), "relay-2"),
    ] {
        let invite = format!(
            "INVITE {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bK{call};rport\r\n\
Route: <sip:{};lr>\r\n\
Max-Forwards: 70\r\n\
From: <sip:mallory@example.com>;tag={call}\r\n\
To: <{ruri}>\r\n\
Call-ID: {call}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:mallory@{me}>\r\n\
Content-Length: 0\r\n\r\n",
            edge.udp
        );
        stranger.send_to(invite.as_bytes(), edge.udp).await.unwrap();
        let reply = udp_recv_until(&stranger, "SIP/2.0 4").await;
        assert!(reply.starts_with("SIP/2.0 407 "), "{reply}");
    }
    let mut buf = [0u8; 4096];
    let relayed =
        tokio::time::timeout(Duration::from_millis(500), victim.recv_from(&mut buf)).await;
    assert!(relayed.is_err(), "the edge relayed a stranger's INVITE");
    edge.stop().await;
}
