//! The emergency-call notification e-mail (DESIGN.md, point 4): what it says ([`Notice`]), the
//! editable template `emergency-call-notification` that says it, and [`queue_notice`], which
//! the emergency path calls to put the rendered mail in the store's outbox before the INVITE
//! leaves. Delivery is [`super::mailer`]'s business.
//!
//! # Template
//!
//! Three parts, each a [minijinja] (Jinja2) template: `subject`, `text` and `html`. The
//! default ships in `templates/` and is used until `PUT /api/templates/emergency-call-notification`
//! stores another. Placeholders ([`PLACEHOLDERS`]):
//!
//! | placeholder | value |
//! |---|---|
//! | `agent_id` | the agent's id (SIP user name) |
//! | `agent_name` | the agent's display name, or the id when none is set |
//! | `dialled` | the dialstring as dialled (`911`, `933`) |
//! | `test` | `true` for a test number (`[emergency] test`, e.g. 933) |
//! | `time` | when the call was made, RFC 3339 in UTC (`2026-03-01T14:05:09Z`) |
//! | `callback` | the leased callback number (E.164), or `none: pool exhausted` |
//! | `has_callback` | `true` when a callback number was leased |
//! | `location` | the location sent with the call as one line of text, or `unknown` |
//! | `edge` | the edge node that handled the call (`[node] name`) |
//! | `authenticated` | `false` when the caller's identity was claimed but not verified |
//!
//! Rules, all checked by [`validate`] when a template is stored, so that a bad template is
//! refused by the API instead of failing at call time:
//!
//! - Undefined placeholders are errors (strict undefined), as are syntax errors; the error names
//!   the part and the line.
//! - The HTML part is auto-escaped; subject and text are plain text and are not.
//! - The rendered subject is one line (line breaks become spaces). For a test call, a subject
//!   that does not say "test" is prefixed with `[TEST] `, whatever the template says.
//! - Rendering is bounded ([`FUEL`] instructions, [`MAX_RENDERED_BYTES`] per part); an empty
//!   rendered HTML part sends a text-only mail.
//!
//! Times are in UTC; there is no per-site time zone.
//!
//! # Delivery model
//!
//! One outbox row per emergency contact, each with a `From` of the agent's mailbox (or
//! `[smtp] from` when the agent has none), relayed by the site's SMTP relay. Separate rows keep
//! one refused address (a typo in the contacts: SMTP 550 on `RCPT TO`) from holding back the
//! mail to every other contact, and each row is retried on its own.

use std::fmt;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value, context};

use crate::store::{
    Agent, AgentId, E164, Email, OutboxId, OutboxMessage, Store, StoreError, Template, Token,
    UnixTime,
};

/// The template's name in the store and in the admin API.
pub const TEMPLATE_NAME: &str = "emergency-call-notification";

/// Every placeholder a template may use (see the module docs).
pub const PLACEHOLDERS: [&str; 10] = [
    "agent_id",
    "agent_name",
    "dialled",
    "test",
    "time",
    "callback",
    "has_callback",
    "location",
    "edge",
    "authenticated",
];

/// What `callback` says when no number could be leased.
pub const NO_CALLBACK: &str = "none: pool exhausted";

/// What `location` says when the call carried none.
pub const UNKNOWN_LOCATION: &str = "unknown";

/// The most minijinja instructions one part may run: the default template needs a few hundred;
/// a template that loops for ever must not stall the emergency path.
pub const FUEL: u64 = 50_000;

/// The largest rendered part, in bytes.
pub const MAX_RENDERED_BYTES: usize = 256 * 1024;

/// The largest template part accepted by [`validate`], in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

const DEFAULT_SUBJECT: &str = include_str!("templates/subject.txt");
const DEFAULT_TEXT: &str = include_str!("templates/body.txt");
const DEFAULT_HTML: &str = include_str!("templates/body.html");

/// The template that ships with lifeline, used while none is stored (and when the stored one
/// fails to render).
pub fn default_template() -> Template {
    Template {
        subject: DEFAULT_SUBJECT.to_owned(),
        text: DEFAULT_TEXT.to_owned(),
        html: DEFAULT_HTML.to_owned(),
    }
}

