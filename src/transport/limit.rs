//! Per-source request rate limiting (`[limits] per_source_rps`), applied where messages enter,
//! before they reach the core's queue.
//!
//! Each source IP has a token bucket refilled at `rps` tokens per second, holding at most
//! `rps` (one second of burst). A request without a token gets `503 Service Unavailable` with
//! `Retry-After` (RFC 3261 §21.5.4); past twice the rate it is dropped silently, so a flood
//! does not cost a response each. Responses are never limited (they answer the edge's own
//! requests), and neither are emergency requests ([`Limiter::is_urgent`], DESIGN.md: emergency
//! calls bypass every limit).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sip::{HeaderName, Request, Uri};

use crate::emergency::dialstring;
use crate::routing::{Dialplan, Dialplans};

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Answer 503 with Retry-After.
    Refuse,
    /// Drop without an answer.
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Requests over the limit in the current second, for the refuse/drop split.
    over: u32,
}

/// Buckets kept before idle ones are swept.
const SWEEP_AT: usize = 100_000;

/// The per-source limiter shared by every transport task.
#[derive(Debug)]
pub struct Limiter {
    rps: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    /// Where the emergency dialstrings come from (the dialplan in force).
    dialplans: Option<Arc<Dialplans>>,
    /// Emergency calls and PSAP callbacks in progress (the core keeps it).
    urgent: Arc<crate::core::emergency::UrgentCalls>,
}

impl Limiter {
    pub fn new(rps: u32, dialplans: Option<Arc<Dialplans>>) -> Limiter {
        Limiter::with_urgent(rps, dialplans, Arc::default())
    }

    /// A limiter that also knows the emergency calls in progress (their Call-IDs).
    pub fn with_urgent(
        rps: u32,
        dialplans: Option<Arc<Dialplans>>,
        urgent: Arc<crate::core::emergency::UrgentCalls>,
    ) -> Limiter {
        Limiter {
            rps: f64::from(rps.max(1)),
            buckets: Mutex::new(HashMap::new()),
            dialplans,
            urgent,
        }
    }

    /// Whether a response belongs to an emergency call or PSAP callback in progress, or to
    /// one that ended moments ago (the 200 to its BYE, a retransmitted 2xx:
    /// [`crate::core::emergency::LINGER`]).
    pub fn is_urgent_response(&self, response: &sip::Response) -> bool {
        response.headers().call_id().is_ok_and(|id| self.urgent.contains(id))
    }

    /// Whether a request bypasses limits and shedding and takes the core's priority lane:
    /// an emergency call (`urn:service:sos`, RFC 5031, or a configured emergency dialstring,
    /// also after an outside-line prefix), a PSAP callback (a request to a callback-pool
    /// number or the site number), or an in-dialog request of either (its Route carries the
    /// edge's emergency marker, [`crate::core::emergency::route_marker`]).
    pub fn is_urgent(&self, req: &Request) -> bool {
        if req.headers().call_id().is_ok_and(|id| self.urgent.contains(id)) {
            return true;
        }
        if req.headers().contains(HeaderName::Route) {
            let marker = crate::core::emergency::route_marker().as_bytes();
            return req
                .headers()
                .get_all(HeaderName::Route)
                .any(|v| v.windows(marker.len()).any(|w| w == marker));
        }
        let Ok(uri) = req.uri() else { return false };
        // Emergency dialstrings are short digit strings and callback numbers E.164: most
        // requests never reach the table.
        let user = uri.user();
        if !matches!(uri, Uri::Urn(_))
            && !user.is_some_and(|u| dialstring::could_be(u) || u.starts_with('+'))
        {
            return false;
        }
        let plan = match &self.dialplans {
            Some(d) => d.current(),
            None => Arc::new(Dialplan::empty()),
        };
        let em = &plan.emergency;
        if let Some(n) = uri.user().and_then(crate::routing::E164::parse) {
            return em.callback_pool.iter().any(|r| r.contains(&n))
                || em.site_number.as_ref() == Some(&n);
        }
        // The caller's country is not known here: every country's table applies.
        dialstring::recognise(em, &uri, None).is_some()
    }

