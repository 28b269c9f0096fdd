//! Routing information preprocessing (RFC 3261 §16.4, RFC 5658 double Record-Route).

use crate::header::HeaderName;
use crate::header::typed::NameAddr;
use crate::message::Request;
use crate::uri::Uri;

use super::local::LocalIdentity;
use super::{Reject, edit};

/// What route preprocessing consumed of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preprocessed {
    /// The Request-URI was a value this proxy had placed in a Record-Route — the previous hop
    /// is a strict router — and was replaced by the last Route value (RFC 3261 §16.4). Holds the
    /// replaced Request-URI.
    pub strict_fixup: Option<String>,
    /// The Route URIs removed because they pointed at this proxy, top first: one, or two
    /// after a double Record-Route (RFC 5658).
    pub popped: Vec<String>,
}

impl Preprocessed {
    /// Every URI of ours the request carried (the strict-routed Request-URI, then the popped
    /// Routes): where the caller finds the parameters it put into its Record-Route (a flow
    /// token, a dialog marker).
    pub fn ours(&self) -> impl Iterator<Item = &str> {
        self.strict_fixup.iter().chain(&self.popped).map(String::as_str)
    }

    /// Whether the request reached this proxy by a route set (Record-Route of a dialog or a
    /// preloaded route) rather than by its Request-URI.
    pub fn was_routed(&self) -> bool {
        self.strict_fixup.is_some() || !self.popped.is_empty()
    }
}

/// Routing information preprocessing (RFC 3261 §16.4), in place:
///
/// 1. Strict-router fix-up: when the Request-URI is a Record-Route value of ours — our address,
///    no user part, `lr` — and there are Route values, the previous hop is a strict router; the
///    last Route value (the remote target) becomes the Request-URI again and leaves the Route
///    set. Like Kamailio's `loose_route`, only a request inside a dialog (with a To tag) is
///    treated so: Record-Route values only ever come back in dialogs, and an initial request to
///    this proxy's own host with a preloaded Route must keep its Request-URI. (The user-part
///    and `lr` checks keep a user whose Contact names this host, `sip:alice@edge`, from being
///    mistaken for a Record-Route value.)
/// 2. Loose routing: when the top Route points at this proxy it is removed; when the next one
///    does too — the two values of a double Record-Route (RFC 5658), inbound and outbound side —
///    it is removed as well. At most two are removed: a third would be a separate visit.
///
/// The `maddr` rule of §16.4 is not applied (lifeline never writes `maddr`).
pub fn preprocess_routes(
    request: &mut Request,
    local: &LocalIdentity,
) -> Result<Preprocessed, Reject> {
    let mut out = Preprocessed::default();

    let in_dialog =
        request.headers().to_tag().map_err(|_| Reject::Malformed(HeaderName::To))?.is_some();
    // One of our Record-Route values: our address, no user part, `lr` (what
    // `Prepared::finish` writes; a strict router copies it whole).
    let uri_is_ours = matches!(
        request.uri(),
        Ok(Uri::Sip(u)) if u.user.is_none() && u.is_loose_router() && local.is_me(&u)
    );
    if in_dialog && uri_is_ours && request.headers().contains(HeaderName::Route) {
        let replaced = request.uri_str().to_owned();
        let last = edit::remove_last_element(request.headers_mut(), HeaderName::Route)
            .ok_or(Reject::Malformed(HeaderName::Route))?;
        let last = NameAddr::parse(&last).map_err(|_| Reject::Malformed(HeaderName::Route))?;
        request.set_uri(last.uri_raw).map_err(|_| Reject::Malformed(HeaderName::Route))?;
        out.strict_fixup = Some(replaced);
    }

    while out.popped.len() < 2 {
        let Some(top) = request.headers().name_addrs(HeaderName::Route).next() else {
            break;
        };
        let top = top.map_err(|_| Reject::Malformed(HeaderName::Route))?;
        let mine = matches!(top.uri, Uri::Sip(u) if local.is_me(&u));
        if !mine {
            break;
        }
        let uri = top.uri_raw.to_owned();
        request.headers_mut().pop_first_value(HeaderName::Route);
        out.popped.push(uri);
    }
    Ok(out)
}
