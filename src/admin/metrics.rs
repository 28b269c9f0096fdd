//! Counters and gauges, rendered in the Prometheus text format (version 0.0.4) at `/metrics`.
//!
//! Plain atomics: the hot path increments without locks or allocation. Labels come from small
//! fixed sets (methods, status classes, transports), never from numbers or names, so metrics
//! never carry a caller's number (DESIGN.md: emergency calls are counted, not identified).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use sip::Method;

/// Methods counted by name; everything else is `other`.
const METHODS: [&str; 15] = [
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
    "other",
];

fn method_index(m: &Method) -> usize {
    METHODS.iter().position(|n| *n == m.as_str()).unwrap_or(METHODS.len() - 1)
}

/// Direction of a counted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    In = 0,
    Out = 1,
}

/// Every metric the edge exports.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [[AtomicU64; METHODS.len()]; 2],
    /// Responses by status class 1xx..6xx.
    responses: [[AtomicU64; 6]; 2],
    malformed: AtomicU64,
    shed: AtomicU64,
    /// Connections closed because a message took too long to arrive or nothing came at all
    /// (src/transport/conn.rs, "Timeouts").
    pub slow_closed: AtomicU64,
    pub registrations: AtomicI64,
    pub transactions: AtomicI64,
    pub connections: AtomicI64,
    /// Answered calls with an agent on them (the capacity rule counts these).
    pub answered_calls: AtomicI64,
    pub dialplan_reloads_ok: AtomicU64,
    pub dialplan_reloads_failed: AtomicU64,
    /// Emergency calls and PSAP callbacks (counted, never identified).
    pub emergency: EmergencyMetrics,
    /// The media anchor (src/media).
    pub media: MediaMetrics,
    /// Notification mails the SMTP relay took (src/emergency/mailer.rs).
    pub mail_sent: AtomicU64,
    /// Failed delivery attempts (each is retried).
    pub mail_failed: AtomicU64,
    /// Notification mails not delivered yet.
    pub mail_queued: AtomicI64,
    /// Trunk health from the OPTIONS probes, by trunk name (names, never numbers).
    trunks: std::sync::Mutex<std::collections::BTreeMap<String, bool>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn request(&self, dir: Dir, method: &Method) {
        self.requests[dir as usize][method_index(method)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn response(&self, dir: Dir, status: u16) {
        let class = usize::from(status / 100).clamp(1, 6) - 1;
        self.responses[dir as usize][class].fetch_add(1, Ordering::Relaxed);
    }

    /// A message that could not be parsed.
    pub fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// A message dropped because the core was saturated.
    pub fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Records whether a trunk answers its probes.
    pub fn set_trunk(&self, name: &str, up: bool) {
        let mut t = self.trunks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        t.insert(name.to_owned(), up);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let dirs = ["in", "out"];
        out.push_str("# HELP lifeline_sip_requests_total SIP requests by direction and method.\n");
        out.push_str("# TYPE lifeline_sip_requests_total counter\n");
        for (d, dir) in dirs.iter().enumerate() {
            for (i, m) in METHODS.iter().enumerate() {
                let v = self.requests[d][i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "lifeline_sip_requests_total{{dir=\"{dir}\",method=\"{m}\"}} {v}"
                );
            }
        }
        out.push_str("# HELP lifeline_sip_responses_total SIP responses by direction and class.\n");
        out.push_str("# TYPE lifeline_sip_responses_total counter\n");
        for (d, dir) in dirs.iter().enumerate() {
            for class in 0..6 {
                let v = self.responses[d][class].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "lifeline_sip_responses_total{{dir=\"{dir}\",class=\"{}xx\"}} {v}",
                    class + 1
                );
            }
        }
        let simple: [(&str, &str, &str, i64); 12] = [
            (
                "lifeline_sip_malformed_total",
                "counter",
                "Messages refused by the parser.",
                load(&self.malformed),
            ),
            (
                "lifeline_sip_shed_total",
                "counter",
                "Messages dropped because the core was saturated.",
                load(&self.shed),
            ),
            (
                "lifeline_sip_slow_connections_closed_total",
                "counter",
                "Connections closed for a message that did not arrive in time, or for idling.",
                load(&self.slow_closed),
            ),
            (
                "lifeline_registrations",
                "gauge",
                "Live registration bindings.",
                self.registrations.load(Ordering::Relaxed),
            ),
            (
                "lifeline_transactions",
                "gauge",
                "Live SIP transactions.",
                self.transactions.load(Ordering::Relaxed),
            ),
            (
                "lifeline_connections",
                "gauge",
                "Open TCP, TLS and WebSocket connections.",
                self.connections.load(Ordering::Relaxed),
            ),
            (
                "lifeline_dialplan_reloads_total",
                "counter",
                "Dialplan reloads that took effect.",
                load(&self.dialplan_reloads_ok),
            ),
            (
                "lifeline_dialplan_reload_failures_total",
                "counter",
                "Dialplan reloads refused (the old table stayed).",
                load(&self.dialplan_reloads_failed),
            ),
            (
                "lifeline_mail_sent_total",
                "counter",
                "Emergency notification mails the SMTP relay took.",
                load(&self.mail_sent),
            ),
            (
                "lifeline_mail_failures_total",
                "counter",
                "Failed delivery attempts of notification mails (each is retried).",
                load(&self.mail_failed),
            ),
            (
                "lifeline_mail_queued",
                "gauge",
                "Notification mails not delivered yet.",
                self.mail_queued.load(Ordering::Relaxed),
            ),
            ("lifeline_up", "gauge", "1 while the edge runs.", 1),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        self.emergency.render(&mut out);
        self.media.render(&mut out);
        let trunks = self.trunks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !trunks.is_empty() {
            out.push_str(
                "# HELP lifeline_trunk_up 1 while the trunk answers OPTIONS and its name resolves.\n",
            );
            out.push_str("# TYPE lifeline_trunk_up gauge\n");
            for (name, up) in trunks.iter() {
                let _ = writeln!(out, "lifeline_trunk_up{{trunk=\"{name}\"}} {}", u8::from(*up));
            }
        }
        out
    }
}

/// Counters of emergency calls (issue 6): how many, how they fared, what degraded.
#[derive(Debug, Default)]
pub struct EmergencyMetrics {
    /// Emergency calls recognised: real ones and test calls (933).
    pub calls: AtomicU64,
    pub test_calls: AtomicU64,
    /// Emergency calls made without valid credentials (site number presented).
    pub unauthenticated: AtomicU64,
    /// A trunk failed (failure response, transport error, no provisional in time) and the
    /// next was tried.
    pub failovers: AtomicU64,
    /// No trunk could be reached: answered 503.
    pub unreachable: AtomicU64,
    /// The callback pool was exhausted (or the store failed): a fallback number was presented.
    pub callback_fallbacks: AtomicU64,
    /// Calls from a PSAP to a callback number.
    pub psap_callbacks: AtomicU64,
}

impl EmergencyMetrics {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP lifeline_emergency_calls_total Emergency calls recognised, test calls apart.\n\
             # TYPE lifeline_emergency_calls_total counter\n\
             lifeline_emergency_calls_total{{test=\"false\"}} {}\n\
             lifeline_emergency_calls_total{{test=\"true\"}} {}",
            load(&self.calls),
            load(&self.test_calls)
        );
        let simple = [
            (
                "lifeline_emergency_unauthenticated_total",
                "Emergency calls routed without valid credentials.",
                &self.unauthenticated,
            ),
            (
                "lifeline_emergency_failovers_total",
                "Emergency call attempts moved on to the next trunk.",
                &self.failovers,
            ),
            (
                "lifeline_emergency_unreachable_total",
                "Emergency calls answered 503 because no trunk could be reached.",
                &self.unreachable,
            ),
            (
                "lifeline_emergency_callback_fallbacks_total",
                "Emergency calls that presented a fallback number instead of a leased one.",
                &self.callback_fallbacks,
            ),
            (
                "lifeline_psap_callbacks_total",
                "Calls from a PSAP to a callback number.",
                &self.psap_callbacks,
            ),
        ];
        for (name, help, value) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                load(value)
            );
        }
    }
}

