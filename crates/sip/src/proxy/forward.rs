//! Forwarding a request (RFC 3261 §16.6), Record-Route (§16.6 step 4, RFC 5658) and the CANCEL
//! of a pending branch (§16.10, §9.1).

use crate::header::HeaderName;
use crate::header::typed::NameAddr;
use crate::message::Request;
use crate::method::Method;
use crate::uri::Uri;

use super::local::{ListenAddr, NextHop};
use super::validate::{Admitted, Branch, BranchSeed};
use super::{Reject, edit};

/// Max-Forwards of a CANCEL this proxy builds (RFC 3261 §8.1.1.6).
const CANCEL_MAX_FORWARDS: &str = "70";

/// How to record-route a forwarded request (RFC 3261 §16.6 step 4).
#[derive(Debug, Clone, Copy)]
pub struct RecordRoute<'a> {
    /// The address the request arrived on. When it differs from the outbound address (another
    /// transport, interface or port: WSS from a browser, UDP to a trunk), two Record-Route values
    /// are inserted (RFC 5658 double Record-Route); otherwise one.
    pub inbound: &'a ListenAddr,
    /// URI parameters added to every Record-Route URI inserted, without the leading `;`
    /// (`ftag=a1b2;ob`): a flow token or a dialog marker. They come back in the Route values
    /// of in-dialog requests ([`super::Preprocessed::ours`]). Characters a URI parameter may
    /// not contain (RFC 3261 §25.1) are percent-escaped: use base64url without padding, or hex,
    /// for tokens that must come back unchanged.
    pub params: Option<&'a str>,
}

/// A copy of a request on its way to one target (RFC 3261 §16.6 steps 1–3, 6, 7, 9), waiting
/// for the outbound address to be chosen from its next hop; [`Prepared::finish`] adds
/// Record-Route and Via (steps 4 and 8).
#[derive(Debug, Clone)]
pub struct Prepared {
    request: Request,
    next_hop: NextHop,
    strict_next_hop: bool,
    seed: BranchSeed,
}

/// Prepares the copy of `request` for one target (RFC 3261 §16.6):
///
/// 1. copies the request (after [`super::preprocess_routes`]);
/// 2. puts `target` in the Request-URI, without the URI headers and `method` parameter a
///    Request-URI may not carry (§19.1.1 table 1); `None` keeps the Request-URI (in-dialog
///    requests, requests routed by Route);
/// 3. sets Max-Forwards to [`Admitted::max_forwards`];
/// 6. when the top Route is a strict router (no `lr`), moves the Request-URI to the end of the
///    Route set and that Route into the Request-URI;
/// 7. determines the next hop: the strict router, else the top Route, else the Request-URI
///    ([`NextHop::for_uri`]);
/// 9. adds Content-Length when the request had none (a datagram may omit it; a stream may not).
pub fn prepare(
    request: &Request,
    admitted: &Admitted,
    target: Option<&str>,
) -> Result<Prepared, Reject> {
    let mut copy = request.clone();
    if let Some(target) = target {
        let uri = request_uri_for(target)?;
        copy.set_uri(&uri).map_err(|_| Reject::BadRequestUri)?;
    }
    copy.headers_mut().set(HeaderName::MaxForwards, admitted.max_forwards.to_string());

    // The top Route, decoded once: a loose router is also the next hop (step 7).
    let mut route_hop = None;
    let strict = match copy.headers().name_addrs(HeaderName::Route).next() {
        None => false,
        Some(top) => match top.map_err(|_| Reject::Malformed(HeaderName::Route))?.uri {
            Uri::Sip(u) if u.is_loose_router() => {
                route_hop = Some(NextHop::for_uri(&u)?);
                false
            }
            Uri::Sip(_) => true,
            _ => return Err(Reject::UnsupportedUriScheme),
        },
    };
    if strict {
        let request_uri = copy.uri_str().to_owned();
        let first = copy
            .headers_mut()
            .pop_first_value(HeaderName::Route)
            .ok_or(Reject::Malformed(HeaderName::Route))?;
        let first =
            std::str::from_utf8(&first).map_err(|_| Reject::Malformed(HeaderName::Route))?;
        let first = NameAddr::parse(first).map_err(|_| Reject::Malformed(HeaderName::Route))?;
        copy.set_uri(first.uri_raw).map_err(|_| Reject::Malformed(HeaderName::Route))?;
        edit::insert_after_last(
            copy.headers_mut(),
            &[HeaderName::Route],
            HeaderName::Route,
            format!("<{request_uri}>"),
        );
    }

    let next_hop = match route_hop {
        Some(hop) => hop,
        None => match copy.uri() {
            Ok(Uri::Sip(u)) => NextHop::for_uri(&u)?,
            Ok(_) => return Err(Reject::UnsupportedUriScheme),
            Err(_) => return Err(Reject::BadRequestUri),
        },
    };

    if !copy.headers().contains(HeaderName::ContentLength) {
        let len = copy.body().len().to_string();
        copy.headers_mut().set(HeaderName::ContentLength, len);
    }

    Ok(Prepared { request: copy, next_hop, strict_next_hop: strict, seed: admitted.seed })
}

