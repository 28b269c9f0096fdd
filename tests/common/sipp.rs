//! SIPp (Debian `sip-tester`, installed by `scripts/test`) as a peer of the black-box tests:
//! one way to start it, wait for it, and read what it saw. The scenarios live in
//! `tests/sipp/`; each says what it checks (`<ereg check_it="true">`: a failed check makes
//! SIPp exit non-zero).
//!
//! # Starting one
//!
//! [`Sipp::build`] names the peer (the `what` of every failure message), its directory and its
//! scenario, and returns a [`Builder`]. Give a UAC the edge with [`Builder::to`]. Then
//! either:
//! - [`Builder::start`] runs it at once (a UAC; SIPp sends when it is ready);
//! - [`Builder::listening`] returns once SIPp has bound its port (a UAS that the edge will
//!   send to, or that will be named in a Contact), and fails the test, with SIPp's own words,
//!   if it exits first.
//!
//! Every SIPp runs with `-m CALLS` (1 unless [`Builder::calls`]), `-timeout T
//! -timeout_error` ([`TIMEOUT`] unless [`Builder::timeout`]), `-nostdin`, and with its
//! files in its directory: errors (unexpected messages, failed checks) in `NAME.errors.log`,
//! the scenario's `<log>` lines in `NAME.log`, every message it sent and received in
//! `NAME.messages.log` (NAME is the scenario's and a counter unless [`Builder::name`]). They
//! stay where they are when a test fails. It is killed when its [`Sipp`] is dropped.
//!
//! # Ports
//!
//! SIPp cannot be told to bind port 0. Its `-p 0` is its default, and SIPp 3.6.1 then takes
//! the first free port scanning upward from 5060, which the demo tests need free and which
//! two SIPps can race for. The port it took shows only on its screen. So every SIPp gets
//! its `-p` from [`super::ports::reserve`], or the test names one with [`Builder::local`]
//! that it reserved there too. No other test process is handed that port, and the kernel
//! gives it to no socket binding port 0. See that module for why this is race-free where
//! "bind port 0, close, reuse the number" is not. SIPp's side sockets (RTP from 6000 and
//! control from 8888, each scanning upward from a port that is taken) stay outside those
//! ports. A test that sets `-mp P` takes P from [`super::ports::reserve_media`], which
//! reserves P + 2 as well, since `-rtp_echo` binds both.
//!
//! # Reading what it saw
//!
//! [`Sipp::received`] gives the messages from its message log; [`header`], [`body`] and
//! [`request_user`] read one of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::ports;

/// SIPp's global timeout unless a test says otherwise: generous, a loaded 2-core CI machine
/// runs these next to every other test.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// How long past its own timeout a SIPp may take to exit before the test gives up on it.
const EXIT_GRACE: Duration = Duration::from_secs(30);

/// The path of `tests/sipp/NAME`.
pub fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(name).to_str().unwrap().to_owned()
}

/// A SIPp to start: see the module doc.
#[derive(Debug)]
pub struct Builder {
    what: String,
    dir: PathBuf,
    scenario: String,
    name: String,
    remote: Option<SocketAddr>,
    ip: String,
    port: Option<u16>,
    calls: u32,
    timeout: Duration,
    args: Vec<String>,
}

/// A running SIPp and the files it writes.
#[derive(Debug)]
pub struct Sipp {
    what: String,
    child: Child,
    port: u16,
    errors: PathBuf,
    log: PathBuf,
    messages: PathBuf,
    /// Its `-timeout`: how long it may run before it gives up.
    timeout: Duration,
    /// Everything it wrote on stderr, read as it comes (a full pipe would stall SIPp).
    stderr: Option<JoinHandle<String>>,
}

impl Sipp {
    /// A SIPp running `tests/sipp/SCENARIO_FILE` in `dir` (where its files go); `what` names
    /// it in failure messages.
    pub fn build(what: impl Into<String>, dir: &Path, scenario_file: &str) -> Builder {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let stem = scenario_file.trim_end_matches(".xml");
        Builder {
            what: what.into(),
            dir: dir.to_owned(),
            scenario: scenario(scenario_file),
            name: format!("{stem}-{n}"),
            remote: None,
            ip: "127.0.0.1".into(),
            port: None,
            calls: 1,
            timeout: TIMEOUT,
            args: Vec::new(),
        }
    }

