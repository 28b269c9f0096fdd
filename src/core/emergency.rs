//! Emergency calls in the core (DESIGN.md, "Data flow" step 3 and "Decisions"; issue 6).
//!
//! # The outbound emergency INVITE
//!
//! 1. **Classify** ([`Core::classify_emergency`]): an initial INVITE that does not come from a
//!    trunk and whose Request-URI is an emergency dialstring of the caller's country (or an
//!    RFC 5031 `urn:service:sos`). This runs before authentication and before the dialplan's
//!    routes, so no dialplan file can shadow it.
//! 2. **Identify without a challenge**: valid digest credentials, else a live registration on
//!    the flow the INVITE came over, else a `[[trusted]]` network vouching for the From user.
//!    Nobody else is challenged either: the call is routed as unauthenticated, with
//!    `[emergency] site_number` as the caller number. An emergency INVITE is never answered
//!    401, 407 or 403.
//! 3. **Prepare durably, then send**: the callback lease is written to the store (committed
//!    with `synchronous=FULL`) on a blocking thread while the INVITE waits, at most
//!    [`STORE_WAIT`]; if the store is slow or failing the INVITE leaves anyway, presenting the
//!    agent's own number (an emergency call is never held up by a database).
//! 4. **Offer to trunks** in [`crate::emergency::trunks`] order; each gets
//!    `[emergency] failover_after` to send a provisional response, and any failure (a failure
//!    response, even 6xx; a transport error; that timer) moves on to the next one.
//! 5. **Headers toward the trunk** ([`outgoing`]): From and P-Asserted-Identity carry the
//!    callback number, `Priority: emergency`, the trunk's `Resource-Priority`, and the
//!    Request-URI in the form the trunk expects. The softphone's body (SDP, and a PIDF-LO if it
//!    sent one, with its Geolocation header) passes unchanged. Responses going back to the agent
//!    get the From the agent sent.
//! 6. **Only when no trunk answered at all**: a fast 503 with a Warning and a Reason saying so.
//!
//! # PSAP callbacks
//!
//! An inbound call to a number of the callback pool (or to the site number) is a PSAP callback:
//! while the number's lease lives it rings every binding of the leasing agent at once, past the
//! inbound rules, presence and capacity, with `Priority: psap-callback` (RFC 7090); when the
//! agent is not registered, does not answer, or the lease has expired, it goes to
//! `[emergency] callback_fallback`. Leases are kept in memory for this (loaded from the store at
//! start, so a restart keeps them routing).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sip::transaction::{Peer, ServerKey};
use sip::{HeaderName, Method, Request, Response};

use super::proxy::{Routing, Target};
use super::{Core, Input, auth};
use crate::admin::metrics::EmergencyMetrics;
use crate::emergency::{Recognised, candidates, dialstring, location};
use crate::routing::{Dialplan, InboundTarget, RequestUriForm, Trunk};
use crate::store::{self, AgentId, LeaseOutcome, Store, StoreError, UnixTime};

/// The Record-Route parameter (`em=TOKEN`) that marks the dialog of an emergency call or a
/// PSAP callback, so that the transports put its in-dialog requests (BYE, re-INVITE) in the
/// core's priority lane past rate limits. The token is random per process: a stranger cannot
/// forge a Route that skips the limits; after a restart, dialogs in progress are lost anyway
/// (DESIGN.md, "Durability").
pub fn route_marker() -> &'static str {
    static MARKER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MARKER.get_or_init(|| {
        let mut token = [0u8; 8];
        super::auth::fill_random(&mut token);
        format!("em={:016x}", u64::from_be_bytes(token))
    })
}

/// The Call-IDs of emergency calls and PSAP callbacks in progress, shared with the transports:
/// their requests and responses (a trunk's 180 and 200, the 200 to a BYE) take the core's
/// priority lane and are never shed. Reads are cheap while no emergency call is up (one atomic
/// load), and one hash lookup otherwise.
///
/// # The end of a call
///
/// A call that ends (a BYE either way, a failure response, its connection closing) is not
/// forgotten at once: its Call-ID stays for [`LINGER`], so that what still belongs to it
/// (the 200 to the BYE, BYE and 2xx retransmissions, the ACK of a failure response) keeps the
/// lane. Forgetting it at the BYE sent the trunk's 200 to the ordinary queue, where under
/// overload it was shed with each retransmission until the caller gave up (bench/RESULTS.md,
/// "Emergency calls under load").
#[derive(Debug, Default)]
pub struct UrgentCalls {
    count: std::sync::atomic::AtomicUsize,
    /// Call-ID -> until when it stays urgent: [`super::busy::MAX_CALL`] after it began (a call
    /// whose end the edge never saw), [`LINGER`] after it ended.
    ids: std::sync::RwLock<sip::FastMap<String, Instant>>,
}

