//! Value types of the configuration, each parsed from its string form once.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// The transport of a SIP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenTransport {
    Udp,
    Tcp,
    /// SIP over TLS (RFC 3261 §26.2; rustls).
    Tls,
}

impl ListenTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenTransport::Udp => "udp",
            ListenTransport::Tcp => "tcp",
            ListenTransport::Tls => "tls",
        }
    }
}

/// One SIP listener, written `udp:127.0.0.1:5060` or `tls:[::1]:5061`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub transport: ListenTransport,
    pub addr: SocketAddr,
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Listen, String> {
        let (proto, addr) =
            s.split_once(':').ok_or_else(|| format!("'{s}': expected TRANSPORT:ADDRESS:PORT"))?;
        let transport = match proto {
            "udp" => ListenTransport::Udp,
            "tcp" => ListenTransport::Tcp,
            "tls" => ListenTransport::Tls,
            other => {
                return Err(format!("'{s}': unknown transport '{other}' (use udp, tcp or tls)"));
            }
        };
        let addr = addr.parse().map_err(|_| {
            format!("'{s}': '{addr}' is not an IP address and port (IPv6 goes in brackets)")
        })?;
        Ok(Listen { transport, addr })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.as_str(), self.addr)
    }
}

/// An inclusive UDP port range, written `20000-29999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<PortRange, String> {
        let bad = || format!("'{s}': expected FIRST-LAST, two ports with FIRST <= LAST");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

/// The 1-based line of byte `offset` in `text`: how every file parser (configuration, dialplan,
/// agents seed) turns a TOML span into the `file:line` of its messages.
pub fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count()
}

/// Parses a duration with a unit: `500ms`, `32s`, `60m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 =
        num.parse().map_err(|_| format!("'{s}': expected a number and a unit (ms, s, m, h, d)"))?;
    let secs = |mult: u64| {
        n.checked_mul(mult).map(Duration::from_secs).ok_or_else(|| format!("'{s}': too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        "" => Err(format!("'{s}': a duration needs a unit (ms, s, m, h, d)")),
        other => Err(format!("'{s}': unknown unit '{other}' (use ms, s, m, h, d)")),
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
        let v6: Listen = "tls:[::1]:5061".parse().unwrap();
        assert_eq!(v6.addr, "[::1]:5061".parse().unwrap());
        assert!("sctp:127.0.0.1:5060".parse::<Listen>().is_err());
        assert!("udp:localhost".parse::<Listen>().is_err());
        assert!("127.0.0.1".parse::<Listen>().is_err());
        assert!("udp:::1:5060".parse::<Listen>().is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!("20000-29999".parse(), Ok(PortRange { first: 20000, last: 29999 }));
        assert!("29999-20000".parse::<PortRange>().is_err());
        assert!("0-10".parse::<PortRange>().is_err());
        assert!("20000".parse::<PortRange>().is_err());
        assert!("1-70000".parse::<PortRange>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60m"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("60").is_err());
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
