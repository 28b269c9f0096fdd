//! Request methods (RFC 3261 §7.1 and the extensions a proxy relays).

use std::fmt;

/// A SIP method. Methods are case-sensitive (RFC 3261 §7.1); unknown ones are kept as
/// [`Method::Extension`] so that a proxy can relay them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Prack,
    Message,
    Refer,
    Notify,
    Subscribe,
    Publish,
    /// Any other `token` (e.g. RFC 4475 `intmeth`'s `!interesting-Method0123456789_*+`.~`).
    Extension(Box<str>),
}

impl Method {
    /// Decodes a method token; `None` when `b` is empty or not a `token`.
    pub fn from_bytes(b: &[u8]) -> Option<Method> {
        Some(match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"MESSAGE" => Method::Message,
            b"REFER" => Method::Refer,
            b"NOTIFY" => Method::Notify,
            b"SUBSCRIBE" => Method::Subscribe,
            b"PUBLISH" => Method::Publish,
            _ if !b.is_empty() && b.iter().all(|&c| crate::text::is_token(c)) => {
                // Tokens are ASCII, so this cannot fail.
                Method::Extension(std::str::from_utf8(b).ok()?.into())
            }
            _ => return None,
        })
    }

    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Message => "MESSAGE",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_extension_and_invalid() {
        assert_eq!(Method::from_bytes(b"INVITE"), Some(Method::Invite));
        assert_eq!(Method::from_bytes(b"invite").map(|m| m.to_string()), Some("invite".into()));
        assert_eq!(
            Method::from_bytes(b"!interesting-Method0123456789_*+`.%indeed'~")
                .map(|m| m.to_string()),
            Some("!interesting-Method0123456789_*+`.%indeed'~".into())
        );
        assert_eq!(Method::from_bytes(b""), None);
        assert_eq!(Method::from_bytes(b"IN VITE"), None);
    }
}
