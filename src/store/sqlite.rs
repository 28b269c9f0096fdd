//! [`Store`] on one SQLite file (WAL), for a single node.
//!
//! One connection behind a mutex: every trait call locks it, runs one transaction and commits.
//! Writes begin `IMMEDIATE` (SQLite's write lock taken up front, waiting up to
//! [`BUSY_TIMEOUT`] for another process), so read-modify-write operations are atomic. Writes an
//! emergency call depends on commit with `synchronous=FULL` (see the module docs of
//! [`super`]). Calls block: run them on `spawn_blocking` or a store thread.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Type, ValueRef};
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Row, ToSql, Transaction, TransactionBehavior, params,
};

use super::migrations::MIGRATIONS;
use super::types::{
    Agent, AgentPatch, Binding, Call, CallId, CallRecord, Credentials, Direction, Group, Lease,
    LeaseOutcome, Location, OutboxEntry, OutboxId, OutboxMessage, OutboxRow, OutboxStatus,
    Presence, PresenceSetter, PresenceState, Template, UnixTime, Written,
};
use super::validate::{
    AgentId, CountryCode, E164, Email, GroupId, InvalidValue, Token, check_password, check_realm,
};
use super::{DB_FILE, MAX_PAGE, Store, StoreError};

/// How long a write waits for another process holding the database's write lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest `last_error` kept for an outbox row, in characters.
const MAX_ERROR_CHARS: usize = 1000;

/// The SQLite store. `Send + Sync`; share it behind an `Arc`.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

