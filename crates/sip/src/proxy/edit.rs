//! Header edits the proxy rules need beyond the public [`Headers`] API: replacing or removing
//! one element of a comma-separated header in place, and inserting a header at a chosen place.
//! Every other header keeps its raw bytes, so the forwarded message is byte-exact where the
//! rules did not touch it.

use bytes::Bytes;

use crate::header::{HeaderName, Headers};
use crate::text;

/// Inserts a header at index `at` (clamped to the end). The entry is built by
/// [`Headers::push`] and moved, so that its form is the one every added header has.
pub(super) fn insert_at(h: &mut Headers, at: usize, name: HeaderName, value: impl Into<Bytes>) {
    h.push(name, value);
    h.changed(name);
    if let Some(entry) = h.entries.pop() {
        let at = at.min(h.entries.len());
        h.entries.insert(at, entry);
    }
}

/// Inserts a header just after the last header named in `after`; when there is none, before
/// Content-Length; otherwise at the end.
pub(super) fn insert_after_last(
    h: &mut Headers,
    after: &[HeaderName],
    name: HeaderName,
    value: impl Into<Bytes>,
) {
    let at = h
        .entries
        .iter()
        .rposition(|e| after.contains(&e.name))
        .map(|i| i + 1)
        .or_else(|| h.entries.iter().position(|e| e.name == HeaderName::ContentLength))
        .unwrap_or(h.entries.len());
    insert_at(h, at, name, value);
}

/// Replaces the first element of the first header called `name` (the top Via) with `new`,
/// keeping the header's place and its other elements. Returns false when there is no such
/// header.
pub(super) fn replace_first_element(h: &mut Headers, name: HeaderName, new: &[u8]) -> bool {
    let Some(idx) = h.entries.iter().position(|e| e.name == name) else {
        return false;
    };
    let Some(entry) = h.entries.get(idx) else {
        return false;
    };
    let raw = h.piece(entry.value);
    let mut value = new.to_vec();
    if let Some(comma) = std::str::from_utf8(raw).ok().and_then(text::top_level_comma) {
        let rest = raw.get(comma + 1..).map(text::trim_bytes).unwrap_or(b"");
        if !rest.is_empty() {
            value.extend_from_slice(b", ");
            value.extend_from_slice(rest);
        }
    }
    h.set_value(idx, value.into());
    true
}

/// Removes the last element of the last header called `name` (the last Route value,
/// RFC 3261 §16.4) and returns it. A header left empty is removed.
pub(super) fn remove_last_element(h: &mut Headers, name: HeaderName) -> Option<String> {
    h.changed(name);
    let idx = h.entries.iter().rposition(|e| e.name == name)?;
    let raw = h.piece(h.entries.get(idx)?.value);
    let value = std::str::from_utf8(raw).ok()?;
    let mut elements: Vec<&str> = text::split_commas(value).collect();
    let last = elements.pop()?.to_owned();
    if elements.is_empty() {
        h.entries.remove(idx);
    } else {
        let rest = Bytes::from(elements.join(", "));
        h.set_value(idx, rest);
    }
    Some(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(HeaderName, &'static str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in lines {
            h.push(*n, Bytes::from_static(v.as_bytes()));
        }
        h
    }

    fn values(h: &Headers) -> Vec<String> {
        h.iter().map(|(n, _, v)| format!("{n}: {}", String::from_utf8_lossy(v))).collect()
    }

    #[test]
    fn remove_last_route_element() {
        let mut h = headers(&[
            (HeaderName::Route, "<sip:a;lr>"),
            (HeaderName::CallId, "x"),
            (HeaderName::Route, "<sip:b;lr>, <sip:c>"),
        ]);
        assert_eq!(remove_last_element(&mut h, HeaderName::Route).as_deref(), Some("<sip:c>"));
        assert_eq!(values(&h), ["Route: <sip:a;lr>", "Call-ID: x", "Route: <sip:b;lr>"]);
        assert_eq!(remove_last_element(&mut h, HeaderName::Route).as_deref(), Some("<sip:b;lr>"));
        assert_eq!(values(&h), ["Route: <sip:a;lr>", "Call-ID: x"]);
        assert_eq!(remove_last_element(&mut h, HeaderName::Via), None);
    }

    #[test]
    fn replace_first_keeps_the_rest() {
        let mut h = headers(&[
            (HeaderName::CallId, "x"),
            (HeaderName::Via, "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"),
        ]);
        assert!(replace_first_element(
            &mut h,
            HeaderName::Via,
            b"SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.1"
        ));
        assert_eq!(
            values(&h)[1],
            "Via: SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.1, SIP/2.0/UDP b;branch=z9hG4bK2"
        );
        assert!(!replace_first_element(&mut h, HeaderName::Route, b"x"));
    }

    #[test]
    fn insert_after_last_or_before_content_length() {
        let mut h = headers(&[
            (HeaderName::Via, "v"),
            (HeaderName::WwwAuthenticate, "a"),
            (HeaderName::CallId, "x"),
            (HeaderName::ContentLength, "0"),
        ]);
        insert_after_last(
            &mut h,
            &[HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate],
            HeaderName::ProxyAuthenticate,
            "b",
        );
        insert_after_last(&mut h, &[HeaderName::Unsupported], HeaderName::Unsupported, "c");
        assert_eq!(
            values(&h),
            [
                "Via: v",
                "WWW-Authenticate: a",
                "Proxy-Authenticate: b",
                "Call-ID: x",
                "Unsupported: c",
                "Content-Length: 0"
            ]
        );
    }
}
