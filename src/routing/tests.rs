//! Table tests of dialplan compilation and matching.

use super::*;

const CARRIERS: &str = r#"
[[trunk]]
name = "carrier"
kind = "direct-offer"
uri = "sip:192.0.2.10:5060;transport=udp"
sources = ["192.0.2.0/28"]
numbers = ["+15550100000-+15550100999"]
emergency = { resource_priority = "esnet.1", location = "pidf", request_uri = "dialstring" }

[[trunk]]
name = "backup"
kind = "direct-offer"
uri = "sip:198.51.100.20"

[[route]]
pattern = '^\+1[2-9]\d{9}$'
trunks = ["carrier", "backup"]

[[inbound]]
did = "+15550100123"
to = "agent:alice"

[[inbound]]
pattern = '^\+1555010\d{4}$'
to = "group:support"

[[trusted]]
cidr = "10.0.0.0/24"
"#;

const CATCH_ALL: &str = r#"
[[route]]
pattern = '.*'
trunks = ["trunk:backup"]

[emergency]
country = { US = ["911", "933"], GB = ["999", "112"] }
callback_pool = ["+15550100900-+15550100999"]
callback_lease = "30m"
callback_fallback = "group:supervisors"
site_number = "+15550100999"
"#;

fn plan() -> Dialplan {
    Dialplan::from_texts(&[("10-carriers.toml", CARRIERS), ("20-catch-all.toml", CATCH_ALL)])
        .unwrap()
}

#[test]
fn routes_first_match_across_files() {
    let p = plan();
    let (route, trunks) = p.outbound("+12025550199").unwrap();
    assert_eq!(route.line, 15, "the line of its [[route]] header");
    assert_eq!(trunks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["carrier", "backup"]);
    // The catch-all of the later file takes the rest, non-numeric users included.
    let (route, trunks) = p.outbound("service").unwrap();
    assert_eq!(route.file, PathBuf::from("20-catch-all.toml"));
    assert_eq!(trunks[0].name, "backup");
}

#[test]
fn inbound_sources_and_trust() {
    let p = plan();
    assert_eq!(p.inbound("+15550100123"), Some(&InboundTarget::Agent("alice".into())));
    assert_eq!(p.inbound("+15550100124"), Some(&InboundTarget::Group("support".into())));
    assert_eq!(p.inbound("+15550200000"), None);
    assert_eq!(p.trunk_for_source("192.0.2.10".parse().unwrap()).unwrap().name, "carrier");
    assert_eq!(p.trunk_for_source("192.0.2.3".parse().unwrap()).unwrap().name, "carrier");
    assert_eq!(p.trunk_for_source("198.51.100.20".parse().unwrap()).unwrap().name, "backup");
    assert!(p.trunk_for_source("10.0.0.5".parse().unwrap()).is_none());
    assert!(p.is_trusted("10.0.0.5".parse().unwrap()));
    assert!(!p.is_trusted("10.0.1.5".parse().unwrap()));
}

#[test]
fn trunk_request_uris() {
    let p = plan();
    let carrier = p.trunk("carrier").unwrap();
    assert_eq!(
        carrier.request_uri("+12025550199", 2000),
        "sip:+12025550199@192.0.2.10:5060;transport=udp"
    );
    let backup = p.trunk("backup").unwrap();
    assert_eq!(backup.request_uri("+12025550199", 900), "sip:+12025550199@198.51.100.20");
    // RFC 3261 §18.1.1: over 1300 bytes and not pinned to UDP: TCP.
    assert_eq!(backup.request_uri("911", 1500), "sip:911@198.51.100.20;transport=tcp");
    assert_eq!(carrier.emergency.resource_priority.as_deref(), Some("esnet.1"));
}

#[test]
fn emergency_section_and_defaults() {
    let p = plan();
    assert_eq!(p.emergency.countries["GB"], ["999", "112"]);
    assert_eq!(p.emergency.callback_lease, Duration::from_secs(1800));
    assert_eq!(p.emergency.callback_fallback, Some(InboundTarget::Group("supervisors".into())));
    assert_eq!(p.emergency.callback_pool[0].iter().count(), 100);
    let empty = Dialplan::from_texts(&[]).unwrap();
    assert_eq!(empty.emergency.countries["US"], ["911", "933"]);
    assert_eq!(empty.emergency.test, ["933"]);
    assert_eq!(empty.emergency.callback_lease, Duration::from_secs(3600));
}

