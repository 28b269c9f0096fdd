//! Every rule about what a stored value may look like, in one place.
//!
//! Identifiers and addresses are newtypes that can only be built through these rules
//! ([`AgentId`], [`GroupId`], [`E164`], [`Email`], [`CountryCode`], [`Token`]); their `FromStr`
//! says what is wrong without naming a field, because the same type is used by several fields.
//! The `parse_*` functions and [`AgentDraft::validate`] attach the field name the admin API
//! reports (`{ "error": { "code", "message", "field" } }`) and the seed import turns into a line.
//! Whole-record rules (capacity range, text lengths, duplicates) are [`Agent::check`],
//! [`Group::check`] and [`OutboxMessage::check`]; the store runs them before every write, so an
//! invalid write changes nothing.

use std::fmt;
use std::str::FromStr;

use super::StoreError;
use super::types::{Agent, Credentials, Group, Location, OutboxMessage, Template};

/// Why a value was refused; the caller knows which field it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue(pub String);

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidValue {}

impl InvalidValue {
    /// The same problem, reported against `field`.
    pub fn field(self, field: &'static str) -> StoreError {
        StoreError::Invalid { field, message: self.0 }
    }
}

fn invalid(message: impl Into<String>) -> InvalidValue {
    InvalidValue(message.into())
}

/// Concurrent calls an agent takes when no `capacity` is given.
pub const DEFAULT_CAPACITY: u32 = 1;
/// Largest accepted `capacity`.
pub const MAX_CAPACITY: u32 = 1000;
/// Longest accepted display name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest accepted civic address, in characters.
pub const MAX_ADDRESS_CHARS: usize = 512;
/// Most caller-ID numbers or emergency contacts one agent may have.
pub const MAX_LIST_LEN: usize = 32;
/// Longest accepted password, in bytes (only its hashes are kept).
pub const MAX_PASSWORD_BYTES: usize = 256;

/// Implements the common parts of a validated string newtype.
macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidValue;
            fn try_from(s: &str) -> Result<Self, InvalidValue> {
                s.parse()
            }
        }
    };
}

fn check_id(kind: &str, s: &str) -> Result<(), InvalidValue> {
    if s.is_empty() || s.len() > 64 {
        return Err(invalid(format!("{kind} '{s}' must be 1 to 64 characters")));
    }
    if let Some(c) = s.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-')) {
        return Err(invalid(format!(
            "{kind} '{s}' has '{c}'; use only a-z, 0-9, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// An agent's id: its SIP user name and its admin API id. `[a-z0-9._-]`, 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId(String);
string_newtype!(AgentId);

impl FromStr for AgentId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_id("agent id", s)?;
        Ok(Self(s.to_owned()))
    }
}

/// A group's id (`group:NAME` in dialplans). Same alphabet as [`AgentId`]; its own namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(String);
string_newtype!(GroupId);

impl FromStr for GroupId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_id("group id", s)?;
        Ok(Self(s.to_owned()))
    }
}

/// A telephone number in E.164 form: `+`, a non-zero digit, 1 to 14 more digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct E164(String);
string_newtype!(E164);

impl FromStr for E164 {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let bad = || invalid(format!("'{s}' is not an E.164 number (+ and 2 to 15 digits)"));
        let digits = s.strip_prefix('+').ok_or_else(bad)?;
        let ok = (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok { Ok(Self(s.to_owned())) } else { Err(bad()) }
    }
}

/// An e-mail address in the plain `local@domain` shape (no display name, no quoting, no
/// comments): what a mailbox or an emergency contact must be to be handed to the SMTP relay
/// without further parsing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);
string_newtype!(Email);

impl FromStr for Email {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let bad = |why: &str| invalid(format!("'{s}' is not an e-mail address: {why}"));
        if s.len() > 254 {
            return Err(bad("longer than 254 characters"));
        }
        let (local, domain) = s.split_once('@').ok_or_else(|| bad("no '@'"))?;
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
        if local.is_empty() || local.len() > 64 {
            return Err(bad("the part before '@' must be 1 to 64 characters"));
        }
        if local.split('.').any(|atom| atom.is_empty() || !atom.chars().all(atext)) {
            return Err(bad("unexpected character or dot before '@'"));
        }
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if domain.is_empty() || !domain.split('.').all(label_ok) {
            return Err(bad("the domain must be dot-separated labels of a-z, 0-9 and '-'"));
        }
        Ok(Self(s.to_owned()))
    }
}

