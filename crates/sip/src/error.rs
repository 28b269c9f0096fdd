//! Why a message was refused, in the words a `400` response should carry.
//!
//! RFC 3261 §21.4.1 lets the reason phrase say what was wrong; lifeline makes it precise
//! (`400 Missing Call-ID`, `400 Bad Content-Length`) so that the sender's logs show the cause.
//! A malformed request is answered (when enough of it survived to build a response); a malformed
//! response is dropped (RFC 3261 §18.1.2, §18.2.1).

use std::borrow::Cow;
use std::fmt;

use crate::header::HeaderName;
use crate::message::Request;
use crate::uri::UriError;

/// What the bytes looked like before parsing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Request,
    Response,
    /// The start line was unreadable: neither a request nor a response.
    Unknown,
}

/// The specific defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalid {
    /// Nothing but whitespace.
    Empty,
    /// The request line or status line does not follow RFC 3261 §7.1/§7.2.
    BadStartLine,
    /// The method is not a `token`.
    BadMethod,
    /// The Request-URI is not a valid absolute URI.
    BadRequestUri(UriError),
    /// A SIP version other than 2.0 (answered 505, RFC 3261 §21.5.7).
    UnsupportedVersion,
    /// A status code outside 100..=699.
    BadStatusCode,
    /// A header line without a colon, with a bad name, or a fold where no header began.
    BadHeaderLine,
    /// A mandatory header (Via, From, To, Call-ID, CSeq) is absent.
    Missing(HeaderName),
    /// A header that may appear once appears again.
    Duplicate(HeaderName),
    /// A header whose value does not follow its grammar.
    BadHeader(HeaderName),
    /// Content-Length is malformed, disagrees with another Content-Length, or exceeds the body.
    BadContentLength,
    /// On a stream transport every message needs Content-Length (RFC 3261 §18.3).
    MissingContentLength,
    /// The CSeq method is not the request method (RFC 3261 §8.1.1.5).
    CSeqMethodMismatch,
    /// More header lines than the parser accepts.
    TooManyHeaders,
    /// Larger than the configured message size limit (answered 513, RFC 3261 §21.5.10).
    TooLarge,
}

impl Invalid {
    /// The status code a request with this defect is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Invalid::UnsupportedVersion => 505,
            Invalid::TooLarge => 513,
            Invalid::BadRequestUri(UriError::NoScheme) => 416,
            _ => 400,
        }
    }

    /// The reason phrase for that response.
    pub fn reason(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Invalid::Empty => "Empty Message",
            Invalid::BadStartLine => "Bad Request Line",
            Invalid::BadMethod => "Bad Method",
            Invalid::BadRequestUri(UriError::NoScheme) => "Unsupported URI Scheme",
            Invalid::BadRequestUri(_) => "Bad Request-URI",
            Invalid::UnsupportedVersion => "Version Not Supported",
            Invalid::BadStatusCode => "Bad Status Code",
            Invalid::BadHeaderLine => "Bad Header Line",
            Invalid::Missing(name) => return Cow::Owned(format!("Missing {name}")),
            Invalid::Duplicate(name) => return Cow::Owned(format!("Duplicate {name}")),
            Invalid::BadHeader(name) => return Cow::Owned(format!("Bad {name}")),
            Invalid::BadContentLength => "Bad Content-Length",
            Invalid::MissingContentLength => "Missing Content-Length",
            Invalid::CSeqMethodMismatch => "CSeq Method Mismatch",
            Invalid::TooManyHeaders => "Too Many Headers",
            Invalid::TooLarge => "Message Too Large",
        })
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

/// A message that could not be accepted.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub kind: MessageKind,
    pub invalid: Invalid,
    /// For a request whose lines were readable but whose content is invalid: the request as
    /// far as it was read, so that the caller can build the error response from its Via, From,
    /// To, Call-ID and CSeq (RFC 3261 §8.2.6). `None` when nothing usable survived.
    pub partial: Option<Box<Request>>,
}

impl ParseError {
    pub(crate) fn new(kind: MessageKind, invalid: Invalid) -> ParseError {
        ParseError { kind, invalid, partial: None }
    }

    /// Whether the sender should get an error response: only requests are answered, and only
    /// when the headers needed to build a response survived.
    pub fn is_answerable(&self) -> bool {
        self.kind == MessageKind::Request && self.partial.is_some()
    }

    /// The status code to answer with (400, 505, 513...).
    pub fn status(&self) -> u16 {
        self.invalid.status()
    }

    /// The reason phrase to answer with (`Missing Call-ID`).
    pub fn reason(&self) -> Cow<'static, str> {
        self.invalid.reason()
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            MessageKind::Request => "request",
            MessageKind::Response => "response",
            MessageKind::Unknown => "message",
        };
        write!(f, "invalid {what}: {}", self.invalid)
    }
}

impl std::error::Error for ParseError {}

/// A typed header view could not be produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    Missing(HeaderName),
    Malformed(HeaderName),
}

impl HeaderError {
    /// The parse-level defect this corresponds to.
    pub fn invalid(self) -> Invalid {
        match self {
            HeaderError::Missing(n) => Invalid::Missing(n),
            HeaderError::Malformed(n) => Invalid::BadHeader(n),
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Missing(n) => write!(f, "missing {n}"),
            HeaderError::Malformed(n) => write!(f, "malformed {n}"),
        }
    }
}

impl std::error::Error for HeaderError {}
