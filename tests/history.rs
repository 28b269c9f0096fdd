//! Call history and the registrations snapshot against real SIPp peers (issue 5 §3, §6):
//!
//! - An agent's calls to SIPp trunks — answered and hung up, refused (486), cancelled while
//!   ringing — leave one row each with the right result, trunk, direction and a plausible
//!   duration; an emergency call before them leaves none (issue 6 §8); `GET /api/calls` pages.
//! - `kill -9` of the real binary after the snapshot interval: started again on the same data
//!   directory, it rings the agent registered over UDP for a DID call from a SIPp trunk, with
//!   no new REGISTER; a binding that expired, or one tied to a connection, does not come back.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Edge, Opts, TRUNK_IP};
use lifeline::store::{Binding, SqliteStore, Store};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Generous: a loaded 2-core CI machine runs these next to every other test.
const SIPP_TIMEOUT_S: u64 = 60;

/// Three trunks on 127.0.0.2 (one per outcome, so each row names its own), routes by number
/// prefix, alice's DID, and what an emergency call needs.
const PLAN: &str = r#"
[[trunk]]
name = "carrier"
kind = "direct-offer"
uri = "sip:127.0.0.2:PRIMARY;transport=udp"
numbers = ["+15550100000-+15550100999"]
emergency = { resource_priority = "esnet.1" }
probe = false

[[trunk]]
name = "busy-carrier"
kind = "direct-offer"
uri = "sip:127.0.0.2:SECONDARY;transport=udp"
probe = false

[[trunk]]
name = "slow-carrier"
kind = "direct-offer"
uri = "sip:127.0.0.2:THIRD;transport=udp"
probe = false

[[route]]
pattern = '^\+1555123\d{4}$'
trunks = ["carrier"]

[[route]]
pattern = '^\+1555456\d{4}$'
trunks = ["busy-carrier"]

[[route]]
pattern = '^\+1555789\d{4}$'
trunks = ["slow-carrier"]

[[inbound]]
did = "+15550100123"
to = "agent:alice"

[emergency]
callback_pool = ["+15550100900-+15550100909"]
site_number = "+15550100999"
failover_after = "2s"
"#;

const AGENTS: &str = r#"
[[agent]]
id = "alice"
password = "secret"
caller_id = ["+15550100123"]
location = { country = "US", address = "1 Main St, Springfield, IL 62701" }
"#;

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(name).to_str().unwrap().to_owned()
}

/// A directory of its own for one test (tmpfs when there is one, see `tests/sipp_emergency.rs`
/// for why); removed on drop unless the test failed.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = common::scratch().join(format!("lifeline-history-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
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

fn free_udp_port(ip: &str) -> u16 {
    std::net::UdpSocket::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether some socket is bound to UDP `port`, from `/proc/net/udp` (a test bind would take
/// the port from SIPp).
fn udp_bound(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let want = format!(":{port:04X}");
    table.lines().skip(1).any(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&want)))
}

/// One SIPp for one call, its errors in `dir/NAME.errors.log`.
struct Sipp {
    what: String,
    child: Child,
    errors: PathBuf,
}

