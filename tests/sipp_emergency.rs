//! Emergency calls against real SIPp peers (issue 6, "Tests against real peers"): SIPp plays
//! the agent's phone, the carriers, a direct-routing SBC and the PSAP, and CHECKS what the
//! edge sends it (`<ereg check_it="true">` on the Request-URI, headers and body; a failed
//! check makes SIPp exit non-zero). The scenarios are `tests/sipp/em_*.xml`; each says what it
//! checks.
//!
//! - A registered agent's 911 without credentials reaches the carrier as `sip:911@`, with
//!   `Priority: emergency`, the carrier's `Resource-Priority` and the leased callback number in
//!   From and P-Asserted-Identity; the PSAP's call to that number rings the agent with
//!   `Priority: psap-callback`.
//! - A 933 test call (over TCP) stays 933.
//! - A direct-routing route naming 911 sends the call to the SBC, not the carrier.
//! - A dead carrier and a silent one are passed over after `failover_after` each.
//! - The checks bite: a wrong number or a missing header fails the SIPp peer.
//! - `kill -9` of the real binary: the lease survives, the PSAP's call reaches the agent.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Edge, Opts, TRUNK_IP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Generous: a loaded 2-core CI machine runs these next to every other test.
const SIPP_TIMEOUT_S: u64 = 60;

/// A direct-offer carrier owning the agents' numbers, wanting `esnet.1`; a backup carrier;
/// a ten-number callback pool.
const PLAN: &str = r#"
[[trunk]]
name = "carrier"
kind = "direct-offer"
uri = "sip:127.0.0.2:PRIMARY;transport=udp"
numbers = ["+15550100000-+15550100999"]
emergency = { resource_priority = "esnet.1" }
probe = false

[[trunk]]
name = "backup"
kind = "direct-offer"
uri = "sip:127.0.0.2:SECONDARY;transport=udp"
emergency = { resource_priority = "esnet.1" }
probe = false

[[inbound]]
did = "+15550100123"
to = "agent:alice"

[emergency]
callback_pool = ["+15550100900-+15550100909"]
site_number = "+15550100999"
failover_after = "2s"
"#;

/// The carrier, and the customer's own SBC (direct routing) with a route naming 911 and 933.
const DIRECT_ROUTING_PLAN: &str = r#"
[[trunk]]
name = "carrier"
kind = "direct-offer"
uri = "sip:127.0.0.2:PRIMARY;transport=udp"
numbers = ["+15550100000-+15550100999"]
emergency = { resource_priority = "esnet.1" }
probe = false

[[trunk]]
name = "sbc"
kind = "direct-routing"
uri = "sip:127.0.0.2:SECONDARY;transport=udp"
emergency = { resource_priority = "esnet.0" }
probe = false

[[route]]
pattern = '^(911|933)$'
trunks = ["sbc"]

[emergency]
callback_pool = ["+15550100900-+15550100909"]
site_number = "+15550100999"
failover_after = "2s"
"#;

/// Three carriers in failover order: `dead` (owns the agents' numbers; nothing listens on
/// DEAD), `silent` (PRIMARY: takes the INVITE, never answers), `backup` (SECONDARY).
const FAILOVER_PLAN: &str = r#"
[[trunk]]
name = "dead"
kind = "direct-offer"
uri = "sip:127.0.0.2:DEAD;transport=udp"
numbers = ["+15550100000-+15550100999"]
emergency = { resource_priority = "esnet.1" }
probe = false

[[trunk]]
name = "silent"
kind = "direct-offer"
uri = "sip:127.0.0.2:PRIMARY;transport=udp"
emergency = { resource_priority = "esnet.1" }
probe = false

[[trunk]]
name = "backup"
kind = "direct-offer"
uri = "sip:127.0.0.2:SECONDARY;transport=udp"
emergency = { resource_priority = "esnet.1" }
probe = false

[emergency]
callback_pool = ["+15550100900-+15550100909"]
site_number = "+15550100999"
failover_after = "2s"
"#;

