use std::path::PathBuf;

use super::*;
use crate::store::SqliteStore;

fn template(subject: &str, text: &str, html: &str) -> Template {
    Template { subject: subject.into(), text: text.into(), html: html.into() }
}

/// A SQLite store in a fresh temp directory, removed on drop.
struct TempStore {
    dir: PathBuf,
    store: SqliteStore,
}

impl TempStore {
    fn new(name: &str) -> TempStore {
        let dir =
            std::env::temp_dir().join(format!("lifeline-notify-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SqliteStore::open_in(&dir).unwrap();
        TempStore { dir, store }
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn agent(contacts: &[&str], mailbox: Option<&str>) -> Agent {
    let mut a = Agent::new("alice".parse().unwrap());
    a.emergency_contacts = contacts.iter().map(|c| c.parse().unwrap()).collect();
    a.mailbox = mailbox.map(|m| m.parse().unwrap());
    a
}

#[test]
fn the_default_template_renders_every_fact() {
    validate(&default_template()).unwrap();
    let r = render(&default_template(), &Notice::sample()).unwrap();
    assert_eq!(r.subject, "[TEST] Emergency call 933 by Alice Doe");
    for needle in [
        "Alice Doe (alice) dialled 933 at 2026-03-01T14:05:09Z",
        "+15550100900",
        "1 Main St, Springfield, IL 62701",
        "edge-1",
        "TEST CALL",
        "Caller:          authenticated",
    ] {
        assert!(r.text.contains(needle), "{needle:?} missing from:\n{}", r.text);
    }
    for needle in ["Alice Doe", "933", "+15550100900", "1 Main St, Springfield, IL 62701", "edge-1"]
    {
        assert!(r.html.contains(needle), "{needle:?} missing from:\n{}", r.html);
    }
    assert!(r.html.starts_with("<!DOCTYPE html>"));
}

#[test]
fn a_real_call_is_not_a_test_and_says_what_is_missing() {
    let r = render(&default_template(), &Notice::sample_negated()).unwrap();
    assert_eq!(r.subject, "Emergency call 911 by alice");
    assert!(!r.text.contains("TEST"));
    assert!(r.text.contains("Callback number: none: pool exhausted"), "{}", r.text);
    assert!(r.text.contains("Location:        unknown"), "{}", r.text);
    assert!(r.text.contains("NOT authenticated"), "{}", r.text);
    assert!(!r.text.contains("rings alice directly"), "no lease, no callback promise");
}

#[test]
fn html_is_escaped_and_text_is_not() {
    let mut n = Notice::sample();
    n.agent_name = Some("<b>Mallory</b> & co".into());
    let t = template("{{ agent_name }}", "{{ agent_name }}", "<p>{{ agent_name }}</p>");
    let r = render(&t, &n).unwrap();
    assert_eq!(r.html, "<p>&lt;b&gt;Mallory&lt;&#x2f;b&gt; &amp; co</p>");
    assert_eq!(r.text, "<b>Mallory</b> & co");
    assert_eq!(r.subject, "[TEST] <b>Mallory</b> & co");
}

#[test]
fn the_subject_is_one_line_and_a_test_always_says_so() {
    let mut n = Notice::sample();
    n.location = Some("line one\r\nBcc: someone@example.com".into());
    let t = template("Call {{ dialled }} from {{ location }}", "", "");
    let r = render(&t, &n).unwrap();
    assert_eq!(r.subject, "[TEST] Call 933 from line one Bcc: someone@example.com");
    let t = template("{% if test %}Test{% endif %} call", "", "");
    assert_eq!(render(&t, &n).unwrap().subject, "Test call", "no second marker");
    n.test = false;
    assert_eq!(render(&t, &n).unwrap().subject, "call");
}

#[test]
fn syntax_errors_name_the_part_and_line() {
    let t = template("ok", "line one\n{{ dialled }\n", "<p></p>");
    let e = validate(&t).unwrap_err();
    assert_eq!(e.part, Part::Text);
    assert_eq!(e.line, Some(2));
    assert!(e.to_string().starts_with("text, line 2: syntax error"), "{e}");

    let t = template("ok", "", "<p>\n\n{% if test %}</p>");
    let e = validate(&t).unwrap_err();
    assert_eq!(e.part, Part::Html);
    assert!(e.message.contains("syntax error"), "{e}");
}

#[test]
fn undefined_placeholders_are_refused_even_in_untaken_branches() {
    let t = template("Call {{ dialed }}", "", "");
    let e = validate(&t).unwrap_err();
    assert_eq!((e.part, e.line), (Part::Subject, Some(1)));
    assert!(e.message.contains("unknown placeholder 'dialed'"), "{e}");

    // Never rendered with the sample data (the branch is false) but still refused.
    let t = template("ok", "a\nb\n{% if false %}{{ agent.name }}{% endif %}\n", "");
    let e = validate(&t).unwrap_err();
    assert_eq!((e.part, e.line), (Part::Text, Some(3)), "{e}");

    // Undefined at render time too (strict): an attribute of a defined value.
    let t = template("ok", "{{ edge.nothing }}", "");
    assert_eq!(validate(&t).unwrap_err().part, Part::Text);
    assert!(render(&t, &Notice::sample()).is_err());
}

#[test]
fn filters_loops_and_engine_functions_are_allowed() {
    let t = template(
        "{{ agent_name | upper }}",
        "{% for i in range(2) %}{{ i }}{% endfor %} {{ location | default('x') }}",
        "",
    );
    validate(&t).unwrap();
    let r = render(&t, &Notice::sample()).unwrap();
    assert_eq!(r.text, "01 1 Main St, Springfield, IL 62701");
    assert_eq!(r.html, "");
    let m = r.into_message(vec!["a@example.com".parse().unwrap()], "x@example.com".into());
    assert_eq!(m.html, None, "an empty HTML part sends a text-only mail");
}

#[test]
fn runaway_templates_are_stopped() {
    let t = template(
        "ok",
        "{% for i in range(1000) %}{% for j in range(1000) %}.{% endfor %}{% endfor %}",
        "",
    );
    let e = validate(&t).unwrap_err();
    assert_eq!(e.part, Part::Text);
    let t = template("{% if test %}\n{% endif %}", "", "");
    assert_eq!(validate(&t).unwrap_err().part, Part::Subject, "a two-line subject source");
}

#[test]
fn queue_notice_writes_one_row_per_contact_from_the_agents_mailbox() {
    let db = TempStore::new("queue");
    let a = agent(&["security@example.com", "manager@example.com"], Some("alice@example.com"));
    let ids = queue_notice(&db.store, "lifeline@example.com", &a, &Notice::sample(), 100).unwrap();
    assert_eq!(ids.len(), 2);
    let due = db.store.due(100, 10).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].message.to, vec!["security@example.com".parse().unwrap()]);
    assert_eq!(due[1].message.to, vec!["manager@example.com".parse().unwrap()]);
    for e in &due {
        assert_eq!(e.message.from, "alice@example.com");
        assert_eq!(e.message.subject, "[TEST] Emergency call 933 by Alice Doe");
        assert!(e.message.html.is_some());
    }

    // Without a mailbox: `[smtp] from`.
    let a = agent(&["security@example.com"], None);
    queue_notice(&db.store, "lifeline@example.com", &a, &Notice::sample(), 100).unwrap();
    assert_eq!(db.store.due(100, 10).unwrap()[2].message.from, "lifeline@example.com");

    // Without contacts: nothing, and no error.
    let a = agent(&[], Some("alice@example.com"));
    assert_eq!(queue_notice(&db.store, "x@example.com", &a, &Notice::sample(), 100), Ok(vec![]));
    assert_eq!(db.store.due(100, 10).unwrap().len(), 3);
}

#[test]
fn queue_notice_uses_the_stored_template_or_falls_back_to_the_default() {
    let db = TempStore::new("fallback");
    let name: Token = TEMPLATE_NAME.parse().unwrap();
    let a = agent(&["security@example.com"], None);
    db.store.put_template(&name, &template("Custom {{ dialled }}", "body", "")).unwrap();
    queue_notice(&db.store, "l@example.com", &a, &Notice::sample_negated(), 1).unwrap();
    // Stored without validation (as an older build might have): it does not render.
    db.store.put_template(&name, &template("{{ nope }}", "body", "")).unwrap();
    queue_notice(&db.store, "l@example.com", &a, &Notice::sample_negated(), 1).unwrap();
    let due = db.store.due(1, 10).unwrap();
    assert_eq!(due[0].message.subject, "Custom 911");
    assert_eq!(due[0].message.html, None);
    assert_eq!(due[1].message.subject, "Emergency call 911 by alice", "the default");
}

#[test]
fn the_last_resort_has_every_fact() {
    let r = plain(&Notice::sample());
    assert_eq!(r.subject, "[TEST] Emergency call 933 by Alice Doe");
    assert!(r.text.contains("+15550100900") && r.text.contains("2026-03-01T14:05:09Z"));
}

#[test]
fn debug_redacts_numbers_and_locations() {
    let shown = format!("{:?}", Notice::sample());
    assert!(!shown.contains("+1555") && !shown.contains("Main St"), "{shown}");
}
