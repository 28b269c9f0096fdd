//! What the black-box tests share: the edge started in-process on port 0 ([`Edge`]), a
//! directory per test ([`TempDir`]), and in modules: port numbers for peers told a port
//! before they bind it ([`ports`]), SIPp as a peer ([`sipp`]), the real binary as an operator
//! runs it ([`binary`]), an SMTP relay ([`smtp`]), a scripted user agent's helpers ([`ua`]),
//! a browser agent over WebSocket with str0m's WebRTC ([`webrtc`]).

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use lifeline::app::{App, Binds};
use lifeline::config::{Config, Listen, ListenTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

pub mod anchored;
pub mod binary;
pub mod ports;
pub mod sipp;
pub mod smtp;
pub mod ua;
pub mod webrtc;

/// The dialplan of the black-box tests: two trunks on 127.0.0.2 (ports PRIMARY and
/// SECONDARY, filled in at start), US numbers routed to the primary with failover to the
/// secondary, and DID +15550100123 ringing alice.
pub const TEST_DIALPLAN: &str = r#"
[[trunk]]
name = "primary"
kind = "direct-offer"
uri = "sip:127.0.0.2:PRIMARY;transport=udp"
sources = ["127.0.0.2/32"]
numbers = ["+15550100000-+15550100999"]

[[trunk]]
name = "secondary"
kind = "direct-offer"
uri = "sip:127.0.0.2:SECONDARY;transport=udp"

[[trunk]]
name = "dead"
kind = "direct-offer"
uri = "sip:127.0.0.2:1;transport=tcp"

[[route]]
pattern = '^\+1[2-9]\d{9}$'
trunks = ["primary", "secondary"]

[[route]]
pattern = '^\+44'
trunks = ["dead", "primary"]

[[inbound]]
did = "+15550100123"
to = "agent:alice"

[[inbound]]
pattern = '^\+1555010012[4-9]$'
to = "group:support"
"#;

/// The agents of the black-box tests: alice (password "secret") in group "support".
pub const SEED: &str = "[[agent]]\nid = \"alice\"\npassword = \"secret\"\n\n[[group]]\nid = \"support\"\nmembers = [\"alice\"]\n";

/// The address test trunks send from.
pub const TRUNK_IP: &str = "127.0.0.2";

/// A running edge and what a test needs to reach it.
pub struct Edge {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub web: SocketAddr,
    /// The media anchor's WebRTC socket (`None` with `[media] anchor = "never"`).
    pub webrtc: Option<SocketAddr>,
    /// The UDP ports of the dialplan's primary and secondary trunks on [`TRUNK_IP`].
    pub trunk_ports: (u16, u16),
    pub admin: SocketAddr,
    /// The generated admin token, and the data directory it lives in.
    pub token: String,
    pub data: std::path::PathBuf,
    pub tls: Option<(SocketAddr, rustls::pki_types::CertificateDer<'static>)>,
    /// Where the test certificate and key were written; removed by `stop`.
    tmp: Option<std::path::PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Edge {
    pub async fn start() -> Edge {
        Edge::start_with(false).await
    }

    /// Starts the edge on port 0; with `with_tls`, also a TLS listener with a fresh
    /// self-signed certificate (returned for the client to trust).
    pub async fn start_with(with_tls: bool) -> Edge {
        Edge::start_tuned(with_tls, |_| {}).await
    }

    /// [`Edge::start_with`], with a last word on the configuration.
    pub async fn start_tuned(with_tls: bool, tune: impl FnOnce(&mut Config)) -> Edge {
        Edge::start_opts(Opts { tls: with_tls, ..Opts::default() }, tune).await
    }

    /// The edge with everything a test may choose: see [`Opts`].
    pub async fn start_opts(opts: Opts, tune: impl FnOnce(&mut Config)) -> Edge {
        // RUST_LOG=lifeline=debug cargo test --test NAME: the edge's log in the test output.
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let with_tls = opts.tls;
        let any = |transport| Listen { transport, addr: "127.0.0.1:0".parse().unwrap() };
        let mut config = Config::embedded();
        config.limits.max_message_bytes = 4096;
        config.sip.listen = vec![any(ListenTransport::Udp), any(ListenTransport::Tcp)];
        config.web.listen = "127.0.0.1:0".parse().unwrap();
        config.admin.listen = "127.0.0.1:0".parse().unwrap();
        // Any free port for the WebRTC socket: tests run side by side.
        config.media.webrtc_port = 0;
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data = opts.data.clone().unwrap_or_else(|| {
            scratch().join(format!("lifeline-edge-{}-{run}", std::process::id()))
        });
        config.node.data_dir = data.clone();
        // Loopback has room for several hosts: the test trunk sends from 127.0.0.2, agents
        // from 127.0.0.1, so the dialplan can tell them apart by source address.
        let plans = data.join("dialplans");
        std::fs::create_dir_all(&plans).unwrap();
        // Ports the trunks (SIPp, a test's socket) bind later: reserved, see `ports`.
        let trunk_ports = opts.trunk_ports.unwrap_or_else(|| (ports::reserve(), ports::reserve()));
        let plan = opts
            .plan
            .as_deref()
            .unwrap_or(TEST_DIALPLAN)
            .replace("PRIMARY", &trunk_ports.0.to_string())
            .replace("SECONDARY", &trunk_ports.1.to_string());
        std::fs::write(plans.join("test.toml"), plan).unwrap();
        config.dialplan.dir = plans;
        config.web.allowed_origins = vec!["https://agents.example.com".into()];
        let mut cert_der = None;
        let mut tmp = None;
        if with_tls {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("lifeline-tls-{}-{n}", std::process::id()));
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
            tmp = Some(dir);
        }
        // The agents, imported into the store at start like an operator's seed file.
        let seed = data.join("agents.toml");
        std::fs::write(&seed, opts.seed.as_deref().unwrap_or(SEED)).unwrap();
        config.agents.seed = Some(seed);
        tune(&mut config);
        let binds = Binds::bind(&config).await.unwrap();
        let addrs = binds.local_addrs();
        let find = |t| addrs.iter().find(|(tt, _)| *tt == t).unwrap().1;
        let (udp, tcp) = (find(ListenTransport::Udp), find(ListenTransport::Tcp));
        let tls = cert_der.map(|der| (find(ListenTransport::Tls), der));
        let web = binds.web_addr().unwrap();
        let admin = binds.admin_addr().unwrap();
        let webrtc = binds.webrtc_addr();
        let (stop, stopped) = oneshot::channel();
        let app = App::build(config, binds).unwrap();
        let task = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        let token = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
        Edge {
            udp,
            tcp,
            web,
            webrtc,
            trunk_ports,
            admin,
            token,
            data,
            tls,
            tmp,
            stop: Some(stop),
            task,
        }
    }

    /// One HTTP/1.1 request with the bearer token and an optional JSON body; returns (status,
    /// body as JSON, `Null` when empty).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut s = tokio::net::TcpStream::connect(self.admin).await.unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
    Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.token,
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.split(' ').nth(1).unwrap().parse().unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        let json = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
        };
        (status, json)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let mut s = tokio::net::TcpStream::connect(self.admin).await.unwrap();
        let req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
    }

    /// The PEM file of the TLS listener's self-signed certificate (with `tls`), for clients
    /// that read their trust anchors from a file.
    pub fn tls_cert_pem(&self) -> Option<std::path::PathBuf> {
        self.tmp.as_ref().map(|dir| dir.join("cert.pem"))
    }

    pub async fn stop(self) {
        let data = self.stop_keeping_data().await;
        let _ = std::fs::remove_dir_all(&data);
    }

    /// Stops the edge and leaves its data directory (store, dialplans) for a restart with
    /// [`Opts::data`]; returns it.
    pub async fn stop_keeping_data(mut self) -> std::path::PathBuf {
        let _ = self.stop.take().unwrap().send(());
        // Longer than the edge's shutdown grace, which waits for unanswered transactions.
        tokio::time::timeout(Duration::from_secs(10), &mut self.task).await.unwrap().unwrap();
        if let Some(dir) = &self.tmp {
            let _ = std::fs::remove_dir_all(dir);
        }
        self.data.clone()
    }

    /// Kills the edge without a graceful stop (its task is aborted mid-flight, as a crash
    /// would), leaving the data directory; returns it.
    pub async fn kill(self) -> std::path::PathBuf {
        self.task.abort();
        let _ = self.task.await;
        self.data.clone()
    }
}

