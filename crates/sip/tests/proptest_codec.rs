//! Property tests for the codec and the stream framer, on generated messages.
//!
//! The generator writes structurally valid SIP messages the way real peers do and the way
//! RFC 4475 tortures them: requests (known and extension methods) and responses, long and
//! compact header names in random case, spaces and tabs around the colon, folded values, bare-LF
//! line ends, IPv4/IPv6/domain hosts, bodies of any bytes with a correct Content-Length.
//!
//! Properties:
//! - an untouched message prints back byte for byte, as a datagram and as a stream message, and
//!   its typed views give back what was generated;
//! - the framer cuts a stream of such messages (with CRLF keep-alives between them) exactly at
//!   the message boundaries, and every strict prefix of a message is `Incomplete`;
//! - no input makes the parser or the framer panic.
//!
//! The fuzz regressions under `tests/fuzz_regressions/` are replayed at the end.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use sip::framing::{self, Frame};
use sip::{Framing, HeaderName, Message, Method, multipart};

const MAX_MESSAGE: usize = 65_535;

// --- generators --------------------------------------------------------------------------

/// A generated message and what its typed views must say.
#[derive(Debug, Clone)]
struct Generated {
    bytes: Vec<u8>,
    method: Option<String>,
    status: Option<u16>,
    call_id: String,
    cseq: u32,
    body: Vec<u8>,
}

const METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "PRACK",
    "MESSAGE",
    "REFER",
    "NOTIFY",
    "SUBSCRIBE",
    "PUBLISH",
];

