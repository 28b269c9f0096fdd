//! Demo mode as a newcomer meets it: the real binary, run with no configuration file in a
//! directory holding only the repository's `dialplans/` (what `cargo run -- run` from the
//! repository root sees). A SIP phone on UDP logs in as the demo agent, calls an ordinary
//! number and 933 (the demo carrier answers and echoes the RTP it gets), and the demo PSAP
//! calls the leased callback number back; then the same in the reference softphone in headless
//! Chromium, with audio both ways. With a configuration file, none of it exists.
//!
//! The embedded defaults bind fixed loopback ports (SIP 5060, web 8080, admin 8088) and the
//! demo carrier 127.0.0.2:5090: these tests take a lock so they never run together, and fail
//! at once, saying which port, when another program holds one.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

mod common;

use common::ua::{header, parse_request, udp_recv_until};

/// The fixed ports of the embedded defaults and the demo carrier.
const EDGE_SIP: &str = "127.0.0.1:5060";
const WEB: &str = "127.0.0.1:8080";
const ADMIN: &str = "127.0.0.1:8088";
const CARRIER: &str = "127.0.0.2:5090";

/// One test at a time: they share the fixed ports.
static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fails the test, naming the port, when something else holds one of the fixed ports.
fn ports_are_free() {
    let tcp = |a: &str| std::net::TcpListener::bind(a).map(drop);
    let udp = |a: &str| std::net::UdpSocket::bind(a).map(drop);
    for (what, result) in [
        ("udp", udp(EDGE_SIP)),
        ("tcp", tcp(EDGE_SIP)),
        ("tcp", tcp(WEB)),
        ("tcp", tcp(ADMIN)),
        ("udp", udp(CARRIER)),
    ] {
        if let Err(e) = result {
            panic!("demo-mode test needs the embedded defaults' fixed ports; {what} is taken: {e}");
        }
    }
}

/// A directory for one run of the binary, with a copy of the repository's dialplans.
fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lifeline-demo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("dialplans")).unwrap();
    let plans = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans");
    for entry in std::fs::read_dir(plans).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, dir.join("dialplans").join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// The binary running in a directory; stopped (SIGTERM, then SIGKILL) and cleaned up on drop.
struct Running {
    child: Option<Child>,
    dir: PathBuf,
    admin: SocketAddr,
}

