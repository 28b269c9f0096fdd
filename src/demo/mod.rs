//! Demo mode: `lifeline run` without a configuration file is a whole telephone network on
//! loopback, so the README's walk-through works with nothing else installed (issue 7).
//!
//! # Contract
//!
//! - **Only without a configuration file**: the CLI binds a [`Demo`] (into
//!   [`crate::app::Binds::demo`]) when `run` finds neither `--config` nor `./lifeline.toml`,
//!   i.e. on the embedded defaults. With any configuration file nothing of this module runs:
//!   no carrier, no demo agents, no demo endpoint (it answers 404). Tests that build an
//!   [`crate::app::App`] in-process never get one either ([`crate::app::Binds::bind`] leaves
//!   it out).
//! - **Demo agents** ([`AGENTS_TOML`]: `alice`/`alice` and `bob`/`bob`, realm `[sip] domain`,
//!   with outbound numbers of the example carrier, mailboxes, emergency contacts and a US
//!   civic address; groups `support` and `supervisors`) are upserted at every start into a
//!   store of their own, `data_dir/`[`STORE_FILE`], never `lifeline.db`: their guessable
//!   passwords never reach the store a configuration file uses. Leases and other state of
//!   demo runs stay in that file too.
//! - **The simulated carrier** ([`carrier`]) listens on [`CARRIER_ADDR`], where the example
//!   dialplan's trunk `carrier` points (`dialplans/example.toml`). It answers the edge's
//!   OPTIONS probes (so the trunk is up) and every INVITE, whatever the number (933
//!   included): 180, then 200 after a second with plain RTP (`RTP/AVP`: PCMU, PCMA,
//!   telephone-event). Its media ([`media`]) echoes what it receives and plays a tone while
//!   nothing arrives. An offer it cannot speak (a browser's DTLS-SRTP reaching it unanchored)
//!   gets 488 with a Warning. If the address cannot be bound (another program on it, or no
//!   127.0.0.2 on this system) the edge runs without the carrier, says so in the log, and the
//!   demo endpoint answers 404.
//! - **The simulated PSAP**: [`DemoHandle::psap_callback`] (the admin API's
//!   `POST /api/demo/psap-callback`) has the carrier call a number at the edge from the
//!   trunk's address, as a PSAP calling a leased callback number back would; the edge routes
//!   it to the leasing agent with `Priority: psap-callback`. The carrier ACKs the answer,
//!   echoes media, and hangs up when the agent does, or after the time asked for (at most
//!   [`carrier::MAX_CALL`]).
//!
//! # Layout
//!
//! - [`carrier`]: SIP (UAS and UAC) on a `sip::transaction::TxnLayer`, one task.
//! - [`media`]: per-call RTP echo and tone.
//! - [`sdp`]: the little SDP offer/answer the carrier needs.

pub mod carrier;
pub mod media;
pub mod sdp;

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Config;
use crate::store::Store;
use crate::store::seed::{self, SeedErrors, SeedReport};

/// Where the simulated carrier listens: the example dialplan's trunk `carrier`.
pub const CARRIER_ADDR: &str = "127.0.0.2:5090";

/// The demo agents and groups (the `agents.toml` format, `crate::store::seed`).
pub const AGENTS_TOML: &str = include_str!("agents.toml");

/// The name the demo agents' problems would be reported under.
const AGENTS_FILE: &str = "<demo agents>";

/// The store file of demo mode, in `data_dir` (beside, never instead of, `lifeline.db`).
pub const STORE_FILE: &str = "demo.db";

/// Demo mode's sockets, bound before the edge is built (STYLE.md habit 10).
#[derive(Debug)]
pub struct Demo {
    /// The simulated carrier's SIP socket; `None` when [`CARRIER_ADDR`] could not be bound.
    carrier: Option<UdpSocket>,
}

impl Demo {
    /// Binds the carrier on [`CARRIER_ADDR`]. A failure is logged, not fatal: the edge and
    /// the demo agents still come up.
    pub async fn bind() -> Demo {
        Demo::bind_at(CARRIER_ADDR).await
    }

    /// [`Demo::bind`] on another address.
    pub async fn bind_at(addr: &str) -> Demo {
        match UdpSocket::bind(addr).await {
            Ok(socket) => Demo { carrier: Some(socket) },
            Err(e) => {
                tracing::warn!(addr, error = %e, "demo carrier not started: calls to the example trunk will fail");
                Demo { carrier: None }
            }
        }
    }

