//! Black-box tests of the agents, presence, groups and calls API against a running edge: what
//! the API writes takes effect on SIP at once (REGISTER, group calls), and bad data writes
//! nothing.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

mod common;

use common::Edge;
use common::ua::udp_recv_until;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The field an API error names.
fn error_field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or_else(|| panic!("no error field: {body}"))
}

/// Registers `user` over UDP from `sock` with `password` (challenge, answer); returns the
/// status line of the final answer.
async fn register(edge: &Edge, sock: &UdpSocket, user: &str, password: &str) -> String {
    use sip::digest::{Challenge, respond};
    static N: AtomicU32 = AtomicU32::new(0);
    let call = N.fetch_add(1, Ordering::Relaxed);
    let local = sock.local_addr().unwrap();
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bKreg{call}x{cseq}\r\n\
Max-Forwards: 70\r\n\
To: <sip:{user}@localhost>\r\n\
From: <sip:{user}@localhost>;tag=reg{call}\r\n\
Call-ID: reg-{call}@{local}\r\n\
CSeq: {cseq} REGISTER\r\n\
{auth}Contact: <sip:{user}@{local}>\r\n\
Expires: 600\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    sock.send_to(register(1, "").as_bytes(), edge.udp).await.unwrap();
    let reply = udp_recv_until(sock, "SIP/2.0 ").await;
    assert!(reply.starts_with("SIP/2.0 401 "), "{reply}");
    let challenge = reply.lines().find_map(|l| l.strip_prefix("WWW-Authenticate: ")).unwrap();
    let challenge = Challenge::parse(challenge).unwrap();
    let auth = respond(&challenge, user, password, "REGISTER", "sip:localhost", "cn", 1);
    let msg = register(2, &format!("Authorization: {auth}\r\n"));
    sock.send_to(msg.as_bytes(), edge.udp).await.unwrap();
    udp_recv_until(sock, "SIP/2.0 ").await.lines().next().unwrap().to_owned()
}

/// An INVITE from the test trunk (127.0.0.2) to `did`.
fn trunk_invite(from: SocketAddr, did: &str, call: &str) -> String {
    format!(
        "INVITE sip:{did}@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP {from};branch=z9hG4bK{call}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+12025550199@{from}>;tag=t-{call}\r\n\
To: <sip:{did}@127.0.0.1>\r\n\
Call-ID: {call}@trunk\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
    )
}

