//! The torture corpus: RFC 4475 (SIP torture tests), RFC 5118 (IPv6 torture tests) and
//! messages as real clients send them (JsSIP over WebSocket, SIPp, a carrier's emergency
//! INVITE with SDP and PIDF-LO). `tests/torture/MANIFEST.tsv` says what each must do:
//!
//! - `valid`: parses, and prints back byte for byte;
//! - `reject:<word>`: refused, with `<word>` in the 400 reason phrase (a request whose Via
//!   survived is answerable; a response is dropped);
//! - `semantic:<status>`: parses; a higher layer answers `<status>` (tested there).

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use sip::framing::{self, Frame};
use sip::{Framing, HeaderName, Message, MessageKind};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture")
}

struct Case {
    path: String,
    expect: String,
}

fn manifest() -> Vec<Case> {
    let text = std::fs::read_to_string(dir().join("MANIFEST.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut cols = l.split('\t');
            let path = cols.next().unwrap().trim().to_owned();
            let expect =
                cols.next().unwrap_or_else(|| panic!("no expectation: {l}")).trim().to_owned();
            Case { path, expect }
        })
        .collect()
}

#[test]
fn every_file_is_in_the_manifest() {
    let listed: Vec<String> = manifest().into_iter().map(|c| c.path).collect();
    for sub in ["rfc4475", "rfc5118", "clients"] {
        for entry in std::fs::read_dir(dir().join(sub)).unwrap() {
            let name = format!("{sub}/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(listed.contains(&name), "{name} is not in MANIFEST.tsv");
        }
    }
}

#[test]
fn corpus_meets_its_expectations() {
    let mut failures = Vec::new();
    let cases = manifest();
    assert!(cases.len() >= 60, "corpus too small: {}", cases.len());
    for case in &cases {
        let bytes = std::fs::read(dir().join(&case.path)).unwrap();
        let parsed = Message::parse(Bytes::from(bytes.clone()), Framing::Datagram);
        let verdict = match (case.expect.split_once(':'), &parsed) {
            (None, Ok(m)) if case.expect == "valid" => check_valid(&bytes, m),
            (None, Err(e)) if case.expect == "valid" => Err(format!("refused: {e}")),
            (Some(("semantic", _)), Ok(_)) => Ok(()),
            (Some(("semantic", _)), Err(e)) => Err(format!("refused: {e}")),
            (Some(("reject", word)), Err(e)) => {
                let reason = e.reason().to_lowercase();
                if !reason.contains(&word.to_lowercase()) {
                    Err(format!("refused as '{reason}', expected '{word}'"))
                } else if e.kind == MessageKind::Request
                    && !e.is_answerable()
                    && bytes
                        .windows(4)
                        .any(|w| w.eq_ignore_ascii_case(b"\nvia") || w.starts_with(b"\nv:"))
                {
                    Err("a request with a Via must be answerable".into())
                } else {
                    Ok(())
                }
            }
            (Some(("reject", _)), Ok(_)) => Err("accepted".into()),
            _ => Err(format!("unknown expectation '{}'", case.expect)),
        };
        if let Err(why) = verdict {
            failures.push(format!("{}: {why}", case.path));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// A valid message prints back as it came (minus bytes past Content-Length on a datagram),
/// frames as one message on a stream when it has a Content-Length, and its typed views decode.
fn check_valid(bytes: &[u8], m: &Message) -> Result<(), String> {
    let printed = m.to_bytes();
    let start = bytes.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(0);
    if !bytes[start..].starts_with(&printed) {
        return Err("does not print back byte for byte".into());
    }
    let h = m.headers();
    h.top_via().map_err(|e| format!("top Via: {e}"))?;
    h.from().map_err(|e| format!("From: {e}"))?;
    h.to().map_err(|e| format!("To: {e}"))?;
    h.cseq().map_err(|e| format!("CSeq: {e}"))?;
    if h.contains(HeaderName::ContentLength) {
        match framing::check(&printed, 1 << 20) {
            Ok(Frame::Message { len }) if len == printed.len() => {}
            other => return Err(format!("stream framing says {other:?}")),
        }
        Message::parse(printed.clone(), Framing::Stream).map_err(|e| format!("as stream: {e}"))?;
    }
    if let Message::Request(r) = m {
        r.uri().map_err(|e| format!("Request-URI: {e}"))?;
    }
    Ok(())
}

#[test]
fn carrier_emergency_invite_has_sdp_and_pidf_lo() {
    let path = dir().join("clients/carrier-invite-pidf.sip");
    let Ok(bytes) = std::fs::read(&path) else {
        panic!("missing {}", path.display());
    };
    let Ok(Message::Request(r)) = Message::parse(Bytes::from(bytes), Framing::Stream) else {
        panic!("carrier INVITE must parse as a stream message");
    };
    let h = r.headers();
    let ct = h.content_type().unwrap().unwrap();
    assert!(ct.is("multipart", "mixed"));
    let parts = sip::multipart::parse(r.body(), ct.boundary().unwrap()).unwrap();
    assert_eq!(parts.len(), 2);
    assert!(parts[0].content_type().unwrap().is("application", "sdp"));
    assert!(parts[1].content_type().unwrap().is("application", "pidf+xml"));
    // The Geolocation header points at the PIDF-LO part by Content-ID (RFC 6442 §4.1).
    let geo = h.name_addrs(HeaderName::Geolocation).next().unwrap().unwrap();
    let cid = geo.uri_raw.strip_prefix("cid:").unwrap();
    assert_eq!(parts[1].content_id(), Some(cid));
    assert!(std::str::from_utf8(parts[1].body).unwrap().contains("civicAddress"));
    assert_eq!(h.get(HeaderName::Priority), Some(&b"emergency"[..]));
}
