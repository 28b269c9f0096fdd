//! Configuration: parsed once into typed values, never binding anything, so `lifeline check`
//! runs exactly the path `lifeline run` does (DESIGN.md, "Configuration contract").
//!
//! Every key has a default, written once in `defaults.toml` (embedded in the binary; it doubles
//! as the operator's reference). A file given with `--config` (or `./lifeline.toml`) overrides
//! keys one by one. Unknown keys are errors. Each problem is reported as `file:line: message`,
//! all of them at once, and nothing of an invalid file is used.

mod raw;
pub mod values;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

pub use values::{Listen, ListenTransport, PortRange, line_of, parse_duration};

/// The embedded defaults, also the reference configuration.
pub const DEFAULTS_TOML: &str = include_str!("defaults.toml");

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line of the offending key or value.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The running configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it came from; `None` for the embedded defaults.
    pub source: Option<PathBuf>,
    pub node: Node,
    pub sip: Sip,
    pub web: Web,
    pub tls: Option<Tls>,
    pub admin: Admin,
    pub media: Media,
    pub smtp: Smtp,
    pub dialplan: Dialplan,
    pub agents: Agents,
    pub dns: Dns,
    pub limits: Limits,
}

/// `[node]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub data_dir: PathBuf,
}

/// `[sip]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sip {
    /// Digest realm and the domain a REGISTER's To must name.
    pub domain: String,
    pub listen: Vec<Listen>,
    /// Host for Via/Record-Route/Contact when it differs from the listening address.
    pub public_address: Option<String>,
    /// The digest challenges offered, in order (WebSocket clients get them reversed).
    pub digest_algorithms: Vec<sip::digest::Algorithm>,
}

/// `[web]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Web {
    pub listen: SocketAddr,
    pub allowed_origins: Vec<String>,
}

/// `[tls]`, present when both files are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: SocketAddr,
    pub token_file: Option<PathBuf>,
}

/// `[media]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub anchor: Anchoring,
    pub rtp_ports: PortRange,
    /// The one UDP port of every WebRTC leg (0: any free port, for tests).
    pub webrtc_port: u16,
    pub public_ip: Option<IpAddr>,
    /// No media either way for this long ends the call.
    pub timeout: std::time::Duration,
}

/// `[media] anchor`: which calls the edge relays media for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchoring {
    /// Calls with a browser (WebRTC) on one side and plain RTP on the other.
    Webrtc,
    /// None: SDP passes unchanged.
    Never,
    /// Every call with SDP: browser calls as `Webrtc`, and plain RTP between plain peers
    /// (symmetric latching, no transcoding, RTCP not relayed).
    Always,
}

/// `[smtp]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    pub url: String,
    pub from: String,
}

/// `[dialplan]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialplan {
    pub dir: PathBuf,
}

/// `[agents]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agents {
    pub seed: Option<PathBuf>,
}

/// `[dns]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// The DNS servers asked for trunk SRV records (`src/transport/dns.rs`), in order; empty:
    /// the `nameserver` lines of `/etc/resolv.conf`.
    pub servers: Vec<SocketAddr>,
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub per_source_rps: u32,
    pub max_dialogs: u32,
    /// How long a stream message may take from its first byte to its last, and a new
    /// connection to its first message (`message_timeout_secs`).
    pub message_timeout: std::time::Duration,
    /// How long a stream connection may stay silent (`idle_timeout_secs`).
    pub idle_timeout: std::time::Duration,
}

impl Config {
    /// The embedded development defaults (loopback only).
    pub fn embedded() -> Config {
        match raw::build(None, DEFAULTS_TOML) {
            Ok(c) => c,
            // The embedded file is tested; reaching this is a build defect.
            Err(e) => panic!("embedded defaults.toml is invalid: {e}"),
        }
    }

