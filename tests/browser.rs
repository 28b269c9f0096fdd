//! The reference softphone (`web/`) in a real browser: headless Chromium (Debian `chromium`)
//! driven by playwright-core (`tests/browser/`, installed by `scripts/test` with `npm ci`)
//! loads the page from the edge, logs in over `/ws`, and calls a SIPp trunk on 127.0.0.2.
//!
//! Media goes through the edge's anchor (src/media): the browser's DTLS-SRTP ends at the edge
//! and the carrier (SIPp, `-rtp_echo`) gets plain RTP, which it sends back; the page checks
//! with `getStats()` that audio flowed both ways in the ordinary call, the emergency call and
//! the PSAP callback (the PSAP offers plain RTP: the edge offers the browser WebRTC; the PSAP
//! then holds and resumes, which the page gets as WebRTC re-offers of the same session, and
//! audio flows again after the resume). In the ordinary call the page also checks the
//! anchor's own RTCP (SIPp sends none): `remote-outbound-rtp` from its sender report counts
//! what the page received, `remote-inbound-rtp` from its report block shows no loss. The
//! edge's media metrics must show packets relayed both ways. The 933 call's notification mail
//! reaches a real SMTP relay (aiosmtpd). Screenshots of the normal and
//! emergency panels and the PSAP banner are kept under `target/tmp/browser/` for a person to
//! look at.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::sipp::{Sipp, all_pass, body, header, received, request_user};
use common::smtp::{Relay, wait_received};
use common::{Edge, Opts, TRUNK_IP, TempDir, ports};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// One carrier on 127.0.0.2 that owns alice's number and takes her ordinary and emergency
/// calls; PSAP callbacks come from it. No OPTIONS probes: SIPp's scenario expects calls only.
const PLAN: &str = r#"
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

[emergency]
callback_pool = ["+15550100900-+15550100901"]
site_number = "+15550100999"
callback_fallback = "agent:alice"
"#;

/// alice, with a number the carrier owns, a mailbox and one emergency contact; bob, a second
/// browser for the browser-to-browser call and the emergency call without location.
const AGENTS: &str = "[[agent]]\nid = \"alice\"\npassword = \"secret\"\n\
    name = \"Alice Agent\"\ncaller_id = [\"+15550100123\"]\nmailbox = \"alice@example.com\"\n\
    emergency_contacts = \"security@example.com\"\n\n\
    [[agent]]\nid = \"bob\"\npassword = \"bobsecret\"\n";

/// An ordinary number the route sends to the carrier.
const CALL_NUMBER: &str = "+12025550199";
/// The test emergency number: the same path as 911.
const EMERGENCY: &str = "933";

/// Everything the browser run may take on a loaded 2-core machine.
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The body part of a multipart message whose Content-ID is `cid` (without brackets).
fn part<'a>(message: &'a str, cid: &str) -> Option<&'a str> {
    let ct = header(message, "Content-Type")?;
    let boundary = ct.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?;
    let boundary = boundary.trim_matches('"');
    body(message).split(&format!("--{boundary}")).find_map(|p| {
        let (head, content) = p.split_once("\r\n\r\n")?;
        let id = header(head.trim_start_matches("\r\n"), "Content-ID")?;
        (id == format!("<{cid}>")).then(|| content.strip_suffix("\r\n").unwrap_or(content))
    })
}

/// Runs the Playwright driver; on `psap: ready` starts a SIPp PSAP calling the callback number
/// the carrier saw on the emergency call.
/// Runs tests/browser/softphone.mjs against `edge` (whose WebRTC socket is `webrtc`).
async fn drive_browser(
    edge: &Edge,
    webrtc: std::net::SocketAddr,
    out: &Path,
    trunk: &Sipp,
    dir: &Path,
) {
    let script = repo("tests/browser/softphone.mjs");
    assert!(
        repo("tests/browser/node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run scripts/test (it runs npm ci there)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/test (it installs Debian's chromium)"
    );
    let mut node = Command::new("node")
        .arg(&script)
        .current_dir(repo("tests/browser"))
        .env("PAGE_URL", format!("http://{}/", edge.web))
        .env("ADMIN_URL", format!("http://{}/", edge.admin))
        .env("ADMIN_TOKEN", &edge.token)
        .env("AGENT", "alice")
        .env("PASSWORD", "secret")
        .env("AGENT2", "bob")
        .env("PASSWORD2", "bobsecret")
        .env("CALL_NUMBER", CALL_NUMBER)
        .env("EMERGENCY", EMERGENCY)
        .env("OUT_DIR", out)
        .env("CHROMIUM", &chromium)
        // The SIPp PSAP (rtp_psap_uac.xml) holds and resumes the callback.
        .env("PSAP_HOLDS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node not found (Debian's nodejs)");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut steps = Vec::new();
    let mut psap = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        eprintln!("browser: {line}");
        if line == "psap: ready" {
            psap = Some(start_psap(edge, trunk, dir));
        }
        if line == "media: steady" {
            check_call_quality(edge).await;
            tokio::spawn(garbage(webrtc));
        }
        steps.push(line);
    }
    let status = node.wait().await.unwrap();
    let mut stderr = String::new();
    if let Some(mut e) = node.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut stderr).await;
    }
    assert!(status.success(), "the browser run failed after {steps:?}:\n{stderr}");
    assert_eq!(steps.last().map(String::as_str), Some("step: done"), "{steps:?}");
    let psap = psap.expect("the page never asked for the PSAP callback");
    all_pass(vec![psap]).await;
}