#[tokio::test]
async fn an_agent_put_through_the_api_registers_at_once_and_a_deleted_one_cannot() {
    let edge = Edge::start().await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Unknown to the edge: 403.
    assert_eq!(register(&edge, &phone, "bob", "pw1").await, "SIP/2.0 403 Forbidden");

    let bob = json!({
        "password": "pw1",
        "name": "Bob Doe",
        "caller_id": ["+15550100200"],
        "capacity": 2,
        "mailbox": "bob@example.com",
        "emergency_contacts": "security@example.com;manager@example.com",
        "location": { "country": "US", "address": "1 Main St, Springfield, IL 62701" },
    });
    let (status, body) = edge.api("PUT", "/api/agents/bob", Some(bob.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "Bob Doe");
    assert_eq!(body["emergency_contacts"], "security@example.com;manager@example.com");
    assert_eq!(body["location"]["country"], "US");
    assert_eq!(body["presence"], "available", "a new agent is available");
    assert_eq!(body["warnings"], json!([]), "{body}");
    assert!(body.get("password").is_none(), "{body}");
    assert_eq!(register(&edge, &phone, "bob", "pw1").await, "SIP/2.0 200 OK");

    // The same PUT again replaces: 200.
    let (status, _) = edge.api("PUT", "/api/agents/bob", Some(bob)).await;
    assert_eq!(status, 200);

    // PATCH changes only what it names; `null` clears; the warnings follow.
    let (status, body) = edge
        .api("PATCH", "/api/agents/bob", Some(json!({ "name": "Robert", "mailbox": null })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "Robert");
    assert_eq!(body["mailbox"], Value::Null);
    assert_eq!(body["caller_id"], json!(["+15550100200"]));
    assert_eq!(body["capacity"], 2);
    assert_eq!(body["warnings"][0]["field"], "mailbox", "{body}");
    let (_, body) = edge.api("GET", "/api/agents/bob", None).await;
    assert_eq!(body["name"], "Robert");

    // A new password through PATCH: the old one stops working at once.
    let (status, _) =
        edge.api("PATCH", "/api/agents/bob", Some(json!({ "password": "pw2" }))).await;
    assert_eq!(status, 200);
    assert_eq!(register(&edge, &phone, "bob", "pw1").await, "SIP/2.0 403 Forbidden");
    assert_eq!(register(&edge, &phone, "bob", "pw2").await, "SIP/2.0 200 OK");

    // Lists are bare arrays, paged by id.
    let (status, body) = edge.api("GET", "/api/agents", None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> =
        body.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["alice", "bob"]);
    let (_, body) = edge.api("GET", "/api/agents?limit=1", None).await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["id"], "alice");
    let (_, body) = edge.api("GET", "/api/agents?limit=1&after=alice", None).await;
    assert_eq!(body[0]["id"], "bob");
    let (status, body) = edge.api("GET", "/api/agents?limit=0", None).await;
    assert_eq!((status, error_field(&body)), (400, "limit"));

    // Deleted: gone from the API and from authentication.
    let (status, body) = edge.api("DELETE", "/api/agents/bob", None).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(edge.api("GET", "/api/agents/bob", None).await.0, 404);
    assert_eq!(edge.api("GET", "/api/agents/bob/presence", None).await.0, 404);
    assert_eq!(edge.api("DELETE", "/api/agents/bob", None).await.0, 404);
    assert_eq!(register(&edge, &phone, "bob", "pw2").await, "SIP/2.0 403 Forbidden");
    edge.stop().await;
}

#[tokio::test]
async fn bad_fields_answer_400_naming_them_and_write_nothing() {
    let edge = Edge::start().await;
    let put = |body: Value| edge.api("PUT", "/api/agents/carol", Some(body));
    let (status, body) =
        put(json!({ "password": "pw", "emergency_contacts": "ok@example.com;nope" })).await;
    assert_eq!((status, error_field(&body)), (400, "emergency_contacts"), "{body}");
    let (status, body) = put(json!({ "name": "Carol" })).await;
    assert_eq!((status, error_field(&body)), (400, "password"), "a new agent needs one: {body}");
    let (status, body) = put(json!({ "password": "" })).await;
    assert_eq!((status, error_field(&body)), (400, "password"), "{body}");
    let (status, body) = put(json!({ "password": "pw", "id": "someone-else" })).await;
    assert_eq!((status, error_field(&body)), (400, "id"), "{body}");
    assert_eq!(edge.api("GET", "/api/agents/carol", None).await.0, 404, "nothing written");
    let (status, body) =
        edge.api("PUT", "/api/agents/Carol", Some(json!({ "password": "pw" }))).await;
    assert_eq!((status, error_field(&body)), (400, "id"), "{body}");

    let patch = |body: Value| edge.api("PATCH", "/api/agents/alice", Some(body));
    for (bad, field) in [
        (json!({ "capacity": 5000 }), "capacity"),
        (json!({ "capacity": "two" }), "capacity"),
        (json!({ "caller_id": ["555"] }), "caller_id"),
        (json!({ "mailbox": "not-an-address" }), "mailbox"),
        (json!({ "location": { "country": "usa" } }), "location.country"),
        (json!({ "location": { "country": "US", "floor": 3 } }), "location.floor"),
        (json!({ "colour": "red" }), "colour"),
        // A good field beside a bad one: neither is written.
        (
            json!({ "name": "Alice", "emergency_contacts": "a@example.com;a@example.com" }),
            "emergency_contacts",
        ),
    ] {
        let (status, body) = patch(bad.clone()).await;
        assert_eq!((status, error_field(&body)), (400, field), "{bad}: {body}");
    }
    let (status, body) = edge.api("PATCH", "/api/agents/nobody", Some(json!({}))).await;
    assert_eq!(status, 404, "{body}");
    // Not JSON at all.
    let mut s = TcpStream::connect(edge.admin).await.unwrap();
    let req = format!(
        "PUT /api/agents/carol HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
Content-Length: 5\r\nConnection: close\r\n\r\n{{oops",
        edge.token
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 400") && text.contains(r#""field":"body""#), "{text}");

    // Alice is as the seed made her, and still registers with her password.
    let (_, body) = edge.api("GET", "/api/agents/alice", None).await;
    assert_eq!(body["name"], Value::Null);
    assert_eq!(body["capacity"], 1);
    assert_eq!(body["location"], Value::Null);
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(register(&edge, &phone, "alice", "secret").await, "SIP/2.0 200 OK");
    edge.stop().await;
}

#[tokio::test]
async fn presence_through_the_api_and_group_calls_skip_an_agent_in_dnd() {
    let edge = Edge::start().await;
    let (status, body) = edge.api("GET", "/api/agents/alice/presence", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "state": "available", "previous": null }));
    let set = |state: &str| {
        edge.api("PUT", "/api/agents/alice/presence", Some(json!({ "state": state })))
    };
    let (status, body) = set("DND").await;
    assert_eq!((status, error_field(&body)), (400, "state"), "{body}");
    let (status, _) =
        edge.api("PUT", "/api/agents/nobody/presence", Some(json!({ "state": "dnd" }))).await;
    assert_eq!(status, 404);

    // Alice registers over UDP; the DID +15550100125 rings the group "support" (alice).
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(register(&edge, &phone, "alice", "secret").await, "SIP/2.0 200 OK");
    let trunk = UdpSocket::bind((common::TRUNK_IP, 0)).await.unwrap();
    let from = trunk.local_addr().unwrap();

    // In DND, the group has nobody who can take the call: 480.
    let (status, body) = set("dnd").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "state": "dnd", "previous": null }));
    let (_, body) = edge.api("GET", "/api/agents/alice/presence", None).await;
    assert_eq!(body["state"], "dnd");
    trunk.send_to(trunk_invite(from, "+15550100125", "dnd1").as_bytes(), edge.udp).await.unwrap();
    let reply = udp_recv_until(&trunk, "SIP/2.0 4").await;
    assert!(reply.starts_with("SIP/2.0 480 Temporarily Unavailable\r\n"), "{reply}");

    // Available again: the same call rings her phone.
    let (status, _) = set("available").await;
    assert_eq!(status, 200);
    trunk.send_to(trunk_invite(from, "+15550100125", "avl1").as_bytes(), edge.udp).await.unwrap();
    let at_phone = udp_recv_until(&phone, "INVITE ").await;
    assert!(at_phone.contains("Call-ID: avl1@trunk\r\n"), "{at_phone}");
    // She declines: the trunk gets her 486 and the call is over.
    let inv = match sip::Message::parse(bytes::Bytes::from(at_phone), sip::Framing::Datagram) {
        Ok(sip::Message::Request(r)) => r,
        other => panic!("{other:?}"),
    };
    let mut busy = sip::Response::for_request(&inv, 486, "Busy Here");
    busy.set_to_tag("a1");
    phone.send_to(&busy.to_bytes(), edge.udp).await.unwrap();
    let reply = udp_recv_until(&trunk, "SIP/2.0 4").await;
    assert!(reply.starts_with("SIP/2.0 486 Busy Here\r\n"), "{reply}");
    edge.stop().await;
}

