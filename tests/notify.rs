//! The emergency-call notification against a real SMTP relay (aiosmtpd, `tests/smtp/sink.py`,
//! installed by `scripts/test`): queued by `queue_notice`, delivered by the mailer, retried
//! while the relay is down, kept across a restart. Loopback only, free ports, and every relay
//! and mailer started here is stopped here.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use common::smtp::{Relay, wait_received};
use common::{TempDir, ports};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lifeline::admin::Metrics;
use lifeline::config::Smtp;
use lifeline::core::emergency::unix_now;
use lifeline::emergency::mailer::{Mailer, MailerHandle, Tuning};
use lifeline::emergency::notify::{Notice, queue_notice};
use lifeline::store::{Agent, OutboxStatus, SqliteStore, Store};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Waits until `check` holds for the outbox status.
async fn wait_outbox(
    store: &Arc<dyn Store>,
    within: Duration,
    check: impl Fn(&OutboxStatus) -> bool,
) -> OutboxStatus {
    let end = tokio::time::Instant::now() + within;
    loop {
        let s = store.clone();
        let status = tokio::task::spawn_blocking(move || s.outbox_status()).await.unwrap().unwrap();
        if check(&status) {
            return status;
        }
        assert!(tokio::time::Instant::now() < end, "outbox never got there: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn smtp(port: u16) -> Smtp {
    Smtp { url: format!("smtp://127.0.0.1:{port}"), from: "lifeline@example.com".into() }
}

/// Retries after a second, at most two: the tests see a retry without waiting minutes.
fn quick() -> Tuning {
    Tuning {
        poll: Duration::from_secs(1),
        first_retry: Duration::from_secs(1),
        max_retry: Duration::from_secs(2),
        permanent_retry: Duration::from_secs(3600),
        timeout: Duration::from_secs(5),
        batch: 16,
    }
}

fn alice(contacts: &[&str]) -> Agent {
    let mut a = Agent::new("alice".parse().unwrap());
    a.name = Some("Alice Doe".into());
    a.mailbox = Some("alice@example.com".parse().unwrap());
    a.emergency_contacts = contacts.iter().map(|c| c.parse().unwrap()).collect();
    a
}

/// A 933 test call by alice, as the emergency path would describe it.
fn notice() -> Notice {
    Notice { at: unix_now(), ..Notice::sample() }
}

async fn queue(store: &Arc<dyn Store>, agent: Agent) -> usize {
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        queue_notice(s.as_ref(), "lifeline@example.com", &agent, &notice(), unix_now())
    })
    .await
    .unwrap()
    .unwrap()
    .len()
}

/// A running mailer and the sender that stops it.
struct Running {
    handle: MailerHandle,
    stop: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

fn start_mailer(store: &Arc<dyn Store>, port: u16) -> Running {
    let (stop, stopped) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let handle = Mailer::spawn_tuned(store.clone(), &smtp(port), metrics.clone(), stopped, quick());
    Running { handle, stop, metrics }
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.handle.stopped()).await.unwrap();
    }
}

fn open(dir: &Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_in(dir).unwrap())
}

