//! Transaction keys (what the TU holds) and matching keys (how a message finds its
//! transaction, RFC 3261 §17.1.3 and §17.2.3).

use std::fmt;

use crate::message::{Request, Response};
use crate::method::Method;

/// A client transaction, as the TU refers to it. Small and copyable; never reused within one
/// [`TxnLayer`](super::TxnLayer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(pub(crate) u64);

/// A server transaction, as the TU refers to it. Small and copyable; never reused within one
/// [`TxnLayer`](super::TxnLayer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerKey(pub(crate) u64);

/// Either kind of transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnKey {
    Client(ClientKey),
    Server(ServerKey),
}

impl ClientKey {
    /// The number behind the key, for logs.
    pub fn id(self) -> u64 {
        self.0
    }
}

impl ServerKey {
    /// The number behind the key, for logs.
    pub fn id(self) -> u64 {
        self.0
    }
}

impl From<ClientKey> for TxnKey {
    fn from(k: ClientKey) -> TxnKey {
        TxnKey::Client(k)
    }
}

impl From<ServerKey> for TxnKey {
    fn from(k: ServerKey) -> TxnKey {
        TxnKey::Server(k)
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client#{}", self.0)
    }
}

impl fmt::Display for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server#{}", self.0)
    }
}

impl fmt::Display for TxnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnKey::Client(k) => k.fmt(f),
            TxnKey::Server(k) => k.fmt(f),
        }
    }
}

/// How a response finds its client transaction: the branch of the top Via and the CSeq
/// method (RFC 3261 §17.1.3). The method tells a CANCEL's responses from its INVITE's, which
/// share the branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientMatch {
    pub(crate) branch: Box<str>,
    pub(crate) method: Method,
}

impl ClientMatch {
    /// The key of a request about to be sent; `None` without a top Via branch.
    pub(crate) fn of_request(req: &Request) -> Option<ClientMatch> {
        let via = req.headers().top_via().ok()?;
        Some(ClientMatch { branch: via.branch()?.into(), method: req.method().clone() })
    }

    /// The key a response points at; `None` without a top Via branch or a CSeq.
    pub(crate) fn of_response(resp: &Response) -> Option<ClientMatch> {
        let via = resp.headers().top_via().ok()?;
        let branch = via.branch()?.into();
        let method = resp.headers().cseq().ok()?.method;
        Some(ClientMatch { branch, method })
    }
}

/// How a request finds its server transaction (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ServerMatch {
    /// The top Via branch starts with the magic cookie `z9hG4bK`: branch, sent-by and method,
    /// with ACK counted as INVITE.
    Branch {
        branch: Box<str>,
        /// The sent-by host, lowercased (hosts compare case-insensitively).
        host: Box<str>,
        port: Option<u16>,
        method: Method,
    },
    /// An RFC 2543 request: the fields that identify it, without method and To tag, which
    /// are compared per candidate (an INVITE, its ACK and its CANCEL share this key).
    Legacy(LegacyKey),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct LegacyKey {
    uri: Box<str>,
    from_tag: Option<Box<str>>,
    call_id: Box<str>,
    cseq: u32,
    top_via: Box<str>,
}

/// What a received request says about itself for matching.
#[derive(Debug, Clone)]
pub(crate) struct RequestId {
    pub(crate) key: ServerMatch,
    /// For RFC 2543 matching: the To tag of the request.
    pub(crate) to_tag: Option<Box<str>>,
}

impl RequestId {
    /// Decodes what matching needs; `None` when the request lacks a usable top Via, CSeq,
    /// From, To or Call-ID (the parser refuses such requests; this guards locally built ones).
    pub(crate) fn of(req: &Request) -> Option<RequestId> {
        let h = req.headers();
        let via = h.top_via().ok()?;
        let to_tag = h.to_tag().ok()?.map(Box::from);
        if via.has_rfc3261_branch() {
            let method = match req.method() {
                Method::Ack => Method::Invite,
                m => m.clone(),
            };
            let key = ServerMatch::Branch {
                branch: via.branch()?.into(),
                host: via.host_raw.to_ascii_lowercase().into(),
                port: via.port,
                method,
            };
            return Some(RequestId { key, to_tag });
        }
        let key = LegacyKey {
            uri: req.uri_str().into(),
            from_tag: h.from_tag().ok()?.map(Box::from),
            call_id: h.call_id().ok()?.into(),
            cseq: h.cseq().ok()?.seq,
            top_via: via.raw.into(),
        };
        Some(RequestId { key: ServerMatch::Legacy(key), to_tag })
    }

    /// The key of the INVITE that a CANCEL with this id cancels (§9.2: matching as in
    /// §17.2.3, the method aside).
    pub(crate) fn invite_key(&self) -> ServerMatch {
        match &self.key {
            ServerMatch::Branch { branch, host, port, .. } => ServerMatch::Branch {
                branch: branch.clone(),
                host: host.clone(),
                port: *port,
                method: Method::Invite,
            },
            legacy @ ServerMatch::Legacy(_) => legacy.clone(),
        }
    }
}