impl Prepared {
    /// The copy as prepared so far.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Where the copy goes (RFC 3261 §16.6 step 7). The caller may override it (a registered
    /// flow, an outbound proxy), but must send from an address of the same transport.
    pub fn next_hop(&self) -> &NextHop {
        &self.next_hop
    }

    /// Whether the next hop is a strict router (RFC 3261 §16.6 step 6 rewrote the request).
    pub fn strict_next_hop(&self) -> bool {
        self.strict_next_hop
    }

    /// The branch fork `index` will carry.
    pub fn branch(&self, index: u32) -> Branch {
        Branch::new(self.seed, index)
    }

    /// Finishes the copy for sending from `outbound` as client transaction `fork`
    /// (RFC 3261 §16.6 steps 4 and 8):
    ///
    /// - Record-Route, when asked for, at the top of the Record-Route set. One value,
    ///   `<sip:HOST:PORT;transport=T;lr[;params]>`, when the request leaves by the address it
    ///   came in on; otherwise two (RFC 5658), each with `r2=on` (the marker Kamailio's rr
    ///   module uses): the **outbound** side on top, the **inbound** side below it. The UAS
    ///   uses the Record-Route list in order as its route set, so its in-dialog requests reach
    ///   the outbound side first — the address it can reach, on its transport; the UAC uses the
    ///   list reversed, so its requests reach the inbound side first. Either way the proxy
    ///   finds its two values adjacent and pops both ([`super::preprocess_routes`]). The scheme
    ///   is `sips:` when the Request-URI or the top Route is (§16.6 step 4).
    /// - A new top Via: `SIP/2.0/T HOST:PORT;branch=...` with the branch of `fork`
    ///   ([`Branch`]).
    pub fn finish(
        self,
        outbound: &ListenAddr,
        fork: u32,
        record_route: Option<&RecordRoute<'_>>,
    ) -> Request {
        let mut request = self.request;
        if let Some(rr) = record_route {
            let secure = is_sips(&request);
            let double = rr.inbound != outbound;
            let headers = request.headers_mut();
            if double {
                headers.prepend(
                    HeaderName::RecordRoute,
                    record_route_value(secure, rr.inbound, true, rr.params),
                );
            }
            headers.prepend(
                HeaderName::RecordRoute,
                record_route_value(secure, outbound, double, rr.params),
            );
        }
        let mut via = String::with_capacity(96);
        via.push_str("SIP/2.0/");
        via.push_str(outbound.transport().via_token());
        via.push(' ');
        via.push_str(outbound.host_port());
        via.push_str(";branch=");
        Branch::new(self.seed, fork).push_to(&mut via);
        request.headers_mut().prepend(HeaderName::Via, via);
        request
    }
}