/// An ISO 3166-1 alpha-2 country code: two uppercase letters (`US`, `PR`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode(String);
string_newtype!(CountryCode);

impl FromStr for CountryCode {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(format!(
                "'{s}' is not an ISO 3166 alpha-2 country code (two uppercase letters)"
            )))
        }
    }
}

/// A short lowercase token: a custom presence state, a template name. `[a-z0-9._-]`, 1 to 32.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(String);
string_newtype!(Token);

impl FromStr for Token {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let ok = (1..=32).contains(&s.len())
            && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(format!("'{s}' must be 1 to 32 characters of a-z, 0-9, '.', '_' and '-'")))
        }
    }
}

/// One line of human text: no control characters, at most `max` characters, not blank.
fn check_line(field: &'static str, s: &str, max: usize) -> Result<(), StoreError> {
    if s.trim().is_empty() {
        return Err(invalid("must not be empty (leave it out instead)").field(field));
    }
    if s.chars().count() > max {
        return Err(invalid(format!("longer than {max} characters")).field(field));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid("must be one line without control characters").field(field));
    }
    Ok(())
}

/// `caller_id`: E.164 numbers, no duplicates.
pub fn parse_caller_id<S: AsRef<str>>(numbers: &[S]) -> Result<Vec<E164>, StoreError> {
    let mut out: Vec<E164> = Vec::with_capacity(numbers.len());
    for n in numbers {
        let n: E164 = n.as_ref().parse().map_err(|e: InvalidValue| e.field("caller_id"))?;
        if out.contains(&n) {
            return Err(invalid(format!("{n} is listed twice")).field("caller_id"));
        }
        out.push(n);
    }
    check_list_len("caller_id", out.len())?;
    Ok(out)
}

/// `emergency_contacts`: addresses separated by `;` (blanks around them and empty entries,
/// e.g. a trailing `;`, are ignored), no duplicates.
pub fn parse_contacts(list: &str) -> Result<Vec<Email>, StoreError> {
    let mut out: Vec<Email> = Vec::new();
    for part in list.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let e: Email = part.parse().map_err(|e: InvalidValue| e.field("emergency_contacts"))?;
        if out.contains(&e) {
            return Err(invalid(format!("{e} is listed twice")).field("emergency_contacts"));
        }
        out.push(e);
    }
    check_list_len("emergency_contacts", out.len())?;
    Ok(out)
}

/// Joins contacts back into the `;`-separated form of `agents.toml`.
pub fn join_contacts(contacts: &[Email]) -> String {
    let parts: Vec<&str> = contacts.iter().map(Email::as_str).collect();
    parts.join(";")
}

/// `mailbox`: one address.
pub fn parse_mailbox(s: &str) -> Result<Email, StoreError> {
    s.trim().parse().map_err(|e: InvalidValue| e.field("mailbox"))
}

/// `location`: a country code and an optional civic address.
pub fn parse_location(country: &str, address: Option<&str>) -> Result<Location, StoreError> {
    let country = country.parse().map_err(|e: InvalidValue| e.field("location.country"))?;
    let address = address.map(str::to_owned);
    let location = Location { country, address };
    check_location(&location)?;
    Ok(location)
}

/// `capacity`: 0 to [`MAX_CAPACITY`] concurrent calls (0: no routed calls; PSAP callbacks
/// still ring).
pub fn parse_capacity(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n)
        .ok()
        .filter(|c| *c <= MAX_CAPACITY)
        .ok_or_else(|| invalid(format!("{n} is not within 0..={MAX_CAPACITY}")).field("capacity"))
}

