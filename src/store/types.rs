//! The values the store keeps, one section per data kind.

use std::fmt;
use std::str::FromStr;

use sip::digest::{Algorithm, Ha1};

use super::validate::{
    AgentId, CountryCode, DEFAULT_CAPACITY, E164, Email, GroupId, InvalidValue, Token,
};

/// Seconds since the Unix epoch. The store never reads a clock: callers pass `now`.
pub type UnixTime = i64;

// ---------------------------------------------------------------------------------------------
// Agents

/// An agent's profile: everything `PUT /api/agents/{id}` and `agents.toml` set. Credentials and
/// presence are kept with it but read and written on their own ([`Credentials`], [`Presence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    /// Display name; `None` shows the id.
    pub name: Option<String>,
    /// Numbers this agent may present on ordinary outbound calls; empty = no outbound profile.
    /// The first one also picks the direct-offer trunk for an emergency call.
    pub caller_id: Vec<E164>,
    /// Concurrent calls for ordinary routing, `0..=1000`. PSAP callbacks ignore it.
    pub capacity: u32,
    pub mailbox: Option<Email>,
    /// Who is e-mailed when this agent makes an emergency call.
    pub emergency_contacts: Vec<Email>,
    /// Provisioned location, used when the softphone sends none.
    pub location: Option<Location>,
}

impl Agent {
    /// An agent with nothing but an id: default capacity, no profile (every warning applies).
    pub fn new(id: AgentId) -> Self {
        Self {
            id,
            name: None,
            caller_id: Vec::new(),
            capacity: DEFAULT_CAPACITY,
            mailbox: None,
            emergency_contacts: Vec::new(),
            location: None,
        }
    }
}

/// Where an agent sits, for the PIDF-LO of an emergency call and the country's dialstrings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub country: CountryCode,
    /// Civic address as one line of text.
    pub address: Option<String>,
}

/// `PATCH /api/agents/{id}`: `None` leaves a field alone; `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentPatch {
    pub name: Option<Option<String>>,
    pub caller_id: Option<Vec<E164>>,
    pub capacity: Option<u32>,
    pub mailbox: Option<Option<Email>>,
    pub emergency_contacts: Option<Vec<Email>>,
    pub location: Option<Option<Location>>,
}

impl AgentPatch {
    /// `agent` with the given fields replaced.
    pub fn apply(&self, mut agent: Agent) -> Agent {
        if let Some(v) = &self.name {
            agent.name.clone_from(v);
        }
        if let Some(v) = &self.caller_id {
            agent.caller_id.clone_from(v);
        }
        if let Some(v) = self.capacity {
            agent.capacity = v;
        }
        if let Some(v) = &self.mailbox {
            agent.mailbox.clone_from(v);
        }
        if let Some(v) = &self.emergency_contacts {
            agent.emergency_contacts.clone_from(v);
        }
        if let Some(v) = &self.location {
            agent.location.clone_from(v);
        }
        agent
    }
}

/// What a create-or-replace did (the admin API answers 201 or 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Replaced,
}

/// Digest credentials (RFC 7616): `HA1 = H(user:realm:password)` for MD5 and SHA-256, lowercase
/// hex. The password itself is never stored. An HA1 is password-equivalent within its realm, so
/// `Debug` prints neither hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The `[sip] domain` the hashes were made for; after a domain change they no longer verify.
    pub realm: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
}

impl Credentials {
    /// Hashes `user:realm:password`. Pure; the caller checks the password rules first
    /// ([`super::check_password`]).
    pub fn derive(user: &AgentId, realm: &str, password: &str) -> Self {
        // One HA1 implementation for the whole edge: sip::digest's.
        let ha1 = |a| Ha1::new(a, user.as_str(), realm, password).as_hex().to_owned();
        Self {
            realm: realm.to_owned(),
            ha1_md5: ha1(Algorithm::Md5),
            ha1_sha256: ha1(Algorithm::Sha256),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("realm", &self.realm)
            .field("ha1_md5", &"<redacted>")
            .field("ha1_sha256", &"<redacted>")
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Presence

/// An agent's presence state: `available|busy|away|dnd|offline|<custom token>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PresenceState {
    Available,
    Busy,
    Away,
    Dnd,
    Offline,
    /// A site-specific state (`lunch`, `training`), lowercase token.
    Custom(Token),
}

impl PresenceState {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Available => "available",
            Self::Busy => "busy",
            Self::Away => "away",
            Self::Dnd => "dnd",
            Self::Offline => "offline",
            Self::Custom(t) => t.as_str(),
        }
    }
}