fn token(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9.!%*_+`'~-]{{1,{max}}}"))
        .expect("valid regex")
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(METHODS).prop_map(str::to_owned),
        1 => token(16),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| std::net::Ipv4Addr::from(a).to_string()),
        any::<[u16; 8]>().prop_map(|a| format!("[{}]", std::net::Ipv6Addr::from(a))),
        "[a-z][a-z0-9-]{0,8}[a-z0-9](\\.[a-z][a-z0-9]{0,6}){0,3}",
        Just("df7jal23ls0d.invalid".to_owned()),
    ]
}

fn hostport() -> impl Strategy<Value = String> {
    (host(), prop::option::of(1u16..)).prop_map(|(h, p)| match p {
        Some(p) => format!("{h}:{p}"),
        None => h,
    })
}

fn uri_params() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just(";lr".to_owned()),
            Just(";transport=tcp".to_owned()),
            Just(";transport=ws".to_owned()),
            Just(";user=phone".to_owned()),
            "[a-z]{1,6}(=[a-z0-9]{1,6})?".prop_map(|p| format!(";{p}")),
        ],
        0..3,
    )
    .prop_map(|v| v.concat())
}

fn sip_uri() -> impl Strategy<Value = String> {
    (
        prop_oneof![4 => Just("sip"), 1 => Just("sips"), 1 => Just("SIP")],
        prop::option::of("[a-zA-Z0-9+._-]{1,12}"),
        hostport(),
        uri_params(),
    )
        .prop_map(|(scheme, user, hp, params)| match user {
            Some(u) => format!("{scheme}:{u}@{hp}{params}"),
            None => format!("{scheme}:{hp}{params}"),
        })
}

fn request_uri() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => sip_uri(),
        1 => "\\+1[2-9][0-9]{9}".prop_map(|n| format!("tel:{n}")),
        1 => Just("urn:service:sos".to_owned()),
    ]
}

fn name_addr(with_tag: bool) -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just(String::new()),
            "[A-Za-z0-9 ]{0,16}".prop_map(|d| format!("\"{d}\" ")),
            "[A-Za-z]{1,8}( [A-Za-z]{1,8})?".prop_map(|d| format!("{d} ")),
        ],
        sip_uri(),
        "[A-Za-z0-9]{1,10}",
        any::<bool>(),
    )
        .prop_map(move |(display, uri, tag, angle)| {
            let tag = if with_tag { format!(";tag={tag}") } else { String::new() };
            // addr-spec form only without display name and URI parameters (RFC 3261 §20).
            if !angle && display.is_empty() && !uri.contains(';') {
                format!("{uri}{tag}")
            } else {
                format!("{display}<{uri}>{tag}")
            }
        })
}

fn via() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["UDP", "TCP", "TLS", "WS", "WSS", "udp", "SCTP"][..]),
        hostport(),
        token(16),
        any::<bool>(),
        prop::option::of(any::<[u8; 4]>()),
    )
        .prop_map(|(transport, hp, branch, rport, received)| {
            let mut v = format!("SIP/2.0/{transport} {hp};branch=z9hG4bK{branch}");
            if rport {
                v.push_str(";rport");
            }
            if let Some(r) = received {
                v.push_str(&format!(";received={}", std::net::Ipv4Addr::from(r)));
            }
            v
        })
}

/// One header line: the name in long or compact form and in random case, spaces or tabs
/// around the colon, the value optionally folded at one of its spaces, CRLF.
fn line(
    long: &str,
    compact: Option<&'static str>,
    value: impl Strategy<Value = String> + 'static,
    foldable: bool,
) -> BoxedStrategy<String> {
    let long = long.to_owned();
    (
        value,
        any::<bool>(),
        prop::option::of(prop::collection::vec(any::<bool>(), 24)),
        "[ \t]{0,2}",
        prop_oneof![3 => Just(" ".to_owned()), 1 => "[ \t]{0,2}"],
        prop::option::of((
            any::<Index>(),
            prop::sample::select(&["\r\n ", "\r\n\t", "\r\n  "][..]),
        )),
    )
        .prop_map(move |(value, use_compact, case, ws1, ws2, fold)| {
            let name = match compact {
                Some(c) if use_compact => c,
                _ => &long,
            };
            let name: String = match case {
                None => name.to_owned(),
                Some(mask) => name
                    .chars()
                    .zip(mask.iter().cycle())
                    .map(
                        |(c, up)| {
                            if *up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }
                        },
                    )
                    .collect(),
            };
            let mut value = value;
            if let (true, Some((at, fold))) = (foldable, fold) {
                let spaces: Vec<usize> = value.match_indices(' ').map(|(i, _)| i).collect();
                if !spaces.is_empty() {
                    let i = spaces[at.index(spaces.len())];
                    value.replace_range(i..=i, fold);
                }
            }
            format!("{name}{ws1}:{ws2}{value}\r\n")
        })
        .boxed()
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        1 => prop::collection::vec(any::<u8>(), 1..200),
        1 => Just(
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
                .to_vec()
        ),
    ]
}

fn message() -> impl Strategy<Value = Generated> {
    let start = prop_oneof![
        (method(), request_uri()).prop_map(|(m, u)| (Some(m), None, u)),
        (100u16..=699, "[A-Za-z ]{0,20}").prop_map(|(s, r)| (None, Some(s), r)),
    ];
    (
        start,
        prop::collection::vec(via(), 1..4),
        any::<bool>(),
        name_addr(true),
        (name_addr(false), any::<bool>(), "[A-Za-z0-9]{1,10}"),
        ("[A-Za-z0-9.!%*_+`'~-]{1,24}", prop::option::of(host())),
        (0u32..1 << 31, method()),
        body(),
        extra_headers(),
        any::<bool>(),
        prop_oneof![7 => Just(false), 1 => Just(true)],
    )
        .prop_flat_map(
            |(
                (req_method, status, uri_or_reason),
                vias,
                one_via_line,
                from,
                (to, to_tag, tag),
                (cid, cid_host),
                (seq, resp_method),
                body,
                extra,
                leading_zero_cl,
                lf_only,
            )| {
                let call_id = match cid_host {
                    Some(h) => format!("{cid}@{}", h.trim_matches(['[', ']'])),
                    None => cid,
                };
                // An IPv6 host in a Call-ID is just text; keep it colon-free for readability.
                let call_id = call_id.replace(':', ".");
                let cseq_method = req_method.clone().unwrap_or(resp_method);
                let to = if status.is_some() && to_tag { format!("{to};tag={tag}") } else { to };
                let cl = if leading_zero_cl {
                    format!("00{}", body.len())
                } else {
                    body.len().to_string()
                };
                let via_lines: BoxedStrategy<Vec<String>> = if one_via_line {
                    line("Via", Some("v"), Just(vias.join(", ")), true)
                        .prop_map(|l| vec![l])
                        .boxed()
                } else {
                    vias.into_iter()
                        .map(|v| line("Via", Some("v"), Just(v), true))
                        .collect::<Vec<_>>()
                        .boxed()
                };
                let mut fixed: Vec<BoxedStrategy<String>> = vec![
                    line("From", Some("f"), Just(from), false),
                    line("To", Some("t"), Just(to), false),
                    line("Call-ID", Some("i"), Just(call_id.clone()), false),
                    line("CSeq", None, Just(format!("{seq} {cseq_method}")), true),
                    line("Content-Length", Some("l"), Just(cl), false),
                ];
                if !body.is_empty() {
                    fixed.push(line(
                        "Content-Type",
                        Some("c"),
                        Just("application/sdp".to_owned()),
                        false,
                    ));
                }
                let generated = Generated {
                    bytes: Vec::new(),
                    method: req_method.clone(),
                    status,
                    call_id,
                    cseq: seq,
                    body,
                };
                let start_line = match (&req_method, status) {
                    (Some(m), _) => format!("{m} {uri_or_reason} SIP/2.0\r\n"),
                    (None, Some(s)) if uri_or_reason.is_empty() => format!("SIP/2.0 {s}\r\n"),
                    (None, Some(s)) => format!("SIP/2.0 {s} {uri_or_reason}\r\n"),
                    (None, None) => unreachable!(),
                };
                (via_lines, fixed, Just(extra))
                    .prop_flat_map(|(vias, fixed, extra)| {
                        let mut all = vias;
                        all.extend(fixed);
                        all.extend(extra);
                        Just(all).prop_shuffle()
                    })
                    .prop_map(move |lines| {
                        let mut head = start_line.clone();
                        for l in lines {
                            head.push_str(&l);
                        }
                        head.push_str("\r\n");
                        if lf_only {
                            head = head.replace("\r\n", "\n");
                        }
                        let mut g = generated.clone();
                        g.bytes = head.into_bytes();
                        g.bytes.extend_from_slice(&g.body);
                        g
                    })
            },
        )
}

