//! Call history (issue 5 §6; DESIGN.md, "Durability": kept): one row per ordinary call, written
//! when the call ends, off the core's thread.
//!
//! # Which calls
//!
//! An initial INVITE from an identified caller — a trunk (by source address), a `[[trusted]]`
//! network or an authenticated agent — that is neither an emergency call nor a PSAP callback
//! ([`Core::history_begin`], called by the proxy once the request is routed). A challenge
//! (401/407) or a refused credential is no call: the INVITE that follows with credentials is.
//!
//! **Privacy (issue 6 §8).** Emergency calls and PSAP callbacks never begin, so they leave no
//! row: the proxy knows them before it calls [`Core::history_begin`] (its call's
//! `emergency` part, `Routing::Psap`), and their in-dialog requests find nothing here.
//!
//! # When a row is written, and what it says
//!
//! Exactly once per call, at the first of:
//!
//! | event | `result` | `duration_s` |
//! |---|---|---|
//! | a final non-2xx goes back to the caller (relayed or the edge's own) | see below | 0 |
//! | a BYE from either side after the 2xx | `answered` | 2xx to BYE |
//! | the connection of either leg closes (a dialog lost with its flow) | `dropped` | 2xx to close |
//! | the edge ends it: its anchored media stopped (`[media] timeout`) | `dropped` | 2xx to then |
//! | no BYE seen [`super::busy::MAX_CALL`] after the 2xx | `dropped` | up to then |
//! | graceful shutdown with the call up | `unfinished` | up to then |
//!
//! Failure results: `cancelled` (the caller's CANCEL), `no-answer` (408: Timer B; or the 487 of
//! a branch the edge cancelled at Timer C), `busy` (486, 600), `failed:NNN` (any other status,
//! e.g. `failed:404`, `failed:480`, `failed:503`). A call in progress at a crash leaves no row
//! (dialogs in progress live in memory only).
//!
//! Fields: `direction` `outbound` (agent -> trunk), `inbound` (trunk -> agent), `internal`
//! (agent -> agent; a `[[trusted]]` network counts as the agents' side), `transit`
//! (trunk -> trunk). `agent`: the caller for `outbound` and `internal`, the agent whose device
//! answered for `inbound` (none when nobody answered), none for `transit`. `from`: the From
//! URI's user (or the whole URI when it has none); `to`: the Request-URI's user as received
//! (the dialled number, the DID). `trunk`: the trunk the call came from (`inbound`), or the
//! last trunk it was offered to (`outbound`, `transit`). `started_at`: when the INVITE arrived.
//!
//! # Writing
//!
//! Rows go over a channel to one thread that gathers them for [`GATHER`] and writes them in one
//! transaction (a row shows in `/api/calls` that much later)
//! ([`crate::store::Store::insert_calls`]); the core never waits. A failed write is logged (row
//! count, never numbers) and its rows are lost: history never holds up calls.

use std::collections::HashMap;

use sip::FastMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sip::transaction::{FlowId, Peer, ServerKey};
use sip::{Request, Uri};

use super::Core;
use super::proxy::{Routing, Target};
use crate::routing::Dialplan;
use crate::store::{AgentId, Call, Direction, Store, UnixTime};

/// A call still being set up longer than this has lost its final response (it cannot: Timer C
/// ends every branch within minutes); it is forgotten without a row.
const MAX_SETUP: Duration = Duration::from_secs(15 * 60);

/// Rows written in one transaction at most.
const BATCH: usize = 8192;

/// The calls the history follows, and the writer of their rows.
#[derive(Debug)]
pub struct History {
    /// Calls being set up, by the server transaction of their INVITE.
    setup: FastMap<ServerKey, Setup>,
    /// Answered calls, by Call-ID, until they end.
    up: HashMap<String, Up>,
    writer: Option<Writer>,
}

