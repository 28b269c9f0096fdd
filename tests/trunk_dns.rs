//! Trunks named by DNS name and TLS toward trunks (issue 5 §2, §5), against the edge in
//! process: a trunk at `localhost` (resolved off the core), one at `nonexistent.invalid`
//! (RFC 6761: never resolves) skipped without delay, ordinary and emergency calls, source
//! matching by a resolved address, and a TLS trunk whose certificate comes from a test CA.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ua::{header, parse_request, uas_response, udp_recv_until};
use common::{Edge, Opts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// An INVITE from a trusted caller on 127.0.0.2 (no authentication, outbound rules).
fn invite(
    to_user: &str,
    edge: std::net::SocketAddr,
    from: std::net::SocketAddr,
    id: &str,
) -> String {
    format!(
        "INVITE sip:{to_user}@{edge} SIP/2.0\r\n\
Via: SIP/2.0/UDP {from};branch=z9hG4bK{id}\r\n\
Max-Forwards: 70\r\n\
From: <sip:caller@{from}>;tag=c-{id}\r\n\
To: <sip:{to_user}@{edge}>\r\n\
Call-ID: {id}@caller\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:caller@{from}>\r\n\
Content-Length: 0\r\n\r\n"
    )
}

/// Waits until `/metrics` has `line`.
async fn wait_metric(edge: &Edge, line: &str, within: Duration) {
    let until = Instant::now() + within;
    loop {
        let m = edge.metrics().await;
        if m.lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < until, "no `{line}` in\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The trunk named `name` in `GET /api/dialplan`, once its `dns` is `state`.
async fn wait_dns(edge: &Edge, name: &str, state: &str, within: Duration) -> serde_json::Value {
    let until = Instant::now() + within;
    loop {
        let (status, plan) = edge.api("GET", "/api/dialplan", None).await;
        assert_eq!(status, 200);
        let trunk =
            plan["trunks"].as_array().unwrap().iter().find(|t| t["name"] == name).cloned().unwrap();
        if trunk["dns"] == state {
            return trunk;
        }
        assert!(Instant::now() < until, "{name} is not {state}: {trunk}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn named_trunks_are_resolved_off_the_core_and_an_unresolvable_one_is_skipped() {
    // The trunk listens on 127.0.0.1 (what `localhost` resolves to); the caller sends from
    // 127.0.0.2, a trusted network, so that the two are told apart by source.
    let trunk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = trunk.local_addr().unwrap().port();
    let plan = format!(
        r#"
[[trunk]]
name = "nowhere"
kind = "direct-offer"
uri = "sip:nonexistent.invalid:5060;transport=udp"
probe = false

[[trunk]]
name = "named"
kind = "direct-offer"
uri = "sip:localhost:{port};transport=udp"
probe = false

[[route]]
pattern = '^\+1[2-9]\d{{9}}$'
trunks = ["nowhere", "named"]

[[trusted]]
cidr = "127.0.0.2/32"

[[inbound]]
did = "+15550100123"
to = "agent:alice"
"#
    );
    let edge = Edge::start_opts(Opts { plan: Some(plan), ..Opts::default() }, |_| {}).await;
    let named = wait_dns(&edge, "named", "resolved", Duration::from_secs(10)).await;
    assert!(named["addresses"].as_array().unwrap().iter().any(|a| a == "127.0.0.1"), "{named}");
    wait_metric(&edge, "lifeline_trunk_up{trunk=\"named\"} 1", Duration::from_secs(5)).await;
    let caller = UdpSocket::bind((common::TRUNK_IP, 0)).await.unwrap();
    let me = caller.local_addr().unwrap();

    // An ordinary call: `nowhere` has no address (its lookup failed, or is still running:
    // either way it is not waited for), `named` gets the INVITE at once, with its name in the
    // Request-URI.
    let sent = Instant::now();
    caller
        .send_to(invite("+12025550199", edge.udp, me, "dns1").as_bytes(), edge.udp)
        .await
        .unwrap();
    let at_trunk = udp_recv_until(&trunk, "INVITE ").await;
    assert!(sent.elapsed() < Duration::from_secs(1), "took {:?}", sent.elapsed());
    assert!(
        at_trunk.starts_with(&format!(
            "INVITE sip:+12025550199@localhost:{port};transport=udp SIP/2.0\r\n"
        )),
        "{at_trunk}"
    );
    let inv = parse_request(&at_trunk);
    let ok = uas_response(&inv, 200, "OK", "t1", &format!("<sip:+12025550199@127.0.0.1:{port}>"));
    trunk.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let reply = udp_recv_until(&caller, "SIP/2.0 2").await;
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");

    // An emergency call (911 from the trusted network) takes the same trunks: never delayed
    // by DNS, `nowhere` skipped.
    let sent = Instant::now();
    caller.send_to(invite("911", edge.udp, me, "dns911").as_bytes(), edge.udp).await.unwrap();
    let at_trunk = udp_recv_until(&trunk, "INVITE ").await;
    assert!(sent.elapsed() < Duration::from_secs(1), "took {:?}", sent.elapsed());
    assert!(at_trunk.starts_with(&format!("INVITE sip:911@localhost:{port}")), "{at_trunk}");
    assert_eq!(header(&at_trunk, "Priority"), ["emergency"], "{at_trunk}");
    let inv = parse_request(&at_trunk);
    let ok = uas_response(&inv, 200, "OK", "t2", &format!("<sip:911@127.0.0.1:{port}>"));
    trunk.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let reply = udp_recv_until(&caller, "SIP/2.0 2").await;
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");

    // A request from the trunk's resolved address is from the trunk: the inbound rules apply
    // (alice is not registered: 480), not the challenge a stranger gets (407).
    let from_trunk = trunk.local_addr().unwrap();
    trunk
        .send_to(invite("+15550100123", edge.udp, from_trunk, "dnsin").as_bytes(), edge.udp)
        .await
        .unwrap();
    let reply = udp_recv_until(&trunk, "SIP/2.0 4").await;
    assert!(reply.starts_with("SIP/2.0 480 "), "{reply}");

    // `nonexistent.invalid` ends failed (RFC 6761), and is reported down.
    let nowhere = wait_dns(&edge, "nowhere", "failed", Duration::from_secs(10)).await;
    assert_eq!(nowhere["addresses"], serde_json::json!([]), "{nowhere}");
    wait_metric(&edge, "lifeline_trunk_up{trunk=\"nowhere\"} 0", Duration::from_secs(5)).await;
    edge.stop().await;
}

/// A test CA, and a certificate for `localhost` it signed: (CA PEM, server chain, key).
fn test_ca() -> (
    String,
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "lifeline test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    (ca_cert.pem(), vec![leaf.der().clone()], der)
}

/// Reads one SIP message (no body) from a stream.
async fn read_message<S: tokio::io::AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let msg: Vec<u8> = buf.drain(..end + 4).collect();
            return String::from_utf8(msg).unwrap();
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("nothing over TLS")
            .unwrap();
        assert!(n > 0, "the edge closed the TLS connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_tls_trunk_gets_calls_over_a_verified_reused_connection() {
    let (ca_pem, chain, key) = test_ca();
    let dir = common::scratch().join(format!("lifeline-tlstrunk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    // Two trunks with the same certificate: `untrusted` trusts the system's roots (which do
    // not know the test CA), `secure` trusts the test CA (`tls_ca`).
    let untrusted = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (p1, p2) = (untrusted.local_addr().unwrap().port(), secure.local_addr().unwrap().port());
    let plan = format!(
        r#"
[[trunk]]
name = "untrusted"
kind = "direct-offer"
uri = "sip:localhost:{p1};transport=tls"
probe = false

[[trunk]]
name = "secure"
kind = "direct-offer"
uri = "sip:localhost:{p2};transport=tls"
tls_ca = "{}"
probe = false

[[route]]
pattern = '^\+1[2-9]\d{{9}}$'
trunks = ["untrusted", "secure"]

[[trusted]]
cidr = "127.0.0.2/32"
"#,
        ca_file.display()
    );
    // A `tls:` listener: the Via's sent-by toward a TLS trunk.
    let edge =
        Edge::start_opts(Opts { plan: Some(plan), tls: true, ..Opts::default() }, |_| {}).await;
    wait_dns(&edge, "secure", "resolved", Duration::from_secs(10)).await;
    let caller = UdpSocket::bind((common::TRUNK_IP, 0)).await.unwrap();
    let me = caller.local_addr().unwrap();
    caller
        .send_to(invite("+12025550199", edge.udp, me, "tls1").as_bytes(), edge.udp)
        .await
        .unwrap();

    // The untrusted trunk: the edge refuses its certificate (the handshake fails here with
    // the edge's alert), and fails over. Counted for every call.
    let refused = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let first = {
        let (refused, acceptor) = (refused.clone(), acceptor.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = untrusted.accept().await {
                if acceptor.accept(tcp).await.is_err() {
                    refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
    };

    // The secure trunk: SNI is its host name, the INVITE comes over TLS.
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(5), secure.accept())
        .await
        .expect("no connection to the second trunk")
        .unwrap();
    let mut tls = acceptor.accept(tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.server_name(), Some("localhost"));
    let mut buf = Vec::new();
    let at_trunk = read_message(&mut tls, &mut buf).await;
    assert!(
        at_trunk.starts_with(&format!(
            "INVITE sip:+12025550199@localhost:{p2};transport=tls SIP/2.0\r\n"
        )),
        "{at_trunk}"
    );
    assert!(header(&at_trunk, "Via")[0].starts_with("SIP/2.0/TLS "), "{at_trunk}");
    let inv = parse_request(&at_trunk);
    let ok = uas_response(
        &inv,
        200,
        "OK",
        "s1",
        &format!("<sip:+12025550199@127.0.0.1:{p2};transport=tls>"),
    );
    tls.write_all(ok.as_bytes()).await.unwrap();
    let reply = udp_recv_until(&caller, "SIP/2.0 2").await;
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");

    // A second call reuses the connection: the INVITE arrives on it, and no new one is opened.
    caller
        .send_to(invite("+12025550100", edge.udp, me, "tls2").as_bytes(), edge.udp)
        .await
        .unwrap();
    let at_trunk = loop {
        let m = read_message(&mut tls, &mut buf).await;
        if m.starts_with("INVITE ") {
            break m;
        }
    };
    assert!(at_trunk.contains("Call-ID: tls2@caller\r\n"), "{at_trunk}");
    let inv = parse_request(&at_trunk);
    let busy = uas_response(&inv, 486, "Busy Here", "s2", "<sip:x@127.0.0.1>");
    tls.write_all(busy.as_bytes()).await.unwrap();
    let reply = udp_recv_until(&caller, "SIP/2.0 4").await;
    assert!(reply.starts_with("SIP/2.0 486 "), "{reply}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), secure.accept()).await.is_err(),
        "a second connection was opened"
    );
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 2);
    first.abort();
    edge.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