fn extra_headers() -> impl Strategy<Value = Vec<String>> {
    let one = prop_oneof![
        line("Max-Forwards", None, (0u32..=255).prop_map(|n| n.to_string()), false),
        line(
            "Contact",
            Some("m"),
            name_addr(false).prop_map(|c| format!("{c};expires=600")),
            false
        ),
        line(
            "Route",
            None,
            prop::collection::vec(hostport(), 1..3).prop_map(|h| h
                .iter()
                .map(|h| format!("<sip:{h};lr>"))
                .collect::<Vec<_>>()
                .join(", ")),
            true,
        ),
        line("Record-Route", None, hostport().prop_map(|h| format!("<sip:{h};lr>")), false),
        line("Subject", Some("s"), "[A-Za-z0-9 ]{0,30}", true),
        line("User-Agent", None, "[A-Za-z0-9/. ]{1,30}", true),
        line("Supported", Some("k"), Just("timer, 100rel, path".to_owned()), true),
        ("X-[A-Za-z0-9-]{1,10}", "[ -~]{0,30}",).prop_flat_map(|(n, v)| line(
            &n,
            None,
            Just(v),
            true
        )),
    ];
    prop::collection::vec(one, 0..8).prop_map(|mut v| {
        // Max-Forwards may appear once.
        let mut seen = false;
        v.retain(|l| {
            let mf = l.to_ascii_lowercase().starts_with("max-forwards");
            let keep = !(mf && seen);
            seen |= mf;
            keep
        });
        v
    })
}