/// A call whose INVITE has no final response yet.
#[derive(Debug)]
struct Setup {
    call_id: String,
    /// When the INVITE arrived (monotonic, for the expiry), and on the wall clock.
    since: Instant,
    started_at: UnixTime,
    direction: Direction,
    /// The agent who made it (authenticated).
    caller: Option<String>,
    from: String,
    to: String,
    /// The trunk it came from (`inbound`, `transit`).
    source_trunk: Option<String>,
    /// The caller's connection (stream transports).
    caller_flow: Option<FlowId>,
    /// Each branch forked so far, by fork index.
    branches: Vec<Branch>,
    /// The caller sent CANCEL.
    cancelled: bool,
}

/// Who a branch rang.
#[derive(Debug, Clone, Default)]
struct Branch {
    agent: Option<String>,
    flow: Option<FlowId>,
    trunk: Option<String>,
}

/// An answered call, until its BYE.
#[derive(Debug)]
struct Up {
    row: Call,
    answered: Instant,
    /// The connections of its legs: either closing ends the call.
    flows: Vec<FlowId>,
}

#[derive(Debug)]
struct Writer {
    tx: std::sync::mpsc::Sender<Call>,
    thread: std::thread::JoinHandle<()>,
}

/// How long the writer lets rows gather before a transaction.
const GATHER: Duration = Duration::from_millis(250);

impl History {
    /// Starts the writer thread; it ends once [`History::finish`] (or a drop) closes it.
    pub fn spawn(store: Arc<dyn Store>) -> History {
        let (tx, rx) = std::sync::mpsc::channel::<Call>();
        let spawned =
            std::thread::Builder::new().name("lifeline-history".into()).spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Let rows gather: one transaction and one wake-up per window, not per
                    // call (at thousands of calls a second, a thread woken for each row and a
                    // transaction each cost more than the calls' own routing).
                    std::thread::sleep(GATHER);
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = store.insert_calls(&batch) {
                        tracing::error!(error = %e, rows = batch.len(), "call history not written");
                    }
                }
            });
        let writer = match spawned {
            Ok(thread) => Some(Writer { tx, thread }),
            Err(e) => {
                tracing::error!(error = %e, "no call history writer: calls will not be recorded");
                None
            }
        };
        History { setup: FastMap::default(), up: HashMap::new(), writer }
    }

    /// A history that records nothing (unit tests).
    #[cfg(test)]
    fn detached() -> History {
        History { setup: FastMap::default(), up: HashMap::new(), writer: None }
    }

    fn write(&self, row: Call) {
        if let Some(w) = &self.writer {
            let _ = w.tx.send(row);
        }
    }

    /// The caller cancelled the INVITE of `key` (RFC 3261 §9.2).
    pub fn cancelled(&mut self, key: ServerKey) {
        if let Some(s) = self.setup.get_mut(&key) {
            s.cancelled = true;
        }
    }

    /// Branch `index` of the call of `key` was answered (the first 2xx counts).
    fn answered(&mut self, now: Instant, key: ServerKey, index: Option<u32>) {
        if let Some(s) = self.setup.remove(&key) {
            let (call_id, up) = s.answer(now, index);
            self.up.entry(call_id).or_insert(up);
        }
    }

    /// The final response `status` went back for the INVITE of `key`.
    fn finished(&mut self, now: Instant, key: ServerKey, status: u16) {
        if (200..300).contains(&status) {
            // Relayed 2xx are recorded with their branch by `answered`; this only catches one
            // that was not.
            return self.answered(now, key, None);
        }
        if let Some(s) = self.setup.remove(&key) {
            self.write(s.fail(status));
        }
    }

    /// A BYE (either way) for `call_id`: the call ended.
    pub fn ended(&mut self, now: Instant, call_id: &str) {
        if let Some(up) = self.up.remove(call_id) {
            self.write(up.close(now, "answered"));
        }
    }

    /// The edge itself ended the answered call `call_id` (its media stopped: BYEs both ways).
    pub fn dropped(&mut self, now: Instant, call_id: &str) {
        if let Some(up) = self.up.remove(call_id) {
            self.write(up.close(now, "dropped"));
        }
    }

    /// A connection closed: the answered calls with a leg on it ended.
    pub fn flow_closed(&mut self, now: Instant, flow: FlowId) {
        if self.up.is_empty() {
            return;
        }
        let gone: Vec<String> = self
            .up
            .iter()
            .filter(|(_, u)| u.flows.contains(&flow))
            .map(|(k, _)| k.clone())
            .collect();
        for call_id in gone {
            if let Some(up) = self.up.remove(&call_id) {
                self.write(up.close(now, "dropped"));
            }
        }
    }

    /// Calls whose end the edge will not see: set-ups that lost their final response (no row),
    /// and answered calls without a BYE after [`super::busy::MAX_CALL`] (`dropped`).
    pub fn expire(&mut self, now: Instant) {
        self.setup.retain(|_, s| now.saturating_duration_since(s.since) <= MAX_SETUP);
        let old: Vec<String> = self
            .up
            .iter()
            .filter(|(_, u)| now.saturating_duration_since(u.answered) > super::busy::MAX_CALL)
            .map(|(k, _)| k.clone())
            .collect();
        for call_id in old {
            if let Some(up) = self.up.remove(&call_id) {
                self.write(up.close(now, "dropped"));
            }
        }
    }

    /// Graceful shutdown: the calls still up are written as `unfinished`; returns the writer's
    /// thread, which ends once every row is written (join it off the async runtime).
    pub fn finish(mut self, now: Instant) -> Option<std::thread::JoinHandle<()>> {
        for (_, up) in std::mem::take(&mut self.up) {
            self.write(up.close(now, "unfinished"));
        }
        self.writer.take().map(|w| w.thread)
    }
}

