//! Server transactions through their RFC paths (RFC 3261 §17.2, RFC 6026), CANCEL matching and
//! RFC 2543 matching, on a virtual clock. The test plays the client side.

// Test code: helpers outside #[test] functions may unwrap too (a panic is a failed test).
#![allow(clippy::unwrap_used)]

mod transaction_support;

use sip::transaction::{Event, ServerKey, TxnConfig, TxnError, TxnKey, TxnState};
use sip::{HeaderName, Message, Response};
use testkit::msg::{Ids, RequestText};
use transaction_support::*;

const URI: &str = "sip:alice@edge.example.com";
const UA: &str = "192.0.2.10:5060";

fn new_request(h: &One) -> (ServerKey, sip::Request) {
    let (_, e) = h.events.last().expect("an event");
    match e {
        Event::Request { key, request, .. } => (*key, request.clone()),
        other => panic!("{other:?}"),
    }
}

fn reply(req: &sip::Request, status: u16, reason: &str) -> Response {
    let mut r = Response::for_request(req, status, reason);
    if status > 100 {
        r.set_to_tag("edge1");
    }
    r
}

fn times_and_lines(sent: Vec<(std::time::Duration, String)>) -> Vec<(u64, String)> {
    sent.into_iter().map(|(at, l)| (at.as_millis() as u64, l)).collect()
}

// --- INVITE server ---------------------------------------------------------------------------

#[test]
fn invite_retransmission_gets_the_last_provisional_again() {
    let mut h = One::new();
    let inv = RequestText::invite(&mut Ids::new(), URI, "UDP", UA).build();
    h.recv_request(udp(UA), &inv);
    let (key, req) = new_request(&h);
    assert_eq!(h.layer.state(key), Some(TxnState::Proceeding));
    // 100 Trying at once (the TU is a proxy: it cannot promise 200 ms).
    assert_eq!(h.take_sent(), [(secs(0), "SIP/2.0 100 Trying".to_owned())]);

    h.run_until(ms(500));
    h.recv_request(udp(UA), &inv);
    assert_eq!(h.take_sent(), [(ms(500), "SIP/2.0 100 Trying".to_owned())]);

    h.layer.send_response(h.now(), key, reply(&req, 180, "Ringing")).unwrap();
    h.pump();
    h.run_until(ms(1500));
    h.recv_request(udp(UA), &inv);
    assert_eq!(
        times_and_lines(h.take_sent()),
        [(500, "SIP/2.0 180 Ringing".to_owned()), (1500, "SIP/2.0 180 Ringing".to_owned()),]
    );
    // Only the first INVITE reached the TU.
    assert_eq!(described(&h.take_events()), [(secs(0), format!("Request INVITE {key}"))]);
    let sent_to: Vec<_> = h.sent.iter().map(|(_, t)| t.to).collect();
    assert!(sent_to.iter().all(|p| *p == udp(UA)));
}

#[test]
fn without_auto_trying_a_retransmission_before_any_response_is_absorbed() {
    let mut h = One::with(TxnConfig { send_trying: false, ..TxnConfig::default() });
    let inv = RequestText::invite(&mut Ids::new(), URI, "UDP", UA).build();
    h.recv_request(udp(UA), &inv);
    h.recv_request(udp(UA), &inv);
    assert!(h.take_sent().is_empty());
    assert_eq!(h.take_events().len(), 1);
}

