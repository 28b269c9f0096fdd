//! PIDF both ways: every state round-trips, what common softphones send maps to the state a
//! person would expect, and hostile documents are refused without a panic.

use super::*;

use PresenceState::{Available, Away, Busy, Dnd, Offline};

fn custom(s: &str) -> PresenceState {
    s.parse().unwrap()
}

fn doc(inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
         xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
         xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"sip:a@x\">{inner}</presence>"
    )
}

#[test]
fn every_state_round_trips() {
    for state in [Available, Busy, Away, Dnd, Offline, custom("lunch"), custom("training-2")] {
        let xml = to_pidf("sip:alice@example.com", &state);
        assert_eq!(parse(xml.as_bytes()), Ok(state.clone()), "{xml}");
    }
}

#[test]
fn the_written_document_carries_basic_rpid_and_note() {
    let xml = to_pidf("sip:alice@example.com", &Busy);
    assert!(xml.contains("<basic>open</basic>"), "{xml}");
    assert!(xml.contains("<rpid:activities><rpid:busy/></rpid:activities>"), "{xml}");
    assert!(xml.contains("<dm:note>busy</dm:note>"), "{xml}");
    assert!(xml.contains("entity=\"sip:alice@example.com\""), "{xml}");
    let dnd = to_pidf("sip:alice@example.com", &Dnd);
    assert!(dnd.contains("<basic>closed</basic>") && dnd.contains("<rpid:busy/>"), "{dnd}");
    let away = to_pidf("sip:alice@example.com", &Away);
    assert!(away.contains("<rpid:away/>"), "{away}");
    let lunch = to_pidf("sip:alice@example.com", &custom("lunch"));
    assert!(lunch.contains("<rpid:other>lunch</rpid:other>"), "{lunch}");
    // An entity with XML specials is escaped.
    let odd = to_pidf("sip:a&b\"<c>@x", &Available);
    assert!(odd.contains("entity=\"sip:a&amp;b&quot;&lt;c&gt;@x\""), "{odd}");
    assert_eq!(parse(odd.as_bytes()), Ok(Available));
}

#[test]
fn what_softphones_send() {
    // A JsSIP-based page: person with activity and note.
    let jssip = doc("<tuple id=\"t\"><status><basic>open</basic></status></tuple>\
         <dm:person id=\"p\"><rpid:activities><rpid:away/></rpid:activities>\
         <dm:note>Away</dm:note></dm:person>");
    assert_eq!(parse(jssip.as_bytes()), Ok(Away));
    // Bria-style DND: open, busy activity, note "Do Not Disturb".
    let bria = doc("<tuple id=\"t\"><status><basic>open</basic></status></tuple>\
         <dm:person id=\"p\"><rpid:activities><rpid:busy/></rpid:activities>\
         <dm:note>Do Not Disturb</dm:note></dm:person>");
    assert_eq!(parse(bria.as_bytes()), Ok(Dnd));
    // On the phone without a note: busy.
    let phone = doc("<tuple id=\"t\"><status><basic>open</basic></status></tuple>\
         <dm:person id=\"p\"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person>");
    assert_eq!(parse(phone.as_bytes()), Ok(Busy));
    // Only a basic status (Linphone "online" / "offline").
    let open = doc("<tuple id=\"t\"><status><basic>open</basic></status></tuple>");
    assert_eq!(parse(open.as_bytes()), Ok(Available));
    let closed = doc("<tuple id=\"t\"><status><basic>closed</basic></status></tuple>");
    assert_eq!(parse(closed.as_bytes()), Ok(Offline));
    // A tuple note, other prefixes, whitespace and case.
    let note = "<p:presence xmlns:p=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:a@x\">\
         <p:tuple id=\"t\"><p:status><p:basic> open </p:basic></p:status>\
         <p:note xml:lang=\"en\">  do-not-disturb </p:note></p:tuple></p:presence>";
    assert_eq!(parse(note.as_bytes()), Ok(Dnd));
    // A free-text note says nothing; the activity decides.
    let free =
        doc("<tuple id=\"t\"><status><basic>open</basic></status><note>Back at 3pm</note></tuple>\
         <dm:person id=\"p\"><rpid:activities><rpid:meal/></rpid:activities></dm:person>");
    assert_eq!(parse(free.as_bytes()), Ok(Away));
    // A custom state through `other`; an `other` that is no token is ignored.
    let lunch =
        doc("<tuple id=\"t\"><status><basic>open</basic></status></tuple><dm:person id=\"p\">\
         <rpid:activities><rpid:other>Lunch</rpid:other></rpid:activities></dm:person>");
    assert_eq!(parse(lunch.as_bytes()), Ok(custom("lunch")));
    let prose =
        doc("<tuple id=\"t\"><status><basic>open</basic></status></tuple><dm:person id=\"p\">\
         <rpid:activities><rpid:other>In the garden</rpid:other></rpid:activities></dm:person>");
    assert_eq!(parse(prose.as_bytes()), Ok(Available));
    // Entities and CDATA in a note.
    let ent = doc("<note>Do Not&#32;Disturb</note>");
    assert_eq!(parse(ent.as_bytes()), Ok(Dnd));
    let cdata = doc("<note><![CDATA[busy]]></note>");
    assert_eq!(parse(cdata.as_bytes()), Ok(Busy));
    // A byte order mark.
    let bom = format!("\u{feff}{}", to_pidf("sip:a@x", &Away));
    assert_eq!(parse(bom.as_bytes()), Ok(Away));
}