/// How long the Call-ID of an ended emergency call keeps the priority lane: 64*T1, the
/// lifetime of the BYE's transactions (RFC 3261 §17.1.2.2 Timer F, §17.2.2 Timer J) and of an
/// INVITE server transaction waiting for the ACK of a failure response (§17.2.1 Timer H).
pub const LINGER: Duration = Duration::from_secs(32);

impl UrgentCalls {
    /// Call `call_id` began: urgent until it ends.
    pub fn insert(&self, call_id: &str, now: Instant) {
        let mut ids = self.ids.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.insert(call_id.to_owned(), now + super::busy::MAX_CALL);
        self.count.store(ids.len(), std::sync::atomic::Ordering::Release);
    }

    /// Call `call_id` ended at `now`: it stays urgent for [`LINGER`] (type docs, "The end of a
    /// call"). A Call-ID that is not urgent is left alone (every BYE comes here).
    pub fn end(&self, call_id: &str, now: Instant) {
        // A shared lock first: an ordinary BYE must not hold up the transports' lookups.
        if !self.contains(call_id) {
            return;
        }
        let mut ids = self.ids.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(until) = ids.get_mut(call_id) {
            *until = (*until).min(now + LINGER);
        }
    }

    /// Whether `call_id` belongs to an emergency call or PSAP callback in progress, or one
    /// that ended less than [`LINGER`] ago.
    pub fn contains(&self, call_id: &str) -> bool {
        self.count.load(std::sync::atomic::Ordering::Acquire) > 0
            && self
                .ids
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains_key(call_id)
    }

    /// Forgets calls whose time is up.
    pub fn expire(&self, now: Instant) {
        if self.count.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return;
        }
        let mut ids = self.ids.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.retain(|_, until| *until > now);
        self.count.store(ids.len(), std::sync::atomic::Ordering::Release);
    }
}

/// How long an emergency INVITE waits for the store before it leaves with a fallback number.
pub const STORE_WAIT: Duration = Duration::from_millis(1500);

/// How the edge knows who makes an emergency call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identified {
    /// Valid digest credentials in the INVITE.
    Credentials,
    /// A live registration on the flow the INVITE came over.
    RegisteredFlow,
    /// A `[[trusted]]` network, for the From user.
    Trusted,
    /// None of these: routed with the site number.
    Unauthenticated,
}

/// The caller of an emergency call.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The agent id, when known.
    pub agent: Option<String>,
    pub how: Identified,
}

/// The emergency part of a proxied INVITE.
#[derive(Debug)]
pub struct EmergencyCall {
    pub recognised: Recognised,
    pub caller: Caller,
    /// The dialplan the call started with (its trunks are the targets' indexes).
    pub plan: Arc<Dialplan>,
    /// The number presented to the PSAP: the leased DID, else a fallback; `None` leaves the
    /// From as the agent sent it.
    pub callback: Option<String>,
    /// The store answered (or [`STORE_WAIT`] passed): the INVITE may leave.
    pub ready: bool,
    /// When the INVITE leaves without the store's answer.
    pub wait_until: Instant,
    /// Some trunk answered something (100 included); if none did, the answer is 503.
    pub reached: bool,
    /// The From header as the agent sent it, put back in responses.
    pub original_from: Option<Bytes>,
    /// The agent's provisioned address: the PIDF-LO sent when the softphone sent none.
    pub provisioned: Option<store::Location>,
    /// The softphone sent its own location (Geolocation) with the INVITE.
    pub softphone_location: bool,
}

/// What the store work of an emergency call produced (on a blocking thread).
#[derive(Debug)]
pub struct Prepared {
    pub lease: Option<Result<LeaseOutcome, StoreError>>,
}

/// Where the emergency notification e-mail comes from (issue 6 §6).
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Woken after a notification is queued, so that delivery starts at once.
    pub mailer: Option<crate::emergency::mailer::MailerHandle>,
    /// `[smtp] from`: the sender for agents without a mailbox.
    pub smtp_from: String,
    /// `[node] name`, shown in the mail.
    pub node: String,
}

/// The notification of one emergency call, queued in the outbox right after the lease and
/// before the INVITE leaves (durable: a crash does not lose it; a failure never holds up the
/// call).
fn queue_notification(
    store: &dyn Store,
    notify: &NotifyConfig,
    id: &AgentId,
    base: &NoticeBase,
    callback: Option<store::E164>,
) {
    let agent = match store.agent(id) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "emergency notification not queued: agent not readable");
            return;
        }
    };
    let now = unix_now();
    let notice = crate::emergency::notify::Notice {
        agent_id: id.clone(),
        agent_name: agent.name.clone(),
        dialled: base.dialled.clone(),
        test: base.test,
        at: now,
        callback,
        location: base.location.clone(),
        edge: notify.node.clone(),
        authenticated: base.authenticated,
    };
    match crate::emergency::notify::queue_notice(store, &notify.smtp_from, &agent, &notice, now) {
        Ok(ids) if ids.is_empty() => {
            tracing::warn!(agent = %id, "emergency notification: the agent has no emergency contacts");
        }
        Ok(ids) => {
            tracing::info!(agent = %id, mails = ids.len(), "emergency notification queued");
            if let Some(m) = &notify.mailer {
                m.wake();
            }
        }
        Err(e) => tracing::error!(agent = %id, error = %e, "emergency notification not queued"),
    }
}