/// `password`: 1 to [`MAX_PASSWORD_BYTES`] bytes. Never stored; only its HA1 hashes are.
pub fn check_password(password: &str) -> Result<(), StoreError> {
    if password.is_empty() {
        return Err(invalid("must not be empty").field("password"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid(format!("longer than {MAX_PASSWORD_BYTES} bytes")).field("password"));
    }
    Ok(())
}

/// `realm` of a credential: the `[sip] domain`.
pub fn check_realm(realm: &str) -> Result<(), StoreError> {
    if realm.is_empty() || realm.len() > 255 || realm.contains(|c: char| c.is_control() || c == '"')
    {
        return Err(invalid(format!("'{realm}' is not a usable digest realm")).field("realm"));
    }
    Ok(())
}

fn check_list_len(field: &'static str, len: usize) -> Result<(), StoreError> {
    if len > MAX_LIST_LEN {
        return Err(invalid(format!("more than {MAX_LIST_LEN} entries")).field(field));
    }
    Ok(())
}

fn check_location(l: &Location) -> Result<(), StoreError> {
    match &l.address {
        Some(a) => check_line("location.address", a, MAX_ADDRESS_CHARS),
        None => Ok(()),
    }
}

impl Agent {
    /// The whole-record rules, run by the store before every write of an agent.
    pub fn check(&self) -> Result<(), StoreError> {
        if let Some(name) = &self.name {
            check_line("name", name, MAX_NAME_CHARS)?;
        }
        if self.capacity > MAX_CAPACITY {
            return Err(invalid(format!("{} is not within 0..={MAX_CAPACITY}", self.capacity))
                .field("capacity"));
        }
        // Re-checks duplicates and lengths of lists built directly from typed values.
        parse_caller_id(&self.caller_id)?;
        check_list_len("emergency_contacts", self.emergency_contacts.len())?;
        for (i, c) in self.emergency_contacts.iter().enumerate() {
            if self.emergency_contacts[..i].contains(c) {
                return Err(invalid(format!("{c} is listed twice")).field("emergency_contacts"));
            }
        }
        if let Some(l) = &self.location {
            check_location(l)?;
        }
        Ok(())
    }
}

impl Credentials {
    /// A usable realm and lowercase-hex hashes of the right lengths.
    pub fn check(&self) -> Result<(), StoreError> {
        check_realm(&self.realm)?;
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !hex(&self.ha1_md5, 32) || !hex(&self.ha1_sha256, 64) {
            return Err(invalid("HA1 must be lowercase hex (32 for MD5, 64 for SHA-256)")
                .field("credentials"));
        }
        Ok(())
    }
}

impl Group {
    /// Members listed at most once. (That they exist is checked by the store, in the write.)
    pub fn check(&self) -> Result<(), StoreError> {
        for (i, m) in self.members.iter().enumerate() {
            if self.members[..i].contains(m) {
                return Err(invalid(format!("{m} is listed twice")).field("members"));
            }
        }
        if self.members.len() > 1000 {
            return Err(invalid("more than 1000 members").field("members"));
        }
        Ok(())
    }
}

/// A header value: one line, so nothing can be injected into the mail headers.
fn check_header(field: &'static str, s: &str) -> Result<(), StoreError> {
    if s.contains(['\r', '\n']) {
        return Err(invalid("must be one line").field(field));
    }
    Ok(())
}

impl OutboxMessage {
    /// At least one recipient; sender and subject are single header lines.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.to.is_empty() {
            return Err(invalid("at least one recipient is needed").field("to"));
        }
        if self.from.trim().is_empty() {
            return Err(invalid("must not be empty").field("from"));
        }
        check_header("from", &self.from)?;
        check_header("subject", &self.subject)
    }
}

impl Template {
    /// The subject is a header line; bodies are free text.
    pub fn check(&self) -> Result<(), StoreError> {
        check_header("subject", &self.subject)
    }
}

/// `r`'s value, or `None` after recording its error.
fn keep<T>(errors: &mut Vec<StoreError>, r: Result<T, StoreError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

/// An agent as it arrives from outside (admin API body, seed file): plain strings, checked by
/// [`AgentDraft::validate`] into an [`Agent`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentDraft {
    pub id: String,
    pub name: Option<String>,
    pub caller_id: Vec<String>,
    /// `None`: [`DEFAULT_CAPACITY`].
    pub capacity: Option<i64>,
    pub mailbox: Option<String>,
    /// The `;`-separated list.
    pub emergency_contacts: Option<String>,
    pub location: Option<LocationDraft>,
}

