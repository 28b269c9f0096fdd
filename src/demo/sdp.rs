//! Just enough SDP (RFC 4566) and offer/answer (RFC 3264) for the demo carrier: the first
//! `m=audio` line of an offer or answer read, an answer or an offer written. Plain RTP only
//! (`RTP/AVP`), G.711 (PCMU, PCMA) and telephone-event (RFC 4733). Nothing here panics on
//! bytes from the network: what cannot be read is `None`.

use std::net::{IpAddr, SocketAddr};

/// The RTP clock of every codec the demo carrier speaks.
pub const CLOCK: u32 = 8000;

/// The dynamic payload type the demo carrier offers for telephone-event.
pub const TELEPHONE_EVENT: u8 = 101;

/// A G.711 law (ITU-T G.711): what the tone is encoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// PCMU, static payload type 0.
    Mu,
    /// PCMA, static payload type 8.
    A,
}

/// Which way media flows, from the writer's point of view (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction an answer takes to this offer (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether the side that wrote this direction receives media (so the other side sends).
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// The audio stream of a session description, as the demo carrier needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    /// Connection address (media-level `c=`, else session-level); `None` when absent.
    pub ip: Option<IpAddr>,
    /// The `m=audio` port; 0 is a rejected or disabled stream.
    pub port: u16,
    /// The transport protocol (`RTP/AVP`, or `UDP/TLS/RTP/SAVPF` from a browser).
    pub proto: String,
    /// The payload types in preference order.
    pub formats: Vec<u8>,
    /// `a=rtpmap` entries: payload type, encoding name (upper case) and clock rate.
    pub rtpmaps: Vec<(u8, String, u32)>,
    pub direction: Direction,
}

impl Audio {
    /// The first `m=audio` stream of `body`; `None` when there is none or it cannot be read.
    pub fn parse(body: &[u8]) -> Option<Audio> {
        let text = std::str::from_utf8(body).ok()?;
        let mut session_ip = None;
        let mut session_dir = Direction::SendRecv;
        let mut audio: Option<Audio> = None;
        let mut in_other_media = false;
        for line in text.lines().map(str::trim_end) {
            let Some((kind, value)) = line.split_once('=') else { continue };
            if kind == "m" {
                if audio.is_some() {
                    break;
                }
                let mut it = value.split_ascii_whitespace();
                if it.next() != Some("audio") {
                    in_other_media = true;
                    continue;
                }
                in_other_media = false;
                // `port/count` (RFC 4566 §5.14) keeps only the port.
                let port = it.next()?.split('/').next()?.parse().ok()?;
                let proto = it.next()?.to_owned();
                let formats = it.filter_map(|f| f.parse().ok()).collect();
                audio = Some(Audio {
                    ip: session_ip,
                    port,
                    proto,
                    formats,
                    rtpmaps: Vec::new(),
                    direction: session_dir,
                });
                continue;
            }
            if in_other_media {
                continue;
            }
            match (kind, audio.as_mut()) {
                ("c", None) => session_ip = connection(value),
                ("c", Some(a)) => a.ip = connection(value).or(a.ip),
                ("a", target) => {
                    let dir = match value {
                        "sendrecv" => Some(Direction::SendRecv),
                        "sendonly" => Some(Direction::SendOnly),
                        "recvonly" => Some(Direction::RecvOnly),
                        "inactive" => Some(Direction::Inactive),
                        _ => None,
                    };
                    match (dir, target) {
                        (Some(d), None) => session_dir = d,
                        (Some(d), Some(a)) => a.direction = d,
                        (None, Some(a)) => {
                            if let Some(map) = value.strip_prefix("rtpmap:").and_then(rtpmap) {
                                a.rtpmaps.push(map);
                            }
                        }
                        (None, None) => {}
                    }
                }
                _ => {}
            }
        }
        audio
    }

    /// Where this side receives RTP, when it said.
    pub fn addr(&self) -> Option<SocketAddr> {
        let ip = self.ip.filter(|ip| !ip.is_unspecified())?;
        (self.port != 0).then_some(SocketAddr::new(ip, self.port))
    }

