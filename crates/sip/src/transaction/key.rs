//! Transaction keys (what the TU holds) and matching keys (how a message finds its
//! transaction, RFC 3261 §17.1.3 and §17.2.3).

use std::fmt;
use std::sync::Arc;

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
/// share the branch. The branch is shared with the layer's index ([`ClientIndex`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientMatch {
    pub(crate) branch: Arc<str>,
    pub(crate) method: Method,
}

impl ClientMatch {
    /// The key of a request about to be sent; `None` without a top Via branch.
    pub(crate) fn of_request(req: &Request) -> Option<ClientMatch> {
        let via = req.headers().top_via().ok()?;
        Some(ClientMatch { branch: via.branch()?.into(), method: req.method().clone() })
    }

    /// The branch and CSeq method a response points at, borrowed from it (a lookup allocates
    /// nothing); `None` without a top Via branch or a CSeq.
    pub(crate) fn of_response(resp: &Response) -> Option<(&str, Method)> {
        let via = resp.headers().top_via().ok()?;
        let method = resp.headers().cseq().ok()?.method;
        Some((via.branch()?, method))
    }
}

/// The client transactions by branch: at most two share one (a request and the CANCEL sent
/// for it, RFC 3261 §9.1), told apart by method.
#[derive(Debug, Default)]
pub(crate) struct ClientIndex {
    map: crate::FastMap<Arc<str>, [Option<(Method, ClientKey)>; 2]>,
    len: usize,
}

impl ClientIndex {
    /// The transaction of `method` on `branch`.
    pub(crate) fn get(&self, branch: &str, method: &Method) -> Option<ClientKey> {
        self.map.get(branch)?.iter().flatten().find(|(m, _)| m == method).map(|(_, k)| *k)
    }

    /// Adds `key` under `m`; false (nothing changed) when `m` is taken or the branch already
    /// has two transactions.
    pub(crate) fn insert(&mut self, m: &ClientMatch, key: ClientKey) -> bool {
        let slots = self.map.entry(Arc::clone(&m.branch)).or_default();
        if slots.iter().flatten().any(|(method, _)| *method == m.method) {
            return false;
        }
        let Some(free) = slots.iter_mut().find(|s| s.is_none()) else { return false };
        *free = Some((m.method.clone(), key));
        self.len += 1;
        true
    }

    /// Removes `m` if it is `key`'s.
    pub(crate) fn remove(&mut self, m: &ClientMatch, key: ClientKey) {
        let Some(slots) = self.map.get_mut(&*m.branch) else { return };
        for slot in slots.iter_mut() {
            if matches!(slot, Some((method, k)) if *method == m.method && *k == key) {
                *slot = None;
                self.len -= 1;
            }
        }
        if slots.iter().all(Option::is_none) {
            self.map.remove(&*m.branch);
        }
    }

    /// How many transactions are indexed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How a request finds its server transaction (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ServerMatch {
    /// The top Via branch starts with the magic cookie `z9hG4bK`: branch, sent-by and method,
    /// with ACK counted as INVITE.
    Branch {
        branch: Arc<str>,
        /// The sent-by host, lowercased (hosts compare case-insensitively).
        host: Arc<str>,
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
                host: if via.host_raw.bytes().any(|b| b.is_ascii_uppercase()) {
                    via.host_raw.to_ascii_lowercase().into()
                } else {
                    via.host_raw.into()
                },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(branch: &str, method: Method) -> ClientMatch {
        ClientMatch { branch: branch.into(), method }
    }

    #[test]
    fn a_branch_holds_a_request_and_its_cancel() {
        let mut index = ClientIndex::default();
        assert!(index.insert(&m("z9hG4bK1", Method::Invite), ClientKey(1)));
        assert!(!index.insert(&m("z9hG4bK1", Method::Invite), ClientKey(2)), "duplicate");
        assert!(index.insert(&m("z9hG4bK1", Method::Cancel), ClientKey(3)));
        assert!(!index.insert(&m("z9hG4bK1", Method::Bye), ClientKey(4)), "two at most");
        assert_eq!(index.get("z9hG4bK1", &Method::Invite), Some(ClientKey(1)));
        assert_eq!(index.get("z9hG4bK1", &Method::Cancel), Some(ClientKey(3)));
        assert_eq!(index.get("z9hG4bK1", &Method::Bye), None);
        assert_eq!(index.get("z9hG4bK2", &Method::Invite), None);
        assert_eq!(index.len(), 2);
        // Removing needs the right key.
        index.remove(&m("z9hG4bK1", Method::Invite), ClientKey(9));
        assert_eq!(index.get("z9hG4bK1", &Method::Invite), Some(ClientKey(1)));
        index.remove(&m("z9hG4bK1", Method::Invite), ClientKey(1));
        assert_eq!(index.get("z9hG4bK1", &Method::Invite), None);
        assert_eq!(index.get("z9hG4bK1", &Method::Cancel), Some(ClientKey(3)));
        index.remove(&m("z9hG4bK1", Method::Cancel), ClientKey(3));
        assert!(index.is_empty());
        assert!(index.map.is_empty());
    }
}
