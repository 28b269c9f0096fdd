//! `agents.toml`, the seed file named by `[agents] seed`: imported at start, upserted by id.
//!
//! ```toml
//! [[agent]]
//! id = "alice"                         # required: SIP user name and API id
//! password = "secret"                  # required: stored as HA1 only
//! name = "Alice Doe"
//! caller_id = ["+15550100123"]
//! capacity = 2                         # default 1
//! mailbox = "alice@example.com"
//! emergency_contacts = "security@example.com;manager@example.com"
//! location = { country = "US", address = "1 Main St, Springfield, IL 62701" }
//!
//! [[group]]
//! id = "support"
//! members = ["alice", "bob"]
//! ```
//!
//! Unknown keys are errors. Every problem is reported as `file:line: message`, all at once (a
//! TOML syntax or structure error stops at the first one). If anything is wrong, nothing of the
//! file is applied; otherwise every agent (profile and credentials; presence is kept) and then
//! every group is upserted in one transaction. A missing `caller_id`, `mailbox`,
//! `emergency_contacts` or `location` is a warning ([`super::warnings_for`]), never an error.
//! Agents and groups that are in the store but not in the file are left alone.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::types::{Agent, Credentials, Group};
use super::validate::{
    AgentDraft, AgentId, GroupId, LocationDraft, check_password, check_realm, warnings_for,
};
use super::{Store, StoreError};

/// One problem (or warning) in the seed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedProblem {
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is not about one place in the file.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SeedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Every error found in the seed file; none of it was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedErrors(pub Vec<SeedProblem>);

impl fmt::Display for SeedErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SeedErrors {}

/// A valid seed file, ready to apply.
#[derive(Debug, Clone)]
pub struct Seed {
    pub file: PathBuf,
    /// Agents with the HA1 of their password for the realm given to [`parse`].
    pub agents: Vec<(Agent, Credentials)>,
    pub groups: Vec<Group>,
    pub warnings: Vec<SeedProblem>,
    /// Line of each member of each group, for reporting members the store does not know.
    member_lines: HashMap<(GroupId, AgentId), usize>,
}

/// What [`import`] applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedReport {
    pub agents: usize,
    pub groups: usize,
    pub warnings: Vec<SeedProblem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    agent: Vec<Spanned<RawAgent>>,
    #[serde(default)]
    group: Vec<Spanned<RawGroup>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: Spanned<String>,
    password: Spanned<String>,
    name: Option<Spanned<String>>,
    caller_id: Option<Spanned<Vec<String>>>,
    capacity: Option<Spanned<i64>>,
    mailbox: Option<Spanned<String>>,
    emergency_contacts: Option<Spanned<String>>,
    location: Option<Spanned<RawLocation>>,
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
    id: Spanned<String>,
    #[serde(default)]
    members: Vec<Spanned<String>>,
}

/// Turns byte offsets into lines and collects problems.
struct Report<'a> {
    file: &'a Path,
    text: &'a str,
    /// The digest realm passwords are hashed for.
    realm: &'a str,
    errors: Vec<SeedProblem>,
    warnings: Vec<SeedProblem>,
}

impl Report<'_> {
    fn line_of(&self, span: &Range<usize>) -> usize {
        crate::config::line_of(self.text, span.start)
    }

    fn problem(&self, line: usize, message: String) -> SeedProblem {
        SeedProblem { file: self.file.to_owned(), line, message }
    }

    fn error(&mut self, span: &Range<usize>, message: String) {
        let p = self.problem(self.line_of(span), message);
        self.errors.push(p);
    }

    fn warn(&mut self, span: &Range<usize>, message: String) {
        let p = self.problem(self.line_of(span), message);
        self.warnings.push(p);
    }
}

