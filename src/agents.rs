//! The agents seed file (`[agents] seed = "agents.toml"`, DESIGN.md): agents and groups,
//! imported at start.
//!
//! Only `id` and `password` are required. A missing `caller_id`, `mailbox`,
//! `emergency_contacts` or `location` is a warning (`lifeline check` prints it), never an
//! error. Any invalid entry rejects the whole file with `file:line` problems, and nothing of it
//! is used. The password is turned into HA1s (MD5 and SHA-256 over the `[sip] domain` realm)
//! at once and not kept.
//!
//! This in-memory roster stands in for the agents store (SQLite, admin API), which will import
//! the same file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::core::auth::{Directory, Secret};

/// One problem (or warning) in the seed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedIssue {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for SeedIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSeed {
    agent: Vec<Spanned<RawAgent>>,
    group: Vec<Spanned<RawGroup>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: String,
    password: String,
    name: Option<String>,
    #[serde(default)]
    caller_id: Vec<String>,
    capacity: Option<u32>,
    mailbox: Option<String>,
    emergency_contacts: Option<String>,
    location: Option<RawLocation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    country: String,
    address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    id: String,
    members: Vec<String>,
}

/// An agent as the edge needs it for routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub name: Option<String>,
    pub caller_id: Vec<String>,
    pub capacity: u32,
    pub country: Option<String>,
    /// The provisioned dispatchable address (civic location for emergency calls).
    pub address: Option<String>,
}

/// Agents and groups.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    pub agents: BTreeMap<String, Agent>,
    pub groups: BTreeMap<String, Vec<String>>,
    /// Who may authenticate.
    pub directory: Directory,
}

impl Roster {
    /// Members of `group`, in order.
    pub fn members(&self, group: &str) -> &[String] {
        self.groups.get(group).map_or(&[], Vec::as_slice)
    }
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn valid_mail(s: &str) -> bool {
    let s = s.trim();
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Reads the seed file: the roster and its warnings, or every problem.
pub fn load(path: &Path, realm: &str) -> Result<(Roster, Vec<SeedIssue>), Vec<SeedIssue>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![SeedIssue { file: path.to_owned(), line: 0, message: format!("cannot read: {e}") }]
    })?;
    parse(path, &text, realm)
}

