//! The edge against real SIP peers: SIPp (Debian `sip-tester`, installed by `scripts/test`)
//! as an agent's phone and as a trunk, over UDP on loopback.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::Edge;
use tokio::process::{Child, Command};

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(name)
}

/// A UDP port free right now on loopback (SIPp takes a port number, not a socket).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn sipp(args: &[&str], dir: &Path) -> Child {
    Command::new("sipp")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp not found: run scripts/test, which installs sip-tester")
}

async fn wait_ok(child: Child, what: &str, dir: &Path) {
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish"))
        .unwrap();
    if !out.status.success() {
        let errors: String = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        panic!(
            "{what} failed ({}):\n{}\n{errors}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

async fn registrations(edge: &Edge) -> i64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(edge.admin).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf.lines()
        .find_map(|l| l.strip_prefix("lifeline_registrations "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn sipp_trunk_calls_a_sipp_agent_registered_with_digest() {
    let edge = Edge::start().await;
    let dir = std::env::temp_dir().join(format!("lifeline-sipp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let edge_addr = edge.udp.to_string();

    // The agent's phone: a SIPp UAS answering calls, and a SIPp client registering for it
    // with digest authentication (Contact = the UAS's port).
    let uas_port = free_udp_port().to_string();
    let agent = sipp(
        &[
            "-sf",
            scenario("agent_uas.xml").to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port,
            "-m",
            "1",
            "-timeout",
            "15",
            "-timeout_error",
            "-trace_err",
            "-nostdin",
        ],
        &dir,
    );
    let reg_port = free_udp_port().to_string();
    let register = sipp(
        &[
            &edge_addr,
            "-sf",
            scenario("agent_register.xml").to_str().unwrap(),
            "-s",
            "alice",
            "-au",
            "alice",
            "-ap",
            "secret",
            "-key",
            "contact_port",
            &uas_port,
            "-i",
            "127.0.0.1",
            "-p",
            &reg_port,
            "-m",
            "1",
            "-timeout",
            "10",
            "-timeout_error",
            "-trace_err",
            "-nostdin",
        ],
        &dir,
    );
    wait_ok(register, "SIPp registration with digest auth", &dir).await;
    // The agent is reachable once its registration is in the location table.
    let mut registered = false;
    for _ in 0..100 {
        if registrations(&edge).await >= 1 {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(registered, "the SIPp agent never registered");

    let trunk_port = free_udp_port().to_string();
    let trunk = sipp(
        &[
            &edge_addr,
            "-sf",
            scenario("trunk_uac.xml").to_str().unwrap(),
            "-s",
            "alice",
            "-i",
            common::TRUNK_IP,
            "-p",
            &trunk_port,
            "-m",
            "1",
            "-timeout",
            "15",
            "-timeout_error",
            "-trace_err",
            "-nostdin",
        ],
        &dir,
    );
    wait_ok(trunk, "SIPp trunk (INVITE, 200, ACK, BYE through the edge)", &dir).await;
    wait_ok(agent, "SIPp agent UAS (answer the call, then the BYE)", &dir).await;
    edge.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