/// 1.5 s of junk at the edge's WebRTC port during a live call: STUN-, DTLS- and RTP-shaped
/// datagrams that belong to no leg, and random bytes.
async fn garbage(webrtc: std::net::SocketAddr) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seed = 0x9e37_79b9_u32;
    for i in 0..300u32 {
        let mut d = vec![0u8; 20 + (i as usize % 180)];
        for b in d.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            *b = seed as u8;
        }
        d[0] = [0x00, 0x01, 0x16, 0x17, 0x80, 0x90, 0xff][i as usize % 7];
        let _ = sock.send_to(&d, webrtc).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The edge's media metrics during the ordinary call (browser <-> SIPp echo on loopback): the
/// leg is live, jitter is measured on both sides, nothing lost, and the browser's RTCP went on
/// to the carrier (the page checks the anchor's own reports with getStats).
///
/// Jitter is a measurement, not a timing target: on loaded machines it read 5.5 ms and
/// 14.8 ms on loopback, and 0 when sampled before the once-a-second refresh. The bound here
/// (100 ms, five packet intervals) only catches a broken computation (wrong clock rate,
/// timestamps taken as seconds); the arithmetic itself is checked exactly by the unit tests of
/// `media::rtp`.
async fn check_call_quality(edge: &Edge) {
    let (status, _, metrics) = http_get(edge.admin, "/metrics").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(metrics).unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    };
    assert_eq!(value("lifeline_media_legs"), 1.0, "{text}");
    let plain = value("lifeline_media_jitter_seconds{side=\"plain\"}");
    let browser = value("lifeline_media_jitter_seconds{side=\"browser\"}");
    eprintln!("media quality: jitter plain {plain} s, browser {browser} s");
    assert!((0.0..0.1).contains(&plain), "plain-side jitter {plain} s");
    assert!((0.0..0.1).contains(&browser), "browser-side jitter {browser} s");
    assert!(value("lifeline_media_loss_ratio{side=\"browser\"}") < 0.01, "{text}");
    assert_eq!(value("lifeline_media_lost_total"), 0.0, "{text}");
    // The browser's RTCP went on to the carrier, decrypted.
    let rtcp_to_plain = value("lifeline_media_packets_total{dir=\"to_plain\",kind=\"rtcp\"}");
    let rtcp_to_browser = value("lifeline_media_packets_total{dir=\"to_browser\",kind=\"rtcp\"}");
    eprintln!("media rtcp: to plain {rtcp_to_plain}, to browser {rtcp_to_browser}");
    assert!(rtcp_to_plain >= 1.0, "the browser's RTCP reached the carrier: {text}");
}