    /// Parses and validates a configuration file's text; `path` names it in errors.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        raw::build(Some(path), text)
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::from_toml(path, &text),
            Err(e) => Err(ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line: 0,
                message: format!("cannot read: {e}"),
            }])),
        }
    }

    /// Resolves a path from the configuration against the config file's directory (the
    /// working directory for the embedded defaults).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.source.as_deref().and_then(Path::parent) {
            Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => dir.join(path),
            _ => path.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid_and_loopback_only() {
        let c = Config::embedded();
        assert_eq!(c.source, None);
        assert!(c.sip.listen.iter().all(|l| l.addr.ip().is_loopback()));
        assert!(c.web.listen.ip().is_loopback());
        assert!(c.admin.listen.ip().is_loopback());
        assert_eq!(c.limits.max_message_bytes, 65535);
        assert_eq!(c.media.rtp_ports, PortRange { first: 20000, last: 29999 });
        assert_eq!(c.tls, None);
        assert_eq!(c.agents.seed, None);
    }

    #[test]
    fn a_file_overrides_key_by_key() {
        let c = Config::from_toml(
            Path::new("/etc/lifeline/lifeline.toml"),
            "[sip]\ndomain = \"edge.example.com\"\nlisten = [\"udp:[::1]:5070\"]\n\
             [limits]\nper_source_rps = 50\n[dialplan]\ndir = \"plans\"\n",
        )
        .unwrap();
        assert_eq!(c.sip.domain, "edge.example.com");
        assert_eq!(c.sip.listen, vec!["udp:[::1]:5070".parse().unwrap()]);
        assert_eq!(c.limits.per_source_rps, 50);
        assert_eq!(c.limits.max_message_bytes, 65535, "untouched keys keep their default");
        assert_eq!(c.resolve(&c.dialplan.dir), PathBuf::from("/etc/lifeline/plans"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let errs =
            Config::from_toml(Path::new("l.toml"), "[node]\nname = \"e\"\ncolour = \"blue\"\n")
                .unwrap_err();
        assert!(errs.to_string().starts_with("l.toml:3: unknown field `colour`"), "{errs}");
        let errs = Config::from_toml(Path::new("l.toml"), "[nodes]\nname = \"e\"\n").unwrap_err();
        assert!(errs.to_string().starts_with("l.toml:1: unknown field `nodes`"), "{errs}");
    }

    #[test]
    fn every_value_problem_is_reported_with_its_line() {
        let text = "[node]\nname = \"edge-1\"\n\n[sip]\nlisten = [\"udp:127.0.0.1:5060\",\n  \"sctp:127.0.0.1:5060\"]\n[media]\nrtp_ports = \"30000-20000\"\n";
        let errs = Config::from_toml(Path::new("l.toml"), text).unwrap_err();
        assert_eq!(errs.0.len(), 2, "{errs}");
        let shown = errs.to_string();
        assert!(shown.contains("l.toml:6: sip.listen: 'sctp:127.0.0.1:5060'"), "{shown}");
        assert!(shown.contains("l.toml:8: media.rtp_ports"), "{shown}");
    }

    #[test]
    fn digest_algorithms_are_checked_and_kept_in_order() {
        let c = Config::from_toml(
            Path::new("d.toml"),
            "[sip]\ndigest_algorithms = [\"sha-256\", \"MD5\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.sip.digest_algorithms,
            [sip::digest::Algorithm::Sha256, sip::digest::Algorithm::Md5]
        );
        let text = "[sip]\ndigest_algorithms = [\"MD5\",\n  \"SHA-512\", \"md5\"]\n[media]\nanchor = \"sometimes\"\n";
        let shown = Config::from_toml(Path::new("d.toml"), text).unwrap_err().to_string();
        assert!(shown.contains("d.toml:3: sip.digest_algorithms: 'SHA-512'"), "{shown}");
        assert!(shown.contains("d.toml:3: sip.digest_algorithms: 'md5' twice"), "{shown}");
        assert!(shown.contains("d.toml:5: media.anchor: 'sometimes'"), "{shown}");
        let empty = "[sip]\ndigest_algorithms = []\n";
        assert!(Config::from_toml(Path::new("d.toml"), empty).is_err());
    }

    #[test]
    fn dns_servers_are_socket_addresses() {
        assert!(Config::embedded().dns.servers.is_empty(), "default: /etc/resolv.conf");
        let c = Config::from_toml(
            Path::new("n.toml"),
            "[dns]\nservers = [\"127.0.0.1:5353\", \"[2001:db8::53]:53\"]\n",
        )
        .unwrap();
        let want: Vec<SocketAddr> =
            vec!["127.0.0.1:5353".parse().unwrap(), "[2001:db8::53]:53".parse().unwrap()];
        assert_eq!(c.dns.servers, want);
        let text = "[dns]\nservers = [\"127.0.0.1:5353\",\n  \"192.0.2.53\", \"ns.example:53\"]\n";
        let shown = Config::from_toml(Path::new("n.toml"), text).unwrap_err().to_string();
        assert!(shown.contains("n.toml:3: dns.servers: '192.0.2.53' is not"), "{shown}");
        assert!(shown.contains("n.toml:3: dns.servers: 'ns.example:53' is not"), "{shown}");
        let unknown = Config::from_toml(Path::new("n.toml"), "[dns]\nresolvers = []\n");
        assert!(unknown.unwrap_err().to_string().contains("n.toml:2: "));
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let errs = Config::from_toml(Path::new("x.toml"), "[sip]\ndomain = \n").unwrap_err();
        assert_eq!(errs.0.len(), 1);
        assert_eq!(errs.0[0].line, 2, "{}", errs);
    }

    #[test]
    fn tls_listener_needs_tls_files() {
        let errs =
            Config::from_toml(Path::new("t.toml"), "[sip]\nlisten = [\"tls:127.0.0.1:5061\"]\n")
                .unwrap_err();
        assert!(errs.to_string().contains("t.toml:2: "), "{errs}");
        let ok = Config::from_toml(
            Path::new("t.toml"),
            "[sip]\nlisten = [\"tls:127.0.0.1:5061\"]\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        )
        .unwrap();
        assert_eq!(ok.tls.unwrap().cert, PathBuf::from("c.pem"));
    }

    #[test]
    fn limits_must_be_sane() {
        let errs = Config::from_toml(Path::new("m.toml"), "[limits]\nmax_message_bytes = 10\n")
            .unwrap_err();
        assert!(errs.to_string().starts_with("m.toml:2: "), "{errs}");
    }
}