/// Where the edges' data directories go: memory (`/dev/shm`) when the machine has it. The
/// store commits emergency writes with `synchronous=FULL`; on a loaded CI disk one fsync can
/// take longer than the edge waits for a callback lease (1.5 s), and the test would see the
/// documented fallback number instead of the lease.
pub fn scratch() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() { shm.to_owned() } else { std::env::temp_dir() }
}

/// A directory of its own for one test (under [`scratch`]: the edge's data, SIPp's files, the
/// binary's configuration, a relay's mail); removed on drop unless the test failed, when what
/// is in it tells what happened.
#[derive(Debug)]
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = scratch().join(format!("lifeline-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// What [`Edge::start_opts`] may change.
#[derive(Debug, Default, Clone)]
pub struct Opts {
    /// A TLS listener with a fresh self-signed certificate.
    pub tls: bool,
    /// The dialplan text (`PRIMARY` and `SECONDARY` become the trunk ports); default
    /// [`TEST_DIALPLAN`].
    pub plan: Option<String>,
    /// The agents seed; default [`SEED`].
    pub seed: Option<String>,
    /// The data directory of an earlier run (a restart); default a fresh one.
    pub data: Option<std::path::PathBuf>,
    /// The trunk ports of an earlier run, or ports the test reserved ([`ports::reserve`]);
    /// default two reserved ones.
    pub trunk_ports: Option<(u16, u16)>,
}
