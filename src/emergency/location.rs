//! The caller's location on an emergency call.
//!
//! Four jobs, all pure (no I/O, no clock, no randomness):
//!
//! 1. [`from_invite`]: find the location a softphone sent in its INVITE — a `Geolocation`
//!    header (RFC 6442 §4.1) whose `cid:` URI names a body part by its `Content-ID`
//!    (RFC 2392) in a multipart body (RFC 5621), or a whole body of `application/pidf+xml`,
//!    or a location by reference (`http:`, `https:`, `sip:`, `sips:`, `pres:` URIs,
//!    RFC 6442 §4.1). The PIDF-LO (RFC 4119, RFC 5491) is kept byte for byte, and
//!    [`read_pidf`] reads what it can from it: the civic address (RFC 5139) and the first
//!    geodetic point (RFC 5491 §5.2).
//! 2. [`build_pidf`]: write a PIDF-LO from the agent's provisioned address
//!    ([`civic_from_address`] turns the one-line address into RFC 5139 elements), method
//!    `Manual`.
//! 3. [`attach`]: put a PIDF-LO next to the SDP in a `multipart/mixed` body and give the
//!    `Geolocation` header value that points at it.
//! 4. [`country_of`]: the caller's country for dialstring classification — the softphone's
//!    location first, the agent's provisioned country otherwise.
//!
//! # Contracts
//!
//! - The INVITE body is hostile input: nothing here panics on it. The XML reader looks at
//!   documents of at most [`MAX_PIDF_BYTES`], at most [`MAX_DEPTH`] elements deep and
//!   [`MAX_EVENTS`] parser events long; anything beyond is not read.
//! - A PIDF-LO the softphone sent is passed on unchanged, even one the reader could not
//!   make sense of (garbled, truncated, too large, another namespace): the PSAP may read more
//!   than we do. Only the country is then unknown.
//! - Namespaces are matched by URI, never by prefix (`ca:`, `cl:`, `civ:` or a default
//!   namespace all work).
//! - A country is only named when the answer is sure. An unknown country is safe (every
//!   configured country's dialstrings apply, DESIGN.md); a wrong one is not. So points near a
//!   land border, and places outside the areas [`country_at`] knows, give `None`.
//! - Locations are personal data: the `Debug` output of the types here shows no address, no
//!   coordinates and no document.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use quick_xml::NsReader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use sip::header::typed::{MediaType, NameAddr};
use sip::multipart::{self, MultipartError, NewPart};
use sip::{HeaderName, Request};

use crate::store::{CountryCode, Location, UnixTime};

/// Largest PIDF-LO document [`read_pidf`] reads (bytes). A larger one is still passed on; its
/// country is unknown. Real documents are 1 to 3 KiB.
pub const MAX_PIDF_BYTES: usize = 32 * 1024;

/// Deepest element nesting [`read_pidf`] follows; PIDF-LO documents are about 8 deep.
pub const MAX_DEPTH: usize = 32;

/// Most XML parser events [`read_pidf`] handles in one document.
pub const MAX_EVENTS: usize = 4 * 1024;

/// Longest text kept from one element (a civic value, a `gml:pos`), in bytes.
const MAX_VALUE_BYTES: usize = 512;

/// The value of `Geolocation-Routing` (RFC 6442 §4.2) on an emergency INVITE toward a trunk.
///
/// Always `yes`: the carrier and the emergency network choose the PSAP from the caller's
/// location (RFC 6443, RFC 6881), so the location must be usable for routing. A softphone's own
/// `no` is not forwarded: for an emergency call the location exists to be routed on.
pub const GEOLOCATION_ROUTING: &str = "yes";

/// XML namespaces, matched by URI (the prefixes in documents vary).
mod ns {
    /// PIDF (RFC 3863).
    pub(super) const PIDF: &str = "urn:ietf:params:xml:ns:pidf";
    /// GEOPRIV location object (RFC 4119 §2.2).
    pub(super) const GEOPRIV: &str = "urn:ietf:params:xml:ns:pidf:geopriv10";
    /// Basic usage rules (RFC 4119 §2.2.2; the RFC 5491 examples use this namespace).
    pub(super) const BASIC_POLICY: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:basicPolicy";
    /// Civic address (RFC 5139 §4).
    pub(super) const CIVIC: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr";
    /// The civic format RFC 5139 replaced (RFC 4119 §2.2.1); same element names.
    pub(super) const CIVIC_LEGACY: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:civicLoc";
    /// GML 3.1.1 (RFC 5491 §5.2: `Point`, `Polygon`, `pos`, `posList`).
    pub(super) const GML: &str = "http://www.opengis.net/gml";
    /// GeoShape (RFC 5491 §5.2: `Circle`, `Ellipse`, `ArcBand`, `Sphere`...).
    pub(super) const GEOSHAPE: &str = "http://www.opengis.net/pidflo/1.0";
}

// ---------------------------------------------------------------------------------------------
// The softphone's location

/// The location a softphone sent in its INVITE.
#[derive(Clone, PartialEq)]
pub struct SoftphoneLocation {
    /// Every `Geolocation` header value, exactly as received, in order (RFC 6442 §4.1).
    pub geolocation: Vec<Bytes>,
    /// The PIDF-LO document exactly as received: the part a `cid:` URI named, else the first
    /// `application/pidf+xml` part, or the whole body when the body is one. Passed on byte
    /// for byte.
    pub pidf: Option<Bytes>,
    /// The `Content-ID` of the part the PIDF-LO came from (without angle brackets).
    pub content_id: Option<String>,
    /// Location by reference (RFC 6442 §4.1): `http:`, `https:`, `sip:`, `sips:` and `pres:`
    /// URIs from the `Geolocation` headers. Kept to pass on; never dereferenced here.
    pub references: Vec<String>,
    /// What [`read_pidf`] read from [`SoftphoneLocation::pidf`].
    pub info: PidfInfo,
}

impl SoftphoneLocation {
    /// The country of this location, when the document says it surely ([`PidfInfo::country`]).
    pub fn country(&self) -> Option<CountryCode> {
        self.info.country()
    }
}

impl fmt::Debug for SoftphoneLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftphoneLocation")
            .field("geolocation_headers", &self.geolocation.len())
            .field("pidf_bytes", &self.pidf.as_ref().map(Bytes::len))
            .field("references", &self.references.len())
            .field("info", &self.info)
            .finish()
    }
}

