//! lifeline's `sip` codec side by side with rsipstack's and rsip's, on the same input, in one
//! run: parse, parse + the views a proxy reads, and a proxy pass. Prints ns/op, ops/s and
//! allocations per operation (a counting global allocator), and the lifeline/rsipstack ratio.
//!
//!   cargo run --release                         the table (trunk INVITE, ~1 KB with SDP)
//!   cargo run --release -- --input FILE         another message (a request with From/To/CSeq)
//!   cargo run --release -- --loop lifeline:parse 10
//!                                               one operation in a loop for 10 s (for `perf`)
//!   cargo run --release -- --count lifeline:parse 10000
//!                                               one operation exactly 10000 times (for
//!                                               callgrind: instructions per operation are the
//!                                               difference of two counts over their difference)
//!
//! Timing: each operation is calibrated to batches of about 20 ms and warmed up for 300 ms; then
//! 25 rounds each time one batch of every library (interleaved, so that load from elsewhere on
//! a shared machine hits all alike). The table shows the median batch's ns/op and the spread
//! (p10-p90); the ratios are the medians of the per-round ratios.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

const DEFAULT_INPUT: &[u8] = include_bytes!("../../../crates/sip/benches/trunk-invite-1k.sip");

// --- counting allocator --------------------------------------------------------------------

/// Counts allocations (and reallocations, which may move) and bytes requested.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// --- the three libraries -------------------------------------------------------------------

/// What the proxy pass adds, the same for every library.
const VIA: &str = "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-lifeline-1;rport";
const RECORD_ROUTE: &str = "<sip:198.51.100.1;lr;r2=on>";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lib {
    Lifeline,
    Rsipstack,
    Rsip,
}

impl Lib {
    const ALL: [Lib; 3] = [Lib::Lifeline, Lib::Rsipstack, Lib::Rsip];

    fn name(self) -> &'static str {
        match self {
            Lib::Lifeline => "lifeline sip",
            Lib::Rsipstack => "rsipstack 0.7",
            Lib::Rsip => "rsip 0.4",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Lib::Lifeline => "lifeline",
            Lib::Rsipstack => "rsipstack",
            Lib::Rsip => "rsip",
        }
    }

    fn run(self, op: Op, input: &Input) -> usize {
        match (self, op) {
            (Lib::Lifeline, Op::Parse) => lifeline::parse(&input.bytes).headers().len(),
            (Lib::Lifeline, Op::Views) => lifeline::views(&input.bytes),
            (Lib::Lifeline, Op::Proxy) => lifeline::proxy_pass(&input.bytes).len(),
            (Lib::Rsipstack, Op::Parse) => {
                rsipstack_codec::parse(&input.bytes).is_request() as usize
            }
            (Lib::Rsipstack, Op::Views) => rsipstack_codec::views(&input.bytes),
            (Lib::Rsipstack, Op::Proxy) => rsipstack_codec::proxy_pass(&input.bytes).len(),
            (Lib::Rsip, Op::Parse) => rsip_codec::parse(&input.bytes).is_request() as usize,
            (Lib::Rsip, Op::Views) => rsip_codec::views(&input.bytes),
            (Lib::Rsip, Op::Proxy) => rsip_codec::proxy_pass(&input.bytes).len(),
        }
    }

    fn proxy_output(self, input: &Input) -> Vec<u8> {
        match self {
            Lib::Lifeline => lifeline::proxy_pass(&input.bytes).to_vec(),
            Lib::Rsipstack => rsipstack_codec::proxy_pass(&input.bytes),
            Lib::Rsip => rsip_codec::proxy_pass(&input.bytes),
        }
    }

    fn view_values(self, input: &Input) -> ViewValues {
        match self {
            Lib::Lifeline => lifeline::view_values(&input.bytes),
            Lib::Rsipstack => rsipstack_codec::view_values(&input.bytes),
            Lib::Rsip => rsip_codec::view_values(&input.bytes),
        }
    }
}

