//! The store as the edge uses it: an `Arc<dyn Store>` called from `spawn_blocking`, seeded from
//! an `agents.toml`, surviving a restart.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lifeline::store::{
    self, AgentId, E164, LeaseOutcome, OutboxMessage, Presence, PresenceSetter, PresenceState,
    SqliteStore, Store,
};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lifeline-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SEED: &str = r#"
[[agent]]
id = "alice"
password = "secret"
caller_id = ["+15550100123"]
mailbox = "alice@example.com"
emergency_contacts = "security@example.com"
location = { country = "US", address = "1 Main St, Springfield, IL 62701" }
"#;

#[tokio::test]
async fn an_emergency_call_s_durable_writes_survive_a_restart() {
    let dir = TempDir::new("restart");
    let data_dir = dir.0.join("data");
    let seed_path = dir.0.join("agents.toml");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(&seed_path, SEED).unwrap();

    let alice: AgentId = "alice".parse().unwrap();
    let pool: Vec<E164> = vec!["+15550100900".parse().unwrap()];
    {
        let s: Arc<dyn Store> = Arc::new(SqliteStore::open_in(&data_dir).unwrap());
        let report = {
            let s = s.clone();
            let path = seed_path.clone();
            tokio::task::spawn_blocking(move || store::seed::import(&*s, &path, "example.com"))
                .await
                .unwrap()
                .unwrap()
        };
        assert_eq!(report.agents, 1);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);

        // What the emergency path writes before the INVITE leaves.
        let (s2, a, p) = (s.clone(), alice.clone(), pool.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let previous = s2.presence(&a)?.state;
            s2.set_presence(
                &a,
                &Presence {
                    state: PresenceState::Dnd,
                    previous: Some(previous),
                    set_by: PresenceSetter::System,
                },
            )?;
            s2.enqueue(
                &OutboxMessage {
                    to: vec!["security@example.com".parse().unwrap()],
                    from: "lifeline@example.com".into(),
                    subject: "Emergency call".into(),
                    text: "alice dialled 911".into(),
                    html: None,
                },
                1_000,
            )?;
            s2.lease_callback(&a, &p, 1_000, Duration::from_secs(3600), Duration::from_secs(600))
        })
        .await
        .unwrap()
        .unwrap();
        assert!(matches!(outcome, LeaseOutcome::Granted(_)));
    }

    // "Crash" and restart: the lease still routes, the mail is still due, DND can be undone.
    let s = SqliteStore::open_in(&data_dir).unwrap();
    let lease = s.lease_for_did(&pool[0], 2_000).unwrap().unwrap();
    assert_eq!(lease.agent, alice);
    assert_eq!(s.due(2_000, 10).unwrap().len(), 1);
    let presence = s.presence(&alice).unwrap();
    assert_eq!(presence.state, PresenceState::Dnd);
    assert_eq!(presence.previous, Some(PresenceState::Available));
    assert!(s.calls(10, None).unwrap().is_empty(), "no emergency call in history");
}
