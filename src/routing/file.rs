//! Dialplan files as written (`dialplans/*.toml`, DESIGN.md) and their compilation into a
//! [`Dialplan`]. Every problem of every file is collected as `file:line: message`; nothing of a
//! set of files with a problem is used.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::cidr::Cidr;
use super::number::{E164, NumberRange};
use super::{
    Dialplan, DialplanError, Emergency, InboundTarget, RequestUriForm, Route, Trunk, TrunkCa,
    TrunkEmergency, TrunkKind,
};
use crate::config::parse_duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFile {
    trunk: Vec<Spanned<RawTrunk>>,
    route: Vec<Spanned<RawRoute>>,
    emergency: Option<Spanned<RawEmergency>>,
    inbound: Vec<Spanned<RawInbound>>,
    trusted: Vec<Spanned<RawTrusted>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrunk {
    name: String,
    kind: String,
    uri: String,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    numbers: Vec<String>,
    #[serde(default)]
    emergency: Option<RawTrunkEmergency>,
    /// Probe with OPTIONS (default true).
    probe: Option<bool>,
    /// A PEM file of the certificate authorities TLS connections to this trunk trust.
    tls_ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrunkEmergency {
    resource_priority: Option<String>,
    location: Option<String>,
    request_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    pattern: String,
    trunks: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawEmergency {
    country: Option<BTreeMap<String, Vec<String>>>,
    test: Option<Vec<String>>,
    outside_line: Option<RawOutsideLine>,
    callback_pool: Vec<String>,
    callback_lease: Option<String>,
    callback_quarantine: Option<String>,
    callback_fallback: Option<String>,
    site_number: Option<String>,
    failover_after: Option<String>,
}

/// `outside_line = ["9"]` (every country) or `outside_line = { US = ["9"] }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawOutsideLine {
    All(Vec<String>),
    PerCountry(BTreeMap<String, Vec<String>>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbound {
    did: Option<String>,
    pattern: Option<String>,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrusted {
    cidr: String,
}

struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    fn line(&self, offset: usize) -> usize {
        crate::config::line_of(&self.text, offset)
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> DialplanError {
        DialplanError { file: self.path.clone(), line: self.line(offset), message: message.into() }
    }
}

/// Reads every `*.toml` of `dir` (in file-name order) and compiles them into one table. A
/// missing directory is an empty dialplan.
pub(super) fn load_dir(dir: &Path) -> Result<Dialplan, Vec<DialplanError>> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(vec![DialplanError {
                file: dir.to_owned(),
                line: 0,
                message: format!("cannot read: {e}"),
            }]);
        }
    };
    paths.sort();
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push(Source { path, text }),
            Err(e) => errors.push(DialplanError {
                file: path,
                line: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    compile(&sources)
}

/// Compiles dialplan texts (file name, contents) given directly: what tests use.
pub(super) fn compile_texts(files: &[(&str, &str)]) -> Result<Dialplan, Vec<DialplanError>> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(p, t)| Source { path: PathBuf::from(p), text: (*t).to_owned() })
        .collect();
    compile(&sources)
}

fn compile(sources: &[Source]) -> Result<Dialplan, Vec<DialplanError>> {
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for src in sources {
        match toml::from_str::<RawFile>(&src.text) {
            Ok(f) => parsed.push((src, f)),
            Err(e) => errors.push(src.error(e.span().map_or(0, |s| s.start), e.message().trim())),
        }
    }
    let mut plan = Dialplan::empty();
    plan.files = sources.iter().map(|s| s.path.clone()).collect();
    // Trunks first: routes and inbound rules name them, across files.
    let mut trunk_where: HashMap<String, (PathBuf, usize)> = HashMap::new();
    for (src, file) in &parsed {
        for t in &file.trunk {
            let at = t.span().start;
            let raw = t.get_ref();
            if let Some((f, l)) = trunk_where.get(&raw.name) {
                errors.push(src.error(
                    at,
                    format!("trunk '{}' is already defined at {}:{l}", raw.name, f.display()),
                ));
                continue;
            }
            match compile_trunk(raw, &src.path) {
                Ok(trunk) => {
                    trunk_where.insert(raw.name.clone(), (src.path.clone(), src.line(at)));
                    plan.trunks.push(trunk);
                }
                Err(msg) => errors.push(src.error(at, format!("trunk '{}': {msg}", raw.name))),
            }
        }
    }
    let trunk_index = |name: &str, plan: &Dialplan| plan.trunks.iter().position(|t| t.name == name);
    let mut emergency_seen: Option<(PathBuf, usize)> = None;
    for (src, file) in &parsed {
        for r in &file.route {
            let at = r.span().start;
            let raw = r.get_ref();
            let pattern = Regex::new(&raw.pattern);
            if let Err(e) = &pattern {
                errors.push(src.error(at, format!("route pattern '{}': {e}", raw.pattern)));
            }
            let mut trunks = Vec::new();
            for name in &raw.trunks {
                let name = name.strip_prefix("trunk:").unwrap_or(name);
                match trunk_index(name, &plan) {
                    Some(i) => trunks.push(i),
                    None => errors.push(src.error(
                        at,
                        format!("route '{}' names unknown trunk '{name}'", raw.pattern),
                    )),
                }
            }
            if raw.trunks.is_empty() {
                errors.push(src.error(at, format!("route '{}' names no trunk", raw.pattern)));
            }
            if let Ok(pattern) = pattern {
                plan.routes.push(Route {
                    pattern,
                    trunks,
                    file: src.path.clone(),
                    line: src.line(at),
                });
            }
        }
        for i in &file.inbound {
            let at = i.span().start;
            let raw = i.get_ref();
            let target = match parse_target(&raw.to) {
                Ok(InboundTarget::Trunk(name)) => match trunk_index(&name, &plan) {
                    Some(_) => InboundTarget::Trunk(name),
                    None => {
                        errors.push(
                            src.error(at, format!("inbound target names unknown trunk '{name}'")),
                        );
                        continue;
                    }
                },
                Ok(t) => t,
                Err(msg) => {
                    errors.push(src.error(at, msg));
                    continue;
                }
            };
            match (&raw.did, &raw.pattern) {
                (Some(did), None) => match E164::parse(did) {
                    Some(d) => {
                        plan.inbound_exact.insert(d.as_str().to_owned(), target);
                    }
                    None => errors
                        .push(src.error(at, format!("inbound did '{did}' is not an E.164 number"))),
                },
                (None, Some(p)) => match Regex::new(p) {
                    Ok(re) => plan.inbound_patterns.push((re, target)),
                    Err(e) => errors.push(src.error(at, format!("inbound pattern '{p}': {e}"))),
                },
                _ => errors.push(src.error(at, "an inbound rule has either did or pattern")),
            }
        }
        for t in &file.trusted {
            match Cidr::parse(&t.get_ref().cidr) {
                Ok(c) => plan.trusted.push(c),
                Err(msg) => errors.push(src.error(t.span().start, format!("trusted: {msg}"))),
            }
        }
        if let Some(e) = &file.emergency {
            let at = e.span().start;
            if let Some((f, l)) = &emergency_seen {
                errors.push(
                    src.error(at, format!("[emergency] is already defined at {}:{l}", f.display())),
                );
                continue;
            }
            emergency_seen = Some((src.path.clone(), src.line(at)));
            match compile_emergency(e.get_ref()) {
                Ok(em) => plan.emergency = em,
                Err(msgs) => errors
                    .extend(msgs.into_iter().map(|m| src.error(at, format!("[emergency]: {m}")))),
            }
        }
    }
    if errors.is_empty() {
        errors = crate::emergency::check_ambiguity(&plan);
    }
    if errors.is_empty() { Ok(plan) } else { Err(errors) }
}

fn compile_trunk(raw: &RawTrunk, file: &Path) -> Result<Trunk, String> {
    if raw.name.is_empty()
        || !raw.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err("a name is letters, digits, '-', '_' and '.'".into());
    }
    let kind = match raw.kind.as_str() {
        "direct-offer" => TrunkKind::DirectOffer,
        "direct-routing" => TrunkKind::DirectRouting,
        other => return Err(format!("kind '{other}' (use direct-offer or direct-routing)")),
    };
    let uri = sip::uri::SipUri::parse(&raw.uri).map_err(|e| format!("uri '{}': {e}", raw.uri))?;
    if uri.user.is_some() {
        return Err(format!("uri '{}' must not have a user part", raw.uri));
    }
    let transport = match uri.transport() {
        None => None,
        Some(t) => Some(
            sip::transport::Transport::from_uri_param(t, uri.secure)
                .ok_or_else(|| format!("uri '{}': transport '{t}' is not supported", raw.uri))?,
        ),
    };
    let sources = raw.sources.iter().map(|s| Cidr::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let numbers =
        raw.numbers.iter().map(|n| NumberRange::parse(n)).collect::<Result<Vec<_>, _>>()?;
    let emergency = match &raw.emergency {
        None => TrunkEmergency::default(),
        Some(e) => TrunkEmergency {
            resource_priority: e.resource_priority.clone(),
            pidf: match e.location.as_deref() {
                None | Some("pidf") => true,
                Some("none") => false,
                Some(o) => return Err(format!("emergency.location '{o}' (use pidf or none)")),
            },
            request_uri: match e.request_uri.as_deref() {
                None | Some("dialstring") => RequestUriForm::Dialstring,
                Some("e164") => RequestUriForm::E164,
                Some("urn") => RequestUriForm::Urn,
                Some(o) => {
                    return Err(format!(
                        "emergency.request_uri '{o}' (use dialstring, e164 or urn)"
                    ));
                }
            },
        },
    };
    Ok(Trunk {
        name: raw.name.clone(),
        kind,
        uri: raw.uri.clone(),
        host: uri.host_raw.to_owned(),
        ip: uri.host.ip(),
        port: uri.port,
        secure: uri.secure,
        transport,
        sources,
        numbers,
        emergency,
        probe: raw.probe.unwrap_or(true),
        tls_ca: raw.tls_ca.as_deref().map(|ca| trunk_ca(ca, file)).transpose()?,
    })
}

/// Reads a trunk's `tls_ca` file: a path relative to the dialplan file's directory, holding at
/// least one PEM certificate.
fn trunk_ca(ca: &str, file: &Path) -> Result<TrunkCa, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let path = file.parent().unwrap_or(Path::new("")).join(ca);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .and_then(Iterator::collect)
        .map_err(|e| format!("tls_ca '{}': {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("tls_ca '{}': no usable PEM certificate", path.display()));
    }
    Ok(TrunkCa { path, roots: std::sync::Arc::new(roots) })
}

fn parse_target(to: &str) -> Result<InboundTarget, String> {
    let valid = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match to.split_once(':') {
        Some(("agent", n)) if valid(n) => Ok(InboundTarget::Agent(n.to_owned())),
        Some(("group", n)) if valid(n) => Ok(InboundTarget::Group(n.to_owned())),
        Some(("trunk", n)) if valid(n) => Ok(InboundTarget::Trunk(n.to_owned())),
        _ => Err(format!("target '{to}' (use agent:NAME, group:NAME or trunk:NAME)")),
    }
}

/// The largest callback pool, in numbers (the pool is handed to the store whole).
const MAX_CALLBACK_POOL: u64 = 10_000;

fn compile_emergency(raw: &RawEmergency) -> Result<Emergency, Vec<String>> {
    let mut errors = Vec::new();
    let mut em = Emergency::default();
    if let Some(c) = &raw.country {
        em.countries = c.clone();
    }
    for (country, strings) in &em.countries {
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.push(format!("country '{country}' is not an ISO 3166 alpha-2 code"));
        }
        for s in strings {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                errors.push(format!("dialstring '{s}' of {country} is not digits"));
            }
        }
    }
    if let Some(t) = &raw.test {
        em.test = t.clone();
    }
    match &raw.outside_line {
        // Countries given without prefixes: the default prefixes of those still listed.
        None => em.outside_line.retain(|c, _| em.countries.contains_key(c)),
        Some(RawOutsideLine::All(prefixes)) => {
            em.outside_line = em.countries.keys().map(|c| (c.clone(), prefixes.clone())).collect();
        }
        Some(RawOutsideLine::PerCountry(map)) => em.outside_line = map.clone(),
    }
    for (country, prefixes) in &em.outside_line {
        if !em.countries.contains_key(country) {
            errors.push(format!("outside_line names country '{country}' without dialstrings"));
        }
        for p in prefixes {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                errors.push(format!("outside_line '{p}' of {country} is not digits"));
            }
        }
    }

    for p in &raw.callback_pool {
        match NumberRange::parse(p) {
            Ok(r) => em.callback_pool.push(r),
            Err(e) => errors.push(format!("callback_pool: {e}")),
        }
    }
    let pool: u64 = em.callback_pool.iter().map(NumberRange::len).sum();
    if pool > MAX_CALLBACK_POOL {
        errors.push(format!(
            "callback_pool holds {pool} numbers; at most {MAX_CALLBACK_POOL} (a pool is a \
             few DIDs per concurrent emergency call, not a whole number block)"
        ));
    }
    let mut duration = |v: &Option<String>, name: &str, slot: &mut Duration| {
        if let Some(v) = v {
            match parse_duration(v) {
                Ok(d) => *slot = d,
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
    };
    duration(&raw.callback_lease, "callback_lease", &mut em.callback_lease);
    duration(&raw.callback_quarantine, "callback_quarantine", &mut em.callback_quarantine);
    duration(&raw.failover_after, "failover_after", &mut em.failover_after);
    if let Some(f) = &raw.callback_fallback {
        match E164::parse(f)
            .map(|n| InboundTarget::Number(n.as_str().to_owned()))
            .ok_or(())
            .or_else(|()| parse_target(f))
        {
            Ok(t) => em.callback_fallback = Some(t),
            Err(e) => errors.push(format!("callback_fallback: {e}")),
        }
    }
    if let Some(s) = &raw.site_number {
        match E164::parse(s) {
            Some(n) => em.site_number = Some(n),
            None => errors.push(format!("site_number '{s}' is not an E.164 number")),
        }
    }
    if errors.is_empty() { Ok(em) } else { Err(errors) }
}
