//! Durable state behind one narrow trait, [`Store`], with a SQLite implementation
//! ([`SqliteStore`], one file at `data_dir/lifeline.db`).
//!
//! # Contract
//!
//! **Thread model.** Every method is blocking and is one transaction: it has committed (or
//! changed nothing) when it returns. The edge calls the store from `tokio::task::spawn_blocking`
//! (or a dedicated thread), never directly from an async task. Implementations are
//! `Send + Sync`; share one behind an `Arc<dyn Store>`. [`SqliteStore`] serialises calls on one
//! connection and takes SQLite's write lock up front (`BEGIN IMMEDIATE`), so a read-modify-write
//! such as [`Store::lease_callback`] is atomic against other threads and other processes on the
//! same file.
//!
//! **Time.** The store never reads a clock. Times are [`UnixTime`] seconds passed by the caller.
//!
//! **Validation.** Every rule about field values lives in `validate.rs` ([`AgentDraft`],
//! [`Agent::check`], the newtypes' `FromStr`). A write that breaks one returns
//! [`StoreError::Invalid`] naming the field, and changes nothing.
//!
//! **Durability per data kind** (DESIGN.md, "Durability"). SQLite runs in WAL mode with
//! `synchronous=NORMAL`: a committed transaction survives a crash of the process, and may be lost
//! (never half-applied) on a power cut. Writes that an emergency call depends on are committed
//! with `synchronous=FULL` instead, so they survive a power cut too:
//!
//! | data | commit | on restart |
//! |---|---|---|
//! | callback leases | FULL, before the INVITE leaves | live leases keep routing |
//! | outbox enqueue | FULL, before the INVITE leaves | undelivered mail is retried |
//! | outbox attempt / delete | NORMAL | a lost delete re-sends a mail (at-least-once) |
//! | presence (+ saved previous state) | FULL | a DND forced by an emergency is restored |
//! | agents, credentials, groups, templates | FULL | kept |
//! | registration snapshot | NORMAL | clients re-register; the snapshot shortens the gap |
//! | call history | NORMAL | kept |
//!
//! **Never stored**: passwords (only their HA1 hashes, see [`Credentials`]); emergency calls and
//! PSAP callbacks in call history ([`Call`] has no way to mark a row as an emergency, on
//! purpose); media, SDP or recordings; dialogs in progress (memory only); an e-mail after its
//! delivery (the outbox row is deleted).
//!
//! A cluster of nodes would implement the same trait on PostgreSQL (leases by
//! `UPDATE ... WHERE expires_at < now()`, outbox by `FOR UPDATE SKIP LOCKED`). With SQLite, one
//! node, one outbox sender: [`Store::due`] does not claim rows.

mod migrations;
pub mod seed;
mod sqlite;
mod types;
mod validate;

use std::fmt;
use std::time::Duration;

pub use sqlite::{BUSY_TIMEOUT, SqliteStore};
pub use types::{
    Agent, AgentPatch, Binding, Call, CallId, CallRecord, Credentials, Direction, Group, Lease,
    LeaseOutcome, Location, OutboxEntry, OutboxId, OutboxMessage, OutboxRow, OutboxStatus,
    Presence, PresenceSetter, PresenceState, Template, UnixTime, Written,
};
pub use validate::{
    AgentDraft, AgentId, AgentWarning, CountryCode, DEFAULT_CAPACITY, E164, Email, GroupId,
    InvalidValue, LocationDraft, MAX_ADDRESS_CHARS, MAX_CAPACITY, MAX_LIST_LEN, MAX_NAME_CHARS,
    MAX_PASSWORD_BYTES, Token, check_password, check_realm, join_contacts, parse_caller_id,
    parse_capacity, parse_contacts, parse_location, parse_mailbox, warnings_for,
};

/// The file name of the SQLite database inside `[node] data_dir`.
pub const DB_FILE: &str = "lifeline.db";

