//! Black-box tests of SIP presence (RFC 3856 SUBSCRIBE/NOTIFY, RFC 3903 PUBLISH) against a
//! running edge, with a scripted UA over UDP: what the edge NOTIFYs, what a PUBLISH changes
//! in the admin API, and the refusals.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};

mod common;

use common::Edge;
use common::ua::{header, parse_request, udp_recv_until};
use serde_json::json;
use tokio::net::UdpSocket;

/// A scripted softphone of one agent over UDP.
struct Phone {
    sock: UdpSocket,
    user: &'static str,
    password: &'static str,
    edge: std::net::SocketAddr,
    cseq: u32,
}

static CALL: AtomicU32 = AtomicU32::new(0);

impl Phone {
    async fn new(edge: &Edge, user: &'static str, password: &'static str) -> Phone {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Phone { sock, user, password, edge: edge.udp, cseq: 0 }
    }

    async fn send(&self, msg: &str) {
        self.sock.send_to(msg.as_bytes(), self.edge).await.unwrap();
    }

    /// The next response (skipping requests, which are answered 200 when they are NOTIFYs
    /// and kept in `notifies`, and responses to other methods).
    async fn response(&self, notifies: &mut Vec<String>) -> String {
        self.response_to("", notifies).await
    }

    /// [`Phone::response`] to a request of `method` (any when empty).
    async fn response_to(&self, method: &str, notifies: &mut Vec<String>) -> String {
        loop {
            let m = common::ua::udp_recv(&self.sock).await;
            if m.starts_with("SIP/2.0 ") {
                let cseq = header(&m, "CSeq").first().copied().unwrap_or_default();
                if cseq.ends_with(method) {
                    return m;
                }
                continue;
            }
            self.answer(&m).await;
            notifies.push(m);
        }
    }

    /// Answers a NOTIFY with 200.
    async fn answer(&self, notify: &str) {
        let req = parse_request(notify);
        let ok = sip::Response::for_request(&req, 200, "OK");
        self.sock.send_to(&ok.to_bytes(), self.edge).await.unwrap();
    }

    /// The next NOTIFY, answered.
    async fn notify(&self) -> String {
        let n = udp_recv_until(&self.sock, "NOTIFY ").await;
        self.answer(&n).await;
        n
    }

    /// Sends `method` built by `build(cseq, auth_line)`, answers a 407 with credentials, and
    /// returns the final response (NOTIFYs that came meanwhile in `notifies`).
    async fn request(
        &mut self,
        method: &str,
        uri: &str,
        build: impl Fn(u32, &str) -> String,
        notifies: &mut Vec<String>,
    ) -> String {
        use sip::digest::{Challenge, respond};
        self.cseq += 1;
        self.send(&build(self.cseq, "")).await;
        let first = self.response_to(method, notifies).await;
        let (challenge, answer) = if first.starts_with("SIP/2.0 407 ") {
            (header(&first, "Proxy-Authenticate")[0], "Proxy-Authorization")
        } else if first.starts_with("SIP/2.0 401 ") {
            (header(&first, "WWW-Authenticate")[0], "Authorization")
        } else {
            return first;
        };
        let challenge = Challenge::parse(challenge).unwrap();
        let auth = respond(&challenge, self.user, self.password, method, uri, "cn", 1);
        self.cseq += 1;
        self.send(&build(self.cseq, &format!("{answer}: {auth}\r\n"))).await;
        self.response_to(method, notifies).await
    }

    /// A SUBSCRIBE to `target`'s presence outside a dialog (`event` as the Event header).
    fn subscribe(
        &self,
        target: &str,
        event: &str,
        expires: u32,
    ) -> impl Fn(u32, &str) -> String + use<> {
        let local = self.sock.local_addr().unwrap();
        let user = self.user;
        let target = target.to_owned();
        let event = event.to_owned();
        let call = CALL.fetch_add(1, Ordering::Relaxed);
        move |cseq, auth| {
            format!(
                "SUBSCRIBE sip:{target}@localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bKsub{call}x{cseq};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:{user}@localhost>;tag=w{call}\r\n\
To: <sip:{target}@localhost>\r\n\
Call-ID: sub-{call}@{local}\r\n\
CSeq: {cseq} SUBSCRIBE\r\n\
{auth}Contact: <sip:{user}@{local}>\r\n\
Event: {event}\r\n\
Accept: application/pidf+xml\r\n\
Expires: {expires}\r\n\
Content-Length: 0\r\n\r\n"
            )
        }
    }

