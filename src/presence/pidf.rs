//! Presence documents: an agent's state as PIDF (RFC 3863) with RPID activities (RFC 4480),
//! both ways.
//!
//! # Writing ([`to_pidf`])
//!
//! One `tuple` with the basic status, and a `dm:person` (RFC 4479) with the RPID activity and
//! a `dm:note` naming the state (`available`, `busy`, `away`, `dnd`, `offline` or the custom
//! token): the note is what lets a reader get our exact state back.
//!
//! | state | basic | RPID activity |
//! |---|---|---|
//! | available | open | (none) |
//! | busy | open | `busy` |
//! | away | open | `away` |
//! | dnd | closed | `busy` |
//! | offline | closed | (none) |
//! | custom (`lunch`) | open | `<rpid:other>lunch</rpid:other>` |
//!
//! # Reading ([`parse`])
//!
//! What softphones send varies (JsSIP-based pages, Bria, Zoiper, Linphone), so the reader is
//! tolerant inside the document but strict about what a document is. The first rule that
//! gives an answer wins:
//!
//! 1. a note (`dm:note`, a tuple's or the document's `note`, any namespace) that names a state
//!    or a common synonym (`Do Not Disturb`, `On the phone`, `Online`; case and surrounding
//!    blanks ignored);
//! 2. RPID activities (any namespace, by local name): `dnd`/`do-not-disturb` → dnd;
//!    `busy`, `on-the-phone`, `meeting`, `presentation`, `performance`, `worship` → busy,
//!    or dnd when the basic status is `closed`; `away`, `vacation`, `holiday`, `sleeping`,
//!    `permanent-absence`, `meal`, `appointment`, `travel`, `steering` → away; `other` whose
//!    text is a valid custom state token (lowercased) → that custom state;
//! 3. the basic status: `open` → available, `closed` → offline.
//!
//! Nothing else (free text notes, device or service details) changes the state.
//!
//! # Contracts
//!
//! - The body is hostile input: nothing here panics on it. Documents larger than
//!   [`MAX_BYTES`], deeper than [`MAX_DEPTH`] or longer than [`MAX_EVENTS`] parser events
//!   are refused, as are documents that are not UTF-8, not well-formed, use entities other
//!   than XML's predefined ones (no DTD is ever read), or whose root is not the PIDF
//!   `presence` element (namespace matched by URI, never by prefix).
//! - Every refusal is a [`PidfError`] whose [`PidfError::reason`] is fit for a `400` reason
//!   phrase.

use std::fmt;

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use crate::store::PresenceState;

/// The media type of a presence document (RFC 3863 §7).
pub const CONTENT_TYPE: &str = "application/pidf+xml";

/// Largest document [`parse`] reads (bytes). Softphones send well under 2 KiB.
pub const MAX_BYTES: usize = 16 * 1024;

/// Deepest element nesting [`parse`] follows.
pub const MAX_DEPTH: usize = 16;

/// Most XML parser events [`parse`] handles in one document.
pub const MAX_EVENTS: usize = 2 * 1024;

/// Longest text kept from one element (a note, an `other` activity), in bytes.
const MAX_TEXT: usize = 256;

const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidfError {
    TooLarge,
    NotUtf8,
    /// Not well-formed, too deep, too long, or an unknown entity.
    Malformed,
    /// Well-formed, but the root is not a PIDF `presence`.
    NotPidf,
    /// A PIDF document that says nothing [`parse`] maps to a state.
    NoState,
}

impl PidfError {
    /// A reason phrase for the `400`.
    pub fn reason(self) -> &'static str {
        match self {
            PidfError::TooLarge => "PIDF Document Too Large",
            PidfError::NotUtf8 => "PIDF Not UTF-8",
            PidfError::Malformed => "Malformed PIDF Document",
            PidfError::NotPidf => "Not A PIDF Document",
            PidfError::NoState => "No Presence State In PIDF",
        }
    }
}

impl fmt::Display for PidfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PidfError {}

