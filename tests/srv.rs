//! Trunks found through DNS SRV (RFC 3263 §4.2, RFC 2782) against a real DNS server: dnsmasq
//! (Debian `dnsmasq-base`, installed by `scripts/test`) on a reserved loopback port, named by
//! `[dns] servers`, serving `_sip._udp.carrier.test` with two records — `sbc1.carrier.test`
//! at port P1 (priority 10) and `sbc2.carrier.test` at port P2 (priority 20), both at
//! 127.0.0.1. The dialplan's trunk is `sip:carrier.test` (no port: SRV applies).
//!
//! - The SRV targets show in the admin API in priority order, each with its port.
//! - alice's call to that trunk reaches a SIPp UAS on P1, with the name kept in the
//!   Request-URI.
//! - When the UAS on P1 answers 503, the call fails over to the UAS on P2.
//! - A request from a target's address is from the trunk (the inbound rules, not a
//!   challenge).
//! - A trunk whose name has no SRV records (`sip:plain.test`) gets its A record from the
//!   same `[dns] servers` (the system resolver does not know the name).
//! - With probes on, every SRV target is probed: when the first answers OPTIONS with 503, calls
//!   go to the second first (the first is never sent the INVITE), and the trunk stays up.
//! - NAPTR (RFC 3263 §4.1): `sip:tcp.test` has a `SIP+D2T` record (order 10) pointing at
//!   `_sip._tcp.tcp.test` and a `SIP+D2U` one (order 20); the call reaches a SIPp UAS that
//!   listens on TCP only, over TCP (its Via says so), although the URI names no transport;
//!   the target shows in the admin API with its transport, probes go over TCP too, and a
//!   request from the target's address is from the trunk.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::sipp::{Sipp, all_pass};
use common::ua::udp_recv_until;
use common::{Edge, Opts, TempDir, ports};

/// One trunk found through SRV, US numbers routed to it, alice's DID.
const PLAN: &str = r#"
[[trunk]]
name = "carrier"
kind = "direct-offer"
uri = "sip:carrier.test"
probe = false

[[trunk]]
name = "plain"
kind = "direct-offer"
uri = "sip:plain.test"
probe = false

[[route]]
pattern = '^\+1[2-9]\d{9}$'
trunks = ["carrier"]

[[inbound]]
did = "+15550100123"
to = "agent:alice"
"#;

/// The address alice's phone calls from: not 127.0.0.1, which is the SRV targets' address
/// (a request from there is from the trunk).
const PHONE_IP: &str = "127.0.0.2";

