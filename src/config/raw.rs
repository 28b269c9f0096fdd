//! The file as written (serde structs, every key optional and spanned) and its conversion into
//! the typed [`Config`]: each key from the file if present, else from the embedded defaults.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Admin, Agents, Anchoring, Config, ConfigError, ConfigErrors, DEFAULTS_TOML, Dialplan, Dns,
    Limits, Listen, ListenTransport, Media, Node, PortRange, Sip, Smtp, Tls, Web, parse_duration,
};

type Value<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    node: RawNode,
    sip: RawSip,
    web: RawWeb,
    tls: RawTls,
    admin: RawAdmin,
    media: RawMedia,
    smtp: RawSmtp,
    dialplan: RawDialplan,
    agents: RawAgents,
    dns: RawDns,
    limits: RawLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNode {
    name: Value<String>,
    data_dir: Value<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSip {
    domain: Value<String>,
    listen: Value<Vec<Spanned<String>>>,
    public_address: Value<String>,
    digest_algorithms: Value<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWeb {
    listen: Value<String>,
    allowed_origins: Value<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTls {
    cert: Value<String>,
    key: Value<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    listen: Value<String>,
    token_file: Value<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMedia {
    anchor: Value<String>,
    rtp_ports: Value<String>,
    webrtc_port: Value<i64>,
    public_ip: Value<String>,
    timeout: Value<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSmtp {
    url: Value<String>,
    from: Value<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDialplan {
    dir: Value<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAgents {
    seed: Value<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDns {
    servers: Value<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    max_message_bytes: Value<i64>,
    per_source_rps: Value<i64>,
    max_dialogs: Value<i64>,
    message_timeout_secs: Value<i64>,
    idle_timeout_secs: Value<i64>,
}

/// Where each value came from, to report problems at the right line.
struct Ctx<'a> {
    file: PathBuf,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        super::line_of(self.text, offset)
    }

    /// Records a problem at `span` of the user's file, or of the defaults when `span` is None.
    fn error(&mut self, span: Option<Range<usize>>, message: String) {
        let (file, line) = match span {
            Some(s) => (self.file.clone(), self.line_of(s.start)),
            None => (PathBuf::from("<embedded defaults>"), 0),
        };
        self.errors.push(ConfigError { file, line, message });
    }
}

/// Takes the user's value when given, else the default; returns it with the user's span.
fn pick<T: Clone + Default>(user: &Value<T>, default: &Value<T>) -> (T, Option<Range<usize>>) {
    match (user, default) {
        (Some(v), _) => (v.get_ref().clone(), Some(v.span())),
        (None, Some(d)) => (d.get_ref().clone(), None),
        (None, None) => (T::default(), None),
    }
}

fn nonempty(s: String) -> Option<String> {
    (!s.trim().is_empty()).then_some(s)
}

fn parse_toml(file: &Path, text: &str) -> Result<RawConfig, ConfigErrors> {
    toml::from_str(text).map_err(|e| {
        let ctx = Ctx { file: file.to_owned(), text, errors: Vec::new() };
        let line = e.span().map_or(0, |s| ctx.line_of(s.start));
        ConfigErrors(vec![ConfigError {
            file: file.to_owned(),
            line,
            message: e.message().trim().to_owned(),
        }])
    })
}

/// Builds the typed configuration from `text` (the file at `path`, or the defaults themselves
/// when `path` is None).
pub(super) fn build(path: Option<&Path>, text: &str) -> Result<Config, ConfigErrors> {
    let file = path.map_or_else(|| PathBuf::from("<embedded defaults>"), Path::to_owned);
    let user = parse_toml(&file, text)?;
    let defaults = match path {
        Some(_) => parse_toml(Path::new("<embedded defaults>"), DEFAULTS_TOML)?,
        None => RawConfig::default(),
    };
    let mut ctx = Ctx { file, text, errors: Vec::new() };
    let d = &defaults;

    let node = Node {
        name: pick(&user.node.name, &d.node.name).0,
        data_dir: PathBuf::from(pick(&user.node.data_dir, &d.node.data_dir).0),
    };
    if node.name.trim().is_empty() {
        let span = user.node.name.as_ref().map(Spanned::span);
        ctx.error(span, "node.name must not be empty".into());
    }

    let (domain, domain_span) = pick(&user.sip.domain, &d.sip.domain);
    if domain.trim().is_empty() || domain.contains(char::is_whitespace) {
        ctx.error(domain_span, format!("sip.domain '{domain}' must be a host name"));
    }
    let (listen_raw, listen_span) = pick(&user.sip.listen, &d.sip.listen);
    let mut listen = Vec::new();
    for entry in &listen_raw {
        // Entries from the user's file carry their own span; defaults have none.
        let span = listen_span.as_ref().map(|_| entry.span());
        match entry.get_ref().parse::<Listen>() {
            Ok(l) => listen.push(l),
            Err(e) => ctx.error(span, format!("sip.listen: {e}")),
        }
    }
    if listen_raw.is_empty() {
        ctx.error(listen_span.clone(), "sip.listen needs at least one listener".into());
    }
    let (algorithms_raw, algorithms_span) =
        pick(&user.sip.digest_algorithms, &d.sip.digest_algorithms);
    let mut digest_algorithms = Vec::new();
    for entry in &algorithms_raw {
        let span = algorithms_span.as_ref().map(|_| entry.span());
        let algorithm = match entry.get_ref().to_ascii_uppercase().as_str() {
            "MD5" => sip::digest::Algorithm::Md5,
            "SHA-256" => sip::digest::Algorithm::Sha256,
            other => {
                ctx.error(span, format!("sip.digest_algorithms: '{other}' is not MD5 or SHA-256"));
                continue;
            }
        };
        if digest_algorithms.contains(&algorithm) {
            ctx.error(span, format!("sip.digest_algorithms: '{}' twice", entry.get_ref()));
        } else {
            digest_algorithms.push(algorithm);
        }
    }
    if algorithms_raw.is_empty() {
        ctx.error(algorithms_span.clone(), "sip.digest_algorithms needs at least one".into());
        digest_algorithms = sip::digest::DEFAULT_ORDER.to_vec();
    }
    let sip = Sip {
        domain,
        listen,
        public_address: nonempty(pick(&user.sip.public_address, &d.sip.public_address).0),
        digest_algorithms,
    };

    let (web_listen, web_span) = pick(&user.web.listen, &d.web.listen);
    let web = Web {
        listen: socket_addr(&mut ctx, "web.listen", &web_listen, web_span),
        allowed_origins: pick(&user.web.allowed_origins, &d.web.allowed_origins)
            .0
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
    };

    let (cert, cert_span) = pick(&user.tls.cert, &d.tls.cert);
    let (key, key_span) = pick(&user.tls.key, &d.tls.key);
    let tls = match (nonempty(cert), nonempty(key)) {
        (Some(cert), Some(key)) => Some(Tls { cert: cert.into(), key: key.into() }),
        (None, None) => None,
        (Some(_), None) => {
            ctx.error(cert_span, "tls.cert is set but tls.key is not".into());
            None
        }
        (None, Some(_)) => {
            ctx.error(key_span, "tls.key is set but tls.cert is not".into());
            None
        }
    };
    if tls.is_none() {
        for (l, entry) in sip.listen.iter().zip(&listen_raw) {
            if l.transport == ListenTransport::Tls {
                let span = listen_span.as_ref().map(|_| entry.span());
                ctx.error(span, format!("sip.listen: '{l}' needs [tls] cert and key"));
            }
        }
    }

    let (admin_listen, admin_span) = pick(&user.admin.listen, &d.admin.listen);
    let admin = Admin {
        listen: socket_addr(&mut ctx, "admin.listen", &admin_listen, admin_span),
        token_file: nonempty(pick(&user.admin.token_file, &d.admin.token_file).0)
            .map(PathBuf::from),
    };

    let (ports, ports_span) = pick(&user.media.rtp_ports, &d.media.rtp_ports);
    let rtp_ports = match ports.parse::<PortRange>() {
        Ok(r) => r,
        Err(e) => {
            ctx.error(ports_span, format!("media.rtp_ports: {e}"));
            PortRange { first: 20000, last: 29999 }
        }
    };
    let (public_ip, ip_span) = pick(&user.media.public_ip, &d.media.public_ip);
    let public_ip = nonempty(public_ip).and_then(|ip| match ip.parse::<IpAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            ctx.error(ip_span, format!("media.public_ip: '{ip}' is not an IP address"));
            None
        }
    });
    let (anchor, anchor_span) = pick(&user.media.anchor, &d.media.anchor);
    let anchor = match anchor.as_str() {
        "webrtc" => Anchoring::Webrtc,
        "never" => Anchoring::Never,
        "always" => Anchoring::Always,
        other => {
            ctx.error(
                anchor_span,
                format!("media.anchor: '{other}' is not one of webrtc, always, never"),
            );
            Anchoring::Webrtc
        }
    };
    let (port, port_span) = pick(&user.media.webrtc_port, &d.media.webrtc_port);
    let webrtc_port = u16::try_from(port).unwrap_or_else(|_| {
        ctx.error(port_span, format!("media.webrtc_port: {port} is not a UDP port"));
        0
    });
    let (timeout, timeout_span) = pick(&user.media.timeout, &d.media.timeout);
    let timeout = parse_duration(&timeout).unwrap_or_else(|e| {
        ctx.error(timeout_span, format!("media.timeout: {e}"));
        std::time::Duration::from_secs(30)
    });
    let media = Media { anchor, rtp_ports, webrtc_port, public_ip, timeout };

    let (url, url_span) = pick(&user.smtp.url, &d.smtp.url);
    if !["smtp://", "smtps://"].iter().any(|p| url.starts_with(p)) {
        ctx.error(url_span, format!("smtp.url: '{url}' must start with smtp:// or smtps://"));
    }
    let (from, from_span) = pick(&user.smtp.from, &d.smtp.from);
    if !from.contains('@') {
        ctx.error(from_span, format!("smtp.from: '{from}' is not a mail address"));
    }
    let smtp = Smtp { url, from };

    let dialplan = Dialplan { dir: PathBuf::from(pick(&user.dialplan.dir, &d.dialplan.dir).0) };
    let agents =
        Agents { seed: nonempty(pick(&user.agents.seed, &d.agents.seed).0).map(PathBuf::from) };

    let (servers_raw, servers_span) = pick(&user.dns.servers, &d.dns.servers);
    let mut servers = Vec::new();
    for entry in &servers_raw {
        let span = servers_span.as_ref().map(|_| entry.span());
        match entry.get_ref().parse::<SocketAddr>() {
            Ok(a) => servers.push(a),
            Err(_) => ctx.error(
                span,
                format!(
                    "dns.servers: '{}' is not an IP address and port (\"192.0.2.53:53\", \"[2001:db8::53]:53\")",
                    entry.get_ref()
                ),
            ),
        }
    }
    let dns = Dns { servers };

    let mut limit = |name: &str, user: &Value<i64>, default: &Value<i64>, min: i64, max: i64| {
        let (v, span) = pick(user, default);
        if !(min..=max).contains(&v) {
            ctx.error(span, format!("limits.{name} = {v}: must be between {min} and {max}"));
        }
        v.clamp(min, max)
    };
    let limits = Limits {
        // Below ~1 KB no INVITE fits; above 1 MB a single message is an attack.
        max_message_bytes: limit(
            "max_message_bytes",
            &user.limits.max_message_bytes,
            &d.limits.max_message_bytes,
            1024,
            1 << 20,
        ) as usize,
        per_source_rps: limit(
            "per_source_rps",
            &user.limits.per_source_rps,
            &d.limits.per_source_rps,
            1,
            1_000_000,
        ) as u32,
        max_dialogs: limit(
            "max_dialogs",
            &user.limits.max_dialogs,
            &d.limits.max_dialogs,
            1,
            10_000_000,
        ) as u32,
        message_timeout: Duration::from_secs(limit(
            "message_timeout_secs",
            &user.limits.message_timeout_secs,
            &d.limits.message_timeout_secs,
            1,
            600,
        ) as u64),
        idle_timeout: Duration::from_secs(limit(
            "idle_timeout_secs",
            &user.limits.idle_timeout_secs,
            &d.limits.idle_timeout_secs,
            1,
            86_400,
        ) as u64),
    };

    if !ctx.errors.is_empty() {
        return Err(ConfigErrors(ctx.errors));
    }
    Ok(Config {
        source: path.map(Path::to_owned),
        node,
        sip,
        web,
        tls,
        admin,
        media,
        smtp,
        dialplan,
        agents,
        dns,
        limits,
    })
}

fn socket_addr(
    ctx: &mut Ctx<'_>,
    key: &str,
    value: &str,
    span: Option<Range<usize>>,
) -> SocketAddr {
    match value.parse() {
        Ok(a) => a,
        Err(_) => {
            ctx.error(span, format!("{key}: '{value}' is not an IP address and port"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    }
}