/// The facts of one emergency call that the notification reports.
#[derive(Clone, PartialEq, Eq)]
pub struct Notice {
    pub agent_id: AgentId,
    /// Display name; `None` shows the id.
    pub agent_name: Option<String>,
    /// The dialstring as dialled (`911`, `933`); never rewritten.
    pub dialled: String,
    /// A test number (`[emergency] test`): the subject says so.
    pub test: bool,
    /// When the call was made.
    pub at: UnixTime,
    /// The leased callback number; `None` when the pool was exhausted.
    pub callback: Option<E164>,
    /// The location sent with the call, as one line of text; `None` when unknown.
    pub location: Option<String>,
    /// The edge node that handled the call (`[node] name`).
    pub edge: String,
    /// Whether the caller's identity was verified (digest or a live registration's flow).
    pub authenticated: bool,
}

/// Numbers, names and locations stay out of logs (STYLE.md habit 14).
impl fmt::Debug for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notice")
            .field("agent_id", &self.agent_id)
            .field("dialled", &self.dialled)
            .field("test", &self.test)
            .field("at", &self.at)
            .field("callback", &self.callback.as_ref().map(|_| "<redacted>"))
            .field("location", &self.location.as_ref().map(|_| "<redacted>"))
            .field("edge", &self.edge)
            .field("authenticated", &self.authenticated)
            .finish_non_exhaustive()
    }
}

impl Notice {
    /// Made-up data for previews and for [`validate`]: a test call by `alice`.
    pub fn sample() -> Notice {
        Notice {
            agent_id: sample_agent_id(),
            agent_name: Some("Alice Doe".to_owned()),
            dialled: "933".to_owned(),
            test: true,
            at: 1_772_373_909, // 2026-03-01T14:05:09Z
            callback: "+15550100900".parse().ok(),
            location: Some("1 Main St, Springfield, IL 62701".to_owned()),
            edge: "edge-1".to_owned(),
            authenticated: true,
        }
    }

    /// The opposite of [`Notice::sample`] in every flag: an unauthenticated 911 call without a
    /// callback number or a location, so that [`validate`] runs both sides of every `if`.
    fn sample_negated() -> Notice {
        Notice {
            agent_name: None,
            dialled: "911".to_owned(),
            test: false,
            callback: None,
            location: None,
            authenticated: false,
            ..Notice::sample()
        }
    }

    /// The template's variables.
    fn context(&self) -> Value {
        context! {
            agent_id => self.agent_id.as_str(),
            agent_name => self.agent_name.as_deref().unwrap_or(self.agent_id.as_str()),
            dialled => self.dialled.as_str(),
            test => self.test,
            time => rfc3339(self.at),
            callback => self.callback.as_ref().map_or(NO_CALLBACK, E164::as_str),
            has_callback => self.callback.is_some(),
            location => self.location.as_deref().unwrap_or(UNKNOWN_LOCATION),
            edge => self.edge.as_str(),
            authenticated => self.authenticated,
        }
    }
}

fn sample_agent_id() -> AgentId {
    match "alice".parse() {
        Ok(id) => id,
        // A literal that the tests parse; reaching this is a build defect.
        Err(e) => panic!("sample agent id: {e}"),
    }
}

/// `at` as RFC 3339 in UTC (`2026-03-01T14:05:09Z`); `@<seconds>` when out of range.
pub fn rfc3339(at: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("@{at}"))
}

/// One part of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Subject,
    Text,
    Html,
}

impl Part {
    /// The part's field name in the API body (`subject`, `text`, `html`).
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Text => "text",
            Part::Html => "html",
        }
    }

    fn of(self, t: &Template) -> &str {
        match self {
            Part::Subject => &t.subject,
            Part::Text => &t.text,
            Part::Html => &t.html,
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a template cannot be used: which part, where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub part: Part,
    /// 1-based line in that part, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl TemplateError {
    fn new(part: Part, line: Option<usize>, message: impl Into<String>) -> TemplateError {
        TemplateError { part, line, message: message.into() }
    }

    fn engine(part: Part, e: &minijinja::Error) -> TemplateError {
        let message = match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        };
        TemplateError::new(part, e.line(), message)
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}, line {line}: {}", self.part, self.message),
            None => write!(f, "{}: {}", self.part, self.message),
        }
    }
}