impl Sipp {
    fn start(what: &str, name: &str, dir: &Path, args: &[&str]) -> Sipp {
        let errors = dir.join(format!("{name}.errors.log"));
        let timeout = format!("{SIPP_TIMEOUT_S}s");
        let child = Command::new("sipp")
            .args(args)
            .args(["-m", "1", "-timeout", &timeout, "-timeout_error", "-nostdin"])
            .args(["-trace_err", "-error_file", errors.to_str().unwrap(), "-trace_msg"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("sipp not found: run scripts/test, which installs sip-tester");
        Sipp { what: what.to_owned(), child, errors }
    }

    /// A SIPp UAS on `ip:port` (with `extra` arguments), once it listens.
    async fn uas(
        what: &str,
        dir: &Path,
        ip: &str,
        port: u16,
        scenario_file: &str,
        extra: &[&str],
    ) -> Sipp {
        let port_s = port.to_string();
        let file = scenario(scenario_file);
        let name = format!("{}-{port}", scenario_file.trim_end_matches(".xml"));
        let mut args = vec!["-sf", &file, "-i", ip, "-p", &port_s];
        args.extend_from_slice(extra);
        let mut sipp = Sipp::start(what, &name, dir, &args);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !udp_bound(port) {
            if let Ok(Some(status)) = sipp.child.try_wait() {
                panic!("{what} exited before listening ({status})");
            }
            assert!(Instant::now() < deadline, "{what} never listened on {ip}:{port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sipp
    }

    async fn end(&mut self) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(SIPP_TIMEOUT_S + 30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not finish", self.what))
            .unwrap()
    }

    async fn report(&mut self) -> String {
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), e.read_to_string(&mut stderr)).await;
        }
        let errors = std::fs::read_to_string(&self.errors).unwrap_or_default();
        format!("stderr:\n{stderr}\nerror log:\n{errors}")
    }
}

/// Waits for every SIPp and fails with the report of each whose call failed.
async fn all_pass(peers: Vec<Sipp>) {
    let mut failures = String::new();
    for mut sipp in peers {
        let status = sipp.end().await;
        if !status.success() {
            let report = sipp.report().await;
            failures.push_str(&format!("\n== {} failed ({status}):\n{report}\n", sipp.what));
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

/// alice's phone calling `number` through the edge with digest auth (`scenario_file`:
/// `agent_call_out.xml` or `agent_cancel.xml`), holding an answered call `hold_ms`.
fn agent_calls(
    dir: &Path,
    edge: SocketAddr,
    scenario_file: &str,
    number: &str,
    hold_ms: u32,
) -> Sipp {
    let (edge, file, hold) = (edge.to_string(), scenario(scenario_file), hold_ms.to_string());
    let port = free_udp_port("127.0.0.1").to_string();
    // The digest `uri` must be the Request-URI (RFC 3261 §22.4); SIPp's default is the host.
    let auth_uri = format!("{number}@{edge}");
    let args = [
        &edge,
        "-sf",
        &file,
        "-s",
        number,
        "-au",
        "alice",
        "-ap",
        "secret",
        "-auth_uri",
        &auth_uri,
        "-d",
        &hold,
        "-i",
        "127.0.0.1",
        "-p",
        &port,
    ];
    let what = format!("alice calling {number} ({scenario_file})");
    Sipp::start(&what, &format!("agent-{number}"), dir, &args)
}

/// alice's phone registering (digest) with its Contact on `contact_port`, then (with `dial`)
/// making an emergency call without credentials (`em_agent_call.xml`); or only registering
/// (`agent_register.xml`).
fn agent_register(dir: &Path, edge: SocketAddr, contact_port: u16, dial: Option<&str>) -> Sipp {
    let (edge, contact) = (edge.to_string(), contact_port.to_string());
    let port = free_udp_port("127.0.0.1").to_string();
    let mut args: Vec<String> =
        vec![edge, "-au".into(), "alice".into(), "-ap".into(), "secret".into()];
    match dial {
        Some(d) => args.extend(
            ["-sf", &scenario("em_agent_call.xml"), "-s", d, "-key", "agent", "alice"]
                .map(String::from),
        ),
        None => {
            args.extend(["-sf", &scenario("agent_register.xml"), "-s", "alice"].map(String::from))
        }
    }
    args.extend(
        ["-key", "contact_port", &contact, "-i", "127.0.0.1", "-p", &port].map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Sipp::start("alice's phone registering", &format!("register-{port}"), dir, &args)
}

/// A trunk on 127.0.0.2 calling `did` through the edge (`trunk_uac.xml`: answered, BYE).
fn trunk_calls(dir: &Path, edge: SocketAddr, did: &str) -> Sipp {
    let (edge, file) = (edge.to_string(), scenario("trunk_uac.xml"));
    let port = free_udp_port(TRUNK_IP).to_string();
    let args = [&edge, "-sf", &file, "-s", did, "-i", TRUNK_IP, "-p", &port];
    Sipp::start(&format!("the trunk calling {did}"), "trunk-uac", dir, &args)
}

/// An HTTP GET to the admin listener, with the bearer token when given: (status, JSON body).
async fn get(admin: SocketAddr, path: &str, token: Option<&str>) -> Option<(u16, Value)> {
    let mut s = tokio::net::TcpStream::connect(admin).await.ok()?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut buf)).await.ok()?.ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// `GET /api/calls` until it holds `n` rows (they are written when calls end, off the core).
async fn calls_until(admin: SocketAddr, token: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get(admin, "/api/calls", Some(token)).await.expect("/api/calls");
        assert_eq!(status, 200, "{body}");
        let rows = body.as_array().cloned().unwrap_or_default();
        if rows.len() >= n {
            return rows;
        }
        assert!(Instant::now() < deadline, "{n} call rows never came: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn row_to<'a>(rows: &'a [Value], to: &str) -> &'a Value {
    rows.iter().find(|r| r["to"] == to).unwrap_or_else(|| panic!("no row to {to}: {rows:#?}"))
}

#[tokio::test]
async fn an_agent_s_calls_leave_one_row_each_and_her_emergency_call_none() {
    let dir = TempDir::new("rows");
    let d = dir.path();
    let ports = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let third = free_udp_port(TRUNK_IP);
    let opts = Opts {
        plan: Some(PLAN.replace("THIRD", &third.to_string())),
        seed: Some(AGENTS.into()),
        data: Some(d.join("edge")),
        trunk_ports: Some(ports),
        ..Opts::default()
    };
    let edge = Edge::start_opts(opts, |_| {}).await;

    // First an emergency call (911 to the carrier, answered, hung up): it must leave no row.
    let checks = ["-set", "dial", "911", "-set", "resource_priority", "esnet.1"];
    let what = "the carrier checking the 911 call";
    let carrier = Sipp::uas(what, d, TRUNK_IP, ports.0, "em_trunk_uas.xml", &checks).await;
    let phone_port = free_udp_port("127.0.0.1");
    all_pass(vec![agent_register(d, edge.udp, phone_port, Some("911")), carrier]).await;

    // Then three ordinary calls, one per trunk: answered and held 1.5 s, refused, cancelled.
    let answering =
        Sipp::uas("the carrier answering", d, TRUNK_IP, ports.0, "agent_uas.xml", &[]).await;
    let busy = Sipp::uas("the busy carrier", d, TRUNK_IP, ports.1, "trunk_busy_uas.xml", &[]).await;
    let slow =
        Sipp::uas("the slow carrier", d, TRUNK_IP, third, "trunk_ringing_uas.xml", &[]).await;
    all_pass(vec![agent_calls(d, edge.udp, "agent_call_out.xml", "+15551230001", 1500)]).await;
    all_pass(vec![agent_calls(d, edge.udp, "agent_call_out.xml", "+15554560002", 0)]).await;
    all_pass(vec![agent_calls(d, edge.udp, "agent_cancel.xml", "+15557890003", 0)]).await;
    all_pass(vec![answering, busy, slow]).await;

    let rows = calls_until(edge.admin, &edge.token, 3).await;
    assert_eq!(rows.len(), 3, "one row per ordinary call, none for 911: {rows:#?}");
    assert!(rows.iter().all(|r| r["to"] != "911"), "{rows:#?}");
    for r in &rows {
        assert_eq!(r["direction"], "outbound", "{r}");
        assert_eq!(r["agent"], "alice", "{r}");
        assert_eq!(r["from"], "alice", "{r}");
        let at = r["started_at"].as_str().unwrap();
        assert!(at.ends_with('Z') && at.len() == 20, "{r}");
    }
    let answered = row_to(&rows, "+15551230001");
    assert_eq!(
        (&answered["result"], &answered["trunk"]),
        (&Value::from("answered"), &Value::from("carrier"))
    );
    let held = answered["duration_s"].as_u64().unwrap();
    assert!((1..=4).contains(&held), "held 1.5 s, recorded {held} s: {answered}");
    let refused = row_to(&rows, "+15554560002");
    assert_eq!(refused["result"], "busy", "{refused}");
    assert_eq!(refused["trunk"], "busy-carrier", "{refused}");
    assert_eq!(refused["duration_s"], 0, "{refused}");
    let cancelled = row_to(&rows, "+15557890003");
    assert_eq!(cancelled["result"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["trunk"], "slow-carrier", "{cancelled}");
    assert_eq!(cancelled["duration_s"], 0, "{cancelled}");

    // Paging: newest first, `after` the last id seen, until an empty page.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/api/calls?limit=2{after}");
        let (status, body) = get(edge.admin, &path, Some(&edge.token)).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let page = body.as_array().unwrap().clone();
        assert!(page.len() <= 2, "{page:#?}");
        let Some(last) = page.last() else { break };
        after = format!("&after={}", last["id"]);
        seen.extend(page);
    }
    let ids: Vec<i64> = seen.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    let all: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, all, "pages of two give the whole list, in order, once");
    let order: Vec<(&str, i64)> = seen
        .iter()
        .map(|r| (r["started_at"].as_str().unwrap(), r["id"].as_i64().unwrap()))
        .collect();
    assert!(order.windows(2).all(|w| w[0] > w[1]), "newest first: {order:?}");
    let (status, body) =
        get(edge.admin, "/api/calls?after=999999", Some(&edge.token)).await.unwrap();
    assert_eq!(status, 400, "an unknown cursor: {body}");
    assert_eq!(body["error"]["field"], "after");
    let (status, _) = get(edge.admin, "/api/calls?limit=0", Some(&edge.token)).await.unwrap();
    assert_eq!(status, 400);
    edge.stop().await;
}

/// The real binary, run as an operator would.
struct Binary {
    child: Child,
    log: PathBuf,
}

impl Binary {
    async fn start(dir: &Path, admin: SocketAddr, run: u32) -> Binary {
        let log = dir.join(format!("lifeline-{run}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lifeline"))
            .args(["run", "--config", dir.join("lifeline.toml").to_str().unwrap()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut bin = Binary { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, _)) = get(admin, "/ready", None).await {
                return bin;
            }
            let out = || std::fs::read_to_string(&bin.log).unwrap_or_default();
            if let Ok(Some(status)) = bin.child.try_wait() {
                panic!("lifeline exited before it was ready ({status}):\n{}", out());
            }
            assert!(Instant::now() < deadline, "lifeline never ready:\n{}", out());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9`: no graceful stop, nothing flushed.
    async fn kill_9(mut self) {
        self.child.start_kill().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("lifeline did not die")
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status}");
    }
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_udp_registration_survives_kill_dash_9_and_takes_a_did_call() {
    let dir = TempDir::new("kill9");
    let d = dir.path();
    let carrier_port = free_udp_port(TRUNK_IP);
    let sip_port = free_udp_port("127.0.0.1");
    let sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let (web, tcp) = (free_tcp_port(), free_tcp_port());
    std::fs::create_dir_all(d.join("dialplans")).unwrap();
    let plan = PLAN
        .replace("PRIMARY", &carrier_port.to_string())
        .replace("SECONDARY", &free_udp_port(TRUNK_IP).to_string())
        .replace("THIRD", &free_udp_port(TRUNK_IP).to_string());
    std::fs::write(d.join("dialplans/plan.toml"), plan).unwrap();
    std::fs::write(d.join("agents.toml"), AGENTS).unwrap();
    let data = d.join("data");
    let config = format!(
        "[node]\nname = \"kill9\"\ndata_dir = \"{data}\"\n\n\
         [sip]\nlisten = [\"udp:127.0.0.1:{sip_port}\", \"tcp:127.0.0.1:{tcp}\"]\n\n\
         [web]\nlisten = \"127.0.0.1:{web}\"\n\n[admin]\nlisten = \"{admin}\"\n\n\
         [media]\nwebrtc_port = 0\n\n\
         [dialplan]\ndir = \"{plans}\"\n\n[agents]\nseed = \"{seed}\"\n",
        data = data.display(),
        plans = d.join("dialplans").display(),
        seed = d.join("agents.toml").display(),
    );
    std::fs::write(d.join("lifeline.toml"), config).unwrap();

    let edge = Binary::start(d, admin, 1).await;
    let phone_port = free_udp_port("127.0.0.1");
    all_pass(vec![agent_register(d, sip, phone_port, None)]).await;
    // The snapshot is written a couple of seconds after the REGISTER, by the edge's writer;
    // the test reads the same file (SQLite WAL lets it while the edge runs).
    let db = data.join(lifeline::store::DB_FILE);
    let deadline = Instant::now() + Duration::from_secs(15);
    let snapshot = loop {
        let rows = SqliteStore::open(&db).unwrap().load_registrations(unix_now()).unwrap();
        if !rows.is_empty() {
            break rows;
        }
        assert!(Instant::now() < deadline, "no registrations snapshot was written");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(snapshot.len(), 1, "{snapshot:?}");
    assert_eq!(snapshot[0].aor.as_str(), "alice");
    edge.kill_9().await;

    // While the edge is down, the snapshot also holds a binding that has expired and one tied
    // to a TCP connection (as another build or a hand edit might leave): neither comes back.
    {
        let store = SqliteStore::open(&db).unwrap();
        let mut rows = store.load_registrations(unix_now()).unwrap();
        let live = rows[0].clone();
        let other = |contact: &str, flow: &str, expires_at| Binding {
            contact: contact.into(),
            flow: flow.into(),
            expires_at,
            ..live.clone()
        };
        rows.push(other("sip:alice@127.0.0.1:9", "udp:127.0.0.1:9", unix_now() - 5));
        rows.push(other(
            "sip:alice@127.0.0.1:7;transport=tcp",
            "tcp:127.0.0.1:7",
            unix_now() + 600,
        ));
        store.snapshot_registrations(&rows).unwrap();
    }

    let edge = Binary::start(d, admin, 2).await;
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    let (status, regs) = get(admin, "/api/registrations", Some(&token)).await.unwrap();
    assert_eq!(status, 200, "{regs}");
    let regs = regs.as_array().cloned().unwrap_or_default();
    assert_eq!(regs.len(), 1, "only the live UDP binding is restored: {regs:#?}");
    assert_eq!(regs[0]["aor"], "alice");
    assert!(regs[0]["contact"].as_str().unwrap().contains(&format!(":{phone_port}")), "{regs:#?}");
    assert!(regs[0]["expires_in"].as_u64().unwrap() > 200, "{regs:#?}");

    // No REGISTER: the trunk's DID call rings the phone at the restored Contact.
    let what = "alice's phone (SIPp UAS)";
    let phone = Sipp::uas(what, d, "127.0.0.1", phone_port, "agent_uas.xml", &[]).await;
    all_pass(vec![trunk_calls(d, sip, "+15550100123"), phone]).await;
    let rows = calls_until(admin, &token, 1).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let r = &rows[0];
    assert_eq!(
        (&r["direction"], &r["agent"], &r["trunk"], &r["result"], &r["to"]),
        (
            &Value::from("inbound"),
            &Value::from("alice"),
            &Value::from("carrier"),
            &Value::from("answered"),
            &Value::from("+15550100123")
        ),
        "{r}"
    );
    edge.kill_9().await;
}

/// Whether a SIPp message log in `dir` named `prefix*_messages.log` holds `needle`.
fn sipp_saw(dir: &Path, prefix: &str, needle: &str) -> bool {
    std::fs::read_dir(dir).unwrap().filter_map(Result::ok).any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with(prefix)
            && name.ends_with("_messages.log")
            && std::fs::read_to_string(e.path()).unwrap_or_default().contains(needle)
    })
}

#[tokio::test]
async fn a_graceful_stop_writes_the_snapshot_at_once_and_the_call_still_up() {
    let dir = TempDir::new("graceful");
    let d = dir.path();
    let ports = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let opts = Opts {
        plan: Some(PLAN.replace("THIRD", &free_udp_port(TRUNK_IP).to_string())),
        seed: Some(AGENTS.into()),
        data: Some(d.join("edge")),
        trunk_ports: Some(ports),
        ..Opts::default()
    };
    let edge = Edge::start_opts(opts, |_| {}).await;
    let carrier =
        Sipp::uas("the carrier answering", d, TRUNK_IP, ports.0, "agent_uas.xml", &[]).await;
    let registered = Instant::now();
    all_pass(vec![agent_register(d, edge.udp, free_udp_port("127.0.0.1"), None)]).await;
    // A call answered and held long past the stop.
    let caller = agent_calls(d, edge.udp, "agent_call_out.xml", "+15551230001", 60_000);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sipp_saw(d, "agent_uas_", "ACK sip:") {
        assert!(Instant::now() < deadline, "the call was never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let data = edge.stop_keeping_data().await;
    let quick = registered.elapsed() < lifeline::registrar::snapshot::EVERY;

    let store = SqliteStore::open(&data.join(lifeline::store::DB_FILE)).unwrap();
    let bindings = store.load_registrations(unix_now()).unwrap();
    assert_eq!(bindings.len(), 1, "written at the stop (within the interval: {quick})");
    let rows = store.calls(10, None).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].call.result, "unfinished");
    assert_eq!(rows[0].call.trunk.as_deref(), Some("carrier"));
    drop((caller, carrier));
}
