//! Configuration: typed values, parsed once, never binding anything (`lifeline check` runs
//! exactly this path).
//!
//! Today only the embedded development defaults exist; the TOML file format of DESIGN.md
//! ("Configuration contract") arrives with the edge service (issue 5).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// The transport of a SIP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenTransport {
    Udp,
    Tcp,
}

/// One SIP listener, written `udp:127.0.0.1:5060` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub transport: ListenTransport,
    pub addr: SocketAddr,
}

/// A listener that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenError(String);

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ListenError {}

impl FromStr for Listen {
    type Err = ListenError;

    fn from_str(s: &str) -> Result<Listen, ListenError> {
        let (proto, addr) = s
            .split_once(':')
            .ok_or_else(|| ListenError(format!("'{s}': expected TRANSPORT:ADDRESS:PORT")))?;
        let transport = match proto {
            "udp" => ListenTransport::Udp,
            "tcp" => ListenTransport::Tcp,
            other => return Err(ListenError(format!("'{s}': unknown transport '{other}'"))),
        };
        let addr = addr
            .parse()
            .map_err(|_| ListenError(format!("'{s}': '{addr}' is not an IP address and port")))?;
        Ok(Listen { transport, addr })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.transport {
            ListenTransport::Udp => "udp",
            ListenTransport::Tcp => "tcp",
        };
        write!(f, "{proto}:{}", self.addr)
    }
}

/// The running configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// SIP listeners.
    pub listen: Vec<Listen>,
    /// Largest SIP message accepted on any transport, in bytes (`[limits] max_message_bytes`).
    pub max_message_bytes: usize,
    /// The name this node gives itself in Server headers and logs (`[node] name`).
    pub node_name: String,
}

impl Config {
    /// The embedded development defaults: loopback only.
    pub fn embedded() -> Config {
        Config {
            listen: vec![
                Listen {
                    transport: ListenTransport::Udp,
                    addr: ([127, 0, 0, 1], 5060).into(),
                },
                Listen {
                    transport: ListenTransport::Tcp,
                    addr: ([127, 0, 0, 1], 5060).into(),
                },
            ],
            max_message_bytes: 65535,
            node_name: "lifeline".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        let l: Listen = "udp:127.0.0.1:5060".parse().unwrap();
        assert_eq!(l.transport, ListenTransport::Udp);
        assert_eq!(l.to_string(), "udp:127.0.0.1:5060");
        let v6: Listen = "tcp:[::1]:5070".parse().unwrap();
        assert_eq!(v6.addr, "[::1]:5070".parse().unwrap());
        assert!("sctp:127.0.0.1:5060".parse::<Listen>().is_err());
        assert!("udp:localhost".parse::<Listen>().is_err());
        assert!("127.0.0.1".parse::<Listen>().is_err());
    }
}