/// dnsmasq serving the two SRV records of `carrier.test`; killed on drop.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Dnsmasq {
    /// Starts dnsmasq on a reserved port with records pointing at `p1` and `p2`, and returns
    /// once it accepts TCP (it listens on UDP first).
    fn start(dir: &Path, p1: u16, p2: u16) -> Dnsmasq {
        Dnsmasq::start_with(dir, p1, p2, &[])
    }

    /// [`Dnsmasq::start`] with more records (`extra`: dnsmasq options).
    fn start_with(dir: &Path, p1: u16, p2: u16, extra: &[String]) -> Dnsmasq {
        let port = ports::reserve();
        let log = std::fs::File::create(dir.join("dnsmasq.log")).unwrap();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                // Its own pid file: two tests' dnsmasq (or a killed one's stale file) would
                // clash on the default /var/run/dnsmasq.pid.
                &format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
                "--log-queries",
                "--log-facility=-",
                &format!("--srv-host=_sip._udp.carrier.test,sbc1.carrier.test,{p1},10,50"),
                &format!("--srv-host=_sip._udp.carrier.test,sbc2.carrier.test,{p2},20,50"),
                "--host-record=sbc1.carrier.test,127.0.0.1",
                "--host-record=sbc2.carrier.test,127.0.0.1",
                "--host-record=plain.test,127.0.0.3",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start dnsmasq ({e}): install Debian's dnsmasq-base (scripts/test)")
            });
        let mut dns = Dnsmasq { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&dns.addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = dns.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("dnsmasq.log")).unwrap_or_default();
                panic!("dnsmasq exited ({status}):\n{log}");
            }
            assert!(Instant::now() < until, "dnsmasq does not listen on {}", dns.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        dns
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The edge with [`PLAN`], asking `dns` for SRV records, once the trunk's SRV targets are
/// known (`GET /api/dialplan`); returns them as the API shows them.
async fn edge_with(dns: &Dnsmasq) -> (Edge, Vec<String>) {
    edge_with_plan(dns, PLAN).await
}

/// [`edge_with`] for another dialplan (whose first trunk is the SRV one).
async fn edge_with_plan(dns: &Dnsmasq, plan: &str) -> (Edge, Vec<String>) {
    let server = dns.addr;
    let opts = Opts { plan: Some(plan.to_owned()), ..Opts::default() };
    let edge = Edge::start_opts(opts, |c| c.dns.servers = vec![server]).await;
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, plan) = edge.api("GET", "/api/dialplan", None).await;
        assert_eq!(status, 200);
        let trunk = &plan["trunks"][0];
        if trunk["dns"] == "resolved" {
            let targets = trunk["addresses"].as_array().unwrap();
            let targets = targets.iter().map(|a| a.as_str().unwrap().to_owned()).collect();
            return (edge, targets);
        }
        assert!(Instant::now() < until, "the SRV targets never showed: {trunk}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// alice's phone (on [`PHONE_IP`], digest auth) calling `number` through the edge: answered
/// (ACK, BYE) or refused with 486; anything else fails it.
fn alice_calls(dir: &Path, edge: SocketAddr, number: &str) -> Sipp {
    // The digest `uri` must be the Request-URI (RFC 3261 §22.4); SIPp's default is the host.
    let auth_uri = format!("{number}@{edge}");
    Sipp::build(format!("alice calling {number}"), dir, "agent_call_out.xml")
        .to(edge)
        .ip(PHONE_IP)
        .service(number)
        .auth("alice", "secret")
        .args(&["-auth_uri", &auth_uri, "-d", "200"])
        .timeout(Duration::from_secs(20))
        .start()
}

/// The Request-URI of the first INVITE `peer` received.
fn invite_uri(peer: &Sipp) -> String {
    let invite = peer.received().into_iter().find(|m| m.starts_with("INVITE ")).unwrap();
    invite.lines().next().unwrap().to_owned()
}

#[tokio::test]
async fn a_call_goes_to_the_first_srv_target_at_its_port() {
    let dir = TempDir::new("srv-first");
    let d = dir.path();
    let (p1, p2) = (ports::reserve(), ports::reserve());
    let dns = Dnsmasq::start(d, p1, p2);
    let (edge, targets) = edge_with(&dns).await;
    assert_eq!(targets, [format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}")], "priority order");
    // No SRV records for plain.test: its A record, asked of the same server.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, plan) = edge.api("GET", "/api/dialplan", None).await;
        let trunk = &plan["trunks"][1];
        if trunk["dns"] == "resolved" {
            assert_eq!(trunk["addresses"], serde_json::json!(["127.0.0.3"]), "{trunk}");
            break;
        }
        assert!(Instant::now() < until, "plain.test never resolved: {trunk}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sbc1 = Sipp::build("sbc1 (SIPp UAS on P1)", d, "agent_uas.xml")
        .local("127.0.0.1", p1)
        .timeout(Duration::from_secs(20))
        .listening()
        .await;
    all_pass(vec![alice_calls(d, edge.udp, "+12025550199"), sbc1]).await;

    // A request from a target's address is from the trunk: the inbound rules (alice has no
    // registration: 480), not the challenge a stranger gets (407).
    an_invite_from_the_targets_address_gets_480(&edge, "srvin").await;
    edge.stop().await;
}

#[tokio::test]
async fn a_503_from_the_first_srv_target_fails_over_to_the_second() {
    let dir = TempDir::new("srv-failover");
    let d = dir.path();
    let (p1, p2) = (ports::reserve(), ports::reserve());
    let dns = Dnsmasq::start(d, p1, p2);
    let (edge, _) = edge_with(&dns).await;

    let sbc1 = Sipp::build("sbc1 (SIPp UAS on P1, 503)", d, "trunk_unavailable_uas.xml")
        .local("127.0.0.1", p1)
        .timeout(Duration::from_secs(20))
        .listening()
        .await;
    let sbc2 = Sipp::build("sbc2 (SIPp UAS on P2)", d, "agent_uas.xml")
        .local("127.0.0.1", p2)
        .timeout(Duration::from_secs(20))
        .listening()
        .await;
    let caller = alice_calls(d, edge.udp, "+12025550199");
    all_pass(vec![caller]).await;
    let (sbc1_uri, sbc2_uri) = (invite_uri(&sbc1), invite_uri(&sbc2));
    all_pass(vec![sbc1, sbc2]).await;
    // Both INVITEs keep the trunk's name in the Request-URI (RFC 3263 §4.2: the name, not
    // the SRV target, is what the request is for).
    for uri in [sbc1_uri, sbc2_uri] {
        assert!(uri.starts_with("INVITE sip:+12025550199@carrier.test"), "{uri}");
    }
    edge.stop().await;
}

/// A trunk target that answers every OPTIONS with 503 (down for maintenance, RFC 3261
/// §21.5.4) and counts the INVITEs it is sent; `answered` turns true after its first 503.
async fn unavailable_target(
    port: u16,
) -> (std::sync::Arc<std::sync::atomic::AtomicUsize>, tokio::sync::watch::Receiver<bool>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let socket = tokio::net::UdpSocket::bind(("127.0.0.1", port)).await.unwrap();
    let invites = std::sync::Arc::new(AtomicUsize::new(0));
    let (answered_tx, answered) = tokio::sync::watch::channel(false);
    let counted = invites.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("INVITE ") {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            if !text.starts_with("OPTIONS ") {
                continue;
            }
            let copied: String = text
                .lines()
                .filter(|l| {
                    let name = l.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
                    ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str())
                })
                .map(|l| format!("{l}\r\n"))
                .collect();
            let reply =
                format!("SIP/2.0 503 Service Unavailable\r\n{copied}Content-Length: 0\r\n\r\n");
            let _ = socket.send_to(reply.as_bytes(), from).await;
            let _ = answered_tx.send(true);
        }
    });
    (invites, answered)
}

#[tokio::test]
async fn a_target_that_fails_its_probe_is_tried_after_the_live_one() {
    let dir = TempDir::new("srv-probe");
    let d = dir.path();
    let (p1, p2) = (ports::reserve(), ports::reserve());
    let dns = Dnsmasq::start(d, p1, p2);
    let (invites_at_p1, mut answered) = unavailable_target(p1).await;
    // sbc2 answers the edge's OPTIONS itself (-aa) and takes the call. SIPp counts the probe
    // against `-m` without ending it as a call: it may take two and is stopped at the end.
    let sbc2 = Sipp::build("sbc2 (SIPp UAS on P2)", d, "agent_uas.xml")
        .local("127.0.0.1", p2)
        .args(&["-aa"])
        .calls(2)
        .timeout(Duration::from_secs(30))
        .listening()
        .await;
    let plan = PLAN.replacen("probe = false", "probe = true", 1);
    let (edge, targets) = edge_with_plan(&dns, &plan).await;
    assert_eq!(targets, [format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}")], "priority order");
    // Probed as soon as the name resolved: P1 says 503.
    tokio::time::timeout(Duration::from_secs(10), answered.wait_for(|a| *a))
        .await
        .expect("the edge probes the first SRV target")
        .unwrap();
    // The trunk is up (P2 answers), with P1 tried last.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = edge.metrics().await;
        if metrics.contains("lifeline_trunk_up{trunk=\"carrier\"} 1") {
            break;
        }
        assert!(Instant::now() < until, "the carrier trunk is not up:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    all_pass(vec![alice_calls(d, edge.udp, "+12025550199")]).await;
    let at_sbc2 = sbc2.received();
    assert!(at_sbc2.iter().any(|m| m.starts_with("INVITE sip:+12025550199@carrier.test")));
    assert!(at_sbc2.iter().any(|m| m.starts_with("BYE ")), "the call ended at sbc2");
    drop(sbc2);
    assert_eq!(
        invites_at_p1.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the target that failed its probe was tried first"
    );
    edge.stop().await;
}

/// A trunk whose NAPTR records choose its transport: `sip:tcp.test`, probed.
const NAPTR_PLAN: &str = r#"
[[trunk]]
name = "naptr"
kind = "direct-offer"
uri = "sip:tcp.test"
probe = true

[[route]]
pattern = '^\+1[2-9]\d{9}$'
trunks = ["naptr"]

[[inbound]]
did = "+15550100123"
to = "agent:alice"
"#;

#[tokio::test]
async fn naptr_sends_the_call_over_the_transport_it_chose() {
    let dir = TempDir::new("srv-naptr");
    let d = dir.path();
    let (p1, p2) = (ports::reserve(), ports::reserve());
    // The TCP target, and a UDP port where nobody listens: `_sip._udp.tcp.test` (what the
    // edge asked before NAPTR, and the order-20 record) leads there.
    let (tcp_port, udp_port) = (ports::reserve(), ports::reserve());
    let extra = [
        // --naptr-record=NAME,ORDER,PREFERENCE,FLAGS,SERVICE,REGEXP,REPLACEMENT
        "--naptr-record=tcp.test,20,10,S,SIP+D2U,,_sip._udp.tcp.test".to_owned(),
        "--naptr-record=tcp.test,10,10,S,SIP+D2T,,_sip._tcp.tcp.test".to_owned(),
        format!("--srv-host=_sip._tcp.tcp.test,sbc.tcp.test,{tcp_port},10,50"),
        format!("--srv-host=_sip._udp.tcp.test,sbc.tcp.test,{udp_port},10,50"),
        "--host-record=sbc.tcp.test,127.0.0.1".to_owned(),
    ];
    let dns = Dnsmasq::start_with(d, p1, p2, &extra);
    // The UAS listens on TCP (`-t t1`) and answers the edge's OPTIONS probes itself (-aa);
    // SIPp counts a probe against `-m`, so it may take more and is stopped at the end.
    let sbc = Sipp::build("sbc (SIPp UAS over TCP)", d, "agent_uas.xml")
        .local("127.0.0.1", tcp_port)
        .args(&["-t", "t1", "-aa"])
        .calls(3)
        .timeout(Duration::from_secs(30))
        .listening()
        .await;
    let (edge, targets) = edge_with_plan(&dns, NAPTR_PLAN).await;
    assert_eq!(targets, [format!("127.0.0.1:{tcp_port};transport=tcp")], "NAPTR chose TCP");
    // The probe went over TCP and was answered: the trunk is up.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = edge.metrics().await;
        if metrics.contains("lifeline_trunk_up{trunk=\"naptr\"} 1")
            && sbc.received().iter().any(|m| m.starts_with("OPTIONS "))
        {
            break;
        }
        assert!(Instant::now() < until, "the TCP target was never probed:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    all_pass(vec![alice_calls(d, edge.udp, "+12025550199")]).await;
    let at_sbc = sbc.received();
    let invite =
        at_sbc.iter().find(|m| m.starts_with("INVITE ")).expect("the INVITE reached the TCP UAS");
    // The Request-URI keeps the name (no `;transport=` added); the edge's Via says TCP.
    assert!(invite.starts_with("INVITE sip:+12025550199@tcp.test SIP/2.0"), "{invite}");
    let via = common::sipp::header(invite, "Via").unwrap();
    assert!(via.starts_with("SIP/2.0/TCP "), "{via}");
    assert!(at_sbc.iter().any(|m| m.starts_with("BYE ")), "the call ended at the TCP UAS");
    drop(sbc);

    // A request from the target's address is from the trunk (480: alice is not registered),
    // not a stranger's (407).
    an_invite_from_the_targets_address_gets_480(&edge, "naptrin").await;
    edge.stop().await;
}

/// A request from a trunk target's address (127.0.0.1) is from the trunk: the inbound rules
/// answer (480: alice has no registration), not the challenge a stranger gets (407). `tag`
/// makes the INVITE's branch, tag and Call-ID its own.
async fn an_invite_from_the_targets_address_gets_480(edge: &Edge, tag: &str) {
    let from_trunk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = from_trunk.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:+15550100123@{edge} SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bK{tag}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+12025550100@{me}>;tag={tag}\r\n\
To: <sip:+15550100123@{edge}>\r\n\
Call-ID: {tag}@carrier\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:+12025550100@{me}>\r\n\
Content-Length: 0\r\n\r\n",
        edge = edge.udp
    );
    from_trunk.send_to(invite.as_bytes(), edge.udp).await.unwrap();
    let reply = udp_recv_until(&from_trunk, "SIP/2.0 4").await;
    assert!(reply.starts_with("SIP/2.0 480 "), "{reply}");
}