#[tokio::test]
async fn a_queued_notice_is_delivered_rendered_and_a_refused_contact_holds_back_nobody() {
    let (data, mail) = (TempDir::new("a-data"), TempDir::new("a-mail"));
    let (relay, port) = Relay::start_any(&mail.0).await;
    let store = open(&data.0);
    let mailer = start_mailer(&store, port);

    assert_eq!(queue(&store, alice(&["security@example.com", "refuse@example.com"])).await, 2);
    mailer.handle.wake();

    let got = wait_received(&mail.0, 1, Duration::from_secs(10)).await;
    let m = &got[0];
    assert_eq!(m["subject"], "[TEST] Emergency call 933 by Alice Doe");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["security@example.com"]));
    assert_eq!(m["to"], "security@example.com");
    assert_eq!(m["from"], "alice@example.com", "sent as the agent's mailbox");
    assert_eq!(m["mail_from"], "lifeline@example.com", "through the site's relay");
    let text = m["text"].as_str().unwrap();
    assert!(text.contains("dialled 933 at "), "{text}");
    assert!(text.contains("Callback number: +15550100900"), "{text}");
    assert!(text.contains("1 Main St, Springfield, IL 62701"), "{text}");
    let html = m["html"].as_str().unwrap();
    assert!(html.contains("<strong>933</strong>"), "{html}");
    assert!(m["message_id"].as_str().unwrap().starts_with("<lifeline-notify-"));

    // The refused address stays queued with its error class (not the relay's text), retried
    // slowly; the delivered row is gone.
    let status = wait_outbox(&store, Duration::from_secs(10), |s| {
        s.rows.len() == 1 && s.rows[0].attempts == 1
    })
    .await;
    assert_eq!(status.rows[0].last_error.as_deref(), Some("smtp 550"));
    assert!(status.rows[0].next_attempt_at >= unix_now() + 3000, "a 5xx waits long");

    let metrics = mailer.metrics.render();
    assert!(metrics.contains("lifeline_mail_sent_total 1\n"), "{metrics}");
    assert!(metrics.contains("lifeline_mail_failures_total 1\n"), "{metrics}");
    assert!(metrics.contains("lifeline_mail_queued 1\n"), "{metrics}");
    assert!(!metrics.contains("example.com"), "no address in metrics");

    mailer.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn a_relay_that_was_down_gets_the_mail_on_a_retry() {
    let (data, mail) = (TempDir::new("b-data"), TempDir::new("b-mail"));
    let port = ports::reserve();
    let store = open(&data.0);
    let mailer = start_mailer(&store, port);

    queue(&store, alice(&["security@example.com"])).await;
    mailer.handle.wake();
    let status =
        wait_outbox(&store, Duration::from_secs(10), |s| s.rows.iter().any(|r| r.attempts >= 1))
            .await;
    assert_eq!(status.rows[0].last_error.as_deref(), Some("connect"));

    let relay = Relay::start(port, &mail.0).await;
    let got = wait_received(&mail.0, 1, Duration::from_secs(15)).await;
    assert_eq!(got[0]["rcpt_tos"], serde_json::json!(["security@example.com"]));
    wait_outbox(&store, Duration::from_secs(5), |s| s.rows.is_empty()).await;

    mailer.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn mail_queued_before_a_restart_is_delivered_by_the_next_mailer() {
    let (data, mail) = (TempDir::new("c-data"), TempDir::new("c-mail"));
    let port = ports::reserve();
    {
        let store = open(&data.0);
        let mailer = start_mailer(&store, port);
        queue(&store, alice(&["security@example.com"])).await;
        mailer.handle.wake();
        wait_outbox(&store, Duration::from_secs(10), |s| s.rows.iter().any(|r| r.attempts >= 1))
            .await;
        mailer.stop().await;
        // The store is closed with the process.
    }

    let relay = Relay::start(port, &mail.0).await;
    let store = open(&data.0);
    let mailer = start_mailer(&store, port);
    let got = wait_received(&mail.0, 1, Duration::from_secs(15)).await;
    assert_eq!(got[0]["subject"], "[TEST] Emergency call 933 by Alice Doe");
    wait_outbox(&store, Duration::from_secs(5), |s| s.rows.is_empty()).await;

    mailer.stop().await;
    relay.stop().await;
}

/// One HTTP/1.1 request with an optional JSON body; returns (status, body as JSON or text).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

#[tokio::test]
async fn the_template_api_refuses_what_does_not_render_and_previews() {
    // The edge's own mailer points at a port nobody listens on.
    let port = ports::reserve();
    let edge = common::Edge::start_tuned(false, |c| c.smtp = smtp(port)).await;
    let (addr, token) = (edge.admin, edge.token.clone());
    let path = "/api/templates/emergency-call-notification";

    let (status, default) = http(addr, "GET", path, &token, "").await;
    assert_eq!(status, 200, "{default}");
    assert!(default["subject"].as_str().unwrap().contains("{{ dialled }}"), "{default}");
    assert!(default["html"].as_str().unwrap().contains("<html>"));

    let custom = serde_json::json!({
        "subject": "SOS {{ dialled }} {{ agent_name }}",
        "text": "Call back {{ callback }} ({{ location }})",
        "html": "<p>{{ agent_name }}</p>",
    });
    let (status, body) = http(addr, "PUT", path, &token, &custom.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(addr, "GET", path, &token, "").await.1, custom);

    // A syntax error in one part: 400 naming it, with the line; nothing written.
    let broken = serde_json::json!({
        "subject": "SOS", "text": "ok", "html": "<p>\n{% if test %}</p>",
    });
    let (status, body) = http(addr, "PUT", path, &token, &broken.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid");
    assert_eq!(body["error"]["field"], "html");
    assert!(body["error"]["message"].as_str().unwrap().contains("syntax error"), "{body}");
    assert_eq!(http(addr, "GET", path, &token, "").await.1, custom, "unchanged");

    // An unknown placeholder, a missing part, an extra field: each named.
    let typo = serde_json::json!({ "subject": "{{ dialed }}", "text": "", "html": "" });
    let (status, body) = http(addr, "PUT", path, &token, &typo.to_string()).await;
    assert_eq!((status, &body["error"]["field"]), (400, &Value::from("subject")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("'dialed'"), "{body}");
    let (status, body) = http(addr, "PUT", path, &token, r#"{"subject":"","html":""}"#).await;
    assert_eq!((status, &body["error"]["field"]), (400, &Value::from("text")), "{body}");
    let (status, body) =
        http(addr, "PUT", path, &token, r#"{"subject":"","text":"","html":"","x":1}"#).await;
    assert_eq!((status, &body["error"]["field"]), (400, &Value::from("x")), "{body}");
    assert_eq!(http(addr, "GET", path, &token, "").await.1, custom, "unchanged");

    // Preview: the stored template with the sample notice ...
    let preview = format!("{path}/preview");
    let (status, r) = http(addr, "POST", &preview, &token, "").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["subject"], "[TEST] SOS 933 Alice Doe");
    assert_eq!(r["text"], "Call back +15550100900 (1 Main St, Springfield, IL 62701)");
    // ... with sample data given ...
    let sample =
        r#"{"dialled":"911","test":false,"callback":null,"location":null,"agent_name":"<Bob>"}"#;
    let (status, r) = http(addr, "POST", &preview, &token, sample).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["subject"], "SOS 911 <Bob>");
    assert_eq!(r["text"], "Call back none: pool exhausted (unknown)");
    assert_eq!(r["html"], "<p>&lt;Bob&gt;</p>");
    // ... or an edit not stored yet; bad sample data is named.
    let edit = r#"{"template":{"subject":"x","text":"{{ edge }}","html":""},"edge":"edge-9"}"#;
    let (status, r) = http(addr, "POST", &preview, &token, edit).await;
    assert_eq!((status, &r["text"]), (200, &Value::from("edge-9")), "{r}");
    let typo = r#"{"template":{"subject":"{{ nope }}","text":"","html":""}}"#;
    let (status, r) = http(addr, "POST", &preview, &token, typo).await;
    assert_eq!((status, &r["error"]["field"]), (400, &Value::from("subject")), "{r}");
    let (status, r) = http(addr, "POST", &preview, &token, r#"{"callback":"555"}"#).await;
    assert_eq!((status, &r["error"]["field"]), (400, &Value::from("callback")), "{r}");

    // The outbox status: no content, no recipients; the failed attempt's class.
    assert_eq!(
        http(addr, "GET", "/api/notifications", &token, "").await,
        (200, Value::Array(vec![]))
    );
    let store = open(&edge.data);
    queue(&store, alice(&["security@example.com"])).await;
    let end = tokio::time::Instant::now() + Duration::from_secs(15);
    let rows = loop {
        let (status, rows) = http(addr, "GET", "/api/notifications", &token, "").await;
        assert_eq!(status, 200);
        if rows[0]["attempts"].as_u64().unwrap_or(0) >= 1 || tokio::time::Instant::now() > end {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["last_error"], "connect", "{rows}");
    assert!(rows[0]["created_at"].as_str().unwrap().ends_with('Z'), "{rows}");
    let shown = rows.to_string();
    assert!(!shown.contains("example.com") && !shown.contains("SOS"), "{shown}");

    drop(store);
    edge.stop().await;
}
