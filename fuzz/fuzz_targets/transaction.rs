//! The transaction layer driven by arbitrary input: messages from two peers (one on UDP, one
//! on a connection), clock jumps, and the transaction user's commands (answer, send, cancel,
//! transport errors), in an order the input decides.
//!
//! Checks: nothing panics; `poll_timeout` never lies in the past after `handle_timeout`; and
//! once the TU has answered every server transaction and time has run far ahead, every
//! transaction is gone (the layer cannot leak state, whatever the peers did).
//!
//! Input: chunks separated by 0xFF; each chunk's first byte picks the operation, the rest is
//! its argument (a message, a delay, a status).

#![no_main]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip::transaction::{ClientKey, Event, FlowId, Peer, ServerKey, Transport, TxnConfig, TxnLayer};
use sip::{Framing, Message, Request, Response};

fuzz_target!(|data: &[u8]| {
    let mut layer = TxnLayer::new(TxnConfig::default());
    let mut now = Instant::now();
    let peers = [
        Peer::udp("192.0.2.1:5060".parse().unwrap_or_else(|_| unreachable!())),
        Peer::stream(
            Transport::Tcp,
            "192.0.2.2:5060".parse().unwrap_or_else(|_| unreachable!()),
            Some(FlowId(1)),
        ),
    ];
    let mut servers: BTreeMap<ServerKey, Request> = BTreeMap::new();
    let mut clients: Vec<ClientKey> = Vec::new();
    for chunk in data.split(|b| *b == 0xff) {
        let Some((&op, arg)) = chunk.split_first() else { continue };
        let peer = peers[usize::from(op >> 7)];
        match op % 7 {
            0 | 1 => match Message::parse(Bytes::copy_from_slice(arg), Framing::Datagram) {
                Ok(Message::Request(r)) => layer.handle_request(now, peer, r),
                Ok(Message::Response(r)) => layer.handle_response(now, peer, r),
                Err(_) => {}
            },
            2 => {
                let ms = arg.iter().take(3).fold(0u64, |a, b| a * 256 + u64::from(*b));
                now += Duration::from_millis(ms);
                layer.handle_timeout(now);
                if let Some(t) = layer.poll_timeout() {
                    assert!(t > now, "a timer due now survived handle_timeout");
                }
            }
            3 => {
                let Some(&key) = servers.keys().next() else { continue };
                let status = 100 + u16::from(arg.first().copied().unwrap_or(0)) * 2;
                answer(&mut layer, now, key, status, &mut servers);
            }
            4 => {
                if let Ok(Message::Request(r)) = Message::parse(Bytes::copy_from_slice(arg), Framing::Datagram)
                    && let Ok(key) = layer.send_request(now, peer, r)
                {
                    clients.push(key);
                }
            }
            5 => {
                if let Some(&key) = clients.last() {
                    let _ = layer.cancel(now, key);
                }
            }
            _ => {
                if let Some(&key) = clients.first() {
                    layer.handle_transport_error(now, key.into());
                }
                layer.handle_flow_error(now, FlowId(1));
            }
        }
        drain(&mut layer, &mut servers);
    }
    // The TU answers everything it still owes, then time runs ahead: nothing may remain.
    while let Some(&key) = servers.keys().next() {
        answer(&mut layer, now, key, 500, &mut servers);
        drain(&mut layer, &mut servers);
    }
    for _ in 0..8 {
        now += Duration::from_secs(600);
        layer.handle_timeout(now);
        drain(&mut layer, &mut servers);
        while let Some(&key) = servers.keys().next() {
            answer(&mut layer, now, key, 500, &mut servers);
            drain(&mut layer, &mut servers);
        }
    }
    assert!(layer.is_empty(), "{} transactions leaked", layer.len());
});

fn answer(
    layer: &mut TxnLayer,
    now: Instant,
    key: ServerKey,
    status: u16,
    servers: &mut BTreeMap<ServerKey, Request>,
) {
    let Some(req) = servers.get(&key).cloned() else { return };
    let mut r = Response::for_request(&req, status.min(699), "Fuzz");
    r.set_to_tag("fuzz");
    if layer.send_response(now, key, r).is_err() || status >= 200 {
        servers.remove(&key);
    }
}

fn drain(layer: &mut TxnLayer, servers: &mut BTreeMap<ServerKey, Request>) {
    while layer.poll_transmit().is_some() {}
    while let Some(event) = layer.poll_event() {
        match event {
            Event::Request { key, request, .. } | Event::Cancel { key, request, .. } => {
                servers.insert(key, request);
            }
            Event::Terminated { key: sip::transaction::TxnKey::Server(key) } => {
                servers.remove(&key);
            }
            _ => {}
        }
    }
}
