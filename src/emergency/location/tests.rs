// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use proptest::prelude::*;
use sip::{Framing, HeaderName, Message, Method, Request};

use super::*;

const CARRIER: &[u8] = include_bytes!("../../../tests/fixtures/pidf/carrier.xml");
const CIVIC: &[u8] = include_bytes!("../../../tests/fixtures/pidf/civic.xml");
const JSSIP: &[u8] = include_bytes!("../../../tests/fixtures/pidf/jssip-geodetic.xml");
const CARRIER_INVITE: &[u8] =
    include_bytes!("../../../crates/sip/tests/torture/clients/carrier-invite-pidf.sip");

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn cc(s: &str) -> CountryCode {
    s.parse().unwrap()
}

fn country(info: &PidfInfo) -> Option<String> {
    info.country().map(|c| c.as_str().to_owned())
}

fn location(country: &str, address: Option<&str>) -> Location {
    Location { country: cc(country), address: address.map(str::to_owned) }
}

/// An INVITE with these extra headers and this body.
fn invite(headers: &[(HeaderName, &str)], content_type: Option<&str>, body: &[u8]) -> Request {
    let mut r = Request::new(Method::Invite, "sip:911@edge.example.com").unwrap();
    for (name, value) in headers {
        r.headers_mut().push(*name, Bytes::copy_from_slice(value.as_bytes()));
    }
    r.set_body(content_type, Bytes::copy_from_slice(body));
    r
}

/// A civic PIDF-LO whose civic namespace is bound to `prefix` (`""`: default namespace).
fn civic_doc(prefix: &str, civic_ns: &str, country: &str) -> String {
    let (decl, p) = if prefix.is_empty() {
        (format!("xmlns=\"{civic_ns}\""), String::new())
    } else {
        (format!("xmlns:{prefix}=\"{civic_ns}\""), format!("{prefix}:"))
    };
    format!(
        r#"<?xml version="1.0"?>
<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" entity="pres:a@example.com">
 <p:tuple id="a"><p:status><gp:geopriv><gp:location-info>
  <{p}civicAddress {decl}><{p}country>{country}</{p}country><{p}A1>IL</{p}A1><{p}A3>Springfield</{p}A3></{p}civicAddress>
 </gp:location-info><gp:usage-rules/></gp:geopriv></p:status></p:tuple>
</p:presence>"#
    )
}

/// A geodetic PIDF-LO with one shape.
fn geo_doc(shape: &str) -> String {
    format!(
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"
 xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0" entity="pres:a@example.com">
 <tuple id="a"><status><gp:geopriv><gp:location-info>{shape}</gp:location-info>
 <gp:usage-rules/><gp:method>GPS</gp:method></gp:geopriv></status></tuple></presence>"#
    )
}

fn point(lat: f64, lon: f64) -> String {
    format!(
        r#"<gml:Point srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>{lat} {lon}</gml:pos></gml:Point>"#
    )
}

// --- reading a PIDF-LO -------------------------------------------------------------------------

#[test]
fn carrier_fixture_civic_in_a_device() {
    let info = read_pidf(CARRIER);
    assert_eq!(info.status, ReadStatus::Read);
    assert_eq!(info.entity.as_deref(), Some("pres:+13125550142@cc.example.com"));
    assert_eq!(info.method.as_deref(), Some("Manual"));
    assert_eq!(info.locations, 1);
    assert_eq!(info.point, None);
    let civic = info.civic.as_ref().unwrap();
    let fields: Vec<(&str, &str)> = civic.fields().collect();
    assert_eq!(
        fields,
        [
            ("country", "US"),
            ("A1", "IL"),
            ("A3", "Chicago"),
            ("PRD", "S"),
            ("RD", "Example"),
            ("STS", "Ave"),
            ("HNO", "1200"),
            ("FLR", "4"),
            ("NAM", "Example Contact Center"),
            ("PC", "60605"),
        ]
    );
    assert_eq!(country(&info).as_deref(), Some("US"));
}

#[test]
fn civic_fixture_lower_case_country_whitespace_entities() {
    let info = read_pidf(CIVIC);
    assert_eq!(info.status, ReadStatus::Read);
    let civic = info.civic.as_ref().unwrap();
    assert_eq!(civic.get("country"), Some("pr"), "kept as written");
    assert_eq!(civic.get("A3"), Some("San Juan"), "xs:token whitespace collapsed");
    assert_eq!(civic.get("NAM"), Some("Farmacia Luz & Sol"));
    assert_eq!(country(&info).as_deref(), Some("PR"), "case-normalised");
}

#[test]
fn jssip_fixture_circle_centre() {
    let info = read_pidf(JSSIP);
    assert_eq!(info.status, ReadStatus::Read);
    assert_eq!(info.civic, None);
    assert_eq!(info.point, GeoPoint::new(41.878113, -87.629799));
    assert_eq!(info.method.as_deref(), Some("GPS"));
    assert_eq!(info.entity.as_deref(), Some("pres:alice@example.com"));
    assert_eq!(country(&info).as_deref(), Some("US"));
}

#[test]
fn namespaces_by_uri_not_prefix() {
    for prefix in ["ca", "cl", "civ", "x", ""] {
        let info = read_pidf(civic_doc(prefix, ns::CIVIC, "US").as_bytes());
        assert_eq!(info.status, ReadStatus::Read, "{prefix}");
        assert_eq!(info.civic.as_ref().and_then(|c| c.get("A3")), Some("Springfield"), "{prefix}");
        assert_eq!(country(&info).as_deref(), Some("US"), "{prefix}");
    }
    // The RFC 4119 civic namespace has the same element names.
    let info = read_pidf(civic_doc("cl", ns::CIVIC_LEGACY, "US").as_bytes());
    assert_eq!(country(&info).as_deref(), Some("US"));
}