#[test]
fn every_problem_with_file_and_line() {
    let bad = r#"
[[trunk]]
name = "carrier"
kind = "direct-offer"
uri = "sip:192.0.2.11"

[[route]]
pattern = '^(unclosed'
trunks = ["carrier"]

[[route]]
pattern = '^\+44'
trunks = ["nowhere"]

[[trusted]]
cidr = "10.0.0.0/40"

[[inbound]]
did = "5550100"
to = "agent:bob"
"#;
    let errs = Dialplan::from_texts(&[("a.toml", CARRIERS), ("b.toml", bad)]).unwrap_err();
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("b.toml:2: trunk 'carrier' is already defined at a.toml:2")),
        "{shown:#?}"
    );
    assert!(
        shown.iter().any(|e| e.starts_with("b.toml:7: route pattern '^(unclosed'")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("b.toml:11: route '^\\+44' names unknown trunk 'nowhere'")),
        "{shown:#?}"
    );
    assert!(shown.iter().any(|e| e.starts_with("b.toml:15: trusted:")), "{shown:#?}");
    assert!(shown.iter().any(|e| e.starts_with("b.toml:18: inbound did '5550100'")), "{shown:#?}");

    let unknown =
        Dialplan::from_texts(&[("c.toml", "[[route]]\npattern = 'x'\ntrunks = []\ncolour = 1\n")])
            .unwrap_err();
    assert!(unknown[0].to_string().starts_with("c.toml:"), "{unknown:?}");
    assert!(unknown[0].message.contains("colour"), "{unknown:?}");
    let syntax = Dialplan::from_texts(&[("d.toml", "[[trunk]\n")]).unwrap_err();
    assert_eq!(syntax[0].line, 1);
    let dur =
        Dialplan::from_texts(&[("e.toml", "[emergency]\ncallback_lease = \"60\"\n")]).unwrap_err();
    assert!(dur[0].message.contains("callback_lease"), "{dur:?}");
}

#[test]
fn reload_keeps_the_old_table_on_error() {
    let dir = std::env::temp_dir().join(format!("lifeline-dialplan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plan.toml"), CARRIERS).unwrap();
    let plans = Dialplans::load(&dir).unwrap();
    assert_eq!(plans.current().trunks.len(), 2);

    std::fs::write(dir.join("plan.toml"), "[[route]]\npattern = '('\ntrunks = ['x']\n").unwrap();
    let errs = plans.reload().unwrap_err();
    assert!(errs[0].to_string().contains("plan.toml:1:"), "{errs:?}");
    assert_eq!(plans.current().trunks.len(), 2, "the old table stays");

    // Readers keep working while reloads happen.
    std::fs::write(
        dir.join("plan.toml"),
        CATCH_ALL.replace("trunk:backup", "trunk:b2")
            + "\n[[trunk]]\nname = \"b2\"\nkind = \"direct-routing\"\nuri = \"sip:203.0.113.5\"\n",
    )
    .unwrap();
    let plans = Arc::new(plans);
    let reader = {
        let plans = plans.clone();
        std::thread::spawn(move || {
            for _ in 0..1000 {
                let p = plans.current();
                assert!(p.trunks.len() == 1 || p.trunks.len() == 2);
            }
        })
    };
    for _ in 0..20 {
        plans.reload().unwrap();
    }
    reader.join().unwrap();
    assert_eq!(plans.current().trunks[0].name, "b2");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn trunk_host_names_tls_and_their_ca_file() {
    let dir = std::env::temp_dir().join(format!("lifeline-dialplan-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["ca.example".into()]).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(dir.join("empty.pem"), "not a certificate\n").unwrap();
    let trunk = |uri: &str, ca: &str| {
        format!("[[trunk]]\nname = 't'\nkind = 'direct-offer'\nuri = '{uri}'\n{ca}")
    };
    let file = dir.join("plan.toml");
    let name = file.to_str().unwrap();
    let text = trunk("sips:sbc.carrier.example", "tls_ca = 'ca.pem'\n");
    let plan = Dialplan::from_texts(&[(name, &text)]).unwrap();
    let t = &plan.trunks[0];
    assert_eq!((t.host.as_str(), t.ip, t.uses_tls()), ("sbc.carrier.example", None, true));
    assert_eq!(t.tls_ca.as_ref().unwrap().path, dir.join("ca.pem"), "relative to the file");
    assert_eq!(t.tls_ca.as_ref().unwrap().roots.len(), 1);
    let text = trunk("sip:192.0.2.1;transport=tls", "");
    let t = &Dialplan::from_texts(&[(name, &text)]).unwrap().trunks[0];
    assert!(t.uses_tls() && t.tls_ca.is_none());
    let text = trunk("sips:192.0.2.1;transport=tcp", "");
    // RFC 3261 §26.2: `sips:` over "tcp" is TLS over TCP.
    assert!(Dialplan::from_texts(&[(name, &text)]).unwrap().trunks[0].uses_tls());
    for ca in ["tls_ca = 'missing.pem'\n", "tls_ca = 'empty.pem'\n"] {
        let text = trunk("sip:sbc.carrier.example;transport=tls", &format!("\n{ca}"));
        let errs = Dialplan::from_texts(&[(name, &text)]).unwrap_err();
        assert_eq!(errs[0].line, 1, "{errs:?}");
        assert!(errs[0].message.contains("tls_ca"), "{errs:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