    /// The local port it was given (`-p`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its message log (`-trace_msg`).
    pub fn messages(&self) -> &Path {
        &self.messages
    }

    /// The SIP messages it received so far, from its message log.
    pub fn received(&self) -> Vec<String> {
        received(&self.messages)
    }

    /// Whether its message log (sent and received) holds `needle` so far.
    pub fn saw(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.messages).unwrap_or_default().contains(needle)
    }

    /// The scenario's `<log>` lines so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for SIPp to end (within its timeout and [`EXIT_GRACE`]).
    pub async fn end(&mut self) -> ExitStatus {
        tokio::time::timeout(self.timeout + EXIT_GRACE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not finish", self.what))
            .unwrap()
    }

    /// What SIPp said: its stderr (complete once it ended) and its error log, and where its
    /// messages are.
    pub async fn report(&mut self) -> String {
        let stderr = match self.stderr.take() {
            Some(task) => {
                tokio::time::timeout(Duration::from_secs(1), task).await.ok().and_then(Result::ok)
            }
            None => None,
        };
        let stderr = stderr.unwrap_or_default();
        let errors = std::fs::read_to_string(&self.errors).unwrap_or_default();
        let messages = self.messages.display();
        format!("stderr:\n{stderr}\nerror log:\n{errors}\n(messages in {messages})")
    }

    /// Waits for SIPp to end, and fails the test unless its calls succeeded (every check
    /// passed); returns its `<log>` lines.
    pub async fn passes(mut self) -> String {
        let status = self.end().await;
        if !status.success() {
            let report = self.report().await;
            panic!("{} failed ({status}):\n{report}", self.what);
        }
        self.log()
    }

    /// Waits for SIPp to end, and fails the test if its calls succeeded; returns what it
    /// reported.
    pub async fn fails(mut self) -> String {
        let status = self.end().await;
        let report = self.report().await;
        assert!(!status.success(), "{} should have failed, but passed:\n{report}", self.what);
        report
    }
}

/// Waits for every SIPp, and fails the test with the report of each one whose calls failed
/// (one peer's failure often only says what another's check explains); returns their
/// `<log>` lines, in order.
pub async fn all_pass(peers: Vec<Sipp>) -> Vec<String> {
    let mut logs = Vec::new();
    let mut failures = String::new();
    for mut sipp in peers {
        let status = sipp.end().await;
        if !status.success() {
            let report = sipp.report().await;
            failures.push_str(&format!("\n== {} failed ({status}):\n{report}\n", sipp.what));
        }
        logs.push(sipp.log());
    }
    assert!(failures.is_empty(), "{failures}");
    logs
}

impl Builder {
    /// The UAC's remote host: where it sends (the edge).
    pub fn to(mut self, remote: SocketAddr) -> Builder {
        self.remote = Some(remote);
        self
    }

    /// Its local address (`-i`; 127.0.0.1 unless said).
    pub fn ip(mut self, ip: &str) -> Builder {
        self.ip = ip.to_owned();
        self
    }

    /// Its local address and port (`-i`, `-p`): a port from [`ports::reserve`] that the test
    /// needs to know first (a trunk port in a dialplan, a Contact already registered).
    pub fn local(mut self, ip: &str, port: u16) -> Builder {
        self.ip = ip.to_owned();
        self.port = Some(port);
        self
    }

    /// The Request-URI user of a UAC (`-s`).
    pub fn service(self, user: &str) -> Builder {
        self.args(&["-s", user])
    }

    /// Digest credentials (`-au`, `-ap`).
    pub fn auth(self, user: &str, password: &str) -> Builder {
        self.args(&["-au", user, "-ap", password])
    }

    /// A scenario keyword `[NAME]` (`-key`).
    pub fn key(self, name: &str, value: &str) -> Builder {
        self.args(&["-key", name, value])
    }

    /// A scenario variable `$NAME` (`-set`).
    pub fn set(self, name: &str, value: &str) -> Builder {
        self.args(&["-set", name, value])
    }