/// Counters of the media anchor (issue 7): legs and packets, never who or which number.
#[derive(Debug, Default)]
pub struct MediaMetrics {
    /// WebRTC legs relaying now.
    pub legs: AtomicI64,
    /// RTP packets relayed from browsers to the plain side, and back.
    pub to_plain: AtomicU64,
    pub to_browser: AtomicU64,
    /// RTCP compound packets sent to the plain side of WebRTC legs (the browsers' relayed),
    /// and to the browsers (the plain side's relayed, or the anchor's own reports;
    /// `kind="rtcp"`).
    pub rtcp_to_plain: AtomicU64,
    pub rtcp_to_browser: AtomicU64,
    /// RTP packets relayed between two plain peers (`[media] anchor = "always"`), from the
    /// caller's side to the callee's and back.
    pub plain_to_callee: AtomicU64,
    pub plain_to_caller: AtomicU64,
    /// RTCP packets relayed between two plain peers, on their RTCP ports (RFC 3550 §11) or
    /// multiplexed on RTP's (RFC 5761), each way (`kind="rtcp"`; the RTP counts above exclude
    /// them).
    pub rtcp_to_callee: AtomicU64,
    pub rtcp_to_caller: AtomicU64,
    /// Datagrams dropped: not RTP, from a stranger after latching, or before the leg is up.
    pub dropped: AtomicU64,
    /// Datagrams on the WebRTC port that no leg accepted (garbage, late packets).
    pub stray: AtomicU64,
    /// Calls ended because media stopped (or the browser went away).
    pub timeouts: AtomicU64,
    /// RTP packets from plain peers that never arrived (sequence gaps).
    pub lost_plain: AtomicU64,
    /// The worst live leg's interarrival jitter, in microseconds: plain side, browser side.
    pub jitter_plain_us: AtomicU64,
    pub jitter_browser_us: AtomicU64,
    /// The worst live leg's fraction of browser packets lost, in millionths.
    pub loss_browser_ppm: AtomicU64,
}