/// How a write transaction is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// `synchronous=NORMAL`: survives a process crash.
    Normal,
    /// `synchronous=FULL`: survives a power cut.
    Full,
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/lifeline.db`.
    pub fn open_in(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open(&data_dir.join(DB_FILE))
    }

    /// Opens (creating it and its parent directories if needed) the database at `path`, in WAL
    /// mode, and applies the missing migrations. A new file is readable by its owner only: it
    /// holds HA1 hashes, which are password-equivalent within the realm.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        }
        create_private(path)?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{}: cannot use WAL mode (journal_mode is {mode})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Self { conn: Mutex::new(conn), path: path.to_owned() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version (`PRAGMA user_version`): the number of migrations applied.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let conn = self.lock();
        Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// The schema version this build creates and understands.
    pub fn latest_schema_version() -> u32 {
        u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
    }

    /// A poisoned lock is taken anyway: a panic inside a call dropped its transaction, which
    /// rolled back, so the connection is in a clean state.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in a deferred transaction (one consistent snapshot for multi-statement reads).
    fn read<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        f(&tx)
    }

    /// Runs `f` in an immediate transaction and commits it as `commit` says. On any error the
    /// transaction rolls back and nothing is written.
    fn write<T>(
        &self,
        commit: Commit,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        if commit == Commit::Full {
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        if commit == Commit::Full
            && let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL")
        {
            // The write itself is done; the connection only stays slower than it needs to be.
            tracing::warn!(error = %e, "store: could not restore synchronous=NORMAL");
        }
        result
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::Backend(format!("creating {}: {e}", path.display())))
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Applies the missing migrations in one immediate transaction, so two processes opening a new
/// file at once do not both migrate it.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len();
    let applied = usize::try_from(version).unwrap_or(usize::MAX);
    if applied > known {
        return Err(StoreError::Backend(format!(
            "database schema version {version} is newer than this build's ({known}); \
             refusing to touch it"
        )));
    }
    for sql in &MIGRATIONS[applied..] {
        tx.execute_batch(sql)?;
    }
    if applied < known {
        tx.pragma_update(None, "user_version", i64::try_from(known).unwrap_or(i64::MAX))?;
    }
    tx.commit()?;
    Ok(())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => StoreError::Conflict { message: e.to_string() },
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

// --- column conversions ------------------------------------------------------------------------

/// Validated text types are stored as their text and re-validated when read.
macro_rules! sql_text {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e: InvalidValue| FromSqlError::Other(Box::new(e)))
            }
        }
    )*};
}

sql_text!(
    AgentId,
    GroupId,
    E164,
    Email,
    CountryCode,
    Token,
    PresenceState,
    PresenceSetter,
    Direction
);

/// Reads a list column joined with `sep`.
fn list<T: FromStr<Err = InvalidValue>>(
    row: &Row<'_>,
    idx: usize,
    sep: char,
) -> rusqlite::Result<Vec<T>> {
    let text: String = row.get(idx)?;
    text.split(sep)
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

fn join<T: AsRef<str>>(items: &[T], sep: &str) -> String {
    let parts: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    parts.join(sep)
}

fn page(limit: u32) -> i64 {
    i64::from(limit.min(MAX_PAGE))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

// --- agents ------------------------------------------------------------------------------------

const AGENT_COLUMNS: &str =
    "id, name, caller_id, capacity, mailbox, emergency_contacts, country, address";

fn agent_row(row: &Row<'_>) -> rusqlite::Result<Agent> {
    let country: Option<CountryCode> = row.get(6)?;
    let location = match country {
        Some(country) => Some(Location { country, address: row.get(7)? }),
        None => None,
    };
    Ok(Agent {
        id: row.get(0)?,
        name: row.get(1)?,
        caller_id: list(row, 2, ',')?,
        capacity: row.get(3)?,
        mailbox: row.get(4)?,
        emergency_contacts: list(row, 5, ';')?,
        location,
    })
}

fn load_agent(tx: &Transaction<'_>, id: &AgentId) -> Result<Agent, StoreError> {
    tx.prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"))?
        .query_row([id], agent_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found("agent", id))
}

fn agent_exists(tx: &Transaction<'_>, id: &AgentId) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM agents WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Writes the profile columns (create or replace); presence and credentials are untouched.
fn upsert_agent(
    tx: &Transaction<'_>,
    agent: &Agent,
    credentials: Option<&Credentials>,
) -> Result<Written, StoreError> {
    agent.check()?;
    if let Some(c) = credentials {
        c.check()?;
    }
    let existed = agent_exists(tx, &agent.id)?;
    let location = agent.location.as_ref();
    tx.prepare_cached(
        "INSERT INTO agents (id, name, caller_id, capacity, mailbox, emergency_contacts,
                             country, address)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET
             name = excluded.name, caller_id = excluded.caller_id,
             capacity = excluded.capacity, mailbox = excluded.mailbox,
             emergency_contacts = excluded.emergency_contacts,
             country = excluded.country, address = excluded.address",
    )?
    .execute(params![
        agent.id,
        agent.name,
        join(&agent.caller_id, ","),
        agent.capacity,
        agent.mailbox,
        join(&agent.emergency_contacts, ";"),
        location.map(|l| &l.country),
        location.and_then(|l| l.address.as_deref()),
    ])?;
    if let Some(c) = credentials {
        write_credentials(tx, &agent.id, c)?;
    }
    Ok(if existed { Written::Replaced } else { Written::Created })
}

fn write_credentials(
    tx: &Transaction<'_>,
    id: &AgentId,
    c: &Credentials,
) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE agents SET realm = ?2, ha1_md5 = ?3, ha1_sha256 = ?4 WHERE id = ?1",
        )?
        .execute(params![id, c.realm, c.ha1_md5, c.ha1_sha256])?;
    if n == 0 {
        return Err(StoreError::not_found("agent", id));
    }
    Ok(())
}

// --- groups ------------------------------------------------------------------------------------

fn members(tx: &Transaction<'_>, id: &GroupId) -> Result<Vec<AgentId>, StoreError> {
    let mut stmt =
        tx.prepare_cached("SELECT agent FROM group_members WHERE group_id = ?1 ORDER BY position")?;
    let rows = stmt.query_map([id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn upsert_group(tx: &Transaction<'_>, group: &Group) -> Result<Written, StoreError> {
    group.check()?;
    for m in &group.members {
        if !agent_exists(tx, m)? {
            return Err(StoreError::Invalid {
                field: "members",
                message: format!("group {}: no agent '{m}'", group.id),
            });
        }
    }
    let created = tx
        .prepare_cached("INSERT INTO groups (id) VALUES (?1) ON CONFLICT (id) DO NOTHING")?
        .execute([&group.id])?
        == 1;
    tx.prepare_cached("DELETE FROM group_members WHERE group_id = ?1")?.execute([&group.id])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO group_members (group_id, position, agent) VALUES (?1, ?2, ?3)",
    )?;
    for (position, m) in group.members.iter().enumerate() {
        insert.execute(params![group.id, i64::try_from(position).unwrap_or(i64::MAX), m])?;
    }
    Ok(if created { Written::Created } else { Written::Replaced })
}

// --- call history, leases, outbox --------------------------------------------------------------

fn insert_call(tx: &Transaction<'_>, call: &Call) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO calls (agent, direction, from_uri, to_uri, started_at, duration_s, result,
                            trunk)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        call.agent,
        call.direction,
        call.from,
        call.to,
        call.started_at,
        call.duration_s,
        call.result,
        call.trunk
    ])?;
    Ok(())
}

const CALL_COLUMNS: &str =
    "id, agent, direction, from_uri, to_uri, started_at, duration_s, result, trunk";

fn call_row(row: &Row<'_>) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        id: CallId(row.get(0)?),
        call: Call {
            agent: row.get(1)?,
            direction: row.get(2)?,
            from: row.get(3)?,
            to: row.get(4)?,
            started_at: row.get(5)?,
            duration_s: row.get(6)?,
            result: row.get(7)?,
            trunk: row.get(8)?,
        },
    })
}

fn lease_row(row: &Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        did: row.get(0)?,
        agent: row.get(1)?,
        created_at: row.get(2)?,
        expires_at: row.get(3)?,
    })
}

fn lease_callback(
    tx: &Transaction<'_>,
    agent: &AgentId,
    pool: &[E164],
    now: UnixTime,
    ttl: Duration,
    quarantine: Duration,
) -> Result<LeaseOutcome, StoreError> {
    if ttl.as_secs() == 0 {
        // A lease that is dead on arrival would route no PSAP callback at all.
        return Err(StoreError::Invalid {
            field: "ttl",
            message: "a callback lease must last at least one second".into(),
        });
    }
    let expires_at = now.saturating_add(secs(ttl));
    let quarantine_until = expires_at.saturating_add(secs(quarantine));

    // 1 and 2: the agent's own leases that still hold their DID, latest expiry first.
    let mine: Vec<Lease> = {
        let mut stmt = tx.prepare_cached(
            "SELECT did, agent, created_at, expires_at FROM callback_leases
             WHERE agent = ?1 AND (expires_at > ?2 OR quarantine_until > ?2)
             ORDER BY expires_at DESC, did",
        )?;
        let rows = stmt.query_map(params![agent, now], lease_row)?;
        rows.collect::<Result<_, _>>()?
    };
    if let Some(held) = mine.into_iter().find(|l| pool.contains(&l.did)) {
        if held.expires_at > now {
            let expires_at = expires_at.max(held.expires_at);
            let quarantine_until = quarantine_until.max(expires_at);
            tx.prepare_cached(
                "UPDATE callback_leases SET expires_at = ?2, quarantine_until = ?3 WHERE did = ?1",
            )?
            .execute(params![held.did, expires_at, quarantine_until])?;
            return Ok(LeaseOutcome::Renewed(Lease { expires_at, ..held }));
        }
        tx.prepare_cached(
            "UPDATE callback_leases SET created_at = ?2, expires_at = ?3, quarantine_until = ?4
             WHERE did = ?1",
        )?
        .execute(params![held.did, now, expires_at, quarantine_until])?;
        return Ok(LeaseOutcome::Granted(Lease {
            did: held.did,
            agent: agent.clone(),
            created_at: now,
            expires_at,
        }));
    }

    // 3: the first DID of the pool nobody holds.
    let held: HashSet<E164> = {
        let mut stmt = tx.prepare_cached(
            "SELECT did FROM callback_leases WHERE expires_at > ?1 OR quarantine_until > ?1",
        )?;
        let rows = stmt.query_map([now], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let Some(did) = pool.iter().find(|d| !held.contains(*d)) else {
        return Ok(LeaseOutcome::Exhausted);
    };
    tx.prepare_cached(
        "INSERT INTO callback_leases (did, agent, created_at, expires_at, quarantine_until)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (did) DO UPDATE SET agent = excluded.agent,
             created_at = excluded.created_at, expires_at = excluded.expires_at,
             quarantine_until = excluded.quarantine_until",
    )?
    .execute(params![did, agent, now, expires_at, quarantine_until])?;
    Ok(LeaseOutcome::Granted(Lease {
        did: did.clone(),
        agent: agent.clone(),
        created_at: now,
        expires_at,
    }))
}

const OUTBOX_COLUMNS: &str = "id, created_at, attempts, next_attempt_at, last_error, \
                              to_addrs, from_addr, subject, text_body, html_body";

fn outbox_row(row: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: OutboxId(row.get(0)?),
        created_at: row.get(1)?,
        attempts: row.get(2)?,
        next_attempt_at: row.get(3)?,
        last_error: row.get(4)?,
    })
}

fn outbox_entry(row: &Row<'_>) -> rusqlite::Result<OutboxEntry> {
    let status = outbox_row(row)?;
    Ok(OutboxEntry {
        id: status.id,
        created_at: status.created_at,
        attempts: status.attempts,
        next_attempt_at: status.next_attempt_at,
        last_error: status.last_error,
        message: OutboxMessage {
            to: list(row, 5, '\n')?,
            from: row.get(6)?,
            subject: row.get(7)?,
            text: row.get(8)?,
            html: row.get(9)?,
        },
    })
}

fn presence_row(row: &Row<'_>, first: usize) -> rusqlite::Result<Presence> {
    Ok(Presence {
        state: row.get(first)?,
        previous: row.get(first + 1)?,
        set_by: row.get(first + 2)?,
    })
}

impl Store for SqliteStore {
    fn agent(&self, id: &AgentId) -> Result<Agent, StoreError> {
        self.read(|tx| load_agent(tx, id))
    }

    fn agents(&self, limit: u32, after: Option<&AgentId>) -> Result<Vec<Agent>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {AGENT_COLUMNS} FROM agents WHERE ?1 IS NULL OR id > ?1
                 ORDER BY id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![after, page(limit)], agent_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn put_agent(
        &self,
        agent: &Agent,
        credentials: Option<&Credentials>,
    ) -> Result<Written, StoreError> {
        self.write(Commit::Full, |tx| upsert_agent(tx, agent, credentials))
    }

    fn patch_agent(&self, id: &AgentId, patch: &AgentPatch) -> Result<Agent, StoreError> {
        self.write(Commit::Full, |tx| {
            let agent = patch.apply(load_agent(tx, id)?);
            upsert_agent(tx, &agent, None)?;
            Ok(agent)
        })
    }

    fn delete_agent(&self, id: &AgentId) -> Result<(), StoreError> {
        self.write(Commit::Full, |tx| {
            match tx.execute("DELETE FROM agents WHERE id = ?1", [id])? {
                0 => Err(StoreError::not_found("agent", id)),
                _ => Ok(()),
            }
        })
    }

    fn set_password(&self, id: &AgentId, realm: &str, password: &str) -> Result<(), StoreError> {
        check_password(password)?;
        check_realm(realm)?;
        let credentials = Credentials::derive(id, realm, password);
        self.write(Commit::Full, |tx| write_credentials(tx, id, &credentials))
    }

    fn credentials(&self, id: &AgentId) -> Result<Option<Credentials>, StoreError> {
        self.read(|tx| {
            let row = tx
                .prepare_cached("SELECT realm, ha1_md5, ha1_sha256 FROM agents WHERE id = ?1")?
                .query_row([id], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                })
                .optional()?
                .ok_or_else(|| StoreError::not_found("agent", id))?;
            Ok(match row {
                (Some(realm), Some(ha1_md5), Some(ha1_sha256)) => {
                    Some(Credentials { realm, ha1_md5, ha1_sha256 })
                }
                _ => None,
            })
        })
    }

    fn presence(&self, id: &AgentId) -> Result<Presence, StoreError> {
        self.read(|tx| {
            tx.prepare_cached(
                "SELECT presence_state, presence_previous, presence_set_by FROM agents
                 WHERE id = ?1",
            )?
            .query_row([id], |r| presence_row(r, 0))
            .optional()?
            .ok_or_else(|| StoreError::not_found("agent", id))
        })
    }

    fn set_presence(&self, id: &AgentId, presence: &Presence) -> Result<(), StoreError> {
        self.write(Commit::Full, |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE agents SET presence_state = ?2, presence_previous = ?3,
                     presence_set_by = ?4 WHERE id = ?1",
                )?
                .execute(params![id, presence.state, presence.previous, presence.set_by])?;
            match n {
                0 => Err(StoreError::not_found("agent", id)),
                _ => Ok(()),
            }
        })
    }

    fn presences(&self) -> Result<Vec<(AgentId, Presence)>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT id, presence_state, presence_previous, presence_set_by FROM agents
                 ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, presence_row(r, 1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn group(&self, id: &GroupId) -> Result<Group, StoreError> {
        self.read(|tx| {
            let found = tx
                .prepare_cached("SELECT 1 FROM groups WHERE id = ?1")?
                .query_row([id], |_| Ok(()))
                .optional()?;
            if found.is_none() {
                return Err(StoreError::not_found("group", id));
            }
            Ok(Group { id: id.clone(), members: members(tx, id)? })
        })
    }

    fn groups(&self, limit: u32, after: Option<&GroupId>) -> Result<Vec<Group>, StoreError> {
        self.read(|tx| {
            let ids: Vec<GroupId> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id FROM groups WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![after, page(limit)], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            ids.into_iter()
                .map(|id| {
                    let members = members(tx, &id)?;
                    Ok(Group { id, members })
                })
                .collect()
        })
    }

    fn put_group(&self, group: &Group) -> Result<Written, StoreError> {
        self.write(Commit::Full, |tx| upsert_group(tx, group))
    }

    fn delete_group(&self, id: &GroupId) -> Result<(), StoreError> {
        self.write(Commit::Full, |tx| {
            match tx.execute("DELETE FROM groups WHERE id = ?1", [id])? {
                0 => Err(StoreError::not_found("group", id)),
                _ => Ok(()),
            }
        })
    }

    fn import(&self, agents: &[(Agent, Credentials)], groups: &[Group]) -> Result<(), StoreError> {
        self.write(Commit::Full, |tx| {
            for (agent, credentials) in agents {
                upsert_agent(tx, agent, Some(credentials))?;
            }
            for group in groups {
                upsert_group(tx, group)?;
            }
            Ok(())
        })
    }

    fn snapshot_registrations(&self, bindings: &[Binding]) -> Result<(), StoreError> {
        self.write(Commit::Normal, |tx| {
            tx.execute("DELETE FROM registrations", [])?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO registrations
                     (aor, contact, instance, reg_id, flow, expires_at, q, path, received)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for b in bindings {
                insert.execute(params![
                    b.aor,
                    b.contact,
                    b.instance,
                    b.reg_id,
                    b.flow,
                    b.expires_at,
                    b.q,
                    b.path,
                    b.received
                ])?;
            }
            Ok(())
        })
    }

    fn load_registrations(&self, now: UnixTime) -> Result<Vec<Binding>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT aor, contact, instance, reg_id, flow, expires_at, q, path, received
                 FROM registrations WHERE expires_at > ?1 ORDER BY rowid",
            )?;
            let rows = stmt.query_map([now], |r| {
                Ok(Binding {
                    aor: r.get(0)?,
                    contact: r.get(1)?,
                    instance: r.get(2)?,
                    reg_id: r.get(3)?,
                    flow: r.get(4)?,
                    expires_at: r.get(5)?,
                    q: r.get(6)?,
                    path: r.get(7)?,
                    received: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn insert_call(&self, call: &Call) -> Result<CallId, StoreError> {
        self.write(Commit::Normal, |tx| {
            insert_call(tx, call)?;
            Ok(CallId(tx.last_insert_rowid()))
        })
    }

    fn insert_calls(&self, calls: &[Call]) -> Result<(), StoreError> {
        self.write(Commit::Normal, |tx| calls.iter().try_for_each(|c| insert_call(tx, c)))
    }

    fn calls(&self, limit: u32, after: Option<CallId>) -> Result<Vec<CallRecord>, StoreError> {
        self.read(|tx| {
            let cursor = match after {
                None => (UnixTime::MAX, i64::MAX),
                Some(CallId(id)) => tx
                    .prepare_cached("SELECT started_at, id FROM calls WHERE id = ?1")?
                    .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                    .ok_or_else(|| StoreError::Invalid {
                        field: "after",
                        message: format!("no call {id}"),
                    })?,
            };
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {CALL_COLUMNS} FROM calls WHERE (started_at, id) < (?1, ?2)
                 ORDER BY started_at DESC, id DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![cursor.0, cursor.1, page(limit)], call_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn lease_callback(
        &self,
        agent: &AgentId,
        pool: &[E164],
        now: UnixTime,
        ttl: Duration,
        quarantine: Duration,
    ) -> Result<LeaseOutcome, StoreError> {
        self.write(Commit::Full, |tx| lease_callback(tx, agent, pool, now, ttl, quarantine))
    }

    fn lease_for_did(&self, did: &E164, now: UnixTime) -> Result<Option<Lease>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .prepare_cached(
                    "SELECT did, agent, created_at, expires_at FROM callback_leases
                     WHERE did = ?1 AND expires_at > ?2",
                )?
                .query_row(params![did, now], lease_row)
                .optional()?)
        })
    }

    fn live_leases(&self, now: UnixTime) -> Result<Vec<Lease>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT did, agent, created_at, expires_at FROM callback_leases
                 WHERE expires_at > ?1 ORDER BY expires_at, did",
            )?;
            let rows = stmt.query_map([now], lease_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn purge_expired(&self, now: UnixTime) -> Result<usize, StoreError> {
        self.write(Commit::Normal, |tx| {
            Ok(tx.execute(
                "DELETE FROM callback_leases WHERE expires_at <= ?1 AND quarantine_until <= ?1",
                [now],
            )?)
        })
    }

    fn enqueue(&self, message: &OutboxMessage, now: UnixTime) -> Result<OutboxId, StoreError> {
        message.check()?;
        self.write(Commit::Full, |tx| {
            tx.prepare_cached(
                "INSERT INTO outbox (created_at, attempts, next_attempt_at, to_addrs, from_addr,
                                     subject, text_body, html_body)
                 VALUES (?1, 0, ?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                now,
                join(&message.to, "\n"),
                message.from,
                message.subject,
                message.text,
                message.html
            ])?;
            Ok(OutboxId(tx.last_insert_rowid()))
        })
    }

    fn due(&self, now: UnixTime, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE next_attempt_at <= ?1
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now, page(limit)], outbox_entry)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn mark_failed(
        &self,
        id: OutboxId,
        error: &str,
        next_attempt_at: UnixTime,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        self.write(Commit::Normal, |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2,
                     next_attempt_at = ?3 WHERE id = ?1",
                )?
                .execute(params![id.0, error, next_attempt_at])?;
            match n {
                0 => Err(StoreError::not_found("outbox message", id.0)),
                _ => Ok(()),
            }
        })
    }

    fn delete_outbox(&self, id: OutboxId) -> Result<(), StoreError> {
        self.write(Commit::Normal, |tx| {
            match tx.execute("DELETE FROM outbox WHERE id = ?1", [id.0])? {
                0 => Err(StoreError::not_found("outbox message", id.0)),
                _ => Ok(()),
            }
        })
    }

    fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT id, created_at, attempts, next_attempt_at, last_error FROM outbox
                 ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([], outbox_row)?;
            Ok(OutboxStatus { rows: rows.collect::<Result<_, _>>()? })
        })
    }

    fn template(&self, name: &Token) -> Result<Option<Template>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .prepare_cached(
                    "SELECT subject, text_body, html_body FROM templates WHERE name = ?1",
                )?
                .query_row([name], |r| {
                    Ok(Template { subject: r.get(0)?, text: r.get(1)?, html: r.get(2)? })
                })
                .optional()?)
        })
    }

    fn put_template(&self, name: &Token, template: &Template) -> Result<(), StoreError> {
        template.check()?;
        self.write(Commit::Full, |tx| {
            tx.prepare_cached(
                "INSERT INTO templates (name, subject, text_body, html_body)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET subject = excluded.subject,
                     text_body = excluded.text_body, html_body = excluded.html_body",
            )?
            .execute(params![name, template.subject, template.text, template.html])?;
            Ok(())
        })
    }
}