/// `location = { country, address }` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocationDraft {
    pub country: String,
    pub address: Option<String>,
}

impl AgentDraft {
    /// The typed agent, or the first problem with the name of its field.
    pub fn validate(&self) -> Result<Agent, StoreError> {
        self.validate_all().map_err(|errors| {
            errors.into_iter().next().unwrap_or_else(|| StoreError::Invalid {
                field: "id",
                message: "invalid agent".into(),
            })
        })
    }

    /// The typed agent, or every problem (one per field), each naming its field. Never returns
    /// an empty error list.
    pub fn validate_all(&self) -> Result<Agent, Vec<StoreError>> {
        let mut errors = Vec::new();
        let id = keep(&mut errors, self.id.parse().map_err(|e: InvalidValue| e.field("id")));
        let name = match &self.name {
            Some(n) => {
                keep(&mut errors, check_line("name", n, MAX_NAME_CHARS).map(|()| Some(n.clone())))
            }
            None => Some(None),
        };
        let caller_id = keep(&mut errors, parse_caller_id(&self.caller_id));
        let capacity =
            keep(&mut errors, parse_capacity(self.capacity.unwrap_or(DEFAULT_CAPACITY.into())));
        let mailbox = match &self.mailbox {
            Some(m) => keep(&mut errors, parse_mailbox(m).map(Some)),
            None => Some(None),
        };
        let emergency_contacts = match &self.emergency_contacts {
            Some(c) => keep(&mut errors, parse_contacts(c)),
            None => Some(Vec::new()),
        };
        let location = match &self.location {
            Some(l) => {
                keep(&mut errors, parse_location(&l.country, l.address.as_deref()).map(Some))
            }
            None => Some(None),
        };
        match (id, name, caller_id, capacity, mailbox, emergency_contacts, location) {
            (
                Some(id),
                Some(name),
                Some(caller_id),
                Some(capacity),
                Some(mailbox),
                Some(emergency_contacts),
                Some(location),
            ) if errors.is_empty() => {
                Ok(Agent { id, name, caller_id, capacity, mailbox, emergency_contacts, location })
            }
            _ => Err(errors),
        }
    }
}