/// Largest page a list method returns; larger `limit`s are clamped to it.
pub const MAX_PAGE: u32 = 1000;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// No `what` (agent, group, outbox row, ...) with that id.
    NotFound { what: &'static str, id: String },
    /// The write contradicts what is stored (a uniqueness rule).
    Conflict { message: String },
    /// A field's value breaks a rule; nothing was written.
    Invalid { field: &'static str, message: String },
    /// The database failed (I/O, corruption, lock timeout, schema newer than this build).
    Backend(String),
}

impl StoreError {
    fn not_found(what: &'static str, id: impl fmt::Display) -> Self {
        Self::NotFound { what, id: id.to_string() }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { what, id } => write!(f, "no {what} '{id}'"),
            Self::Conflict { message } => write!(f, "conflict: {message}"),
            Self::Invalid { field, message } => write!(f, "{field}: {message}"),
            Self::Backend(m) => write!(f, "store: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Everything the edge and the admin API keep across restarts. See the module docs for the
/// thread model and the durability of each data kind.
pub trait Store: Send + Sync + fmt::Debug {
    // --- agents ------------------------------------------------------------------------------

    /// One agent's profile.
    fn agent(&self, id: &AgentId) -> Result<Agent, StoreError>;

    /// Agents by id, ascending, after `after` (exclusive); at most `limit` (clamped to
    /// [`MAX_PAGE`]).
    fn agents(&self, limit: u32, after: Option<&AgentId>) -> Result<Vec<Agent>, StoreError>;

    /// Creates or replaces an agent's profile. Presence is kept on replace (`available` on
    /// create). `credentials: None` keeps the stored ones (a new agent then has none and
    /// cannot register until [`Store::set_password`]).
    fn put_agent(
        &self,
        agent: &Agent,
        credentials: Option<&Credentials>,
    ) -> Result<Written, StoreError>;

    /// Changes only the fields `patch` gives; returns the agent as stored.
    fn patch_agent(&self, id: &AgentId, patch: &AgentPatch) -> Result<Agent, StoreError>;

    /// Removes an agent, its credentials, presence and group memberships. Its callback leases
    /// stay until they expire (a PSAP callback then goes to the fallback).
    fn delete_agent(&self, id: &AgentId) -> Result<(), StoreError>;

    /// Stores `HA1 = H(id:realm:password)` for MD5 and SHA-256; the password is not kept.
    fn set_password(&self, id: &AgentId, realm: &str, password: &str) -> Result<(), StoreError>;

    /// The digest credentials, for authentication; `None` if the agent has none.
    fn credentials(&self, id: &AgentId) -> Result<Option<Credentials>, StoreError>;

    // --- presence ----------------------------------------------------------------------------

    fn presence(&self, id: &AgentId) -> Result<Presence, StoreError>;

    fn set_presence(&self, id: &AgentId, presence: &Presence) -> Result<(), StoreError>;

    /// Every agent's presence, by id: loaded at start to restore DND interrupted by a crash.
    fn presences(&self) -> Result<Vec<(AgentId, Presence)>, StoreError>;

    // --- groups ------------------------------------------------------------------------------

    fn group(&self, id: &GroupId) -> Result<Group, StoreError>;

    /// Groups by id, ascending, after `after`; at most `limit` (clamped to [`MAX_PAGE`]).
    fn groups(&self, limit: u32, after: Option<&GroupId>) -> Result<Vec<Group>, StoreError>;

    /// Creates or replaces a group. Every member must be a stored agent
    /// (`Invalid { field: "members" }` otherwise).
    fn put_group(&self, group: &Group) -> Result<Written, StoreError>;

    fn delete_group(&self, id: &GroupId) -> Result<(), StoreError>;

    /// The seed import: upserts every agent (profile and credentials; presence kept) and then
    /// every group, all in one transaction — all or nothing.
    fn import(&self, agents: &[(Agent, Credentials)], groups: &[Group]) -> Result<(), StoreError>;

    // --- registrations -----------------------------------------------------------------------

    /// Replaces the whole snapshot with `bindings`, in one transaction.
    fn snapshot_registrations(&self, bindings: &[Binding]) -> Result<(), StoreError>;

    /// The snapshot's bindings with `expires_at > now`.
    fn load_registrations(&self, now: UnixTime) -> Result<Vec<Binding>, StoreError>;

    // --- call history (ordinary calls only) --------------------------------------------------

    /// Appends an ordinary call. Never called for emergency calls or PSAP callbacks.
    fn insert_call(&self, call: &Call) -> Result<CallId, StoreError>;

    /// Appends ordinary calls in one transaction (the edge writes them in batches): all or
    /// none.
    fn insert_calls(&self, calls: &[Call]) -> Result<(), StoreError>;

    /// Calls newest first (by `started_at`, then id), after the row `after` (exclusive); at
    /// most `limit` (clamped to [`MAX_PAGE`]). An unknown `after` is `Invalid { field: "after" }`.
    fn calls(&self, limit: u32, after: Option<CallId>) -> Result<Vec<CallRecord>, StoreError>;

    // --- callback leases ---------------------------------------------------------------------

    /// Atomically gives `agent` a callback number from `pool`, committed durably before it
    /// returns:
    ///
    /// 1. the agent's live lease on a DID still in `pool`: extended to `now + ttl` (`Renewed`);
    /// 2. else the agent's own most recent expired lease still in quarantine: leased again
    ///    (a late PSAP callback to it then reaches the same person);
    /// 3. else the first DID of `pool` (in order) that is neither leased nor in quarantine;
    /// 4. else `Exhausted`.
    ///
    /// A lease in quarantine (`expires_at <= now < expires_at + quarantine`) is never given to
    /// another agent, so a late PSAP callback never reaches the wrong person. `ttl` must be at
    /// least one second (`Invalid { field: "ttl" }`). The caller expands pool ranges.
    fn lease_callback(
        &self,
        agent: &AgentId,
        pool: &[E164],
        now: UnixTime,
        ttl: Duration,
        quarantine: Duration,
    ) -> Result<LeaseOutcome, StoreError>;

    /// The live lease on `did` (`expires_at > now`), for routing a PSAP callback.
    fn lease_for_did(&self, did: &E164, now: UnixTime) -> Result<Option<Lease>, StoreError>;

    /// Every live lease, soonest expiry first (`GET /api/callbacks`).
    fn live_leases(&self, now: UnixTime) -> Result<Vec<Lease>, StoreError>;

    /// Forgets leases whose quarantine ended; returns how many.
    fn purge_expired(&self, now: UnixTime) -> Result<usize, StoreError>;

    // --- notification outbox -----------------------------------------------------------------

    /// Queues a message, due at once; committed durably before it returns.
    fn enqueue(&self, message: &OutboxMessage, now: UnixTime) -> Result<OutboxId, StoreError>;

    /// Messages with `next_attempt_at <= now`, earliest first, at most `limit`.
    fn due(&self, now: UnixTime, limit: u32) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Records a failed attempt: `attempts + 1`, the error text, the next try.
    fn mark_failed(
        &self,
        id: OutboxId,
        error: &str,
        next_attempt_at: UnixTime,
    ) -> Result<(), StoreError>;

    /// Removes a delivered (or abandoned) message.
    fn delete_outbox(&self, id: OutboxId) -> Result<(), StoreError>;

    /// Every undelivered message without its content.
    fn outbox_status(&self) -> Result<OutboxStatus, StoreError>;

    // --- templates ---------------------------------------------------------------------------

    /// The stored template `name`; `None` means the caller uses its built-in default.
    fn template(&self, name: &Token) -> Result<Option<Template>, StoreError>;

    fn put_template(&self, name: &Token, template: &Template) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests;