/// What the notification needs from the call, taken on the core's thread.
#[derive(Debug, Clone)]
struct NoticeBase {
    dialled: String,
    test: bool,
    /// The location sent with the call, as one line (the provisioned address, or a note that
    /// the softphone sent one).
    location: Option<String>,
    authenticated: bool,
}

/// An answered emergency call, by Call-ID, until its BYE.
#[derive(Debug, Clone)]
pub struct EmergencyDialog {
    /// The agent whose DND ends with the dialog.
    pub agent: Option<String>,
    /// The connection the call came over (its closing ends the dialog).
    pub flow: Option<sip::transaction::FlowId>,
    /// The number the trunk saw in From, and the agent's From tag: the agent's in-dialog
    /// requests get the same From.
    pub callback: Option<String>,
    pub from_tag: Option<String>,
    /// The From the agent sent: requests from the trunk's side carry it back as their To.
    pub agent_from: Option<Bytes>,
}

/// A live callback lease, as PSAP callback routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEntry {
    pub agent: String,
    pub expires_at: UnixTime,
}

/// A presence change an emergency call makes (issue 6 §5).
#[derive(Debug)]
enum DndJob {
    Begin(AgentId),
    End(AgentId),
}

/// Applies the DND of emergency calls on one thread of its own, in the order the core asked:
/// an end can never overtake its begin, and the core never waits for the store.
#[derive(Debug, Clone)]
pub struct DndWorker {
    tx: std::sync::mpsc::Sender<DndJob>,
}

impl DndWorker {
    /// Starts the worker; it stops when the last handle is dropped.
    pub fn spawn(presence: Arc<crate::presence::PresenceBook>) -> DndWorker {
        let (tx, rx) = std::sync::mpsc::channel::<DndJob>();
        let spawned = std::thread::Builder::new().name("lifeline-dnd".into()).spawn(move || {
            for job in rx {
                let (what, result) = match &job {
                    DndJob::Begin(a) => ("begin", presence.emergency_begin(a)),
                    DndJob::End(a) => ("end", presence.emergency_end(a)),
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, what, "emergency DND not applied");
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "no DND worker: emergency calls will not set DND");
        }
        DndWorker { tx }
    }

    /// The agent's emergency call began: DND, the previous state saved.
    pub fn begin(&self, agent: &str) {
        if let Ok(id) = agent.parse() {
            let _ = self.tx.send(DndJob::Begin(id));
        }
    }

    /// The agent's emergency call ended, however: the previous state comes back.
    pub fn end(&self, agent: &str) {
        if let Ok(id) = agent.parse() {
            let _ = self.tx.send(DndJob::End(id));
        }
    }
}

/// The wall clock in Unix seconds, for the store's lease times.
pub fn unix_now() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Loads the live leases at start (a restart keeps PSAP callbacks routing).
pub fn load_leases(store: &dyn Store) -> HashMap<String, LeaseEntry> {
    match store.live_leases(unix_now()) {
        Ok(leases) => leases
            .into_iter()
            .map(|l| {
                (
                    l.did.to_string(),
                    LeaseEntry { agent: l.agent.as_str().to_owned(), expires_at: l.expires_at },
                )
            })
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "callback leases could not be loaded: PSAP callbacks go to the fallback");
            HashMap::new()
        }
    }
}

/// The ITU-T E.164 country calling code of a location country, for trunks that want the
/// emergency number in E.164 form (`+1911`). Countries lifeline has no code for keep the bare
/// dialstring.
fn calling_code(country: &str) -> Option<&'static str> {
    Some(match country {
        "US" | "PR" | "CA" | "VI" | "GU" | "AS" | "MP" => "1",
        "GB" => "44",
        "IE" => "353",
        "FR" => "33",
        "DE" => "49",
        "ES" => "34",
        "IT" => "39",
        "NL" => "31",
        "BE" => "32",
        "NO" => "47",
        "SE" => "46",
        "DK" => "45",
        "AU" => "61",
        "NZ" => "64",
        "MX" => "52",
        "IN" => "91",
        _ => return None,
    })
}