/// Parses and validates a seed file and hashes its passwords for `realm` (the `[sip] domain`).
/// Pure: reads nothing, writes nothing; `lifeline check` runs exactly this. Members of groups
/// that are not agents of this file are checked against the store by [`apply`].
pub fn parse(file: &Path, text: &str, realm: &str) -> Result<Seed, SeedErrors> {
    let mut report = Report { file, text, realm, errors: Vec::new(), warnings: Vec::new() };
    if let Err(e) = check_realm(realm) {
        report.errors.push(report.problem(0, format!("[sip] domain as digest {e}")));
        return Err(SeedErrors(report.errors));
    }
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| report.line_of(&s));
        SeedErrors(vec![report.problem(line, e.message().trim().to_owned())])
    })?;

    let mut agents = Vec::new();
    // By the id as written, so a duplicate is found even when the first entry is invalid.
    let mut agent_lines: HashMap<&str, usize> = HashMap::new();
    for entry in &raw.agent {
        let id = &entry.get_ref().id;
        if let Some(first) = agent_lines.get(id.get_ref().as_str()) {
            let msg = format!("agent {} is already defined at line {first}", id.get_ref());
            report.error(&id.span(), msg);
            continue;
        }
        agent_lines.insert(id.get_ref(), report.line_of(&id.span()));
        let Some((agent, credentials)) = agent_entry(&mut report, entry) else {
            continue;
        };
        for w in warnings_for(&agent) {
            report.warn(&entry.span(), w.message);
        }
        agents.push((agent, credentials));
    }

    let mut groups = Vec::new();
    let mut group_lines: HashMap<GroupId, usize> = HashMap::new();
    let mut member_lines = HashMap::new();
    for entry in &raw.group {
        let g = entry.get_ref();
        let id = match g.id.get_ref().parse::<GroupId>() {
            Ok(id) => id,
            Err(e) => {
                report.error(&g.id.span(), format!("group id: {e}"));
                continue;
            }
        };
        if let Some(first) = group_lines.get(&id) {
            let msg = format!("group {id} is already defined at line {first}");
            report.error(&g.id.span(), msg);
            continue;
        }
        group_lines.insert(id.clone(), report.line_of(&g.id.span()));
        let mut members: Vec<AgentId> = Vec::new();
        let mut ok = true;
        for m in &g.members {
            match m.get_ref().parse::<AgentId>() {
                Ok(a) if members.contains(&a) => {
                    report.error(&m.span(), format!("group {id}: member {a} is listed twice"));
                    ok = false;
                }
                Ok(a) => {
                    member_lines.insert((id.clone(), a.clone()), report.line_of(&m.span()));
                    members.push(a);
                }
                Err(e) => {
                    report.error(&m.span(), format!("group {id}: members: {e}"));
                    ok = false;
                }
            }
        }
        let group = Group { id, members };
        if let Err(e) = group.check() {
            report.error(&entry.span(), format!("group {}: {e}", group.id));
            ok = false;
        }
        if ok {
            groups.push(group);
        }
    }

    if !report.errors.is_empty() {
        report.errors.sort_by_key(|p| p.line);
        return Err(SeedErrors(report.errors));
    }
    Ok(Seed { file: file.to_owned(), agents, groups, warnings: report.warnings, member_lines })
}

/// One `[[agent]]`: the typed agent and its credentials, or `None` after reporting every
/// problem of the entry.
fn agent_entry(report: &mut Report<'_>, entry: &Spanned<RawAgent>) -> Option<(Agent, Credentials)> {
    let a = entry.get_ref();
    let draft = AgentDraft {
        id: a.id.get_ref().clone(),
        name: a.name.as_ref().map(|s| s.get_ref().clone()),
        caller_id: a.caller_id.as_ref().map(|s| s.get_ref().clone()).unwrap_or_default(),
        capacity: a.capacity.as_ref().map(|s| *s.get_ref()),
        mailbox: a.mailbox.as_ref().map(|s| s.get_ref().clone()),
        emergency_contacts: a.emergency_contacts.as_ref().map(|s| s.get_ref().clone()),
        location: a.location.as_ref().map(|l| LocationDraft {
            country: l.get_ref().country.clone(),
            address: l.get_ref().address.clone(),
        }),
    };
    // The span of the field a problem is about; the entry itself when the field is absent.
    let span_of = |field: &str| -> Range<usize> {
        let span = match field {
            "id" => Some(a.id.span()),
            "name" => a.name.as_ref().map(Spanned::span),
            "caller_id" => a.caller_id.as_ref().map(Spanned::span),
            "capacity" => a.capacity.as_ref().map(Spanned::span),
            "mailbox" => a.mailbox.as_ref().map(Spanned::span),
            "emergency_contacts" => a.emergency_contacts.as_ref().map(Spanned::span),
            f if f.starts_with("location") => a.location.as_ref().map(Spanned::span),
            "password" => Some(a.password.span()),
            _ => None,
        };
        span.unwrap_or_else(|| entry.span())
    };
    let who = a.id.get_ref();
    let password = check_password(a.password.get_ref());
    let agent = draft.validate_all();
    for e in password.as_ref().err().into_iter().chain(agent.as_ref().err().into_iter().flatten()) {
        let field = match e {
            StoreError::Invalid { field, .. } => *field,
            _ => "",
        };
        report.error(&span_of(field), format!("agent {who}: {e}"));
    }
    let agent = agent.ok()?;
    password.ok()?;
    let credentials = Credentials::derive(&agent.id, report.realm, a.password.get_ref());
    Some((agent, credentials))
}

