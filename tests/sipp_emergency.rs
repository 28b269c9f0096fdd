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
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::binary::Binary;
use common::sipp::{Sipp, all_pass};
use common::{Edge, Opts, TRUNK_IP, TempDir, ports};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// The carrier (or SBC) UAS on `TRUNK_IP:port` checking an emergency INVITE for `dial` and
/// `resource_priority`.
async fn trunk_uas(what: &str, dir: &Path, port: u16, dial: &str, resource_priority: &str) -> Sipp {
    Sipp::build(what, dir, "em_trunk_uas.xml")
        .local(TRUNK_IP, port)
        .set("dial", dial)
        .set("resource_priority", resource_priority)
        .listening()
        .await
}

/// The agent's phone answering calls (a PSAP's call back) on `port`.
async fn agent_uas(dir: &Path, port: u16) -> Sipp {
    let what = "the agent's phone (SIPp UAS)";
    Sipp::build(what, dir, "em_agent_uas.xml").local("127.0.0.1", port).listening().await
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
    Sipp::build(format!("the agent's {dial} call (SIPp UAC over {transport})"), dir, file)
        .to(edge)
        .args(&["-t", transport])
        .service(dial)
        .key("agent", "alice")
        .auth("alice", "secret")
        .key("contact_port", &contact_port.to_string())
        .start()
}

/// The agent `alice` registering again (digest), Contact `contact_port`, over UDP.
fn agent_register(dir: &Path, edge: SocketAddr, contact_port: u16) -> Sipp {
    Sipp::build("the agent's registration (SIPp UAC)", dir, "agent_register.xml")
        .to(edge)
        .service("alice")
        .auth("alice", "secret")
        .key("contact_port", &contact_port.to_string())
        .start()
}

