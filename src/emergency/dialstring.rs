//! Recognising an emergency call from its Request-URI.
//!
//! What the agent dialled is the user part of a `sip:`/`sips:` URI or the number of a `tel:`
//! URI (RFC 3966), with visual separators (`-`, `.`, `(`, `)`, space) and `;parameters` removed
//! and nothing else: no `+` form, no normalisation, no dial mask. It is an emergency
//! dialstring when
//!
//! - it is exactly one of the caller's country's dialstrings (`911`), or
//! - one of **that country's** outside-line prefixes followed by exactly one of its dialstrings
//!   (`9911` in the US with the default `outside_line = { US = ["9"] }`).
//!
//! When the caller's country is unknown, or has no table, every configured country applies,
//! each with its own prefixes (DESIGN.md). So `9111`, `91111`, `99911` and `1911` are not
//! emergency calls, and a country without a prefix never strips one.
//!
//! `urn:service:sos` and its sub-services (`urn:service:sos.fire`, RFC 5031 §4.2) are
//! emergency calls too, compared case-insensitively; an unknown sub-service counts as its
//! parent (RFC 5031 §4.1), since an emergency call must not be missed.
//!
//! The dialstring that comes out is the digits dialled after the prefix, character for
//! character: 933 stays 933, never 911 (a dial mask that turns 933 into 911 sends test calls to
//! a real PSAP).

use sip::Uri;

use crate::routing::Emergency;

/// A recognised emergency call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognised {
    /// What leaves toward the trunk: the dialstring (`911`) or the URN as sent
    /// (`urn:service:sos.fire`).
    pub dialstring: String,
    /// The call was made with an RFC 5031 service URN.
    pub urn: bool,
    /// Listed in `[emergency] test` (933): the same path, marked as a test.
    pub test: bool,
    /// The outside-line prefix dialled first (`9` of `9911`).
    pub prefix: Option<String>,
    /// The country whose table matched (`None` for a URN). With the caller's country unknown,
    /// the first matching country in alphabetical order.
    pub country: Option<String>,
}

/// The emergency call `uri` makes for a caller in `country` (`None`: unknown), if any.
pub fn recognise(em: &Emergency, uri: &Uri<'_>, country: Option<&str>) -> Option<Recognised> {
    match uri {
        Uri::Urn(u) => {
            let service = u.service()?;
            let lower = service.to_ascii_lowercase();
            let sos = lower == "sos" || lower.starts_with("sos.");
            sos.then(|| Recognised {
                dialstring: format!("urn:service:{lower}"),
                urn: true,
                test: false,
                prefix: None,
                country: None,
            })
        }
        _ => recognise_user(em, uri.user()?, country),
    }
}

/// [`recognise`] on what was dialled (the user part or `tel:` number, still escaped or not).
pub fn recognise_user(em: &Emergency, user: &str, country: Option<&str>) -> Option<Recognised> {
    let digits = dialled_digits(user)?;
    let known = country.and_then(|c| em.countries.get_key_value(&c.to_ascii_uppercase()));
    let scope: Vec<(&String, &Vec<String>)> = match known {
        Some(one) => vec![one],
        None => em.countries.iter().collect(),
    };
    let found = |dialstring: &str, prefix: Option<&str>, country: &str| Recognised {
        dialstring: dialstring.to_owned(),
        urn: false,
        test: em.test.iter().any(|t| t == dialstring),
        prefix: prefix.map(str::to_owned),
        country: Some(country.to_owned()),
    };
    if let Some((c, _)) = scope.iter().find(|(_, list)| list.contains(&digits)) {
        return Some(found(&digits, None, c));
    }
    scope.iter().find_map(|(c, list)| {
        em.outside_line.get(*c)?.iter().find_map(|p| {
            let rest = digits.strip_prefix(p.as_str())?;
            list.iter().any(|d| d == rest).then(|| found(rest, Some(p), c))
        })
    })
}

/// Whether `user` could be an emergency dialstring at all, without the tables: a short string
/// of digits. The transports use this to keep the dialplan off their hot path.
pub fn could_be(user: &str) -> bool {
    let dialled = user.split(';').next().unwrap_or(user);
    if dialled.contains('%') {
        // Escaped separators are rare: decode them the slow way.
        return dialled_digits(user).is_some_and(|d| d.len() <= 8);
    }
    // Without escapes, the same answer without allocating (every initial request asks).
    let mut digits = 0;
    for b in dialled.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'-' | b'.' | b'(' | b')' | b' ' => {}
            _ => return false,
        }
    }
    (1..=8).contains(&digits)
}