/// The Request-URI of an emergency call toward `trunk` (`request_len`: the size of the
/// request, for the RFC 3261 §18.1.1 rule), and a Route to the trunk when the Request-URI is
/// a URN (which names no host).
fn trunk_uri(
    trunk: &Trunk,
    rec: &Recognised,
    plan: &Dialplan,
    request_len: usize,
) -> (String, Option<String>) {
    // A URN call toward a trunk that wants digits: the first dialstring of the caller's
    // country (a URN is no number, so this rewrites no emergency number into another).
    let digits = || -> String {
        if !rec.urn {
            return rec.dialstring.clone();
        }
        let em = &plan.emergency;
        rec.country
            .as_ref()
            .and_then(|c| em.countries.get(c))
            .or_else(|| em.countries.values().next())
            .and_then(|list| list.first())
            .cloned()
            .unwrap_or_else(|| "911".to_owned())
    };
    match trunk.emergency.request_uri {
        RequestUriForm::Dialstring => (trunk.request_uri(&digits(), request_len), None),
        RequestUriForm::E164 => {
            let d = digits();
            let user = match rec.country.as_deref().and_then(calling_code) {
                Some(cc) => format!("+{cc}{d}"),
                None => d,
            };
            (trunk.request_uri(&user, request_len), None)
        }
        RequestUriForm::Urn => {
            let urn = if rec.urn { rec.dialstring.clone() } else { "urn:service:sos".to_owned() };
            // The trunk is the next hop, while the Request-URI stays the URN.
            (urn, Some(trunk.route(request_len)))
        }
    }
}

/// The callback number as the trunk sees the caller (From, P-Asserted-Identity).
fn callback_name_addr(callback: &str, domain: &str) -> String {
    format!("<sip:{callback}@{domain};user=phone>")
}

/// The emergency INVITE as it leaves toward `trunk` (before the proxy's own changes: Via,
/// Max-Forwards, Record-Route) and its Request-URI.
pub fn outgoing(
    request: &Request,
    call: &EmergencyCall,
    trunk: &Trunk,
    domain: &str,
) -> (Request, String) {
    let mut r = request.clone();
    let h = r.headers_mut();
    if let Some(cb) = &call.callback {
        let tag = request
            .headers()
            .from()
            .ok()
            .and_then(|f| f.tag().map(|t| format!(";tag={t}")))
            .unwrap_or_default();
        let name_addr = callback_name_addr(cb, domain);
        h.set(HeaderName::From, format!("{name_addr}{tag}"));
        h.remove_all(HeaderName::PAssertedIdentity);
        h.push(HeaderName::PAssertedIdentity, name_addr);
    }
    h.remove_all(HeaderName::Priority);
    h.push(HeaderName::Priority, "emergency");
    // RFC 6442: a location the softphone sent passes byte for byte; otherwise, for a trunk
    // that takes one, a civic PIDF-LO (RFC 4119, RFC 5139, method Manual) from the agent's
    // provisioned address, in a multipart with the SDP.
    if trunk.emergency.pidf
        && !request.headers().contains(HeaderName::Geolocation)
        && let Some(provisioned) = &call.provisioned
    {
        let entity = match &call.caller.agent {
            Some(a) => format!("pres:{a}@{domain}"),
            None => format!("pres:emergency@{domain}"),
        };
        let pidf = location::build_pidf(provisioned, &entity, unix_now());
        let content_type = request
            .headers()
            .get(HeaderName::ContentType)
            .and_then(|v| std::str::from_utf8(v).ok());
        match location::attach(request.body(), content_type, &pidf, domain) {
            Ok(a) => {
                r.set_body(Some(&a.content_type), Bytes::from(a.body));
                let h = r.headers_mut();
                h.push(HeaderName::Geolocation, a.geolocation);
                h.set(HeaderName::GeolocationRouting, a.geolocation_routing);
            }
            Err(e) => tracing::error!(error = %e, "the provisioned location could not be attached"),
        }
    }
    let h = r.headers_mut();
    if let Some(rp) = &trunk.emergency.resource_priority {
        h.remove_all(HeaderName::ResourcePriority);
        h.push(HeaderName::ResourcePriority, rp.clone());
    }
    // The Via, Max-Forwards and Record-Route the proxy adds: about 300 bytes.
    let len = r.encoded_len() + 300;
    let (uri, route) = trunk_uri(trunk, &call.recognised, &call.plan, len);
    if let Some(route) = route {
        r.headers_mut().prepend(HeaderName::Route, route);
    }
    (r, uri)
}