#[test]
fn invite_non_2xx_final_timer_g_capped_at_t2_then_timer_h() {
    let mut h = One::new();
    let inv = RequestText::invite(&mut Ids::new(), URI, "UDP", UA).build();
    h.recv_request(udp(UA), &inv);
    let (key, req) = new_request(&h);
    h.run_until(secs(2));
    h.take_sent();
    h.layer.send_response(h.now(), key, reply(&req, 486, "Busy Here")).unwrap();
    assert_eq!(h.layer.state(key), Some(TxnState::Completed));
    h.run_until(secs(60));
    let sent = times_and_lines(h.take_sent());
    assert!(sent.iter().all(|(_, l)| l == "SIP/2.0 486 Busy Here"));
    let t: Vec<u64> = sent.iter().map(|(at, _)| at - 2000).collect();
    // Timer G: T1, 2T1, 4T1, then T2 (RFC 3261 §17.2.1); Timer H at 64*T1.
    assert_eq!(t, [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    let sk = TxnKey::Server(key);
    assert_eq!(
        described(&h.take_events()),
        [
            (secs(0), format!("Request INVITE {key}")),
            (secs(34), format!("Timeout Timer H {sk}")),
            (secs(34), format!("Terminated {sk}")),
        ]
    );
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn ack_for_non_2xx_is_absorbed_then_timer_i() {
    let mut h = One::new();
    let inv = RequestText::invite(&mut Ids::new(), URI, "UDP", UA).build();
    h.recv_request(udp(UA), &inv);
    let (key, req) = new_request(&h);
    let busy = reply(&req, 486, "Busy Here");
    h.layer.send_response(h.now(), key, busy.clone()).unwrap();
    h.pump();
    h.run_until(ms(1000));
    // A retransmitted INVITE in Completed gets the final again.
    h.recv_request(udp(UA), &inv);
    h.run_until(ms(1200));
    // The ACK: same branch, To with the response's tag, CSeq 1 ACK.
    let ack_text =
        text(&sip::transaction::ack_for_non_2xx(&request(&inv), &busy).unwrap().to_bytes());
    h.recv_request(udp(UA), &ack_text);
    assert_eq!(h.layer.state(key), Some(TxnState::Confirmed));
    h.run_until(ms(3000));
    h.recv_request(udp(UA), &ack_text);
    h.recv_request(udp(UA), &inv);
    h.run_until(secs(20));
    assert_eq!(
        times_and_lines(h.take_sent()),
        [
            (0, "SIP/2.0 100 Trying".to_owned()),
            (0, "SIP/2.0 486 Busy Here".to_owned()),
            (500, "SIP/2.0 486 Busy Here".to_owned()),
            (1000, "SIP/2.0 486 Busy Here".to_owned()),
        ],
        "Timer G stops at the ACK; Confirmed absorbs ACKs and INVITEs"
    );
    // Timer I: T4 after the ACK.
    assert_eq!(
        described(&h.take_events()),
        [(secs(0), format!("Request INVITE {key}")), (ms(6200), format!("Terminated {key}")),]
    );
    assert_eq!(
        h.layer.send_response(h.now(), key, reply(&req, 500, "x")),
        Err(TxnError::NoTransaction)
    );
}

#[test]
fn invite_2xx_accepted_absorbs_retransmissions_passes_ack_up_until_timer_l() {
    let mut h = One::new();
    let mut ids = Ids::new();
    let inv = RequestText::invite(&mut ids, URI, "UDP", UA).build();
    h.recv_request(udp(UA), &inv);
    let (key, req) = new_request(&h);
    h.run_until(secs(1));
    let ok = reply(&req, 200, "OK");
    h.layer.send_response(h.now(), key, ok.clone()).unwrap();
    assert_eq!(h.layer.state(key), Some(TxnState::Accepted));
    // No retransmission by the transaction; INVITE retransmissions absorbed (RFC 6026 §8.7).
    h.run_until(secs(2));
    h.recv_request(udp(UA), &inv);
    // The UAS core retransmits its 2xx through the transaction.
    h.layer.send_response(h.now(), key, ok.clone()).unwrap();
    assert_eq!(
        h.layer.send_response(h.now(), key, reply(&req, 486, "Busy Here")),
        Err(TxnError::FinalAlreadySent)
    );
    assert_eq!(
        h.layer.send_response(h.now(), key, reply(&req, 180, "Ringing")),
        Err(TxnError::FinalAlreadySent)
    );
    // The ACK for the 2xx is a new transaction (new branch): passed up, not absorbed.
    let ack = RequestText::new("ACK", URI)
        .via("UDP", UA, &ids.branch())
        .from(std::str::from_utf8(request(&inv).headers().get(HeaderName::From).unwrap()).unwrap())
        .to("<sip:alice@edge.example.com>;tag=edge1")
        .build();
    h.run_until(secs(3));
    h.recv_request(udp(UA), &ack);
    h.run_until(secs(60));
    assert_eq!(
        times_and_lines(h.take_sent()),
        [
            (0, "SIP/2.0 100 Trying".to_owned()),
            (1000, "SIP/2.0 200 OK".to_owned()),
            (2000, "SIP/2.0 200 OK".to_owned()),
        ]
    );
    assert_eq!(
        described(&h.take_events()),
        [
            (secs(0), format!("Request INVITE {key}")),
            (secs(3), "Ack".to_owned()),
            // Timer L: 64*T1 after the 2xx.
            (secs(33), format!("Terminated {key}")),
        ]
    );
}

#[test]
fn ack_matching_an_accepted_invite_is_passed_up_with_its_key() {
    let mut h = One::new();
    let inv = RequestText::invite(&mut Ids::new(), URI, "UDP", UA).build();
    h.recv_request(udp(UA), &inv);
    let (key, req) = new_request(&h);
    let ok = reply(&req, 200, "OK");
    h.layer.send_response(h.now(), key, ok.clone()).unwrap();
    // An ACK reusing the INVITE's branch (seen from broken UAs): RFC 6026 §8.7 passes it up.
    let ack = text(&sip::transaction::ack_for_non_2xx(&req, &ok).unwrap().to_bytes());
    h.recv_request(udp(UA), &ack);
    assert_eq!(
        described(&h.take_events()),
        [(secs(0), format!("Request INVITE {key}")), (secs(0), format!("Ack of {key}")),]
    );
}

#[test]
fn invite_over_tcp_no_timer_g_and_timer_i_is_zero() {
    let mut h = One::new();
    let inv = RequestText::invite(&mut Ids::new(), URI, "TCP", UA).build();
    h.recv_request(tcp(UA, 3), &inv);
    let (key, req) = new_request(&h);
    let busy = reply(&req, 603, "Decline");
    h.layer.send_response(h.now(), key, busy.clone()).unwrap();
    h.pump();
    // Only Timer H runs.
    assert_eq!(h.layer.poll_timeout(), Some(h.clock.at(secs(32))));
    h.run_until(secs(5));
    let ack = text(&sip::transaction::ack_for_non_2xx(&req, &busy).unwrap().to_bytes());
    h.recv_request(tcp(UA, 3), &ack);
    let sent = h.take_transmits();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|(_, t)| t.to == tcp(UA, 3)));
    assert_eq!(
        described(&h.take_events()),
        [(secs(0), format!("Request INVITE {key}")), (secs(5), format!("Terminated {key}")),]
    );
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn server_transport_error_in_accepted_keeps_the_transaction() {
    let mut h = One::new();
    let inv = RequestText::invite(&mut Ids::new(), URI, "TCP", UA).build();
    h.recv_request(tcp(UA, 3), &inv);
    let (key, req) = new_request(&h);
    h.layer.send_response(h.now(), key, reply(&req, 200, "OK")).unwrap();
    h.layer.handle_transport_error(h.now(), key.into());
    h.pump();
    assert_eq!(h.layer.state(key), Some(TxnState::Accepted));
    let sk = TxnKey::Server(key);
    assert_eq!(described(&h.take_events())[1..], [(secs(0), format!("TransportError {sk}"))]);
}

// --- non-INVITE server -----------------------------------------------------------------------

#[test]
fn non_invite_retransmission_gets_the_last_response_then_timer_j() {
    let mut h = One::new();
    let req_text = RequestText::fresh(&mut Ids::new(), "REGISTER", URI, "UDP", UA).build();
    h.recv_request(udp(UA), &req_text);
    let (key, req) = new_request(&h);
    assert_eq!(h.layer.state(key), Some(TxnState::Trying));
    h.run_until(ms(500));
    // Trying: absorbed, nothing to send yet.
    h.recv_request(udp(UA), &req_text);
    assert!(h.take_sent().is_empty());

    h.layer.send_response(h.now(), key, reply(&req, 100, "Trying")).unwrap();
    h.pump();
    assert_eq!(h.layer.state(key), Some(TxnState::Proceeding));
    h.run_until(ms(1500));
    h.recv_request(udp(UA), &req_text);
    h.layer.send_response(h.now(), key, reply(&req, 200, "OK")).unwrap();
    assert_eq!(
        h.layer.send_response(h.now(), key, reply(&req, 200, "OK")),
        Err(TxnError::FinalAlreadySent)
    );
    h.pump();
    h.run_until(ms(3500));
    h.recv_request(udp(UA), &req_text);
    h.run_until(secs(60));
    assert_eq!(
        times_and_lines(h.take_sent()),
        [
            (500, "SIP/2.0 100 Trying".to_owned()),
            (1500, "SIP/2.0 100 Trying".to_owned()),
            (1500, "SIP/2.0 200 OK".to_owned()),
            (3500, "SIP/2.0 200 OK".to_owned()),
        ]
    );
    assert_eq!(
        described(&h.take_events()),
        [
            (secs(0), format!("Request REGISTER {key}")),
            // Timer J: 64*T1 after the final on UDP.
            (ms(33500), format!("Terminated {key}")),
        ]
    );
}

#[test]
fn non_invite_over_tcp_timer_j_is_zero() {
    let mut h = One::new();
    let req_text = RequestText::fresh(&mut Ids::new(), "OPTIONS", URI, "TCP", UA).build();
    h.recv_request(tcp(UA, 8), &req_text);
    let (key, req) = new_request(&h);
    h.layer.send_response(h.now(), key, reply(&req, 200, "OK")).unwrap();
    h.pump();
    assert_eq!(
        described(&h.take_events()),
        [(secs(0), format!("Request OPTIONS {key}")), (secs(0), format!("Terminated {key}")),]
    );
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn response_status_is_checked() {
    let mut h = One::new();
    let req_text = RequestText::fresh(&mut Ids::new(), "OPTIONS", URI, "UDP", UA).build();
    h.recv_request(udp(UA), &req_text);
    let (key, req) = new_request(&h);
    assert_eq!(
        h.layer.send_response(h.now(), key, Response::for_request(&req, 99, "x")),
        Err(TxnError::BadStatus)
    );
    assert_eq!(
        h.layer.send_response(h.now(), ServerKey::clone(&key), Response::new(700, "x")),
        Err(TxnError::BadStatus)
    );
}

// --- CANCEL (RFC 3261 §9.2, §16.10) ------------------------------------------------------------

#[test]
fn cancel_matching_a_live_invite_is_reported_against_it() {
    let mut h = One::new();
    let inv_text = RequestText::invite(&mut Ids::new(), URI, "UDP", UA).build();
    h.recv_request(udp(UA), &inv_text);
    let (invite, inv) = new_request(&h);
    h.layer.send_response(h.now(), invite, reply(&inv, 180, "Ringing")).unwrap();
    let cancel_text = text(&sip::transaction::cancel_for(&inv, None).unwrap().to_bytes());
    h.run_until(secs(2));
    h.recv_request(udp(UA), &cancel_text);
    let (cancel, cancel_req) = match &h.events.last().unwrap().1 {
        Event::Cancel { key, invite: Some(i), request, .. } if *i == invite => {
            (*key, request.clone())
        }
        other => panic!("{other:?}"),
    };
    assert_ne!(cancel, invite);
    assert!(!h.layer.is_answered(invite));
    // The TU answers 200 to the CANCEL and 487 to the INVITE.
    h.layer.send_response(h.now(), cancel, reply(&cancel_req, 200, "OK")).unwrap();
    let terminated = reply(&inv, 487, "Request Terminated");
    h.layer.send_response(h.now(), invite, terminated.clone()).unwrap();
    assert!(h.layer.is_answered(invite));
    h.pump();
    // A retransmitted CANCEL gets its 200 again; the ACK for the 487 is absorbed.
    h.run_until(ms(2100));
    h.recv_request(udp(UA), &cancel_text);
    let ack = text(&sip::transaction::ack_for_non_2xx(&inv, &terminated).unwrap().to_bytes());
    h.recv_request(udp(UA), &ack);
    assert_eq!(h.layer.state(invite), Some(TxnState::Confirmed));

    let sent: Vec<_> = h
        .take_transmits()
        .into_iter()
        .map(|(at, t)| {
            let m = parse_sent(&t.message);
            let cseq = m.headers().cseq().unwrap();
            (at.as_millis() as u64, first_line(&t.message), cseq.method)
        })
        .collect();
    use sip::Method::{Cancel, Invite};
    assert_eq!(
        sent,
        [
            (0, "SIP/2.0 100 Trying".to_owned(), Invite),
            (0, "SIP/2.0 180 Ringing".to_owned(), Invite),
            (2000, "SIP/2.0 200 OK".to_owned(), Cancel),
            (2000, "SIP/2.0 487 Request Terminated".to_owned(), Invite),
            (2100, "SIP/2.0 200 OK".to_owned(), Cancel),
        ]
    );
}

#[test]
fn cancel_for_an_unknown_transaction_is_reported_unmatched() {
    let mut h = One::new();
    let mut ids = Ids::new();
    let inv = request(&RequestText::invite(&mut ids, URI, "UDP", UA).build());
    let cancel_text = text(&sip::transaction::cancel_for(&inv, None).unwrap().to_bytes());
    h.recv_request(udp(UA), &cancel_text);
    let (key, req) = match &h.events.last().unwrap().1 {
        Event::Cancel { key, invite: None, request, .. } => (*key, request.clone()),
        other => panic!("{other:?}"),
    };
    h.layer
        .send_response(h.now(), key, reply(&req, 481, "Call/Transaction Does Not Exist"))
        .unwrap();
    h.pump();
    assert_eq!(
        h.take_sent(),
        [(secs(0), "SIP/2.0 481 Call/Transaction Does Not Exist".to_owned())]
    );
}

#[test]
fn cancel_matching_needs_the_same_sent_by() {
    let mut h = One::new();
    let inv_text = RequestText::invite(&mut Ids::new(), URI, "UDP", UA).build();
    h.recv_request(udp(UA), &inv_text);
    // Same branch from another host: an accidental collision, not a match (§17.2.3).
    let cancel = text(&sip::transaction::cancel_for(&request(&inv_text), None).unwrap().to_bytes())
        .replace(UA, "198.51.100.7:5060");
    h.recv_request(udp("198.51.100.7:5060"), &cancel);
    assert!(matches!(h.events.last().unwrap().1, Event::Cancel { invite: None, .. }));
}

// --- RFC 2543 matching (§17.2.3) ----------------------------------------------------------------

fn rfc2543_invite(via: &str) -> String {
    RequestText::new("INVITE", URI)
        .raw_via(via)
        .from("<sip:old@192.0.2.30>;tag=2543")
        .call_id("2543-call@192.0.2.30")
        .build()
}

#[test]
fn rfc2543_requests_match_without_the_magic_cookie() {
    for via in ["SIP/2.0/UDP 192.0.2.30:5060", "SIP/2.0/UDP 192.0.2.30:5060;branch=1234abcd"] {
        let mut h = One::new();
        let inv = rfc2543_invite(via);
        h.recv_request(udp("192.0.2.30:5060"), &inv);
        let (key, req) = new_request(&h);
        // A retransmission matches on Request-URI, tags, Call-ID, CSeq and top Via.
        h.run_until(ms(500));
        h.recv_request(udp("192.0.2.30:5060"), &inv);
        // Another CSeq is another transaction.
        h.recv_request(udp("192.0.2.30:5060"), &inv.replace("CSeq: 1 INVITE", "CSeq: 2 INVITE"));
        let requests = h.events.iter().filter(|(_, e)| matches!(e, Event::Request { .. })).count();
        assert_eq!(requests, 2, "{via}");

        // A CANCEL matches the INVITE whatever its method.
        let cancel = text(&sip::transaction::cancel_for(&req, None).unwrap().to_bytes());
        h.recv_request(udp("192.0.2.30:5060"), &cancel);
        match &h.events.last().unwrap().1 {
            Event::Cancel { invite: Some(i), .. } => assert_eq!(*i, key, "{via}"),
            other => panic!("{via}: {other:?}"),
        }

        // The ACK carries the To tag of the response (§17.2.3) and is absorbed.
        let busy = reply(&req, 486, "Busy Here");
        h.layer.send_response(h.now(), key, busy.clone()).unwrap();
        let ack = text(&sip::transaction::ack_for_non_2xx(&req, &busy).unwrap().to_bytes());
        h.recv_request(udp("192.0.2.30:5060"), &ack);
        assert_eq!(h.layer.state(key), Some(TxnState::Confirmed), "{via}");
        assert!(!h.events.iter().any(|(_, e)| matches!(e, Event::Ack { .. })), "{via}");
        // An ACK with another To tag is not ours: passed up.
        h.recv_request(udp("192.0.2.30:5060"), &ack.replace("edge1", "other"));
        assert!(matches!(h.events.last().unwrap().1, Event::Ack { invite: None, .. }));
    }
}

#[test]
fn responses_sent_are_well_formed() {
    let mut h = One::new();
    let inv = RequestText::invite(&mut Ids::new(), URI, "UDP", UA).build();
    h.recv_request(udp(UA), &inv);
    let (_, t) = h.take_transmits().remove(0);
    match parse_sent(&t.message) {
        Message::Response(r) => {
            assert_eq!(r.status(), 100);
            assert_eq!(
                r.headers().get(HeaderName::Via),
                request(&inv).headers().get(HeaderName::Via)
            );
            assert_eq!(r.headers().to().unwrap().tag(), None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lost_connection_fails_the_transactions_on_it_only() {
    let mut h = One::new();
    let mut ids = Ids::new();
    h.recv_request(tcp(UA, 3), &RequestText::invite(&mut ids, URI, "TCP", UA).build());
    let (on_3, _) = new_request(&h);
    h.recv_request(tcp(UA, 4), &RequestText::invite(&mut ids, URI, "TCP", UA).build());
    let (on_4, _) = new_request(&h);
    h.take_events();
    h.layer.handle_flow_error(h.now(), sip::transaction::FlowId(3));
    h.pump();
    let k = TxnKey::Server(on_3);
    assert_eq!(
        described(&h.take_events()),
        [(secs(0), format!("TransportError {k}")), (secs(0), format!("Terminated {k}")),]
    );
    assert_eq!(h.layer.state(on_4), Some(TxnState::Proceeding));
}