// --- helpers -----------------------------------------------------------------------------

fn parse(bytes: &[u8], framing: Framing) -> Result<Message, sip::ParseError> {
    Message::parse(Bytes::copy_from_slice(bytes), framing)
}

fn check_views(g: &Generated, m: &Message) {
    let h = m.headers();
    assert_eq!(h.call_id().ok(), Some(g.call_id.as_str()));
    assert_eq!(h.cseq().map(|c| c.seq).ok(), Some(g.cseq));
    assert!(h.top_via().is_ok());
    assert!(h.vias().all(|v| v.is_ok()));
    assert!(h.from().is_ok_and(|f| f.tag().is_some()));
    assert!(h.to().is_ok());
    assert_eq!(h.content_length().ok(), Some(Some(g.body.len() as u32)));
    assert!(h.name_addrs(HeaderName::Route).all(|r| r.is_ok()));
    assert_eq!(&m.body()[..], &g.body[..]);
    match (m, &g.method, g.status) {
        (Message::Request(r), Some(method), None) => {
            assert_eq!(Some(r.method()), Method::from_bytes(method.as_bytes()).as_ref());
            assert!(r.uri().is_ok());
        }
        (Message::Response(r), None, Some(status)) => assert_eq!(r.status(), status),
        _ => panic!("wrong kind"),
    }
}

fn keep_alive() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        3 => Just(&b""[..]),
        1 => Just(&b"\r\n"[..]),
        1 => Just(&b"\r\n\r\n"[..]),
    ]
}

// --- properties --------------------------------------------------------------------------

