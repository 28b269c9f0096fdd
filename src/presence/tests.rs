//! The presence rules against a real SQLite store in the temp directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::store::{Agent, SqliteStore};

use PresenceState::{Available, Away, Busy, Dnd, Offline};

/// A store in a fresh temp directory (removed on drop) with agents `alice` and `bob`.
struct Fixture {
    dir: PathBuf,
    store: Arc<dyn Store>,
}

impl Fixture {
    fn new() -> Fixture {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lifeline-presence-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(&dir).unwrap());
        for id in ["alice", "bob"] {
            store.put_agent(&Agent::new(id.parse().unwrap()), None).unwrap();
        }
        Fixture { dir, store }
    }

    fn book(&self) -> PresenceBook {
        PresenceBook::load(self.store.clone()).unwrap()
    }

    /// What the store holds (what a restart would see).
    fn stored(&self, agent: &str) -> Presence {
        self.store.presence(&id(agent)).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn id(s: &str) -> AgentId {
    s.parse().unwrap()
}

fn presence(state: PresenceState, previous: Option<PresenceState>, by: PresenceSetter) -> Presence {
    Presence { state, previous, set_by: by }
}

#[test]
fn loads_every_agent_and_an_unknown_id_is_offline() {
    let f = Fixture::new();
    let book = f.book();
    assert_eq!(book.state("alice"), Available);
    assert!(book.is_available("bob"));
    assert_eq!(book.state("nobody"), Offline);
    assert!(!book.is_available("nobody"));
    assert_eq!(book.presence("nobody"), None);
}

#[test]
fn the_agent_sets_a_state_written_through_to_the_store() {
    let f = Fixture::new();
    let book = f.book();
    let lunch: PresenceState = "lunch".parse().unwrap();
    let p = book.set_by_agent(&id("alice"), lunch.clone()).unwrap();
    assert_eq!(p, presence(lunch.clone(), None, PresenceSetter::Agent));
    assert_eq!(book.state("alice"), lunch);
    assert!(!book.is_available("alice"));
    assert_eq!(f.stored("alice"), p);
    assert_eq!(f.book().state("alice"), lunch, "a restart sees it");

    // An unknown agent: refused, nothing written.
    let e = book.set_by_agent(&id("nobody"), Busy).unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
    assert_eq!(book.presence("nobody"), None);
}

#[test]
fn an_emergency_call_forces_dnd_and_its_end_restores_the_state_before() {
    let f = Fixture::new();
    let book = f.book();
    book.set_by_agent(&id("alice"), Away).unwrap();
    book.emergency_begin(&id("alice")).unwrap();
    let during = presence(Dnd, Some(Away), PresenceSetter::System);
    assert_eq!(book.presence("alice"), Some(during.clone()));
    assert_eq!(f.stored("alice"), during, "durable before the call goes on");
    assert_eq!(book.emergencies("alice"), 1);

    book.emergency_end(&id("alice")).unwrap();
    let after = presence(Away, None, PresenceSetter::System);
    assert_eq!(book.presence("alice"), Some(after.clone()));
    assert_eq!(f.stored("alice"), after);
    assert_eq!(book.emergencies("alice"), 0);
    // Other agents are untouched.
    assert_eq!(book.state("bob"), Available);
}

#[test]
fn a_dnd_chosen_by_the_agent_is_what_comes_back() {
    let f = Fixture::new();
    let book = f.book();
    book.set_by_agent(&id("alice"), Dnd).unwrap();
    book.emergency_begin(&id("alice")).unwrap();
    assert_eq!(book.presence("alice").unwrap().previous, Some(Dnd));
    book.emergency_end(&id("alice")).unwrap();
    assert_eq!(book.state("alice"), Dnd);
    assert_eq!(book.presence("alice").unwrap().previous, None);
}

#[test]
fn nested_calls_keep_the_first_saved_state_and_only_the_last_end_restores() {
    let f = Fixture::new();
    let book = f.book();
    book.set_by_agent(&id("alice"), Busy).unwrap();
    book.emergency_begin(&id("alice")).unwrap();
    // The second call must not save the forced DND as the state to go back to.
    book.emergency_begin(&id("alice")).unwrap();
    assert_eq!(book.presence("alice"), Some(presence(Dnd, Some(Busy), PresenceSetter::System)));
    assert_eq!(book.emergencies("alice"), 2);

    // The second call ends while the first is up: still DND.
    book.emergency_end(&id("alice")).unwrap();
    assert_eq!(book.state("alice"), Dnd);
    assert_eq!(f.stored("alice").state, Dnd);
    assert_eq!(book.emergencies("alice"), 1);

    book.emergency_end(&id("alice")).unwrap();
    assert_eq!(book.state("alice"), Busy);
    assert_eq!(f.stored("alice"), presence(Busy, None, PresenceSetter::System));
}

#[test]
fn a_manual_change_during_the_call_wins_over_the_restore() {
    let f = Fixture::new();
    let book = f.book();
    book.set_by_agent(&id("alice"), Away).unwrap();
    book.emergency_begin(&id("alice")).unwrap();
    book.set_by_agent(&id("alice"), Available).unwrap();
    // Routing follows the agent's choice at once.
    assert!(book.is_available("alice"));
    book.emergency_end(&id("alice")).unwrap();
    let after = presence(Available, None, PresenceSetter::Agent);
    assert_eq!(book.presence("alice"), Some(after.clone()));
    assert_eq!(f.stored("alice"), after);
}

#[test]
fn a_manual_change_between_nested_calls_is_what_the_last_end_returns_to() {
    let f = Fixture::new();
    let book = f.book();
    book.set_by_agent(&id("alice"), Away).unwrap();
    book.emergency_begin(&id("alice")).unwrap();
    book.set_by_agent(&id("alice"), Busy).unwrap();
    // A second emergency call forces DND again; the agent's latest choice is kept for later.
    book.emergency_begin(&id("alice")).unwrap();
    assert_eq!(book.presence("alice"), Some(presence(Dnd, Some(Busy), PresenceSetter::System)));
    book.emergency_end(&id("alice")).unwrap();
    assert_eq!(book.state("alice"), Dnd);
    book.emergency_end(&id("alice")).unwrap();
    assert_eq!(book.state("alice"), Busy);
}

#[test]
fn an_end_without_a_call_in_progress_changes_nothing() {
    let f = Fixture::new();
    let book = f.book();
    book.set_by_agent(&id("alice"), Away).unwrap();
    book.emergency_end(&id("alice")).unwrap();
    assert_eq!(book.presence("alice"), Some(presence(Away, None, PresenceSetter::Agent)));
    // One begin, two ends: the second does nothing.
    book.emergency_begin(&id("alice")).unwrap();
    book.emergency_end(&id("alice")).unwrap();
    book.set_by_agent(&id("alice"), Busy).unwrap();
    book.emergency_end(&id("alice")).unwrap();
    assert_eq!(book.state("alice"), Busy);
    // Unknown agents: refused by the store.
    assert!(book.emergency_begin(&id("nobody")).is_err());
    assert!(book.emergency_end(&id("nobody")).is_err());
}

#[test]
fn a_crash_during_the_call_is_restored_at_start() {
    let f = Fixture::new();
    {
        let book = f.book();
        book.set_by_agent(&id("alice"), Away).unwrap();
        book.emergency_begin(&id("alice")).unwrap();
        book.emergency_begin(&id("alice")).unwrap();
        book.set_by_agent(&id("bob"), Busy).unwrap();
        // The process dies here: no end.
    }
    let book = f.book();
    assert_eq!(book.state("alice"), Dnd);
    assert_eq!(book.restore_interrupted().unwrap(), 1);
    assert_eq!(book.presence("alice"), Some(presence(Away, None, PresenceSetter::System)));
    assert_eq!(f.stored("alice"), presence(Away, None, PresenceSetter::System));
    assert_eq!(book.state("bob"), Busy);
    // Once is enough: nothing left to restore.
    assert_eq!(book.restore_interrupted().unwrap(), 0);
}

#[test]
fn a_manual_change_before_the_crash_stays_at_start() {
    let f = Fixture::new();
    {
        let book = f.book();
        book.emergency_begin(&id("alice")).unwrap();
        book.set_by_agent(&id("alice"), Busy).unwrap();
    }
    let book = f.book();
    assert_eq!(book.restore_interrupted().unwrap(), 1);
    let after = presence(Busy, None, PresenceSetter::Agent);
    assert_eq!(book.presence("alice"), Some(after.clone()));
    assert_eq!(f.stored("alice"), after);
}

#[test]
fn refresh_follows_agents_created_and_deleted_after_load() {
    let f = Fixture::new();
    let book = f.book();
    f.store.put_agent(&Agent::new(id("carol")), None).unwrap();
    assert_eq!(book.state("carol"), Offline, "not known until refreshed");
    book.refresh(&id("carol")).unwrap();
    assert_eq!(book.state("carol"), Available, "a new agent is available");

    // A replaced profile keeps the presence and the emergency in progress.
    book.emergency_begin(&id("carol")).unwrap();
    f.store.put_agent(&Agent::new(id("carol")), None).unwrap();
    book.refresh(&id("carol")).unwrap();
    assert_eq!(book.state("carol"), Dnd);
    assert_eq!(book.emergencies("carol"), 1);

    f.store.delete_agent(&id("carol")).unwrap();
    book.refresh(&id("carol")).unwrap();
    assert_eq!(book.state("carol"), Offline);
    assert_eq!(book.presence("carol"), None);
}

#[test]
fn an_agent_unknown_to_the_book_is_read_from_the_store_on_write() {
    let f = Fixture::new();
    let book = f.book();
    f.store.put_agent(&Agent::new(id("dave")), None).unwrap();
    book.set_by_agent(&id("dave"), Away).unwrap();
    assert_eq!(book.state("dave"), Away);
}

#[test]
fn watchers_hear_every_committed_state_change_whoever_made_it() {
    let f = Fixture::new();
    let book = f.book();
    let mut rx = book.watch();
    let heard = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<AgentId>| {
        let mut v = Vec::new();
        while let Ok(a) = rx.try_recv() {
            v.push(a.as_str().to_owned());
        }
        v
    };
    book.set_by_agent(&id("alice"), Busy).unwrap();
    assert_eq!(heard(&mut rx), ["alice"]);
    // The same state again: nothing changed, nothing told.
    book.set_by_agent(&id("alice"), Busy).unwrap();
    assert!(heard(&mut rx).is_empty());
    // Emergency DND and its restore.
    book.emergency_begin(&id("bob")).unwrap();
    book.emergency_end(&id("bob")).unwrap();
    assert_eq!(heard(&mut rx), ["bob", "bob"]);
    // A second call while one is in progress changes no state.
    book.emergency_begin(&id("bob")).unwrap();
    book.emergency_begin(&id("bob")).unwrap();
    assert_eq!(heard(&mut rx), ["bob"]);
    // An agent deleted (admin API): told, so that subscriptions can end.
    f.store.delete_agent(&id("alice")).unwrap();
    book.refresh(&id("alice")).unwrap();
    assert_eq!(heard(&mut rx), ["alice"]);
    // A watcher that went away is forgotten; the others still hear.
    let mut second = book.watch();
    drop(rx);
    book.emergency_end(&id("bob")).unwrap();
    book.emergency_end(&id("bob")).unwrap();
    assert_eq!(heard(&mut second), ["bob"]);
}