/// Whether the Request-URI or the top Route is a `sips:` URI (RFC 3261 §16.6 step 4).
/// Only the schemes are looked at (the request was validated; a Route is a name-addr,
/// `<...>`, RFC 3261 §20.34), so neither URI is decoded.
fn is_sips(request: &Request) -> bool {
    fn sips(uri: &[u8]) -> bool {
        uri.get(..5).is_some_and(|s| s.eq_ignore_ascii_case(b"sips:"))
    }
    let route_secure = request.headers().get(HeaderName::Route).is_some_and(|top| {
        // A quoted display name may hold a `<` of its own: then the URI is decoded.
        match memchr::memchr(b'<', top).filter(|at| !top[..*at].contains(&b'"')) {
            Some(at) => top.get(at + 1..).is_some_and(sips),
            None => matches!(
                request.headers().name_addrs(HeaderName::Route).next(),
                Some(Ok(NameAddr { uri: Uri::Sip(u), .. })) if u.secure
            ),
        }
    });
    sips(request.uri_str().as_bytes()) || route_secure
}

/// `<sip:HOST:PORT;transport=T[;r2=on];lr[;params]>`.
fn record_route_value(
    secure: bool,
    addr: &ListenAddr,
    double: bool,
    params: Option<&str>,
) -> String {
    let mut v = String::with_capacity(80);
    v.push_str(if secure { "<sips:" } else { "<sip:" });
    v.push_str(addr.host_port());
    v.push_str(";transport=");
    v.push_str(addr.transport().uri_param());
    if double {
        v.push_str(";r2=on");
    }
    v.push_str(";lr");
    if let Some(p) = params.map(|p| p.trim_start_matches(';')).filter(|p| !p.is_empty()) {
        v.push(';');
        push_uri_params(&mut v, p);
    }
    v.push('>');
    v
}