proptest! {
    // 256 cases of each property run in about 3 s in a debug build. Failures are shrunk and
    // saved (relative to crates/sip) to be replayed first on the next run.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/proptest_codec.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// An untouched message prints back byte for byte, on both framings.
    #[test]
    fn print_parse_is_identity(g in message()) {
        for framing in [Framing::Datagram, Framing::Stream] {
            let m = match parse(&g.bytes, framing) {
                Ok(m) => m,
                Err(e) => panic!(
                    "generated message refused ({framing:?}): {e}\n{}",
                    String::from_utf8_lossy(&g.bytes)
                ),
            };
            check_views(&g, &m);
            let printed = m.to_bytes();
            prop_assert_eq!(
                &printed[..],
                &g.bytes[..],
                "{:?}: print(parse(m)) != m",
                framing
            );
            // The kept top Via is the one a fresh decode gives, first call and later ones.
            for _ in 0..2 {
                prop_assert_eq!(
                    m.headers().top_via().ok(),
                    m.headers().vias().next().and_then(Result::ok)
                );
            }
            if let Message::Request(mut r) = m {
                // The size a proxy checks against the §18.1.1 limit is the size it sends,
                // untouched and after the edits a proxy makes.
                prop_assert_eq!(r.encoded_len(), printed.len());
                r.headers_mut().prepend(HeaderName::Via, "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx");
                r.headers_mut().set(HeaderName::MaxForwards, "69");
                r.set_uri("sip:+15550100@[2001:db8::1]:5061;transport=tcp").unwrap();
                r.set_body(Some("application/sdp"), Bytes::from_static(b"v=0\r\n"));
                prop_assert_eq!(r.encoded_len(), r.to_bytes().len());
            }
        }
    }

    /// The framer cuts a stream of messages and keep-alives exactly where they are.
    #[test]
    fn framing_finds_every_message(
        items in prop::collection::vec((keep_alive(), message()), 1..5),
        trailing_ping in any::<bool>(),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (ka, g) in &items {
            if !ka.is_empty() {
                expected.push(Frame::KeepAlive { len: ka.len(), ping: ka.len() == 4 });
                stream.extend_from_slice(ka);
            }
            expected.push(Frame::Message { len: g.bytes.len() });
            stream.extend_from_slice(&g.bytes);
        }
        if trailing_ping {
            expected.push(Frame::KeepAlive { len: 4, ping: true });
            stream.extend_from_slice(b"\r\n\r\n");
        }
        let mut pos = 0;
        let mut got = Vec::new();
        loop {
            match framing::check(&stream[pos..], MAX_MESSAGE) {
                Ok(Frame::Incomplete) => break,
                Ok(f @ (Frame::KeepAlive { len, .. } | Frame::Message { len })) => {
                    if let Frame::Message { len } = f {
                        let m = parse(&stream[pos..pos + len], Framing::Stream);
                        prop_assert!(m.is_ok(), "frame does not parse: {:?}", m.err());
                    }
                    got.push(f);
                    pos += len;
                }
                Err(e) => prop_assert!(false, "framing error {e} at {pos}"),
            }
        }
        prop_assert_eq!(pos, stream.len(), "bytes left unframed");
        prop_assert_eq!(got, expected);
    }

    /// Every strict prefix of a message is `Incomplete`: never a (wrong) message, never an
    /// error that would close a good connection.
    #[test]
    fn prefixes_are_incomplete(g in message()) {
        for n in 0..g.bytes.len() {
            prop_assert_eq!(
                framing::check(&g.bytes[..n], MAX_MESSAGE),
                Ok(Frame::Incomplete),
                "prefix of {} bytes", n
            );
        }
        prop_assert_eq!(
            framing::check(&g.bytes, MAX_MESSAGE),
            Ok(Frame::Message { len: g.bytes.len() })
        );
    }

    /// Arbitrary bytes never make the parser, the framer or the multipart splitter panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in any::<Vec<u8>>()) {
        no_panic(&bytes);
    }

    /// Nor do valid messages with a few bytes overwritten or cut short: these reach deeper
    /// into the parser than random bytes do.
    #[test]
    fn damaged_messages_never_panic(
        g in message(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        cut in any::<Index>(),
    ) {
        let mut bytes = g.bytes.clone();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        no_panic(&bytes);
        no_panic(&bytes[..cut.index(bytes.len() + 1)]);
    }
}

fn no_panic(bytes: &[u8]) {
    for framing in [Framing::Datagram, Framing::Stream] {
        match parse(bytes, framing) {
            Ok(m) => {
                let h = m.headers();
                let _ = (h.top_via(), h.from(), h.to(), h.cseq(), h.max_forwards());
                let _ = (h.content_type(), h.vias().count());
                let _ = h.name_addrs(HeaderName::Contact).count();
                let printed = m.to_bytes();
                assert!(
                    parse(&printed, framing).is_ok(),
                    "a parsed message prints to bytes that do not parse: {printed:?}"
                );
            }
            Err(e) => {
                let _ = (e.status(), e.reason(), e.is_answerable());
            }
        }
    }
    for limit in [64, 1500, MAX_MESSAGE] {
        let _ = framing::check(bytes, limit);
    }
    if let Some((&n, rest)) = bytes.split_first() {
        let n = usize::from(n % 72).min(rest.len());
        if let Ok(boundary) = std::str::from_utf8(&rest[..n]) {
            let _ = multipart::parse(&rest[n..], boundary);
        }
    }
}

// --- fuzz regressions --------------------------------------------------------------------

fn regression_files() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fuzz_regressions")
        .map(|e| e.expect("directory entry").path())
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            (name != ".gitattributes").then(|| (name, std::fs::read(&p).expect("readable")))
        })
        .collect();
    files.sort();
    files
}

/// Every input the fuzzers ever crashed on parses (or is refused) without a panic.
#[test]
fn fuzz_regressions_do_not_panic() {
    let files = regression_files();
    assert!(!files.is_empty());
    for (_, bytes) in files {
        no_panic(&bytes);
    }
}