fn start_psap(edge: &Edge, trunk: &Sipp, dir: &Path) -> Sipp {
    let invite = trunk
        .received()
        .into_iter()
        .find(|m| request_user(m) == Some(EMERGENCY))
        .expect("the carrier saw no emergency INVITE");
    let pai = header(&invite, "P-Asserted-Identity").expect("P-Asserted-Identity");
    let did: String = pai
        .chars()
        .skip_while(|c| *c != '+')
        .take_while(|c| *c == '+' || c.is_ascii_digit())
        .collect();
    assert!(did.starts_with("+1555010090"), "not a callback number from the pool: {pai}");
    let what = "SIPp PSAP (INVITE to the callback number, answered, held, resumed, BYE)";
    Sipp::build(what, dir, "rtp_psap_uac.xml")
        .to(edge.udp)
        .service(&did)
        .ip(TRUNK_IP)
        .args(&["-mp", &ports::reserve_media().to_string(), "-rtp_echo"])
        .timeout(Duration::from_secs(120))
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_softphone_registers_calls_makes_an_emergency_call_and_rings_for_the_psap() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let dir = TempDir::new("browser");
    let opts = Opts { plan: Some(PLAN.into()), seed: Some(AGENTS.into()), ..Opts::default() };
    // A real SMTP relay (aiosmtpd) takes the notification of alice's 933 call.
    let mail = TempDir::new("browser-mail");
    let (relay, smtp_port) = Relay::start_any(&mail.0).await;

    let edge = Edge::start_opts(opts, |c| {
        // A browser's INVITE (SDP with every codec and candidate, plus a PIDF-LO) is larger
        // than the 4 KiB the other black-box tests allow.
        c.limits.max_message_bytes = 65535;
        c.smtp.url = format!("smtp://127.0.0.1:{smtp_port}");
    })
    .await;

    // The carrier: three calls (ordinary, emergency with and without location); its files
    // (the messages it saw) are kept in `out` with the screenshots.
    let what = "SIPp carrier (three calls answered and hung up)";
    let trunk = Sipp::build(what, &out, "rtp_trunk_uas.xml")
        .name("trunk")
        .local(TRUNK_IP, edge.trunk_ports.0)
        .args(&["-mp", &ports::reserve_media().to_string(), "-rtp_echo"])
        .calls(3)
        .timeout(Duration::from_secs(280))
        .listening()
        .await;

    tokio::time::timeout(
        RUN_LIMIT,
        drive_browser(&edge, edge.webrtc.unwrap(), &out, &trunk, dir.path()),
    )
    .await
    .expect("the browser run did not finish in time");
    let messages = trunk.messages().to_owned();
    all_pass(vec![trunk]).await;
    let at_carrier = received(&messages);

    let in_dialog = |m: &str| header(m, "To").is_some_and(|t| t.contains(";tag="));
    let invites: Vec<&String> =
        at_carrier.iter().filter(|m| m.starts_with("INVITE ") && !in_dialog(m)).collect();
    let byes = at_carrier.iter().filter(|m| m.starts_with("BYE ")).count();
    assert_eq!(invites.len(), 3, "{at_carrier:#?}");
    // The page's hold and resume: two re-INVITEs, each a plain offer on the call's port.
    let reinvites: Vec<&String> =
        at_carrier.iter().filter(|m| m.starts_with("INVITE ") && in_dialog(m)).collect();
    assert_eq!(reinvites.len(), 2, "{reinvites:#?}");
    assert!(body(reinvites[0]).contains("a=sendonly"), "hold: {}", reinvites[0]);
    assert!(body(reinvites[1]).contains("a=sendrecv"), "resume: {}", reinvites[1]);
    for r in &reinvites {
        assert!(body(r).contains(" RTP/AVP ") && !body(r).contains("fingerprint"), "{r}");
    }
    assert_eq!(byes, 3, "every call was hung up from the page: {at_carrier:#?}");

    // The ordinary call: the browser offered DTLS-SRTP; the carrier was offered plain RTP on
    // one of the edge's ports, with the codecs the edge relays.
    let sent = std::fs::read_to_string(out.join("ordinary-invite.sip")).unwrap();
    let ordinary = invites.iter().find(|m| request_user(m) == Some(CALL_NUMBER)).unwrap();
    assert!(body(&sent).contains("UDP/TLS/RTP/SAVPF"), "{sent}");
    let offer = body(ordinary);
    let m_line = offer.lines().find(|l| l.starts_with("m=audio ")).expect("an audio offer");
    assert!(m_line.contains(" RTP/AVP 0 8 "), "plain RTP, PCMU and PCMA first: {offer}");
    assert!(offer.contains("c=IN IP4 127.0.0.1"), "the edge's media address: {offer}");
    assert!(!offer.contains("fingerprint") && !offer.contains("ice-ufrag"), "{offer}");

    // The emergency call: the page's location went to the carrier byte for byte.
    let sent = std::fs::read_to_string(out.join("emergency-invite.sip")).unwrap();
    let geolocation = header(&sent, "Geolocation").expect("the page sent a Geolocation header");
    let cid = geolocation.strip_prefix("<cid:").and_then(|g| g.strip_suffix('>')).unwrap();
    assert!(header(&sent, "Content-Type").unwrap().starts_with("multipart/mixed;boundary="));
    let pidf = part(&sent, cid).expect("the page's multipart body has the PIDF-LO part");
    assert!(pidf.contains("urn:ietf:params:xml:ns:pidf:geopriv10"), "{pidf}");
    assert!(pidf.contains("xmlns:gml=\"http://www.opengis.net/gml\""), "{pidf}");
    assert!(pidf.contains("<gml:pos>41.878113 -87.629799</gml:pos>"), "{pidf}");
    let emergency: Vec<&&String> =
        invites.iter().filter(|m| request_user(m) == Some(EMERGENCY)).collect();
    assert_eq!(emergency.len(), 2, "both emergency calls reached the carrier as 933");
    let with_location = emergency
        .iter()
        .find(|m| header(m, "Geolocation") == Some(geolocation))
        .expect("the carrier got the page's Geolocation header");
    assert_eq!(part(with_location, cid), Some(pidf), "the PIDF-LO changed on the way");
    assert_eq!(header(with_location, "Priority"), Some("emergency"));
    assert!(header(with_location, "P-Asserted-Identity").unwrap().contains("+1555010090"));
    // Without a location the page sent a plain SDP body and no Geolocation, and still called.
    let sent = std::fs::read_to_string(out.join("emergency-no-location-invite.sip")).unwrap();
    assert!(header(&sent, "Geolocation").is_none(), "{sent}");
    assert_eq!(header(&sent, "Content-Type"), Some("application/sdp"));

    // The notification of alice's test call reached her emergency contact, from her mailbox,
    // marked as a test, with the callback number the carrier saw.
    let mails = wait_received(&mail.0, 1, Duration::from_secs(20)).await;
    let alice_mail = mails
        .iter()
        .find(|m| m["from"].as_str().unwrap_or_default().contains("alice@example.com"))
        .expect("a notification from alice's mailbox");
    assert_eq!(alice_mail["rcpt_tos"][0], "security@example.com", "{alice_mail}");
    assert!(
        alice_mail["subject"].as_str().unwrap().to_lowercase().contains("test"),
        "{alice_mail}"
    );
    let text = alice_mail["text"].as_str().unwrap();
    assert!(text.contains("933") && text.contains("Alice Agent"), "{text}");
    let pai = header(with_location, "P-Asserted-Identity").unwrap();
    let callback: String = pai
        .chars()
        .skip_while(|c| *c != '+')
        .take_while(|c| *c == '+' || c.is_ascii_digit())
        .collect();
    assert!(text.contains(&callback), "the mail names the callback number {callback}: {text}");
    relay.stop().await;

    // Browser to browser: the offer reached the other browser as it was sent (peer to peer,
    // no anchor).
    let sent = std::fs::read_to_string(out.join("browser-to-browser-invite.sip")).unwrap();
    let got = std::fs::read_to_string(out.join("browser-to-browser-received.sip")).unwrap();
    assert!(body(&sent).contains("UDP/TLS/RTP/SAVPF"), "{sent}");
    assert_eq!(body(&got), body(&sent), "a browser-to-browser offer was changed");

    // The edge relayed audio both ways (the counters are brought up to date every second).
    let metric = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _, metrics) = http_get(edge.admin, "/metrics").await;
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    let to_plain = metric(&metrics, "lifeline_media_packets_total{dir=\"to_plain\"}");
    let to_browser = metric(&metrics, "lifeline_media_packets_total{dir=\"to_browser\"}");
    assert!(to_plain > 150 && to_browser > 150, "{to_plain} / {to_browser} packets relayed");
    assert_eq!(metric(&metrics, "lifeline_media_legs"), 0, "every leg closed with its call");
    let stray = metric(&metrics, "lifeline_media_stray_total");
    assert!(stray >= 300, "the garbage was seen and set aside: {stray}");

    for shot in
        ["normal-call.png", "emergency-call.png", "emergency-no-location.png", "psap-callback.png"]
    {
        let len = std::fs::metadata(out.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {shot} missing");
    }
    edge.stop().await;
}