#[test]
fn wrong_namespaces_are_not_read() {
    let info = read_pidf(civic_doc("ca", "urn:example:not-civic", "US").as_bytes());
    assert_eq!(info.status, ReadStatus::Read);
    assert_eq!(info.civic, None);
    assert_eq!(info.locations, 1, "still a location object, just not one we read");
    assert_eq!(country(&info), None);

    // A `civicAddress` prefix bound to the civic namespace but the elements in another.
    let doc =
        civic_doc("ca", ns::CIVIC, "US").replace("<ca:country>", "<ca:country xmlns:ca=\"urn:x\">");
    assert_eq!(country(&read_pidf(doc.as_bytes())), None);

    // The root is not PIDF presence.
    let doc = civic_doc("ca", ns::CIVIC, "US")
        .replace("urn:ietf:params:xml:ns:pidf\"", "urn:example:pidf\"");
    assert_eq!(read_pidf(doc.as_bytes()).status, ReadStatus::NotPidf);
    assert_eq!(read_pidf(b"<html><body>hi</body></html>").status, ReadStatus::NotPidf);

    // GML 3.2 is another namespace; RFC 5491 uses GML 3.1.1.
    let doc = geo_doc(&point(41.9, -87.6))
        .replace("http://www.opengis.net/gml\"", "http://www.opengis.net/gml/3.2\"");
    assert_eq!(read_pidf(doc.as_bytes()).point, None);
}

#[test]
fn puerto_rico_written_as_us_state_is_pr() {
    let doc = civic_doc("ca", ns::CIVIC, "US").replace(">IL<", ">PR<");
    assert_eq!(country(&read_pidf(doc.as_bytes())).as_deref(), Some("PR"));
    let doc = civic_doc("ca", ns::CIVIC, "US").replace(">IL<", ">pr<");
    assert_eq!(country(&read_pidf(doc.as_bytes())).as_deref(), Some("PR"));
}

#[test]
fn country_must_be_alpha_2() {
    for bad in ["USA", "U", "1A", "", "U S"] {
        let info = read_pidf(civic_doc("ca", ns::CIVIC, bad).as_bytes());
        assert_eq!(country(&info), None, "{bad:?}");
    }
    let info = read_pidf(civic_doc("ca", ns::CIVIC, " us ").as_bytes());
    assert_eq!(country(&info).as_deref(), Some("US"));
}

#[test]
fn two_locations_first_wins_civic_over_point() {
    // Two geopriv elements (two tuples): the first civic address is used.
    let pr = civic_doc("ca", ns::CIVIC, "PR");
    let second = "<p:tuple id=\"b\"><p:status><gp:geopriv><gp:location-info><ca:civicAddress xmlns:ca=\"urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr\"><ca:country>US</ca:country></ca:civicAddress></gp:location-info></gp:geopriv></p:status></p:tuple>\n</p:presence>";
    let doc = pr.replace("</p:presence>", second);
    let info = read_pidf(doc.as_bytes());
    assert_eq!(info.status, ReadStatus::Read);
    assert_eq!(info.locations, 2);
    assert_eq!(country(&info).as_deref(), Some("PR"));

    // A civic address and a point that disagree: the civic address is what the sender states.
    let civic = r#"<ca:civicAddress xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"><ca:country>PR</ca:country></ca:civicAddress>"#;
    let doc = geo_doc(&format!("{}{civic}", point(41.9, -87.6)));
    let info = read_pidf(doc.as_bytes());
    assert_eq!(info.locations, 2);
    assert!(info.point.is_some() && info.civic.is_some());
    assert_eq!(country(&info).as_deref(), Some("PR"));

    // Two points: the first.
    let doc = geo_doc(&format!("{}{}", point(18.4, -66.1), point(41.9, -87.6)));
    assert_eq!(country(&read_pidf(doc.as_bytes())).as_deref(), Some("PR"));
}

