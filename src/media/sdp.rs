//! The little of SDP (RFC 8866) the anchor needs on its plain-RTP side: read an offer or answer
//! (connection address, audio port, payload types, direction) and write ours.
//!
//! # Contract
//!
//! - [`Sdp::parse`] reads the FIRST `m=audio` section and the session- or media-level `c=`
//!   line (media level wins, RFC 8866 §5.7). Other media sections are ignored: the edge relays
//!   audio only. Anything unreadable is an error naming the line, never a panic.
//! - [`Sdp::is_webrtc`] tells a browser's description (a secure profile such as
//!   `UDP/TLS/RTP/SAVPF`, or a DTLS fingerprint) from plain RTP (`RTP/AVP`).
//! - [`plain`] writes a complete plain-RTP description: `RTP/AVP`, one `c=` line, the payload
//!   types given (with their `rtpmap` and, for telephone-event, `fmtp 0-16`), `ptime:20` and
//!   the direction.
//! - Static payload types 0 (PCMU) and 8 (PCMA) are known without `rtpmap` (RFC 3551 §6).
//! - RTCP: [`Sdp::rtcp_address`] is the audio section's `a=rtcp` (RFC 3605) or the port above
//!   RTP's (RFC 3550 §11); [`readdress`] moves a plain peer's media to the edge's ports and
//!   drops `a=rtcp`, the edge's RTCP being on its default port.
//! - [`of_body`] finds the SDP of a message body, alone or in a `multipart/mixed` (an
//!   emergency INVITE with a PIDF-LO, RFC 6442); [`replace_in_body`] puts a new one in its
//!   place, every other part byte for byte.
//! - Delayed offer (RFC 3261 §13.2.1: an INVITE without SDP, the offer in the 2xx and the
//!   answer in the ACK): [`put_in_body`] adds the edge's offer to a body that had none,
//!   [`remove_from_body`] takes an answer out of one, [`PLAIN_OFFER`] is what the edge offers
//!   a plain-RTP peer when it must make the offer itself, and [`Sdp::answers_plain`] tells
//!   whether a plain answer can be used (RFC 3264 §6).

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use sip::header::typed::MediaType;
use sip::multipart::{self, NewPart};

/// What the edge offers a plain-RTP peer when the offer is its own (a delayed-offer call):
/// both G.711 laws and telephone-event (RFC 4733) at 101, the payload type carriers use.
pub const PLAIN_OFFER: [(u8, Codec); 3] =
    [(0, Codec::Pcmu), (8, Codec::Pcma), (101, Codec::TelephoneEvent)];

/// An audio codec the edge relays without transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
    /// RFC 4733 events (DTMF), passed through.
    TelephoneEvent,
}

impl Codec {
    fn from_name(name: &str) -> Option<Codec> {
        let (encoding, rate) = name.split_once('/').unwrap_or((name, "8000"));
        let rate = rate.split('/').next().unwrap_or(rate);
        if rate != "8000" {
            return None;
        }
        match encoding.to_ascii_lowercase().as_str() {
            "pcmu" => Some(Codec::Pcmu),
            "pcma" => Some(Codec::Pcma),
            "telephone-event" => Some(Codec::TelephoneEvent),
            _ => None,
        }
    }

    /// The `rtpmap` encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::TelephoneEvent => "telephone-event",
        }
    }
}

/// One payload type of an `m=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    pub pt: u8,
    /// `None`: a codec the edge does not relay (Opus, G.722, comfort noise...).
    pub codec: Option<Codec>,
}

/// The media direction attribute (RFC 3264 §5.1; hold is `sendonly` or `inactive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether the side that wrote this direction receives media (so the other side sends).
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction an answerer (or the other leg) takes to mirror this one (RFC 3264 §6.1).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

/// The audio of a session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// The `c=` address (`None`: absent, or `0.0.0.0`, the RFC 2543 hold).
    pub address: Option<IpAddr>,
    /// The `m=audio` port; 0 means the stream is rejected or disabled.
    pub port: u16,
    /// The transport profile (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`...).
    pub profile: String,
    /// Payload types in the order of the `m=` line (preference order).
    pub payloads: Vec<Payload>,
    pub direction: Direction,
    /// A DTLS fingerprint (RFC 8122) appears: a browser's description.
    pub fingerprint: bool,
    /// The audio section's `a=rtcp` (RFC 3605): RTCP's port, and its address when not the
    /// `c=` one.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    /// `a=rtcp-mux` (RFC 5761): RTCP on the RTP port, if the answer has it too.
    pub rtcp_mux: bool,
}

