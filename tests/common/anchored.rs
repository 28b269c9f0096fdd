//! The edge of the anchored-call tests (tests/late_offer.rs, tests/reoffer.rs): a carrier on
//! the trunk address that owns alice's DID and takes her calls, and SIPp playing it with RTP
//! echo.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;

use super::sipp::Sipp;
use super::ua::{header, parse_request, uas_response};
use super::webrtc::{Ws, ws_recv_until, ws_send};
use super::{Edge, Opts, TRUNK_IP, ports};

/// The carrier on 127.0.0.2 owns alice's DID (+15550100123 rings her) and takes her ordinary
/// and emergency calls; PSAP callbacks come from it.
pub const PLAN: &str = r#"
[[trunk]]
name = "carrier"
kind = "direct-offer"
uri = "sip:127.0.0.2:PRIMARY;transport=udp"
sources = ["127.0.0.2/32"]
numbers = ["+15550100000-+15550100999"]
emergency = { resource_priority = "esnet.1" }
probe = false

[[route]]
pattern = '^\+1[2-9]\d{9}$'
trunks = ["carrier"]

[[inbound]]
did = "+15550100123"
to = "agent:alice"

[emergency]
callback_pool = ["+15550100900-+15550100901"]
site_number = "+15550100999"
callback_fallback = "agent:alice"
"#;

/// alice, with a provisioned US address.
pub const AGENTS: &str = "[[agent]]\nid = \"alice\"\npassword = \"secret\"\n\
    caller_id = [\"+15550100123\"]\nlocation = { country = \"US\", address = \"1 Main St\" }\n";

/// alice's DID.
pub const DID: &str = "+15550100123";
/// A number alice calls out to.
pub const CALL_NUMBER: &str = "+12025550199";

/// An edge with [`PLAN`] and [`AGENTS`], its RTP ports from `ports` (`"LOW-HIGH"`).
pub async fn start(ports: &str) -> Edge {
    let opts = Opts { plan: Some(PLAN.into()), seed: Some(AGENTS.into()), ..Opts::default() };
    let ports = ports.to_owned();
    Edge::start_opts(opts, move |c| {
        c.limits.max_message_bytes = 65535;
        c.media.rtp_ports = ports.parse().unwrap();
    })
    .await
}

/// SIPp as a carrier or PSAP calling `service` through the edge with `scenario`, from a
/// reserved port on the trunk's address; `-rtp_echo` on a reserved media port, pausing
/// `pause_ms` where its scenario says `<pause/>`. Its files go to `dir`.
pub fn sipp_uac(edge: &Edge, dir: &Path, scenario: &str, service: &str, pause_ms: u32) -> Sipp {
    let (media, pause) = (ports::reserve_media().to_string(), pause_ms.to_string());
    Sipp::build(scenario, dir, scenario)
        .to(edge.udp)
        .ip(TRUNK_IP)
        .service(service)
        .args(&["-mp", &media, "-rtp_echo", "-d", &pause])
        .start()
}

/// The carrier (`trunk`) refuses alice's 933 call `em1` (received as `at_trunk`) with 486, and
/// her phone (`ws`) acknowledges it. Returns the callback number the call leased (from its
/// P-Asserted-Identity), asserted to be from the pool.
pub async fn refuse_emergency_call(
    edge: &Edge,
    ws: &mut Ws,
    trunk: &UdpSocket,
    at_trunk: &str,
) -> String {
    let pai = header(at_trunk, "P-Asserted-Identity")[0];
    let did: String = pai
        .chars()
        .skip_while(|c| *c != '+')
        .take_while(|c| *c == '+' || c.is_ascii_digit())
        .collect();
    assert!(did.starts_with("+1555010090"), "a leased callback number: {pai}");
    let busy = uas_response(&parse_request(at_trunk), 486, "Busy Here", "c1", "<sip:c@127.0.0.2>");
    trunk.send_to(busy.as_bytes(), edge.udp).await.unwrap();
    let reply = ws_recv_until(ws, "SIP/2.0 486").await;
    let ack = format!(
        "ACK sip:933@localhost SIP/2.0\r\n\
Via: SIP/2.0/WS k3vq8d0h2m1a.invalid;branch=z9hG4bKem1\r\n\
Max-Forwards: 69\r\n\
From: <sip:alice@localhost>;tag=a-em1\r\n\
To: {}\r\n\
Call-ID: em1\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n",
        header(&reply, "To")[0]
    );
    ws_send(ws, ack).await;
    did
}

/// The carrier's offer: PCMU and telephone-event, RTP to 127.0.0.2:`port`.
pub fn carrier_sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 9 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// A request of a scripted carrier at `me` calling alice's DID in call `call` (From-tag
/// `c-1`): `line` is its method and Request-URI, `to_tag` the To's `;tag=...` if any.
pub fn carrier_request(
    me: std::net::SocketAddr,
    call: &str,
    line: &str,
    cseq: u32,
    route: &str,
    to_tag: &str,
    body: &str,
) -> String {
    let method = line.split(' ').next().unwrap();
    let ct = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
    format!(
        "{line} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call}{method}{cseq}{}\r\n\
         {route}Max-Forwards: 70\r\nFrom: <sip:+12025550100@127.0.0.2>;tag=c-1\r\n\
         To: <sip:{DID}@localhost>{to_tag}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:carrier@{me}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        to_tag.trim_start_matches(";tag="),
        body.len()
    )
}

/// The remote target of a 2xx: its Contact's URI.
pub fn target(ok: &str) -> String {
    let contact = header(ok, "Contact")[0];
    contact.trim_start_matches('<').split('>').next().unwrap().to_owned()
}

/// The route set a UAC takes from a 2xx: its Record-Route reversed, as Route lines.
pub fn route(ok: &str) -> String {
    header(ok, "Record-Route").iter().rev().map(|r| format!("Route: {r}\r\n")).collect()
}

/// Echoes every datagram `socket` receives back to its sender (a carrier's RTP echo), until
/// the task is aborted.
pub fn echo(socket: UdpSocket) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    })
}

/// A fork's RTP socket that echoes every packet back ([`echo`]): its port and its task.
pub async fn echo_fork() -> (u16, tokio::task::JoinHandle<()>) {
    let socket = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    let port = socket.local_addr().unwrap().port();
    (port, echo(socket))
}

/// A fork's RTP socket that only counts what reaches it: its port, the count and its task.
pub async fn silent_fork() -> (u16, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let silent = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while silent.recv_from(&mut buf).await.is_ok() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    (port, count, task)
}