/// The carrier alone (so that an unanswered call ends after one `failover_after`), and the
/// agent's own DID.
const CHECKS_PLAN: &str = r#"
[[trunk]]
name = "carrier"
kind = "direct-offer"
uri = "sip:127.0.0.2:PRIMARY;transport=udp"
numbers = ["+15550100000-+15550100999"]
emergency = { resource_priority = "esnet.1" }
probe = false

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

/// A directory of its own for one test: the edge's data (store, dialplans), SIPp's logs, the
/// binary's configuration; removed on drop unless the test failed.
///
/// On tmpfs (`/dev/shm`) when there is one: the callback lease is committed with
/// `synchronous=FULL` while the emergency INVITE waits at most `STORE_WAIT` (1.5s), and on a
/// loaded CI machine an fsync on a shared disk can take longer (2.1s measured), after which
/// the INVITE leaves with the agent's own number instead of the leased one. That degraded
/// path is the edge's documented choice, not what these tests are about.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_owned() } else { std::env::temp_dir() };
        let dir = base.join(format!("lifeline-sippem-{name}-{}-{n}", std::process::id()));
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

/// A UDP port free right now on `ip` (SIPp takes a port number, not a socket).
fn free_udp_port(ip: &str) -> u16 {
    std::net::UdpSocket::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// A TCP port free right now on loopback, for the binary's listeners.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether some socket is bound to UDP `port` (any address), from `/proc/net/udp`: a look
/// that cannot take the port from SIPp, as a test bind would.
fn udp_bound(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let want = format!(":{port:04X}");
    table.lines().skip(1).any(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&want)))
}

/// A running SIPp, with the files it writes (`-trace_msg` also keeps every message it sent
/// and received in its directory, left in place when a test fails).
struct Sipp {
    what: String,
    child: Child,
    log: PathBuf,
    errors: PathBuf,
}