/// The digits dialled: separators and `;parameters` removed; `None` for anything with a `+`,
/// a letter or no digit at all.
fn dialled_digits(user: &str) -> Option<String> {
    let user = user.split(';').next().unwrap_or(user);
    // `%2D` and friends: a percent-escaped separator is still a separator.
    let decoded = percent_decode(user)?;
    let mut digits = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '-' | '.' | '(' | ')' | ' ' => {}
            _ => return None,
        }
    }
    (!digits.is_empty() && digits.len() <= 32).then_some(digits)
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn us() -> Emergency {
        Emergency::default()
    }

    fn with_gb() -> Emergency {
        let mut em = Emergency::default();
        em.countries.insert("GB".into(), vec!["999".into(), "112".into()]);
        em
    }

    fn rec(em: &Emergency, uri: &str, country: Option<&str>) -> Option<Recognised> {
        recognise(em, &Uri::parse(uri).expect("uri"), country)
    }

    #[test]
    fn dialstrings_in_every_uri_form() {
        let em = us();
        for uri in [
            "sip:911@edge.example.com",
            "sips:911@edge.example.com",
            "sip:911@edge.example.com;user=phone",
            "sip:911;phone-context=+1@edge.example.com;user=phone",
            "tel:911",
            "tel:9-1-1",
            "sip:9%2D1%2D1@edge",
        ] {
            let r = rec(&em, uri, Some("US")).unwrap_or_else(|| panic!("{uri}"));
            assert_eq!(r.dialstring, "911", "{uri}");
            assert!(!r.test);
        }
        let t = rec(&em, "sip:933@edge", Some("US")).expect("933");
        assert_eq!(t.dialstring, "933", "933 is never rewritten into 911");
        assert!(t.test);
    }

    #[test]
    fn outside_line_prefix_pairs_with_its_country() {
        let em = us();
        let r = rec(&em, "sip:9911@edge", Some("US")).expect("9911");
        assert_eq!((r.dialstring.as_str(), r.prefix.as_deref()), ("911", Some("9")));
        assert_eq!(rec(&em, "sip:9933@edge", Some("PR")).expect("9933").dialstring, "933");
        for not in ["9111", "91111", "99911", "1911", "8911", "+1911", "912", "91", "", "abc"] {
            assert!(rec(&em, &format!("sip:{not}@edge"), Some("US")).is_none(), "{not}");
        }
        assert!(rec(&em, "sip:+12025550911@edge", None).is_none());
    }

    #[test]
    fn country_picks_the_table_and_unknown_takes_all() {
        let em = with_gb();
        assert!(rec(&em, "sip:999@edge", Some("US")).is_none(), "999 is not American");
        assert!(rec(&em, "sip:911@edge", Some("GB")).is_none(), "911 is not British");
        assert_eq!(
            rec(&em, "sip:999@edge", Some("gb")).expect("gb").country.as_deref(),
            Some("GB")
        );
        // Unknown country, or one without a table: every table applies.
        assert!(rec(&em, "sip:999@edge", None).is_some());
        assert!(rec(&em, "sip:911@edge", None).is_some());
        assert!(rec(&em, "sip:112@edge", Some("FR")).is_some());
        // GB has no outside-line prefix: 9999 is not 9 + 999.
        assert!(rec(&em, "sip:9999@edge", None).is_none());
        let mut em = with_gb();
        em.outside_line = BTreeMap::from([("GB".into(), vec!["9".into()])]);
        assert_eq!(rec(&em, "sip:9999@edge", Some("GB")).expect("9999").dialstring, "999");
        assert!(rec(&em, "sip:9911@edge", Some("US")).is_none(), "US has no prefix now");
    }

    #[test]
    fn sos_urns() {
        let em = us();
        for (uri, ds) in [
            ("urn:service:sos", "urn:service:sos"),
            ("URN:Service:SOS", "urn:service:sos"),
            ("urn:service:sos.fire", "urn:service:sos.fire"),
            ("urn:service:sos.animal-control", "urn:service:sos.animal-control"),
        ] {
            let r = rec(&em, uri, None).unwrap_or_else(|| panic!("{uri}"));
            assert_eq!(r.dialstring, ds);
            assert!(r.urn);
        }
        for not in ["urn:service:sosx", "urn:service:counseling", "urn:nena:service:sos"] {
            assert!(Uri::parse(not).ok().and_then(|u| recognise(&em, &u, None)).is_none(), "{not}");
        }
    }

    #[test]
    fn could_be_is_cheap_and_loose() {
        assert!(could_be("911"));
        assert!(could_be("9-1-1"));
        assert!(!could_be("+12025550199"));
        assert!(!could_be("alice"));
        assert!(!could_be("123456789012"));
        assert!(could_be("9%2D1%2D1"));
        assert!(could_be("911;phone-context=+1"));
        assert!(!could_be(""));
        assert!(!could_be("--"));
        assert!(!could_be("123456789"), "nine digits");
    }
}