/// Applies a parsed seed: members of groups that are not agents of the file must be in the
/// store; then everything is upserted in one transaction. On any error nothing is applied.
pub fn apply(store: &dyn Store, seed: &Seed) -> Result<SeedReport, SeedErrors> {
    let in_file: HashSet<&AgentId> = seed.agents.iter().map(|(a, _)| &a.id).collect();
    let mut errors = Vec::new();
    let problem = |line, message| SeedProblem { file: seed.file.clone(), line, message };
    for g in &seed.groups {
        for m in g.members.iter().filter(|m| !in_file.contains(m)) {
            match store.agent(m) {
                Ok(_) => {}
                Err(StoreError::NotFound { .. }) => {
                    let line =
                        seed.member_lines.get(&(g.id.clone(), m.clone())).copied().unwrap_or(0);
                    errors.push(problem(
                        line,
                        format!("group {}: no agent '{m}' in this file or the store", g.id),
                    ));
                }
                Err(e) => errors.push(problem(0, format!("not applied: {e}"))),
            }
        }
    }
    if !errors.is_empty() {
        return Err(SeedErrors(errors));
    }
    store
        .import(&seed.agents, &seed.groups)
        .map_err(|e| SeedErrors(vec![problem(0, format!("not applied: {e}"))]))?;
    Ok(SeedReport {
        agents: seed.agents.len(),
        groups: seed.groups.len(),
        warnings: seed.warnings.clone(),
    })
}

