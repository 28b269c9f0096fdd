//! The roster: the agents and groups the core routes to and authenticates, read from the
//! store ([`crate::store`]) at start, after the `[agents] seed` file (if any) was imported
//! into it by [`crate::store::seed`].
//!
//! The core holds an immutable snapshot: it never waits on the database while handling SIP.

use std::collections::BTreeMap;

use sip::digest::{Algorithm, Ha1};

use crate::core::auth::{Directory, Secret};
use crate::store::{AgentId, GroupId, Store, StoreError};

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
                if let Some(c) = store.credentials(&a.id)? {
                    let md5 = Ha1::from_hex(Algorithm::Md5, &c.ha1_md5);
                    let sha256 = Ha1::from_hex(Algorithm::Sha256, &c.ha1_sha256);
                    if let (Some(md5), Some(sha256)) = (md5, sha256) {
                        roster.directory.insert(a.id.as_str(), Secret { md5, sha256 });
                    }
                }
                roster.agents.insert(
                    a.id.as_str().to_owned(),
                    Agent {
                        id: a.id.as_str().to_owned(),
                        name: a.name.clone(),
                        caller_id: a.caller_id.iter().map(ToString::to_string).collect(),
                        capacity: a.capacity,
                        country: a.location.as_ref().map(|l| l.country.to_string()),
                    },
                );
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
                roster.groups.insert(
                    g.id.to_string(),
                    g.members.iter().map(|m| m.as_str().to_owned()).collect(),
                );
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.id.clone()),
                _ => break,
            }
        }
        Ok(roster)
    }
}