/// The PIDF document for `state` of the presentity `entity` (a `sip:` URI).
pub fn to_pidf(entity: &str, state: &PresenceState) -> String {
    let (basic, activity) = match state {
        PresenceState::Available => ("open", None),
        PresenceState::Busy => ("open", Some("<rpid:busy/>".to_owned())),
        PresenceState::Away => ("open", Some("<rpid:away/>".to_owned())),
        PresenceState::Dnd => ("closed", Some("<rpid:busy/>".to_owned())),
        PresenceState::Offline => ("closed", None),
        PresenceState::Custom(t) => {
            ("open", Some(format!("<rpid:other>{}</rpid:other>", escape(t.as_str()))))
        }
    };
    let activities = activity
        .map(|a| format!("    <rpid:activities>{a}</rpid:activities>\n"))
        .unwrap_or_default();
    let entity = escape(entity);
    let note = escape(state.as_str());
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<presence xmlns=\"{NS_PIDF}\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"{entity}\">\n\
  <tuple id=\"edge\">\n    <status><basic>{basic}</basic></status>\n  </tuple>\n\
  <dm:person id=\"agent\">\n{activities}    <dm:note>{note}</dm:note>\n  </dm:person>\n\
</presence>\n"
    )
}

/// The state a PIDF document says (module docs for the rules).
pub fn parse(doc: &[u8]) -> Result<PresenceState, PidfError> {
    if doc.len() > MAX_BYTES {
        return Err(PidfError::TooLarge);
    }
    let text = std::str::from_utf8(doc).map_err(|_| PidfError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let found = walk(text)?;
    decide(&found).ok_or(PidfError::NoState)
}

/// What the walk found in a document.
#[derive(Debug, Default)]
struct Found {
    /// Every note's text, in document order, person notes first.
    notes: Vec<String>,
    activities: Vec<Activity>,
    /// The first `other` activity whose text is a custom state token.
    custom: Option<PresenceState>,
    open: bool,
    closed: bool,
}

/// An RPID activity (RFC 4480 §3.2), grouped by the state it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    Dnd,
    Busy,
    Away,
    Other,
    Ignored,
}

fn activity(local: &str) -> Activity {
    match local.to_ascii_lowercase().as_str() {
        "dnd" | "do-not-disturb" | "donotdisturb" => Activity::Dnd,
        "busy" | "on-the-phone" | "meeting" | "presentation" | "performance" | "worship" => {
            Activity::Busy
        }
        "away" | "vacation" | "holiday" | "sleeping" | "permanent-absence" | "meal"
        | "appointment" | "travel" | "steering" => Activity::Away,
        "other" => Activity::Other,
        _ => Activity::Ignored,
    }
}

/// An open element, as far as the walk cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Root,
    Person,
    Basic,
    Note { person: bool },
    Activities,
    Activity(Activity),
    Other,
}