/// Reads, parses and applies the seed file at `path`. Whether a missing file is acceptable is
/// the caller's decision: here it is an error like any other.
pub fn import(store: &dyn Store, path: &Path, realm: &str) -> Result<SeedReport, SeedErrors> {
    let text = fs::read_to_string(path).map_err(|e| {
        SeedErrors(vec![SeedProblem {
            file: path.to_owned(),
            line: 0,
            message: format!("cannot read: {e}"),
        }])
    })?;
    apply(store, &parse(path, &text, realm)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TempDb;
    use crate::store::{Presence, PresenceSetter, PresenceState};

    const GOOD: &str = r#"
[[agent]]
id = "alice"                         # SIP user name and API id
password = "secret"                  # stored as HA1 only
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

    fn file() -> &'static Path {
        Path::new("agents.toml")
    }

    fn messages(e: &SeedErrors) -> Vec<String> {
        e.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn good_file_parses_with_warnings_at_the_entry_line() {
        let seed = parse(file(), GOOD, "example.com").unwrap();
        assert_eq!(seed.agents.len(), 2);
        let (alice, creds) = &seed.agents[0];
        assert_eq!(alice.capacity, 2);
        assert_eq!(alice.emergency_contacts.len(), 2);
        assert_eq!(creds, &Credentials::derive(&alice.id, "example.com", "secret"));
        assert_eq!(seed.groups[0].members.len(), 2);
        let warnings: Vec<String> = seed.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        for w in &warnings {
            assert!(w.starts_with("agents.toml:12: agent bob has no "), "{w}");
        }
        assert!(warnings.iter().any(|w| w.contains("no mailbox")));
        assert!(warnings.iter().any(|w| w.contains("no location")));
    }

    #[test]
    fn every_bad_value_is_reported_with_its_line() {
        let text = r#"
[[agent]]
id = "alice"
password = "secret"
caller_id = ["5550100123"]
capacity = 5000

[[agent]]
id = "Bob"
password = ""
mailbox = "bob-at-example"
location = { country = "usa" }

[[agent]]
id = "alice"
password = "again"

[[group]]
id = "support"
members = ["alice", "alice", "Carol"]
"#;
        let errs = parse(file(), text, "example.com").unwrap_err();
        let m = messages(&errs);
        let expect = [
            ("agents.toml:5:", "caller_id"),
            ("agents.toml:6:", "capacity"),
            ("agents.toml:9:", "agent id"),
            ("agents.toml:10:", "password"),
            ("agents.toml:11:", "mailbox"),
            ("agents.toml:12:", "location.country"),
            ("agents.toml:15:", "already defined at line 3"),
            ("agents.toml:20:", "listed twice"),
            ("agents.toml:20:", "Carol"),
        ];
        assert_eq!(m.len(), expect.len(), "{m:#?}");
        for (got, (at, what)) in m.iter().zip(expect) {
            assert!(got.starts_with(at) && got.contains(what), "{got} vs {at} {what}");
        }
    }

    #[test]
    fn unknown_keys_and_missing_required_keys_are_errors() {
        let unknown = "[[agent]]\nid = \"a\"\npassword = \"p\"\ncolour = \"red\"\n";
        let m = messages(&parse(file(), unknown, "example.com").unwrap_err());
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("agents.toml:4:") && m[0].contains("colour"), "{m:?}");

        let top = "[[agents]]\nid = \"a\"\n";
        let m = messages(&parse(file(), top, "example.com").unwrap_err());
        assert!(m[0].starts_with("agents.toml:1:") && m[0].contains("agents"), "{m:?}");

        let missing = "\n[[agent]]\nid = \"a\"\n";
        let m = messages(&parse(file(), missing, "example.com").unwrap_err());
        assert!(m[0].contains("password"), "{m:?}");
        assert!(!m[0].starts_with("agents.toml:0:"), "{m:?}");

        let syntax = "[[agent]]\nid = \n";
        let m = messages(&parse(file(), syntax, "example.com").unwrap_err());
        assert!(m[0].starts_with("agents.toml:2:"), "{m:?}");
    }

    #[test]
    fn import_applies_all_or_nothing_and_keeps_presence() {
        let db = TempDb::new("seed");
        let store = db.open();
        let path = db.path().with_file_name("agents.toml");
        std::fs::write(&path, GOOD).unwrap();

        let report = import(&store, &path, "example.com").unwrap();
        assert_eq!((report.agents, report.groups, report.warnings.len()), (2, 1, 4));
        let alice: AgentId = "alice".parse().unwrap();
        assert_eq!(store.agent(&alice).unwrap().name.as_deref(), Some("Alice Doe"));
        assert_eq!(
            store.credentials(&alice).unwrap(),
            Some(Credentials::derive(&alice, "example.com", "secret"))
        );
        let away =
            Presence { state: PresenceState::Away, previous: None, set_by: PresenceSetter::Agent };
        store.set_presence(&alice, &away).unwrap();

        // Re-import: upsert by id, presence kept, credentials follow the file.
        let changed =
            GOOD.replace("\"secret\"", "\"rotated\"").replace("capacity = 2", "capacity = 3");
        std::fs::write(&path, &changed).unwrap();
        import(&store, &path, "example.com").unwrap();
        assert_eq!(store.agent(&alice).unwrap().capacity, 3);
        assert_eq!(store.presence(&alice).unwrap(), away);
        assert_eq!(
            store.credentials(&alice).unwrap(),
            Some(Credentials::derive(&alice, "example.com", "rotated"))
        );

        // A bad file applies nothing, not even its good entries.
        let bad = changed.replace("capacity = 3", "capacity = 4")
            + "\n[[agent]]\nid = \"x y\"\npassword = \"p\"\n";
        std::fs::write(&path, &bad).unwrap();
        let errs = import(&store, &path, "example.com").unwrap_err();
        assert_eq!(errs.0.len(), 1, "{errs}");
        assert!(errs.0[0].to_string().starts_with(&format!("{}:21:", path.display())), "{errs}");
        assert_eq!(store.agent(&alice).unwrap().capacity, 3);

        // A member neither in the file nor in the store is reported at its line.
        let orphan = "[[group]]\nid = \"night\"\nmembers = [\"bob\", \"zed\"]\n";
        std::fs::write(&path, orphan).unwrap();
        let errs = import(&store, &path, "example.com").unwrap_err();
        assert_eq!(errs.0.len(), 1, "{errs}");
        assert!(errs.0[0].to_string().contains(":3: group night: no agent 'zed'"), "{errs}");
        assert!(store.group(&"night".parse().unwrap()).is_err());

        let missing = import(&store, &path.with_file_name("nope.toml"), "example.com").unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
    }
}