impl Setup {
    /// The call answered by branch `index` (when known): its Call-ID and what is kept until
    /// it ends.
    fn answer(self, now: Instant, index: Option<u32>) -> (String, Up) {
        let branch = index.and_then(|i| self.branches.get(i as usize)).cloned().unwrap_or_default();
        let agent = match self.direction {
            Direction::Outbound | Direction::Internal => self.caller.clone(),
            Direction::Inbound => branch.agent.clone(),
            Direction::Transit => None,
        };
        let flows = self.caller_flow.into_iter().chain(branch.flow).collect();
        let mut row = self.row("answered", agent);
        if matches!(self.direction, Direction::Outbound | Direction::Transit) {
            row.trunk = branch.trunk.or(row.trunk);
        }
        (self.call_id, Up { row, answered: now, flows })
    }

    /// The row of a call that ended with `status` (>= 300) before being answered.
    fn fail(self, status: u16) -> Call {
        let agent = match self.direction {
            Direction::Outbound | Direction::Internal => self.caller.clone(),
            Direction::Inbound | Direction::Transit => None,
        };
        let last_trunk = self.branches.iter().rev().find_map(|b| b.trunk.clone());
        let mut row = self.row(&failure(status, self.cancelled), agent);
        row.trunk = last_trunk.or(row.trunk);
        row
    }

    /// The row of this call as it stands (duration 0, the source trunk).
    fn row(&self, result: &str, agent: Option<String>) -> Call {
        Call {
            agent: agent.and_then(|a| a.parse::<AgentId>().ok()),
            direction: self.direction,
            from: self.from.clone(),
            to: self.to.clone(),
            started_at: self.started_at,
            duration_s: 0,
            result: result.to_owned(),
            trunk: self.source_trunk.clone(),
        }
    }
}

impl Up {
    fn close(mut self, now: Instant, result: &str) -> Call {
        let ms = now.saturating_duration_since(self.answered).as_millis();
        self.row.duration_s = u32::try_from(ms.saturating_add(500) / 1000).unwrap_or(u32::MAX);
        result.clone_into(&mut self.row.result);
        self.row
    }
}

/// The `result` of a call that ended with `status` (>= 300) before being answered.
fn failure(status: u16, cancelled: bool) -> String {
    match status {
        _ if cancelled => "cancelled".to_owned(),
        408 | 487 => "no-answer".to_owned(),
        486 | 600 => "busy".to_owned(),
        s => format!("failed:{s}"),
    }
}