    /// A PUBLISH of `body` (PIDF) for `target`, with `extra` headers.
    fn publish(
        &self,
        target: &str,
        body: &str,
        extra: &str,
    ) -> impl Fn(u32, &str) -> String + use<> {
        let local = self.sock.local_addr().unwrap();
        let user = self.user;
        let target = target.to_owned();
        let body = body.to_owned();
        let extra = extra.to_owned();
        let call = CALL.fetch_add(1, Ordering::Relaxed);
        move |cseq, auth| {
            let ct = if body.is_empty() {
                String::new()
            } else {
                "Content-Type: application/pidf+xml\r\n".to_owned()
            };
            format!(
                "PUBLISH sip:{target}@localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bKpub{call}x{cseq};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:{user}@localhost>;tag=p{call}\r\n\
To: <sip:{target}@localhost>\r\n\
Call-ID: pub-{call}@{local}\r\n\
CSeq: {cseq} PUBLISH\r\n\
{auth}Event: presence\r\n\
{extra}{ct}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }
    }
}

fn pidf(note: &str, activity: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"sip:alice@localhost\">\
<tuple id=\"t1\"><status><basic>open</basic></status></tuple>\
<dm:person id=\"p1\"><rpid:activities><rpid:{activity}/></rpid:activities>\
<dm:note>{note}</dm:note></dm:person></presence>"
    )
}

fn note_of(notify: &str) -> &str {
    let start = notify.find("<dm:note>").unwrap_or_else(|| panic!("no note: {notify}")) + 9;
    let end = notify[start..].find("</dm:note>").unwrap() + start;
    &notify[start..end]
}

#[tokio::test]
async fn subscribe_notify_and_publish_over_udp() {
    let edge = Edge::start().await;
    let mut alice = Phone::new(&edge, "alice", "secret").await;
    let mut seen = Vec::new();

    // Without credentials: 407 (the helper answers it; check the first answer by hand).
    let sub = alice.subscribe("alice", "presence", 600);
    alice.send(&sub(99, "")).await;
    let challenge = alice.response(&mut seen).await;
    assert!(challenge.starts_with("SIP/2.0 407 "), "{challenge}");
    assert!(!header(&challenge, "Proxy-Authenticate").is_empty(), "{challenge}");

    // Subscribed: 200 with Expires, a To tag and our Contact, then a NOTIFY with the PIDF.
    let ok = alice.request("SUBSCRIBE", "sip:alice@localhost", &sub, &mut seen).await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    assert_eq!(header(&ok, "Expires"), ["600"], "{ok}");
    assert!(header(&ok, "To")[0].contains(";tag="), "{ok}");
    assert!(!header(&ok, "Contact").is_empty(), "{ok}");
    let first = if seen.is_empty() { alice.notify().await } else { seen.remove(0) };
    assert!(first.starts_with("NOTIFY sip:alice@127.0.0.1:"), "{first}");
    assert_eq!(header(&first, "Event"), ["presence"]);
    assert!(header(&first, "Subscription-State")[0].starts_with("active;expires="), "{first}");
    assert_eq!(header(&first, "Content-Type"), ["application/pidf+xml"]);
    assert!(first.contains("<basic>open</basic>"), "{first}");
    assert_eq!(note_of(&first), "available");
    let to_tag = header(&ok, "To")[0].split(";tag=").nth(1).unwrap().to_owned();
    assert!(header(&first, "From")[0].ends_with(&format!(";tag={to_tag}")), "{first}");

    // The admin API changes the state: a NOTIFY says so.
    let (status, _) =
        edge.api("PUT", "/api/agents/alice/presence", Some(json!({"state": "busy"}))).await;
    assert_eq!(status, 200);
    let n = alice.notify().await;
    assert_eq!(note_of(&n), "busy", "{n}");
    assert!(n.contains("<rpid:busy/>"), "{n}");

    // PUBLISH away: 200 with SIP-ETag and Expires; the admin API reports it; the NOTIFY too.
    let publish = alice.publish("alice", &pidf("Away", "away"), "Expires: 600\r\n");
    let ok = alice.request("PUBLISH", "sip:alice@localhost", &publish, &mut seen).await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let etag = header(&ok, "SIP-ETag")[0].to_owned();
    assert!(!etag.is_empty());
    assert_eq!(header(&ok, "Expires"), ["600"]);
    let (_, body) = edge.api("GET", "/api/agents/alice/presence", None).await;
    assert_eq!(body["state"], "away", "{body}");
    let n = if seen.is_empty() { alice.notify().await } else { seen.remove(0) };
    assert_eq!(note_of(&n), "away", "{n}");

    // A refresh with the etag (no body): a new etag, the state unchanged.
    let refresh = alice.publish("alice", "", &format!("SIP-If-Match: {etag}\r\nExpires: 600\r\n"));
    let ok = alice.request("PUBLISH", "sip:alice@localhost", &refresh, &mut seen).await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let etag2 = header(&ok, "SIP-ETag")[0].to_owned();
    assert_ne!(etag2, etag);
    // The old etag is gone: 412.
    let stale = alice.publish("alice", "", &format!("SIP-If-Match: {etag}\r\n"));
    let r = alice.request("PUBLISH", "sip:alice@localhost", &stale, &mut seen).await;
    assert!(r.starts_with("SIP/2.0 412 "), "{r}");
    // An etag never issued: 412.
    let unknown = alice.publish("alice", &pidf("busy", "busy"), "SIP-If-Match: nope\r\n");
    let r = alice.request("PUBLISH", "sip:alice@localhost", &unknown, &mut seen).await;
    assert!(r.starts_with("SIP/2.0 412 "), "{r}");
    // A modification with the live etag: DND.
    let modify = alice.publish(
        "alice",
        &pidf("Do Not Disturb", "busy"),
        &format!("SIP-If-Match: {etag2}\r\n"),
    );
    let ok = alice.request("PUBLISH", "sip:alice@localhost", &modify, &mut seen).await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let etag3 = header(&ok, "SIP-ETag")[0].to_owned();
    let (_, body) = edge.api("GET", "/api/agents/alice/presence", None).await;
    assert_eq!(body["state"], "dnd", "{body}");
    let n = if seen.is_empty() { alice.notify().await } else { seen.remove(0) };
    assert_eq!(note_of(&n), "dnd", "{n}");
    assert!(n.contains("<basic>closed</basic>"), "{n}");
    // Removal: 200, and the presence stays as last set.
    let remove = alice.publish("alice", "", &format!("SIP-If-Match: {etag3}\r\nExpires: 0\r\n"));
    let ok = alice.request("PUBLISH", "sip:alice@localhost", &remove, &mut seen).await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    assert_eq!(header(&ok, "Expires"), ["0"]);
    let (_, body) = edge.api("GET", "/api/agents/alice/presence", None).await;
    assert_eq!(body["state"], "dnd", "{body}");

    // A bad body: 400 with the reason; another type: 415.
    let bad = alice.publish("alice", "<presence", "");
    let r = alice.request("PUBLISH", "sip:alice@localhost", &bad, &mut seen).await;
    assert!(r.starts_with("SIP/2.0 400 Malformed PIDF Document"), "{r}");

    // Another agent's AOR: 403.
    let (status, _) = edge.api("PUT", "/api/agents/bob", Some(json!({"password": "pw"}))).await;
    assert_eq!(status, 201);
    let theirs = alice.publish("bob", &pidf("away", "away"), "");
    let r = alice.request("PUBLISH", "sip:bob@localhost", &theirs, &mut seen).await;
    assert!(r.starts_with("SIP/2.0 403 "), "{r}");
    let (_, body) = edge.api("GET", "/api/agents/bob/presence", None).await;
    assert_eq!(body["state"], "available", "{body}");

    // Another event package: 489 with Allow-Events (before any challenge).
    let dialog = alice.subscribe("alice", "dialog", 600);
    let r = alice.request("SUBSCRIBE", "sip:alice@localhost", &dialog, &mut seen).await;
    assert!(r.starts_with("SIP/2.0 489 Bad Event"), "{r}");
    assert_eq!(header(&r, "Allow-Events"), ["presence"], "{r}");

    // Too brief: 423 with Min-Expires.
    let brief = alice.subscribe("alice", "presence", 5);
    let r = alice.request("SUBSCRIBE", "sip:alice@localhost", &brief, &mut seen).await;
    assert!(r.starts_with("SIP/2.0 423 "), "{r}");
    assert_eq!(header(&r, "Min-Expires"), ["60"], "{r}");

    // A subscription to another agent: bob's change reaches alice.
    let watch_bob = alice.subscribe("bob", "presence", 600);
    let ok = alice.request("SUBSCRIBE", "sip:bob@localhost", &watch_bob, &mut seen).await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let n = if seen.is_empty() { alice.notify().await } else { seen.remove(0) };
    assert!(n.contains("entity=\"sip:bob@localhost\""), "{n}");
    edge.api("PUT", "/api/agents/bob/presence", Some(json!({"state": "away"}))).await;
    let n = alice.notify().await;
    assert!(n.contains("entity=\"sip:bob@localhost\"") && note_of(&n) == "away", "{n}");

    // Deleting bob ends that subscription: terminated;reason=noresource.
    edge.api("DELETE", "/api/agents/bob", None).await;
    let n = alice.notify().await;
    assert_eq!(header(&n, "Subscription-State"), ["terminated;reason=noresource"], "{n}");

    edge.stop().await;
}

#[tokio::test]
async fn unsubscribe_ends_with_a_terminated_notify_and_refresh_renews() {
    let edge = Edge::start().await;
    let mut alice = Phone::new(&edge, "alice", "secret").await;
    let mut seen = Vec::new();
    let sub = alice.subscribe("alice", "presence", 600);
    let ok = alice.request("SUBSCRIBE", "sip:alice@localhost", &sub, &mut seen).await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    if seen.is_empty() {
        alice.notify().await;
    }
    let to = header(&ok, "To")[0].to_owned();
    let call_id = header(&ok, "Call-ID")[0].to_owned();
    let from = header(&ok, "From")[0].to_owned();
    let contact = header(&ok, "Contact")[0].trim_matches(['<', '>']).to_owned();
    let local = alice.sock.local_addr().unwrap();
    let in_dialog = |cseq: u32, expires: u32| {
        format!(
            "SUBSCRIBE {contact} SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bKre{cseq}x{expires};rport\r\n\
Max-Forwards: 70\r\n\
From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} SUBSCRIBE\r\n\
Contact: <sip:alice@{local}>\r\nEvent: presence\r\nExpires: {expires}\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    // A refresh in the dialog (no credentials needed): 200 and a NOTIFY.
    alice.send(&in_dialog(10, 300)).await;
    let r = alice.response(&mut seen).await;
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    assert_eq!(header(&r, "Expires"), ["300"]);
    let n = if seen.is_empty() { alice.notify().await } else { seen.remove(0) };
    assert!(header(&n, "Subscription-State")[0].starts_with("active;expires="), "{n}");
    // An old CSeq: 500.
    alice.send(&in_dialog(5, 300)).await;
    let r = alice.response(&mut seen).await;
    assert!(r.starts_with("SIP/2.0 500 "), "{r}");
    // Unsubscribe: 200 Expires 0, then the final NOTIFY.
    alice.send(&in_dialog(11, 0)).await;
    let r = alice.response(&mut seen).await;
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    assert_eq!(header(&r, "Expires"), ["0"]);
    let n = if seen.is_empty() { alice.notify().await } else { seen.remove(0) };
    assert!(header(&n, "Subscription-State")[0].starts_with("terminated"), "{n}");
    // The dialog is gone: the next SUBSCRIBE in it is 481, and changes NOTIFY nobody.
    alice.send(&in_dialog(12, 300)).await;
    let r = alice.response(&mut seen).await;
    assert!(r.starts_with("SIP/2.0 481 "), "{r}");
    edge.api("PUT", "/api/agents/alice/presence", Some(json!({"state": "away"}))).await;
    let mut buf = [0u8; 4096];
    let quiet =
        tokio::time::timeout(std::time::Duration::from_millis(300), alice.sock.recv_from(&mut buf))
            .await;
    assert!(quiet.is_err(), "a NOTIFY after the unsubscribe");
    edge.stop().await;
}

/// One mute carrier (emergency calls fail over to nothing: a 503 after `failover_after`).
const EMERGENCY_PLAN: &str = r#"
[[trunk]]
name = "carrier"
kind = "direct-offer"
uri = "sip:127.0.0.2:PRIMARY;transport=udp"
numbers = ["+15550100000-+15550100999"]
probe = false

[emergency]
callback_pool = ["+15550100900-+15550100901"]
site_number = "+15550100999"
failover_after = "2s"
"#;

const EMERGENCY_AGENTS: &str = "[[agent]]\nid = \"alice\"\npassword = \"secret\"\n\
caller_id = [\"+15550100123\"]\nlocation = { country = \"US\" }\n";

#[tokio::test]
async fn emergency_dnd_is_notified_and_a_publish_during_the_call_wins_over_the_restore() {
    let opts = common::Opts {
        plan: Some(EMERGENCY_PLAN.into()),
        seed: Some(EMERGENCY_AGENTS.into()),
        ..common::Opts::default()
    };
    let edge = Edge::start_opts(opts, |_| {}).await;
    let _mute = UdpSocket::bind((common::TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    let mut alice = Phone::new(&edge, "alice", "secret").await;
    let mut seen = Vec::new();
    let local = alice.sock.local_addr().unwrap();

    // Registered (so that her emergency call is hers) and subscribed to herself.
    let register = move |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bKreg{cseq};rport\r\nMax-Forwards: 70\r\n\
To: <sip:alice@localhost>\r\nFrom: <sip:alice@localhost>;tag=r1\r\nCall-ID: reg@{local}\r\n\
CSeq: {cseq} REGISTER\r\n{auth}Contact: <sip:alice@{local}>\r\nExpires: 600\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    let ok = alice.request("REGISTER", "sip:localhost", &register, &mut seen).await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let sub = alice.subscribe("alice", "presence", 600);
    let ok = alice.request("SUBSCRIBE", "sip:alice@localhost", &sub, &mut seen).await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let n = if seen.is_empty() { alice.notify().await } else { seen.remove(0) };
    assert_eq!(note_of(&n), "available");

    // She dials 933: the edge forces DND, and says so.
    let invite = format!(
        "INVITE sip:933@localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bKem1;rport\r\nMax-Forwards: 70\r\n\
From: <sip:alice@localhost>;tag=em1\r\nTo: <sip:933@localhost>\r\nCall-ID: em1@{local}\r\n\
CSeq: 1 INVITE\r\nContact: <sip:alice@{local}>\r\nContent-Length: 0\r\n\r\n"
    );
    alice.send(&invite).await;
    let n = alice.notify().await;
    assert_eq!(note_of(&n), "dnd", "{n}");

    // During the call she publishes Away: her choice.
    let away = alice.publish("alice", &pidf("Away", "away"), "");
    let ok = alice.request("PUBLISH", "sip:alice@localhost", &away, &mut seen).await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let n = if seen.is_empty() { alice.notify().await } else { seen.remove(0) };
    assert_eq!(note_of(&n), "away", "{n}");

    // No trunk answers: 503. The call's end does not undo her choice.
    let failed = alice.response_to("INVITE", &mut seen).await;
    let failed = if failed.starts_with("SIP/2.0 100 ") {
        alice.response_to("INVITE", &mut seen).await
    } else {
        failed
    };
    assert!(failed.starts_with("SIP/2.0 503 "), "{failed}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, body) = edge.api("GET", "/api/agents/alice/presence", None).await;
    assert_eq!(body["state"], "away", "{body}");
    assert_eq!(body["previous"], serde_json::Value::Null, "{body}");
    assert!(seen.iter().all(|n| note_of(n) == "away"), "{seen:?}");
    edge.stop().await;
}