/// Why a description could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpError(pub String);

impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SdpError {}

/// `a=rtcp:PORT [IN IP4 ADDRESS]` (RFC 3605 §2.1); an unreadable one is ignored (RTCP then
/// goes to its default port).
fn parse_rtcp(value: &str) -> Option<(u16, Option<IpAddr>)> {
    let mut parts = value.split_ascii_whitespace();
    let port = parts.next()?.parse().ok()?;
    let ip = match (parts.next(), parts.next(), parts.next()) {
        (Some("IN"), Some("IP4" | "IP6"), Some(addr)) => addr.parse().ok(),
        _ => None,
    };
    Some((port, ip.filter(|ip: &IpAddr| !ip.is_unspecified())))
}

fn parse_address(value: &str, line: usize) -> Result<Option<IpAddr>, SdpError> {
    // c=IN IP4 192.0.2.1 (multicast TTL suffixes are not for unicast RTP: refused below).
    let mut parts = value.split_ascii_whitespace();
    let (Some("IN"), Some(kind @ ("IP4" | "IP6")), Some(addr)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(SdpError(format!("line {line}: unreadable c= line")));
    };
    let ip: IpAddr =
        addr.parse().map_err(|_| SdpError(format!("line {line}: c= address is not an IP")))?;
    if (kind == "IP4") != ip.is_ipv4() {
        return Err(SdpError(format!("line {line}: c= address family mismatch")));
    }
    Ok((!ip.is_unspecified()).then_some(ip))
}

