//! Requests the transaction layer builds itself: the ACK for a non-2xx final response
//! (RFC 3261 §17.1.1.3) and the CANCEL of an INVITE (RFC 3261 §9.1).

use std::fmt;

use bytes::Bytes;

use crate::error::HeaderError;
use crate::header::HeaderName;
use crate::message::{Request, Response};
use crate::method::Method;
use crate::uri::UriError;

/// Why an ACK or a CANCEL could not be built from the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    /// A header the new request copies is missing or malformed.
    Header(HeaderError),
    /// The original Request-URI does not parse.
    Uri(UriError),
    /// A CANCEL or ACK can only be built for an INVITE.
    NotInvite,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Header(e) => write!(f, "cannot build request: {e}"),
            BuildError::Uri(e) => write!(f, "cannot build request: {e}"),
            BuildError::NotInvite => f.write_str("cannot build request: not an INVITE"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<HeaderError> for BuildError {
    fn from(e: HeaderError) -> BuildError {
        BuildError::Header(e)
    }
}

impl From<UriError> for BuildError {
    fn from(e: UriError) -> BuildError {
        BuildError::Uri(e)
    }
}

/// Builds the ACK for a non-2xx final response to `invite` (RFC 3261 §17.1.1.3): the same
/// Request-URI, Call-ID, From and CSeq number as the INVITE, CSeq method ACK, only the INVITE's
/// top Via, the To header of the response (with its tag), and the INVITE's Route headers.
pub fn ack_for_non_2xx(invite: &Request, response: &Response) -> Result<Request, BuildError> {
    let to = response.headers().get(HeaderName::To).ok_or(HeaderError::Missing(HeaderName::To))?;
    response.headers().to()?;
    same_transaction_request(invite, Method::Ack, Bytes::copy_from_slice(to), None)
}

/// Builds the CANCEL of `invite` (RFC 3261 §9.1): the same Request-URI, Call-ID, To, From and
/// CSeq number, CSeq method CANCEL, only the INVITE's top Via (so that it travels the same
/// path and matches the same server transaction), and the INVITE's Route headers. `reason`,
/// when given, is added as a Reason header (RFC 3326), e.g. `SIP;cause=200;text="Call
/// completed elsewhere"`.
pub fn cancel_for(invite: &Request, reason: Option<&str>) -> Result<Request, BuildError> {
    let to = invite.headers().get(HeaderName::To).ok_or(HeaderError::Missing(HeaderName::To))?;
    same_transaction_request(invite, Method::Cancel, Bytes::copy_from_slice(to), reason)
}

fn same_transaction_request(
    invite: &Request,
    method: Method,
    to: Bytes,
    reason: Option<&str>,
) -> Result<Request, BuildError> {
    if *invite.method() != Method::Invite {
        return Err(BuildError::NotInvite);
    }
    let h = invite.headers();
    let via = h.top_via()?.raw;
    let from = h.get(HeaderName::From).ok_or(HeaderError::Missing(HeaderName::From))?;
    let call_id = h.call_id()?;
    let seq = h.cseq()?.seq;

    let mut req = Request::new(method.clone(), invite.uri_str())?;
    let out = req.headers_mut();
    out.push(HeaderName::Via, Bytes::copy_from_slice(via.as_bytes()));
    for route in h.get_all(HeaderName::Route) {
        out.push(HeaderName::Route, Bytes::copy_from_slice(route));
    }
    out.push(HeaderName::MaxForwards, Bytes::from_static(b"70"));
    out.push(HeaderName::From, Bytes::copy_from_slice(from));
    out.push(HeaderName::To, to);
    out.push(HeaderName::CallId, Bytes::copy_from_slice(call_id.as_bytes()));
    out.push(HeaderName::CSeq, format!("{seq} {method}"));
    if let Some(reason) = reason {
        out.push(HeaderName::Reason, Bytes::copy_from_slice(reason.as_bytes()));
    }
    out.push(HeaderName::ContentLength, Bytes::from_static(b"0"));
    Ok(req)
}