/// Parses seed text (`path` names it in problems).
pub fn parse(
    path: &Path,
    text: &str,
    realm: &str,
) -> Result<(Roster, Vec<SeedIssue>), Vec<SeedIssue>> {
    let line = |offset: usize| {
        1 + text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count()
    };
    let issue = |offset: usize, message: String| SeedIssue {
        file: path.to_owned(),
        line: line(offset),
        message,
    };
    let raw: RawSeed = toml::from_str(text)
        .map_err(|e| vec![issue(e.span().map_or(0, |s| s.start), e.message().trim().to_owned())])?;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut roster = Roster::default();
    for entry in &raw.agent {
        let at = entry.span().start;
        let a = entry.get_ref();
        if !valid_id(&a.id) {
            errors.push(issue(
                at,
                format!("agent id '{}': lower-case letters, digits, '.', '_', '-' (1 to 64)", a.id),
            ));
            continue;
        }
        if roster.agents.contains_key(&a.id) {
            errors.push(issue(at, format!("agent '{}' appears twice", a.id)));
            continue;
        }
        if a.password.is_empty() {
            errors.push(issue(at, format!("agent '{}': password must not be empty", a.id)));
        }
        for n in &a.caller_id {
            if crate::routing::E164::parse(n).is_none() {
                errors.push(issue(
                    at,
                    format!("agent '{}': caller_id '{n}' is not an E.164 number", a.id),
                ));
            }
        }
        if let Some(m) = &a.mailbox
            && !valid_mail(m)
        {
            errors
                .push(issue(at, format!("agent '{}': mailbox '{m}' is not a mail address", a.id)));
        }
        if let Some(c) = &a.emergency_contacts {
            for addr in c.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                if !valid_mail(addr) {
                    errors.push(issue(
                        at,
                        format!(
                            "agent '{}': emergency contact '{addr}' is not a mail address",
                            a.id
                        ),
                    ));
                }
            }
        }
        if let Some(l) = &a.location
            && (l.country.len() != 2 || !l.country.bytes().all(|b| b.is_ascii_uppercase()))
        {
            errors.push(issue(
                at,
                format!(
                    "agent '{}': location country '{}' is not ISO 3166 alpha-2",
                    a.id, l.country
                ),
            ));
        }
        let capacity = a.capacity.unwrap_or(1);
        if capacity > 1000 {
            errors.push(issue(at, format!("agent '{}': capacity {capacity} is above 1000", a.id)));
        }
        // Missing business data never blocks anything, emergency calls least of all.
        let missing: Vec<&str> = [
            ("caller_id", a.caller_id.is_empty()),
            ("mailbox", a.mailbox.is_none()),
            (
                "emergency_contacts",
                a.emergency_contacts.as_deref().is_none_or(|c| c.trim().is_empty()),
            ),
            ("location", a.location.is_none()),
        ]
        .into_iter()
        .filter_map(|(k, missing)| missing.then_some(k))
        .collect();
        if !missing.is_empty() {
            warnings.push(issue(at, format!("agent '{}' has no {}", a.id, missing.join(", "))));
        }
        roster.directory.insert(&a.id, Secret::from_password(&a.id, realm, &a.password));
        roster.agents.insert(
            a.id.clone(),
            Agent {
                id: a.id.clone(),
                name: a.name.clone(),
                caller_id: a.caller_id.clone(),
                capacity,
                country: a.location.as_ref().map(|l| l.country.clone()),
                address: a.location.as_ref().and_then(|l| l.address.clone()),
            },
        );
    }
    for entry in &raw.group {
        let at = entry.span().start;
        let g = entry.get_ref();
        if !valid_id(&g.id) || roster.groups.contains_key(&g.id) {
            errors.push(issue(at, format!("group id '{}' is invalid or appears twice", g.id)));
            continue;
        }
        for m in &g.members {
            if !roster.agents.contains_key(m) {
                errors.push(issue(
                    at,
                    format!("group '{}': member '{m}' is not an agent of this file", g.id),
                ));
            }
        }
        roster.groups.insert(g.id.clone(), g.members.clone());
    }
    if errors.is_empty() { Ok((roster, warnings)) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"
[[agent]]
id = "alice"
password = "secret"
name = "Alice Doe"
caller_id = ["+15550100123"]
capacity = 2
mailbox = "alice@example.com"
emergency_contacts = "security@example.com;manager@example.com"
location = { country = "US", address = "1 Main St, Springfield, IL 62701" }

[[agent]]
id = "bob"
password = "hunter2"

[[group]]
id = "support"
members = ["alice", "bob"]
"#;

    #[test]
    fn agents_groups_and_warnings() {
        let (roster, warnings) = parse(Path::new("agents.toml"), SEED, "cc.example.com").unwrap();
        assert_eq!(roster.agents["alice"].capacity, 2);
        assert_eq!(roster.agents["alice"].country.as_deref(), Some("US"));
        assert_eq!(roster.members("support"), ["alice", "bob"]);
        assert!(roster.directory.contains("bob"));
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            warnings[0].to_string(),
            "agents.toml:12: agent 'bob' has no caller_id, mailbox, emergency_contacts, location"
        );
    }

    #[test]
    fn a_bad_entry_rejects_the_file_with_lines() {
        let bad = "[[agent]]\nid = \"Alice\"\npassword = \"x\"\n\n[[agent]]\nid = \"carol\"\npassword = \"x\"\nmailbox = \"not-an-address\"\ncaller_id = [\"5550100\"]\n\n[[group]]\nid = \"g\"\nmembers = [\"dave\"]\n";
        let errs = parse(Path::new("a.toml"), bad, "r").unwrap_err();
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(shown[0].starts_with("a.toml:1: agent id 'Alice'"), "{shown:?}");
        assert!(
            shown.iter().any(|e| e.starts_with("a.toml:5: agent 'carol': caller_id '5550100'")),
            "{shown:?}"
        );
        assert!(
            shown.iter().any(|e| e.starts_with("a.toml:5: agent 'carol': mailbox")),
            "{shown:?}"
        );
        assert!(
            shown.iter().any(|e| e.starts_with("a.toml:11: group 'g': member 'dave'")),
            "{shown:?}"
        );
        let unknown =
            parse(Path::new("u.toml"), "[[agent]]\nid = \"a\"\npassword = \"p\"\nshoe = 1\n", "r")
                .unwrap_err();
        assert!(unknown[0].message.contains("shoe"), "{unknown:?}");
    }
}
