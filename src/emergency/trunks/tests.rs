use super::*;
use crate::routing::{Dialplan, E164};

const TRUNKS: &str = r#"
[[trunk]]
name = "sbc"
kind = "direct-routing"
uri = "sip:192.0.2.10:5060"

[[trunk]]
name = "carrier-a"
kind = "direct-offer"
uri = "sip:192.0.2.20:5060"
numbers = ["+15550100000-+15550100499"]

[[trunk]]
name = "carrier-b"
kind = "direct-offer"
uri = "sip:192.0.2.30:5060"
numbers = ["+15550100500-+15550100999"]
"#;

fn plan(routes: &str) -> Dialplan {
    Dialplan::from_texts(&[("t.toml", TRUNKS), ("r.toml", routes)]).expect("valid dialplan")
}

fn names<'a>(c: &[Candidate<'a>]) -> Vec<&'a str> {
    c.iter().map(|c| c.trunk.name.as_str()).collect()
}

fn e164(s: &str) -> E164 {
    E164::parse(s).expect("e164")
}

#[test]
fn explicit_means_named_not_caught() {
    let all = ["911", "933"];
    let named = |p: &str, d: &str| names_dialstring(&Regex::new(p).expect("re"), d, &all);
    for p in ["^911$", "^(911|933)$", "^9(11|33)$", "911", "^9?911$"] {
        assert!(named(p, "911"), "{p} names 911");
    }
    for p in [".*", "^\\+?\\d+$", "^\\d{3}$", "^9\\d\\d$", "^[0-9]+$", "^(911|912)$", ""] {
        assert!(!named(p, "911"), "{p} does not name 911");
    }
    assert!(!named("^933$", "911"), "no match at all");
    assert!(!named("^\\+1911$", "911"), "patterns see the bare dialstring");
    // Neighbouring emergency numbers do not spoil explicitness (110/112/113 in Norway).
    let no = ["110", "112", "113"];
    assert!(names_dialstring(&Regex::new("^(110|112|113)$").expect("re"), "112", &no));
}

#[test]
fn direct_offer_owner_first_without_an_explicit_route() {
    let p = plan("[[route]]\npattern = '^\\+1\\d{10}$'\ntrunks = [\"sbc\"]\n");
    let owner_b = e164("+15550100600");
    let c = candidates(&p, "911", Some(&owner_b));
    assert_eq!(names(&c), ["carrier-b", "carrier-a"]);
    assert_eq!(c[0].why, Why::OwnsCallerId);
    assert_eq!(c[1].why, Why::DirectOffer);
    assert_eq!(names(&candidates(&p, "911", None)), ["carrier-a", "carrier-b"]);
}

#[test]
fn explicit_direct_routing_route_wins_then_failover() {
    let p = plan(
        "[[route]]\npattern = '^(911|933)$'\ntrunks = [\"sbc\"]\n\
         [[route]]\npattern = '.*'\ntrunks = [\"sbc\", \"carrier-a\"]\n",
    );
    let c = candidates(&p, "933", Some(&e164("+15550100600")));
    assert_eq!(names(&c), ["sbc", "carrier-b", "carrier-a"]);
    assert_eq!(c[0].why, Why::ExplicitRoute { route: 0 });
}

#[test]
fn catch_all_direct_routing_is_the_last_resort() {
    let p = plan("[[route]]\npattern = '.*'\ntrunks = [\"sbc\"]\n");
    let c = candidates(&p, "911", None);
    assert_eq!(names(&c), ["carrier-a", "carrier-b", "sbc"]);
    assert_eq!(c[2].why, Why::LastResort { route: 0 });
    let w = warnings(&p);
    assert!(w.iter().any(|w| w.contains("catch-all direct-routing route '.*'")), "{w:?}");
}

#[test]
fn urn_goes_to_direct_offer_first() {
    let p = plan("[[route]]\npattern = '.*'\ntrunks = [\"sbc\"]\n");
    assert_eq!(names(&candidates(&p, "urn:service:sos", None)), ["carrier-a", "carrier-b", "sbc"]);
}

#[test]
fn ambiguous_explicit_routes_are_an_error_naming_both() {
    let err = Dialplan::from_texts(&[
        ("t.toml", TRUNKS),
        (
            "r.toml",
            "[[route]]\npattern = '^911$'\ntrunks = [\"sbc\"]\n\n\
             [[route]]\npattern = '^(911|933)$'\ntrunks = [\"sbc\", \"carrier-a\"]\n",
        ),
    ])
    .expect_err("ambiguous");
    assert_eq!(err.len(), 1, "{err:?}");
    let msg = err[0].to_string();
    assert!(msg.starts_with("r.toml:5: emergency number 911"), "{msg}");
    assert!(msg.contains("r.toml:1"), "{msg}");
    // The same trunks twice is not ambiguous.
    plan(
        "[[route]]\npattern = '^911$'\ntrunks = [\"sbc\"]\n[[route]]\npattern = '^9(11|33)$'\ntrunks = [\"sbc\"]\n",
    );
}

#[test]
fn warnings_for_a_bare_setup() {
    let p = Dialplan::empty();
    let w = warnings(&p).join("\n");
    assert!(w.contains("no trunk would be tried for emergency number 911"), "{w}");
    assert!(w.contains("callback_pool is empty"), "{w}");
    assert!(w.contains("site_number is not set"), "{w}");
    assert!(w.contains("callback_fallback is not set"), "{w}");
    let q = plan(
        "[[route]]\npattern = '^911$'\ntrunks = [\"carrier-a\"]\n\
         [emergency]\ncallback_pool = [\"+15550100900-+15550100999\"]\nsite_number = \"+15550100999\"\n\
         callback_fallback = \"group:supervisors\"\n",
    );
    let w = warnings(&q).join("\n");
    assert!(w.contains("names emergency numbers (911) but only direct-offer trunks"), "{w}");
    assert!(w.contains("site_number +15550100999 is in the callback pool"), "{w}");
    assert!(!w.contains("no trunk would be tried"), "{w}");
}