    /// The encoding of payload type `pt`: its `a=rtpmap`, else the static table (RFC 3551).
    fn encoding(&self, pt: u8) -> Option<(String, u32)> {
        if let Some((_, name, rate)) = self.rtpmaps.iter().find(|(p, _, _)| *p == pt) {
            return Some((name.clone(), *rate));
        }
        match pt {
            0 => Some(("PCMU".into(), CLOCK)),
            8 => Some(("PCMA".into(), CLOCK)),
            _ => None,
        }
    }

    /// What the demo carrier can use of this stream: the payload types it speaks, in this
    /// stream's order, and the first G.711 one (what the tone is sent with).
    pub fn usable(&self) -> Option<Codecs> {
        if self.proto != "RTP/AVP" && self.proto != "RTP/AVPF" {
            return None;
        }
        let mut formats = Vec::new();
        let mut voice = None;
        for &pt in &self.formats {
            let Some((name, rate)) = self.encoding(pt) else { continue };
            if rate != CLOCK {
                continue;
            }
            let law = match name.as_str() {
                "PCMU" => Some(Law::Mu),
                "PCMA" => Some(Law::A),
                "TELEPHONE-EVENT" => None,
                _ => continue,
            };
            if voice.is_none() {
                voice = law.map(|l| (pt, l));
            }
            if !formats.contains(&pt) {
                formats.push(pt);
            }
        }
        let voice = voice?;
        Some(Codecs { formats, voice })
    }
}

/// The payload types both sides speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codecs {
    /// In the offer's order (G.711 and telephone-event).
    pub formats: Vec<u8>,
    /// The first G.711 payload type and its law.
    pub voice: (u8, Law),
}

impl Codecs {
    /// What the demo carrier offers: PCMU, PCMA, telephone-event.
    pub fn offered() -> Codecs {
        Codecs { formats: vec![0, 8, TELEPHONE_EVENT], voice: (0, Law::Mu) }
    }
}

/// `c=IN IP4 addr` or `c=IN IP6 addr` (a multicast `/ttl` suffix is dropped).
fn connection(value: &str) -> Option<IpAddr> {
    let mut it = value.split_ascii_whitespace();
    if it.next()? != "IN" {
        return None;
    }
    let _family = it.next()?;
    it.next()?.split('/').next()?.parse().ok()
}

/// `PT NAME/RATE[/CHANNELS]`.
fn rtpmap(value: &str) -> Option<(u8, String, u32)> {
    let (pt, rest) = value.split_once(' ')?;
    let mut parts = rest.trim().split('/');
    let name = parts.next()?.to_ascii_uppercase();
    let rate = parts.next()?.parse().ok()?;
    Some((pt.parse().ok()?, name, rate))
}

/// Writes the demo carrier's session description: `codecs` on `addr`, `version` as the `o=`
/// version (RFC 3264 §8: it goes up only when the description changes).
pub fn write(
    addr: SocketAddr,
    session: u64,
    version: u64,
    codecs: &Codecs,
    direction: Direction,
    telephone_event: Option<u8>,
) -> String {
    let family = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let ip = addr.ip();
    let formats: Vec<String> = codecs.formats.iter().map(u8::to_string).collect();
    let mut s = format!(
        "v=0\r\no=lifeline-demo {session} {version} IN {family} {ip}\r\ns=lifeline demo carrier\r\n\
c=IN {family} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP {}\r\n",
        addr.port(),
        formats.join(" ")
    );
    for &pt in &codecs.formats {
        match pt {
            0 => s.push_str("a=rtpmap:0 PCMU/8000\r\n"),
            8 => s.push_str("a=rtpmap:8 PCMA/8000\r\n"),
            pt if Some(pt) == telephone_event => {
                s.push_str(&format!("a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"));
            }
            // A dynamic payload type the offer mapped to PCMU or PCMA keeps its mapping.
            _ => {}
        }
    }
    s.push_str("a=ptime:20\r\n");
    s.push_str(&format!("a={}\r\n", direction.attribute()));
    s
}