/// Finds the location a softphone sent with `request` (an INVITE): `None` when it sent none.
///
/// The PIDF-LO is the body part whose `Content-ID` a `Geolocation` `cid:` URI names
/// (RFC 6442 §4.1, RFC 2392; compared exactly, then ignoring ASCII case), if that part is
/// `application/pidf+xml` or untyped. When no header
/// names a part, the first `application/pidf+xml` part is taken, and a whole body of that
/// type is taken as it is: a softphone that forgot the header still has its location passed
/// on. Only one level of multipart is searched.
pub fn from_invite(request: &Request) -> Option<SoftphoneLocation> {
    let headers = request.headers();
    let geolocation: Vec<Bytes> =
        headers.get_all(HeaderName::Geolocation).map(Bytes::copy_from_slice).collect();

    let mut cids = Vec::new();
    let mut references = Vec::new();
    for raw in &geolocation {
        let Ok(text) = std::str::from_utf8(raw) else { continue };
        for value in NameAddr::parse_list(text).flatten() {
            let uri = value.uri_raw;
            let Some((scheme, rest)) = uri.split_once(':') else { continue };
            if scheme.eq_ignore_ascii_case("cid") {
                cids.push(percent_decode(rest));
            } else if ["http", "https", "sip", "sips", "pres"]
                .iter()
                .any(|s| scheme.eq_ignore_ascii_case(s))
            {
                references.push(uri.to_owned());
            }
        }
    }

    let body = request.body();
    let content_type = headers.content_type().ok().flatten();
    let (pidf, content_id) = match content_type {
        Some(ct) if ct.ty.eq_ignore_ascii_case("multipart") => find_part(body, &ct, &cids),
        Some(ct) if is_pidf(&ct) && !body.is_empty() => (Some(body.clone()), None),
        _ => (None, None),
    };

    if geolocation.is_empty() && pidf.is_none() {
        return None;
    }
    let info = pidf.as_deref().map(read_pidf).unwrap_or_default();
    Some(SoftphoneLocation { geolocation, pidf, content_id, references, info })
}

fn is_pidf(ct: &MediaType<'_>) -> bool {
    ct.is("application", "pidf+xml")
}

/// The PIDF-LO part of a multipart body and its Content-ID.
fn find_part(body: &Bytes, ct: &MediaType<'_>, cids: &[String]) -> (Option<Bytes>, Option<String>) {
    let Some(boundary) = ct.boundary() else { return (None, None) };
    let Ok(parts) = multipart::parse(body, boundary) else { return (None, None) };
    // A named part must be a PIDF-LO (or say nothing of its type): a `cid:` naming the SDP
    // does not make the SDP a location.
    let pidf_or_untyped = |p: &multipart::Part<'_>| {
        p.header("Content-Type").is_none() || p.content_type().is_some_and(|t| is_pidf(&t))
    };
    let named = |exact: bool| {
        cids.iter().find_map(|cid| {
            parts.iter().filter(|p| pidf_or_untyped(p)).find(|p| {
                p.content_id()
                    .is_some_and(|id| if exact { id == cid } else { id.eq_ignore_ascii_case(cid) })
            })
        })
    };
    let part = named(true)
        .or_else(|| named(false))
        .or_else(|| parts.iter().find(|p| p.content_type().is_some_and(|t| is_pidf(&t))));
    match part {
        Some(p) if !p.body.is_empty() => {
            (Some(Bytes::copy_from_slice(p.body)), p.content_id().map(str::to_owned))
        }
        _ => (None, None),
    }
}

/// Decodes `%XX` escapes (a `cid:` URI is URL-encoded, RFC 2392 §2); bad escapes stay as
/// written.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) =
                (b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Reading a PIDF-LO

/// How far [`read_pidf`] got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadStatus {
    /// The document was read to its end.
    Read,
    /// No document (a location by reference only).
    #[default]
    Absent,
    /// Well-formed so far, but the root is not a PIDF `presence` element (wrong namespace,
    /// another format).
    NotPidf,
    /// Not UTF-8, not well-formed, truncated, an unknown entity, or over [`MAX_DEPTH`] or
    /// [`MAX_EVENTS`]. Nothing read from it is used.
    Malformed,
    /// Over [`MAX_PIDF_BYTES`]: not read.
    TooLarge,
}

/// What [`read_pidf`] found in a PIDF-LO.
///
/// Where a document carries several locations (several `geopriv` elements or several
/// location objects in one `location-info`, which RFC 5491 §3 asks senders to avoid), the
/// first civic address and the first geodetic point in document order are kept.
#[derive(Clone, Default, PartialEq)]
pub struct PidfInfo {
    pub status: ReadStatus,
    /// The `presence` element's `entity` (RFC 3863).
    pub entity: Option<String>,
    /// The first civic address (RFC 5139, or the RFC 4119 civic format).
    pub civic: Option<Civic>,
    /// The first geodetic point: a `gml:Point`, or the centre of a `gs:Circle`, `gs:Ellipse`,
    /// `gs:ArcBand`, `gs:Sphere` or `gs:Ellipsoid`, or the first vertex of a `gml:Polygon`
    /// (RFC 5491 §5.2). Coordinates in `EPSG::4326`/`EPSG::4979` order, latitude first.
    pub point: Option<GeoPoint>,
    /// `gp:method` (RFC 4119 §2.2.3), e.g. `GPS`, `Manual`.
    pub method: Option<String>,
    /// How many location objects the `location-info` elements held.
    pub locations: usize,
}

impl PidfInfo {
    fn with_status(status: ReadStatus) -> PidfInfo {
        PidfInfo { status, ..PidfInfo::default() }
    }

    /// The country this location is in: the civic `country` (a civic address is what the
    /// sender states; a point is only mapped), else the country of the point
    /// ([`country_at`]). `None` for anything not read to its end.
    pub fn country(&self) -> Option<CountryCode> {
        if self.status != ReadStatus::Read {
            return None;
        }
        self.civic.as_ref().and_then(Civic::country).or_else(|| self.point.and_then(country_at))
    }
}

impl fmt::Debug for PidfInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PidfInfo")
            .field("status", &self.status)
            .field("country", &self.country().as_ref().map(CountryCode::as_str))
            .field("civic", &self.civic.is_some())
            .field("point", &self.point.is_some())
            .field("method", &self.method)
            .field("locations", &self.locations)
            .finish()
    }
}

/// A WGS 84 position in degrees (RFC 5491 §4: `urn:ogc:def:crs:EPSG::4326`).
#[derive(Clone, Copy, PartialEq)]
pub struct GeoPoint {
    /// Degrees north, `-90..=90`.
    pub lat: f64,
    /// Degrees east, `-180..=180`.
    pub lon: f64,
}

impl GeoPoint {
    /// A point, when both numbers are finite and in range.
    pub fn new(lat: f64, lon: f64) -> Option<GeoPoint> {
        let ok = lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0;
        ok.then_some(GeoPoint { lat, lon })
    }
}

impl fmt::Debug for GeoPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GeoPoint(<redacted>)")
    }
}

/// The RFC 5139 civic address elements, in the order of the schema (RFC 5139 §4).
#[rustfmt::skip]
pub const CIVIC_ELEMENTS: [&str; 31] = [
    "country", "A1", "A2", "A3", "A4", "A5", "A6", "PRM", "PRD", "RD", "STS", "POD", "POM",
    "RDSEC", "RDBR", "RDSUBBR", "HNO", "HNS", "LMK", "LOC", "FLR", "NAM", "PC", "BLD", "UNIT",
    "ROOM", "SEAT", "PLC", "PCN", "POBOX", "ADDCODE",
];

/// A civic address (RFC 5139): element name -> value, at most one value per element.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Civic {
    /// `(element, value)` with element one of [`CIVIC_ELEMENTS`], in schema order; values
    /// whitespace-collapsed.
    fields: Vec<(&'static str, String)>,
}

