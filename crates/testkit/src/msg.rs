//! The text of typical SIP messages for tests. Kept as text (the tests parse it with the codec
//! under test) so that testkit does not depend on the crate it tests.

/// Fresh identifiers: branches with the RFC 3261 magic cookie, tags, Call-IDs. Deterministic
/// (a counter), so that failing runs print the same messages.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    n: u64,
}

impl Ids {
    pub fn new() -> Ids {
        Ids::default()
    }

    fn next(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    /// `z9hG4bK` + a unique suffix (RFC 3261 §8.1.1.7).
    pub fn branch(&mut self) -> String {
        format!("z9hG4bKtk{}", self.next())
    }

    pub fn tag(&mut self) -> String {
        format!("tag{}", self.next())
    }

    pub fn call_id(&mut self) -> String {
        format!("call{}@test.invalid", self.next())
    }
}

/// A request's text, built field by field.
#[derive(Debug, Clone)]
pub struct RequestText {
    method: String,
    uri: String,
    vias: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: u32,
    extra: Vec<(String, String)>,
    body: String,
}

impl RequestText {
    /// A request with placeholder From, To, Call-ID and CSeq 1; add at least one Via.
    pub fn new(method: &str, uri: &str) -> RequestText {
        RequestText {
            method: method.to_owned(),
            uri: uri.to_owned(),
            vias: Vec::new(),
            from: "<sip:alice@client.invalid>;tag=a1".to_owned(),
            to: format!("<{uri}>"),
            call_id: "call@test.invalid".to_owned(),
            cseq: 1,
            extra: Vec::new(),
            body: String::new(),
        }
    }

    /// An INVITE with a fresh branch, From tag and Call-ID from `ids`, sent by `sent_by` over
    /// `transport` (`"UDP"`, `"TCP"`...).
    pub fn invite(ids: &mut Ids, uri: &str, transport: &str, sent_by: &str) -> RequestText {
        RequestText::fresh(ids, "INVITE", uri, transport, sent_by)
    }

    /// Any request with a fresh branch, From tag and Call-ID.
    pub fn fresh(
        ids: &mut Ids,
        method: &str,
        uri: &str,
        transport: &str,
        sent_by: &str,
    ) -> RequestText {
        let branch = ids.branch();
        let tag = ids.tag();
        let call_id = ids.call_id();
        RequestText::new(method, uri)
            .via(transport, sent_by, &branch)
            .from(&format!("<sip:alice@client.invalid>;tag={tag}"))
            .call_id(&call_id)
    }

    /// Adds a Via (below those already there) with `branch`.
    pub fn via(mut self, transport: &str, sent_by: &str, branch: &str) -> RequestText {
        self.vias.push(format!("SIP/2.0/{transport} {sent_by};branch={branch}"));
        self
    }

    /// Adds a Via written as given (e.g. an RFC 2543 one without a branch).
    pub fn raw_via(mut self, value: &str) -> RequestText {
        self.vias.push(value.to_owned());
        self
    }

    pub fn from(mut self, value: &str) -> RequestText {
        self.from = value.to_owned();
        self
    }

    pub fn to(mut self, value: &str) -> RequestText {
        self.to = value.to_owned();
        self
    }

    pub fn call_id(mut self, value: &str) -> RequestText {
        self.call_id = value.to_owned();
        self
    }

    pub fn cseq(mut self, n: u32) -> RequestText {
        self.cseq = n;
        self
    }

    /// Adds a header line.
    pub fn header(mut self, name: &str, value: &str) -> RequestText {
        self.extra.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: &str) -> RequestText {
        self.body = body.to_owned();
        self
    }

    /// The message text, CRLF line endings, with Content-Length.
    pub fn build(&self) -> String {
        let mut s = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        for v in &self.vias {
            s += &format!("Via: {v}\r\n");
        }
        s += "Max-Forwards: 70\r\n";
        s += &format!("From: {}\r\nTo: {}\r\n", self.from, self.to);
        s += &format!("Call-ID: {}\r\nCSeq: {} {}\r\n", self.call_id, self.cseq, self.method);
        for (n, v) in &self.extra {
            s += &format!("{n}: {v}\r\n");
        }
        s += &format!("Content-Length: {}\r\n\r\n{}", self.body.len(), self.body);
        s
    }
}

/// The text of a response to `request` (RFC 3261 §8.2.6): its Via headers, From, To (with
/// `to_tag` added when given and the To has none), Call-ID and CSeq.
pub fn response_to(request: &str, status: u16, reason: &str, to_tag: Option<&str>) -> String {
    let mut s = format!("SIP/2.0 {status} {reason}\r\n");
    let head = request.split("\r\n\r\n").next().unwrap_or("");
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                s += &format!("{name}: {value}\r\n");
            }
            "to" | "t" => match to_tag {
                Some(tag) if !value.contains(";tag=") => {
                    s += &format!("{name}: {value};tag={tag}\r\n");
                }
                _ => s += &format!("{name}: {value}\r\n"),
            },
            _ => {}
        }
    }
    s += "Content-Length: 0\r\n\r\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response_text() {
        let mut ids = Ids::new();
        let inv = RequestText::invite(&mut ids, "sip:bob@example.com", "UDP", "192.0.2.1:5060")
            .header("Contact", "<sip:alice@192.0.2.1>")
            .build();
        assert!(inv.starts_with("INVITE sip:bob@example.com SIP/2.0\r\n"));
        assert!(inv.contains("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtk1\r\n"));
        assert!(inv.contains("CSeq: 1 INVITE\r\n"));
        assert!(inv.ends_with("Content-Length: 0\r\n\r\n"));
        let ringing = response_to(&inv, 180, "Ringing", Some("b7"));
        assert!(ringing.starts_with("SIP/2.0 180 Ringing\r\n"));
        assert!(ringing.contains("To: <sip:bob@example.com>;tag=b7\r\n"));
        assert!(ringing.contains("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtk1\r\n"));
        assert!(!ringing.contains("Contact"));
    }
}