#[test]
fn geodetic_shapes() {
    let cases = [
        (point(18.4655, -66.1057), Some("PR")),
        (point(21.3069, -157.8583), Some("US")),
        // 3D point, EPSG::4979.
        (r#"<gml:Point srsName="urn:ogc:def:crs:EPSG::4979"><gml:pos>61.2181 -149.9003 30</gml:pos></gml:Point>"#.to_owned(), Some("US")),
        // No srsName: taken as 4326.
        ("<gml:Point><gml:pos>40.7128 -74.006</gml:pos></gml:Point>".to_owned(), Some("US")),
        // Another reference system: ignored.
        (r#"<gml:Point srsName="urn:ogc:def:crs:EPSG::3857"><gml:pos>40.7 -74.0</gml:pos></gml:Point>"#.to_owned(), None),
        (r#"<gs:Ellipse srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>18.2 -66.5</gml:pos><gs:semiMajorAxis uom="urn:ogc:def:uom:EPSG::9001">100</gs:semiMajorAxis></gs:Ellipse>"#.to_owned(), Some("PR")),
        (r#"<gml:Polygon srsName="urn:ogc:def:crs:EPSG::4326"><gml:exterior><gml:LinearRing><gml:posList>41.1 -87.1 41.2 -87.2 41.3 -87.1 41.1 -87.1</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"#.to_owned(), Some("US")),
        // Out of range, not numbers, one number.
        (point(200.0, -66.0), None),
        ("<gml:Point><gml:pos>north west</gml:pos></gml:Point>".to_owned(), None),
        ("<gml:Point><gml:pos>41.9</gml:pos></gml:Point>".to_owned(), None),
        ("<gml:Point><gml:pos>NaN inf</gml:pos></gml:Point>".to_owned(), None),
        // Santo Domingo, Toronto: known to be neither.
        (point(18.4861, -69.9312), None),
        (point(43.6532, -79.3832), None),
    ];
    for (shape, want) in cases {
        let info = read_pidf(geo_doc(&shape).as_bytes());
        assert_eq!(info.status, ReadStatus::Read, "{shape}");
        assert_eq!(country(&info).as_deref(), want, "{shape}");
    }
}

#[test]
fn character_data_forms() {
    let doc = civic_doc("ca", ns::CIVIC, "<![CDATA[US]]>");
    assert_eq!(country(&read_pidf(doc.as_bytes())).as_deref(), Some("US"));
    let doc = civic_doc("ca", ns::CIVIC, "&#x55;&#83;");
    assert_eq!(country(&read_pidf(doc.as_bytes())).as_deref(), Some("US"));
    let doc = civic_doc("ca", ns::CIVIC, "U<!-- c -->S");
    assert_eq!(country(&read_pidf(doc.as_bytes())).as_deref(), Some("US"));
    // A byte order mark.
    let mut doc = "\u{feff}".as_bytes().to_vec();
    doc.extend_from_slice(CARRIER);
    assert_eq!(country(&read_pidf(&doc)).as_deref(), Some("US"));
}

#[test]
fn garbled_documents_are_not_read() {
    let malformed = [
        civic_doc("ca", ns::CIVIC, "US").replace("</ca:civicAddress>", "</ca:civic>"),
        civic_doc("ca", ns::CIVIC, "&unknown;"),
        civic_doc("ca", ns::CIVIC, "&#0;"),
        civic_doc("ca", ns::CIVIC, "US").replace("entity=\"pres:a@example.com\"", "entity=\"a&b\""),
        civic_doc("ca", ns::CIVIC, "US").replace("<ca:A1>", "<ca:A1 x=\"1\" x=\"2\">"),
        // Billion laughs: entities are never expanded.
        format!(
            "<!DOCTYPE p [<!ENTITY a \"US\"><!ENTITY b \"&a;&a;&a;&a;\">]>{}",
            civic_doc("ca", ns::CIVIC, "&b;").replace("<?xml version=\"1.0\"?>", "")
        ),
    ];
    for doc in &malformed {
        let info = read_pidf(doc.as_bytes());
        assert_eq!(info.status, ReadStatus::Malformed, "{doc}");
        assert_eq!(info.country(), None);
        assert_eq!(info.civic, None);
    }
    assert_eq!(read_pidf(b"\xff\xfe<\x00p\x00").status, ReadStatus::Malformed);
    assert_eq!(read_pidf(b"").status, ReadStatus::NotPidf);
    // Two roots.
    let two = format!(
        "{}{}",
        String::from_utf8_lossy(CARRIER),
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"/>"
    );
    assert_eq!(read_pidf(two.as_bytes()).status, ReadStatus::NotPidf);
}

#[test]
fn truncated_documents_never_give_a_country() {
    for cut in 0..CARRIER.len() - "</presence>".len() {
        let info = read_pidf(&CARRIER[..cut]);
        assert_ne!(info.status, ReadStatus::Read, "cut at {cut}");
        assert_eq!(info.country(), None, "cut at {cut}");
    }
}

#[test]
fn bounded_work() {
    // Too large: not read at all.
    let mut big = CARRIER.to_vec();
    big.resize(MAX_PIDF_BYTES + 1, b' ');
    assert_eq!(read_pidf(&big).status, ReadStatus::TooLarge);
    let mut just = CARRIER.to_vec();
    just.resize(MAX_PIDF_BYTES, b' ');
    assert_eq!(read_pidf(&just).status, ReadStatus::Read);

    // Too deep.
    let deep = format!(
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\">{}{}</presence>",
        "<a>".repeat(MAX_DEPTH + 1),
        "</a>".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(read_pidf(deep.as_bytes()).status, ReadStatus::Malformed);

    // Too many events.
    let many = format!(
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\">{}</presence>",
        "<a/>".repeat(MAX_EVENTS)
    );
    assert!(many.len() <= MAX_PIDF_BYTES);
    assert_eq!(read_pidf(many.as_bytes()).status, ReadStatus::Malformed);

    // A civic value longer than the cap is cut, not grown.
    let long = "x".repeat(10 * MAX_VALUE_BYTES);
    let info = read_pidf(civic_doc("ca", ns::CIVIC, &long).as_bytes());
    assert_eq!(
        info.civic.as_ref().and_then(|c| c.get("country")).map(str::len),
        Some(MAX_VALUE_BYTES)
    );
    assert_eq!(info.country(), None);
}

#[test]
fn debug_output_is_redacted() {
    let info = read_pidf(CARRIER);
    let text = format!("{info:?}");
    assert!(text.contains("\"US\""), "{text}");
    assert!(!text.contains("Chicago") && !text.contains("1200"), "{text}");
    let info = read_pidf(JSSIP);
    let text = format!("{info:?} {:?}", info.point);
    assert!(!text.contains("41.8") && !text.contains("87.6"), "{text}");
}

// --- finding it in an INVITE -------------------------------------------------------------------

#[test]
fn carrier_invite() {
    let Ok(Message::Request(r)) =
        Message::parse(Bytes::from_static(CARRIER_INVITE), Framing::Datagram)
    else {
        panic!("the torture INVITE parses");
    };
    let loc = from_invite(&r).unwrap();
    assert_eq!(loc.geolocation, [Bytes::from_static(b"<cid:loc-7f3a9c21e4@edge.cc.example.com>")]);
    assert_eq!(loc.content_id.as_deref(), Some("loc-7f3a9c21e4@edge.cc.example.com"));
    assert_eq!(loc.pidf.as_deref(), Some(CARRIER), "byte for byte");
    assert!(loc.references.is_empty());
    assert_eq!(loc.country().as_ref().map(CountryCode::as_str), Some("US"));
}

fn multipart_body(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let parts: Vec<NewPart> =
        parts.iter().map(|(ct, id, body)| NewPart::new(ct, *id, *body)).collect();
    ("multipart/mixed;boundary=b1".to_owned(), multipart::build("b1", &parts).unwrap())
}

#[test]
fn cid_names_the_part() {
    let (ct, body) = multipart_body(&[
        ("application/sdp", None, SDP.as_bytes()),
        ("application/pidf+xml", Some("first@x"), CIVIC),
        ("application/pidf+xml", Some("second@x"), JSSIP),
    ]);
    let r = invite(&[(HeaderName::Geolocation, "<cid:second@x>")], Some(&ct), &body);
    let loc = from_invite(&r).unwrap();
    assert_eq!(loc.pidf.as_deref(), Some(JSSIP));
    assert_eq!(loc.content_id.as_deref(), Some("second@x"));

    // URL-encoded cid (RFC 2392), case differences, several values in one header.
    let (ct, body) = multipart_body(&[
        ("application/sdp", None, SDP.as_bytes()),
        ("application/pidf+xml", Some("a b@X.example"), CIVIC),
        ("application/pidf+xml", Some("other@x"), JSSIP),
    ]);
    let r = invite(
        &[(HeaderName::Geolocation, "<https://lis.example.com/loc/1>, <cid:a%20b@x.example>")],
        Some(&ct),
        &body,
    );
    let loc = from_invite(&r).unwrap();
    assert_eq!(loc.pidf.as_deref(), Some(CIVIC));
    assert_eq!(loc.references, ["https://lis.example.com/loc/1"]);
    assert_eq!(loc.country().as_ref().map(CountryCode::as_str), Some("PR"));
}

#[test]
fn a_cid_naming_the_sdp_does_not_make_it_a_location() {
    let (ct, body) = multipart_body(&[
        ("application/sdp", Some("sdp@x"), SDP.as_bytes()),
        ("application/pidf+xml", Some("loc@x"), CARRIER),
    ]);
    let r = invite(&[(HeaderName::Geolocation, "<cid:sdp@x>")], Some(&ct), &body);
    assert_eq!(from_invite(&r).unwrap().pidf.as_deref(), Some(CARRIER));
}

#[test]
fn unnamed_pidf_parts_and_whole_bodies() {
    // No Geolocation header, or one naming nothing: the first PIDF-LO part.
    let (ct, body) = multipart_body(&[
        ("application/sdp", None, SDP.as_bytes()),
        ("application/pidf+xml", None, CARRIER),
    ]);
    for headers in [&[][..], &[(HeaderName::Geolocation, "<cid:missing@x>")][..]] {
        let loc = from_invite(&invite(headers, Some(&ct), &body)).unwrap();
        assert_eq!(loc.pidf.as_deref(), Some(CARRIER));
        assert_eq!(loc.content_id, None);
    }
    // A whole body of application/pidf+xml.
    let loc = from_invite(&invite(&[], Some("application/pidf+xml"), JSSIP)).unwrap();
    assert_eq!(loc.pidf.as_deref(), Some(JSSIP));
    assert_eq!(loc.country().as_ref().map(CountryCode::as_str), Some("US"));
}

#[test]
fn location_by_reference() {
    let r = invite(
        &[(
            HeaderName::Geolocation,
            "<https://lis.example.com/loc/7f3a>;inserted-by=lis.example.com",
        )],
        Some("application/sdp"),
        SDP.as_bytes(),
    );
    let loc = from_invite(&r).unwrap();
    assert_eq!(loc.references, ["https://lis.example.com/loc/7f3a"]);
    assert_eq!(loc.pidf, None);
    assert_eq!(loc.info.status, ReadStatus::Absent);
    assert_eq!(loc.country(), None);
    assert_eq!(
        loc.geolocation,
        [Bytes::from_static(b"<https://lis.example.com/loc/7f3a>;inserted-by=lis.example.com")]
    );
    // sip:/pres: references too; unknown schemes and garbage are kept raw but not used.
    let r = invite(
        &[
            (HeaderName::Geolocation, "<sips:target@lis.example.com>, <pres:a@example.com>"),
            (HeaderName::Geolocation, "<ftp://x/y>"),
            (HeaderName::Geolocation, "<<<garbage"),
        ],
        None,
        b"",
    );
    let loc = from_invite(&r).unwrap();
    assert_eq!(loc.references, ["sips:target@lis.example.com", "pres:a@example.com"]);
    assert_eq!(loc.geolocation.len(), 3);
}

#[test]
fn no_location() {
    assert!(from_invite(&invite(&[], Some("application/sdp"), SDP.as_bytes())).is_none());
    assert!(from_invite(&invite(&[], None, b"")).is_none());
    // A multipart with no PIDF-LO part.
    let (ct, body) = multipart_body(&[("application/sdp", None, SDP.as_bytes())]);
    assert!(from_invite(&invite(&[], Some(&ct), &body)).is_none());
    // A broken multipart.
    assert!(
        from_invite(&invite(&[], Some("multipart/mixed;boundary=b1"), b"--b1\r\nno end")).is_none()
    );
}

#[test]
fn garbled_or_huge_documents_are_still_passed_on() {
    let garbled = &CARRIER[..CARRIER.len() / 2];
    let (ct, body) = multipart_body(&[
        ("application/sdp", None, SDP.as_bytes()),
        ("application/pidf+xml", Some("loc@x"), garbled),
    ]);
    let loc = from_invite(&invite(&[(HeaderName::Geolocation, "<cid:loc@x>")], Some(&ct), &body))
        .unwrap();
    assert_eq!(loc.pidf.as_deref(), Some(garbled));
    assert_eq!(loc.info.status, ReadStatus::Malformed);
    assert_eq!(loc.country(), None);
    let provisioned = location("US", None);
    assert_eq!(country_of(Some(&loc), Some(&provisioned)), Some(cc("US")));
    assert_eq!(
        outgoing_pidf(Some(&loc), Some(&provisioned), "pres:a@x", 0).as_deref(),
        Some(garbled)
    );

    let mut huge = CARRIER.to_vec();
    huge.resize(MAX_PIDF_BYTES * 2, b' ');
    let loc = from_invite(&invite(&[], Some("application/pidf+xml"), &huge)).unwrap();
    assert_eq!(loc.info.status, ReadStatus::TooLarge);
    assert_eq!(loc.pidf.as_deref(), Some(&huge[..]));
}

// --- country of a point ------------------------------------------------------------------------

#[test]
fn places() {
    let us = [
        ("Chicago", 41.8781, -87.6298),
        ("Springfield IL", 39.7817, -89.6501),
        ("New York", 40.7128, -74.0060),
        ("Los Angeles", 34.0522, -118.2437),
        ("San Diego", 32.7157, -117.1611),
        ("Seattle", 47.6062, -122.3321),
        ("Bellingham", 48.7519, -122.4787),
        ("Miami", 25.7617, -80.1918),
        ("Key West", 24.5551, -81.7800),
        ("Houston", 29.7604, -95.3698),
        ("Laredo (north)", 27.60, -99.45),
        ("El Paso (north-east)", 31.85, -106.40),
        ("Tucson", 32.2226, -110.9747),
        ("Yuma", 32.6927, -114.6277),
        ("Denver", 39.7392, -104.9903),
        ("Detroit (midtown)", 42.36, -83.07),
        ("Cleveland", 41.4993, -81.6944),
        ("Buffalo (east)", 42.90, -78.80),
        ("Duluth", 46.7867, -92.1005),
        ("Marquette", 46.5436, -87.3954),
        ("Boston", 42.3601, -71.0589),
        ("Bangor", 44.8016, -68.7712),
        ("Presque Isle ME", 46.6812, -68.0159),
        ("Burlington VT", 44.4759, -73.2121),
        ("Anchorage", 61.2181, -149.9003),
        ("Fairbanks", 64.8378, -147.7164),
        ("Nome", 64.5011, -165.4064),
        ("Utqiagvik", 71.2906, -156.7886),
        ("Unalaska", 53.8739, -166.5404),
        ("Attu", 52.90, 173.20),
        ("Juneau", 58.3019, -134.4197),
        ("Sitka", 57.0531, -135.3300),
        ("Ketchikan", 55.3422, -131.6461),
        ("Yakutat", 59.5469, -139.7272),
        ("Honolulu", 21.3069, -157.8583),
        ("Hilo", 19.7241, -155.0868),
        ("Lihue", 21.9811, -159.3711),
    ];
    for (name, lat, lon) in us {
        let got = country_at(GeoPoint::new(lat, lon).unwrap());
        assert_eq!(got.as_ref().map(CountryCode::as_str), Some("US"), "{name}");
    }
    let pr = [
        ("San Juan", 18.4655, -66.1057),
        ("Ponce", 18.0111, -66.6141),
        ("Mayagüez", 18.2013, -67.1397),
        ("Vieques", 18.1263, -65.4401),
        ("Culebra", 18.3030, -65.3010),
        ("Mona", 18.0870, -67.8890),
        ("Desecheo", 18.3850, -67.4820),
    ];
    for (name, lat, lon) in pr {
        let got = country_at(GeoPoint::new(lat, lon).unwrap());
        assert_eq!(got.as_ref().map(CountryCode::as_str), Some("PR"), "{name}");
    }
    let neither = [
        ("Toronto", 43.6532, -79.3832),
        ("Vancouver", 49.2827, -123.1207),
        ("Victoria BC", 48.4284, -123.3656),
        ("Windsor ON", 42.3149, -83.0364),
        ("Sarnia", 42.9745, -82.4066),
        ("Niagara Falls ON", 43.0896, -79.0849),
        ("Montreal", 45.5017, -73.5673),
        ("Edmundston NB", 47.3737, -68.3251),
        ("St Stephen NB", 45.1917, -67.2756),
        ("Campobello", 44.88, -66.93),
        ("Sault Ste Marie ON", 46.5219, -84.3461),
        ("Pelee Island", 41.77, -82.65),
        ("Whitehorse", 60.7212, -135.0568),
        ("Atlin BC", 59.5780, -133.6890),
        ("Prince Rupert", 54.3150, -130.3208),
        ("Stewart BC", 55.9383, -129.9881),
        ("Masset (Haida Gwaii)", 54.0110, -132.1470),
        ("Provideniya (Chukotka)", 64.4230, -173.2260),
        ("Big Diomede", 65.78, -169.06),
        ("Tijuana", 32.5149, -117.0382),
        ("Mexicali", 32.6245, -115.4523),
        ("Ciudad Juárez", 31.6904, -106.4245),
        ("Nuevo Laredo", 27.4761, -99.5160),
        ("Matamoros", 25.8690, -97.5027),
        ("Nogales MX", 31.3000, -110.9400),
        ("Havana", 23.1136, -82.3666),
        ("Nassau", 25.0443, -77.3504),
        ("Bimini", 25.7260, -79.2950),
        ("Freeport BS", 26.5333, -78.7000),
        ("Santo Domingo", 18.4861, -69.9312),
        ("Punta Cana", 18.5820, -68.4055),
        ("St Thomas USVI", 18.3381, -64.8941),
        ("Bermuda", 32.3078, -64.7505),
        ("London", 51.5072, -0.1276),
        ("Midway", 28.2072, -177.3735),
        ("Null Island", 0.0, 0.0),
    ];
    for (name, lat, lon) in neither {
        assert_eq!(country_at(GeoPoint::new(lat, lon).unwrap()), None, "{name}");
    }
}

#[test]
fn geopoint_range() {
    assert!(GeoPoint::new(90.0, 180.0).is_some());
    assert!(GeoPoint::new(-90.0, -180.0).is_some());
    assert!(GeoPoint::new(90.1, 0.0).is_none());
    assert!(GeoPoint::new(0.0, -180.1).is_none());
    assert!(GeoPoint::new(f64::NAN, 0.0).is_none());
    assert!(GeoPoint::new(0.0, f64::INFINITY).is_none());
}

// --- the provisioned address -------------------------------------------------------------------

fn civic_of(country: &str, address: &str) -> Vec<(&'static str, String)> {
    civic_from_address(&cc(country), Some(address))
        .fields()
        .map(|(n, v)| (n, v.to_owned()))
        .collect()
}

#[test]
fn addresses() {
    // (country, address, `ELEMENT=value|...` in schema order, the country element implied).
    let cases = [
        (
            "US",
            "1 Main St, Springfield, IL 62701",
            "A1=IL|A3=Springfield|RD=Main|STS=St|HNO=1|PC=62701",
        ),
        (
            "US",
            "Suite 200, 1 Main St, Springfield, IL 62701",
            "A1=IL|A3=Springfield|RD=Main|STS=St|HNO=1|PC=62701|UNIT=Suite 200",
        ),
        (
            "US",
            "1 Main St Suite 200, Springfield IL 62701",
            "A1=IL|A3=Springfield|RD=Main|STS=St|HNO=1|PC=62701|UNIT=Suite 200",
        ),
        (
            "US",
            "1200 S Example Ave NW, Floor 4, Chicago, Illinois 60605-1234, USA",
            "A1=IL|A3=Chicago|PRD=S|RD=Example|STS=Ave|POD=NW|HNO=1200|FLR=4|PC=60605-1234",
        ),
        ("US", "100 North St, Boston, MA", "A1=MA|A3=Boston|RD=North|STS=St|HNO=100"),
        (
            "US",
            "12A Elm Street, Apt 3, Room 5, Building B, 3rd Floor, Springfield",
            "A3=Springfield|RD=Elm|STS=Street|HNO=12|HNS=A|FLR=3rd|BLD=B|UNIT=Apt 3|ROOM=5",
        ),
        ("US", "221 1/2 Baker Rd", "RD=Baker|STS=Rd|HNO=221|HNS=1/2"),
        (
            "US",
            "100 Main St NE, Washington, DC 20002",
            "A1=DC|A3=Washington|RD=Main|STS=St|POD=NE|HNO=100|PC=20002",
        ),
        ("US", "100 Main St NE", "RD=Main|STS=St|POD=NE|HNO=100"),
        ("US", "123 Washington", "RD=Washington|HNO=123"),
        ("US", "1 Main St Springfield IL 62701", "RD=Main St Springfield IL|HNO=1|PC=62701"),
        ("US", "Empire State Building", "LOC=Empire State Building"),
        ("US", "PO Box 12, Springfield, IL", "A1=IL|A3=Springfield|POBOX=PO Box 12"),
        ("US", "Suite 1, Suite 2, 5 Oak Ave", "RD=Oak|STS=Ave|HNO=5|LOC=Suite 2|UNIT=Suite 1"),
        ("US", "#12, 5 Oak Ave", "RD=Oak|STS=Ave|HNO=5|UNIT=#12"),
        (
            "PR",
            "Urb. Las Gladiolas, 150 Calle A, San Juan, PR 00926",
            "A1=PR|A3=San Juan|RD=Calle A|HNO=150|LOC=Urb. Las Gladiolas|PC=00926",
        ),
        (
            "PR",
            "150 Calle Luna, San Juan, Puerto Rico 00901, Puerto Rico",
            "A1=PR|A3=San Juan|RD=Calle Luna|HNO=150|PC=00901",
        ),
        ("CA", "1 Main St, Toronto, ON M5V 2T6", "LOC=1 Main St, Toronto, ON M5V 2T6"),
    ];
    for (country, address, want) in cases {
        let mut want: Vec<(&str, String)> = want
            .split('|')
            .filter(|f| !f.is_empty())
            .map(|f| f.split_once('=').unwrap())
            .map(|(n, v)| (n, v.to_owned()))
            .collect();
        want.insert(0, ("country", country.to_owned()));
        want.sort_by_key(|(n, _)| CIVIC_ELEMENTS.iter().position(|e| e == n));
        let got: Vec<(&str, String)> = civic_of(country, address).into_iter().collect();
        assert_eq!(got, want, "{address}");
    }
    assert_eq!(
        civic_from_address(&cc("US"), None).fields().collect::<Vec<_>>(),
        [("country", "US")]
    );
    assert_eq!(civic_from_address(&cc("US"), Some("  ")).fields().count(), 1);
}

// --- writing a PIDF-LO -------------------------------------------------------------------------

#[test]
fn timestamps() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_780_336_800), "2026-06-01T18:00:00Z");
    assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
}

#[test]
fn built_pidf_reads_back() {
    let loc = location("US", Some("Suite 200, 1 Main St, Springfield, IL 62701"));
    let doc = build_pidf(&loc, "pres:alice@example.com", 1_780_336_800);
    let text = String::from_utf8(doc.clone()).unwrap();
    assert!(text.contains("<gp:method>Manual</gp:method>"), "{text}");
    assert!(text.contains("<timestamp>2026-06-01T18:00:00Z</timestamp>"), "{text}");
    assert!(text.contains("<tuple id=\"location\">"), "{text}");
    let info = read_pidf(&doc);
    assert_eq!(info.status, ReadStatus::Read);
    assert_eq!(info.entity.as_deref(), Some("pres:alice@example.com"));
    assert_eq!(info.method.as_deref(), Some("Manual"));
    assert_eq!(info.locations, 1);
    assert_eq!(info.civic, Some(civic_from_address(&loc.country, loc.address.as_deref())));
    assert_eq!(info.country(), Some(cc("US")));

    let pr = location("PR", Some("150 Calle Luna, San Juan, PR 00901"));
    let info = read_pidf(&build_pidf(&pr, "sip:+17875550100@pr.example.com;user=phone", 0));
    assert_eq!(info.country(), Some(cc("PR")));
    assert_eq!(info.civic.as_ref().and_then(|c| c.get("HNO")), Some("150"));
}

#[test]
fn escaping() {
    let loc =
        location("US", Some("1 <Main> & \"Elm\" 'St', Apt \u{1}7\u{fffe}, A&B Town, IL 62701"));
    let entity = "pres:\"a\"&<b>@example.com";
    let doc = build_pidf(&loc, entity, 0);
    let info = read_pidf(&doc);
    assert_eq!(info.status, ReadStatus::Read, "{}", String::from_utf8_lossy(&doc));
    assert_eq!(info.entity.as_deref(), Some(entity));
    let civic = info.civic.unwrap();
    assert_eq!(civic.get("RD"), Some("<Main> & \"Elm\" 'St'"));
    assert_eq!(civic.get("UNIT"), Some("Apt 7"), "characters XML cannot carry are dropped");
    assert_eq!(civic.get("A3"), Some("A&B Town"));
}

// --- the outgoing body -------------------------------------------------------------------------

/// A part as `(headers, body)`.
type OwnedPart = (Vec<(String, String)>, Vec<u8>);

fn split(a: &Attached) -> Vec<OwnedPart> {
    let ct = MediaType::parse(&a.content_type).unwrap();
    assert!(ct.is("multipart", "mixed"));
    multipart::parse(&a.body, ct.boundary().unwrap())
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                p.headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
                p.body.to_vec(),
            )
        })
        .collect()
}