    /// Takes a token for a request from `ip` at `now`.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= SWEEP_AT {
            // Full buckets carry no state worth keeping.
            let rps = self.rps;
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rps < rps
            });
        }
        let b = buckets.entry(ip).or_insert(Bucket { tokens: self.rps, last: now, over: 0 });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        if elapsed > 0.0 {
            b.tokens = (b.tokens + elapsed * self.rps).min(self.rps);
            if elapsed >= 1.0 {
                b.over = 0;
            }
            b.last = now;
        }
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Verdict::Pass;
        }
        b.over = b.over.saturating_add(1);
        if f64::from(b.over) <= self.rps { Verdict::Refuse } else { Verdict::Drop }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use sip::{Framing, Message};

    use super::*;

    fn req(uri: &str) -> Request {
        let text = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        match Message::parse(Bytes::from(text), Framing::Datagram) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bucket_refuses_then_drops_then_refills() {
        let l = Limiter::new(10, None);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(l.check(ip, t0), Verdict::Pass);
        }
        for _ in 0..10 {
            assert_eq!(l.check(ip, t0), Verdict::Refuse);
        }
        assert_eq!(l.check(ip, t0), Verdict::Drop);
        // Another source is not affected.
        assert_eq!(l.check("192.0.2.2".parse().unwrap(), t0), Verdict::Pass);
        // 100 ms later one token is back; a second later the bucket is full.
        assert_eq!(l.check(ip, t0 + Duration::from_millis(100)), Verdict::Pass);
        let t1 = t0 + Duration::from_secs(2);
        for _ in 0..10 {
            assert_eq!(l.check(ip, t1), Verdict::Pass);
        }
    }

    #[test]
    fn emergency_requests_are_exempt() {
        // The default emergency section: US and PR 911 and 933, outside line 9.
        let l = Limiter::new(1, None);
        assert!(l.is_urgent(&req("sip:911@edge")));
        assert!(l.is_urgent(&req("sip:9911@edge")), "outside-line prefix");
        assert!(!l.is_urgent(&req("sip:8911@edge")), "not an outside-line prefix");
        assert!(l.is_urgent(&req("tel:933")));
        assert!(l.is_urgent(&req("urn:service:sos")));
        assert!(l.is_urgent(&req("urn:service:sos.fire")));
        assert!(!l.is_urgent(&req("urn:service:counseling")));
        assert!(!l.is_urgent(&req("sip:+12025550911@edge")));
        assert!(!l.is_urgent(&req("sip:alice@edge")));
    }

    #[test]
    fn psap_callbacks_and_emergency_dialogs_are_urgent() {
        let plan = Dialplan::from_texts(&[(
            "e.toml",
            "[emergency]\ncallback_pool = [\"+15550100900-+15550100909\"]\nsite_number = \"+15550100999\"\n",
        )])
        .unwrap();
        let plans = Arc::new(Dialplans::with(std::path::Path::new("."), plan));
        let l = Limiter::new(1, Some(plans));
        assert!(l.is_urgent(&req("sip:+15550100905@edge")), "a callback number");
        assert!(l.is_urgent(&req("sip:+15550100999@edge")), "the site number");
        assert!(!l.is_urgent(&req("sip:+15550100910@edge")), "outside the pool");
        // An in-dialog request whose route carries the edge's marker; a forged one does not.
        let with_route = |route: &str| {
            let mut r = req("sip:alice@192.0.2.7");
            r.headers_mut().push(HeaderName::Route, route.to_owned());
            r
        };
        let marker = crate::core::emergency::route_marker();
        assert!(l.is_urgent(&with_route(&format!("<sip:127.0.0.1:5060;lr;{marker}>"))));
        assert!(!l.is_urgent(&with_route("<sip:127.0.0.1:5060;lr;em=0000000000000000>")));
        // A call the core marked urgent: its requests and responses, not another call's.
        let urgent = Arc::new(crate::core::emergency::UrgentCalls::default());
        let l = Limiter::with_urgent(1, None, urgent.clone());
        let r = req("sip:alice@192.0.2.7");
        assert!(!l.is_urgent(&r));
        urgent.insert("x", Instant::now());
        assert!(l.is_urgent(&r), "Call-ID x");
        let resp = sip::Response::for_request(&r, 200, "OK");
        assert!(l.is_urgent_response(&resp));
        // The call ends (its BYE): the 200 to the BYE and the retransmissions still take the
        // lane for a while, then the Call-ID is forgotten.
        let t0 = Instant::now();
        urgent.end("x", t0);
        urgent.expire(t0 + Duration::from_secs(1));
        assert!(l.is_urgent_response(&resp), "the BYE's 200 right after the BYE");
        assert!(l.is_urgent(&r), "a BYE retransmission");
        urgent.expire(t0 + crate::core::emergency::LINGER + Duration::from_millis(1));
        assert!(!l.is_urgent_response(&resp));
        assert!(!l.is_urgent(&r));
        // Ending another call (every BYE does) leaves this one alone.
        urgent.insert("x", t0);
        urgent.end("y", t0);
        urgent.expire(t0 + crate::core::emergency::LINGER + Duration::from_millis(1));
        assert!(l.is_urgent(&r), "call x is still up");
    }
}