/// What the views read, to check that every library read the same thing.
#[derive(Debug, PartialEq, Eq)]
struct ViewValues {
    branch: Option<String>,
    from_tag: Option<String>,
    to_tag: Option<String>,
    cseq: u32,
    call_id: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Parse,
    Views,
    Proxy,
}

impl Op {
    const ALL: [Op; 3] = [Op::Parse, Op::Views, Op::Proxy];

    fn name(self) -> &'static str {
        match self {
            Op::Parse => "parse",
            Op::Views => "parse + views",
            Op::Proxy => "proxy pass",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Op::Parse => "parse",
            Op::Views => "views",
            Op::Proxy => "proxy",
        }
    }
}

struct Input {
    /// The message, as the edge holds a received datagram: reference-counted bytes (lifeline
    /// parses from `Bytes` without copying; rsip and rsipstack read the same bytes as `&[u8]`).
    bytes: Bytes,
}

mod lifeline {
    use bytes::Bytes;
    use sip::{Framing, HeaderName, Message};

    pub(crate) fn parse(buf: &Bytes) -> Message {
        Message::parse(buf.clone(), Framing::Datagram).expect("lifeline parses the input")
    }

    pub(crate) fn views(buf: &Bytes) -> usize {
        let m = parse(buf);
        let h = m.headers();
        let via = h.top_via().expect("Via");
        let from = h.from().expect("From");
        let to = h.to().expect("To");
        let cseq = h.cseq().expect("CSeq");
        let call_id = h.call_id().expect("Call-ID");
        via.branch().map_or(0, str::len)
            + from.tag().map_or(0, str::len)
            + to.tag().map_or(0, str::len)
            + cseq.seq as usize
            + call_id.len()
    }

    pub(crate) fn view_values(buf: &Bytes) -> super::ViewValues {
        let m = parse(buf);
        let h = m.headers();
        super::ViewValues {
            branch: h.top_via().expect("Via").branch().map(str::to_owned),
            from_tag: h.from().expect("From").tag().map(str::to_owned),
            to_tag: h.to().expect("To").tag().map(str::to_owned),
            cseq: h.cseq().expect("CSeq").seq,
            call_id: h.call_id().expect("Call-ID").to_owned(),
        }
    }

    pub(crate) fn proxy_pass(buf: &Bytes) -> Bytes {
        let mut m = parse(buf);
        let h = m.headers_mut();
        h.prepend(HeaderName::Via, Bytes::from_static(super::VIA.as_bytes()));
        let max_forwards = h.max_forwards().expect("Max-Forwards").unwrap_or(70);
        h.set(HeaderName::MaxForwards, (max_forwards - 1).to_string());
        h.prepend(
            HeaderName::RecordRoute,
            Bytes::from_static(super::RECORD_ROUTE.as_bytes()),
        );
        let _ = h.pop_first_value(HeaderName::Route);
        m.to_bytes()
    }
}

mod rsipstack_codec {
    use rsipstack::sip::headers::Header;
    use rsipstack::sip::prelude::*;
    use rsipstack::sip::{MaxForwards, RecordRoute, SipMessage, Via};

    pub(crate) fn parse(buf: &[u8]) -> SipMessage {
        SipMessage::try_from(buf).expect("rsipstack parses the input")
    }

    pub(crate) fn views(buf: &[u8]) -> usize {
        let m = parse(buf);
        let via = m.via_header().expect("Via").typed().expect("typed Via");
        let from_tag = m.from_header().expect("From").tag().expect("From tag");
        let to_tag = m.to_header().expect("To").tag().expect("To tag");
        let seq = m.cseq_header().expect("CSeq").seq().expect("CSeq seq");
        let call_id = m.call_id_header().expect("Call-ID");
        via.branch().map_or(0, |b| b.value().len())
            + from_tag.map_or(0, |t| t.value().len())
            + to_tag.map_or(0, |t| t.value().len())
            + seq as usize
            + call_id.value().len()
    }