impl Sdp {
    /// Reads the first audio section of `text`.
    pub fn parse(text: &str) -> Result<Sdp, SdpError> {
        let mut session_address = None;
        let mut media_address = None;
        let mut audio: Option<Sdp> = None;
        let mut session_direction = Direction::SendRecv;
        let mut media_direction = None;
        let mut fingerprint = false;
        // Which section we are in: before any m=, in the first audio one, in another one.
        #[derive(PartialEq)]
        enum In {
            Session,
            Audio,
            Other,
        }
        let mut section = In::Session;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let raw = raw.trim_end_matches('\r');
            if raw.is_empty() {
                continue;
            }
            let Some((kind, value)) = raw.split_once('=') else {
                return Err(SdpError(format!("line {line}: not a type=value line")));
            };
            match kind {
                "m" => {
                    if audio.is_some() || !value.starts_with("audio ") {
                        section = In::Other;
                        continue;
                    }
                    section = In::Audio;
                    let mut parts = value.split_ascii_whitespace().skip(1);
                    let port = parts
                        .next()
                        .and_then(|p| p.split('/').next())
                        .and_then(|p| p.parse::<u16>().ok())
                        .ok_or_else(|| SdpError(format!("line {line}: bad m= port")))?;
                    let profile = parts
                        .next()
                        .ok_or_else(|| SdpError(format!("line {line}: m= without a profile")))?;
                    let mut payloads = Vec::new();
                    for pt in parts {
                        let pt =
                            pt.parse::<u8>().ok().filter(|pt| *pt < 128).ok_or_else(|| {
                                SdpError(format!("line {line}: bad payload type"))
                            })?;
                        let codec = match pt {
                            0 => Some(Codec::Pcmu),
                            8 => Some(Codec::Pcma),
                            _ => None,
                        };
                        payloads.push(Payload { pt, codec });
                    }
                    audio = Some(Sdp {
                        address: None,
                        port,
                        profile: profile.to_owned(),
                        payloads,
                        direction: Direction::SendRecv,
                        fingerprint: false,
                        rtcp: None,
                        rtcp_mux: false,
                    });
                }
                "c" => match section {
                    In::Session => session_address = parse_address(value, line)?,
                    In::Audio => media_address = Some(parse_address(value, line)?),
                    In::Other => {}
                },
                "a" if section != In::Other => {
                    let (name, rest) = value.split_once(':').unwrap_or((value, ""));
                    let direction = match name {
                        "sendrecv" => Some(Direction::SendRecv),
                        "sendonly" => Some(Direction::SendOnly),
                        "recvonly" => Some(Direction::RecvOnly),
                        "inactive" => Some(Direction::Inactive),
                        _ => None,
                    };
                    match (direction, name, &section, audio.as_mut()) {
                        (Some(d), _, In::Session, _) => session_direction = d,
                        (Some(d), _, _, _) => media_direction = Some(d),
                        (None, "fingerprint", _, _) => fingerprint = true,
                        (None, "rtcp", In::Audio, Some(audio)) => audio.rtcp = parse_rtcp(rest),
                        (None, "rtcp-mux", In::Audio, Some(audio)) => audio.rtcp_mux = true,
                        (None, "rtpmap", In::Audio, Some(audio)) => {
                            let (pt, encoding) = rest.split_once(' ').unwrap_or((rest, ""));
                            if let Ok(pt) = pt.parse::<u8>()
                                && let Some(p) = audio.payloads.iter_mut().find(|p| p.pt == pt)
                            {
                                p.codec = Codec::from_name(encoding.trim());
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        let mut audio = audio.ok_or_else(|| SdpError("no m=audio section".into()))?;
        audio.address = media_address.unwrap_or(session_address);
        audio.direction = media_direction.unwrap_or(session_direction);
        audio.fingerprint = fingerprint;
        Ok(audio)
    }

    /// A browser's description (DTLS-SRTP), as opposed to plain RTP.
    pub fn is_webrtc(&self) -> bool {
        self.fingerprint || self.profile.contains("SAVP") || self.profile.contains("TLS")
    }

    /// Where RTP for this description goes (`None`: on hold the old way, or rejected).
    pub fn rtp_address(&self) -> Option<SocketAddr> {
        let ip = self.address?;
        (self.port != 0).then_some(SocketAddr::new(ip, self.port))
    }

    /// Where RTCP for this description goes when it is not multiplexed: `a=rtcp` (RFC 3605),
    /// else the port above RTP's (RFC 3550 §11).
    pub fn rtcp_address(&self) -> Option<SocketAddr> {
        let rtp = self.rtp_address()?;
        match self.rtcp {
            Some((port, ip)) => Some(SocketAddr::new(ip.unwrap_or(rtp.ip()), port)),
            None => Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?)),
        }
    }

    /// The payloads the edge can relay, in the description's order.
    pub fn relayable(&self) -> impl Iterator<Item = (u8, Codec)> + '_ {
        self.payloads.iter().filter_map(|p| p.codec.map(|c| (p.pt, c)))
    }

    /// The first voice codec (not telephone-event) the edge can relay, and its payload type.
    pub fn voice(&self) -> Option<(u8, Codec)> {
        self.relayable().find(|(_, c)| *c != Codec::TelephoneEvent)
    }

    /// The telephone-event payload type, if offered.
    pub fn telephone_event(&self) -> Option<u8> {
        self.relayable().find(|(_, c)| *c == Codec::TelephoneEvent).map(|(pt, _)| pt)
    }

    /// Whether this is a usable plain answer to an offer of `offered`: plain RTP, the audio
    /// stream accepted (a port of 0 rejects it, RFC 3264 §6), and a voice codec of the offer
    /// chosen (RFC 3264 §6.1; its payload type may differ, the codec may not). An answer
    /// with the RFC 2543 hold address is usable: symmetric RTP finds the peer.
    pub fn answers_plain(&self, offered: &[(u8, Codec)]) -> bool {
        !self.is_webrtc()
            && self.port != 0
            && self.voice().is_some_and(|(_, c)| offered.iter().any(|(_, o)| *o == c))
    }
}

/// A plain-RTP description from the edge: `session` and `version` are the `o=` line's
/// (RFC 8866 §5.2: the version goes up with every change), RTP at `rtp`.
pub fn plain(
    session: u64,
    version: u64,
    rtp: SocketAddr,
    payloads: &[(u8, Codec)],
    direction: Direction,
) -> String {
    use std::fmt::Write;
    let family = if rtp.is_ipv4() { "IP4" } else { "IP6" };
    let ip = rtp.ip();
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "v=0\r\no=lifeline {session} {version} IN {family} {ip}\r\ns=lifeline\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP",
        rtp.port()
    );
    for (pt, _) in payloads {
        let _ = write!(s, " {pt}");
    }
    s.push_str("\r\n");
    for (pt, codec) in payloads {
        let _ = write!(s, "a=rtpmap:{pt} {}/8000\r\n", codec.name());
        if *codec == Codec::TelephoneEvent {
            let _ = write!(s, "a=fmtp:{pt} 0-16\r\n");
        }
    }
    let _ = write!(s, "a=ptime:20\r\na={}\r\n", direction.attribute());
    s
}

/// `text` with its media moved to `rtp`: every `c=` line names `rtp`'s address and the first
/// audio `m=` line its port; `a=rtcp` lines go, as the edge's RTCP is on the port above `rtp`,
/// RTCP's default (RFC 3550 §11, RFC 3605 §2.1), or on `rtp` itself when `a=rtcp-mux` (kept as
/// written, RFC 5761) is in the offer and its answer. Everything else stays as written: codecs
/// the edge never needs to understand pass through.
pub fn readdress(text: &str, rtp: SocketAddr) -> String {
    let family = if rtp.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = String::with_capacity(text.len() + 16);
    let mut audio_done = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        let end = &line[bare.len()..];
        if bare.starts_with("c=") {
            out.push_str(&format!("c=IN {family} {}{end}", rtp.ip()));
        } else if let Some(rest) = bare.strip_prefix("m=audio ")
            && !audio_done
        {
            audio_done = true;
            let after_port = rest.split_once(' ').map_or("", |(_, r)| r);
            out.push_str(&format!("m=audio {} {after_port}{end}", rtp.port()));
        } else if bare.starts_with("a=rtcp:") {
            continue;
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The SDP in a message body: the whole body, or the `application/sdp` part of a multipart
/// (an emergency INVITE with a PIDF-LO, RFC 6442).
pub fn of_body(content_type: Option<&[u8]>, body: &Bytes) -> Option<String> {
    let ct = std::str::from_utf8(content_type?).ok()?;
    let mt = MediaType::parse(ct).ok()?;
    if mt.is("application", "sdp") {
        return std::str::from_utf8(body).ok().map(str::to_owned);
    }
    let boundary = mt.boundary()?;
    let parts = multipart::parse(body, boundary).ok()?;
    let part =
        parts.iter().find(|p| p.content_type().is_some_and(|t| t.is("application", "sdp")))?;
    std::str::from_utf8(part.body).ok().map(str::to_owned)
}

/// The body with its SDP replaced by `sdp` (other multipart parts byte for byte), and the
/// Content-Type to go with it.
pub fn replace_in_body(
    content_type: Option<&[u8]>,
    body: &Bytes,
    sdp: &str,
) -> Option<(String, Bytes)> {
    let ct = std::str::from_utf8(content_type?).ok()?;
    let mt = MediaType::parse(ct).ok()?;
    if mt.is("application", "sdp") {
        return Some((ct.to_owned(), Bytes::from(sdp.to_owned())));
    }
    let boundary = mt.boundary()?;
    let parts = multipart::parse(body, boundary).ok()?;
    let rebuilt: Vec<NewPart> = parts
        .iter()
        .map(|p| {
            let is_sdp = p.content_type().is_some_and(|t| t.is("application", "sdp"));
            NewPart {
                headers: p
                    .headers
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
                body: if is_sdp { sdp.as_bytes().to_vec() } else { p.body.to_vec() },
            }
        })
        .collect();
    let body = multipart::build(boundary, &rebuilt).ok()?;
    Some((ct.to_owned(), Bytes::from(body)))
}

/// The body with `sdp` in it, and the Content-Type to go with it: an empty body becomes
/// `application/sdp`, an SDP (alone or in a multipart) is replaced, and a multipart without
/// one gets it as its first part, every other part byte for byte. `None` for a body of
/// another single type, which cannot take it.
pub fn put_in_body(
    content_type: Option<&[u8]>,
    body: &Bytes,
    sdp: &str,
) -> Option<(String, Bytes)> {
    if body.is_empty() {
        return Some(("application/sdp".to_owned(), Bytes::from(sdp.to_owned())));
    }
    if of_body(content_type, body).is_some() {
        return replace_in_body(content_type, body, sdp);
    }
    let ct = std::str::from_utf8(content_type?).ok()?;
    let mt = MediaType::parse(ct).ok()?;
    let boundary = mt.boundary()?;
    let parts = multipart::parse(body, boundary).ok()?;
    let mut rebuilt = vec![NewPart::new("application/sdp", None, sdp.as_bytes().to_vec())];
    rebuilt.extend(parts.iter().map(copy_part));
    let body = multipart::build(boundary, &rebuilt).ok()?;
    Some((ct.to_owned(), Bytes::from(body)))
}

/// The body without its SDP: an SDP body goes whole (no Content-Type, empty body), a
/// multipart loses its SDP part and keeps the others byte for byte. `None` when the body has
/// no SDP.
pub fn remove_from_body(
    content_type: Option<&[u8]>,
    body: &Bytes,
) -> Option<(Option<String>, Bytes)> {
    let ct = std::str::from_utf8(content_type?).ok()?;
    let mt = MediaType::parse(ct).ok()?;
    if mt.is("application", "sdp") {
        return Some((None, Bytes::new()));
    }
    let boundary = mt.boundary()?;
    let parts = multipart::parse(body, boundary).ok()?;
    let is_sdp =
        |p: &multipart::Part<'_>| p.content_type().is_some_and(|t| t.is("application", "sdp"));
    if !parts.iter().any(is_sdp) {
        return None;
    }
    let kept: Vec<NewPart> = parts.iter().filter(|p| !is_sdp(p)).map(copy_part).collect();
    if kept.is_empty() {
        return Some((None, Bytes::new()));
    }
    let body = multipart::build(boundary, &kept).ok()?;
    Some((Some(ct.to_owned()), Bytes::from(body)))
}

fn copy_part(p: &multipart::Part<'_>) -> NewPart {
    NewPart {
        headers: p.headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
        body: p.body.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
        c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n\
        a=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=rtpmap:9 G722/8000\r\n\
        a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\n\
        a=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n";

    #[test]
    fn reads_a_browser_offer() {
        let sdp = Sdp::parse(CHROME).unwrap();
        assert!(sdp.is_webrtc());
        assert_eq!(sdp.address, None);
        assert_eq!(sdp.port, 9);
        assert_eq!(sdp.voice(), Some((0, Codec::Pcmu)));
        assert_eq!(sdp.telephone_event(), Some(126));
        let relayable: Vec<_> = sdp.relayable().collect();
        assert_eq!(
            relayable,
            vec![(0, Codec::Pcmu), (8, Codec::Pcma), (126, Codec::TelephoneEvent)]
        );
    }

    #[test]
    fn reads_a_plain_answer_with_media_level_address_and_hold() {
        let text = "v=0\no=x 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n\
            m=audio 4000 RTP/AVP 8 101\nc=IN IP4 10.0.0.2\na=rtpmap:101 telephone-event/8000\n\
            a=sendonly\nm=video 5000 RTP/AVP 96\nc=IN IP4 10.0.0.9\na=recvonly\n";
        let sdp = Sdp::parse(text).unwrap();
        assert!(!sdp.is_webrtc());
        assert_eq!(sdp.rtp_address(), Some("10.0.0.2:4000".parse().unwrap()));
        assert_eq!(sdp.direction, Direction::SendOnly);
        assert_eq!(sdp.voice(), Some((8, Codec::Pcma)));
        assert_eq!(sdp.telephone_event(), Some(101));
    }

    #[test]
    fn writes_what_it_reads() {
        let addr: SocketAddr = "[::1]:20002".parse().unwrap();
        let text = plain(
            7,
            2,
            addr,
            &[(0, Codec::Pcmu), (101, Codec::TelephoneEvent)],
            Direction::RecvOnly,
        );
        let sdp = Sdp::parse(&text).unwrap();
        assert_eq!(sdp.rtp_address(), Some(addr));
        assert_eq!(sdp.direction, Direction::RecvOnly);
        assert_eq!(sdp.voice(), Some((0, Codec::Pcmu)));
        assert_eq!(sdp.telephone_event(), Some(101));
        assert!(text.contains("a=fmtp:101 0-16\r\n"));
    }

    #[test]
    fn readdressing_moves_only_the_media() {
        let text = "v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
            m=audio 4000 RTP/AVP 18 0\r\na=rtcp:4001\r\na=rtpmap:18 G729/8000\r\n";
        let moved = readdress(text, "192.0.2.7:20000".parse().unwrap());
        assert_eq!(
            moved,
            "v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n\
             m=audio 20000 RTP/AVP 18 0\r\na=rtpmap:18 G729/8000\r\n"
        );
        let sdp = Sdp::parse(&moved).unwrap();
        assert_eq!(sdp.rtp_address(), Some("192.0.2.7:20000".parse().unwrap()));
        // The edge's RTCP is on its default port, above RTP's.
        assert_eq!(sdp.rtcp_address(), Some("192.0.2.7:20001".parse().unwrap()));
    }

    #[test]
    fn rtcp_goes_where_a_rtcp_says_or_above_rtp() {
        let parse = |extra: &str| {
            Sdp::parse(&format!("c=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n{extra}")).unwrap()
        };
        let at = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(parse("").rtcp_address(), at("10.0.0.1:4001"));
        assert_eq!(parse("a=rtcp:5005\r\n").rtcp_address(), at("10.0.0.1:5005"));
        let elsewhere = parse("a=rtcp:5005 IN IP4 10.0.0.9\r\n");
        assert_eq!(elsewhere.rtcp_address(), at("10.0.0.9:5005"));
        // Chrome's placeholder address is no address; garbage is RTCP's default.
        assert_eq!(parse("a=rtcp:9 IN IP4 0.0.0.0\r\n").rtcp_address(), at("10.0.0.1:9"));
        assert_eq!(parse("a=rtcp:x\r\n").rtcp_address(), at("10.0.0.1:4001"));
        assert!(!parse("").rtcp_mux && parse("a=rtcp-mux\r\n").rtcp_mux);
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        for bad in [
            "",
            "v=0\r\n",
            "hello\r\n",
            "m=audio x RTP/AVP 0\r\n",
            "m=audio 4000\r\n",
            "m=audio 4000 RTP/AVP 300\r\n",
            "c=IN IP4 nope\r\nm=audio 1 RTP/AVP 0\r\n",
            "c=IN IP6 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\n",
        ] {
            assert!(Sdp::parse(bad).is_err(), "{bad:?}");
        }
        // A hold with the RFC 2543 address has no RTP address.
        let hold = Sdp::parse("c=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap();
        assert_eq!(hold.rtp_address(), None);
    }

    #[test]
    fn sdp_inside_a_multipart_is_found_and_replaced_leaving_the_pidf_alone() {
        let pidf = b"<?xml version=\"1.0\"?>\r\n<presence entity=\"pres:a@b\"/>".to_vec();
        let body = multipart::build(
            "b1",
            &[
                NewPart::new("application/sdp", None, b"v=0\r\nm=audio 9 RTP/AVP 0\r\n".to_vec()),
                NewPart::new("application/pidf+xml", Some("loc@x"), pidf.clone()),
            ],
        )
        .unwrap();
        let ct = b"multipart/mixed;boundary=b1";
        let body = Bytes::from(body);
        assert_eq!(of_body(Some(ct), &body).unwrap(), "v=0\r\nm=audio 9 RTP/AVP 0\r\n");
        let (ct2, body2) =
            replace_in_body(Some(ct), &body, "v=0\r\nm=audio 4000 RTP/AVP 8\r\n").unwrap();
        assert_eq!(ct2, "multipart/mixed;boundary=b1");
        let parts = multipart::parse(&body2, "b1").unwrap();
        assert_eq!(parts[0].body, b"v=0\r\nm=audio 4000 RTP/AVP 8\r\n");
        assert_eq!(parts[1].body, &pidf[..]);
        assert_eq!(parts[1].content_id(), Some("loc@x"));
    }

    #[test]
    fn a_plain_body_is_replaced_whole() {
        let body = Bytes::from_static(b"v=0\r\n");
        assert_eq!(of_body(Some(b"application/sdp"), &body).unwrap(), "v=0\r\n");
        assert!(of_body(Some(b"text/plain"), &body).is_none());
        assert!(of_body(None, &body).is_none());
        let (ct, b) = replace_in_body(Some(b"application/sdp"), &body, "v=1\r\n").unwrap();
        assert_eq!((ct.as_str(), &b[..]), ("application/sdp", &b"v=1\r\n"[..]));
    }

    #[test]
    fn the_edge_s_own_plain_offer_is_g711_with_events() {
        let addr: SocketAddr = "192.0.2.7:20000".parse().unwrap();
        let text = plain(1, 1, addr, &PLAIN_OFFER, Direction::SendRecv);
        assert!(text.contains("m=audio 20000 RTP/AVP 0 8 101\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"));
        let sdp = Sdp::parse(&text).unwrap();
        assert_eq!(sdp.voice(), Some((0, Codec::Pcmu)));
        assert_eq!(sdp.telephone_event(), Some(101));
    }

    #[test]
    fn a_plain_answer_is_usable_only_with_an_offered_voice_codec_on_a_live_stream() {
        let offered = [(0, Codec::Pcmu), (101, Codec::TelephoneEvent)];
        let answer = |m: &str| Sdp::parse(&format!("c=IN IP4 192.0.2.1\r\n{m}\r\n")).unwrap();
        assert!(answer("m=audio 4000 RTP/AVP 0 101").answers_plain(&offered));
        // Another payload type number for the same codec is still the codec offered.
        assert!(answer("m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 PCMU/8000").answers_plain(&offered));
        // A codec not offered, events only, a refused stream, a browser's description.
        assert!(!answer("m=audio 4000 RTP/AVP 8").answers_plain(&offered));
        assert!(!answer("m=audio 4000 RTP/AVP 101").answers_plain(&offered));
        assert!(!answer("m=audio 0 RTP/AVP 0").answers_plain(&offered));
        assert!(!answer("m=audio 4000 UDP/TLS/RTP/SAVPF 0").answers_plain(&offered));
        // The RFC 2543 hold address: usable, symmetric RTP finds the peer.
        let held = Sdp::parse("c=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap();
        assert!(held.answers_plain(&offered));
    }

    #[test]
    fn an_offer_goes_into_an_empty_body_or_a_multipart_and_comes_out_again() {
        let offer = "v=0\r\nm=audio 4000 RTP/AVP 0\r\n";
        // No body: the SDP is the body.
        let (ct, body) = put_in_body(None, &Bytes::new(), offer).unwrap();
        assert_eq!((ct.as_str(), &body[..]), ("application/sdp", offer.as_bytes()));
        assert_eq!(remove_from_body(Some(ct.as_bytes()), &body), Some((None, Bytes::new())));
        // An SDP body is replaced.
        let old = Bytes::from_static(b"v=0\r\nm=audio 9 RTP/AVP 8\r\n");
        let (_, body) = put_in_body(Some(b"application/sdp"), &old, offer).unwrap();
        assert_eq!(&body[..], offer.as_bytes());
        // A multipart without SDP (a PIDF-LO alone) gets it first; taking it out leaves the
        // PIDF-LO byte for byte.
        let pidf = b"<presence entity=\"pres:a@b\"/>".to_vec();
        let ct = b"multipart/mixed;boundary=b1";
        let only_pidf = Bytes::from(
            multipart::build(
                "b1",
                &[NewPart::new("application/pidf+xml", Some("loc@x"), pidf.clone())],
            )
            .unwrap(),
        );
        let (ct2, with_sdp) = put_in_body(Some(ct), &only_pidf, offer).unwrap();
        assert_eq!(ct2, "multipart/mixed;boundary=b1");
        assert_eq!(of_body(Some(ct), &with_sdp).unwrap(), offer);
        let parts = multipart::parse(&with_sdp, "b1").unwrap();
        assert_eq!((parts.len(), parts[1].body), (2, &pidf[..]));
        let (ct3, without) = remove_from_body(Some(ct), &with_sdp).unwrap();
        assert_eq!(ct3.as_deref(), Some("multipart/mixed;boundary=b1"));
        assert!(of_body(Some(ct), &without).is_none());
        let parts = multipart::parse(&without, "b1").unwrap();
        assert_eq!((parts.len(), parts[0].body), (1, &pidf[..]));
        assert_eq!(parts[0].content_id(), Some("loc@x"));
        // A body of another single type takes no SDP and has none to remove.
        let text = Bytes::from_static(b"hello");
        assert!(put_in_body(Some(b"text/plain"), &text, offer).is_none());
        assert!(remove_from_body(Some(b"text/plain"), &text).is_none());
        assert!(remove_from_body(Some(ct), &only_pidf).is_none());
    }
}
