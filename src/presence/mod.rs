//! Agent presence: every agent's state in memory for the core (read per inbound group call),
//! written through to the store so that it survives a restart, and the DND an emergency call
//! forces, with its restore.
//!
//! # States and who reads them
//!
//! States are `available|busy|away|dnd|offline|<custom>` ([`PresenceState`]). Ordinary group
//! calls ring only members whose state is `available` ([`PresenceBook::is_available`]); a
//! PSAP callback ignores presence (DESIGN.md, point 5). An id the book does not know is
//! `offline`: it is no agent (or one deleted a moment ago), and takes no calls.
//!
//! # Writes
//!
//! Every write is blocking (call it from `spawn_blocking`) and goes to the store first; the
//! table changes only once the store has committed, so the two never disagree. A write the
//! store refuses changes nothing, and the caller may retry. Writes are serialised; reads never
//! wait on the store.
//!
//! # DND for an emergency call, and its restore
//!
//! - [`PresenceBook::emergency_begin`] saves the agent's state as `previous` and forces `dnd`
//!   (set by the system). A second emergency call while one is in progress keeps the state
//!   saved first (it never saves the forced `dnd`), and the book counts the calls in progress:
//!   only the end of the last one restores.
//! - [`PresenceBook::emergency_end`] of the last call restores `previous`, **unless the agent
//!   changed their state during the call**: that manual change wins and stays. A manual change
//!   during a call also becomes the state saved for the end of the calls (`previous`), so that
//!   if another emergency call forces `dnd` again, its end returns to the agent's choice.
//! - [`PresenceBook::restore_interrupted`], run once at start, finishes emergencies a crash
//!   interrupted: a `dnd` set by the system with a saved `previous` is restored; a state the
//!   agent chose during the call stays and its saved `previous` is forgotten. (The count of
//!   calls in progress is memory only: dialogs do not survive a restart either.)
//! - An end with no call in progress (a restart happened in between, or the begin failed)
//!   changes nothing.
//!
//! # Changes heard by others
//!
//! [`PresenceBook::watch`] gives a receiver of the ids of agents whose state changed, once the
//! change is committed, whoever made it (admin API, SIP PUBLISH, emergency DND and its
//! restore, an agent written or deleted through the admin API). The core turns these into
//! NOTIFYs for the agent's subscribers ([`sip`]). Sending never blocks (an unbounded channel:
//! at most one entry per write, and writes are slow store commits); a watcher that went away
//! is dropped. The receiver reads the state from the book, so a burst of changes may be told
//! once with the latest state.
//!
//! # SIP presence
//!
//! [`pidf`] writes and reads presence documents (RFC 3863 with RPID, RFC 4480); [`sip`] holds
//! the rules of the edge as presence server (RFC 3856 subscriptions, RFC 3903 publications).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::mpsc;

use crate::store::{AgentId, Presence, PresenceSetter, PresenceState, Store, StoreError};

pub mod pidf;
pub mod sip;

/// Every agent's presence, in memory, written through to the store. Share it as
/// `Arc<PresenceBook>`.
#[derive(Debug)]
pub struct PresenceBook {
    store: Arc<dyn Store>,
    /// By agent id.
    table: RwLock<HashMap<String, Entry>>,
    /// One write at a time: store, then table.
    writing: Mutex<()>,
    /// Who hears about changed states ([`PresenceBook::watch`]).
    watchers: Mutex<Vec<mpsc::UnboundedSender<AgentId>>>,
}

/// One agent's presence and the emergency calls it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    presence: Presence,
    /// Emergency calls begun and not yet ended (memory only).
    emergencies: u32,
}

impl PresenceBook {
    /// Reads every agent's presence from the store. Blocking.
    pub fn load(store: Arc<dyn Store>) -> Result<PresenceBook, StoreError> {
        let table = store
            .presences()?
            .into_iter()
            .map(|(id, presence)| (id.as_str().to_owned(), Entry { presence, emergencies: 0 }))
            .collect();
        Ok(PresenceBook {
            store,
            table: RwLock::new(table),
            writing: Mutex::new(()),
            watchers: Mutex::new(Vec::new()),
        })
    }