impl std::error::Error for TemplateError {}

/// A rendered notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line.
    pub subject: String,
    pub text: String,
    /// Empty when the template's HTML part renders to nothing: the mail is then text only.
    pub html: String,
}

impl Rendered {
    /// The outbox message for `to`, sent as `from`.
    pub fn into_message(self, to: Vec<Email>, from: String) -> OutboxMessage {
        let html = (!self.html.trim().is_empty()).then_some(self.html);
        OutboxMessage { to, from, subject: self.subject, text: self.text, html }
    }
}

/// The engine as every part is rendered: strict undefined, bounded, HTML escaped in the `html`
/// part only.
fn environment<'s>() -> Environment<'s> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|name| {
        if name == Part::Html.as_str() { AutoEscape::Html } else { AutoEscape::None }
    });
    env
}

fn render_part(
    env: &Environment<'_>,
    part: Part,
    source: &str,
    ctx: &Value,
) -> Result<String, TemplateError> {
    let tmpl = env
        .template_from_named_str(part.as_str(), source)
        .map_err(|e| TemplateError::engine(part, &e))?;
    let out = tmpl.render(ctx).map_err(|e| TemplateError::engine(part, &e))?;
    if out.len() > MAX_RENDERED_BYTES {
        return Err(TemplateError::new(
            part,
            None,
            format!("renders to more than {MAX_RENDERED_BYTES} bytes"),
        ));
    }
    Ok(out)
}

/// Renders `template` for `notice` (see the module docs for the rules).
pub fn render(template: &Template, notice: &Notice) -> Result<Rendered, TemplateError> {
    let env = environment();
    let ctx = notice.context();
    let subject = render_part(&env, Part::Subject, &template.subject, &ctx)?;
    let text = render_part(&env, Part::Text, &template.text, &ctx)?;
    let html = render_part(&env, Part::Html, &template.html, &ctx)?;
    Ok(Rendered { subject: subject_line(&subject, notice.test), text, html })
}

/// One line, trimmed; a test call's subject says "test" whatever the template wrote.
fn subject_line(rendered: &str, test: bool) -> String {
    let line = rendered.split_whitespace().collect::<Vec<_>>().join(" ");
    if test && !line.to_ascii_lowercase().contains("test") {
        format!("[TEST] {line}")
    } else {
        line
    }
}

/// Checks a template before it is stored: size, a one-line subject, syntax, placeholders
/// (only [`PLACEHOLDERS`] and the engine's own functions), and a render of both sides of
/// every flag. The error names the part and, where it can, the line.
pub fn validate(template: &Template) -> Result<(), TemplateError> {
    let env = environment();
    let globals: Vec<String> = env.globals().map(|(name, _)| name.to_owned()).collect();
    for part in [Part::Subject, Part::Text, Part::Html] {
        let source = part.of(template);
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::new(
                part,
                None,
                format!("longer than {MAX_TEMPLATE_BYTES} bytes"),
            ));
        }
        if part == Part::Subject && source.trim_end().contains(['\r', '\n']) {
            return Err(TemplateError::new(part, Some(2), "must be one line"));
        }
        let tmpl = env
            .template_from_named_str(part.as_str(), source)
            .map_err(|e| TemplateError::engine(part, &e))?;
        let mut unknown: Vec<String> = tmpl
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !PLACEHOLDERS.contains(&v.as_str()) && !globals.contains(v))
            .collect();
        unknown.sort();
        if let Some(name) = unknown.first() {
            return Err(TemplateError::new(
                part,
                line_of_word(source, name),
                format!("unknown placeholder '{name}' (known: {})", PLACEHOLDERS.join(", ")),
            ));
        }
    }
    for sample in [Notice::sample(), Notice::sample_negated()] {
        render(template, &sample)?;
    }
    Ok(())
}

/// The 1-based line where `word` first stands as a whole identifier.
fn line_of_word(source: &str, word: &str) -> Option<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    source
        .lines()
        .position(|line| {
            line.match_indices(word).any(|(i, _)| {
                let before = line[..i].chars().next_back();
                let after = line[i + word.len()..].chars().next();
                !before.is_some_and(ident) && !after.is_some_and(ident)
            })
        })
        .map(|i| i + 1)
}

