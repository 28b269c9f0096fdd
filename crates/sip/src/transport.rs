//! SIP transports as the protocol names them (RFC 3261 §18, RFC 7118): the one type the
//! transaction layer, the proxy rules and the edge share.

use std::fmt;

/// A SIP transport (RFC 3261 §18; RFC 7118 for WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Sctp,
    /// SIP over WebSocket (RFC 7118).
    Ws,
    /// SIP over secure WebSocket (RFC 7118).
    Wss,
}

impl Transport {
    /// The token in a Via header: `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, `WSS` (RFC 3261 §20.42,
    /// RFC 7118 §5.3).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The token in a Via header (same as [`Transport::via_token`]).
    pub fn as_str(self) -> &'static str {
        self.via_token()
    }

    /// Decodes a Via transport token, case-insensitively.
    pub fn from_via(token: &str) -> Option<Transport> {
        [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Sctp,
            Transport::Ws,
            Transport::Wss,
        ]
        .into_iter()
        .find(|t| t.via_token().eq_ignore_ascii_case(token))
    }

    /// The value of the `transport` URI parameter naming this transport (RFC 3261 §19.1.1).
    /// Both WebSocket variants are `ws`: RFC 7118 §5.2 defines no other value, the secure one is
    /// a `sips:` URI with `transport=ws`.
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Sctp => "sctp",
            Transport::Ws | Transport::Wss => "ws",
        }
    }

    /// The transport a URI asks for with its `transport` parameter (RFC 3263 §4.1): `secure`
    /// is the `sips:` scheme, which turns TCP into TLS and WS into WSS. `None` for a value
    /// lifeline cannot speak, or for `sips:` over UDP (RFC 3261 §26.2.2 forbids it).
    pub fn from_uri_param(value: &str, secure: bool) -> Option<Transport> {
        let t = if value.eq_ignore_ascii_case("udp") {
            Transport::Udp
        } else if value.eq_ignore_ascii_case("tcp") {
            Transport::Tcp
        } else if value.eq_ignore_ascii_case("tls") {
            Transport::Tls
        } else if value.eq_ignore_ascii_case("sctp") {
            Transport::Sctp
        } else if value.eq_ignore_ascii_case("ws") {
            Transport::Ws
        } else if value.eq_ignore_ascii_case("wss") {
            // Not in RFC 7118, but written by some stacks.
            Transport::Wss
        } else {
            return None;
        };
        match (t, secure) {
            (Transport::Udp | Transport::Sctp, true) => None,
            (Transport::Tcp, true) => Some(Transport::Tls),
            (Transport::Ws, true) => Some(Transport::Wss),
            (t, _) => Some(t),
        }
    }

    /// Whether messages travel over a connection: responses then go back on the connection
    /// the request came in on (RFC 3261 §18.2.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Whether the transport is TLS-protected.
    pub fn is_secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// The port used when a URI or a Via names none: 5060, 5061 for TLS (RFC 3261 §19.1.2,
    /// RFC 3263 §4.2), and the HTTP ports 80 and 443 for WS and WSS (RFC 7118 runs over an HTTP
    /// upgrade).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Udp | Transport::Tcp | Transport::Sctp => 5060,
            Transport::Tls => 5061,
            Transport::Ws => 80,
            Transport::Wss => 443,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Sctp,
            Transport::Ws,
            Transport::Wss,
        ] {
            assert_eq!(Transport::from_via(&t.as_str().to_lowercase()), Some(t));
        }
        assert_eq!(Transport::from_via("QUIC"), None);
        assert!(!Transport::Udp.is_reliable());
        assert!(Transport::Wss.is_reliable() && Transport::Wss.is_secure());
        assert_eq!(Transport::from_uri_param("tcp", true), Some(Transport::Tls));
        assert_eq!(Transport::from_uri_param("udp", true), None);
    }
}