#[test]
fn attach_to_sdp() {
    let a = attach(SDP.as_bytes(), Some("application/sdp"), CARRIER, "edge.example.com").unwrap();
    assert_eq!(a.geolocation_routing, "yes");
    let parts = split(&a);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].0, [("Content-Type".to_owned(), "application/sdp".to_owned())]);
    assert_eq!(parts[0].1, SDP.as_bytes());
    let cid = a.geolocation.strip_prefix("<cid:").and_then(|c| c.strip_suffix('>')).unwrap();
    assert!(cid.starts_with("loc-") && cid.ends_with("@edge.example.com"), "{cid}");
    assert_eq!(
        parts[1].0,
        [
            ("Content-Type".to_owned(), "application/pidf+xml".to_owned()),
            ("Content-ID".to_owned(), format!("<{cid}>")),
            ("Content-Disposition".to_owned(), "render;handling=optional".to_owned()),
        ]
    );
    assert_eq!(parts[1].1, CARRIER, "byte for byte");
    // Same input, same output (no randomness).
    assert_eq!(
        attach(SDP.as_bytes(), Some("application/sdp"), CARRIER, "edge.example.com").unwrap(),
        a
    );
}

#[test]
fn attach_round_trip_through_an_invite() {
    let a = attach(SDP.as_bytes(), Some("application/sdp"), JSSIP, "edge.example.com").unwrap();
    let r = invite(&[(HeaderName::Geolocation, &a.geolocation)], Some(&a.content_type), &a.body);
    let loc = from_invite(&r).unwrap();
    assert_eq!(loc.pidf.as_deref(), Some(JSSIP));
    assert_eq!(
        loc.content_id.as_deref(),
        a.geolocation.strip_prefix("<cid:").and_then(|c| c.strip_suffix('>'))
    );
    assert_eq!(loc.country(), Some(cc("US")));
}

