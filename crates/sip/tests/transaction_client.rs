//! Client transactions through their RFC paths (RFC 3261 §17.1, RFC 6026), on a virtual clock.
//! The test plays the server side.

// Test code: helpers outside #[test] functions may unwrap too (a panic is a failed test).
#![allow(clippy::unwrap_used)]

mod transaction_support;

use sip::transaction::{CancelStatus, ClientKey, Event, Timer, TxnError, TxnKey, TxnState};
use sip::{HeaderName, Message, Method};
use testkit::msg::{Ids, RequestText, response_to};
use transaction_support::*;

const URI: &str = "sip:+15550100123@trunk.example.com";
const EDGE: &str = "edge.example.com:5060";

fn invite(ids: &mut Ids, transport: &str) -> String {
    RequestText::invite(ids, URI, transport, EDGE)
        .header("Route", "<sip:sbc.example.com;lr>")
        .header("Contact", "<sip:edge@edge.example.com>")
        .build()
}

fn non_invite(ids: &mut Ids, method: &str, transport: &str) -> String {
    RequestText::fresh(ids, method, URI, transport, EDGE).build()
}

fn start(h: &mut One, to: sip::transaction::Peer, text: &str) -> ClientKey {
    let key = h.layer.send_request(h.now(), to, request(text)).unwrap();
    h.pump();
    key
}

fn times(sent: &[(std::time::Duration, String)]) -> Vec<u64> {
    sent.iter().map(|(at, _)| at.as_millis() as u64).collect()
}

// --- INVITE client ---------------------------------------------------------------------------

