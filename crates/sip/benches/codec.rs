//! Codec benchmarks on a realistic 1 KB trunk INVITE with SDP
//! (`benches/trunk-invite-1k.sip`, a copy of `tests/torture/clients/trunk-invite-1k.sip`):
//!
//! - `parse`: bytes to a checked message (what every received datagram or frame costs);
//! - `parse_views`: parse, then the views every transaction and proxy decision reads (top Via
//!   and its branch, From and To tags, CSeq, Call-ID);
//! - `proxy_pass`: what a stateful proxy does to a request it forwards (RFC 3261 §16.6): parse,
//!   push a Via, decrement Max-Forwards, push a Record-Route, pop a Route when present, print.
//!
//! `cargo bench -p sip` runs them; `bench/codec` compares the same three with rsip and
//! rsipstack.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sip::{Framing, HeaderName, Message};

const INVITE: &[u8] = include_bytes!("trunk-invite-1k.sip");

fn parse(buf: &Bytes) -> Message {
    Message::parse(buf.clone(), Framing::Datagram).expect("the bench INVITE parses")
}

fn views(m: &Message) -> usize {
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

fn proxy_pass(buf: &Bytes) -> Bytes {
    let mut m = parse(buf);
    let h = m.headers_mut();
    h.prepend(
        HeaderName::Via,
        Bytes::from_static(b"SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-lifeline-1;rport"),
    );
    let max_forwards = h.max_forwards().expect("Max-Forwards").unwrap_or(70);
    h.set(HeaderName::MaxForwards, (max_forwards - 1).to_string());
    h.prepend(HeaderName::RecordRoute, Bytes::from_static(b"<sip:198.51.100.1;lr;r2=on>"));
    let _ = h.pop_first_value(HeaderName::Route);
    m.to_bytes()
}

fn codec(c: &mut Criterion) {
    let buf = Bytes::from_static(INVITE);
    let mut g = c.benchmark_group("trunk_invite_1k");
    g.throughput(Throughput::Bytes(INVITE.len() as u64));
    g.bench_function("parse", |b| b.iter(|| parse(black_box(&buf))));
    g.bench_function("parse_views", |b| b.iter(|| views(&parse(black_box(&buf)))));
    g.bench_function("proxy_pass", |b| b.iter(|| proxy_pass(black_box(&buf))));
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