/// Found by `fuzz/` (target `codec`): a datagram whose last header line has no line ending
/// keeps that line raw, without CRLF, so a header appended after it (Max-Forwards added by a
/// proxy with `Headers::set`, Content-Length by `set_body`) is glued to it:
/// `CSeq: 1 OPTIONSMax-Forwards: 70`, and the forwarded request no longer parses.
#[test]
fn header_appended_after_unterminated_last_line() {
    let raw = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz_regressions/codec-push-after-unterminated-last-line.sip"),
    )
    .unwrap();
    let mut m = parse(&raw, Framing::Datagram).unwrap();
    m.headers_mut().set(HeaderName::MaxForwards, "70");
    let out = m.to_bytes();
    let again = parse(&out, Framing::Datagram)
        .unwrap_or_else(|e| panic!("forwarded request refused ({e}): {out:?}"));
    assert_eq!(again.headers().max_forwards().unwrap(), Some(70));
    assert_eq!(again.headers().cseq().unwrap().seq, 1);
}

/// Found while checking the framer against the parser: a Content-Length whose value is folded
/// onto the next line (legal: LWS after HCOLON may contain a line fold, RFC 3261 §7.3.1, §25.1)
/// is accepted by `Message::parse` but refused by `framing::check` with `BadContentLength`, so a
/// TCP/TLS connection carrying it would be closed.
#[test]
fn framer_accepts_a_folded_content_length() {
    let raw = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz_regressions/framing-folded-content-length.sip"),
    )
    .expect("regression file");
    assert!(parse(&raw, Framing::Stream).is_ok());
    assert_eq!(framing::check(&raw, MAX_MESSAGE), Ok(Frame::Message { len: raw.len() }));
}

/// Found by `fuzz/` (target `codec`, an empty `Route:` header): `pop_first_value` and
/// `name_addrs` disagree on what the first Route is when the header has an empty element.
/// `name_addrs` skips empty elements, `pop_first_value` pops the empty one and leaves the real
/// first route in place — a proxy that checks the top Route with one and removes it with the
/// other (RFC 3261 §16.4) keeps its own route in the request.
#[test]
fn pop_first_value_pops_what_name_addrs_calls_first() {
    let raw = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz_regressions/codec-pop-empty-route-element.sip"),
    )
    .expect("regression file");
    let mut m = parse(&raw, Framing::Datagram).expect("parses");
    let first = m
        .headers()
        .name_addrs(HeaderName::Route)
        .next()
        .and_then(Result::ok)
        .map(|r| r.uri_raw.to_owned());
    assert_eq!(first.as_deref(), Some("sip:p1.example.com;lr"));
    let popped = m.headers_mut().pop_first_value(HeaderName::Route);
    assert_eq!(popped.as_deref(), Some(&b"<sip:p1.example.com;lr>"[..]));
    assert_eq!(m.headers().name_addrs(HeaderName::Route).count(), 0);
}

/// Found by `fuzz/` (target `framing`): the parser skips *any* run of CR and LF bytes before
/// the start line, the framer only the CRLF / LF keep-alives (RFC 3261 §7.5, RFC 5626 §3.5.1).
/// After `\r\r\n\n` the framer takes `\r\r` for a start line and the bare LF for the end of
/// the headers, and refuses the stream (`MissingContentLength`, the connection is closed), while
/// `Message::parse` on the same bytes accepts the OPTIONS behind them. One of the two should
/// change: the framer now consumes a stray CR as a keep-alive byte.
#[test]
fn framer_and_parser_agree_on_stray_cr() {
    let raw = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz_regressions/framing-stray-cr-before-start-line.sip"),
    )
    .expect("regression file");
    let framed = framing::check(&raw, MAX_MESSAGE);
    let parsed = parse(&raw, Framing::Stream);
    assert_eq!(
        framed.is_err(),
        parsed.is_err(),
        "framer {framed:?}, parser {:?}",
        parsed.map(|m| m.to_bytes())
    );
}