impl Civic {
    /// The value of element `name` (`"country"`, `"A1"`, `"HNO"`...).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Sets element `name` (one of [`CIVIC_ELEMENTS`], otherwise ignored) to `value`,
    /// whitespace collapsed; an empty value removes it.
    pub fn set(&mut self, name: &str, value: &str) {
        let Some(name) = CIVIC_ELEMENTS.iter().find(|n| **n == name) else { return };
        let value = collapse_ws(value);
        self.fields.retain(|(n, _)| n != name);
        if !value.is_empty() {
            self.fields.push((name, value));
            self.fields.sort_by_key(|(n, _)| CIVIC_ELEMENTS.iter().position(|e| e == n));
        }
    }

    /// `(element, value)` pairs in schema order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        CIVIC_ELEMENTS.iter().filter_map(|n| self.get(n).map(|v| (*n, v)))
    }

    /// The `country` element as an ISO 3166-1 alpha-2 code (RFC 5139), upper-cased.
    /// Puerto Rico written the NENA way, `country` `US` with `A1` `PR`, is `PR`: Puerto Rico
    /// has its own dialstring table and must never be taken for the US.
    pub fn country(&self) -> Option<CountryCode> {
        let c = self.get("country")?;
        if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        let c = c.to_ascii_uppercase();
        if c == "US" && self.get("A1").is_some_and(|a1| a1.eq_ignore_ascii_case("PR")) {
            return "PR".parse().ok();
        }
        c.parse().ok()
    }
}