#[test]
fn attach_to_other_bodies() {
    // No body (an offerless INVITE): the PIDF-LO alone.
    let a = attach(b"", None, CIVIC, "edge.example.com").unwrap();
    let parts = split(&a);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].1, CIVIC);

    // A body without Content-Type is taken as SDP.
    let parts = split(&attach(SDP.as_bytes(), None, CIVIC, "h").unwrap());
    assert_eq!(parts[0].0[0].1, "application/sdp");

    // Already multipart: other parts kept as they were, the old PIDF-LO replaced.
    let (ct, body) = multipart_body(&[
        ("application/sdp", None, SDP.as_bytes()),
        ("application/pidf+xml", Some("old@x"), CARRIER),
        ("application/resource-lists+xml", Some("rl@x"), b"<resource-lists/>"),
    ]);
    let parts = split(&attach(&body, Some(&ct), CIVIC, "h").unwrap());
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0].1, SDP.as_bytes());
    assert_eq!(parts[1].0[1], ("Content-ID".to_owned(), "<rl@x>".to_owned()));
    assert_eq!(parts[2].1, CIVIC);

    // A multipart that does not split is nested whole, with its type.
    let broken = b"--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n";
    let parts = split(&attach(broken, Some("multipart/mixed;boundary=b1"), CIVIC, "h").unwrap());
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].0[0].1, "multipart/mixed;boundary=b1");
    assert_eq!(parts[0].1, broken);
}