impl Core {
    /// Step 3 of the pipeline: whether an initial request (not from a trunk) is an emergency
    /// call, and who makes it. Cheap for everything else: only short digit strings and URNs
    /// reach the tables.
    pub(super) fn classify_emergency(
        &mut self,
        now: Instant,
        req: &Request,
        from: &Peer,
        plan: &Dialplan,
    ) -> Option<(Recognised, Caller)> {
        if *req.method() != Method::Invite {
            return None;
        }
        let uri = req.uri().ok()?;
        if !matches!(uri, sip::Uri::Urn(_)) && !uri.user().is_some_and(dialstring::could_be) {
            return None;
        }
        // Every country's table first (no authentication yet): most short numbers end here.
        dialstring::recognise(&plan.emergency, &uri, None)?;
        let caller = self.identify(now, req, from, plan);
        // The country: the softphone's location first, else the agent's provisioned one.
        let softphone = location::from_invite(req).and_then(|l| l.country()).map(|c| c.to_string());
        let country = softphone.or_else(|| {
            caller.agent.as_ref().and_then(|a| {
                self.config.roster.current().agents.get(a).and_then(|a| a.country.clone())
            })
        });
        let Some(recognised) = dialstring::recognise(&plan.emergency, &uri, country.as_deref())
        else {
            // Not an emergency number in the caller's country: ordinary routing goes on, and
            // must not check the same credentials again (their nonce count is used now).
            if caller.how == Identified::Credentials {
                self.pre_authenticated = caller.agent;
            }
            return None;
        };
        Some((recognised, caller))
    }

    /// Who makes an emergency call, without ever challenging.
    fn identify(&mut self, now: Instant, req: &Request, from: &Peer, plan: &Dialplan) -> Caller {
        if let auth::Outcome::Agent(agent) = self.auth.check(req) {
            return Caller { agent: Some(agent), how: Identified::Credentials };
        }
        if let Some(aor) = self.location.aor_for_source(now, from) {
            return Caller { agent: Some(aor.to_owned()), how: Identified::RegisteredFlow };
        }
        if plan.is_trusted(from.addr.ip()) {
            let user = req
                .headers()
                .from()
                .ok()
                .and_then(|f| match f.uri {
                    sip::Uri::Sip(u) => u.user.map(str::to_owned),
                    _ => None,
                })
                .filter(|u| self.config.roster.current().agents.contains_key(u));
            return Caller { agent: user, how: Identified::Trusted };
        }
        Caller { agent: None, how: Identified::Unauthenticated }
    }