impl fmt::Debug for Civic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.fields().map(|(n, _)| n).collect();
        f.debug_struct("Civic")
            .field("country", &self.get("country"))
            .field("elements", &names)
            .finish()
    }
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads a PIDF-LO (RFC 4119, RFC 5491): the first civic address, the first geodetic point,
/// the method, the entity. Never fails: a document it cannot read has a [`ReadStatus`] other
/// than `Read` and nothing else.
///
/// The `geopriv` element may sit in a `tuple`'s `status` (RFC 4119 §2.2) or in a `dm:device`
/// or `dm:person` (RFC 5491 §3, with the RFC 4479 data model); it is found wherever it is. A geodetic shape
/// without `srsName` is taken as `EPSG::4326`; one with another reference system is ignored.
pub fn read_pidf(doc: &[u8]) -> PidfInfo {
    if doc.len() > MAX_PIDF_BYTES {
        return PidfInfo::with_status(ReadStatus::TooLarge);
    }
    let Ok(text) = std::str::from_utf8(doc) else {
        return PidfInfo::with_status(ReadStatus::Malformed);
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match walk(text) {
        Ok(info) => info,
        Err(status) => PidfInfo::with_status(status),
    }
}

/// What an open element means to the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Presence,
    Geopriv,
    LocationInfo,
    Civic,
    CivicField(&'static str),
    Method,
    Pos,
    PosList,
    Other,
}

impl Node {
    /// Whether the element's text is wanted.
    fn has_value(self) -> bool {
        matches!(self, Node::CivicField(_) | Node::Method | Node::Pos | Node::PosList)
    }
}

struct Frame {
    node: Node,
    /// `Some(usable)` when the element has an `srsName` (RFC 5491 §4).
    srs: Option<bool>,
}

fn walk(text: &str) -> Result<PidfInfo, ReadStatus> {
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut info = PidfInfo { status: ReadStatus::Read, ..PidfInfo::default() };
    let mut civic: Option<Civic> = None;
    let mut value = String::new();
    let mut seen_root = false;

    for _ in 0..MAX_EVENTS {
        let (resolved, event) = reader.read_resolved_event().map_err(|_| ReadStatus::Malformed)?;
        let ns = match resolved {
            ResolveResult::Bound(n) => Some(n.0),
            _ => None,
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                // Attribute syntax and duplicates are checked on every element.
                if e.attributes().any(|a| a.is_err()) {
                    return Err(ReadStatus::Malformed);
                }
                if stack.is_empty() {
                    if seen_root || !(ns == Some(ns::PIDF) && e.local_name().as_ref() == "presence")
                    {
                        return Err(ReadStatus::NotPidf);
                    }
                    seen_root = true;
                    info.entity = attribute(e, "entity")?;
                }
                let node = classify(ns, e.local_name().as_ref(), &stack);
                if stack.last().is_some_and(|f| f.node == Node::LocationInfo) {
                    info.locations += 1;
                }
                let in_location = stack.iter().any(|f| f.node == Node::LocationInfo);
                let srs = if in_location && matches!(ns, Some(ns::GML | ns::GEOSHAPE)) {
                    attribute(e, "srsName")?.map(|s| srs_usable(&s))
                } else {
                    None
                };
                if node == Node::Civic && info.civic.is_none() && civic.is_none() {
                    civic = Some(Civic::default());
                }
                value.clear();
                if empty {
                    finish(node, "", &stack, &mut info, &mut civic);
                } else {
                    if stack.len() >= MAX_DEPTH {
                        return Err(ReadStatus::Malformed);
                    }
                    stack.push(Frame { node, srs });
                }
            }
            Event::End(_) => {
                let frame = stack.pop().ok_or(ReadStatus::Malformed)?;
                finish(frame.node, &value, &stack, &mut info, &mut civic);
                value.clear();
            }
            Event::Text(t) => collect(&stack, &mut value, &t.xml10_content()),
            Event::CData(t) => collect(&stack, &mut value, &t.xml10_content()),
            Event::GeneralRef(r) => {
                let resolved = crate::emergency::location::resolve_reference(&r)
                    .ok_or(ReadStatus::Malformed)?;
                collect(&stack, &mut value, &resolved);
            }
            Event::Eof => {
                return match (seen_root, stack.is_empty()) {
                    (true, true) => Ok(info),
                    (false, _) => Err(ReadStatus::NotPidf),
                    (true, false) => Err(ReadStatus::Malformed),
                };
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    Err(ReadStatus::Malformed)
}

/// An attribute's value, entities resolved; a malformed attribute list is a malformed
/// document.
fn attribute(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, ReadStatus> {
    match e.try_get_attribute(name) {
        Ok(Some(a)) => a
            .normalized_value(XmlVersion::Implicit1_0)
            .map(|v| Some(v.into_owned()))
            .map_err(|_| ReadStatus::Malformed),
        Ok(None) => Ok(None),
        Err(_) => Err(ReadStatus::Malformed),
    }
}

fn classify(ns: Option<&str>, local: &str, stack: &[Frame]) -> Node {
    let parent = stack.last().map(|f| f.node);
    let in_location = stack.iter().any(|f| f.node == Node::LocationInfo);
    match (ns, local, parent) {
        (Some(ns::PIDF), "presence", None) => Node::Presence,
        (Some(ns::GEOPRIV), "geopriv", Some(_)) => Node::Geopriv,
        (Some(ns::GEOPRIV), "location-info", Some(Node::Geopriv)) => Node::LocationInfo,
        (Some(ns::GEOPRIV), "method", Some(Node::Geopriv)) => Node::Method,
        (Some(ns::CIVIC | ns::CIVIC_LEGACY), "civicAddress", Some(Node::LocationInfo)) => {
            Node::Civic
        }
        (Some(ns::CIVIC | ns::CIVIC_LEGACY), name, Some(Node::Civic)) => {
            match CIVIC_ELEMENTS.iter().find(|n| **n == name) {
                Some(n) => Node::CivicField(n),
                None => Node::Other,
            }
        }
        (Some(ns::GML), "pos", _) if in_location => Node::Pos,
        (Some(ns::GML), "posList", _) if in_location => Node::PosList,
        _ => Node::Other,
    }
}

/// Whether an `srsName` is WGS 84 latitude-longitude(-altitude), as RFC 5491 §4 requires:
/// `urn:ogc:def:crs:EPSG::4326` or `::4979` (a version between the colons is allowed).
fn srs_usable(srs: &str) -> bool {
    const PREFIX: &str = "urn:ogc:def:crs:epsg:";
    let s = srs.trim();
    match s.get(..PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(PREFIX) => {
            matches!(s[PREFIX.len()..].rsplit_once(':'), Some((_, "4326" | "4979")))
        }
        _ => false,
    }
}

fn collect(stack: &[Frame], value: &mut String, text: &str) {
    if stack.last().is_some_and(|f| f.node.has_value()) {
        let room = MAX_VALUE_BYTES.saturating_sub(value.len());
        let mut end = text.len().min(room);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        value.push_str(&text[..end]);
    }
}

/// An element closed: keep what it said. `stack` is what is still open around it.
fn finish(
    node: Node,
    value: &str,
    stack: &[Frame],
    info: &mut PidfInfo,
    civic: &mut Option<Civic>,
) {
    match node {
        Node::CivicField(name) => {
            if let Some(c) = civic.as_mut()
                && c.get(name).is_none()
            {
                c.set(name, value);
            }
        }
        Node::Civic => {
            if let Some(c) = civic.take()
                && info.civic.is_none()
            {
                info.civic = Some(c);
            }
        }
        Node::Method => {
            if info.method.is_none() {
                let m = collapse_ws(value);
                info.method = (!m.is_empty()).then_some(m);
            }
        }
        Node::Pos | Node::PosList => {
            let srs_ok = stack.iter().rev().find_map(|f| f.srs).unwrap_or(true);
            if info.point.is_none() && srs_ok {
                let mut numbers = value.split_whitespace().map(str::parse::<f64>);
                if let (Some(Ok(lat)), Some(Ok(lon))) = (numbers.next(), numbers.next()) {
                    info.point = GeoPoint::new(lat, lon);
                }
            }
        }
        Node::Presence | Node::Geopriv | Node::LocationInfo | Node::Other => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Country of a geodetic point

/// The country of a point, for the countries whose dialstrings lifeline ships (US, PR).
///
/// Accuracy: each area is a hand-drawn polygon or box kept inside the land borders, with a
/// margin of a few kilometres (about 5 to 30 km) from the Canadian and Mexican borders and
/// from foreign islands. Points in that margin (downtown Detroit, Buffalo's waterfront,
/// Brownsville, Calexico, Skagway...) and places not drawn (the US Virgin Islands, Guam, the
/// Northwest Angle, Isle Royale, Midway, the far west of the Aleutians' neighbours) give
/// `None`, which is safe: with no country every configured country's dialstrings apply
/// (DESIGN.md). Puerto Rico (with Vieques, Culebra, Mona and Desecheo) is its own box, far
/// from every US box, so a point there is `PR`, never `US`. Sea around the coasts is included
/// generously (a position from a ship or a coarse fix still maps). The maths is planar on
/// degrees, which is exact enough at these margins.
pub fn country_at(point: GeoPoint) -> Option<CountryCode> {
    let GeoPoint { lat, lon } = point;
    let in_box = |b: &(f64, f64, f64, f64)| lat >= b.0 && lat <= b.1 && lon >= b.2 && lon <= b.3;
    if PUERTO_RICO.iter().any(in_box) {
        return "PR".parse().ok();
    }
    let us = US_BOXES.iter().any(in_box)
        || in_polygon(CONTIGUOUS_US, lat, lon)
        || in_polygon(ALASKA_PANHANDLE, lat, lon);
    if us { "US".parse().ok() } else { None }
}

/// Puerto Rico with Vieques, Culebra, Mona and Desecheo: `(lat min, lat max, lon min, lon
/// max)`. The Dominican Republic starts at 68.3°W, the US Virgin Islands at 65.1°W.
const PUERTO_RICO: &[(f64, f64, f64, f64)] = &[(17.80, 18.60, -68.00, -65.20)];

/// US areas drawn as boxes: `(lat min, lat max, lon min, lon max)`.
const US_BOXES: &[(f64, f64, f64, f64)] = &[
    // Hawaii, main islands.
    (18.50, 22.60, -160.60, -154.50),
    // Northwestern Hawaiian Islands (Midway, which is not Hawaii, left out).
    (22.60, 28.50, -176.00, -160.00),
    // Alaska west of 141°W (the Canadian border) and south of 63.9°N: the mainland's south,
    // the Aleutians east of 180°, St Lawrence Island. Chukotka's west-longitude part lies
    // north of 64.2°N.
    (51.00, 63.90, -180.00, -141.10),
    // Alaska north of 63.9°N, east of the Bering Strait line (Big Diomede is Russian).
    (63.90, 71.60, -168.95, -141.10),
    // The Aleutians west of 180° (Attu to Amchitka).
    (51.00, 53.50, 172.00, 180.00),
];

/// The contiguous US, `(lat, lon)` vertices clockwise from the Pacific off Washington, a few
/// kilometres inside the land borders (Vancouver Island, the Great Lakes islands that are
/// Canadian, Windsor, Fort Erie, the Rio Grande, Tijuana, the Coronado Islands, the Bahamas
/// and Cuba are outside).
const CONTIGUOUS_US: &[(f64, f64)] = &[
    // Pacific, Strait of Juan de Fuca, Haro Strait, Blaine.
    (48.30, -125.50),
    (48.15, -123.70),
    (48.20, -123.15),
    (48.65, -123.05),
    (48.95, -122.75),
    // 49th parallel, Lake of the Woods, Rainy River, Boundary Waters.
    (48.95, -95.20),
    (48.60, -94.65),
    (48.50, -93.40),
    (47.95, -91.50),
    (47.85, -90.00),
    (47.80, -89.55),
    // Lake Superior (Caribou Island is Canadian), St Marys River, St Joseph Island.
    (47.60, -88.50),
    (47.20, -86.00),
    (46.75, -84.90),
    (46.40, -84.55),
    (46.10, -84.25),
    (45.80, -83.60),
    // Lake Huron, St Clair River, Walpole Island, Lake St Clair, Detroit River.
    (44.00, -82.60),
    (43.00, -82.50),
    (42.55, -82.75),
    (42.37, -82.95),
    (42.345, -83.05),
    (42.30, -83.15),
    (42.05, -83.22),
    // Lake Erie (Pelee and Middle Island are Canadian, Long Point too), Niagara River.
    (41.55, -82.90),
    (41.70, -82.00),
    (42.20, -80.00),
    (42.60, -79.20),
    (42.82, -78.85),
    (42.95, -78.88),
    (43.10, -78.98),
    (43.25, -79.00),
    // Lake Ontario, Wolfe Island, St Lawrence River, 45th parallel.
    (43.50, -77.50),
    (43.55, -77.00),
    (43.80, -76.45),
    (44.00, -76.30),
    (44.20, -75.95),
    (44.60, -75.50),
    (44.90, -74.90),
    (44.95, -74.75),
    (44.95, -71.55),
    // New Hampshire and Maine against Quebec, the St Francis and St John rivers, New
    // Brunswick, the St Croix River, Passamaquoddy Bay (Campobello and Grand Manan are
    // Canadian).
    (45.20, -71.05),
    (45.25, -70.90),
    (45.50, -70.35),
    (46.30, -69.90),
    (47.25, -69.25),
    (47.10, -68.90),
    (47.18, -68.60),
    (47.28, -68.33),
    (47.10, -67.95),
    (47.00, -67.85),
    (45.95, -67.85),
    (45.60, -67.85),
    (45.50, -67.60),
    (45.10, -67.50),
    (45.05, -67.25),
    (44.80, -67.10),
    // Atlantic (Bermuda stays east), Florida Straits (the Bahamas and Cuba stay outside).
    (44.40, -67.20),
    (43.00, -68.50),
    (41.80, -69.40),
    (40.80, -69.60),
    (40.30, -72.00),
    (38.50, -74.50),
    (37.00, -75.50),
    (35.10, -75.20),
    (33.50, -77.50),
    (32.00, -80.00),
    (28.40, -80.30),
    (26.80, -79.85),
    (25.50, -80.00),
    (24.90, -80.35),
    (24.40, -81.00),
    (24.40, -82.20),
    (24.50, -83.10),
    // Gulf of Mexico to the mouth of the Rio Grande.
    (25.50, -84.50),
    (27.50, -90.00),
    (26.50, -95.50),
    (26.10, -96.90),
    // The Rio Grande, New Mexico and Arizona lines, the Colorado River, California line.
    (26.15, -97.40),
    (26.25, -98.30),
    (26.50, -99.05),
    (27.65, -99.50),
    (28.75, -100.40),
    (29.55, -100.95),
    (29.95, -101.55),
    (29.95, -102.30),
    (29.35, -102.90),
    (29.15, -103.15),
    (29.25, -103.55),
    (29.45, -103.90),
    (29.70, -104.35),
    (30.20, -104.60),
    (31.40, -105.80),
    (31.70, -106.20),
    (31.87, -106.45),
    (31.87, -108.13),
    (31.40, -108.13),
    (31.40, -111.00),
    (32.55, -114.70),
    (32.78, -114.80),
    (32.60, -117.05),
    // Pacific (the Coronado Islands stay south).
    (32.62, -117.30),
    (32.30, -119.50),
    (34.00, -121.50),
    (40.00, -125.50),
];

/// Southeast Alaska between 141°W and Dixon Entrance, kept inside the border with Yukon and
/// British Columbia (Whitehorse, Atlin, Stewart, Prince Rupert and Haida Gwaii are outside).
const ALASKA_PANHANDLE: &[(f64, f64)] = &[
    (60.05, -141.10),
    (60.05, -139.50),
    (59.60, -138.60),
    (59.10, -137.90),
    (58.75, -137.40),
    (59.05, -136.60),
    (59.30, -135.60),
    (59.45, -135.30),
    (58.40, -134.10),
    (56.90, -132.50),
    (55.90, -130.30),
    (54.85, -130.90),
    (54.75, -132.70),
    (54.75, -133.50),
    (55.50, -136.00),
    (58.00, -139.00),
    (59.50, -141.10),
];

/// Even-odd ray casting on `(lat, lon)` vertices.
fn in_polygon(poly: &[(f64, f64)], lat: f64, lon: f64) -> bool {
    let mut inside = false;
    let mut j = poly.len().wrapping_sub(1);
    for (i, &(yi, xi)) in poly.iter().enumerate() {
        let Some(&(yj, xj)) = poly.get(j) else { return false };
        if (yi > lat) != (yj > lat) && lon < (xj - xi) * (lat - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

// ---------------------------------------------------------------------------------------------
// The provisioned address as a civic address

/// Turns the agent's provisioned address into RFC 5139 elements.
///
/// Tuned for one-line US and Puerto Rico addresses: `[unit lines,] number street, [unit
/// lines,] city, ST 12345[-6789][, USA]`. For example `Suite 200, 1 S Main St, Springfield,
/// IL 62701` gives `UNIT` `Suite 200`, `HNO` `1`, `PRD` `S`, `RD` `Main`, `STS` `St`, `A3`
/// `Springfield`, `A1` `IL`, `PC` `62701`. Comma-separated pieces are read from the end:
///
/// - a trailing country name (`USA`, `United States`, `Puerto Rico` for PR, the code itself)
///   is dropped: the `country` element says it;
/// - a ZIP code (`PC`) and a state or territory code or name (`A1`, as its USPS code);
/// - the piece before them, unless it starts with a digit, is the city (`A3`);
/// - the first piece that starts with a number is the street: `HNO`, `HNS` (`12A`, `1/2`),
///   `PRD`, `RD`, `STS`, `POD`; a unit keyword inside it starts a unit piece;
/// - pieces starting with a unit keyword: `Suite`/`Ste`/`Unit`/`Apt`/`#` -> `UNIT` (as
///   written), `Floor`/`Fl` (or `3rd Floor`) -> `FLR`, `Room`/`Rm` -> `ROOM`, `Building`/`Bldg`
///   -> `BLD`, `PO Box` -> `POBOX`.
///
/// Nothing is lost: every other piece (an urbanización, a second street line, a repeated
/// unit kind) goes into `LOC`, joined with `; `. Only the keywords `Floor`, `Room`,
/// `Building` (and their abbreviations) and the dropped country name disappear, since the
/// element name says them. For other countries the whole address is one `LOC`.
pub fn civic_from_address(country: &CountryCode, address: Option<&str>) -> Civic {
    let mut civic = Civic::default();
    civic.set("country", country.as_str());
    let Some(address) = address.map(str::trim).filter(|a| !a.is_empty()) else {
        return civic;
    };
    if !matches!(country.as_str(), "US" | "PR") {
        civic.set("LOC", address);
        return civic;
    }
    let mut pieces: Vec<&str> =
        address.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if pieces.last().is_some_and(|p| names_country(p, country.as_str())) {
        pieces.pop();
    }

    // From the end: ZIP code, state, and what is left of that piece is the city.
    let (mut pc, mut a1, mut city) = (None::<&str>, None::<String>, None::<&str>);
    // A piece that starts with a digit is a street (`100 Main St NE` does not end in
    // Nebraska).
    while let Some(last) = pieces.pop() {
        let mut rest = last;
        let mut took = false;
        if pc.is_none()
            && let Some((before, token)) = split_last_token(rest)
            && is_zip(token)
        {
            pc = Some(token);
            rest = before;
            took = true;
        }
        if a1.is_none()
            && let Some((before, code)) = strip_state(rest)
            && !starts_with_digit(before)
        {
            a1 = Some(code);
            rest = before;
            took = true;
        }
        if !took {
            pieces.push(last);
            break;
        }
        if starts_with_digit(rest) {
            pieces.push(rest);
            break;
        }
        if !rest.is_empty() {
            city = Some(rest);
            break;
        }
    }
    if city.is_none()
        && pieces.len() >= 2
        && pieces.last().is_some_and(|p| !starts_with_digit(p) && unit_kind(p).is_none())
    {
        city = pieces.pop();
    }

    let mut loc: Vec<String> = Vec::new();
    let mut street_done = false;
    let mut units: Vec<&str> = Vec::new();
    for piece in pieces {
        if !street_done && starts_with_digit(piece) {
            street_done = true;
            let unit_from = street_unit_split(piece);
            let (street, unit) = match unit_from {
                Some(at) => (piece[..at].trim_end(), Some(piece[at..].trim())),
                None => (piece, None),
            };
            street_elements(&mut civic, street);
            units.extend(unit);
        } else if unit_kind(piece).is_some() {
            units.push(piece);
        } else {
            loc.push(piece.to_owned());
        }
    }
    for unit in units {
        let Some((element, value)) = unit_kind(unit) else {
            loc.push(unit.to_owned());
            continue;
        };
        if civic.get(element).is_some() || value.is_empty() {
            loc.push(unit.to_owned());
        } else {
            civic.set(element, value);
        }
    }
    if let Some(a1) = a1 {
        civic.set("A1", &a1);
    }
    if let Some(city) = city {
        civic.set("A3", city);
    }
    if let Some(pc) = pc {
        civic.set("PC", pc);
    }
    if !loc.is_empty() {
        civic.set("LOC", &loc.join("; "));
    }
    civic
}

fn names_country(piece: &str, country: &str) -> bool {
    let p = piece.trim_end_matches('.').to_ascii_lowercase();
    let p = p.as_str();
    p.eq_ignore_ascii_case(country)
        || match country {
            "US" => {
                matches!(p, "usa" | "u.s.a" | "u.s" | "united states" | "united states of america")
            }
            "PR" => p == "puerto rico",
            _ => false,
        }
}

fn starts_with_digit(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// `(text before, last whitespace-separated token)`.
fn split_last_token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_end();
    if s.is_empty() {
        return None;
    }
    match s.rfind(char::is_whitespace) {
        Some(i) => Some((s[..i].trim_end(), &s[i + 1..])),
        None => Some(("", s)),
    }
}

/// A US ZIP code: `12345` or `12345-6789`.
fn is_zip(t: &str) -> bool {
    let (five, four) = t.split_once('-').unwrap_or((t, ""));
    five.len() == 5
        && five.bytes().all(|b| b.is_ascii_digit())
        && (four.is_empty() || (four.len() == 4 && four.bytes().all(|b| b.is_ascii_digit())))
}

/// USPS state and territory codes with their names.
#[rustfmt::skip]
const STATES: [(&str, &str); 56] = [
    ("AL", "alabama"), ("AK", "alaska"), ("AZ", "arizona"), ("AR", "arkansas"),
    ("CA", "california"), ("CO", "colorado"), ("CT", "connecticut"), ("DE", "delaware"),
    ("DC", "district of columbia"), ("FL", "florida"), ("GA", "georgia"), ("HI", "hawaii"),
    ("ID", "idaho"), ("IL", "illinois"), ("IN", "indiana"), ("IA", "iowa"), ("KS", "kansas"),
    ("KY", "kentucky"), ("LA", "louisiana"), ("ME", "maine"), ("MD", "maryland"),
    ("MA", "massachusetts"), ("MI", "michigan"), ("MN", "minnesota"), ("MS", "mississippi"),
    ("MO", "missouri"), ("MT", "montana"), ("NE", "nebraska"), ("NV", "nevada"),
    ("NH", "new hampshire"), ("NJ", "new jersey"), ("NM", "new mexico"), ("NY", "new york"),
    ("NC", "north carolina"), ("ND", "north dakota"), ("OH", "ohio"), ("OK", "oklahoma"),
    ("OR", "oregon"), ("PA", "pennsylvania"), ("RI", "rhode island"), ("SC", "south carolina"),
    ("SD", "south dakota"), ("TN", "tennessee"), ("TX", "texas"), ("UT", "utah"),
    ("VT", "vermont"), ("VA", "virginia"), ("WA", "washington"), ("WV", "west virginia"),
    ("WI", "wisconsin"), ("WY", "wyoming"), ("PR", "puerto rico"), ("VI", "virgin islands"),
    ("GU", "guam"), ("AS", "american samoa"), ("MP", "northern mariana islands"),
];

/// A trailing state code (`IL`, as written in capitals) or name (`Illinois`, any case):
/// `(text before, USPS code)`.
fn strip_state(s: &str) -> Option<(&str, String)> {
    let s = s.trim_end();
    if let Some((before, token)) = split_last_token(s) {
        let code = token.trim_end_matches('.');
        if code.len() == 2 && STATES.iter().any(|(c, _)| *c == code) {
            return Some((before, code.to_owned()));
        }
    }
    let lower = s.to_ascii_lowercase();
    STATES.iter().find_map(|(code, name)| {
        let at = lower.strip_suffix(name).map(str::len)?;
        let before = &s[..at];
        (before.is_empty() || before.ends_with(char::is_whitespace))
            .then(|| (before.trim_end(), (*code).to_owned()))
    })
}

/// The civic element a unit piece fills and its value.
fn unit_kind(piece: &str) -> Option<(&'static str, &str)> {
    let piece = piece.trim();
    if let Some(rest) = piece.strip_prefix('#') {
        return Some(("UNIT", if rest.trim().is_empty() { "" } else { piece }));
    }
    let (first, rest) = match piece.split_once(char::is_whitespace) {
        Some((f, r)) => (f, r.trim()),
        None => (piece, ""),
    };
    let word = first.trim_end_matches('.').to_ascii_lowercase();
    let element = match word.as_str() {
        "suite" | "ste" | "unit" | "apt" | "apartment" => return Some(("UNIT", piece)),
        "floor" | "fl" | "flr" => "FLR",
        "room" | "rm" => "ROOM",
        "building" | "bldg" | "bld" => "BLD",
        "po" | "p.o" if rest.to_ascii_lowercase().starts_with("box") => {
            return Some(("POBOX", piece));
        }
        _ => {
            // `3rd Floor`, `2nd Fl`.
            let last = rest.trim_end_matches('.').to_ascii_lowercase();
            if starts_with_digit(first) && matches!(last.as_str(), "floor" | "fl" | "flr") {
                return Some(("FLR", first));
            }
            return None;
        }
    };
    Some((element, rest))
}

/// Where a unit keyword starts inside a street piece (`1 Main St Suite 200`): after the
/// number and at least one word of street name.
fn street_unit_split(piece: &str) -> Option<usize> {
    words_at(piece)
        .enumerate()
        .find(|(n, (_, w))| *n >= 2 && is_unit_keyword(w))
        .map(|(_, (at, _))| at)
}

/// The whitespace-separated words of `s` with their byte offsets.
fn words_at(s: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut from = 0;
    std::iter::from_fn(move || {
        let rest = s.get(from..)?;
        let start = from + (rest.len() - rest.trim_start().len());
        let word = s.get(start..)?.split(char::is_whitespace).next().filter(|w| !w.is_empty())?;
        from = start + word.len();
        Some((start, word))
    })
}

fn is_unit_keyword(word: &str) -> bool {
    let w = word.trim_end_matches('.').to_ascii_lowercase();
    (w.starts_with('#') && w.len() > 1)
        || matches!(
            w.as_str(),
            "suite"
                | "ste"
                | "unit"
                | "apt"
                | "apartment"
                | "floor"
                | "fl"
                | "flr"
                | "room"
                | "rm"
                | "building"
                | "bldg"
        )
}

#[rustfmt::skip]
const DIRECTIONS: [&str; 16] = [
    "n", "s", "e", "w", "ne", "nw", "se", "sw", "north", "south", "east", "west", "northeast",
    "northwest", "southeast", "southwest",
];

/// USPS street suffixes (Publication 28, the common ones) and their abbreviations.
#[rustfmt::skip]
const SUFFIXES: [&str; 66] = [
    "st", "street", "ave", "av", "avenue", "rd", "road", "blvd", "boulevard", "dr", "drive", "ln",
    "lane", "ct", "court", "pl", "place", "way", "pkwy", "parkway", "hwy", "highway", "ter",
    "terrace", "cir", "circle", "sq", "square", "trl", "trail", "loop", "row", "aly", "alley",
    "expy", "expressway", "fwy", "freeway", "plz", "plaza", "pike", "run", "walk", "xing",
    "crossing", "cv", "cove", "bnd", "bend", "pt", "point", "hl", "hill", "hts", "heights", "grv",
    "grove", "park", "pass", "path", "trce", "trace", "tpke", "turnpike", "vw", "view",
];

fn is_direction(t: &str) -> bool {
    let t = t.trim_end_matches('.').to_ascii_lowercase();
    DIRECTIONS.contains(&t.as_str())
}

fn is_suffix(t: &str) -> bool {
    let t = t.trim_end_matches('.').to_ascii_lowercase();
    SUFFIXES.contains(&t.as_str())
}

/// `1200 S Example Ave NW` -> `HNO`, `PRD`, `RD`, `STS`, `POD`.
fn street_elements(civic: &mut Civic, street: &str) {
    let mut tokens: Vec<&str> = street.split_whitespace().collect();
    if tokens.is_empty() {
        return;
    }
    let number = tokens.remove(0);
    let digits = number.bytes().take_while(u8::is_ascii_digit).count();
    civic.set("HNO", &number[..digits]);
    let mut hns = number[digits..].to_owned();
    if tokens.first().is_some_and(|t| is_fraction(t)) {
        if !hns.is_empty() {
            hns.push(' ');
        }
        hns.push_str(tokens.remove(0));
    }
    civic.set("HNS", &hns);

    // A direction is a pre- or post-directional only when a street name remains beside it
    // (`100 North St` is North Street).
    if tokens.len() >= 3 && is_direction(tokens[0]) {
        civic.set("PRD", tokens.remove(0));
    }
    if tokens.len() >= 3
        && tokens.last().is_some_and(|t| is_direction(t))
        && let Some(pod) = tokens.pop()
    {
        civic.set("POD", pod);
    }
    if tokens.len() >= 2
        && tokens.last().is_some_and(|t| is_suffix(t))
        && let Some(sts) = tokens.pop()
    {
        civic.set("STS", sts);
    }
    civic.set("RD", &tokens.join(" "));
}

fn is_fraction(t: &str) -> bool {
    t.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

// ---------------------------------------------------------------------------------------------
// Writing a PIDF-LO

/// The PIDF-LO for an agent's provisioned location: [`civic_from_address`] written by
/// [`civic_pidf`].
pub fn build_pidf(location: &Location, entity: &str, now: UnixTime) -> Vec<u8> {
    civic_pidf(&civic_from_address(&location.country, location.address.as_deref()), entity, now)
}

/// A PIDF-LO document (RFC 4119, profiled by RFC 5491) with one civic location:
///
/// - `presence` `entity` = `entity` (a `pres:` URI or the caller's number as a SIP or `tel:`
///   URI, RFC 3863), escaped;
/// - one `tuple` whose `status` holds the one `geopriv` (RFC 4119 §2.2; RFC 5491 §3: one
///   location object per `location-info`);
/// - `location-info` with the `civicAddress` (RFC 5139 §4, elements in schema order,
///   `xml:lang="en"`);
/// - `usage-rules` with `retransmission-allowed` `true` (RFC 4119 §2.2.2): the PSAP must be
///   able to hand the location to responders;
/// - `method` `Manual` (RFC 4119 §2.2.3; the address was entered by an administrator);
/// - the tuple's `timestamp` (RFC 3863) from `now`, RFC 3339 UTC.
pub fn civic_pidf(civic: &Civic, entity: &str, now: UnixTime) -> Vec<u8> {
    let mut x = String::with_capacity(1024);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<presence xmlns=\"{}\"\n    xmlns:gp=\"{}\"\n    xmlns:gbp=\"{}\"\n    xmlns:ca=\"{}\"\n    entity=\"{}\">\n",
        ns::PIDF,
        ns::GEOPRIV,
        ns::BASIC_POLICY,
        ns::CIVIC,
        escape(entity)
    ));
    x.push_str("  <tuple id=\"location\">\n    <status>\n      <gp:geopriv>\n");
    x.push_str("        <gp:location-info>\n          <ca:civicAddress xml:lang=\"en\">\n");
    for (name, value) in civic.fields() {
        x.push_str(&format!("            <ca:{name}>{}</ca:{name}>\n", escape(value)));
    }
    x.push_str("          </ca:civicAddress>\n        </gp:location-info>\n");
    x.push_str("        <gp:usage-rules>\n");
    x.push_str("          <gbp:retransmission-allowed>true</gbp:retransmission-allowed>\n");
    x.push_str("        </gp:usage-rules>\n");
    x.push_str("        <gp:method>Manual</gp:method>\n");
    x.push_str("      </gp:geopriv>\n    </status>\n");
    x.push_str(&format!("    <timestamp>{}</timestamp>\n", rfc3339(now)));
    x.push_str("  </tuple>\n</presence>\n");
    x.into_bytes()
}

/// XML text or attribute escaping; characters XML 1.0 does not allow (C0 controls other
/// than tab, line feed and carriage return; U+FFFE, U+FFFF) are dropped.
fn escape(s: &str) -> String {
    let allowed: String = s
        .chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}')
        })
        .collect();
    quick_xml::escape::escape(allowed.as_str()).into_owned()
}

/// `now` as `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339 §5.6), clamped to years 1970 to 9999.
fn rfc3339(now: UnixTime) -> String {
    let t = now.clamp(0, 253_402_300_799);
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// ---------------------------------------------------------------------------------------------
// The outgoing body

/// How many boundaries [`attach`] tries before giving up.
const BOUNDARY_CANDIDATES: u32 = 4096;

/// An INVITE body with a PIDF-LO attached, and the headers that go with it.
#[derive(Clone, PartialEq, Eq)]
pub struct Attached {
    /// The message's new Content-Type: `multipart/mixed;boundary=...`.
    pub content_type: String,
    pub body: Vec<u8>,
    /// The `Geolocation` header value: `<cid:...>` naming the PIDF-LO part (RFC 6442 §4.1).
    pub geolocation: String,
    /// The `Geolocation-Routing` header value ([`GEOLOCATION_ROUTING`]).
    pub geolocation_routing: &'static str,
}

impl fmt::Debug for Attached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attached")
            .field("content_type", &self.content_type)
            .field("body_bytes", &self.body.len())
            .field("geolocation", &self.geolocation)
            .finish()
    }
}

/// Builds the body of an emergency INVITE toward a trunk: the original body (SDP) and the
/// PIDF-LO `pidf` as a `multipart/mixed` body (RFC 5621, RFC 6442 §4.1).
///
/// - `body`/`content_type`: the INVITE's body as it will leave (after any SDP rewriting).
///   An empty body gives a multipart with the PIDF-LO alone. A body without Content-Type is
///   taken as `application/sdp` (the only body an INVITE carries without a multipart). A
///   multipart body keeps its parts, minus any `application/pidf+xml` part (the location
///   sent is `pidf`); one that cannot be split is nested whole as one part, with its type.
/// - The SDP part has no Content-Disposition: for `application/sdp` the default is
///   `session` with `handling=required` (RFC 3261 §20.11, RFC 5621).
/// - The PIDF-LO part carries `pidf` byte for byte with `Content-Type:
///   application/pidf+xml`, `Content-ID: <loc-HASH@cid_host>` (RFC 2392) and
///   `Content-Disposition: render;handling=optional`: a next hop that does not understand a
///   location must not refuse the emergency call for it (RFC 3261 §20.11, RFC 5621).
/// - The Content-ID and the boundary are derived from the content (no randomness, no
///   clock); the boundary never occurs in any part. Characters of `cid_host` outside
///   letters, digits, `.` and `-` are dropped (`lifeline.invalid` if none remain).
///
/// The only error is `BadBoundary`, when every candidate boundary occurs in the parts: a body
/// crafted to hold them all would be larger than any message the edge accepts.
pub fn attach(
    body: &[u8],
    content_type: Option<&str>,
    pidf: &[u8],
    cid_host: &str,
) -> Result<Attached, MultipartError> {
    let mut parts: Vec<NewPart> = Vec::new();
    let ct = content_type.map(str::trim).filter(|c| !c.is_empty());
    if !body.is_empty() {
        let media = ct.and_then(|c| MediaType::parse(c).ok());
        let split = match &media {
            Some(m) if m.ty.eq_ignore_ascii_case("multipart") => {
                m.boundary().and_then(|b| multipart::parse(body, b).ok())
            }
            _ => None,
        };
        match split {
            Some(existing) => parts.extend(
                existing
                    .into_iter()
                    .filter(|p| !p.content_type().is_some_and(|t| is_pidf(&t)))
                    .map(|p| NewPart {
                        headers: p
                            .headers
                            .iter()
                            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                            .collect(),
                        body: p.body.to_vec(),
                    }),
            ),
            None => parts.push(NewPart::new(ct.unwrap_or("application/sdp"), None, body)),
        }
    }

    let digest = {
        let mut h = std::hash::DefaultHasher::new();
        pidf.hash(&mut h);
        body.hash(&mut h);
        h.finish()
    };
    let host: String =
        cid_host.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')).collect();
    let host = if host.trim_matches('.').is_empty() { "lifeline.invalid" } else { &host };
    let cid = format!("loc-{digest:016x}@{host}");
    let mut pidf_part = NewPart::new("application/pidf+xml", Some(&cid), pidf);
    pidf_part
        .headers
        .push(("Content-Disposition".to_owned(), "render;handling=optional".to_owned()));
    parts.push(pidf_part);

    // Candidates until one occurs in no part. A message cannot hold all of them (4096 x 26
    // bytes is more than `[limits] max_message_bytes` allows); if it did, the empty boundary
    // is refused by `multipart::build`.
    let boundary = (0..BOUNDARY_CANDIDATES)
        .map(|n| format!("lifeline-{:016x}", digest.rotate_left(n.wrapping_mul(7)) ^ u64::from(n)))
        .find(|b| !parts.iter().any(|p| memchr::memmem::find(&p.body, b.as_bytes()).is_some()))
        .unwrap_or_default();
    let body = multipart::build(&boundary, &parts)?;
    Ok(Attached {
        content_type: format!("multipart/mixed;boundary={boundary}"),
        body,
        geolocation: format!("<cid:{cid}>"),
        geolocation_routing: GEOLOCATION_ROUTING,
    })
}

// ---------------------------------------------------------------------------------------------
// The caller's country, the document to send

/// The caller's country for dialstring classification (issue 6 §1): the country of the
/// location the softphone sent when it says one surely ([`SoftphoneLocation::country`]),
/// else the agent's provisioned country. `None` when neither is known: then every
/// configured country's dialstrings apply (DESIGN.md).
pub fn country_of(
    softphone: Option<&SoftphoneLocation>,
    provisioned: Option<&Location>,
) -> Option<CountryCode> {
    softphone
        .and_then(SoftphoneLocation::country)
        .or_else(|| provisioned.map(|l| l.country.clone()))
}

/// The PIDF-LO to send toward the trunk: the softphone's document byte for byte when it sent
/// one (read or not), else one built from the provisioned address ([`build_pidf`]), else
/// none (a location by reference alone is passed on in the `Geolocation` header only).
pub fn outgoing_pidf<'a>(
    softphone: Option<&'a SoftphoneLocation>,
    provisioned: Option<&Location>,
    entity: &str,
    now: UnixTime,
) -> Option<Cow<'a, [u8]>> {
    if let Some(doc) = softphone.and_then(|s| s.pidf.as_deref()) {
        return Some(Cow::Borrowed(doc));
    }
    provisioned.map(|l| Cow::Owned(build_pidf(l, entity, now)))
}

/// The text of a character reference (`&#233;`) or one of XML's five predefined entities
/// (`&amp;`); `None` for anything else: PIDF documents declare no entities of their own, and
/// an unknown one is refused rather than expanded (no billion laughs).
pub(crate) fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Option<String> {
    match r.resolve_char_ref() {
        Ok(Some(c)) => Some(c.to_string()),
        Ok(None) => quick_xml::escape::resolve_predefined_entity(r).map(str::to_owned),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests;