#[test]
fn attach_boundary_and_cid_host() {
    let a = attach(SDP.as_bytes(), Some("application/sdp"), CIVIC, "edge.example.com").unwrap();
    let boundary = a.content_type.split_once("boundary=").unwrap().1.to_owned();
    // Put that boundary inside the SDP: the next body must pick another one.
    let sdp = format!("{SDP}a=x:--{boundary}\r\n");
    let b = attach(sdp.as_bytes(), Some("application/sdp"), CIVIC, "edge.example.com").unwrap();
    let parts = split(&b);
    assert_eq!(parts[0].1, sdp.as_bytes());
    assert_eq!(parts[1].1, CIVIC);

    let c = attach(b"", None, CIVIC, "<bad host>;x").unwrap();
    assert!(c.geolocation.ends_with("@badhostx>"), "{}", c.geolocation);
    let d = attach(b"", None, CIVIC, "...").unwrap();
    assert!(d.geolocation.ends_with("@lifeline.invalid>"), "{}", d.geolocation);
}

// --- the caller's country, the document to send ------------------------------------------------

#[test]
fn country_of_prefers_the_softphone() {
    let pr_phone = from_invite(&invite(&[], Some("application/pidf+xml"), CIVIC)).unwrap();
    let by_ref =
        from_invite(&invite(&[(HeaderName::Geolocation, "<https://lis/x>")], None, b"")).unwrap();
    let us = location("US", Some("1 Main St, Springfield, IL 62701"));
    assert_eq!(country_of(Some(&pr_phone), Some(&us)), Some(cc("PR")));
    assert_eq!(country_of(Some(&pr_phone), None), Some(cc("PR")));
    assert_eq!(country_of(Some(&by_ref), Some(&us)), Some(cc("US")));
    assert_eq!(country_of(None, Some(&us)), Some(cc("US")));
    assert_eq!(country_of(Some(&by_ref), None), None);
    assert_eq!(country_of(None, None), None);
}