    pub(crate) fn view_values(buf: &[u8]) -> super::ViewValues {
        let m = parse(buf);
        let via = m.via_header().expect("Via").typed().expect("typed Via");
        super::ViewValues {
            branch: via.branch().map(|b| b.value().to_owned()),
            from_tag: m
                .from_header()
                .expect("From")
                .tag()
                .expect("tag")
                .map(|t| t.value().to_owned()),
            to_tag: m
                .to_header()
                .expect("To")
                .tag()
                .expect("tag")
                .map(|t| t.value().to_owned()),
            cseq: m.cseq_header().expect("CSeq").seq().expect("seq"),
            call_id: m.call_id_header().expect("Call-ID").value().to_owned(),
        }
    }

    pub(crate) fn proxy_pass(buf: &[u8]) -> Vec<u8> {
        let SipMessage::Request(mut r) = parse(buf) else {
            panic!("the input is a request");
        };
        r.headers.push_front(Via::new(super::VIA).into());
        let max_forwards: u32 = r
            .max_forwards_header()
            .expect("Max-Forwards")
            .value()
            .trim()
            .parse()
            .expect("a number");
        *r.max_forwards_header_mut().expect("Max-Forwards") = MaxForwards::from(max_forwards - 1);
        // Before the first Record-Route, or on top when there is none (RFC 3261 §16.6 step 4).
        let at = r
            .headers
            .iter()
            .position(|h| matches!(h, Header::RecordRoute(_)))
            .unwrap_or(0);
        r.headers
            .0
            .insert(at, RecordRoute::new(super::RECORD_ROUTE).into());
        rsipstack::sip_header_pop!(r.headers, Header::Route);
        r.to_bytes()
    }
}

mod rsip_codec {
    use rsip::Header;
    use rsip::SipMessage;
    use rsip::headers::{MaxForwards, RecordRoute, Via};
    use rsip::prelude::*;

    pub(crate) fn parse(buf: &[u8]) -> SipMessage {
        SipMessage::try_from(buf).expect("rsip parses the input")
    }

    pub(crate) fn views(buf: &[u8]) -> usize {
        let m = parse(buf);
        let via = m.via_header().expect("Via").typed().expect("typed Via");
        let from_tag = m.from_header().expect("From").tag().expect("From tag");
        let to_tag = m.to_header().expect("To").tag().expect("To tag");
        let seq = m.cseq_header().expect("CSeq").seq().expect("CSeq seq");
        let call_id = m.call_id_header().expect("Call-ID");
        via.branch().map_or(0, |b| b.value().len())
            + from_tag.map_or(0, |t| t.value().len())
            + to_tag.map_or(0, |t| t.value().len())
            + seq as usize
            + call_id.value().len()
    }

    pub(crate) fn view_values(buf: &[u8]) -> super::ViewValues {
        let m = parse(buf);
        let via = m.via_header().expect("Via").typed().expect("typed Via");
        super::ViewValues {
            branch: via.branch().map(|b| b.value().to_owned()),
            from_tag: m
                .from_header()
                .expect("From")
                .tag()
                .expect("tag")
                .map(|t| t.value().to_owned()),
            to_tag: m
                .to_header()
                .expect("To")
                .tag()
                .expect("tag")
                .map(|t| t.value().to_owned()),
            cseq: m.cseq_header().expect("CSeq").seq().expect("seq"),
            call_id: m.call_id_header().expect("Call-ID").value().to_owned(),
        }
    }

    pub(crate) fn proxy_pass(buf: &[u8]) -> Vec<u8> {
        let SipMessage::Request(mut r) = parse(buf) else {
            panic!("the input is a request");
        };
        let max_forwards = r
            .max_forwards_header()
            .expect("Max-Forwards")
            .num()
            .expect("a number");
        *r.max_forwards_header_mut().expect("Max-Forwards") = MaxForwards::from(max_forwards - 1);
        // rsip's Headers has no insert: rebuild the list with our Via on top and our
        // Record-Route before the first one (or on top), dropping the first Route.
        let old: Vec<Header> = std::mem::take(&mut r.headers).into_iter().collect();
        let has_rr = old.iter().any(|h| matches!(h, Header::RecordRoute(_)));
        let mut headers = Vec::with_capacity(old.len() + 2);
        headers.push(Header::Via(Via::new(super::VIA)));
        if !has_rr {
            headers.push(Header::RecordRoute(RecordRoute::new(super::RECORD_ROUTE)));
        }
        let (mut rr_done, mut route_done) = (!has_rr, false);
        for h in old {
            match h {
                Header::RecordRoute(_) if !rr_done => {
                    headers.push(Header::RecordRoute(RecordRoute::new(super::RECORD_ROUTE)));
                    rr_done = true;
                    headers.push(h);
                }
                Header::Route(_) if !route_done => route_done = true,
                h => headers.push(h),
            }
        }
        r.headers = headers.into();
        r.to_string().into_bytes()
    }
}

