//! The SQLite store against real files in the temp directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::*;

/// A fresh directory under the temp dir holding `lifeline.db`; removed on drop.
pub(super) struct TempDb {
    dir: PathBuf,
}

impl TempDb {
    pub(super) fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lifeline-store-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Self { dir }
    }

    pub(super) fn path(&self) -> PathBuf {
        self.dir.join("data").join(DB_FILE)
    }

    pub(super) fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path()).unwrap()
    }

    /// Every byte of the database and its WAL and shared-memory files.
    fn all_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir.join("data")).unwrap() {
            out.extend(std::fs::read(e.unwrap().path()).unwrap());
        }
        out
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn id(s: &str) -> AgentId {
    s.parse().unwrap()
}

fn gid(s: &str) -> GroupId {
    s.parse().unwrap()
}

fn num(s: &str) -> E164 {
    s.parse().unwrap()
}

fn agent(name: &str) -> Agent {
    AgentDraft {
        id: name.into(),
        name: Some(format!("{name} Doe")),
        caller_id: vec!["+15550100123".into()],
        capacity: Some(2),
        mailbox: Some(format!("{name}@example.com")),
        emergency_contacts: Some("security@example.com;manager@example.com".into()),
        location: Some(LocationDraft {
            country: "US".into(),
            address: Some("1 Main St, Springfield, IL 62701".into()),
        }),
    }
    .validate()
    .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn migrates_from_empty_and_reopens_idempotently() {
    let db = TempDb::new("migrate");
    {
        let s = db.open();
        assert_eq!(s.schema_version().unwrap(), SqliteStore::latest_schema_version());
        assert!(SqliteStore::latest_schema_version() >= 1);
        s.put_agent(&agent("alice"), None).unwrap();
    }
    for _ in 0..2 {
        let s = db.open();
        assert_eq!(s.schema_version().unwrap(), SqliteStore::latest_schema_version());
        assert_eq!(s.agent(&id("alice")).unwrap(), agent("alice"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(db.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the database holds HA1s: owner only");
    }
}

#[test]
fn refuses_a_schema_newer_than_the_build() {
    let db = TempDb::new("newer");
    drop(db.open());
    {
        let c = rusqlite::Connection::open(db.path()).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = SqliteStore::open(&db.path()).unwrap_err();
    assert!(matches!(&err, StoreError::Backend(m) if m.contains("newer")), "{err}");
}

#[test]
fn open_in_uses_the_data_dir() {
    let db = TempDb::new("open-in");
    let s = SqliteStore::open_in(&db.dir.join("data")).unwrap();
    assert_eq!(s.path(), db.path());
    assert!(Path::new(&db.path()).exists());
}

#[test]
fn agent_crud_patch_and_paging() {
    let db = TempDb::new("agents");
    let s = db.open();
    let alice = agent("alice");
    assert_eq!(s.put_agent(&alice, None).unwrap(), Written::Created);
    assert_eq!(s.agent(&alice.id).unwrap(), alice);

    // Replace keeps presence; a new agent's presence is available.
    assert_eq!(s.presence(&alice.id).unwrap(), Presence::default());
    let dnd = Presence {
        state: PresenceState::Dnd,
        previous: Some(PresenceState::Custom("lunch".parse().unwrap())),
        set_by: PresenceSetter::System,
    };
    s.set_presence(&alice.id, &dnd).unwrap();
    let mut bare = Agent::new(alice.id.clone());
    bare.capacity = 5;
    assert_eq!(s.put_agent(&bare, None).unwrap(), Written::Replaced);
    assert_eq!(s.agent(&alice.id).unwrap(), bare);
    assert_eq!(s.presence(&alice.id).unwrap(), dnd);

    // Patch changes only what it names.
    let patch = AgentPatch {
        name: Some(Some("Alice".into())),
        mailbox: Some(Some("a@example.com".parse().unwrap())),
        ..AgentPatch::default()
    };
    let patched = s.patch_agent(&alice.id, &patch).unwrap();
    assert_eq!(patched.name.as_deref(), Some("Alice"));
    assert_eq!(patched.capacity, 5);
    assert_eq!(patched.mailbox.as_ref().map(Email::as_str), Some("a@example.com"));
    assert_eq!(s.agent(&alice.id).unwrap(), patched);
    let cleared = s
        .patch_agent(&alice.id, &AgentPatch { mailbox: Some(None), ..AgentPatch::default() })
        .unwrap();
    assert_eq!(cleared.mailbox, None);
    assert_eq!(cleared.name.as_deref(), Some("Alice"));

    // Paging by id.
    for n in ["dave", "bob", "carol", "erin"] {
        s.put_agent(&agent(n), None).unwrap();
    }
    let names = |v: Vec<Agent>| v.into_iter().map(|a| a.id.to_string()).collect::<Vec<_>>();
    assert_eq!(names(s.agents(2, None).unwrap()), ["alice", "bob"]);
    assert_eq!(names(s.agents(2, Some(&id("bob"))).unwrap()), ["carol", "dave"]);
    assert_eq!(names(s.agents(2, Some(&id("dave"))).unwrap()), ["erin"]);
    assert!(s.agents(2, Some(&id("erin"))).unwrap().is_empty());
    assert_eq!(s.agents(10_000, None).unwrap().len(), 5);
    assert!(s.agents(0, None).unwrap().is_empty());

    // Delete.
    s.delete_agent(&id("bob")).unwrap();
    assert!(matches!(s.agent(&id("bob")), Err(StoreError::NotFound { what: "agent", .. })));
    assert!(matches!(s.delete_agent(&id("bob")), Err(StoreError::NotFound { .. })));
    assert!(matches!(
        s.patch_agent(&id("bob"), &AgentPatch::default()),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(s.set_presence(&id("bob"), &dnd), Err(StoreError::NotFound { .. })));
    let presences = s.presences().unwrap();
    assert_eq!(presences.len(), 4);
    assert_eq!(presences[0], (id("alice"), dnd));
}

#[test]
fn invalid_writes_name_the_field_and_change_nothing() {
    let db = TempDb::new("invalid");
    let s = db.open();
    let good = agent("alice");
    s.put_agent(&good, None).unwrap();

    let field_of = |r: Result<_, StoreError>| match r {
        Err(StoreError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    };

    let mut bad = good.clone();
    bad.capacity = 1001;
    bad.name = Some("changed".into());
    assert_eq!(field_of(s.put_agent(&bad, None).map(drop)), "capacity");
    assert_eq!(s.agent(&good.id).unwrap(), good);

    let mut dup = agent("bob");
    dup.caller_id = vec![num("+15550100123"), num("+15550100123")];
    assert_eq!(field_of(s.put_agent(&dup, None).map(drop)), "caller_id");
    assert!(matches!(s.agent(&dup.id), Err(StoreError::NotFound { .. })));

    let patch = AgentPatch {
        name: Some(Some("line\nbreak".into())),
        capacity: Some(7),
        ..AgentPatch::default()
    };
    assert_eq!(field_of(s.patch_agent(&good.id, &patch).map(drop)), "name");
    assert_eq!(s.agent(&good.id).unwrap(), good);

    assert_eq!(field_of(s.set_password(&good.id, "example.com", "").map(drop)), "password");
    assert_eq!(s.credentials(&good.id).unwrap(), None);

    let draft = AgentDraft {
        id: "alice".into(),
        emergency_contacts: Some("ok@example.com;not-an-address".into()),
        ..AgentDraft::default()
    };
    assert_eq!(field_of(draft.validate().map(drop)), "emergency_contacts");
}

#[test]
fn credentials_are_ha1_and_the_password_is_nowhere_in_the_files() {
    let db = TempDb::new("ha1");
    let password = "Zebra-Passw0rd-xyzzy";
    {
        let s = db.open();
        let alice = agent("alice");
        s.put_agent(&alice, None).unwrap();
        assert_eq!(s.credentials(&alice.id).unwrap(), None);
        s.set_password(&alice.id, "example.com", password).unwrap();
        let c = s.credentials(&alice.id).unwrap().unwrap();
        assert_eq!(c, Credentials::derive(&alice.id, "example.com", password));
        assert_eq!(c.realm, "example.com");

        let bob = agent("bob");
        let creds = Credentials::derive(&bob.id, "example.com", password);
        s.put_agent(&bob, Some(&creds)).unwrap();
        // Replacing without credentials keeps them.
        s.put_agent(&bob, None).unwrap();
        assert_eq!(s.credentials(&bob.id).unwrap(), Some(creds.clone()));

        let bytes = db.all_bytes();
        assert!(contains(&bytes, c.ha1_md5.as_bytes()), "HA1 is stored");
        assert!(!contains(&bytes, password.as_bytes()), "password in the open files");

        let mut forged = creds;
        forged.ha1_md5 = "not hex".into();
        assert!(matches!(
            s.put_agent(&bob, Some(&forged)),
            Err(StoreError::Invalid { field: "credentials", .. })
        ));
    }
    // After close (WAL checkpointed into the main file) too.
    assert!(!contains(&db.all_bytes(), password.as_bytes()));
}

#[test]
fn groups_keep_member_order_and_follow_agent_deletion() {
    let db = TempDb::new("groups");
    let s = db.open();
    for n in ["alice", "bob", "carol"] {
        s.put_agent(&agent(n), None).unwrap();
    }
    let support = Group { id: gid("support"), members: vec![id("carol"), id("alice"), id("bob")] };
    assert_eq!(s.put_group(&support).unwrap(), Written::Created);
    assert_eq!(s.group(&support.id).unwrap(), support);

    let unknown = Group { id: gid("support"), members: vec![id("alice"), id("mallory")] };
    assert!(matches!(s.put_group(&unknown), Err(StoreError::Invalid { field: "members", .. })));
    assert_eq!(s.group(&support.id).unwrap(), support, "unchanged");
    let twice = Group { id: gid("x"), members: vec![id("alice"), id("alice")] };
    assert!(matches!(s.put_group(&twice), Err(StoreError::Invalid { field: "members", .. })));
    assert!(matches!(s.group(&gid("x")), Err(StoreError::NotFound { .. })));

    let replaced = Group { id: gid("support"), members: vec![id("bob"), id("alice")] };
    assert_eq!(s.put_group(&replaced).unwrap(), Written::Replaced);
    assert_eq!(s.group(&replaced.id).unwrap(), replaced);

    s.put_group(&Group { id: gid("empty"), members: vec![] }).unwrap();
    let ids: Vec<String> = s.groups(10, None).unwrap().iter().map(|g| g.id.to_string()).collect();
    assert_eq!(ids, ["empty", "support"]);
    assert_eq!(s.groups(10, Some(&gid("empty"))).unwrap(), vec![replaced]);

    s.delete_agent(&id("bob")).unwrap();
    assert_eq!(s.group(&gid("support")).unwrap().members, vec![id("alice")]);
    s.delete_group(&gid("support")).unwrap();
    assert!(matches!(s.group(&gid("support")), Err(StoreError::NotFound { .. })));
    assert!(matches!(s.delete_group(&gid("support")), Err(StoreError::NotFound { .. })));
}

fn binding(aor: &str, contact: &str, expires_at: UnixTime) -> Binding {
    Binding {
        aor: id(aor),
        contact: contact.into(),
        instance: Some("<urn:uuid:00000000-0000-0000-0000-000000000001>".into()),
        reg_id: Some(1),
        flow: "ws:127.0.0.1:8080<-127.0.0.1:50000#7".into(),
        expires_at,
        q: Some(500),
        path: None,
        received: Some("127.0.0.1:50000".into()),
    }
}

#[test]
fn registration_snapshot_replaces_and_loads_unexpired() {
    let db = TempDb::new("regs");
    let s = db.open();
    let a = binding("alice", "sip:a@x.invalid;transport=ws", 1_000);
    let b = binding("bob", "sip:b@192.0.2.1:5060", 2_000);
    s.snapshot_registrations(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(s.load_registrations(500).unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(s.load_registrations(1_000).unwrap(), vec![b.clone()]);
    assert!(s.load_registrations(2_000).unwrap().is_empty());

    let c = binding("carol", "sip:c@192.0.2.2", 3_000);
    s.snapshot_registrations(std::slice::from_ref(&c)).unwrap();
    drop(s);
    assert_eq!(db.open().load_registrations(0).unwrap(), vec![c]);
}

fn call(agent: &str, started_at: UnixTime) -> Call {
    Call {
        agent: Some(id(agent)),
        direction: Direction::Outbound,
        from: "+15550100123".into(),
        to: "+15551230000".into(),
        started_at,
        duration_s: 42,
        result: "answered".into(),
        trunk: Some("carrier".into()),
    }
}

#[test]
fn call_history_pages_newest_first() {
    let db = TempDb::new("calls");
    let s = db.open();
    // Inserted out of start order (calls are written when they end); two share a start time.
    let mut ids = Vec::new();
    for (agent, t) in [("a", 300), ("b", 100), ("c", 200), ("d", 300), ("e", 50)] {
        ids.push((agent, s.insert_call(&call(agent, t)).unwrap()));
    }
    let mut inbound = call("f", 10);
    inbound.agent = None;
    inbound.direction = Direction::Inbound;
    inbound.trunk = None;
    let f = s.insert_call(&inbound).unwrap();

    let agents = |rows: &[CallRecord]| -> Vec<String> {
        rows.iter().map(|r| r.call.agent.as_ref().map_or("-".into(), ToString::to_string)).collect()
    };
    let first = s.calls(2, None).unwrap();
    assert_eq!(agents(&first), ["d", "a"]);
    let second = s.calls(2, Some(first[1].id)).unwrap();
    assert_eq!(agents(&second), ["c", "b"]);
    let third = s.calls(2, Some(second[1].id)).unwrap();
    assert_eq!(agents(&third), ["e", "-"]);
    assert_eq!(third[1], CallRecord { id: f, call: inbound });
    assert!(s.calls(2, Some(f)).unwrap().is_empty());
    assert!(matches!(
        s.calls(2, Some(CallId(9_999))),
        Err(StoreError::Invalid { field: "after", .. })
    ));
}

#[test]
fn call_history_takes_every_direction_in_batches() {
    let db = TempDb::new("calls-batch");
    let s = db.open();
    let mut batch = Vec::new();
    for (i, d) in [Direction::Inbound, Direction::Outbound, Direction::Internal, Direction::Transit]
        .into_iter()
        .enumerate()
    {
        let mut c = call("a", 100 + i64::try_from(i).unwrap());
        c.direction = d;
        batch.push(c);
    }
    s.insert_calls(&batch).unwrap();
    let rows = s.calls(10, None).unwrap();
    let mut back: Vec<Call> = rows.into_iter().map(|r| r.call).collect();
    back.reverse();
    assert_eq!(back, batch);
    s.insert_calls(&[]).unwrap();
    assert_eq!(s.calls(10, None).unwrap().len(), 4);
}

#[test]
fn a_version_1_database_keeps_its_calls_and_learns_the_new_directions() {
    let db = TempDb::new("calls-v1");
    std::fs::create_dir_all(db.path().parent().unwrap()).unwrap();
    {
        let c = rusqlite::Connection::open(db.path()).unwrap();
        c.execute_batch(super::migrations::MIGRATIONS[0]).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.execute(
            "INSERT INTO calls (id, agent, direction, from_uri, to_uri, started_at, duration_s,
                                result, trunk)
             VALUES (7, 'a', 'outbound', '+15550100123', '+15551230000', 100, 42, 'answered',
                     'carrier')",
            [],
        )
        .unwrap();
        let refused = c.execute(
            "INSERT INTO calls (agent, direction, from_uri, to_uri, started_at, duration_s, result)
             VALUES ('a', 'transit', 'x', 'y', 1, 0, 'answered')",
            [],
        );
        assert!(refused.is_err(), "version 1 knows only inbound and outbound");
    }
    let s = db.open();
    assert_eq!(s.schema_version().unwrap(), SqliteStore::latest_schema_version());
    assert_eq!(
        s.calls(10, None).unwrap(),
        vec![CallRecord { id: CallId(7), call: call("a", 100) }]
    );
    let mut transit = call("a", 200);
    transit.direction = Direction::Transit;
    let id = s.insert_call(&transit).unwrap();
    assert!(id > CallId(7), "ids keep growing after the rebuild");
    assert_eq!(s.calls(1, None).unwrap()[0].call, transit);
}

#[test]
fn a_version_2_database_keeps_its_calls_and_still_refuses_an_unknown_direction() {
    let db = TempDb::new("calls-v2");
    std::fs::create_dir_all(db.path().parent().unwrap()).unwrap();
    {
        let c = rusqlite::Connection::open(db.path()).unwrap();
        c.execute_batch(super::migrations::MIGRATIONS[0]).unwrap();
        c.execute_batch(super::migrations::MIGRATIONS[1]).unwrap();
        c.pragma_update(None, "user_version", 2).unwrap();
        c.execute(
            "INSERT INTO calls (id, agent, direction, from_uri, to_uri, started_at, duration_s,
                                result, trunk)
             VALUES (9, 'a', 'outbound', '+15550100123', '+15551230000', 100, 42, 'answered',
                     'carrier')",
            [],
        )
        .unwrap();
    }
    let s = db.open();
    assert_eq!(s.schema_version().unwrap(), SqliteStore::latest_schema_version());
    assert_eq!(
        s.calls(10, None).unwrap(),
        vec![CallRecord { id: CallId(9), call: call("a", 100) }]
    );
    let mut internal = call("a", 200);
    internal.direction = Direction::Internal;
    assert!(s.insert_call(&internal).unwrap() > CallId(9), "ids keep growing after the rebuild");
    drop(s);
    let c = rusqlite::Connection::open(db.path()).unwrap();
    let refused = c.execute(
        "INSERT INTO calls (agent, direction, from_uri, to_uri, started_at, duration_s, result)
         VALUES ('a', 'sideways', 'x', 'y', 1, 0, 'answered')",
        [],
    );
    assert!(refused.is_err(), "the CHECK still holds");
}

const HOUR: Duration = Duration::from_secs(3600);
const QUARANTINE: Duration = Duration::from_secs(600);

fn pool(n: usize) -> Vec<E164> {
    (0..n).map(|i| num(&format!("+1555010090{i}"))).collect()
}

#[test]
fn leases_two_agents_get_different_dids_and_one_agent_renews() {
    let db = TempDb::new("lease");
    let s = db.open();
    let p = pool(3);
    let a = s.lease_callback(&id("alice"), &p, 1_000, HOUR, QUARANTINE).unwrap();
    let LeaseOutcome::Granted(la) = a else { panic!("{a:?}") };
    assert_eq!(la.did, p[0]);
    assert_eq!((la.created_at, la.expires_at), (1_000, 4_600));

    let b = s.lease_callback(&id("bob"), &p, 1_010, HOUR, QUARANTINE).unwrap();
    let lb = b.lease().unwrap().clone();
    assert_ne!(lb.did, la.did);

    let again = s.lease_callback(&id("alice"), &p, 2_000, HOUR, QUARANTINE).unwrap();
    let LeaseOutcome::Renewed(renewed) = again else { panic!("{again:?}") };
    assert_eq!(renewed.did, la.did);
    assert_eq!(renewed.created_at, 1_000);
    assert_eq!(renewed.expires_at, 5_600);

    assert_eq!(s.lease_for_did(&la.did, 5_599).unwrap(), Some(renewed.clone()));
    assert_eq!(s.lease_for_did(&la.did, 5_600).unwrap(), None);
    assert_eq!(s.lease_for_did(&p[2], 2_000).unwrap(), None);
    assert_eq!(s.live_leases(2_000).unwrap(), vec![lb.clone(), renewed]);
    assert_eq!(s.live_leases(4_610).unwrap().len(), 1);
}

#[test]
fn a_quarantined_did_goes_to_nobody_else_and_the_pool_can_run_out() {
    let db = TempDb::new("quarantine");
    let s = db.open();
    let p = pool(2);
    let ttl = Duration::from_secs(100);
    let la = s.lease_callback(&id("alice"), &p, 0, ttl, QUARANTINE).unwrap();
    let lb = s.lease_callback(&id("bob"), &p, 0, ttl, QUARANTINE).unwrap();
    assert_eq!(la.lease().unwrap().did, p[0]);
    assert_eq!(lb.lease().unwrap().did, p[1]);
    assert_eq!(
        s.lease_callback(&id("carol"), &p, 50, ttl, QUARANTINE).unwrap(),
        LeaseOutcome::Exhausted
    );
    // Both expired at 100 but are quarantined until 700.
    assert_eq!(
        s.lease_callback(&id("carol"), &p, 300, ttl, QUARANTINE).unwrap(),
        LeaseOutcome::Exhausted
    );
    assert!(s.live_leases(300).unwrap().is_empty());
    // The same agent gets their own quarantined DID back.
    let back = s.lease_callback(&id("bob"), &p, 400, ttl, QUARANTINE).unwrap();
    let LeaseOutcome::Granted(back) = back else { panic!("{back:?}") };
    assert_eq!((back.did.clone(), back.created_at, back.expires_at), (p[1].clone(), 400, 500));
    // After alice's quarantine ends her DID is free for carol.
    assert_eq!(s.purge_expired(699).unwrap(), 0);
    let c = s.lease_callback(&id("carol"), &p, 700, ttl, QUARANTINE).unwrap();
    assert_eq!(c.lease().unwrap().did, p[0]);
    assert_eq!(c.lease().unwrap().agent, id("carol"));
    assert!(matches!(
        s.lease_callback(&id("dave"), &p, 700, Duration::ZERO, QUARANTINE),
        Err(StoreError::Invalid { field: "ttl", .. })
    ));
    // An empty pool is exhausted, not an error.
    assert_eq!(
        s.lease_callback(&id("dave"), &[], 700, ttl, QUARANTINE).unwrap(),
        LeaseOutcome::Exhausted
    );
    // Purge forgets what left quarantine: bob's (expired 500, quarantine to 1100) at 1100.
    assert_eq!(s.purge_expired(1_100).unwrap(), 1);
    assert_eq!(s.live_leases(750).unwrap().len(), 1);
}

#[test]
fn leases_survive_reopening() {
    let db = TempDb::new("lease-reopen");
    let p = pool(2);
    let lease = {
        let s = db.open();
        s.lease_callback(&id("alice"), &p, 0, HOUR, QUARANTINE).unwrap().lease().unwrap().clone()
    };
    let s = db.open();
    assert_eq!(s.lease_for_did(&lease.did, 10).unwrap(), Some(lease.clone()));
    assert_eq!(s.live_leases(10).unwrap(), vec![lease.clone()]);
    let renewed = s.lease_callback(&id("alice"), &p, 10, HOUR, QUARANTINE).unwrap();
    assert!(matches!(renewed, LeaseOutcome::Renewed(l) if l.did == lease.did));
}

#[test]
fn concurrent_leases_never_share_a_did() {
    let db = TempDb::new("lease-threads");
    let p = pool(6);
    let shared = Arc::new(db.open());
    // Half the threads share one store; the other half each open their own connection to the
    // same file, so the write lock between processes is exercised too.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let p = p.clone();
            let store: Arc<dyn Store> =
                if i % 2 == 0 { shared.clone() } else { Arc::new(db.open()) };
            std::thread::spawn(move || {
                let agent = id(&format!("agent{i}"));
                let mut got = Vec::new();
                for round in 0..5 {
                    let outcome =
                        store.lease_callback(&agent, &p, round, HOUR, QUARANTINE).unwrap();
                    got.push(outcome);
                }
                (agent, got)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut owners: std::collections::HashMap<E164, AgentId> = Default::default();
    let mut exhausted = 0;
    for (agent, outcomes) in &results {
        let dids: std::collections::HashSet<_> =
            outcomes.iter().filter_map(|o| o.lease()).map(|l| l.did.clone()).collect();
        assert!(dids.len() <= 1, "{agent} got several DIDs: {dids:?}");
        if let Some(did) = dids.into_iter().next() {
            if let Some(other) = owners.insert(did.clone(), agent.clone()) {
                panic!("{did} handed to {other} and {agent}");
            }
        } else {
            exhausted += 1;
        }
    }
    assert_eq!(owners.len(), 6);
    assert_eq!(exhausted, 2);
    assert_eq!(shared.live_leases(10).unwrap().len(), 6);
}

fn message(to: &str) -> OutboxMessage {
    OutboxMessage {
        to: vec![to.parse().unwrap(), "manager@example.com".parse().unwrap()],
        from: "lifeline@example.com".into(),
        subject: "Emergency call by Alice".into(),
        text: "Alice called 911 at 10:00.\nLocation: 1 Main St".into(),
        html: Some("<p>Alice called 911</p>".into()),
    }
}

#[test]
fn outbox_enqueue_due_fail_and_delete() {
    let db = TempDb::new("outbox");
    let s = db.open();
    let first = s.enqueue(&message("security@example.com"), 100).unwrap();
    let second = s.enqueue(&message("other@example.com"), 105).unwrap();
    assert!(s.due(99, 10).unwrap().is_empty());
    let due = s.due(105, 10).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].id, first);
    assert_eq!(due[0].message, message("security@example.com"));
    assert_eq!((due[0].attempts, due[0].next_attempt_at, due[0].created_at), (0, 100, 100));
    assert_eq!(s.due(105, 1).unwrap().len(), 1);

    s.mark_failed(first, "421 try later", 160).unwrap();
    let due = s.due(110, 10).unwrap();
    assert_eq!(due.iter().map(|e| e.id).collect::<Vec<_>>(), vec![second]);
    let later = s.due(160, 10).unwrap();
    assert_eq!(later.iter().map(|e| e.id).collect::<Vec<_>>(), vec![second, first]);
    assert_eq!(later[1].attempts, 1);
    assert_eq!(later[1].last_error.as_deref(), Some("421 try later"));

    let status = s.outbox_status().unwrap();
    assert_eq!((status.pending(), status.failing(), status.oldest()), (2, 1, Some(100)));
    assert_eq!(status.rows[0].id, first);

    s.delete_outbox(second).unwrap();
    assert!(matches!(s.delete_outbox(second), Err(StoreError::NotFound { .. })));
    assert!(matches!(s.mark_failed(second, "x", 0), Err(StoreError::NotFound { .. })));
    drop(s);
    // Undelivered mail survives a restart.
    let s = db.open();
    assert_eq!(s.due(1_000, 10).unwrap().len(), 1);
    s.delete_outbox(first).unwrap();
    assert_eq!(s.outbox_status().unwrap().pending(), 0);

    let mut injected = message("a@example.com");
    injected.subject = "hi\r\nBcc: evil@example.com".into();
    assert!(matches!(s.enqueue(&injected, 0), Err(StoreError::Invalid { field: "subject", .. })));
    let mut nobody = message("a@example.com");
    nobody.to.clear();
    assert!(matches!(s.enqueue(&nobody, 0), Err(StoreError::Invalid { field: "to", .. })));
    assert_eq!(s.outbox_status().unwrap().pending(), 0);
}

#[test]
fn templates_round_trip() {
    let db = TempDb::new("templates");
    let s = db.open();
    let name: Token = "emergency-call-notification".parse().unwrap();
    assert_eq!(s.template(&name).unwrap(), None);
    let t = Template {
        subject: "Emergency call by {{agent}}".into(),
        text: "{{agent}} dialled {{number}}".into(),
        html: "<b>{{agent}}</b>".into(),
    };
    s.put_template(&name, &t).unwrap();
    assert_eq!(s.template(&name).unwrap(), Some(t.clone()));
    let t2 = Template { subject: "v2".into(), ..t };
    s.put_template(&name, &t2).unwrap();
    assert_eq!(s.template(&name).unwrap(), Some(t2));
}

#[test]
fn presence_is_durable() {
    let db = TempDb::new("presence");
    let forced = Presence {
        state: PresenceState::Dnd,
        previous: Some(PresenceState::Away),
        set_by: PresenceSetter::System,
    };
    {
        let s = db.open();
        s.put_agent(&agent("alice"), None).unwrap();
        s.set_presence(&id("alice"), &forced).unwrap();
    }
    assert_eq!(db.open().presence(&id("alice")).unwrap(), forced);
}