#[test]
fn outgoing_document() {
    let phone = from_invite(&invite(&[], Some("application/pidf+xml"), JSSIP)).unwrap();
    let us = location("US", Some("1 Main St, Springfield, IL 62701"));
    assert!(
        matches!(outgoing_pidf(Some(&phone), Some(&us), "pres:a@x", 0), Some(Cow::Borrowed(d)) if d == JSSIP)
    );
    let built = outgoing_pidf(None, Some(&us), "pres:a@x", 0).unwrap();
    assert_eq!(built.as_ref(), build_pidf(&us, "pres:a@x", 0).as_slice());
    let by_ref =
        from_invite(&invite(&[(HeaderName::Geolocation, "<https://lis/x>")], None, b"")).unwrap();
    assert!(matches!(outgoing_pidf(Some(&by_ref), Some(&us), "pres:a@x", 0), Some(Cow::Owned(_))));
    assert_eq!(outgoing_pidf(Some(&by_ref), None, "pres:a@x", 0), None);
}

// --- hostile input, generated ------------------------------------------------------------------

/// Fragments that make generated documents look like PIDF-LO more often than random bytes.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<presence xmlns=\"urn:ietf:params:xml:ns:pidf\">".to_owned()),
        Just("</presence>".to_owned()),
        Just("<gp:geopriv xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\">".to_owned()),
        Just("</gp:geopriv>".to_owned()),
        Just("<gp:location-info>".to_owned()),
        Just("</gp:location-info>".to_owned()),
        Just(
            "<ca:civicAddress xmlns:ca=\"urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr\">"
                .to_owned()
        ),
        Just("</ca:civicAddress>".to_owned()),
        Just("<ca:country>".to_owned()),
        Just("</ca:country>".to_owned()),
        Just("<gml:pos xmlns:gml=\"http://www.opengis.net/gml\">".to_owned()),
        Just("</gml:pos>".to_owned()),
        Just("&amp;".to_owned()),
        Just("&#x1F600;".to_owned()),
        Just("<![CDATA[".to_owned()),
        Just("]]>".to_owned()),
        Just("<!--".to_owned()),
        "[ -~]{0,12}",
        "-?[0-9]{1,3}\\.[0-9]{0,6} -?[0-9]{1,3}\\.[0-9]{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(doc in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let info = read_pidf(&doc);
        let _ = info.country();
        let r = invite(&[(HeaderName::Geolocation, "<cid:x@y>")], Some("application/pidf+xml"), &doc);
        let loc = from_invite(&r).unwrap();
        prop_assert_eq!(loc.pidf.as_deref(), (!doc.is_empty()).then_some(&doc[..]));
    }

    #[test]
    fn pidf_like_documents_never_panic(parts in proptest::collection::vec(fragment(), 0..40)) {
        let doc = parts.concat();
        let info = read_pidf(doc.as_bytes());
        if info.status != ReadStatus::Read {
            prop_assert_eq!(info.country(), None);
        }
    }

    #[test]
    fn mutated_carrier_fixture_never_panics(
        edits in proptest::collection::vec((0..CARRIER.len(), any::<u8>()), 0..8),
        cut in 0..=CARRIER.len(),
    ) {
        let mut doc = CARRIER.to_vec();
        for (at, byte) in edits {
            doc[at] = byte;
        }
        doc.truncate(cut);
        let _ = read_pidf(&doc).country();
    }

    #[test]
    fn arbitrary_multipart_bodies_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..1024),
        geolocation in "[ -~]{0,40}",
    ) {
        let r = invite(&[(HeaderName::Geolocation, &geolocation)], Some("multipart/mixed;boundary=b"), &body);
        let _ = from_invite(&r);
        let _ = attach(&body, Some("multipart/mixed;boundary=b"), b"<x/>", "h").unwrap();
    }

    #[test]
    fn any_point_is_total(lat in -90.0f64..=90.0, lon in -180.0f64..=180.0) {
        let _ = country_at(GeoPoint::new(lat, lon).unwrap());
    }

    #[test]
    fn pr_is_never_us(lat in 17.8f64..18.6, lon in -68.0f64..-65.2) {
        prop_assert_eq!(country_at(GeoPoint::new(lat, lon).unwrap()), Some(cc("PR")));
    }

    /// Nothing of the address is lost: every word reappears in some element, except the
    /// keywords the element names say (`Floor`, `Room`, `Building`...) and a dropped
    /// trailing country name.
    #[test]
    fn addresses_lose_nothing(
        pieces in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![
                    Just("Main"), Just("St"), Just("N"), Just("Ave"), Just("Suite"), Just("Apt"),
                    Just("#4"), Just("12B"), Just("1/2"), Just("Springfield"), Just("IL"),
                    Just("PR"), Just("62701"), Just("00926-1234"), Just("Calle"), Just("Urb."),
                    Just("Floor"), Just("Room"), Just("Bldg"), Just("3rd"), Just("PO"), Just("Box"),
                    Just("100"), Just("7"), Just("NW"), Just("USA"), Just("San"), Just("Juan"),
                    Just("&"), Just("<x>"),
                ],
                1..5,
            ),
            1..6,
        ),
        country in prop_oneof![Just("US"), Just("PR")],
    ) {
        let address = pieces.iter().map(|p| p.join(" ")).collect::<Vec<_>>().join(", ");
        let civic = civic_from_address(&cc(country), Some(&address));
        let all: String = civic.fields().map(|(_, v)| v.replace(' ', "")).collect();
        let keywords = ["Floor", "Room", "Bldg"];
        for (i, piece) in pieces.iter().enumerate() {
            let last_piece = i + 1 == pieces.len();
            for word in piece {
                let dropped = keywords.contains(word)
                    || (last_piece && piece.len() == 1 && (*word == "USA" || *word == country));
                prop_assert!(
                    dropped || all.contains(word),
                    "{word:?} lost from {address:?}: {:?}",
                    civic.fields().collect::<Vec<_>>()
                );
            }
        }
        // And the document built from it reads back to the same elements.
        let info = read_pidf(&civic_pidf(&civic, "pres:a@example.com", 0));
        prop_assert_eq!(info.civic.as_ref(), Some(&civic));
        // `US` with `A1` `PR` is Puerto Rico, the NENA way.
        let expected = if civic.get("A1") == Some("PR") { "PR" } else { country };
        prop_assert_eq!(info.country(), Some(cc(expected)));
    }
}