/// The user part of a URI (decoded), or a `tel:` number; else the URI's text.
fn user_or_uri(uri: &Uri<'_>, raw: &str) -> String {
    let user = match uri {
        Uri::Sip(u) => u.user_decoded().and_then(|d| String::from_utf8(d.into_owned()).ok()),
        Uri::Tel(t) => Some(t.number.to_owned()),
        _ => None,
    };
    user.unwrap_or_else(|| raw.to_owned())
}

/// The trunk of `plan` a branch toward `target` goes to: by its index (emergency targets), or
/// by the host and port of its Request-URI (`Trunk::request_uri`).
fn trunk_of(plan: &Dialplan, target: &Target) -> Option<String> {
    if let Some(i) = target.trunk {
        return plan.trunks.get(i).map(|t| t.name.clone());
    }
    let uri = target.uri.as_deref()?;
    let Ok(Uri::Sip(u)) = Uri::parse(uri) else { return None };
    plan.trunks
        .iter()
        .find(|t| t.host.eq_ignore_ascii_case(u.host_raw) && t.port == u.port)
        .map(|t| t.name.clone())
}

impl Core {
    /// An initial INVITE was routed (`routing`): follow it as a call if it is one (module
    /// docs). The caller leaves out emergency calls and PSAP callbacks.
    pub(super) fn history_begin(
        &mut self,
        now: Instant,
        key: ServerKey,
        req: &Request,
        from: &Peer,
        routing: &Routing,
    ) {
        if *req.method() != sip::Method::Invite || matches!(routing, Routing::Respond(_)) {
            return;
        }
        let plan = self.dialplans.current();
        let ip = from.addr.ip();
        let source_trunk = self.trunk_for_source(&plan, ip).map(|t| t.name.clone());
        let caller = self.initial_caller.clone();
        if source_trunk.is_none() && caller.is_none() && !plan.is_trusted(ip) {
            // Refused credentials (400, 403): nobody the edge knows is calling.
            return;
        }
        let to = match req.uri() {
            Ok(uri) => user_or_uri(&uri, req.uri_str()),
            Err(_) => req.uri_str().to_owned(),
        };
        let to_agent = match routing {
            Routing::Parallel(_) => true,
            Routing::Answer(..) => self.config.roster.current().directory.contains(&to),
            _ => false,
        };
        let direction = match (source_trunk.is_some(), matches!(routing, Routing::Serial(_))) {
            (true, true) => Direction::Transit,
            (true, false) => Direction::Inbound,
            (false, true) => Direction::Outbound,
            (false, false) if to_agent => Direction::Internal,
            (false, false) => Direction::Outbound,
        };
        let from_user = match req.headers().from() {
            Ok(f) => {
                let raw = f.uri.to_string();
                user_or_uri(&f.uri, &raw)
            }
            Err(_) => String::new(),
        };
        let setup = Setup {
            call_id: req.headers().call_id().unwrap_or_default().to_owned(),
            since: now,
            started_at: super::emergency::unix_now(),
            direction,
            caller,
            from: from_user,
            to,
            source_trunk,
            caller_flow: from.flow,
            branches: Vec::new(),
            cancelled: false,
        };
        self.history.setup.insert(key, setup);
    }

    /// Branch `index` of the call of `key` goes to `target`.
    pub(super) fn history_forked(&mut self, key: ServerKey, index: u32, target: &Target) {
        if !self.history.setup.contains_key(&key) {
            return;
        }
        let branch = Branch {
            agent: target.agent.clone(),
            flow: target.peer.and_then(|p| p.flow),
            trunk: trunk_of(&self.dialplans.current(), target),
        };
        if let Some(s) = self.history.setup.get_mut(&key) {
            let i = index as usize;
            if s.branches.len() <= i {
                s.branches.resize(i + 1, Branch::default());
            }
            s.branches[i] = branch;
        }
    }

    /// Branch `index` of the call of `key` answered 2xx.
    pub(super) fn history_answered(&mut self, now: Instant, key: ServerKey, index: u32) {
        self.history.answered(now, key, Some(index));
    }