/// Renders `template` for `notice` into one outbox message to `recipients`, sent as `from`.
pub fn compose(
    template: &Template,
    notice: &Notice,
    recipients: &[Email],
    from: String,
) -> Result<OutboxMessage, TemplateError> {
    Ok(render(template, notice)?.into_message(recipients.to_vec(), from))
}

/// The `From` of an agent's notifications: the agent's mailbox, or `[smtp] from` without one.
pub fn sender(agent: &Agent, smtp_from: &str) -> String {
    agent.mailbox.as_ref().map_or(smtp_from, Email::as_str).to_owned()
}

/// Why [`queue_notice`] could not queue the notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyError {
    /// The store refused or failed every enqueue.
    Store(StoreError),
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::Store(e) => write!(f, "notification not queued: {e}"),
        }
    }
}

impl std::error::Error for NotifyError {}

/// Queues the notification of `notice` to each of `agent`'s emergency contacts (one outbox row
/// each, committed durably) and returns their ids; call [`super::mailer::MailerHandle::wake`]
/// afterwards. Blocking: call it from `spawn_blocking` or a store thread.
///
/// Never loses the mail to a template problem: the stored template is used when it renders,
/// else the default (logged as an error), else a plain text built here. An agent without
/// emergency contacts gets a warning in the log and no mail (`Ok` with no ids). Fails only when
/// the store wrote no row at all; rows that were written stay queued.
pub fn queue_notice(
    store: &dyn Store,
    smtp_from: &str,
    agent: &Agent,
    notice: &Notice,
    now: UnixTime,
) -> Result<Vec<OutboxId>, NotifyError> {
    if agent.emergency_contacts.is_empty() {
        tracing::warn!(
            agent = %agent.id,
            "emergency call: the agent has no emergency contacts, nobody is notified"
        );
        return Ok(Vec::new());
    }
    let rendered = render_for_call(store, notice);
    let from = sender(agent, smtp_from);
    let mut ids = Vec::with_capacity(agent.emergency_contacts.len());
    let mut failed = None;
    for to in &agent.emergency_contacts {
        let message = rendered.clone().into_message(vec![to.clone()], from.clone());
        match store.enqueue(&message, now) {
            Ok(id) => ids.push(id),
            Err(e) => {
                tracing::error!(agent = %agent.id, error = %e, "emergency notification not queued");
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        Some(e) if ids.is_empty() => Err(NotifyError::Store(e)),
        _ => {
            tracing::info!(agent = %agent.id, queued = ids.len(), "emergency notification queued");
            Ok(ids)
        }
    }
}

/// The stored template rendered for `notice`, else the default, else plain text.
fn render_for_call(store: &dyn Store, notice: &Notice) -> Rendered {
    let stored = match TEMPLATE_NAME.parse::<Token>() {
        Ok(name) => store.template(&name),
        Err(e) => Err(StoreError::Backend(format!("template name: {e}"))),
    };
    match stored {
        Ok(Some(t)) => match render(&t, notice) {
            Ok(r) => return r,
            Err(e) => tracing::error!(
                error = %e,
                "the stored emergency-call-notification template does not render; the default is used"
            ),
        },
        Ok(None) => {}
        Err(e) => tracing::error!(
            error = %e,
            "cannot read the emergency-call-notification template; the default is used"
        ),
    }
    match render(&default_template(), notice) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the default notification template does not render");
            plain(notice)
        }
    }
}

/// The notification without any template: the last resort of [`render_for_call`].
fn plain(n: &Notice) -> Rendered {
    let name = n.agent_name.as_deref().unwrap_or(n.agent_id.as_str());
    let subject = subject_line(&format!("Emergency call {} by {name}", n.dialled), n.test);
    let text = format!(
        "{name} ({}) dialled {} at {}.\n\nCallback number: {}\nLocation: {}\nAuthenticated: {}\nEdge node: {}\n",
        n.agent_id,
        n.dialled,
        rfc3339(n.at),
        n.callback.as_ref().map_or(NO_CALLBACK, E164::as_str),
        n.location.as_deref().unwrap_or(UNKNOWN_LOCATION),
        if n.authenticated { "yes" } else { "no" },
        n.edge,
    );
    Rendered { subject, text, html: String::new() }
}

#[cfg(test)]
mod tests;