/// The payload type `audio` uses for telephone-event, if any.
pub fn telephone_event(audio: &Audio) -> Option<u8> {
    audio
        .rtpmaps
        .iter()
        .find(|(_, name, rate)| name == "TELEPHONE-EVENT" && *rate == CLOCK)
        .map(|(pt, _, _)| *pt)
}

/// The SDP of a message body: the body itself (`application/sdp`), or its SDP part when it is
/// `multipart/mixed` (an emergency INVITE carries a PIDF-LO beside it, RFC 6442).
pub fn of_body(
    content_type: Option<sip::header::typed::MediaType<'_>>,
    body: &[u8],
) -> Option<Vec<u8>> {
    let ct = content_type?;
    if ct.is("application", "sdp") {
        return Some(body.to_vec());
    }
    if ct.is("multipart", "mixed") {
        let parts = sip::multipart::parse(body, ct.boundary()?).ok()?;
        return parts
            .iter()
            .find(|p| p.content_type().is_some_and(|t| t.is("application", "sdp")))
            .map(|p| p.body.to_vec());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROWSER_LIKE: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
a=sendrecv\r\nm=audio 40000 RTP/AVP 111 0 8 126\r\na=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:126 telephone-event/8000\r\na=sendonly\r\nm=video 40002 RTP/AVP 96\r\nc=IN IP4 10.0.0.1\r\n";

    #[test]
    fn reads_the_audio_stream_and_answers_what_it_can() {
        let a = Audio::parse(BROWSER_LIKE.as_bytes()).unwrap();
        assert_eq!(a.addr(), Some("127.0.0.1:40000".parse().unwrap()));
        assert_eq!(a.formats, [111, 0, 8, 126]);
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(telephone_event(&a), Some(126));
        let c = a.usable().unwrap();
        assert_eq!(c.formats, [0, 8, 126], "opus is not spoken");
        assert_eq!(c.voice, (0, Law::Mu));
        let answer =
            write("127.0.0.2:30000".parse().unwrap(), 7, 1, &c, a.direction.answer(), Some(126));
        assert!(answer.contains("m=audio 30000 RTP/AVP 0 8 126\r\n"), "{answer}");
        assert!(answer.contains("a=rtpmap:126 telephone-event/8000\r\n"), "{answer}");
        assert!(answer.contains("a=recvonly\r\n"), "{answer}");
        let back = Audio::parse(answer.as_bytes()).unwrap();
        assert_eq!(back.addr(), Some("127.0.0.2:30000".parse().unwrap()));
    }

    #[test]
    fn what_it_cannot_use_is_none() {
        let srtp = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n";
        assert!(Audio::parse(srtp.as_bytes()).unwrap().usable().is_none());
        let opus =
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 9 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(Audio::parse(opus.as_bytes()).unwrap().usable().is_none());
        for junk in ["", "m=audio", "m=audio x RTP/AVP 0", "\u{0}\u{ff}", "m=video 1 RTP/AVP 0"] {
            assert!(Audio::parse(junk.as_bytes()).and_then(|a| a.usable()).is_none(), "{junk:?}");
        }
        assert!(Audio::parse(&[0xff, 0xfe]).is_none());
        let hold = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(Audio::parse(hold.as_bytes()).unwrap().addr(), None);
    }

    #[test]
    fn finds_the_sdp_in_a_multipart_body() {
        let body = "--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=audio 1 RTP/AVP 0\r\n\r\n--b1\r\nContent-Type: application/pidf+xml\r\n\r\n<x/>\r\n--b1--\r\n";
        let ct = sip::header::typed::MediaType::parse("multipart/mixed;boundary=b1").unwrap();
        let sdp = of_body(Some(ct), body.as_bytes()).unwrap();
        assert!(Audio::parse(&sdp).is_some());
        assert!(of_body(None, b"v=0").is_none());
    }
}