/// The PSAP calling `did` from the carrier's address.
fn psap_call(dir: &Path, edge: SocketAddr, did: &str) -> Sipp {
    let what = format!("the PSAP calling {did} back (SIPp UAC from {TRUNK_IP})");
    Sipp::build(what, dir, "em_psap_uac.xml").to(edge).service(did).ip(TRUNK_IP).start()
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
async fn start_edge(dir: &TempDir, plan: &str, trunk_ports: (u16, u16)) -> Edge {
    let opts = Opts {
        plan: Some(plan.into()),
        seed: Some(AGENTS.into()),
        data: Some(dir.path().join("edge")),
        trunk_ports: Some(trunk_ports),
        ..Opts::default()
    };
    Edge::start_opts(opts, |_| {}).await
}

#[tokio::test]
async fn a_registered_agent_s_911_reaches_the_carrier_checked_and_the_psap_calls_her_back() {
    let dir = TempDir::new("sippem-911");
    let (carrier_port, backup_port) = (ports::reserve(), ports::reserve());
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let carrier =
        trunk_uas("the carrier (SIPp UAS)", dir.path(), carrier_port, "911", "esnet.1").await;
    let phone_port = ports::reserve();

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
    let dir = TempDir::new("sippem-933");
    let (carrier_port, backup_port) = (ports::reserve(), ports::reserve());
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let carrier =
        trunk_uas("the carrier (SIPp UAS)", dir.path(), carrier_port, "933", "esnet.1").await;
    let phone_port = ports::reserve();

    let agent = agent_call(dir.path(), edge.tcp, "t1", "933", phone_port);
    all_pass(vec![agent, carrier]).await;
    assert_eq!(metric(edge.admin, "lifeline_emergency_calls_total{test=\"true\"}").await, 1.0);
    assert_eq!(metric(edge.admin, "lifeline_emergency_calls_total{test=\"false\"}").await, 0.0);
    assert_eq!(metric(edge.admin, "lifeline_emergency_failovers_total").await, 0.0);
    edge.stop().await;
}

#[tokio::test]
async fn a_direct_routing_route_naming_911_sends_it_to_the_sbc_not_the_carrier() {
    let dir = TempDir::new("sippem-sbc");
    let (carrier_port, sbc_port) = (ports::reserve(), ports::reserve());
    let edge = start_edge(&dir, DIRECT_ROUTING_PLAN, (carrier_port, sbc_port)).await;
    // The carrier is up and would take the call: it must not get it.
    let carrier = tokio::net::UdpSocket::bind((TRUNK_IP, carrier_port)).await.unwrap();
    let sbc = trunk_uas("the SBC (SIPp UAS)", dir.path(), sbc_port, "911", "esnet.0").await;
    let phone_port = ports::reserve();

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
    let dir = TempDir::new("sippem-failover");
    let dead_port = ports::reserve(); // nothing listens there
    let (silent_port, backup_port) = (ports::reserve(), ports::reserve());
    let plan = FAILOVER_PLAN.replace("DEAD", &dead_port.to_string());
    let edge = start_edge(&dir, &plan, (silent_port, backup_port)).await;
    let what = "the silent carrier (SIPp UAS that never answers)";
    let silent = Sipp::build(what, dir.path(), "em_silent_uas.xml")
        .local(TRUNK_IP, silent_port)
        .listening()
        .await;
    let backup =
        trunk_uas("the backup carrier (SIPp UAS)", dir.path(), backup_port, "911", "esnet.1").await;
    let phone_port = ports::reserve();

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
    let dir = TempDir::new("sippem-checks");
    let (carrier_port, backup_port) = (ports::reserve(), ports::reserve());
    let edge = start_edge(&dir, CHECKS_PLAN, (carrier_port, backup_port)).await;
    let phone_port = ports::reserve();

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
    let dir = TempDir::new("sippem-hangup");
    let (carrier_port, backup_port) = (ports::reserve(), ports::reserve());
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let what = "the carrier whose PSAP hangs up (SIPp UAS)";
    let carrier = Sipp::build(what, dir.path(), "em_trunk_hangup_uas.xml")
        .local(TRUNK_IP, carrier_port)
        .listening()
        .await;
    let phone_port = ports::reserve();

    let file = "em_agent_call_psap_hangs_up.xml";
    let agent = agent_scenario(file, dir.path(), edge.udp, "u1", "911", phone_port);
    all_pass(vec![agent, carrier]).await;
    assert_eq!(metric(edge.admin, "lifeline_emergency_calls_total{test=\"false\"}").await, 1.0);
    edge.stop().await;
}

#[tokio::test]
async fn a_psap_call_back_rings_every_phone_of_the_agent_at_once() {
    let dir = TempDir::new("sippem-forking");
    let (carrier_port, backup_port) = (ports::reserve(), ports::reserve());
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let carrier =
        trunk_uas("the carrier (SIPp UAS)", dir.path(), carrier_port, "911", "esnet.1").await;
    let (desk_port, laptop_port) = (ports::reserve(), ports::reserve());

    // The call is made from the desk phone; the agent is also registered from her laptop.
    let agent = agent_call(dir.path(), edge.udp, "u1", "911", desk_port);
    let logs = all_pass(vec![agent, carrier]).await;
    let did = callback_number(&logs[1]);
    agent_register(dir.path(), edge.udp, laptop_port).passes().await;

    // The PSAP calls back: both ring, the desk phone answers, the laptop is cancelled.
    let desk = agent_uas(dir.path(), desk_port).await;
    let what = "the agent's other phone (SIPp UAS, rings, cancelled)";
    let laptop = Sipp::build(what, dir.path(), "em_agent_uas_ringing.xml")
        .local("127.0.0.1", laptop_port)
        .listening()
        .await;
    all_pass(vec![psap_call(dir.path(), edge.udp, &did), desk, laptop]).await;
    assert_eq!(metric(edge.admin, "lifeline_psap_callbacks_total").await, 1.0);
    edge.stop().await;
}

#[tokio::test]
async fn a_softphone_s_own_location_reaches_the_carrier_with_the_call() {
    let dir = TempDir::new("sippem-softphone-pidf");
    let (carrier_port, backup_port) = (ports::reserve(), ports::reserve());
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let what = "the carrier checking the location (SIPp UAS)";
    let carrier = Sipp::build(what, dir.path(), "em_trunk_pidf_uas.xml")
        .local(TRUNK_IP, carrier_port)
        .listening()
        .await;
    let phone_port = ports::reserve();

    let file = "em_agent_call_pidf.xml";
    let agent = agent_scenario(file, dir.path(), edge.udp, "u1", "911", phone_port);
    all_pass(vec![agent, carrier]).await;
    edge.stop().await;
}

#[tokio::test]
async fn the_carrier_gets_the_agent_s_provisioned_location_as_pidf_lo() {
    let dir = TempDir::new("sippem-pidf");
    let (carrier_port, backup_port) = (ports::reserve(), ports::reserve());
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let what = "the carrier checking the location (SIPp UAS)";
    let carrier = Sipp::build(what, dir.path(), "em_trunk_pidf_uas.xml")
        .local(TRUNK_IP, carrier_port)
        .listening()
        .await;
    let phone_port = ports::reserve();

    let agent = agent_call(dir.path(), edge.udp, "u1", "911", phone_port);
    all_pass(vec![agent, carrier]).await;
    edge.stop().await;
}

#[tokio::test]
async fn the_agent_s_in_dialog_requests_keep_the_callback_number_toward_the_carrier() {
    let dir = TempDir::new("sippem-dialog");
    let (carrier_port, backup_port) = (ports::reserve(), ports::reserve());
    let edge = start_edge(&dir, PLAN, (carrier_port, backup_port)).await;
    let what = "the carrier checking the dialog's From (SIPp UAS)";
    let carrier = Sipp::build(what, dir.path(), "em_trunk_dialog_uas.xml")
        .local(TRUNK_IP, carrier_port)
        .listening()
        .await;
    let phone_port = ports::reserve();

    let agent = agent_call(dir.path(), edge.udp, "u1", "911", phone_port);
    all_pass(vec![agent, carrier]).await;
    edge.stop().await;
}

#[tokio::test]
async fn a_callback_lease_survives_kill_dash_9_of_the_binary() {
    let dir = TempDir::new("sippem-kill9");
    let d = dir.path();
    let (carrier_port, backup_port) = (ports::reserve(), ports::reserve());
    let sip_port = ports::reserve();
    let sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", ports::reserve()).parse().unwrap();
    let (web, tcp, smtp) = (ports::reserve(), ports::reserve(), ports::reserve());
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
    let phone_port = ports::reserve();
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

/// Sends in-dialog BYEs the edge must relay statefully (each a server and a client
/// transaction, retransmitted toward a UDP socket nobody reads) over one TCP connection, from
/// another thread, as fast as the edge reads them, until the flag turns `true`. The
/// transports shed only new calls early; requests within dialogs and responses go on into the
/// core's queue (so that calls in progress can end), and this flood fills it. Over TCP the
/// flood waits for the edge's reader instead of overflowing the kernel's buffer of the UDP
/// socket that the emergency call uses: what is shed is shed by the edge. Returns how many
/// BYEs it sent.
fn flood_byes(edge_tcp: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sink_port = sink.local_addr().unwrap().port();
        let mut tcp = std::net::TcpStream::connect(edge_tcp).unwrap();
        let me = tcp.local_addr().unwrap();
        // Whatever the edge answers is read and dropped, so that its writer never blocks.
        let mut answers = tcp.try_clone().unwrap();
        std::thread::spawn(move || std::io::copy(&mut answers, &mut std::io::sink()));
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // New transactions each time (a retransmission would be absorbed cheaply).
            let mut batch = Vec::new();
            for _ in 0..256 {
                sent += 1;
                batch.extend_from_slice(
                    format!(
                        "BYE sip:x@127.0.0.1:{sink_port} SIP/2.0\r\n\
                         Via: SIP/2.0/TCP {me};branch=z9hG4bKflood{sent}\r\n\
                         From: <sip:flood@127.0.0.1>;tag=f{sent}\r\n\
                         To: <sip:x@127.0.0.1>;tag=t{sent}\r\n\
                         Call-ID: flood-{sent}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n\
                         Content-Length: 0\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
            if std::io::Write::write_all(&mut tcp, &batch).is_err() {
                break;
            }
        }
        let _ = tcp.shutdown(std::net::Shutdown::Both);
        drop(sink);
        sent
    })
}

/// Issue 6 §7 under overload: the core's ordinary queue is full (a flood of in-dialog requests
/// to relay, shed by the transports as it overflows) while an emergency call is set up, held and
/// hung up. Every message of the call takes the priority lane, the 200 to the caller's BYE
/// included: the BYE reaches the carrier and its 200 comes back to the caller. (Before the
/// fix, the edge forgot the call's Call-ID at the BYE, and the carrier's 200 went into the
/// full ordinary queue and was shed with each retransmission.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_call_hangs_up_cleanly_while_the_core_is_saturated() {
    let dir = TempDir::new("sippem-saturated");
    let (carrier_port, backup_port) = (ports::reserve(), ports::reserve());
    let opts = Opts {
        plan: Some(PLAN.into()),
        seed: Some(AGENTS.into()),
        data: Some(dir.path().join("edge")),
        trunk_ports: Some((carrier_port, backup_port)),
        ..Opts::default()
    };
    // No rate limit for the flood: the core's queue, not the limiter, is what overflows.
    let edge = Edge::start_opts(opts, |c| c.limits.per_source_rps = 10_000_000).await;
    // The bench's plain scenarios (no checks): a UAS that answers, a UAC that hangs up.
    let bench = "../../bench/sipp/scenarios";
    let carrier = Sipp::build("the carrier (SIPp UAS)", dir.path(), &format!("{bench}/uas_rr.xml"))
        .name("carrier")
        .local(TRUNK_IP, carrier_port)
        .listening()
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let flood = flood_byes(edge.tcp, stop.clone());
    // The flood has filled the core's queue: messages are being shed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(edge.admin, "lifeline_sip_shed_total").await < 1000.0 {
        assert!(Instant::now() < deadline, "the flood did not saturate the core");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shed_before = metric(edge.admin, "lifeline_sip_shed_total").await;

    // An unauthenticated 911 (the site number), answered, held 3 s, hung up by the caller.
    let caller =
        Sipp::build("the caller's 911 (SIPp UAC)", dir.path(), &format!("{bench}/uac_rr.xml"))
            .name("caller")
            .to(edge.udp)
            .service("911")
            .args(&["-d", "3000"])
            .start();
    let outcome = tokio::spawn(all_pass(vec![caller, carrier])).await;
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    let shed = metric(edge.admin, "lifeline_sip_shed_total").await - shed_before;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
    // Still saturated while the call was up (not a quiet moment that let it through).
    assert!(shed > 1000.0, "only {shed} messages shed during the call ({sent} sent)");
    assert_eq!(metric(edge.admin, "lifeline_emergency_calls_total{test=\"false\"}").await, 1.0);
    // Not a graceful stop: that would wait for the flood's transactions.
    let data = edge.kill().await;
    let _ = std::fs::remove_dir_all(data);
}
