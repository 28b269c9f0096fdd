//! The real `lifeline` binary, run as an operator would (`lifeline run --config FILE`), for
//! the tests that must kill it with `kill -9` and start it again on the same data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The binary running; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Binary {
    child: Child,
    /// Its stdout and stderr.
    log: PathBuf,
}

impl Binary {
    /// Starts `lifeline run --config DIR/lifeline.toml` in `dir`, its output in
    /// `DIR/lifeline-RUN.log`, and waits until `/ready` on `admin` says 200 (at most 30 s);
    /// fails the test with its output if it exits first.
    pub async fn start(dir: &Path, admin: SocketAddr, run: u32) -> Binary {
        let log = dir.join(format!("lifeline-{run}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lifeline"))
            .args(["run", "--config", dir.join("lifeline.toml").to_str().unwrap()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut bin = Binary { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ready(admin).await {
                return bin;
            }
            if let Ok(Some(status)) = bin.child.try_wait() {
                panic!("lifeline exited before it was ready ({status}):\n{}", bin.output());
            }
            assert!(Instant::now() < deadline, "lifeline never ready:\n{}", bin.output());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no graceful stop, no chance to flush anything.
    pub async fn kill_9(mut self) {
        self.child.start_kill().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("lifeline did not die")
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status}");
    }
}

/// Whether `GET /ready` on `admin` answers 200 (false while nothing listens).
async fn ready(admin: SocketAddr) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(admin).await else { return false };
    let req = "GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut buf)).await;
    matches!(read, Ok(Ok(_))) && buf.starts_with("HTTP/1.1 200 ")
}