    /// Starts an emergency call: the trunk candidates become the call's targets, and the
    /// store work (callback lease) runs aside; the INVITE leaves when it is done
    /// ([`Core::emergency_prepared`]) or at [`STORE_WAIT`].
    pub(super) fn start_emergency(
        &mut self,
        now: Instant,
        recognised: Recognised,
        caller: Caller,
        plan: Arc<Dialplan>,
    ) -> (Routing, EmergencyCall) {
        let m = &self.config.metrics.emergency;
        EmergencyMetrics::inc(if recognised.test { &m.test_calls } else { &m.calls });
        if caller.how == Identified::Unauthenticated {
            EmergencyMetrics::inc(&m.unauthenticated);
        }
        let roster = self.config.roster.current();
        let agent = caller.agent.as_ref().and_then(|a| roster.agents.get(a));
        let own_number: Option<String> = agent.and_then(|a| a.caller_id.first().cloned());
        let caller_e164 = own_number.as_deref().and_then(crate::routing::E164::parse);
        // Trunks whose probes fail go last, never away: for an emergency call every trunk gets
        // its chance.
        let mut order: Vec<(usize, &'static str)> =
            candidates(&plan, &recognised.dialstring, caller_e164.as_ref())
                .iter()
                .filter_map(|c| {
                    plan.trunks
                        .iter()
                        .position(|t| std::ptr::eq(t, c.trunk))
                        .map(|i| (i, c.why.as_str()))
                })
                .collect();
        order.sort_by_key(|(i, _)| !self.probes.is_up(&plan.trunks[*i].name));
        tracing::warn!(
            test = recognised.test,
            urn = recognised.urn,
            agent = caller.agent.as_deref().unwrap_or("-"),
            identified = ?caller.how,
            trunks = ?order.iter().map(|(i, why)| format!("{}({why})", plan.trunks[*i].name)).collect::<Vec<_>>(),
            "emergency call"
        );
        // A trunk named by DNS name is one target per cached address, and none while its name
        // has no address: an emergency call never waits for DNS (super::resolve).
        let targets: VecDeque<Target> = order
            .iter()
            .flat_map(|(i, _)| {
                let base = Target {
                    uri: None,
                    peer: None,
                    trunk: Some(*i),
                    agent: None,
                    addr: None,
                    port: None,
                    transport: None,
                };
                self.trunk_targets(&plan.trunks[*i], base)
            })
            .collect();
        // Unauthenticated calls present the site number; an agent's call its lease (below),
        // else its own number, else the site number.
        let fallback = match caller.how {
            Identified::Unauthenticated => None,
            _ => own_number,
        }
        .or_else(|| plan.emergency.site_number.as_ref().map(ToString::to_string));
        let call = EmergencyCall {
            recognised,
            caller,
            plan,
            callback: fallback,
            ready: false,
            wait_until: now + STORE_WAIT,
            reached: false,
            original_from: None,
            provisioned: agent.and_then(|a| a.location.clone()),
            softphone_location: false,
        };
        (Routing::Serial(targets), call)
    }

    /// The emergency call of server transaction `key` got its final response upstream: a 2xx
    /// keeps DND until the dialog ends (BYE either way, or the agent's connection drops);
    /// anything else ends it now.
    ///
    /// A dialog that ended keeps its record, without its agent, as long as its Call-ID is
    /// urgent ([`LINGER`]): a late ACK or a crossing BYE still gets its From or To rewritten,
    /// and a 2xx retransmitted after the BYE does not bring the agent (and her DND) back.
    pub(super) fn emergency_answered(&mut self, key: ServerKey, status: u16) {
        let Some((call_id, dialog)) = self.proxy.emergency_dialog(key) else { return };
        if status < 300 {
            let urgent = &self.config.urgent;
            self.emergency_dialogs.retain(|id, d| d.agent.is_some() || urgent.contains(id));
            self.emergency_dialogs.entry(call_id).or_insert(dialog);
        } else {
            self.config.urgent.end(&call_id, Instant::now());
            if let Some(agent) = &dialog.agent {
                self.dnd.end(agent);
            }
        }
    }

    /// An in-dialog request (ACK included) of an emergency dialog: the agent's requests carry
    /// the callback number in From, as the INVITE did (the trunk's dialog knows no other), and
    /// requests from the trunk's side reach the agent with her own address in To. Returns the
    /// header it rewrote with its value as received, for the responses to get back. A BYE,
    /// either way, ends the dialog and its DND (the record stays a while without its agent:
    /// [`Core::emergency_answered`]); a losing fork's BYE does not (src/core/busy.rs).
    pub(super) fn emergency_in_dialog(&mut self, req: &mut Request) -> Option<(HeaderName, Bytes)> {
        // A losing fork's BYE (another 2xx's dialog, RFC 3261 §13.2.2.4) leaves the call's
        // lane and DND alone (src/core/busy.rs).
        let bye = *req.method() == Method::Bye && !self.calls_of.other_dialog_of(req);
        if bye {
            // Not forgotten yet: the BYE's 200 and the retransmissions still take the lane.
            self.config.urgent.end(req.headers().call_id().unwrap_or_default(), Instant::now());
        }
        if self.emergency_dialogs.is_empty()
            || !self.emergency_dialogs.contains_key(req.headers().call_id().unwrap_or_default())
        {
            return None;
        }
        let call_id = req.headers().call_id().unwrap_or_default().to_owned();
        let dialog = self.emergency_dialogs.get(&call_id)?;
        let agent_tag = dialog.from_tag.as_deref();
        let from_tag = req.headers().from().ok().and_then(|f| f.tag().map(str::to_owned));
        let to_tag = req.headers().to().ok().and_then(|t| t.tag().map(str::to_owned));
        let rewrite = match (&dialog.callback, &dialog.agent_from) {
            (Some(cb), _) if from_tag.is_some() && from_tag.as_deref() == agent_tag => {
                let tag = from_tag.unwrap_or_default();
                let domain = &self.config.registrar.domain;
                Some((HeaderName::From, format!("{};tag={tag}", callback_name_addr(cb, domain))))
            }
            (Some(_), Some(original)) if to_tag.is_some() && to_tag.as_deref() == agent_tag => {
                Some((HeaderName::To, String::from_utf8_lossy(original).into_owned()))
            }
            _ => None,
        };
        let restore = rewrite.and_then(|(name, value)| {
            let received = req.headers().get(name).map(Bytes::copy_from_slice)?;
            req.headers_mut().set(name, value);
            Some((name, received))
        });
        if bye
            && let Some(dialog) = self.emergency_dialogs.get_mut(&call_id)
            && let Some(agent) = dialog.agent.take()
        {
            tracing::info!(agent = %agent, "emergency call ended");
            self.dnd.end(&agent);
        }
        restore
    }

    /// A connection closed: the emergency dialogs of agents on it end.
    pub(super) fn emergency_flow_closed(&mut self, flow: sip::transaction::FlowId) {
        let gone: Vec<String> = self
            .emergency_dialogs
            .iter()
            .filter(|(_, d)| d.flow == Some(flow))
            .map(|(k, _)| k.clone())
            .collect();
        for call_id in gone {
            self.config.urgent.end(&call_id, Instant::now());
            if let Some(dialog) = self.emergency_dialogs.remove(&call_id)
                && let Some(agent) = dialog.agent
            {
                tracing::info!(agent = %agent, "emergency call ended with its connection");
                self.dnd.end(&agent);
            }
        }
    }

    /// Runs the store work of emergency call `key` on a blocking thread; its result comes back
    /// as [`Input::EmergencyPrepared`].
    pub(super) fn prepare_emergency(&self, key: ServerKey, call: &EmergencyCall) {
        let Some(agent) = call.caller.agent.clone() else { return };
        let em = &call.plan.emergency;
        let pool: Vec<store::E164> = em
            .callback_pool
            .iter()
            .flat_map(|r| r.iter())
            .filter_map(|n| n.as_str().parse().ok())
            .collect();
        let (ttl, quarantine) = (em.callback_lease, em.callback_quarantine);
        let store = self.config.store.clone();
        let tx = self.inbox.clone();
        let notify = self.config.notify.clone();
        let base = NoticeBase {
            dialled: call.recognised.dialstring.clone(),
            test: call.recognised.test,
            location: if call.softphone_location {
                Some("sent by the softphone with the call".to_owned())
            } else {
                call.provisioned.as_ref().map(|l| match &l.address {
                    Some(a) => format!("{a} ({})", l.country),
                    None => l.country.to_string(),
                })
            },
            authenticated: call.caller.how != Identified::Unauthenticated,
        };
        // The agent's own number, presented when there is no lease: for the mail too.
        let fallback: Option<store::E164> = call.callback.as_deref().and_then(|n| n.parse().ok());
        tokio::task::spawn_blocking(move || {
            let id = match agent.parse::<AgentId>() {
                Ok(id) => id,
                Err(e) => {
                    let lease =
                        Some(Err(StoreError::Invalid { field: "agent", message: e.to_string() }));
                    let _ =
                        tx.try_send(Input::EmergencyPrepared { key, prepared: Prepared { lease } });
                    return;
                }
            };
            let lease = if pool.is_empty() {
                Ok(LeaseOutcome::Exhausted)
            } else {
                store.lease_callback(&id, &pool, unix_now(), ttl, quarantine)
            };
            let callback = match &lease {
                Ok(o) => o.lease().map(|l| l.did.clone()).or(fallback),
                Err(_) => fallback,
            };
            queue_notification(store.as_ref(), &notify, &id, &base, callback);
            let _ = tx.try_send(Input::EmergencyPrepared {
                key,
                prepared: Prepared { lease: Some(lease) },
            });
        });
    }

    /// The store work of emergency call `key` is done: take the lease and let the INVITE go.
    pub(super) fn emergency_prepared(&mut self, now: Instant, key: ServerKey, prepared: Prepared) {
        let Some(em) = self.proxy.emergency_mut(key) else { return };
        if em.ready {
            // It left at STORE_WAIT with a fallback number; the lease still routes callbacks.
            tracing::warn!("callback lease written after the emergency INVITE left");
        }
        let agent = em.caller.agent.clone().unwrap_or_default();
        match prepared.lease {
            Some(Ok(outcome)) => match outcome.lease() {
                Some(lease) => {
                    if !em.ready {
                        em.callback = Some(lease.did.to_string());
                    }
                    tracing::info!(agent = %agent, renewed = matches!(outcome, LeaseOutcome::Renewed(_)), "callback number leased");
                    self.leases.insert(
                        lease.did.to_string(),
                        LeaseEntry { agent, expires_at: lease.expires_at },
                    );
                }
                None => {
                    tracing::error!(agent = %agent, "callback pool exhausted: presenting the agent's own number");
                    EmergencyMetrics::inc(&self.config.metrics.emergency.callback_fallbacks);
                }
            },
            Some(Err(e)) => {
                tracing::error!(agent = %agent, error = %e, "callback lease failed: presenting the agent's own number");
                EmergencyMetrics::inc(&self.config.metrics.emergency.callback_fallbacks);
            }
            None => {}
        }
        self.release_emergency(now, key);
    }

    /// Lets the INVITE of emergency call `key` leave (once).
    pub(super) fn release_emergency(&mut self, now: Instant, key: ServerKey) {
        self.proxy.stop_waiting(key);
        let Some(em) = self.proxy.emergency_mut(key) else { return };
        if std::mem::replace(&mut em.ready, true) {
            return;
        }
        self.next_target(now, key);
    }

    /// Emergency INVITEs whose store work did not answer within [`STORE_WAIT`] leave now.
    pub(super) fn fire_emergency_waits(&mut self, now: Instant) {
        for key in self.proxy.due_emergency_waits(now) {
            tracing::error!(
                "the store did not answer in time: the emergency INVITE leaves with a fallback number"
            );
            EmergencyMetrics::inc(&self.config.metrics.emergency.callback_fallbacks);
            self.release_emergency(now, key);
        }
    }

    /// A PSAP callback: an inbound call to a callback-pool number or the site number.
    pub(super) fn route_psap(&self, now: Instant, did: &str, plan: &Dialplan) -> Option<Routing> {
        let em = &plan.emergency;
        let n = crate::routing::E164::parse(did)?;
        let in_pool = em.callback_pool.iter().any(|r| r.contains(&n));
        let is_site = em.site_number.as_ref() == Some(&n);
        let lease = self.leases.get(did).filter(|l| l.expires_at > unix_now());
        if !in_pool && !is_site && lease.is_none() {
            return None;
        }
        EmergencyMetrics::inc(&self.config.metrics.emergency.psap_callbacks);
        let agent_targets: Vec<Target> = lease
            .map(|l| self.binding_targets(now, std::slice::from_ref(&l.agent)))
            .unwrap_or_default();
        let fallback = self.fallback_targets(now, did, plan);
        tracing::warn!(
            leased = lease.is_some(),
            bindings = agent_targets.len(),
            fallback = fallback.len(),
            "PSAP callback"
        );
        Some(Routing::Psap { first: agent_targets, fallback })
    }

    /// Every live binding of `agents`, ignoring presence and capacity.
    fn binding_targets(&self, now: Instant, agents: &[String]) -> Vec<Target> {
        agents.iter().flat_map(|a| self.location.lookup(now, a)).map(Target::binding).collect()
    }

    /// Where `[emergency] callback_fallback` sends a PSAP call, in order.
    fn fallback_targets(&self, now: Instant, did: &str, plan: &Dialplan) -> VecDeque<Target> {
        let roster = self.config.roster.current();
        match &plan.emergency.callback_fallback {
            None => VecDeque::new(),
            Some(InboundTarget::Agent(a)) => {
                self.binding_targets(now, std::slice::from_ref(a)).into()
            }
            Some(InboundTarget::Group(g)) => self.binding_targets(now, roster.members(g)).into(),
            Some(InboundTarget::Trunk(t)) => plan
                .trunk(t)
                .map(|t| self.trunk_targets(t, Target::uri(t.request_uri(did, 0))))
                .unwrap_or_default()
                .into(),
            Some(InboundTarget::Number(n)) => plan
                .outbound(n)
                .map(|(_, trunks)| {
                    trunks
                        .into_iter()
                        .flat_map(|t| self.trunk_targets(t, Target::uri(t.request_uri(n, 0))))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The final answer of an emergency call that reached no trunk: 503 with a Warning and a
    /// Reason that say so (issue 6: a fast, clear failure).
    pub(super) fn unreachable_response(&self, request: &Request, to_tag: &str) -> Response {
        EmergencyMetrics::inc(&self.config.metrics.emergency.unreachable);
        tracing::error!("emergency call failed: no trunk could be reached");
        let mut r = Response::for_request(request, 503, "Service Unavailable");
        r.set_to_tag(to_tag);
        let host = self.config.registrar.domain.clone();
        let h = r.headers_mut();
        h.push(HeaderName::Warning, format!("399 {host} \"No emergency trunk reachable\""));
        h.push(HeaderName::Reason, "SIP;cause=503;text=\"No emergency trunk reachable\"");
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(trunk: &str) -> Dialplan {
        Dialplan::from_texts(&[("t.toml", trunk)]).expect("plan")
    }

    fn rec(d: &str, urn: bool) -> Recognised {
        Recognised {
            dialstring: d.into(),
            urn,
            test: false,
            prefix: None,
            country: (!urn).then(|| "US".into()),
        }
    }

    #[test]
    fn request_uri_forms() {
        let p = plan(
            "[[trunk]]\nname='a'\nkind='direct-offer'\nuri='sip:192.0.2.1:5070;transport=udp'\n\
             [[trunk]]\nname='b'\nkind='direct-offer'\nuri='sip:192.0.2.2'\nemergency={request_uri='e164'}\n\
             [[trunk]]\nname='c'\nkind='direct-offer'\nuri='sip:192.0.2.3:5080'\nemergency={request_uri='urn'}\n",
        );
        let t = |n: &str| p.trunk(n).expect("trunk");
        assert_eq!(
            trunk_uri(t("a"), &rec("933", false), &p, 500),
            ("sip:933@192.0.2.1:5070;transport=udp".into(), None)
        );
        assert_eq!(
            trunk_uri(t("a"), &rec("933", false), &p, 5000).0,
            "sip:933@192.0.2.1:5070;transport=udp",
            "pinned to UDP"
        );
        assert_eq!(trunk_uri(t("b"), &rec("911", false), &p, 500).0, "sip:+1911@192.0.2.2");
        assert_eq!(
            trunk_uri(t("b"), &rec("911", false), &p, 1500).0,
            "sip:+1911@192.0.2.2;transport=tcp"
        );
        assert_eq!(
            trunk_uri(t("c"), &rec("911", false), &p, 500),
            ("urn:service:sos".into(), Some("<sip:192.0.2.3:5080;lr>".into()))
        );
        assert_eq!(
            trunk_uri(t("c"), &rec("urn:service:sos.fire", true), &p, 500).0,
            "urn:service:sos.fire"
        );
        // A URN call toward a trunk that wants digits gets the caller's country's first number.
        assert_eq!(
            trunk_uri(t("a"), &rec("urn:service:sos", true), &p, 500).0,
            "sip:911@192.0.2.1:5070;transport=udp"
        );
    }
}
