//! A real SMTP relay for the tests: aiosmtpd running `tests/smtp/sink.py`, which writes each
//! message it accepts into a directory as JSON.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The aiosmtpd relay, writing each message it accepts into `dir`.
pub struct Relay {
    child: Child,
}

impl Relay {
    /// The relay on a port the system chooses (no race with other tests for a free port):
    /// the relay and its port.
    pub async fn start_any(dir: &Path) -> (Relay, u16) {
        Relay::spawn(0, dir).await
    }

    /// The relay on `port`, reserved with [`super::ports::reserve`] (a test that needs the
    /// port before the relay runs: SMTP down at dial time, up later).
    pub async fn start(port: u16, dir: &Path) -> Relay {
        Relay::spawn(port, dir).await.0
    }

    async fn spawn(port: u16, dir: &Path) -> (Relay, u16) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(dir)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 not found");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        let bound = match &first {
            Ok(Ok(Some(l))) => l.strip_prefix("ready ").and_then(|p| p.parse::<u16>().ok()),
            _ => None,
        };
        let bound = bound.unwrap_or_else(|| {
            panic!(
                "the SMTP relay did not start (is aiosmtpd installed? scripts/test installs it): {first:?}"
            )
        });
        (Relay { child }, bound)
    }

    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// The messages the relay wrote so far, in order of arrival (decoded by the relay).
pub fn received(dir: &Path) -> Vec<Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    names.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect()
}

/// Waits until the relay has `n` messages (or fails after `within`).
pub async fn wait_received(dir: &Path, n: usize, within: Duration) -> Vec<Value> {
    let end = tokio::time::Instant::now() + within;
    loop {
        let got = received(dir);
        if got.len() >= n || tokio::time::Instant::now() > end {
            assert_eq!(got.len(), n, "messages received: {got:#?}");
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