    /// A receiver of the agents whose state changed from now on (module docs).
    pub fn watch(&self) -> mpsc::UnboundedReceiver<AgentId> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.watchers.lock().unwrap_or_else(PoisonError::into_inner).push(tx);
        rx
    }

    /// Tells the watchers that `agent`'s state changed.
    fn changed(&self, agent: &AgentId) {
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        watchers.retain(|w| w.send(agent.clone()).is_ok());
    }

    /// The agent's state; `offline` for an id the book does not know.
    pub fn state(&self, agent: &str) -> PresenceState {
        self.read().get(agent).map_or(PresenceState::Offline, |e| e.presence.state.clone())
    }

    /// Whether ordinary calls may ring the agent (`available`). No allocation: the core asks
    /// this for every member of a group it routes to.
    pub fn is_available(&self, agent: &str) -> bool {
        self.read().get(agent).is_some_and(|e| e.presence.state == PresenceState::Available)
    }

    /// The agent's presence with its saved state; `None` for an id the book does not know.
    pub fn presence(&self, agent: &str) -> Option<Presence> {
        self.read().get(agent).map(|e| e.presence.clone())
    }

    /// Emergency calls of the agent in progress.
    pub fn emergencies(&self, agent: &str) -> u32 {
        self.read().get(agent).map_or(0, |e| e.emergencies)
    }

    /// The agent (admin API, SIP PUBLISH from a softphone) sets their state. During an
    /// emergency call this is the manual change that wins at its end (module docs). Blocking.
    pub fn set_by_agent(
        &self,
        agent: &AgentId,
        state: PresenceState,
    ) -> Result<Presence, StoreError> {
        let _writing = self.lock();
        let before = self.entry(agent)?;
        let previous = (before.emergencies > 0).then(|| state.clone());
        let presence = Presence { state, previous, set_by: PresenceSetter::Agent };
        self.commit(agent, &before, Entry { presence: presence.clone(), ..before.clone() })?;
        tracing::debug!(%agent, state = %presence.state, "presence set by the agent");
        Ok(presence)
    }

    /// An emergency call of the agent begins: the current state is saved (the first saved
    /// one is kept while calls are in progress) and `dnd` is forced. Blocking.
    pub fn emergency_begin(&self, agent: &AgentId) -> Result<(), StoreError> {
        let _writing = self.lock();
        let before = self.entry(agent)?;
        let previous = match &before.presence {
            // DND already forced by an emergency: keep what was saved first.
            Presence { state: PresenceState::Dnd, set_by: PresenceSetter::System, previous } => {
                previous.clone().unwrap_or(PresenceState::Dnd)
            }
            // Otherwise the state now (during a call: the agent's manual change).
            p => p.state.clone(),
        };
        let presence = Presence {
            state: PresenceState::Dnd,
            previous: Some(previous),
            set_by: PresenceSetter::System,
        };
        let after = Entry { presence, emergencies: before.emergencies.saturating_add(1) };
        self.commit(agent, &before, after)?;
        tracing::info!(%agent, calls = before.emergencies + 1, "presence: DND for an emergency call");
        Ok(())
    }

    /// An emergency call of the agent ended (however it ended). The end of the last call in
    /// progress restores the saved state, unless the agent changed it during the call (module
    /// docs). Blocking.
    pub fn emergency_end(&self, agent: &AgentId) -> Result<(), StoreError> {
        let _writing = self.lock();
        let before = self.entry(agent)?;
        if before.emergencies == 0 {
            tracing::debug!(%agent, "presence: emergency end without a call in progress");
            return Ok(());
        }
        if before.emergencies > 1 {
            let after = Entry { emergencies: before.emergencies - 1, ..before.clone() };
            return self.commit(agent, &before, after);
        }
        let presence = finished(agent, &before.presence);
        tracing::info!(%agent, state = %presence.state, "presence: emergency calls ended");
        self.commit(agent, &before, Entry { presence, emergencies: 0 })
    }

    /// Finishes the emergencies a crash interrupted (run once at start, after [`Self::load`]):
    /// a DND forced by the system is restored to the saved state; a state the agent chose
    /// during the call stays. Returns how many agents had one. Blocking.
    pub fn restore_interrupted(&self) -> Result<usize, StoreError> {
        let _writing = self.lock();
        let interrupted: Vec<(String, Entry)> = self
            .read()
            .iter()
            .filter(|(_, e)| e.emergencies == 0 && e.presence.previous.is_some())
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect();
        let mut finished_count = 0;
        for (id, before) in interrupted {
            let Ok(agent) = id.parse::<AgentId>() else { continue };
            let presence = finished(&agent, &before.presence);
            tracing::info!(%agent, state = %presence.state, "presence: interrupted emergency restored");
            self.commit(&agent, &before, Entry { presence, emergencies: 0 })?;
            finished_count += 1;
        }
        Ok(finished_count)
    }

    /// Re-reads one agent's presence from the store: after the admin API created, replaced or
    /// deleted the agent (a deleted agent leaves the book). Emergency calls in progress are
    /// kept. Blocking.
    pub fn refresh(&self, agent: &AgentId) -> Result<(), StoreError> {
        let _writing = self.lock();
        match self.store.presence(agent) {
            Ok(presence) => {
                let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
                let before = table.get(agent.as_str()).map(|e| e.presence.state.clone());
                let changed = before.as_ref() != Some(&presence.state);
                table
                    .entry(agent.as_str().to_owned())
                    .and_modify(|e| e.presence = presence.clone())
                    .or_insert(Entry { presence, emergencies: 0 });
                drop(table);
                if changed {
                    self.changed(agent);
                }
                Ok(())
            }
            Err(StoreError::NotFound { .. }) => {
                let gone = self
                    .table
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(agent.as_str());
                if gone.is_some() {
                    self.changed(agent);
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The agent's entry; from the store when the book does not know the agent yet.
    fn entry(&self, agent: &AgentId) -> Result<Entry, StoreError> {
        if let Some(e) = self.read().get(agent.as_str()) {
            return Ok(e.clone());
        }
        Ok(Entry { presence: self.store.presence(agent)?, emergencies: 0 })
    }

    /// Writes `after` to the store (when the presence changed), then to the table.
    fn commit(&self, agent: &AgentId, before: &Entry, after: Entry) -> Result<(), StoreError> {
        if after.presence != before.presence {
            self.store.set_presence(agent, &after.presence)?;
        }
        let changed = after.presence.state != before.presence.state;
        self.table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agent.as_str().to_owned(), after);
        if changed {
            self.changed(agent);
        }
        Ok(())
    }
}

/// The presence once the last emergency call ended: the agent's own change stays; a DND the
/// system forced goes back to the saved state.
fn finished(agent: &AgentId, during: &Presence) -> Presence {
    match during.set_by {
        PresenceSetter::Agent => Presence { previous: None, ..during.clone() },
        PresenceSetter::System => {
            let state = during.previous.clone().unwrap_or_else(|| {
                tracing::warn!(%agent, "presence: no saved state after an emergency; available");
                PresenceState::Available
            });
            Presence { state, previous: None, set_by: PresenceSetter::System }
        }
    }
}

#[cfg(test)]
mod tests;
