//! The edge against real SIP peers: SIPp (Debian `sip-tester`, installed by `scripts/test`)
//! as an agent's phone and as a trunk, over UDP on loopback.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::sipp::{Sipp, all_pass};
use common::{Edge, TempDir};

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
    let dir = TempDir::new("sipp");
    let d = dir.path();

    // The agent's phone: a SIPp UAS answering calls, and a SIPp client registering for it
    // with digest authentication (Contact = the UAS's port).
    let agent = Sipp::build("SIPp agent UAS (answer the call, then the BYE)", d, "agent_uas.xml")
        .timeout(Duration::from_secs(15))
        .listening()
        .await;
    let register = Sipp::build("SIPp registration with digest auth", d, "agent_register.xml")
        .to(edge.udp)
        .service("alice")
        .auth("alice", "secret")
        .key("contact_port", &agent.port().to_string())
        .timeout(Duration::from_secs(10))
        .start();
    all_pass(vec![register]).await;
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

    let what = "SIPp trunk (INVITE, 200, ACK, BYE through the edge)";
    let trunk = Sipp::build(what, d, "trunk_uac.xml")
        .to(edge.udp)
        .service("alice")
        .ip(common::TRUNK_IP)
        .timeout(Duration::from_secs(15))
        .start();
    all_pass(vec![trunk, agent]).await;
    edge.stop().await;
}