impl fmt::Display for PresenceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PresenceState {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        Ok(match s {
            "available" => Self::Available,
            "busy" => Self::Busy,
            "away" => Self::Away,
            "dnd" => Self::Dnd,
            "offline" => Self::Offline,
            other => Self::Custom(other.parse()?),
        })
    }
}

/// Who set the current presence state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceSetter {
    /// The agent (softphone or admin API on their behalf).
    Agent,
    /// The edge itself: DND forced for an emergency call, or the default of a new agent.
    System,
}

impl PresenceSetter {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::System => "system",
        }
    }
}

impl FromStr for PresenceSetter {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "agent" => Ok(Self::Agent),
            "system" => Ok(Self::System),
            other => {
                Err(InvalidValue(format!("'{other}' is not a presence setter (agent|system)")))
            }
        }
    }
}

/// Presence as stored: durable so that a DND forced by an emergency call that a crash
/// interrupted is restored to `previous` on restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub state: PresenceState,
    /// The state saved when an emergency call forced DND; `None` otherwise.
    pub previous: Option<PresenceState>,
    pub set_by: PresenceSetter,
}

impl Default for Presence {
    /// A new agent's presence: available, set by the system.
    fn default() -> Self {
        Self { state: PresenceState::Available, previous: None, set_by: PresenceSetter::System }
    }
}

// ---------------------------------------------------------------------------------------------
// Groups

/// A group of agents, members in ring order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: GroupId,
    pub members: Vec<AgentId>,
}

// ---------------------------------------------------------------------------------------------
// Registrations

/// One registered contact, as snapshotted for restart. Texts are what the registrar wrote; the
/// store does not interpret them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The agent whose address-of-record this is.
    pub aor: AgentId,
    /// Contact URI as registered.
    pub contact: String,
    /// `+sip.instance` (RFC 5626), if given.
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626), if given.
    pub reg_id: Option<u32>,
    /// The flow the REGISTER came on (transport, local and remote address, connection id).
    pub flow: String,
    pub expires_at: UnixTime,
    /// q-value in thousandths (`q=0.5` is 500); `None` when the contact gave none.
    pub q: Option<u16>,
    /// Path header values (RFC 3327), as one text.
    pub path: Option<String>,
    /// Source address the REGISTER was received from.
    pub received: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Call history

/// Which way an ordinary call went: between the edge's agents (or `[[trusted]]` networks) and
/// its trunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Trunk -> agent (a DID call).
    Inbound,
    /// Agent -> trunk.
    Outbound,
    /// Agent -> agent of the same edge.
    Internal,
    /// Trunk -> trunk (`[[inbound]] to = "trunk:NAME"`).
    Transit,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
            Self::Internal => "internal",
            Self::Transit => "transit",
        }
    }
}

impl FromStr for Direction {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "inbound" => Ok(Self::Inbound),
            "outbound" => Ok(Self::Outbound),
            "internal" => Ok(Self::Internal),
            "transit" => Ok(Self::Transit),
            other => Err(InvalidValue(format!(
                "'{other}' is not a direction (inbound|outbound|internal|transit)"
            ))),
        }
    }
}

/// Identifies a call-history row; larger is newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub i64);