impl Running {
    /// Starts `lifeline run ARGS` in `dir` and waits until `admin`'s `/ready` says so.
    async fn start(dir: &Path, args: &[&str], admin: SocketAddr) -> Running {
        let log = std::fs::File::create(dir.join("lifeline.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lifeline"))
            .arg("run")
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info,lifeline::demo=debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut running = Running { child: Some(child), dir: dir.to_owned(), admin };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = running.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("lifeline exited at start ({status}):\n{}", running.log());
            }
            if let Ok((200, _)) = http(admin, "GET", "/ready", None).await {
                return running;
            }
            assert!(Instant::now() < deadline, "lifeline never became ready:\n{}", running.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("lifeline.log")).unwrap_or_default()
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/admin.token")).unwrap().trim().to_owned()
    }

    async fn api(&self, method: &str, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = http(self.admin, method, path, Some(&self.token())).await.unwrap();
        let json = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
        };
        (status, json)
    }

    /// Stops the edge as systemd would (SIGTERM) and returns its exit code.
    async fn stop(mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("lifeline did not stop on SIGTERM:\n{}", self.log());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            // A failed test: leave the log where it can be read.
            eprintln!("lifeline log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 request; (status, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

// --- a SIP phone on UDP ----------------------------------------------------------------------

/// The demo agent's phone: a SIP socket and an RTP socket on 127.0.0.1.
struct Phone {
    sip: UdpSocket,
    rtp: UdpSocket,
    user: &'static str,
    password: &'static str,
    edge: SocketAddr,
}

/// What the phone keeps of a dialog to send in-dialog requests (RFC 3261 §12.2.1.1).
struct Dialog {
    call_id: String,
    /// Our From (UAC) or To (UAS), with our tag.
    local: String,
    remote: String,
    target: String,
    route: Vec<String>,
}

impl Phone {
    async fn new(user: &'static str, password: &'static str) -> Phone {
        Phone {
            sip: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            rtp: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            user,
            password,
            edge: EDGE_SIP.parse().unwrap(),
        }
    }

    fn me(&self) -> SocketAddr {
        self.sip.local_addr().unwrap()
    }

    fn sdp(&self) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
            self.rtp.local_addr().unwrap().port()
        )
    }

    async fn send(&self, msg: &str) {
        self.sip.send_to(msg.as_bytes(), self.edge).await.unwrap();
    }

    /// REGISTER with digest authentication (realm `localhost`, the embedded `[sip] domain`).
    async fn register(&self) {
        use sip::digest::{Challenge, respond};
        let (me, user) = (self.me(), self.user);
        let register = |cseq: u32, auth: &str| {
            format!(
                "REGISTER sip:localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bKreg{cseq};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{user}@localhost>\r\n\
From: <sip:{user}@localhost>;tag=reg\r\n\
Call-ID: reg-{me}\r\n\
CSeq: {cseq} REGISTER\r\n\
{auth}Contact: <sip:{user}@{me}>;expires=600\r\n\
Content-Length: 0\r\n\r\n"
            )
        };
        self.send(&register(1, "")).await;
        let reply = udp_recv_until(&self.sip, "SIP/2.0 401").await;
        let challenge = Challenge::parse(header(&reply, "WWW-Authenticate")[0]).unwrap();
        let auth = respond(&challenge, user, self.password, "REGISTER", "sip:localhost", "c1", 1);
        self.send(&register(2, &format!("Authorization: {auth}\r\n"))).await;
        let reply = udp_recv_until(&self.sip, "SIP/2.0 ").await;
        assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    }

    /// Calls `number`: with credentials after a 407 when the edge asks (an emergency number
    /// is never challenged), until the 200; ACKs it. Returns the dialog and the 200.
    async fn call(&self, number: &str, call: &str) -> (Dialog, String) {
        use sip::digest::{Challenge, respond};
        let (me, user) = (self.me(), self.user);
        let ruri = format!("sip:{number}@localhost");
        let from = format!("<sip:{user}@localhost>;tag=t-{call}");
        let sdp = self.sdp();
        let invite = |cseq: u32, auth: &str| {
            format!(
                "INVITE {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bK{call}{cseq};rport\r\n\
Max-Forwards: 70\r\n\
From: {from}\r\n\
To: <{ruri}>\r\n\
Call-ID: {call}\r\n\
CSeq: {cseq} INVITE\r\n\
{auth}Contact: <sip:{user}@{me}>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
        };
        self.send(&invite(1, "")).await;
        let mut cseq = 1;
        let ok = loop {
            let reply = udp_recv_until(&self.sip, "SIP/2.0 ").await;
            let status: u16 = reply[8..11].parse().unwrap();
            match status {
                100..=199 => continue,
                407 if cseq == 1 => {
                    // ACK the 407 (same branch, RFC 3261 §17.1.1.3), then again with credentials.
                    let to = header(&reply, "To")[0];
                    self.send(&format!(
                        "ACK {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call}1;rport\r\n\
Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                    ))
                    .await;
                    let ch = Challenge::parse(header(&reply, "Proxy-Authenticate")[0]).unwrap();
                    let auth = respond(&ch, user, self.password, "INVITE", &ruri, "c2", 1);
                    cseq = 2;
                    self.send(&invite(2, &format!("Proxy-Authorization: {auth}\r\n"))).await;
                }
                200 => break reply,
                _ => panic!("call to {number} failed: {reply}"),
            }
        };
        let dialog = Dialog {
            call_id: call.to_owned(),
            local: from,
            remote: header(&ok, "To")[0].to_owned(),
            target: contact_uri(header(&ok, "Contact")[0]),
            route: header(&ok, "Record-Route").into_iter().rev().map(str::to_owned).collect(),
        };
        self.send(&self.in_dialog(&dialog, "ACK", cseq)).await;
        (dialog, ok)
    }

    /// An in-dialog request along the dialog's route set.
    fn in_dialog(&self, d: &Dialog, method: &str, cseq: u32) -> String {
        let route: String = d.route.iter().map(|r| format!("Route: {r}\r\n")).collect();
        format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{method}{}{cseq};rport\r\n\
Max-Forwards: 70\r\n{route}From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\r\n",
            d.target,
            self.me(),
            d.call_id,
            d.local,
            d.remote,
            d.call_id
        )
    }

    /// Hangs up with BYE and waits for its 200.
    async fn hang_up(&self, d: &Dialog, cseq: u32) {
        self.send(&self.in_dialog(d, "BYE", cseq)).await;
        let reply = udp_recv_until(&self.sip, "SIP/2.0 200").await;
        assert!(reply.contains(&format!("CSeq: {cseq} BYE\r\n")), "{reply}");
    }

    /// Sends one RTP packet to `to` and waits for the same payload to come back from there.
    async fn echoes(&self, to: SocketAddr) {
        let payload: Vec<u8> = (0..160u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut packet = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 0xca, 0xfe, 0xba, 0xbe];
        packet.extend_from_slice(&payload);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 2048];
        // Resent every 200 ms: the first may reach the carrier before the leg has started.
        loop {
            self.rtp.send_to(&packet, to).await.unwrap();
            let got =
                tokio::time::timeout(Duration::from_millis(200), self.rtp.recv_from(&mut buf));
            // Only what comes from `to` counts: a late echo of an earlier call may still arrive.
            if let Ok(Ok((n, from))) = got.await
                && from == to
                && n == 12 + payload.len()
                && buf[12..n] == payload[..]
            {
                assert_eq!(buf[1] & 0x7f, 0, "payload type kept");
                assert_ne!(buf[8..12], packet[8..12], "the carrier's own SSRC");
                return;
            }
            assert!(Instant::now() < deadline, "no echo from {to}");
        }
    }
}

fn contact_uri(contact: &str) -> String {
    let start = contact.find('<').map_or(0, |i| i + 1);
    let end = contact[start..].find('>').map_or(contact.len(), |i| start + i);
    contact[start..end].to_owned()
}

/// Where an SDP body says it receives audio.
fn media_addr(msg: &str) -> SocketAddr {
    let body = msg.split_once("\r\n\r\n").unwrap().1;
    let sdp = body.find("v=0").map_or(body, |i| &body[i..]);
    let ip = sdp.lines().find_map(|l| l.strip_prefix("c=IN IP4 ")).unwrap().trim();
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .unwrap();
    format!("{ip}:{port}").parse().unwrap()
}

#[tokio::test]
async fn without_a_config_the_demo_carrier_answers_echoes_and_calls_back_as_the_psap() {
    let _ports = PORTS.lock().await;
    ports_are_free();
    let dir = workdir("run");
    let edge = Running::start(&dir, &[], ADMIN.parse().unwrap()).await;
    let log = edge.log();
    assert!(log.contains("DEMO MODE"), "{log}");
    assert!(log.contains("alice/alice"), "the demo credentials are logged: {log}");
    // The page a newcomer opens.
    let (status, page) = http(WEB.parse().unwrap(), "GET", "/", None).await.unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<html") || page.contains("<!doctype"), "{page}");
    // The demo agents are there, with everything an emergency call needs.
    let (status, alice) = edge.api("GET", "/api/agents/alice").await;
    assert_eq!(status, 200, "{alice}");
    assert_eq!(alice["warnings"], serde_json::json!([]), "{alice}");
    let (status, body) = edge.api("POST", "/api/demo/psap-callback?hang_up_after=0").await;
    assert_eq!((status, &body["error"]["field"]), (400, &serde_json::json!("hang_up_after")));
    // No emergency call yet: nothing to call back.
    let (status, body) = edge.api("POST", "/api/demo/psap-callback").await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = edge.api("POST", "/api/demo/psap-callback?agent=alice").await;
    assert!(status == 409 && body["error"]["message"].as_str().unwrap().contains("'alice'"));
    assert_eq!(body["error"]["code"], "conflict", "{body}");

    let phone = Phone::new("alice", "alice").await;
    phone.register().await;

    // An ordinary number: the demo carrier answers and echoes.
    let (call, ok) = phone.call("+15551234567", "demo-call-1").await;
    assert!(ok.contains("m=audio ") && ok.contains("RTP/AVP"), "{ok}");
    let carrier_media = media_addr(&ok);
    assert_eq!(carrier_media.ip().to_string(), "127.0.0.2", "{ok}");
    phone.echoes(carrier_media).await;
    phone.hang_up(&call, 3).await;

    // 933, the test emergency number: answered too, and a callback number is leased to alice.
    let (call, ok) = phone.call("933", "demo-call-2").await;
    phone.echoes(media_addr(&ok)).await;
    let (status, leases) = edge.api("GET", "/api/callbacks").await;
    assert_eq!(status, 200);
    assert_eq!(leases[0]["agent"], "alice", "{leases}");
    let did = leases[0]["did"].as_str().unwrap().to_owned();
    assert!(did.starts_with("+155501009"), "from the example pool: {did}");
    phone.hang_up(&call, 2).await;

    // The demo PSAP calls the callback number back: alice's phone rings with RFC 7090's
    // priority, from the edge.
    let (status, placed) = edge.api("POST", "/api/demo/psap-callback").await;
    assert_eq!(status, 202, "{placed}");
    assert_eq!(placed["calling"], did.as_str(), "{placed}");
    assert_eq!(placed["agent"], "alice", "{placed}");
    let call_id = placed["call_id"].as_str().unwrap().to_owned();
    let invite = udp_recv_until(&phone.sip, "INVITE ").await;
    assert_eq!(header(&invite, "Priority"), ["psap-callback"], "{invite}");
    assert_eq!(header(&invite, "Call-ID"), [call_id.as_str()], "{invite}");
    // She answers; the carrier ACKs and echoes her.
    let req = parse_request(&invite);
    let mut answer = sip::Response::for_request(&req, 200, "OK");
    answer.set_to_tag("agent1");
    for rr in header(&invite, "Record-Route") {
        answer.headers_mut().push(sip::HeaderName::RecordRoute, rr.to_owned());
    }
    answer.headers_mut().push(sip::HeaderName::Contact, format!("<sip:alice@{}>", phone.me()));
    answer.set_body(Some("application/sdp"), phone.sdp().into());
    phone.sip.send_to(&answer.to_bytes(), phone.edge).await.unwrap();
    let ack = udp_recv_until(&phone.sip, "ACK ").await;
    assert!(ack.contains(&format!("Call-ID: {call_id}\r\n")), "{ack}");
    phone.echoes(media_addr(&invite)).await;
    // She hangs up (as the UAS of this dialog).
    let callback = Dialog {
        call_id,
        local: format!("{};tag=agent1", header(&invite, "To")[0]),
        remote: header(&invite, "From")[0].to_owned(),
        target: contact_uri(header(&invite, "Contact")[0]),
        route: header(&invite, "Record-Route").into_iter().map(str::to_owned).collect(),
    };
    phone.hang_up(&callback, 1).await;

    assert_eq!(edge.stop().await, Some(0));
}

#[tokio::test]
async fn with_a_config_file_there_is_no_demo_carrier_and_no_demo_agent() {
    let _ports = PORTS.lock().await;
    let free = || SocketAddr::from(([127, 0, 0, 1], common::ports::reserve()));
    for how in ["--config", "./lifeline.toml"] {
        let dir = workdir(if how == "--config" { "config" } else { "dot-toml" });
        // A demo run before left its store here: a configuration must not see it.
        let demo_store =
            lifeline::store::SqliteStore::open(&dir.join("data").join(lifeline::demo::STORE_FILE))
                .unwrap();
        lifeline::demo::seed(&demo_store, "localhost").unwrap();
        drop(demo_store);
        let (web, admin) = (free(), free());
        let config = format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n[web]\nlisten = \"{web}\"\n[admin]\nlisten = \"{admin}\"\n"
        );
        let file = if how == "--config" { "edge.toml" } else { "lifeline.toml" };
        std::fs::write(dir.join(file), config).unwrap();
        let args: &[&str] = if how == "--config" { &["--config", "edge.toml"] } else { &[] };
        let edge = Running::start(&dir, args, admin).await;
        let (status, body) = edge.api("POST", "/api/demo/psap-callback").await;
        assert_eq!(status, 404, "{how}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
        let (status, agents) = edge.api("GET", "/api/agents").await;
        assert_eq!(status, 200);
        assert_eq!(agents, serde_json::json!([]), "{how}: no demo agents");
        // Nothing listens where the demo carrier would.
        let carrier = std::net::UdpSocket::bind(CARRIER);
        assert!(carrier.is_ok(), "{how}: something holds {CARRIER}: {carrier:?}");
        drop(carrier);
        assert!(!edge.log().contains("DEMO MODE"), "{}", edge.log());
        assert_eq!(edge.stop().await, Some(0));
    }
}

/// The README's walk-through in the reference softphone (headless Chromium, driven by
/// `tests/browser/softphone.mjs` as `tests/browser.rs` does): log in as the demo agents, an
/// ordinary call and 933 with audio both ways (the demo carrier's echo through the edge's
/// WebRTC anchor), alice calling bob, and the demo PSAP's call back, rung with the priority
/// banner and answered.
#[tokio::test]
async fn the_walkthrough_in_the_browser() {
    use tokio::io::AsyncBufReadExt;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        repo.join("tests/browser/node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run scripts/test (it runs npm ci there)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "{chromium} is missing: run scripts/test");
    let _ports = PORTS.lock().await;
    ports_are_free();
    let dir = workdir("browser");
    let edge = Running::start(&dir, &[], ADMIN.parse().unwrap()).await;
    let out = dir.join("browser");
    std::fs::create_dir_all(&out).unwrap();
    let mut node = tokio::process::Command::new("node")
        .arg(repo.join("tests/browser/softphone.mjs"))
        .current_dir(repo.join("tests/browser"))
        .env("PAGE_URL", format!("http://{WEB}/"))
        .env("ADMIN_URL", format!("http://{ADMIN}/"))
        .env("ADMIN_TOKEN", edge.token())
        .env("AGENT", "alice")
        .env("PASSWORD", "alice")
        .env("AGENT2", "bob")
        .env("PASSWORD2", "bob")
        .env("CALL_NUMBER", "+15551234567")
        .env("EMERGENCY", "933")
        .env("OUT_DIR", &out)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node not found (Debian's nodejs)");
    let mut lines = tokio::io::BufReader::new(node.stdout.take().unwrap()).lines();
    let mut steps = Vec::new();
    let mut called_back = false;
    while let Some(line) = lines.next_line().await.unwrap() {
        eprintln!("browser: {line}");
        if line == "psap: ready" {
            // Bob called 933 last, but the page waits on alice's page for the PSAP, and then
            // for it to hang up: a few seconds after she answers.
            let (status, placed) =
                edge.api("POST", "/api/demo/psap-callback?agent=alice&hang_up_after=8").await;
            assert_eq!(status, 202, "{placed}");
            assert_eq!(placed["agent"], "alice", "{placed}");
            called_back = true;
        }
        steps.push(line);
    }
    let status = node.wait().await.unwrap();
    let mut stderr = String::new();
    if let Some(mut e) = node.stderr.take() {
        let _ = e.read_to_string(&mut stderr).await;
    }
    assert!(status.success(), "the browser run failed after {steps:?}:\n{stderr}\n{}", edge.log());
    assert_eq!(steps.last().map(String::as_str), Some("step: done"), "{steps:?}");
    assert!(called_back, "the page never asked for the PSAP callback");
    assert_eq!(edge.stop().await, Some(0));
}