impl Sipp {
    /// Starts SIPp with `args`, for one call, with its `<log>` lines in `dir/NAME.log` and its
    /// errors (unexpected messages, failed checks) in `dir/NAME.errors.log`.
    fn start(what: &str, name: &str, dir: &Path, args: &[&str]) -> Sipp {
        let log = dir.join(format!("{name}.log"));
        let errors = dir.join(format!("{name}.errors.log"));
        let timeout = format!("{SIPP_TIMEOUT_S}s");
        let child = Command::new("sipp")
            .args(args)
            .args(["-m", "1", "-timeout", &timeout, "-timeout_error", "-nostdin"])
            .args(["-trace_err", "-error_file", errors.to_str().unwrap()])
            .args(["-trace_logs", "-log_file", log.to_str().unwrap(), "-trace_msg"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("sipp not found: run scripts/test, which installs sip-tester");
        Sipp { what: what.to_owned(), child, log, errors }
    }

    /// Starts a SIPp UAS on `ip:port` and waits until it listens.
    async fn uas(what: &str, name: &str, dir: &Path, ip: &str, port: u16, args: &[&str]) -> Sipp {
        let port_s = port.to_string();
        let mut all = vec!["-i", ip, "-p", &port_s];
        all.extend_from_slice(args);
        let mut sipp = Sipp::start(what, name, dir, &all);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !udp_bound(port) {
            if let Ok(Some(status)) = sipp.child.try_wait() {
                panic!("{what} exited before listening ({status}):\n{}", sipp.report().await);
            }
            assert!(Instant::now() < deadline, "{what} never listened on {ip}:{port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sipp
    }

    /// What SIPp said: its stderr (when it ended) and its error log.
    async fn report(&mut self) -> String {
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), e.read_to_string(&mut stderr)).await;
        }
        let errors = std::fs::read_to_string(&self.errors).unwrap_or_default();
        let dir = self.log.parent().map(Path::display);
        format!("stderr:\n{stderr}\nerror log:\n{errors}\n(messages in {dir:?})")
    }

    /// Waits for SIPp to end (within the global timeout and some).
    async fn end(&mut self) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(SIPP_TIMEOUT_S + 30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not finish", self.what))
            .unwrap()
    }

    /// Waits for SIPp to end, and fails the test unless its call succeeded (every check
    /// passed); returns its `<log>` lines.
    async fn passes(mut self) -> String {
        let status = self.end().await;
        if !status.success() {
            let report = self.report().await;
            panic!("{} failed ({status}):\n{report}", self.what);
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for SIPp to end, and fails the test if its call succeeded; returns what it
    /// reported.
    async fn fails(mut self) -> String {
        let status = self.end().await;
        let report = self.report().await;
        assert!(!status.success(), "{} should have failed, but passed:\n{report}", self.what);
        report
    }
}

/// Waits for every SIPp, and fails the test with the report of each one whose call failed
/// (the agent's failure often only says what the trunk's check explains); returns their
/// `<log>` lines, in order.
async fn all_pass(peers: Vec<Sipp>) -> Vec<String> {
    let mut logs = Vec::new();
    let mut failures = String::new();
    for mut sipp in peers {
        let status = sipp.end().await;
        if !status.success() {
            let report = sipp.report().await;
            failures.push_str(&format!("\n== {} failed ({status}):\n{report}\n", sipp.what));
        }
        logs.push(std::fs::read_to_string(&sipp.log).unwrap_or_default());
    }
    assert!(failures.is_empty(), "{failures}");
    logs
}

/// The carrier (or SBC) UAS checking an emergency INVITE for `dial` and `resource_priority`.
async fn trunk_uas(what: &str, dir: &Path, port: u16, dial: &str, resource_priority: &str) -> Sipp {
    let args = [
        "-sf",
        &scenario("em_trunk_uas.xml"),
        "-set",
        "dial",
        dial,
        "-set",
        "resource_priority",
        resource_priority,
    ];
    Sipp::uas(what, &format!("trunk-{port}"), dir, TRUNK_IP, port, &args).await
}

/// The agent's phone answering calls (a PSAP's call back) on `port`.
async fn agent_uas(dir: &Path, port: u16) -> Sipp {
    let args = ["-sf", &scenario("em_agent_uas.xml")];
    Sipp::uas("the agent's phone (SIPp UAS)", "agent-uas", dir, "127.0.0.1", port, &args).await
}

/// The agent `alice` registering (digest) with Contact `contact_port`, then dialling `dial`
/// without credentials on the same flow, over `transport` (`u1` or `t1`) to `edge`.
fn agent_call(
    dir: &Path,
    edge: SocketAddr,
    transport: &str,
    dial: &str,
    contact_port: u16,
) -> Sipp {
    agent_scenario("em_agent_call.xml", dir, edge, transport, dial, contact_port)
}

/// [`agent_call`] with another scenario taking the same options.
fn agent_scenario(
    file: &str,
    dir: &Path,
    edge: SocketAddr,
    transport: &str,
    dial: &str,
    contact_port: u16,
) -> Sipp {
    let edge = edge.to_string();
    let contact = contact_port.to_string();
    let port = free_udp_port("127.0.0.1").to_string();
    Sipp::start(
        &format!("the agent's {dial} call (SIPp UAC over {transport})"),
        &format!("agent-{dial}"),
        dir,
        &[
            &edge,
            "-sf",
            &scenario(file),
            "-t",
            transport,
            "-s",
            dial,
            "-key",
            "agent",
            "alice",
            "-au",
            "alice",
            "-ap",
            "secret",
            "-key",
            "contact_port",
            &contact,
            "-i",
            "127.0.0.1",
            "-p",
            &port,
        ],
    )
}

/// The agent `alice` registering again (digest), Contact `contact_port`, over UDP.
fn agent_register(dir: &Path, edge: SocketAddr, contact_port: u16) -> Sipp {
    let edge = edge.to_string();
    let contact = contact_port.to_string();
    let port = free_udp_port("127.0.0.1").to_string();
    Sipp::start(
        "the agent's registration (SIPp UAC)",
        "agent-register",
        dir,
        &[
            &edge,
            "-sf",
            &scenario("agent_register.xml"),
            "-s",
            "alice",
            "-au",
            "alice",
            "-ap",
            "secret",
            "-key",
            "contact_port",
            &contact,
            "-i",
            "127.0.0.1",
            "-p",
            &port,
        ],
    )
}

/// The PSAP calling `did` from the carrier's address.
fn psap_call(dir: &Path, edge: SocketAddr, did: &str) -> Sipp {
    let edge = edge.to_string();
    let port = free_udp_port(TRUNK_IP).to_string();
    Sipp::start(
        &format!("the PSAP calling {did} back (SIPp UAC from {TRUNK_IP})"),
        "psap",
        dir,
        &[&edge, "-sf", &scenario("em_psap_uac.xml"), "-s", did, "-i", TRUNK_IP, "-p", &port],
    )
}

/// The callback number a trunk UAS logged ("callback +1555010090x").
fn callback_number(log: &str) -> String {
    log.lines()
        .find_map(|l| l.trim().strip_prefix("callback "))
        .map(|n| n.trim().to_owned())
        .unwrap_or_else(|| panic!("the trunk logged no callback number:\n{log}"))
}

/// `GET path` on the admin listener: the status code and the body; `None` when nothing
/// listens (yet).
async fn http_get(admin: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(admin).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut buf)).await.ok()?.ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// The value of one metric line (`name` with its labels, if any) of `/metrics`.
async fn metric(admin: SocketAddr, name: &str) -> f64 {
    let (status, body) = http_get(admin, "/metrics").await.expect("/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
}

/// The edge in-process, its data in `dir` (see [`TempDir`]).
async fn start_edge(dir: &TempDir, plan: &str, ports: (u16, u16)) -> Edge {
    let opts = Opts {
        plan: Some(plan.into()),
        seed: Some(AGENTS.into()),
        data: Some(dir.path().join("edge")),
        trunk_ports: Some(ports),
        ..Opts::default()
    };
    Edge::start_opts(opts, |_| {}).await
}

#[tokio::test]
async fn a_registered_agent_s_911_reaches_the_carrier_checked_and_the_psap_calls_her_back() {
    let dir = TempDir::new("911");
    let (carrier_port, backup_port) = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let carrier =
        trunk_uas("the carrier (SIPp UAS)", dir.path(), carrier_port, "911", "esnet.1").await;
    let phone_port = free_udp_port("127.0.0.1");

    // Register with digest, then 911 without credentials on the same UDP flow.
    let agent = agent_call(dir.path(), edge.udp, "u1", "911", phone_port);
    let logs = all_pass(vec![agent, carrier]).await;
    let did = callback_number(&logs[1]);
    assert_eq!(metric(edge.admin, "lifeline_emergency_calls_total{test=\"false\"}").await, 1.0);
    assert_eq!(metric(edge.admin, "lifeline_emergency_calls_total{test=\"true\"}").await, 0.0);
    assert_eq!(metric(edge.admin, "lifeline_emergency_unauthenticated_total").await, 0.0);
    assert_eq!(metric(edge.admin, "lifeline_emergency_failovers_total").await, 0.0);

    // The PSAP calls the number it was shown: the agent's phone rings, marked psap-callback.
    let phone = agent_uas(dir.path(), phone_port).await;
    let psap = psap_call(dir.path(), edge.udp, &did);
    all_pass(vec![psap, phone]).await;
    assert_eq!(metric(edge.admin, "lifeline_psap_callbacks_total").await, 1.0);
    edge.stop().await;
}

#[tokio::test]
async fn a_933_test_call_over_tcp_reaches_the_carrier_as_933() {
    let dir = TempDir::new("933");
    let (carrier_port, backup_port) = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let carrier =
        trunk_uas("the carrier (SIPp UAS)", dir.path(), carrier_port, "933", "esnet.1").await;
    let phone_port = free_udp_port("127.0.0.1");

    let agent = agent_call(dir.path(), edge.tcp, "t1", "933", phone_port);
    all_pass(vec![agent, carrier]).await;
    assert_eq!(metric(edge.admin, "lifeline_emergency_calls_total{test=\"true\"}").await, 1.0);
    assert_eq!(metric(edge.admin, "lifeline_emergency_calls_total{test=\"false\"}").await, 0.0);
    assert_eq!(metric(edge.admin, "lifeline_emergency_failovers_total").await, 0.0);
    edge.stop().await;
}

#[tokio::test]
async fn a_direct_routing_route_naming_911_sends_it_to_the_sbc_not_the_carrier() {
    let dir = TempDir::new("sbc");
    let (carrier_port, sbc_port) = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let edge = start_edge(&dir, DIRECT_ROUTING_PLAN, (carrier_port, sbc_port)).await;
    // The carrier is up and would take the call: it must not get it.
    let carrier = tokio::net::UdpSocket::bind((TRUNK_IP, carrier_port)).await.unwrap();
    let sbc = trunk_uas("the SBC (SIPp UAS)", dir.path(), sbc_port, "911", "esnet.0").await;
    let phone_port = free_udp_port("127.0.0.1");

    let agent = agent_call(dir.path(), edge.udp, "u1", "911", phone_port);
    all_pass(vec![agent, sbc]).await;
    let mut buf = [0u8; 4096];
    match carrier.try_recv_from(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((n, _)) => panic!("the carrier got something: {}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(metric(edge.admin, "lifeline_emergency_calls_total{test=\"false\"}").await, 1.0);
    assert_eq!(metric(edge.admin, "lifeline_emergency_failovers_total").await, 0.0);
    edge.stop().await;
}

#[tokio::test]
async fn a_dead_and_a_silent_carrier_are_passed_over_after_failover_after_each() {
    let dir = TempDir::new("failover");
    let dead_port = free_udp_port(TRUNK_IP); // nothing listens there
    let (silent_port, backup_port) = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let plan = FAILOVER_PLAN.replace("DEAD", &dead_port.to_string());
    let edge = start_edge(&dir, &plan, (silent_port, backup_port)).await;
    let silent = Sipp::uas(
        "the silent carrier (SIPp UAS that never answers)",
        "silent",
        dir.path(),
        TRUNK_IP,
        silent_port,
        &["-sf", &scenario("em_silent_uas.xml")],
    )
    .await;
    let backup =
        trunk_uas("the backup carrier (SIPp UAS)", dir.path(), backup_port, "911", "esnet.1").await;
    let phone_port = free_udp_port("127.0.0.1");

    let started = Instant::now();
    let agent = agent_call(dir.path(), edge.udp, "u1", "911", phone_port);
    let logs = all_pass(vec![agent, silent, backup]).await;
    let took = started.elapsed();
    assert!(logs[1].contains("silent carrier took the INVITE"), "{}", logs[1]);
    // Two trunks given up, each after failover_after (2s): everything was over (about 8s with
    // the peers' own lingering) long before an INVITE transaction's timeout (Timer B, 32s)
    // could have moved the call on even once.
    assert_eq!(metric(edge.admin, "lifeline_emergency_failovers_total").await, 2.0);
    assert!(took < Duration::from_secs(30), "the call took {took:?}");
    assert_eq!(metric(edge.admin, "lifeline_emergency_unreachable_total").await, 0.0);
    edge.stop().await;
}

#[tokio::test]
async fn the_sipp_checks_bite_a_wrong_number_or_a_missing_header_fails_the_peer() {
    let dir = TempDir::new("checks");
    let (carrier_port, backup_port) = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let edge = start_edge(&dir, CHECKS_PLAN, (carrier_port, backup_port)).await;
    let phone_port = free_udp_port("127.0.0.1");

    // The carrier expects 933 while the agent dials 911: the carrier's check fails (and,
    // unanswered, the agent's call too).
    let carrier =
        trunk_uas("the carrier expecting 933", dir.path(), carrier_port, "933", "esnet.1").await;
    let agent = agent_call(dir.path(), edge.udp, "u1", "911", phone_port);
    let report = carrier.fails().await;
    assert!(report.contains("dialled 911 (expected 933)"), "{report}");
    // No trunk answered anything: a fast 503 that says so.
    let report = agent.fails().await;
    assert!(report.contains("SIP/2.0 503 Service Unavailable"), "{report}");
    assert!(report.contains("No emergency trunk reachable"), "{report}");

    // An ordinary inbound call to the agent's DID is no PSAP callback: the phone's check for
    // Priority: psap-callback fails (SIPp still answers; the call is marked failed).
    agent_register(dir.path(), edge.udp, phone_port).passes().await;
    let phone = agent_uas(dir.path(), phone_port).await;
    let caller = psap_call(dir.path(), edge.udp, "+15550100123");
    let report = phone.fails().await;
    assert!(report.contains("Failed regexp match"), "{report}");
    assert!(report.contains("psap-callback"), "{report}");
    caller.passes().await;
    assert_eq!(metric(edge.admin, "lifeline_psap_callbacks_total").await, 0.0);
    edge.stop().await;
}

#[tokio::test]
async fn the_psap_hangs_up_and_its_bye_reaches_the_agent() {
    let dir = TempDir::new("hangup");
    let (carrier_port, backup_port) = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let args = ["-sf", &scenario("em_trunk_hangup_uas.xml")];
    let what = "the carrier whose PSAP hangs up (SIPp UAS)";
    let carrier = Sipp::uas(what, "carrier", dir.path(), TRUNK_IP, carrier_port, &args).await;
    let phone_port = free_udp_port("127.0.0.1");

    let file = "em_agent_call_psap_hangs_up.xml";
    let agent = agent_scenario(file, dir.path(), edge.udp, "u1", "911", phone_port);
    all_pass(vec![agent, carrier]).await;
    assert_eq!(metric(edge.admin, "lifeline_emergency_calls_total{test=\"false\"}").await, 1.0);
    edge.stop().await;
}

#[tokio::test]
async fn a_psap_call_back_rings_every_phone_of_the_agent_at_once() {
    let dir = TempDir::new("forking");
    let (carrier_port, backup_port) = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let carrier =
        trunk_uas("the carrier (SIPp UAS)", dir.path(), carrier_port, "911", "esnet.1").await;
    let (desk_port, laptop_port) = (free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1"));

    // The call is made from the desk phone; the agent is also registered from her laptop.
    let agent = agent_call(dir.path(), edge.udp, "u1", "911", desk_port);
    let logs = all_pass(vec![agent, carrier]).await;
    let did = callback_number(&logs[1]);
    agent_register(dir.path(), edge.udp, laptop_port).passes().await;

    // The PSAP calls back: both ring, the desk phone answers, the laptop is cancelled.
    let desk = agent_uas(dir.path(), desk_port).await;
    let args = ["-sf", &scenario("em_agent_uas_ringing.xml")];
    let what = "the agent's other phone (SIPp UAS, rings, cancelled)";
    let laptop = Sipp::uas(what, "laptop", dir.path(), "127.0.0.1", laptop_port, &args).await;
    all_pass(vec![psap_call(dir.path(), edge.udp, &did), desk, laptop]).await;
    assert_eq!(metric(edge.admin, "lifeline_psap_callbacks_total").await, 1.0);
    edge.stop().await;
}

#[tokio::test]
async fn a_softphone_s_own_location_reaches_the_carrier_with_the_call() {
    let dir = TempDir::new("softphone-pidf");
    let (carrier_port, backup_port) = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let args = ["-sf", &scenario("em_trunk_pidf_uas.xml")];
    let what = "the carrier checking the location (SIPp UAS)";
    let carrier = Sipp::uas(what, "carrier", dir.path(), TRUNK_IP, carrier_port, &args).await;
    let phone_port = free_udp_port("127.0.0.1");

    let file = "em_agent_call_pidf.xml";
    let agent = agent_scenario(file, dir.path(), edge.udp, "u1", "911", phone_port);
    all_pass(vec![agent, carrier]).await;
    edge.stop().await;
}

#[tokio::test]
async fn the_carrier_gets_the_agent_s_provisioned_location_as_pidf_lo() {
    let dir = TempDir::new("pidf");
    let (carrier_port, backup_port) = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let args = ["-sf", &scenario("em_trunk_pidf_uas.xml")];
    let what = "the carrier checking the location (SIPp UAS)";
    let carrier = Sipp::uas(what, "carrier", dir.path(), TRUNK_IP, carrier_port, &args).await;
    let phone_port = free_udp_port("127.0.0.1");

    let agent = agent_call(dir.path(), edge.udp, "u1", "911", phone_port);
    all_pass(vec![agent, carrier]).await;
    edge.stop().await;
}

#[tokio::test]
async fn the_agent_s_in_dialog_requests_keep_the_callback_number_toward_the_carrier() {
    let dir = TempDir::new("dialog");
    let (carrier_port, backup_port) = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let args = ["-sf", &scenario("em_trunk_dialog_uas.xml")];
    let what = "the carrier checking the dialog's From (SIPp UAS)";
    let carrier = Sipp::uas(what, "carrier", dir.path(), TRUNK_IP, carrier_port, &args).await;
    let phone_port = free_udp_port("127.0.0.1");

    let agent = agent_call(dir.path(), edge.udp, "u1", "911", phone_port);
    all_pass(vec![agent, carrier]).await;
    edge.stop().await;
}

/// The real binary, run as an operator would, with a configuration in a directory of its own.
struct Binary {
    child: Child,
    dir: PathBuf,
}

impl Binary {
    /// Starts `lifeline run --config DIR/lifeline.toml` and waits for `/ready`.
    async fn start(dir: &Path, admin: SocketAddr, run: u32) -> Binary {
        let out = std::fs::File::create(dir.join(format!("lifeline-{run}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lifeline"))
            .args(["run", "--config", dir.join("lifeline.toml").to_str().unwrap()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut bin = Binary { child, dir: dir.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, _)) = http_get(admin, "/ready").await {
                return bin;
            }
            if let Ok(Some(status)) = bin.child.try_wait() {
                panic!("lifeline exited before it was ready ({status}):\n{}", bin.output(run));
            }
            assert!(Instant::now() < deadline, "lifeline never ready:\n{}", bin.output(run));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn output(&self, run: u32) -> String {
        std::fs::read_to_string(self.dir.join(format!("lifeline-{run}.log"))).unwrap_or_default()
    }

    /// `kill -9`: no graceful stop, no chance to flush anything.
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

#[tokio::test]
async fn a_callback_lease_survives_kill_dash_9_of_the_binary() {
    let dir = TempDir::new("kill9");
    let d = dir.path();
    let (carrier_port, backup_port) = (free_udp_port(TRUNK_IP), free_udp_port(TRUNK_IP));
    let sip_port = free_udp_port("127.0.0.1");
    let sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let (web, tcp, smtp) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    std::fs::create_dir_all(d.join("dialplans")).unwrap();
    let plan = PLAN
        .replace("PRIMARY", &carrier_port.to_string())
        .replace("SECONDARY", &backup_port.to_string());
    std::fs::write(d.join("dialplans/emergency.toml"), plan).unwrap();
    std::fs::write(d.join("agents.toml"), AGENTS).unwrap();
    let config = format!(
        r#"[node]
name = "kill9"
data_dir = "{data}"

[sip]
listen = ["udp:127.0.0.1:{sip_port}", "tcp:127.0.0.1:{tcp}"]

[web]
listen = "127.0.0.1:{web}"

[admin]
listen = "{admin}"

[media]
webrtc_port = 0

[smtp]
url = "smtp://127.0.0.1:{smtp}"

[dialplan]
dir = "{plans}"

[agents]
seed = "{seed}"
"#,
        data = d.join("data").display(),
        plans = d.join("dialplans").display(),
        seed = d.join("agents.toml").display(),
    );
    std::fs::write(d.join("lifeline.toml"), config).unwrap();

    let edge = Binary::start(d, admin, 1).await;
    let carrier = trunk_uas("the carrier (SIPp UAS)", d, carrier_port, "911", "esnet.1").await;
    let phone_port = free_udp_port("127.0.0.1");
    let logs = all_pass(vec![agent_call(d, sip, "u1", "911", phone_port), carrier]).await;
    let did = callback_number(&logs[1]);
    assert_eq!(metric(admin, "lifeline_emergency_calls_total{test=\"false\"}").await, 1.0);

    // A crash: the lease was written before the INVITE left.
    edge.kill_9().await;
    let edge = Binary::start(d, admin, 2).await;
    assert_eq!(metric(admin, "lifeline_psap_callbacks_total").await, 0.0);
    // The softphone registers again; the PSAP calls the number it was shown.
    agent_register(d, sip, phone_port).passes().await;
    let phone = agent_uas(d, phone_port).await;
    all_pass(vec![psap_call(d, sip, &did), phone]).await;
    assert_eq!(metric(admin, "lifeline_psap_callbacks_total").await, 1.0);
    edge.kill_9().await;
}