#[test]
fn invite_udp_timer_a_doubles_then_timer_b_times_out() {
    let mut h = One::new();
    let inv = invite(&mut Ids::new(), "UDP");
    let key = start(&mut h, udp(REMOTE), &inv);
    assert_eq!(h.layer.state(key), Some(TxnState::Calling));
    assert_eq!(h.layer.poll_timeout(), Some(h.clock.at(ms(500))));

    h.run_until(secs(60));
    let sent = h.take_sent();
    // Timer A: T1, 2T1, 4T1, ... from each retransmission (RFC 3261 §17.1.1.2).
    assert_eq!(times(&sent), [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert!(sent.iter().all(|(_, l)| l.starts_with("INVITE ")));
    let ck = TxnKey::Client(key);
    assert_eq!(
        described(&h.take_events()),
        [(secs(32), format!("Timeout Timer B {ck}")), (secs(32), format!("Terminated {ck}")),]
    );
    assert_eq!(h.layer.len(), 0);
    assert_eq!(h.layer.poll_timeout(), None);
}

#[test]
fn invite_provisional_stops_retransmissions_and_timer_b() {
    let mut h = One::new();
    let inv = invite(&mut Ids::new(), "UDP");
    let key = start(&mut h, udp(REMOTE), &inv);
    h.run_until(ms(700));
    h.recv_response(udp(REMOTE), &response_to(&inv, 180, "Ringing", Some("b1")));
    assert_eq!(h.layer.state(key), Some(TxnState::Proceeding));
    // Proceeding has no timer: the proxy's Timer C bounds it.
    assert_eq!(h.layer.poll_timeout(), None);
    h.run_until(secs(100));
    assert_eq!(times(&h.take_sent()), [0, 500]);
    assert_eq!(described(&h.take_events()), [(ms(700), format!("Response 180 {key}"))]);
    assert_eq!(h.layer.len(), 1);
}

#[test]
fn invite_non_2xx_final_is_acked_retransmissions_absorbed_then_timer_d() {
    let mut h = One::new();
    let inv = invite(&mut Ids::new(), "UDP");
    let key = start(&mut h, udp(REMOTE), &inv);
    h.run_until(ms(200));
    h.recv_response(udp(REMOTE), &response_to(&inv, 180, "Ringing", Some("b1")));
    h.run_until(secs(3));
    let busy = response_to(&inv, 486, "Busy Here", Some("b1"));
    h.recv_response(udp(REMOTE), &busy);
    assert_eq!(h.layer.state(key), Some(TxnState::Completed));

    // The ACK (RFC 3261 §17.1.1.3).
    let sent = h.take_transmits();
    assert_eq!(sent.len(), 2, "INVITE then ACK");
    let ack = match parse_sent(&sent[1].1.message) {
        Message::Request(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(sent[1].0, secs(3));
    assert_eq!(sent[1].1.to, udp(REMOTE));
    let inv_req = request(&inv);
    assert_eq!(ack.method(), &Method::Ack);
    assert_eq!(ack.uri_str(), inv_req.uri_str());
    let (a, i) = (ack.headers(), inv_req.headers());
    assert_eq!(a.call_id().unwrap(), i.call_id().unwrap());
    assert_eq!(a.get(HeaderName::From), i.get(HeaderName::From));
    assert_eq!(a.to().unwrap().tag(), Some("b1"), "To comes from the response");
    assert_eq!(a.cseq().unwrap().seq, 1);
    assert_eq!(a.cseq().unwrap().method, Method::Ack);
    assert_eq!(a.count(HeaderName::Via), 1);
    assert_eq!(a.top_via().unwrap().raw, i.top_via().unwrap().raw);
    assert_eq!(a.get(HeaderName::Route), Some(&b"<sip:sbc.example.com;lr>"[..]));
    assert_eq!(a.get(HeaderName::Contact), None);

    // A retransmitted final gets the ACK again and is not passed up again.
    h.run_until(secs(5));
    h.recv_response(udp(REMOTE), &busy);
    let again = h.take_transmits();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.message, sent[1].1.message);

    // Timer D: 32 s on UDP.
    h.run_until(secs(60));
    assert_eq!(
        described(&h.take_events()),
        [
            (ms(200), format!("Response 180 {key}")),
            (secs(3), format!("Response 486 {key}")),
            (secs(35), format!("Terminated {key}")),
        ]
    );
    assert!(h.take_sent().is_empty());
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn invite_2xx_enters_accepted_passes_every_2xx_up_until_timer_m() {
    let mut h = One::new();
    let inv = invite(&mut Ids::new(), "UDP");
    let key = start(&mut h, udp(REMOTE), &inv);
    h.run_until(secs(1));
    let ok = response_to(&inv, 200, "OK", Some("b1"));
    assert!(h.layer.client_request(key).is_some());
    h.recv_response(udp(REMOTE), &ok);
    assert_eq!(h.layer.state(key), Some(TxnState::Accepted));
    // The request is let go of with the final response (nothing is resent or cancelled).
    assert!(h.layer.client_request(key).is_none());
    assert_eq!(h.layer.cancel(h.now(), key), Err(TxnError::AlreadyFinal));
    h.run_until(secs(2));
    h.recv_response(udp(REMOTE), &ok);
    // Another fork answers too (RFC 6026 §8.4): passed up.
    h.recv_response(udp(REMOTE), &response_to(&inv, 200, "OK", Some("b2")));
    // Provisionals and non-2xx are late now: dropped.
    h.recv_response(udp(REMOTE), &response_to(&inv, 183, "Progress", Some("b3")));
    h.recv_response(udp(REMOTE), &response_to(&inv, 486, "Busy", Some("b3")));
    h.run_until(secs(60));
    // The ACK for a 2xx is the TU's: the transaction sent only the INVITE (at 0 and 500 ms).
    assert_eq!(times(&h.take_sent()), [0, 500]);
    assert_eq!(
        described(&h.take_events()),
        [
            (secs(1), format!("Response 200 {key}")),
            (secs(2), format!("Response 200 {key}")),
            (secs(2), format!("Response 200 {key}")),
            (secs(33), format!("Terminated {key}")),
        ]
    );
}

#[test]
fn invite_over_tcp_no_retransmissions_and_timer_d_is_zero() {
    let mut h = One::new();
    let inv = invite(&mut Ids::new(), "TCP");
    let key = start(&mut h, tcp(REMOTE, 4), &inv);
    // Only Timer B runs.
    assert_eq!(h.layer.poll_timeout(), Some(h.clock.at(secs(32))));
    h.run_until(secs(10));
    h.recv_response(tcp(REMOTE, 4), &response_to(&inv, 503, "Service Unavailable", Some("x")));
    let sent = h.take_transmits();
    assert_eq!(sent.len(), 2);
    assert!(first_line(&sent[1].1.message).starts_with("ACK "));
    assert_eq!(sent[1].1.to, tcp(REMOTE, 4), "the ACK goes on the same connection");
    assert_eq!(
        described(&h.take_events()),
        [(secs(10), format!("Response 503 {key}")), (secs(10), format!("Terminated {key}")),]
    );
    assert_eq!(h.layer.len(), 0);
    assert_eq!(h.layer.poll_timeout(), None);
}

#[test]
fn invite_over_tcp_times_out_with_timer_b_only() {
    let mut h = One::new();
    let key = start(&mut h, tcp(REMOTE, 1), &invite(&mut Ids::new(), "TCP"));
    h.run_until(secs(40));
    assert_eq!(h.take_sent().len(), 1);
    assert_eq!(
        described(&h.take_events()),
        [
            (secs(32), format!("Timeout Timer B {}", TxnKey::Client(key))),
            (secs(32), format!("Terminated {}", TxnKey::Client(key))),
        ]
    );
}

#[test]
fn transport_error_terminates_the_client_transaction() {
    let mut h = One::new();
    let key = start(&mut h, tcp(REMOTE, 1), &invite(&mut Ids::new(), "TCP"));
    let sent = h.take_transmits();
    assert_eq!(sent[0].1.txn, Some(TxnKey::Client(key)));
    h.layer.handle_transport_error(h.now(), TxnKey::Client(key));
    h.pump();
    let ck = TxnKey::Client(key);
    assert_eq!(
        described(&h.take_events()),
        [(secs(0), format!("TransportError {ck}")), (secs(0), format!("Terminated {ck}")),]
    );
    // A late report for a gone transaction is ignored.
    h.layer.handle_transport_error(h.now(), ck);
    h.pump();
    assert!(h.take_events().is_empty());
}

// --- non-INVITE client -----------------------------------------------------------------------

#[test]
fn non_invite_udp_timer_e_doubles_capped_at_t2_then_timer_f() {
    let mut h = One::new();
    let key = start(&mut h, udp(REMOTE), &non_invite(&mut Ids::new(), "OPTIONS", "UDP"));
    assert_eq!(h.layer.state(key), Some(TxnState::Trying));
    h.run_until(secs(60));
    let sent = h.take_sent();
    // 500 ms, 1 s, 2 s, then 4 s (T2) until Timer F at 64*T1 (RFC 3261 §17.1.2.2).
    assert_eq!(times(&sent), [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    assert!(sent.iter().all(|(_, l)| l.starts_with("OPTIONS ")));
    let ck = TxnKey::Client(key);
    assert_eq!(
        described(&h.take_events()),
        [(secs(32), format!("Timeout Timer F {ck}")), (secs(32), format!("Terminated {ck}")),]
    );
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn non_invite_after_provisional_timer_e_fires_every_t2() {
    let mut h = One::new();
    let req = non_invite(&mut Ids::new(), "REGISTER", "UDP");
    let key = start(&mut h, udp(REMOTE), &req);
    h.run_until(ms(700));
    h.recv_response(udp(REMOTE), &response_to(&req, 100, "Trying", None));
    assert_eq!(h.layer.state(key), Some(TxnState::Proceeding));
    h.run_until(secs(40));
    // The pending Timer E (1.5 s) fires, then every T2.
    assert_eq!(
        times(&h.take_sent()),
        [0, 500, 1500, 5500, 9500, 13500, 17500, 21500, 25500, 29500]
    );
    let ck = TxnKey::Client(key);
    assert_eq!(
        described(&h.take_events()),
        [
            (ms(700), format!("Response 100 {key}")),
            (secs(32), format!("Timeout Timer F {ck}")),
            (secs(32), format!("Terminated {ck}")),
        ]
    );
}

#[test]
fn non_invite_final_then_timer_k_absorbs_retransmissions() {
    let mut h = One::new();
    let req = non_invite(&mut Ids::new(), "MESSAGE", "UDP");
    let key = start(&mut h, udp(REMOTE), &req);
    h.run_until(ms(600));
    let ok = response_to(&req, 200, "OK", Some("t"));
    h.recv_response(udp(REMOTE), &ok);
    assert_eq!(h.layer.state(key), Some(TxnState::Completed));
    h.run_until(secs(2));
    h.recv_response(udp(REMOTE), &ok);
    h.recv_response(udp(REMOTE), &response_to(&req, 500, "Oops", Some("t")));
    h.run_until(secs(20));
    assert_eq!(times(&h.take_sent()), [0, 500], "no retransmission after the final");
    assert_eq!(
        described(&h.take_events()),
        [
            (ms(600), format!("Response 200 {key}")),
            // Timer K: T4 = 5 s.
            (ms(5600), format!("Terminated {key}")),
        ]
    );
}

#[test]
fn non_invite_over_tcp_no_retransmissions_and_timer_k_is_zero() {
    let mut h = One::new();
    let req = non_invite(&mut Ids::new(), "BYE", "TCP");
    let key = start(&mut h, tcp(REMOTE, 9), &req);
    assert_eq!(h.layer.poll_timeout(), Some(h.clock.at(secs(32))));
    h.run_until(secs(3));
    h.recv_response(tcp(REMOTE, 9), &response_to(&req, 200, "OK", None));
    assert_eq!(times(&h.take_sent()), [0]);
    assert_eq!(
        described(&h.take_events()),
        [(secs(3), format!("Response 200 {key}")), (secs(3), format!("Terminated {key}")),]
    );
    assert_eq!(h.layer.len(), 0);
}

// --- matching and refusals -------------------------------------------------------------------

#[test]
fn responses_match_by_branch_and_cseq_method_else_stray() {
    let mut h = One::new();
    let mut ids = Ids::new();
    let inv = invite(&mut ids, "UDP");
    let key = start(&mut h, udp(REMOTE), &inv);
    // Same branch, other CSeq method: not this transaction.
    let wrong_method = response_to(&inv, 200, "OK", Some("x")).replace("1 INVITE", "1 CANCEL");
    h.recv_response(udp(REMOTE), &wrong_method);
    // Unknown branch.
    let other = invite(&mut ids, "UDP");
    h.recv_response(udp(REMOTE), &response_to(&other, 180, "Ringing", None));
    assert_eq!(
        described(&h.take_events()),
        [(secs(0), "Stray 200".to_owned()), (secs(0), "Stray 180".to_owned())]
    );
    assert_eq!(h.layer.state(key), Some(TxnState::Calling));
}

#[test]
fn send_request_refusals() {
    let mut h = One::new();
    let mut ids = Ids::new();
    let now = h.now();
    let ack = RequestText::fresh(&mut ids, "ACK", URI, "UDP", EDGE).build();
    assert_eq!(
        h.layer.send_request(now, udp(REMOTE), request(&ack)),
        Err(TxnError::AckIsNotATransaction)
    );
    let no_branch =
        RequestText::new("OPTIONS", URI).raw_via("SIP/2.0/UDP edge.example.com").build();
    assert_eq!(
        h.layer.send_request(now, udp(REMOTE), request(&no_branch)),
        Err(TxnError::MissingBranch)
    );
    let inv = invite(&mut ids, "UDP");
    h.layer.send_request(now, udp(REMOTE), request(&inv)).unwrap();
    assert_eq!(
        h.layer.send_request(now, udp(REMOTE), request(&inv)),
        Err(TxnError::DuplicateBranch)
    );
}

// --- CANCEL (RFC 3261 §9.1) -------------------------------------------------------------------

fn cancel_sent(h: &mut One) -> sip::Request {
    h.pump();
    let sent = h.take_transmits();
    let cancels: Vec<_> =
        sent.iter().filter(|(_, t)| first_line(&t.message).starts_with("CANCEL ")).collect();
    assert_eq!(cancels.len(), 1, "{:?}", sent);
    match parse_sent(&cancels[0].1.message) {
        Message::Request(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn cancel_before_any_provisional_is_held_until_the_1xx() {
    let mut h = One::new();
    let inv = invite(&mut Ids::new(), "UDP");
    let key = start(&mut h, udp(REMOTE), &inv);
    h.run_until(ms(100));
    assert_eq!(h.layer.cancel(h.now(), key), Ok(CancelStatus::Held));
    assert_eq!(h.layer.cancel(h.now(), key), Ok(CancelStatus::Held));
    h.run_until(ms(800));
    let sent = h.take_sent();
    assert!(sent.iter().all(|(_, l)| l.starts_with("INVITE ")), "{sent:?}");

    h.recv_response(udp(REMOTE), &response_to(&inv, 180, "Ringing", Some("b1")));
    let events = h.take_events();
    let cancel_key = match &events[..] {
        [(_, Event::Response { key: k, .. }), (_, Event::CancelSent { invite, cancel })]
            if *k == key && *invite == key =>
        {
            *cancel
        }
        other => panic!("{:?}", described(other)),
    };
    let cancel = cancel_sent(&mut h);
    let i = request(&inv);
    assert_eq!(cancel.method(), &Method::Cancel);
    assert_eq!(cancel.uri_str(), i.uri_str());
    let (c, ih) = (cancel.headers(), i.headers());
    assert_eq!(c.call_id().unwrap(), ih.call_id().unwrap());
    assert_eq!(c.get(HeaderName::From), ih.get(HeaderName::From));
    assert_eq!(c.get(HeaderName::To), ih.get(HeaderName::To));
    assert_eq!(c.cseq().unwrap().seq, 1);
    assert_eq!(c.cseq().unwrap().method, Method::Cancel);
    assert_eq!(c.count(HeaderName::Via), 1);
    assert_eq!(c.top_via().unwrap().raw, ih.top_via().unwrap().raw);
    assert_eq!(c.get(HeaderName::Route), ih.get(HeaderName::Route));
    assert_eq!(h.layer.cancel(h.now(), key), Ok(CancelStatus::Sent(cancel_key)));

    // The CANCEL's own 200 and the INVITE's 487 each go to their transaction.
    let cancel_text = text(&cancel.to_bytes());
    h.recv_response(udp(REMOTE), &response_to(&cancel_text, 200, "OK", Some("b1")));
    h.recv_response(udp(REMOTE), &response_to(&inv, 487, "Request Terminated", Some("b1")));
    assert_eq!(
        described(&h.take_events()),
        [(ms(800), format!("Response 200 {cancel_key}")), (ms(800), format!("Response 487 {key}")),]
    );
    assert!(h.take_sent()[0].1.starts_with("ACK "));
}

#[test]
fn held_cancel_is_dropped_when_the_final_comes_first() {
    let mut h = One::new();
    let inv = invite(&mut Ids::new(), "UDP");
    let key = start(&mut h, udp(REMOTE), &inv);
    assert_eq!(h.layer.cancel(h.now(), key), Ok(CancelStatus::Held));
    h.run_until(ms(300));
    h.recv_response(udp(REMOTE), &response_to(&inv, 486, "Busy Here", Some("b")));
    h.run_until(secs(40));
    let sent = h.take_sent();
    assert!(!sent.iter().any(|(_, l)| l.starts_with("CANCEL ")), "{sent:?}");
    assert_eq!(h.layer.cancel(h.now(), key), Err(TxnError::NoTransaction));
    assert!(!h.take_events().iter().any(|(_, e)| matches!(e, Event::CancelSent { .. })));
}

#[test]
fn cancel_crossing_the_200_both_finals_go_up() {
    let mut h = One::new();
    let inv = invite(&mut Ids::new(), "UDP");
    let key = start(&mut h, udp(REMOTE), &inv);
    h.recv_response(udp(REMOTE), &response_to(&inv, 180, "Ringing", Some("b")));
    h.run_until(secs(5));
    let cancel_key = match h.layer.cancel(h.now(), key) {
        Ok(CancelStatus::Sent(k)) => k,
        other => panic!("{other:?}"),
    };
    h.pump();
    let cancel = cancel_sent(&mut h);
    // The 200 to the INVITE was already on its way: it still goes up (the proxy forwards
    // it), and the CANCEL gets its own final.
    h.run_until(ms(5010));
    h.recv_response(udp(REMOTE), &response_to(&inv, 200, "OK", Some("b")));
    h.recv_response(udp(REMOTE), &response_to(&text(&cancel.to_bytes()), 200, "OK", Some("b")));
    assert_eq!(h.layer.state(key), Some(TxnState::Accepted));
    assert_eq!(h.layer.state(cancel_key), Some(TxnState::Completed));
    // Too late for another CANCEL of an answered INVITE... but the first is returned.
    assert_eq!(h.layer.cancel(h.now(), key), Ok(CancelStatus::Sent(cancel_key)));
    assert_eq!(
        described(&h.take_events()),
        [
            (secs(0), format!("Response 180 {key}")),
            (ms(5010), format!("Response 200 {key}")),
            (ms(5010), format!("Response 200 {cancel_key}")),
        ]
    );
}

#[test]
fn cancel_refused_after_the_final_and_for_non_invite() {
    let mut h = One::new();
    let mut ids = Ids::new();
    let inv = invite(&mut ids, "UDP");
    let key = start(&mut h, udp(REMOTE), &inv);
    h.recv_response(udp(REMOTE), &response_to(&inv, 200, "OK", Some("b")));
    assert_eq!(h.layer.cancel(h.now(), key), Err(TxnError::AlreadyFinal));
    let opt = start(&mut h, udp(REMOTE), &non_invite(&mut ids, "OPTIONS", "UDP"));
    assert_eq!(h.layer.cancel(h.now(), opt), Err(TxnError::NotInvite));
}

#[test]
fn cancel_with_reason_carries_the_reason_header() {
    let mut h = One::new();
    let inv = invite(&mut Ids::new(), "UDP");
    let key = start(&mut h, udp(REMOTE), &inv);
    h.recv_response(udp(REMOTE), &response_to(&inv, 183, "Progress", Some("b")));
    let reason = r#"SIP;cause=200;text="Call completed elsewhere""#;
    assert!(matches!(h.layer.cancel_with_reason(h.now(), key, reason), Ok(CancelStatus::Sent(_))));
    let cancel = cancel_sent(&mut h);
    assert_eq!(cancel.headers().get(HeaderName::Reason), Some(reason.as_bytes()));
}

#[test]
fn timer_names_cover_the_table() {
    assert_eq!(Timer::ALL.len(), 12);
    assert_eq!(Timer::M.name(), "Timer M");
}

#[test]
fn cancelled_invite_without_a_final_gives_up_64_t1_after_the_cancel() {
    let mut h = One::new();
    let inv = invite(&mut Ids::new(), "UDP");
    let key = start(&mut h, udp(REMOTE), &inv);
    h.run_until(secs(1));
    h.recv_response(udp(REMOTE), &response_to(&inv, 180, "Ringing", Some("b")));
    h.run_until(secs(10));
    let Ok(CancelStatus::Sent(cancel_key)) = h.layer.cancel(h.now(), key) else {
        panic!("sent at once in Proceeding")
    };
    let cancel = cancel_sent(&mut h);
    h.run_until(ms(10_100));
    h.recv_response(udp(REMOTE), &response_to(&text(&cancel.to_bytes()), 200, "OK", Some("b")));
    // The 487 never comes: RFC 3261 §9.1 gives the INVITE 64*T1 after the CANCEL.
    h.run_until(secs(100));
    let ik = TxnKey::Client(key);
    assert_eq!(
        described(&h.take_events()),
        [
            (secs(1), format!("Response 180 {key}")),
            (ms(10_100), format!("Response 200 {cancel_key}")),
            (ms(15_100), format!("Terminated {cancel_key}")),
            (secs(42), format!("Timeout Timer B {ik}")),
            (secs(42), format!("Terminated {ik}")),
        ]
    );
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn messages_without_the_headers_matching_reads_are_dropped_or_refused_never_a_panic() {
    let mut h = One::new();
    let now = h.now();
    let bare = sip::Request::new(Method::Invite, URI).unwrap();
    h.layer.handle_request(now, udp(REMOTE), bare.clone());
    assert_eq!(h.layer.send_request(now, udp(REMOTE), bare), Err(TxnError::MissingBranch));
    let mut no_cseq = sip::Request::new(Method::Options, URI).unwrap();
    no_cseq.headers_mut().push(HeaderName::Via, "SIP/2.0/UDP h;branch=z9hG4bKx");
    assert_eq!(h.layer.send_request(now, udp(REMOTE), no_cseq.clone()), Err(TxnError::BadCSeq));
    h.layer.handle_request(now, udp(REMOTE), no_cseq);
    for status in [0, 99, 700, 999] {
        h.layer.handle_response(now, udp(REMOTE), sip::Response::new(status, "x"));
    }
    h.layer.handle_response(now, udp(REMOTE), sip::Response::new(200, "OK"));
    h.pump();
    assert_eq!(described(&h.take_events()), [(secs(0), "Stray 200".to_owned())]);
    assert!(h.take_sent().is_empty());
    assert_eq!(h.layer.len(), 0);
}