/// One plain HTTP/1.1 GET; returns the status, the head and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, buf[end + 4..].to_vec())
}

/// The page is served from the binary, with its library and licence, a policy that keeps it
/// to its own origin, and the SIP domain it registers under; no browser needed.
#[tokio::test]
async fn the_web_listener_serves_the_softphone_from_the_binary() {
    let edge = Edge::start().await;
    let (status, head, body) = http_get(edge.web, "/").await;
    assert_eq!(status, 200, "{head}");
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<title>lifeline softphone</title>"), "{page}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/html; charset=utf-8"), "{head}");
    assert!(lower.contains("content-security-policy: default-src 'none'; script-src 'self'"));
    assert!(lower.contains("x-content-type-options: nosniff"), "{head}");
    for path in ["/app.js", "/style.css", "/vendor/jssip-3.13.8.min.js", "/vendor/LICENSE"] {
        let (status, head, body) = http_get(edge.web, path).await;
        assert_eq!(status, 200, "{path}: {head}");
        assert!(!body.is_empty(), "{path}");
    }
    let (status, _, body) = http_get(edge.web, "/softphone.json").await;
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(config["domain"], "localhost");
    let (status, _, _) = http_get(edge.web, "/etc/passwd").await;
    assert_eq!(status, 404);
    edge.stop().await;
}