/// Something missing from an agent that degrades emergency or ordinary calls without blocking
/// them (DESIGN.md: warnings, never errors). `lifeline check`, the admin API and the seed import
/// report these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentWarning {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for AgentWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What is missing from `agent`, in field order. Pure: no store, no configuration.
pub fn warnings_for(agent: &Agent) -> Vec<AgentWarning> {
    let id = &agent.id;
    let mut out = Vec::new();
    let mut warn = |field, message: String| out.push(AgentWarning { field, message });
    if agent.caller_id.is_empty() {
        warn(
            "caller_id",
            format!("agent {id} has no caller_id: no outbound profile for ordinary calls"),
        );
    }
    if agent.capacity == 0 {
        warn(
            "capacity",
            format!("agent {id} has capacity 0: no routed calls (PSAP callbacks still ring)"),
        );
    }
    if agent.mailbox.is_none() {
        warn("mailbox", format!("agent {id} has no mailbox"));
    }
    if agent.emergency_contacts.is_empty() {
        warn(
            "emergency_contacts",
            format!(
                "agent {id} has no emergency_contacts: nobody is e-mailed about an emergency call"
            ),
        );
    }
    match &agent.location {
        None => warn(
            "location",
            format!(
                "agent {id} has no location: emergency calls carry only what the softphone \
                 sends, and every configured country's dialstrings apply"
            ),
        ),
        Some(l) if l.address.is_none() => warn(
            "location.address",
            format!("agent {id} has a country but no civic address for emergency calls"),
        ),
        Some(_) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!("alice".parse::<AgentId>().is_ok());
        assert!("a.b_c-9".parse::<AgentId>().is_ok());
        assert!("Alice".parse::<AgentId>().is_err());
        assert!("".parse::<AgentId>().is_err());
        assert!("a b".parse::<AgentId>().is_err());
        assert!("a".repeat(64).parse::<AgentId>().is_ok());
        assert!("a".repeat(65).parse::<AgentId>().is_err());
        assert!("sup:port".parse::<GroupId>().is_err());
    }

    #[test]
    fn e164() {
        for ok in ["+15550100123", "+12", "+123456789012345"] {
            assert!(ok.parse::<E164>().is_ok(), "{ok}");
        }
        for bad in ["15550100123", "+0555", "+1", "+1234567890123456", "+1 555", "+", "+1a"] {
            assert!(bad.parse::<E164>().is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        for ok in ["a@b", "alice.doe+x@example.com", "o'neil@ex-ample.co.uk"] {
            assert!(ok.parse::<Email>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "alice",
            "@x.com",
            "a@",
            "a@@b",
            "a b@c.d",
            "a..b@c.d",
            ".a@c.d",
            "a@-c.d",
            "a@c..d",
            "Alice <a@b.c>",
            "a@b.c;d@e.f",
        ] {
            assert!(bad.parse::<Email>().is_err(), "{bad}");
        }
    }

    #[test]
    fn contacts_list() {
        let c = parse_contacts(" a@x.com ; b@y.org; ").unwrap();
        assert_eq!(join_contacts(&c), "a@x.com;b@y.org");
        let e = parse_contacts("a@x.com;nope").unwrap_err();
        assert!(matches!(e, StoreError::Invalid { field: "emergency_contacts", .. }), "{e}");
        assert!(parse_contacts("a@x.com;a@x.com").is_err());
        assert!(parse_contacts("").unwrap().is_empty());
    }

    #[test]
    fn countries_and_capacity() {
        assert!("US".parse::<CountryCode>().is_ok());
        assert!("us".parse::<CountryCode>().is_err());
        assert!("USA".parse::<CountryCode>().is_err());
        assert_eq!(parse_capacity(0).unwrap(), 0);
        assert_eq!(parse_capacity(1000).unwrap(), 1000);
        assert!(matches!(parse_capacity(1001), Err(StoreError::Invalid { field: "capacity", .. })));
        assert!(parse_capacity(-1).is_err());
    }

    #[test]
    fn draft_reports_every_field() {
        let draft = AgentDraft {
            id: "Bad Id".into(),
            caller_id: vec!["555".into()],
            capacity: Some(5000),
            mailbox: Some("x".into()),
            emergency_contacts: Some("ok@x.com;no".into()),
            location: Some(LocationDraft { country: "usa".into(), address: None }),
            ..AgentDraft::default()
        };
        let fields: Vec<&str> = draft
            .validate_all()
            .unwrap_err()
            .iter()
            .map(|e| match e {
                StoreError::Invalid { field, .. } => *field,
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(
            fields,
            ["id", "caller_id", "capacity", "mailbox", "emergency_contacts", "location.country"]
        );
    }

    #[test]
    fn minimal_draft_is_valid_with_warnings() {
        let agent = AgentDraft { id: "bob".into(), ..AgentDraft::default() }.validate().unwrap();
        assert_eq!(agent.capacity, DEFAULT_CAPACITY);
        let fields: Vec<&str> = warnings_for(&agent).iter().map(|w| w.field).collect();
        assert_eq!(fields, ["caller_id", "mailbox", "emergency_contacts", "location"]);
    }

    #[test]
    fn text_rules() {
        let mut a = AgentDraft { id: "bob".into(), ..AgentDraft::default() }.validate().unwrap();
        a.name = Some("Bob\nEvil".into());
        assert!(matches!(a.check(), Err(StoreError::Invalid { field: "name", .. })));
        a.name = Some("  ".into());
        assert!(a.check().is_err());
        a.name = Some("Bob Doe".into());
        a.check().unwrap();
        a.capacity = 1001;
        assert!(matches!(a.check(), Err(StoreError::Invalid { field: "capacity", .. })));
    }
}