// --- measuring -----------------------------------------------------------------------------

/// How long `--loop` and `--count` run one operation.
enum Limit {
    Secs(f64),
    Ops(u64),
}

struct Timing {
    median_ns: f64,
    p10_ns: f64,
    p90_ns: f64,
}

const BATCH: Duration = Duration::from_millis(20);
const WARM_UP: Duration = Duration::from_millis(300);
const SAMPLES: usize = 25;

/// How many runs of `f` take about one batch.
fn calibrate(f: &mut dyn FnMut() -> usize) -> u64 {
    let mut iters: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        if t.elapsed() >= BATCH {
            return iters;
        }
        iters *= 2;
    }
}

/// ns/op of one batch.
fn sample(f: &mut dyn FnMut() -> usize, iters: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// Times every function in rounds: each round takes one batch of each, so that a burst of
/// load from elsewhere on a shared machine hits every library alike. Returns the timings and,
/// for each round, the batch times (to compute per-round ratios).
fn time_interleaved(fs: &mut [Box<dyn FnMut() -> usize + '_>]) -> (Vec<Timing>, Vec<Vec<f64>>) {
    let iters: Vec<u64> = fs.iter_mut().map(|f| calibrate(f.as_mut())).collect();
    for f in fs.iter_mut() {
        let t = Instant::now();
        while t.elapsed() < WARM_UP {
            black_box(f());
        }
    }
    let rounds: Vec<Vec<f64>> = (0..SAMPLES)
        .map(|_| {
            fs.iter_mut()
                .zip(&iters)
                .map(|(f, &n)| sample(f.as_mut(), n))
                .collect()
        })
        .collect();
    let timings = (0..fs.len())
        .map(|i| {
            let mut v: Vec<f64> = rounds.iter().map(|r| r[i]).collect();
            v.sort_by(f64::total_cmp);
            Timing {
                median_ns: v[SAMPLES / 2],
                p10_ns: v[SAMPLES / 10],
                p90_ns: v[SAMPLES * 9 / 10],
            }
        })
        .collect();
    (timings, rounds)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Allocations and bytes requested per operation (the average of 100 runs after one warm run).
fn allocations(mut f: impl FnMut() -> usize) -> (f64, f64) {
    black_box(f());
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..100 {
        black_box(f());
    }
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    ((a1 - a0) as f64 / 100.0, (b1 - b0) as f64 / 100.0)
}

/// Every library must do the same work: read the same values, and forward a request that
/// lifeline's parser accepts with our Via on top, Max-Forwards decremented and our
/// Record-Route in it.
fn check_same_work(input: &Input) {
    let expected = Lib::Lifeline.view_values(input);
    let max_forwards = lifeline::parse(&input.bytes)
        .headers()
        .max_forwards()
        .expect("Max-Forwards")
        .unwrap_or(70);
    for lib in Lib::ALL {
        assert_eq!(
            lib.view_values(input),
            expected,
            "{} read other values",
            lib.name()
        );
        let out = lib.proxy_output(input);
        let m = sip::Message::parse(Bytes::from(out.clone()), sip::Framing::Stream).unwrap_or_else(
            |e| {
                panic!(
                    "{}'s forwarded request does not parse ({e}):\n{}",
                    lib.name(),
                    String::from_utf8_lossy(&out)
                )
            },
        );
        let h = m.headers();
        assert_eq!(
            h.top_via().expect("Via").branch(),
            Some("z9hG4bK-lifeline-1")
        );
        assert_eq!(
            h.max_forwards().expect("Max-Forwards"),
            Some(max_forwards - 1)
        );
        assert!(
            h.name_addrs(sip::HeaderName::RecordRoute)
                .any(|r| r.is_ok_and(|r| r.uri_raw == "sip:198.51.100.1;lr;r2=on"))
        );
        assert_eq!(m.body(), &lifeline::parse(&input.bytes).body().clone());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut bytes = DEFAULT_INPUT.to_vec();
    let mut input_name = "crates/sip/benches/trunk-invite-1k.sip".to_owned();
    let mut loop_spec: Option<(String, Limit)> = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--input" => {
                input_name = args[i + 1].clone();
                bytes = std::fs::read(&input_name).expect("readable input");
                i += 2;
            }
            "--loop" => {
                let secs = args.get(i + 2).and_then(|s| s.parse().ok()).unwrap_or(10.0);
                loop_spec = Some((args[i + 1].clone(), Limit::Secs(secs)));
                i += 3;
            }
            "--count" => {
                let n = args
                    .get(i + 2)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(10_000);
                loop_spec = Some((args[i + 1].clone(), Limit::Ops(n)));
                i += 3;
            }
            other => panic!("unknown argument {other}; see the doc comment in src/main.rs"),
        }
    }
    let input = Input {
        bytes: Bytes::from(bytes),
    };
    check_same_work(&input);

    if let Some((spec, limit)) = loop_spec {
        let (lib, op) = spec.split_once(':').expect("LIB:OP");
        let lib = Lib::ALL
            .into_iter()
            .find(|l| l.key() == lib)
            .expect("lifeline|rsipstack|rsip");
        let op = Op::ALL
            .into_iter()
            .find(|o| o.key() == op)
            .expect("parse|views|proxy");
        match limit {
            Limit::Secs(secs) => {
                let t = Instant::now();
                let mut n = 0u64;
                while t.elapsed().as_secs_f64() < secs {
                    for _ in 0..1000 {
                        black_box(lib.run(op, &input));
                    }
                    n += 1000;
                }
                println!("{} {}: {n} ops in {secs} s", lib.name(), op.name());
            }
            Limit::Ops(n) => {
                for _ in 0..n {
                    black_box(lib.run(op, &input));
                }
                println!("{} {}: {n} ops", lib.name(), op.name());
            }
        }
        return;
    }

    let header_lines = lifeline::parse(&input.bytes).headers().len();
    println!(
        "input: {input_name} ({} bytes, {header_lines} header lines)\n",
        input.bytes.len()
    );
    println!(
        "| operation | library | ns/op (median) | p10-p90 ns | ops/s | allocs/op | bytes alloc/op |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for op in Op::ALL {
        let input = &input;
        let mut fs: Vec<Box<dyn FnMut() -> usize>> = Lib::ALL
            .into_iter()
            .map(|lib| Box::new(move || lib.run(op, input)) as Box<dyn FnMut() -> usize>)
            .collect();
        let (timings, rounds) = time_interleaved(&mut fs);
        for (lib, t) in Lib::ALL.into_iter().zip(&timings) {
            let (allocs, bytes) = allocations(|| lib.run(op, input));
            println!(
                "| {} | {} | {:.0} | {:.0}-{:.0} | {:.0} | {:.1} | {:.0} |",
                op.name(),
                lib.name(),
                t.median_ns,
                t.p10_ns,
                t.p90_ns,
                1e9 / t.median_ns,
                allocs,
                bytes
            );
        }
        // The median of the per-round ratios: robust to load that comes and goes.
        let vs = |i: usize| median(rounds.iter().map(|r| r[i] / r[0]).collect());
        ratios.push((op, vs(1), vs(2)));
    }
    println!(
        "\n| operation | lifeline speed-up vs rsipstack (median of per-round ratios) | vs rsip |"
    );
    println!("|---|---:|---:|");
    for (op, vs_rsipstack, vs_rsip) in ratios {
        println!("| {} | {vs_rsipstack:.2}x | {vs_rsip:.2}x |", op.name());
    }
}