fn walk(text: &str) -> Result<Found, PidfError> {
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut found = Found::default();
    let mut person_notes = Vec::new();
    // The text of the innermost element (only kept for the elements whose text matters).
    let mut value = String::new();
    let mut seen_root = false;
    for _ in 0..MAX_EVENTS {
        let (resolved, event) = reader.read_resolved_event().map_err(|_| PidfError::Malformed)?;
        let ns_is_pidf = matches!(resolved, ResolveResult::Bound(n) if n.0 == NS_PIDF);
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if e.attributes().any(|a| a.is_err()) {
                    return Err(PidfError::Malformed);
                }
                let local = e.local_name();
                let local: &str = local.as_ref();
                let node = if stack.is_empty() {
                    if seen_root || !(ns_is_pidf && local == "presence") {
                        return Err(PidfError::NotPidf);
                    }
                    seen_root = true;
                    Node::Root
                } else {
                    classify(local, &stack)
                };
                value.clear();
                if matches!(event, Event::Empty(_)) {
                    finish(node, "", &mut found, &mut person_notes);
                } else {
                    if stack.len() >= MAX_DEPTH {
                        return Err(PidfError::Malformed);
                    }
                    stack.push(node);
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or(PidfError::Malformed)?;
                finish(node, &value, &mut found, &mut person_notes);
                value.clear();
            }
            Event::Text(t) => collect(&stack, &mut value, &t.xml10_content()),
            Event::CData(t) => collect(&stack, &mut value, &t.xml10_content()),
            Event::GeneralRef(r) => {
                let resolved = crate::emergency::location::resolve_reference(&r)
                    .ok_or(PidfError::Malformed)?;
                collect(&stack, &mut value, &resolved);
            }
            Event::Eof => {
                return match (seen_root, stack.is_empty()) {
                    (true, true) => {
                        person_notes.append(&mut found.notes);
                        found.notes = person_notes;
                        Ok(found)
                    }
                    (false, _) => Err(PidfError::NotPidf),
                    (true, false) => Err(PidfError::Malformed),
                };
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    Err(PidfError::Malformed)
}

fn classify(local: &str, stack: &[Node]) -> Node {
    let parent = stack.last().copied();
    let in_person = stack.contains(&Node::Person);
    match (local, parent) {
        (name, Some(Node::Activities)) => Node::Activity(activity(name)),
        ("person", Some(Node::Root)) => Node::Person,
        ("basic", _) => Node::Basic,
        ("note", _) => Node::Note { person: in_person },
        ("activities", _) => Node::Activities,
        _ => Node::Other,
    }
}

fn collect(stack: &[Node], value: &mut String, text: &str) {
    let wanted = stack
        .last()
        .is_some_and(|n| matches!(n, Node::Basic | Node::Note { .. } | Node::Activity(_)));
    if !wanted {
        return;
    }
    let room = MAX_TEXT.saturating_sub(value.len());
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    value.push_str(&text[..end]);
}

/// An element closed: keep what it said.
fn finish(node: Node, text: &str, found: &mut Found, person_notes: &mut Vec<String>) {
    let text = text.trim();
    match node {
        Node::Basic => {
            if text.eq_ignore_ascii_case("open") {
                found.open = true;
            } else if text.eq_ignore_ascii_case("closed") {
                found.closed = true;
            }
        }
        Node::Note { person } if !text.is_empty() => {
            if person {
                person_notes.push(text.to_owned());
            } else {
                found.notes.push(text.to_owned());
            }
        }
        Node::Activity(Activity::Other) => {
            if let Ok(s @ PresenceState::Custom(_)) = text.to_ascii_lowercase().parse() {
                found.custom.get_or_insert(s);
            }
        }
        Node::Activity(a) => found.activities.push(a),
        _ => {}
    }
}

/// The rules of the module docs, in order.
fn decide(found: &Found) -> Option<PresenceState> {
    if let Some(state) = found.notes.iter().find_map(|n| from_note(n)) {
        return Some(state);
    }
    let has = |a: Activity| found.activities.contains(&a);
    if has(Activity::Dnd) {
        Some(PresenceState::Dnd)
    } else if has(Activity::Busy) {
        Some(if found.closed && !found.open { PresenceState::Dnd } else { PresenceState::Busy })
    } else if has(Activity::Away) {
        Some(PresenceState::Away)
    } else if found.custom.is_some() {
        found.custom.clone()
    } else if found.open {
        Some(PresenceState::Available)
    } else if found.closed {
        Some(PresenceState::Offline)
    } else {
        None
    }
}

/// A note that names a state or a common synonym.
fn from_note(note: &str) -> Option<PresenceState> {
    let n: String = note
        .trim()
        .chars()
        .map(|c| if c == '_' || c == '-' { ' ' } else { c.to_ascii_lowercase() })
        .collect();
    Some(match n.split_whitespace().collect::<Vec<_>>().join(" ").as_str() {
        "available" | "online" | "open" | "idle" => PresenceState::Available,
        "busy" | "on the phone" | "in a call" | "on a call" => PresenceState::Busy,
        "away" | "be right back" | "brb" | "out to lunch" => PresenceState::Away,
        "dnd" | "do not disturb" | "donotdisturb" => PresenceState::Dnd,
        "offline" | "invisible" | "appear offline" => PresenceState::Offline,
        _ => return None,
    })
}

/// XML text or attribute escaping; characters XML 1.0 does not allow are dropped.
fn escape(s: &str) -> String {
    let allowed: String = s
        .chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}')
        })
        .collect();
    quick_xml::escape::escape(allowed.as_str()).into_owned()
}

#[cfg(test)]
mod tests;