    /// More SIPp arguments, as given.
    pub fn args(mut self, args: &[&str]) -> Builder {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// How many calls it makes or takes before it exits (`-m`; 1 unless said).
    pub fn calls(mut self, n: u32) -> Builder {
        self.calls = n;
        self
    }

    /// Its global timeout (`-timeout`; [`TIMEOUT`] unless said).
    pub fn timeout(mut self, timeout: Duration) -> Builder {
        self.timeout = timeout;
        self
    }

    /// The stem of its files in its directory (the scenario's name and a counter unless
    /// said).
    pub fn name(mut self, name: &str) -> Builder {
        self.name = name.to_owned();
        self
    }

    /// Starts it (a UAC: it sends as soon as it runs).
    pub fn start(self) -> Sipp {
        let port = self.port.unwrap_or_else(ports::reserve);
        let file = |suffix: &str| self.dir.join(format!("{}.{suffix}", self.name));
        let (errors, log, messages) = (file("errors.log"), file("log"), file("messages.log"));
        let (port_s, calls) = (port.to_string(), self.calls.to_string());
        let timeout = format!("{}s", self.timeout.as_secs());
        let mut command = Command::new("sipp");
        if let Some(remote) = self.remote {
            command.arg(remote.to_string());
        }
        command
            .args(["-sf", &self.scenario, "-i", &self.ip, "-p", &port_s])
            .args(&self.args)
            .args(["-m", &calls, "-timeout", &timeout, "-timeout_error", "-nostdin"])
            .args(["-trace_err", "-error_file", errors.to_str().unwrap()])
            .args(["-trace_logs", "-log_file", log.to_str().unwrap()])
            .args(["-trace_msg", "-message_file", messages.to_str().unwrap()])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child =
            command.spawn().expect("sipp not found: run scripts/test, which installs sip-tester");
        let mut pipe = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text).await;
            text
        });
        Sipp {
            what: self.what,
            child,
            port,
            errors,
            log,
            messages,
            timeout: self.timeout,
            stderr: Some(stderr),
        }
    }

    /// Starts it and waits until it has bound its port (a UAS), failing the test with what
    /// SIPp said if it exits first.
    pub async fn listening(self) -> Sipp {
        let mut sipp = self.start();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = sipp.child.try_wait() {
                let report = sipp.report().await;
                panic!(
                    "{} exited before listening on {} ({status}):\n{report}",
                    sipp.what, sipp.port
                );
            }
            if sipp.child.id().is_some_and(|pid| bound_by(pid, sipp.port)) {
                return sipp;
            }
            assert!(Instant::now() < deadline, "{} never listened on {}", sipp.what, sipp.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether process `pid` has a socket bound to `port` (UDP or TCP, IPv4), from `/proc`: its
/// open sockets' inodes matched against the kernel's socket tables. A look that cannot take
/// the port from the process, as a test bind would.
fn bound_by(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    let inodes: Vec<String> = fds
        .filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let want = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/tcp"].iter().any(|table| {
        let table = std::fs::read_to_string(table).unwrap_or_default();
        table.lines().skip(1).any(|line| {
            // sl local rem st queues timer retrnsmt uid timeout inode ...
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1).is_some_and(|local| local.ends_with(&want))
                && fields.get(9).is_some_and(|inode| inodes.iter().any(|i| i == inode))
        })
    })
}

/// The SIP messages a SIPp received, from its message log (`-trace_msg`), each cut to its
/// Content-Length (the log adds blank lines after a body).
pub fn received(messages: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(messages).unwrap_or_default();
    text.split("----------------------------------------------- ")
        .filter(|block| block.contains(" message received ["))
        .filter_map(|block| block.split_once("bytes :\n").map(|(_, m)| m.trim_start().to_owned()))
        .map(|m| {
            let Some((head, body)) = m.split_once("\r\n\r\n") else { return m };
            let len: usize =
                header(head, "Content-Length").and_then(|v| v.parse().ok()).unwrap_or(0);
            format!("{head}\r\n\r\n{}", body.get(..len).unwrap_or(body))
        })
        .collect()
}

/// The first value of header `name` in a message's head (full name, case-insensitive).
pub fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A message's body (empty without one).
pub fn body(message: &str) -> &str {
    message.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The user part of an INVITE's Request-URI (`None` for anything else).
pub fn request_user(message: &str) -> Option<&str> {
    let uri = message.strip_prefix("INVITE ")?.split(' ').next()?;
    let user = uri.split_once(':')?.1.split('@').next()?;
    Some(user)
}
