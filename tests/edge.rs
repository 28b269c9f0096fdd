//! Black-box tests of the running edge over real sockets on loopback (port 0).

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use lifeline::app::{App, Binds};
use lifeline::config::{Config, Listen, ListenTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;

struct Edge {
    udp: SocketAddr,
    tcp: SocketAddr,
    tls: Option<(SocketAddr, rustls::pki_types::CertificateDer<'static>)>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Edge {
    async fn start() -> Edge {
        Edge::start_with(false).await
    }

    /// Starts the edge on port 0; with `with_tls`, also a TLS listener with a fresh
    /// self-signed certificate (returned for the client to trust).
    async fn start_with(with_tls: bool) -> Edge {
        let any = |transport| Listen {
            transport,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let mut config = Config::embedded();
        config.limits.max_message_bytes = 4096;
        config.sip.listen = vec![any(ListenTransport::Udp), any(ListenTransport::Tcp)];
        let mut cert_der = None;
        if with_tls {
            let dir = std::env::temp_dir().join(format!("lifeline-tls-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
            std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
            std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
            config.tls = Some(lifeline::config::Tls {
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
            });
            config.sip.listen.push(any(ListenTransport::Tls));
            cert_der = Some(cert.cert.der().clone());
        }
        let binds = Binds::bind(&config).await.unwrap();
        let addrs = binds.local_addrs();
        let find = |t| addrs.iter().find(|(tt, _)| *tt == t).unwrap().1;
        let (udp, tcp) = (find(ListenTransport::Udp), find(ListenTransport::Tcp));
        let tls = cert_der.map(|der| (find(ListenTransport::Tls), der));
        let (stop, stopped) = oneshot::channel();
        let app = App::build(config, binds).unwrap();
        let task = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        Edge {
            udp,
            tcp,
            tls,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

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
    let reply = udp_exchange(edge.udp, options("1", "c1", "UDP").as_bytes())
        .await
        .unwrap();
    assert_eq!(status_line(&reply), "SIP/2.0 200 OK");
    assert!(String::from_utf8_lossy(&reply).contains("Call-ID: c1\r\n"));

    let broken = options("2", "c2", "UDP").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    let reply = udp_exchange(edge.udp, broken.as_bytes()).await.unwrap();
    assert_eq!(status_line(&reply), "SIP/2.0 400 CSeq Method Mismatch");

    // A malformed response and raw garbage get no answer, and the edge keeps serving.
    assert!(
        udp_exchange(edge.udp, b"SIP/2.0 200 OK\r\n\r\n")
            .await
            .is_none()
    );
    assert!(udp_exchange(edge.udp, &[0xff; 300]).await.is_none());
    // Over the size limit: dropped.
    let mut huge = options("3", "c3", "UDP");
    huge.insert_str(huge.len() - 4, &format!("\r\nX-Pad: {}", "a".repeat(5000)));
    assert!(udp_exchange(edge.udp, huge.as_bytes()).await.is_none());
    let reply = udp_exchange(edge.udp, options("4", "c4", "UDP").as_bytes())
        .await
        .unwrap();
    assert_eq!(status_line(&reply), "SIP/2.0 200 OK");
    edge.stop().await;
}

async fn read_some(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0; 65536];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
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
    assert!(
        read_some(&mut bad).await.is_empty(),
        "connection should close"
    );

    // An endless header section is cut at the size limit.
    let mut big = TcpStream::connect(edge.tcp).await.unwrap();
    let _ = big.write_all(&vec![b'A'; 8192]).await;
    assert!(
        read_some(&mut big).await.is_empty(),
        "connection should close"
    );

    // The first connection is unharmed.
    s.write_all(options("t3", "tc3", "TCP").as_bytes())
        .await
        .unwrap();
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
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(options("s1", "tls1", "TLS").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status_line(&buf[..n]), "SIP/2.0 200 OK");

    // Plain SIP on the TLS port is not a handshake: at most a TLS alert comes back, never SIP.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    let probe = options("s2", "tls2", "TCP");
    plain.write_all(probe.as_bytes()).await.unwrap();
    let reply = read_some(&mut plain).await;
    assert!(!reply.starts_with(b"SIP/"), "{reply:?}");
    edge.stop().await;
}
