//! The roster: the agents and groups the core routes to and authenticates, read from the
//! store ([`crate::store`]) at start, after the `[agents] seed` file (if any) was imported
//! into it by [`crate::store::seed`].
//!
//! The core never waits on the database while handling SIP: it reads an immutable [`Roster`]
//! from the [`LiveRoster`] holder, which the admin API swaps whole after each write to an agent
//! or a group (built aside, then swapped, like [`crate::routing::Dialplans`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use sip::digest::{Algorithm, Ha1};

use crate::core::auth::{Directory, Secret};
use crate::store::{self, AgentId, Credentials, Group, GroupId, Store, StoreError};

/// An agent as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub name: Option<String>,
    pub caller_id: Vec<String>,
    pub capacity: u32,
    /// ISO 3166 alpha-2 country of the provisioned location.
    pub country: Option<String>,
}

impl Agent {
    /// The routing view of a stored profile.
    pub fn of(a: &store::Agent) -> Agent {
        Agent {
            id: a.id.as_str().to_owned(),
            name: a.name.clone(),
            caller_id: a.caller_id.iter().map(ToString::to_string).collect(),
            capacity: a.capacity,
            country: a.location.as_ref().map(|l| l.country.to_string()),
        }
    }
}

/// Agents, groups, and who may authenticate.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    pub agents: BTreeMap<String, Agent>,
    pub groups: BTreeMap<String, Vec<String>>,
    pub directory: Directory,
}

impl Roster {
    /// Members of `group`, in order.
    pub fn members(&self, group: &str) -> &[String] {
        self.groups.get(group).map_or(&[], Vec::as_slice)
    }

    /// Reads every agent (with its HA1s) and group from the store.
    pub fn load(store: &dyn Store) -> Result<Roster, StoreError> {
        const PAGE: u32 = 500;
        let mut roster = Roster::default();
        let mut after: Option<AgentId> = None;
        loop {
            let page = store.agents(PAGE, after.as_ref())?;
            for a in &page {
                let credentials = store.credentials(&a.id)?;
                roster.put_agent(a, credentials.as_ref());
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.id.clone()),
                _ => break,
            }
        }
        let mut after: Option<GroupId> = None;
        loop {
            let page = store.groups(PAGE, after.as_ref())?;
            for g in &page {
                roster.put_group(g);
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.id.clone()),
                _ => break,
            }
        }
        Ok(roster)
    }

    /// Adds or replaces an agent. `credentials: None` keeps the HA1s already known (the
    /// store's rule for a profile written without a password).
    pub fn put_agent(&mut self, agent: &store::Agent, credentials: Option<&Credentials>) {
        if let Some(c) = credentials {
            let md5 = Ha1::from_hex(Algorithm::Md5, &c.ha1_md5);
            let sha256 = Ha1::from_hex(Algorithm::Sha256, &c.ha1_sha256);
            match (md5, sha256) {
                (Some(md5), Some(sha256)) => {
                    self.directory.insert(agent.id.as_str(), Secret { md5, sha256 })
                }
                // The store checks HA1s before writing them; a bad one cannot authenticate.
                _ => self.directory.remove(agent.id.as_str()),
            }
        }
        self.agents.insert(agent.id.as_str().to_owned(), Agent::of(agent));
    }

    /// Removes an agent, its credentials and its group memberships (as the store does).
    pub fn remove_agent(&mut self, id: &str) {
        self.agents.remove(id);
        self.directory.remove(id);
        for members in self.groups.values_mut() {
            members.retain(|m| m != id);
        }
    }

    /// Adds or replaces a group.
    pub fn put_group(&mut self, group: &Group) {
        let members = group.members.iter().map(|m| m.as_str().to_owned()).collect();
        self.groups.insert(group.id.to_string(), members);
    }

    pub fn remove_group(&mut self, id: &str) {
        self.groups.remove(id);
    }
}

/// The roster in force. Readers take the current [`Roster`] (an `Arc`, cheap) and keep it for
/// the request at hand; writers build the next one aside and swap it in.
#[derive(Debug, Default)]
pub struct LiveRoster {
    current: RwLock<Arc<Roster>>,
    /// One edit at a time, so that an edit's store write and its swap are never interleaved
    /// with another's (the roster then always matches the store's last write).
    editing: Mutex<()>,
}

impl LiveRoster {
    pub fn new(roster: Roster) -> LiveRoster {
        LiveRoster { current: RwLock::new(Arc::new(roster)), editing: Mutex::new(()) }
    }

    /// The roster in force.
    pub fn current(&self) -> Arc<Roster> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Swaps in a whole new roster.
    pub fn replace(&self, roster: Roster) {
        let _editing = self.editing.lock().unwrap_or_else(PoisonError::into_inner);
        self.swap(roster);
    }

    /// Runs `edit` on a copy of the current roster, one edit at a time, and swaps the copy in
    /// when `edit` succeeds (nothing changes when it fails). Blocking: `edit` typically writes
    /// to the store first, so that the store and the roster change together.
    pub fn edit<T, E>(&self, edit: impl FnOnce(&mut Roster) -> Result<T, E>) -> Result<T, E> {
        let _editing = self.editing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = Roster::clone(&self.current());
        let out = edit(&mut next)?;
        self.swap(next);
        Ok(out)
    }

    fn swap(&self, roster: Roster) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(roster);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str) -> store::Agent {
        store::Agent::new(id.parse().unwrap())
    }

    #[test]
    fn edits_swap_whole_rosters_and_failures_change_nothing() {
        let live = LiveRoster::new(Roster::default());
        let before = live.current();
        let creds = Credentials::derive(&"bob".parse().unwrap(), "example.com", "pw");
        live.edit(|r| {
            r.put_agent(&agent("bob"), Some(&creds));
            r.put_group(&Group { id: "g".parse().unwrap(), members: vec!["bob".parse().unwrap()] });
            Ok::<_, ()>(())
        })
        .unwrap();
        // A reader holding the old roster keeps a consistent view.
        assert!(before.agents.is_empty());
        let now = live.current();
        assert!(now.directory.contains("bob"));
        assert_eq!(now.members("g"), ["bob"]);

        let failed: Result<(), &str> = live.edit(|r| {
            r.remove_agent("bob");
            Err("store refused")
        });
        assert!(failed.is_err());
        assert!(live.current().agents.contains_key("bob"));

        live.edit(|r| {
            r.remove_agent("bob");
            Ok::<_, ()>(())
        })
        .unwrap();
        let now = live.current();
        assert!(!now.directory.contains("bob") && now.agents.is_empty());
        assert!(now.members("g").is_empty());
    }

    #[test]
    fn a_profile_without_credentials_keeps_the_known_ones() {
        let mut r = Roster::default();
        let creds = Credentials::derive(&"bob".parse().unwrap(), "example.com", "pw");
        r.put_agent(&agent("bob"), Some(&creds));
        let mut renamed = agent("bob");
        renamed.name = Some("Bob".into());
        r.put_agent(&renamed, None);
        assert!(r.directory.contains("bob"));
        assert_eq!(r.agents["bob"].name.as_deref(), Some("Bob"));
    }
}