impl MediaMetrics {
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP lifeline_media_legs Browser legs the media anchor relays now.\n\
             # TYPE lifeline_media_legs gauge\nlifeline_media_legs {}\n\
             # HELP lifeline_media_packets_total Packets relayed by the media anchor: RTP, and RTCP where kind=\"rtcp\".\n\
             # TYPE lifeline_media_packets_total counter\n\
             lifeline_media_packets_total{{dir=\"to_plain\"}} {}\n\
             lifeline_media_packets_total{{dir=\"to_browser\"}} {}\n\
             lifeline_media_packets_total{{dir=\"to_plain\",kind=\"rtcp\"}} {}\n\
             lifeline_media_packets_total{{dir=\"to_browser\",kind=\"rtcp\"}} {}\n\
             lifeline_media_packets_total{{dir=\"plain_to_callee\"}} {}\n\
             lifeline_media_packets_total{{dir=\"plain_to_caller\"}} {}\n\
             lifeline_media_packets_total{{dir=\"plain_to_callee\",kind=\"rtcp\"}} {}\n\
             lifeline_media_packets_total{{dir=\"plain_to_caller\",kind=\"rtcp\"}} {}",
            self.legs.load(Ordering::Relaxed),
            load(&self.to_plain),
            load(&self.to_browser),
            load(&self.rtcp_to_plain),
            load(&self.rtcp_to_browser),
            load(&self.plain_to_callee),
            load(&self.plain_to_caller),
            load(&self.rtcp_to_callee),
            load(&self.rtcp_to_caller),
        );
        let seconds = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP lifeline_media_jitter_seconds Interarrival jitter (RFC 3550) of the worst live leg, by the side that sends.\n\
             # TYPE lifeline_media_jitter_seconds gauge\n\
             lifeline_media_jitter_seconds{{side=\"plain\"}} {}\n\
             lifeline_media_jitter_seconds{{side=\"browser\"}} {}\n\
             # HELP lifeline_media_loss_ratio Fraction of a browser's packets lost, worst live leg.\n\
             # TYPE lifeline_media_loss_ratio gauge\n\
             lifeline_media_loss_ratio{{side=\"browser\"}} {}",
            seconds(&self.jitter_plain_us),
            seconds(&self.jitter_browser_us),
            seconds(&self.loss_browser_ppm),
        );
        let simple = [
            (
                "lifeline_media_lost_total",
                "RTP packets from plain peers that never arrived (sequence gaps).",
                &self.lost_plain,
            ),
            (
                "lifeline_media_dropped_total",
                "Datagrams dropped: on plain RTP ports (not RTP, a stranger, leg not up), or SRTP from a browser not authentic or replayed.",
                &self.dropped,
            ),
            (
                "lifeline_media_stray_total",
                "Datagrams on the WebRTC port that no leg accepted.",
                &self.stray,
            ),
            (
                "lifeline_media_timeouts_total",
                "Calls ended because their media stopped or the browser went away.",
                &self.timeouts,
            ),
        ];
        for (name, help, value) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                load(value)
            );
        }
    }
}

fn load(a: &AtomicU64) -> i64 {
    i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_by_label() {
        let m = Metrics::new();
        m.request(Dir::In, &Method::Invite);
        m.request(Dir::In, &Method::Invite);
        m.request(Dir::Out, &Method::Extension("FOO".into()));
        m.response(Dir::Out, 486);
        m.response(Dir::Out, 999);
        m.malformed();
        let text = m.render();
        assert!(text.contains("lifeline_sip_requests_total{dir=\"in\",method=\"INVITE\"} 2\n"));
        assert!(text.contains("lifeline_sip_requests_total{dir=\"out\",method=\"other\"} 1\n"));
        assert!(text.contains("lifeline_sip_responses_total{dir=\"out\",class=\"4xx\"} 1\n"));
        assert!(text.contains("lifeline_sip_responses_total{dir=\"out\",class=\"6xx\"} 1\n"));
        assert!(text.contains("lifeline_sip_malformed_total 1\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<i64>().is_ok(), "{line}");
        }
    }
}