    /// The final response `status` went back on the server transaction `key`.
    pub(super) fn history_final(&mut self, now: Instant, key: ServerKey, status: u16) {
        self.history.finished(now, key, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(direction: Direction) -> Setup {
        Setup {
            call_id: "c1".into(),
            since: Instant::now(),
            started_at: 1_000,
            direction,
            caller: Some("alice".into()),
            from: "alice".into(),
            to: "+15551230000".into(),
            source_trunk: None,
            caller_flow: None,
            branches: vec![
                Branch { trunk: Some("primary".into()), ..Branch::default() },
                Branch { trunk: Some("secondary".into()), ..Branch::default() },
            ],
            cancelled: false,
        }
    }

    #[test]
    fn failures_name_what_happened() {
        assert_eq!(failure(487, true), "cancelled");
        assert_eq!(failure(487, false), "no-answer");
        assert_eq!(failure(408, false), "no-answer");
        assert_eq!(failure(486, false), "busy");
        assert_eq!(failure(600, false), "busy");
        assert_eq!(failure(503, false), "failed:503");
        assert_eq!(failure(404, false), "failed:404");
    }

    #[test]
    fn an_answered_call_is_timed_from_the_2xx_to_the_bye() {
        let t = Instant::now();
        let (call_id, up) = setup(Direction::Outbound).answer(t, Some(1));
        assert_eq!(call_id, "c1");
        assert_eq!(up.row.trunk.as_deref(), Some("secondary"), "the branch that answered");
        assert_eq!(up.row.agent.as_ref().map(AgentId::as_str), Some("alice"));
        let row = up.close(t + Duration::from_millis(2600), "answered");
        assert_eq!((row.duration_s, row.result.as_str()), (3, "answered"));
        assert_eq!(row.started_at, 1_000);
    }

    #[test]
    fn a_failed_call_names_the_last_trunk_tried() {
        let mut s = setup(Direction::Outbound);
        s.cancelled = true;
        let row = s.fail(487);
        assert_eq!(row.result, "cancelled");
        assert_eq!(row.trunk.as_deref(), Some("secondary"));
        assert_eq!(row.duration_s, 0);
        let mut s = setup(Direction::Outbound);
        s.branches.clear();
        let row = s.fail(404);
        assert_eq!((row.result.as_str(), row.trunk), ("failed:404", None));
    }

    #[test]
    fn an_inbound_call_belongs_to_the_agent_who_answered() {
        let mut s = setup(Direction::Inbound);
        s.caller = None;
        s.source_trunk = Some("carrier".into());
        s.branches = vec![
            Branch { agent: Some("bob".into()), ..Branch::default() },
            Branch { agent: Some("carol".into()), flow: None, trunk: None },
        ];
        let (_, up) = s.answer(Instant::now(), Some(1));
        assert_eq!(up.row.agent.as_ref().map(AgentId::as_str), Some("carol"));
        assert_eq!(up.row.trunk.as_deref(), Some("carrier"));
        assert_eq!(up.row.direction, Direction::Inbound);
    }

    #[test]
    fn a_closed_flow_drops_only_the_calls_on_it() {
        let mut h = History::detached();
        let t = Instant::now();
        let (_, mut up) = setup(Direction::Outbound).answer(t, None);
        let flow = FlowId(7);
        up.flows = vec![flow];
        h.up.insert("on-flow".into(), up);
        let (_, other) = setup(Direction::Outbound).answer(t, None);
        h.up.insert("elsewhere".into(), other);
        h.flow_closed(t, flow);
        assert!(h.up.contains_key("elsewhere") && !h.up.contains_key("on-flow"));
        h.ended(t, "elsewhere");
        assert!(h.up.is_empty());
        h.up.insert("old".into(), setup(Direction::Outbound).answer(t, None).1);
        h.expire(t + super::super::busy::MAX_CALL + Duration::from_secs(1));
        assert!(h.up.is_empty(), "a call without its BYE is dropped after MAX_CALL");
    }
}