/// Appends caller-supplied URI parameters, escaping every byte that may not appear in
/// `uri-parameters` (RFC 3261 §25.1: unreserved, param-unreserved, escapes, and `;` `=` as
/// separators), so that the Record-Route stays well-formed whatever the caller passed. Valid
/// parameters are copied unchanged.
fn push_uri_params(out: &mut String, params: &str) {
    let bytes = params.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let escape_ok = b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        let plain = b.is_ascii_alphanumeric() || b"-_.!~*'()[]/:&+$;=".contains(&b);
        if plain || escape_ok {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A target URI as a Request-URI (RFC 3261 §16.6 step 2, §19.1.1 table 1): a SIP URI loses its
/// `?headers` and its `method` parameter; other URIs are taken as they are.
fn request_uri_for(target: &str) -> Result<String, Reject> {
    let Uri::Sip(sip) = Uri::parse(target).map_err(|_| Reject::BadRequestUri)? else {
        return Ok(target.to_owned());
    };
    if sip.headers.is_none() && !sip.params.contains("method") {
        return Ok(target.to_owned());
    }
    // The host part starts after the userinfo's `@` (the user part may contain `;` and `?`),
    // or after the scheme.
    let host_start = match target.find('@') {
        Some(at) => at + 1,
        None => target.find(':').map_or(0, |c| c + 1),
    };
    let head = target.get(..host_start).ok_or(Reject::BadRequestUri)?;
    let tail = target.get(host_start..).ok_or(Reject::BadRequestUri)?;
    let tail = tail.split_once('?').map_or(tail, |(t, _)| t);
    let mut parts = tail.split(';');
    let mut out = String::with_capacity(target.len());
    out.push_str(head);
    out.push_str(parts.next().unwrap_or(""));
    for p in parts {
        let name = p.split('=').next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case("method") {
            out.push(';');
            out.push_str(p);
        }
    }
    Ok(out)
}

/// The branch a CANCEL for a forwarded INVITE must carry: the INVITE's own (RFC 3261 §9.1,
/// §16.10) — the top Via branch of the copy this proxy sent.
pub fn cancel_branch(forwarded_invite: &Request) -> Option<&str> {
    forwarded_invite.headers().top_via().ok()?.branch()
}

/// The CANCEL for one pending branch (RFC 3261 §16.10, built per §9.1 from the INVITE this
/// proxy forwarded on that branch): same Request-URI, Call-ID, From, To and CSeq number, a
/// single Via equal to the INVITE's top Via (so the same branch), the INVITE's Route values,
/// Max-Forwards 70. `reason` is a Reason header value to carry (RFC 3326), e.g. the one of
/// the CANCEL received, or `SIP;cause=200;text="Call completed elsewhere"` when another branch
/// answered.
pub fn cancel_for(forwarded_invite: &Request, reason: Option<&str>) -> Result<Request, Reject> {
    let mut cancel = Request::new(Method::Cancel, forwarded_invite.uri_str())
        .map_err(|_| Reject::BadRequestUri)?;
    let src = forwarded_invite.headers();
    let top = src.top_via().map_err(|_| Reject::Malformed(HeaderName::Via))?;
    let cseq = src.cseq().map_err(|_| Reject::Malformed(HeaderName::CSeq))?;
    let copy = |name: HeaderName| -> Result<bytes::Bytes, Reject> {
        src.get(name).map(bytes::Bytes::copy_from_slice).ok_or(Reject::Malformed(name))
    };
    let (from, to, call_id) =
        (copy(HeaderName::From)?, copy(HeaderName::To)?, copy(HeaderName::CallId)?);
    let h = cancel.headers_mut();
    h.push(HeaderName::Via, top.raw.to_owned());
    for route in src.get_all(HeaderName::Route) {
        h.push(HeaderName::Route, bytes::Bytes::copy_from_slice(route));
    }
    h.push(HeaderName::MaxForwards, CANCEL_MAX_FORWARDS);
    h.push(HeaderName::From, from);
    h.push(HeaderName::To, to);
    h.push(HeaderName::CallId, call_id);
    h.push(HeaderName::CSeq, format!("{} CANCEL", cseq.seq));
    if let Some(reason) = reason {
        h.push(HeaderName::Reason, reason.to_owned());
    }
    h.push(HeaderName::ContentLength, "0");
    Ok(cancel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_route_params_are_escaped() {
        let addr = ListenAddr::new(super::super::Transport::Udp, "192.0.2.1", 5060).unwrap();
        assert_eq!(
            record_route_value(false, &addr, false, Some(";ftag=a1;ob;x=%41")),
            "<sip:192.0.2.1:5060;transport=udp;lr;ftag=a1;ob;x=%41>"
        );
        assert_eq!(
            record_route_value(false, &addr, true, Some("t=a>b, <c\"%zz é")),
            "<sip:192.0.2.1:5060;transport=udp;r2=on;lr;t=a%3Eb%2C%20%3Cc%22%25zz%20%C3%A9>"
        );
    }

    #[test]
    fn targets_lose_headers_and_method() {
        assert_eq!(
            request_uri_for("sip:alice@192.0.2.4:5070;transport=tcp").unwrap(),
            "sip:alice@192.0.2.4:5070;transport=tcp"
        );
        assert_eq!(
            request_uri_for("sip:alice@example.com;method=INVITE;ob?subject=x").unwrap(),
            "sip:alice@example.com;ob"
        );
        assert_eq!(
            request_uri_for("sip:a;b?c@example.com?priority=urgent").unwrap(),
            "sip:a;b?c@example.com"
        );
        assert_eq!(request_uri_for("sip:example.com;METHOD=REGISTER").unwrap(), "sip:example.com");
        assert_eq!(request_uri_for("tel:+15550100").unwrap(), "tel:+15550100");
        assert_eq!(request_uri_for("not a uri"), Err(Reject::BadRequestUri));
    }
}