#[tokio::test]
async fn groups_and_call_history() {
    let edge = Edge::start().await;
    let (status, body) = edge.api("GET", "/api/groups", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!([{ "id": "support", "members": ["alice"] }]));

    let (status, body) =
        edge.api("PUT", "/api/groups/sales", Some(json!({ "members": ["alice", "nobody"] }))).await;
    assert_eq!((status, error_field(&body)), (400, "members"), "members must exist: {body}");
    assert_eq!(edge.api("GET", "/api/groups/sales", None).await.0, 404);
    let (status, body) =
        edge.api("PUT", "/api/groups/sales", Some(json!({ "members": ["alice"] }))).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = edge.api("PUT", "/api/groups/sales", Some(json!({ "members": [] }))).await;
    assert_eq!(status, 200);
    let (_, body) = edge.api("GET", "/api/groups/sales", None).await;
    assert_eq!(body, json!({ "id": "sales", "members": [] }));
    assert_eq!(edge.api("DELETE", "/api/groups/sales", None).await.0, 204);
    assert_eq!(edge.api("GET", "/api/groups/sales", None).await.0, 404);

    // Deleting an agent takes it out of its groups.
    let (status, _) = edge.api("PUT", "/api/agents/dan", Some(json!({ "password": "pw" }))).await;
    assert_eq!(status, 201);
    let (status, _) =
        edge.api("PUT", "/api/groups/support", Some(json!({ "members": ["dan", "alice"] }))).await;
    assert_eq!(status, 200);
    assert_eq!(edge.api("DELETE", "/api/agents/dan", None).await.0, 204);
    let (_, body) = edge.api("GET", "/api/groups/support", None).await;
    assert_eq!(body["members"], json!(["alice"]));

    // Call history: a bare array (nothing is written to it yet), paged by call id.
    let (status, body) = edge.api("GET", "/api/calls", None).await;
    assert_eq!((status, body), (200, json!([])));
    let (status, body) = edge.api("GET", "/api/calls?after=abc", None).await;
    assert_eq!((status, error_field(&body)), (400, "after"));
    edge.stop().await;
}

#[tokio::test]
async fn an_emergency_dnd_interrupted_by_a_crash_is_restored_at_start() {
    use lifeline::store::{Agent, Presence, PresenceSetter, PresenceState, SqliteStore, Store};
    // What a crash during an emergency call leaves in the store: DND forced by the system,
    // the state before saved.
    let edge = Edge::start_tuned(false, |config| {
        let store = SqliteStore::open_in(&config.node.data_dir).unwrap();
        let alice = "alice".parse().unwrap();
        store.put_agent(&Agent::new(alice), None).unwrap();
        let forced = Presence {
            state: PresenceState::Dnd,
            previous: Some(PresenceState::Away),
            set_by: PresenceSetter::System,
        };
        store.set_presence(&"alice".parse().unwrap(), &forced).unwrap();
    })
    .await;
    let (status, body) = edge.api("GET", "/api/agents/alice/presence", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "state": "away", "previous": null }));
    edge.stop().await;
}