/// One ordinary call. There is deliberately no field that marks a call as an emergency call:
/// emergency calls and PSAP callbacks are never written to history (DESIGN.md, point 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The agent who took or made it; `None` for an inbound call nobody answered.
    pub agent: Option<AgentId>,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub started_at: UnixTime,
    pub duration_s: u32,
    /// How it ended: `answered`, `busy`, `no-answer`, `cancelled`, `failed:503`, ...
    pub result: String,
    /// The trunk it went through, if any.
    pub trunk: Option<String>,
}

/// A stored call with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub id: CallId,
    pub call: Call,
}

// ---------------------------------------------------------------------------------------------
// Callback leases

/// A callback number lent to an agent after an emergency call: while it lives, a call to `did`
/// goes straight to `agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub did: E164,
    pub agent: AgentId,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// What [`super::Store::lease_callback`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// A DID the agent did not hold live was leased to them.
    Granted(Lease),
    /// The agent's live lease was extended (same DID).
    Renewed(Lease),
    /// Every DID of the pool is leased or in quarantine (or the pool is empty). The caller
    /// presents a fallback number and logs; the emergency call is never refused.
    Exhausted,
}

impl LeaseOutcome {
    /// The lease, if one was granted or renewed.
    pub fn lease(&self) -> Option<&Lease> {
        match self {
            Self::Granted(l) | Self::Renewed(l) => Some(l),
            Self::Exhausted => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Notification outbox

/// Identifies an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxId(pub i64);

/// A rendered e-mail, ready for the SMTP relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub to: Vec<Email>,
    /// The `From` header value (`[smtp] from`).
    pub from: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// A queued message with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: OutboxId,
    pub created_at: UnixTime,
    /// Failed attempts so far.
    pub attempts: u32,
    pub next_attempt_at: UnixTime,
    pub last_error: Option<String>,
    pub message: OutboxMessage,
}

/// An outbox row without its content (recipients and text stay out of status pages and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: OutboxId,
    pub created_at: UnixTime,
    pub attempts: u32,
    pub next_attempt_at: UnixTime,
    pub last_error: Option<String>,
}

/// Every undelivered message, oldest first, without content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStatus {
    pub rows: Vec<OutboxRow>,
}

impl OutboxStatus {
    /// Undelivered messages.
    pub fn pending(&self) -> usize {
        self.rows.len()
    }

    /// Undelivered messages that failed at least once.
    pub fn failing(&self) -> usize {
        self.rows.iter().filter(|r| r.attempts > 0).count()
    }

    /// When the oldest undelivered message was queued.
    pub fn oldest(&self) -> Option<UnixTime> {
        self.rows.iter().map(|r| r.created_at).min()
    }
}

// ---------------------------------------------------------------------------------------------
// Templates

/// An editable mail template (`emergency-call-notification`); placeholders are the renderer's
/// business, the store keeps text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_the_digest_ha1s() {
        let c = Credentials::derive(&"alice".parse().unwrap(), "example.com", "secret");
        // md5("alice:example.com:secret"), computed independently.
        assert_eq!(c.ha1_md5, Ha1::new(Algorithm::Md5, "alice", "example.com", "secret").as_hex());
        assert_eq!(c.ha1_md5.len(), 32);
        assert_eq!(c.ha1_sha256.len(), 64);
        assert!(!format!("{c:?}").contains(&c.ha1_md5));
    }

    #[test]
    fn presence_states_round_trip() {
        for s in ["available", "busy", "away", "dnd", "offline", "lunch"] {
            assert_eq!(s.parse::<PresenceState>().unwrap().to_string(), s);
        }
        assert!("DND".parse::<PresenceState>().is_err());
        assert!("".parse::<PresenceState>().is_err());
    }

    #[test]
    fn patch_only_touches_given_fields() {
        let mut a = Agent::new("a".parse().unwrap());
        a.name = Some("A".into());
        let p = AgentPatch { capacity: Some(3), name: Some(None), ..AgentPatch::default() };
        let b = p.apply(a.clone());
        assert_eq!(b.capacity, 3);
        assert_eq!(b.name, None);
        assert_eq!(b.caller_id, a.caller_id);
    }
}