    /// The carrier's address, when it is bound.
    pub fn carrier_addr(&self) -> Option<SocketAddr> {
        self.carrier.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Starts the carrier toward the edge's UDP listener `edge`; returns the handle for the
    /// admin API and the task to run (it ends when `stop` turns true). `None` without a
    /// carrier socket.
    pub fn spawn(
        self,
        edge: SocketAddr,
        stop: watch::Receiver<bool>,
    ) -> Option<(DemoHandle, impl std::future::Future<Output = ()> + Send + 'static)> {
        let socket = self.carrier?;
        let carrier = match carrier::Carrier::new(socket, edge) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "demo carrier not started");
                return None;
            }
        };
        let (tx, rx) = mpsc::channel(16);
        Some((DemoHandle { commands: tx }, carrier.run(rx, stop)))
    }
}

/// Seeds the demo agents and groups into `store` (upsert by id), passwords hashed for
/// `realm`.
pub fn seed(store: &dyn Store, realm: &str) -> Result<SeedReport, SeedErrors> {
    let parsed = seed::parse(Path::new(AGENTS_FILE), AGENTS_TOML, realm)?;
    seed::apply(store, &parsed)
}

/// Says at start, plainly, that demo mode is on and how to use it.
pub fn announce(config: &Config, demo: &Demo) {
    tracing::warn!(
        "DEMO MODE: no configuration file (--config PATH or ./lifeline.toml), so a simulated carrier and demo agents run too; any configuration file turns demo mode off"
    );
    let domain = &config.sip.domain;
    tracing::info!(
        page = %format!("http://{}/", config.web.listen),
        logins = "alice/alice, bob/bob",
        %domain,
        "demo agents: log in on the softphone page"
    );
    let plans = config.resolve(&config.dialplan.dir);
    let has_plan = std::fs::read_dir(&plans).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| e.path().extension().is_some_and(|x| x == "toml"))
    });
    if !has_plan {
        tracing::warn!(
            dir = %plans.display(),
            "demo mode: no dialplan here, so no call reaches the demo carrier; run from the repository root (it has dialplans/example.toml)"
        );
    }
    match demo.carrier_addr() {
        Some(addr) => tracing::info!(
            carrier = %format!("udp:{addr}"),
            "demo carrier: answers any number (+15551234567, 933 the test emergency number) and echoes what you say"
        ),
        None => tracing::warn!("demo carrier: not running (see above)"),
    }
    let token = config
        .admin
        .token_file
        .clone()
        .unwrap_or_else(|| config.resolve(&config.node.data_dir).join("admin.token"));
    tracing::info!(
        command = %format!(
            "curl -X POST -H \"Authorization: Bearer $(cat {})\" http://{}/api/demo/psap-callback",
            token.display(),
            config.admin.listen
        ),
        "demo PSAP: after a 933 call, this calls the callback number back"
    );
}

/// What the admin API holds to reach the running carrier.
#[derive(Debug, Clone)]
pub struct DemoHandle {
    commands: mpsc::Sender<carrier::Command>,
}

impl DemoHandle {
    /// Has the carrier call `did` at the edge as a PSAP would, and hang up `hang_up_after` the
    /// answer (at most [`carrier::MAX_CALL`]); returns the call's Call-ID once the INVITE is on
    /// its way.
    pub async fn psap_callback(
        &self,
        did: &str,
        hang_up_after: std::time::Duration,
    ) -> Result<String, DemoError> {
        let (reply, answer) = oneshot::channel();
        let did = did.to_owned();
        self.commands
            .send(carrier::Command::PsapCallback { did, hang_up_after, reply })
            .await
            .map_err(|_| DemoError::Stopped)?;
        answer.await.map_err(|_| DemoError::Stopped)?
    }
}

/// Why the demo carrier could not place a call.
#[derive(Debug)]
pub enum DemoError {
    /// The carrier has stopped (the edge is shutting down).
    Stopped,
    /// No RTP port could be bound.
    Media(std::io::Error),
    /// The request could not be built or started (a bad number).
    Sip(String),
}

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DemoError::Stopped => f.write_str("the demo carrier has stopped"),
            DemoError::Media(e) => write!(f, "no RTP port for the demo call: {e}"),
            DemoError::Sip(e) => write!(f, "the demo call could not be placed: {e}"),
        }
    }
}

impl std::error::Error for DemoError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_agents_are_a_valid_seed_with_everything_an_emergency_call_needs() {
        let parsed = seed::parse(Path::new(AGENTS_FILE), AGENTS_TOML, "localhost").unwrap();
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let ids: Vec<&str> = parsed.agents.iter().map(|(a, _)| a.id.as_str()).collect();
        assert_eq!(ids, ["alice", "bob"]);
        let groups: Vec<&str> = parsed.groups.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(groups, ["support", "supervisors"]);
    }
}
