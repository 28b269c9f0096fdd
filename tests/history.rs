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
use std::path::Path;
use std::time::{Duration, Instant};

use common::binary::Binary;
use common::sipp::{Sipp, all_pass};
use common::{Edge, Opts, TRUNK_IP, TempDir, ports};
use lifeline::store::{Binding, SqliteStore, Store};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// alice's phone calling `number` through the edge with digest auth (`scenario_file`:
/// `agent_call_out.xml` or `agent_cancel.xml`), holding an answered call `hold_ms`.
fn agent_calls(
    dir: &Path,
    edge: SocketAddr,
    scenario_file: &str,
    number: &str,
    hold_ms: u32,
) -> Sipp {
    // The digest `uri` must be the Request-URI (RFC 3261 §22.4); SIPp's default is the host.
    let auth_uri = format!("{number}@{edge}");
    Sipp::build(format!("alice calling {number} ({scenario_file})"), dir, scenario_file)
        .to(edge)
        .service(number)
        .auth("alice", "secret")
        .args(&["-auth_uri", &auth_uri, "-d", &hold_ms.to_string()])
        .start()
}

/// alice's phone registering (digest) with its Contact on `contact_port`, then (with `dial`)
/// making an emergency call without credentials (`em_agent_call.xml`); or only registering
/// (`agent_register.xml`).
fn agent_register(dir: &Path, edge: SocketAddr, contact_port: u16, dial: Option<&str>) -> Sipp {
    let sipp = match dial {
        Some(d) => Sipp::build("alice's phone registering", dir, "em_agent_call.xml")
            .service(d)
            .key("agent", "alice"),
        None => {
            Sipp::build("alice's phone registering", dir, "agent_register.xml").service("alice")
        }
    };
    sipp.to(edge).auth("alice", "secret").key("contact_port", &contact_port.to_string()).start()
}

/// A trunk on 127.0.0.2 calling `did` through the edge (`trunk_uac.xml`: answered, BYE).
fn trunk_calls(dir: &Path, edge: SocketAddr, did: &str) -> Sipp {
    let what = format!("the trunk calling {did}");
    Sipp::build(what, dir, "trunk_uac.xml").to(edge).service(did).ip(TRUNK_IP).start()
}

/// A trunk or phone UAS on `ip:port` running `scenario_file` (with `extra` arguments), once
/// it listens.
async fn uas(
    what: &str,
    dir: &Path,
    ip: &str,
    port: u16,
    scenario_file: &str,
    extra: &[&str],
) -> Sipp {
    Sipp::build(what, dir, scenario_file).local(ip, port).args(extra).listening().await
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
    let dir = TempDir::new("history-rows");
    let d = dir.path();
    let ports = (ports::reserve(), ports::reserve());
    let third = ports::reserve();
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
    let carrier = uas(what, d, TRUNK_IP, ports.0, "em_trunk_uas.xml", &checks).await;
    let phone_port = ports::reserve();
    all_pass(vec![agent_register(d, edge.udp, phone_port, Some("911")), carrier]).await;

    // Then three ordinary calls, one per trunk: answered and held 1.5 s, refused, cancelled.
    let answering = uas("the carrier answering", d, TRUNK_IP, ports.0, "agent_uas.xml", &[]).await;
    let busy = uas("the busy carrier", d, TRUNK_IP, ports.1, "trunk_busy_uas.xml", &[]).await;
    let slow = uas("the slow carrier", d, TRUNK_IP, third, "trunk_ringing_uas.xml", &[]).await;
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

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_udp_registration_survives_kill_dash_9_and_takes_a_did_call() {
    let dir = TempDir::new("history-kill9");
    let d = dir.path();
    let carrier_port = ports::reserve();
    let sip_port = ports::reserve();
    let sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", ports::reserve()).parse().unwrap();
    let (web, tcp) = (ports::reserve(), ports::reserve());
    std::fs::create_dir_all(d.join("dialplans")).unwrap();
    let plan = PLAN
        .replace("PRIMARY", &carrier_port.to_string())
        .replace("SECONDARY", &ports::reserve().to_string())
        .replace("THIRD", &ports::reserve().to_string());
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
    let phone_port = ports::reserve();
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
    let phone = uas(what, d, "127.0.0.1", phone_port, "agent_uas.xml", &[]).await;
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

#[tokio::test]
async fn a_graceful_stop_writes_the_snapshot_at_once_and_the_call_still_up() {
    let dir = TempDir::new("history-graceful");
    let d = dir.path();
    let ports = (ports::reserve(), ports::reserve());
    let opts = Opts {
        plan: Some(PLAN.replace("THIRD", &ports::reserve().to_string())),
        seed: Some(AGENTS.into()),
        data: Some(d.join("edge")),
        trunk_ports: Some(ports),
        ..Opts::default()
    };
    let edge = Edge::start_opts(opts, |_| {}).await;
    let carrier = uas("the carrier answering", d, TRUNK_IP, ports.0, "agent_uas.xml", &[]).await;
    let registered = Instant::now();
    all_pass(vec![agent_register(d, edge.udp, ports::reserve(), None)]).await;
    // A call answered and held long past the stop.
    let caller = agent_calls(d, edge.udp, "agent_call_out.xml", "+15551230001", 60_000);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !carrier.saw("ACK sip:") {
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