#[test]
fn hostile_or_useless_documents_are_refused_with_a_reason() {
    let cases: Vec<(Vec<u8>, PidfError)> = vec![
        (b"".to_vec(), PidfError::NotPidf),
        (b"hello".to_vec(), PidfError::NotPidf),
        (vec![0xff, 0xfe, 0x00], PidfError::NotUtf8),
        (b"<presence xmlns=\"urn:other\"/>".to_vec(), PidfError::NotPidf),
        (b"<presence><tuple/></presence>".to_vec(), PidfError::NotPidf),
        (doc("<tuple>").into_bytes(), PidfError::Malformed),
        (doc("<tuple></tupel>").into_bytes(), PidfError::Malformed),
        (doc("<note a=\"1\" a=\"2\">busy</note>").into_bytes(), PidfError::Malformed),
        (doc("<note>&ent;</note>").into_bytes(), PidfError::Malformed),
        (doc("").into_bytes(), PidfError::NoState),
        (
            doc("<tuple id=\"t\"><status><basic>maybe</basic></status></tuple>").into_bytes(),
            PidfError::NoState,
        ),
        (
            format!("{}<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"/>", doc("")).into_bytes(),
            PidfError::NotPidf,
        ),
        (vec![b' '; MAX_BYTES + 1], PidfError::TooLarge),
    ];
    for (body, want) in cases {
        assert_eq!(parse(&body), Err(want), "{}", String::from_utf8_lossy(&body));
        assert!(!want.reason().is_empty());
    }
    // Billion laughs: a DTD is never expanded; the undefined entity is refused.
    let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
        <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>\
        <presence xmlns=\"urn:ietf:params:xml:ns:pidf\"><note>&lol2;</note></presence>";
    assert_eq!(parse(laughs.as_bytes()), Err(PidfError::Malformed));
    // Too deep.
    let deep = doc(&format!("{}{}", "<x>".repeat(MAX_DEPTH + 1), "</x>".repeat(MAX_DEPTH + 1)));
    assert_eq!(parse(deep.as_bytes()), Err(PidfError::Malformed));
    // Too many events (within the size limit).
    let many = doc(&"<x/>".repeat(MAX_EVENTS + 10));
    assert!(many.len() <= MAX_BYTES);
    assert_eq!(parse(many.as_bytes()), Err(PidfError::Malformed));
    // A huge note is cut, not kept whole, and still parses.
    let long = doc(&format!(
        "<note>{}</note><tuple id=\"t\"><status><basic>open</basic></status></tuple>",
        "é".repeat(2000)
    ));
    assert_eq!(parse(long.as_bytes()), Ok(Available));
}

#[test]
fn truncated_documents_never_panic() {
    let full = to_pidf("sip:alice@example.com", &custom("lunch"));
    for cut in 0..full.len() {
        if full.is_char_boundary(cut) {
            let _ = parse(&full.as_bytes()[..cut]);
        }
    }
}
