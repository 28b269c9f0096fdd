//! The reference softphone's presence selector in a real browser: headless Chromium driven by
//! playwright-core (`tests/browser/presence.mjs`) logs in over `/ws`; the page must show the
//! state the admin API sets (the edge's NOTIFY reached JsSIP's subscription) and a state
//! chosen in the page must reach the admin API (the page's PUBLISH reached the edge). A
//! screenshot and the SIP the page exchanged are kept under `target/tmp/browser-presence/`.
//!
//! Self-contained (it shares nothing with `tests/browser.rs` but `tests/common`): no SIPp,
//! no trunk, no media.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Edge, Opts};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

/// Everything the browser run may take on a loaded 2-core machine.
const RUN_LIMIT: Duration = Duration::from_secs(180);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_and_sets_presence_over_sip() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-presence");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    assert!(
        repo("tests/browser/node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run scripts/test (it runs npm ci there)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/test (it installs Debian's chromium)"
    );
    let edge = Edge::start_opts(Opts::default(), |c| {
        // A browser's messages are larger than the 4 KiB the other black-box tests allow.
        c.limits.max_message_bytes = 65535;
    })
    .await;

    let mut node = Command::new("node")
        .arg(repo("tests/browser/presence.mjs"))
        .current_dir(repo("tests/browser"))
        .env("PAGE_URL", format!("http://{}/", edge.web))
        .env("ADMIN_URL", format!("http://{}/", edge.admin))
        .env("ADMIN_TOKEN", &edge.token)
        .env("AGENT", "alice")
        .env("PASSWORD", "secret")
        .env("OUT_DIR", &out)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node not found (Debian's nodejs)");
    let stdout = node.stdout.take().unwrap();
    let run = async {
        let mut lines = BufReader::new(stdout).lines();
        let mut steps = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            eprintln!("browser: {line}");
            steps.push(line);
        }
        let status = node.wait().await.unwrap();
        let mut stderr = String::new();
        if let Some(mut e) = node.stderr.take() {
            let _ = e.read_to_string(&mut stderr).await;
        }
        (steps, status, stderr)
    };
    let (steps, status, stderr) =
        tokio::time::timeout(RUN_LIMIT, run).await.expect("the browser run did not finish");
    assert!(status.success(), "the browser run failed after {steps:?}:\n{stderr}");
    assert_eq!(steps.last().map(String::as_str), Some("step: done"), "{steps:?}");

    // What the page set is what the edge holds.
    let (_, body) = edge.api("GET", "/api/agents/alice/presence", None).await;
    assert_eq!(body["state"], "dnd", "{body}");
    edge.stop().await;
}
