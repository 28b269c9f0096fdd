//! The demo carrier's offer/answer (RFC 3264) on the edge's own SDP code
//! ([`crate::media::sdp`]): what it can speak (plain RTP, G.711, telephone-event) and the
//! description it writes. Nothing here panics on bytes from the network: what cannot be read
//! is `None`.

use std::net::SocketAddr;

pub use crate::media::sdp::{Codec, Direction, Sdp};

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

/// What the carrier speaks in a call: the payload types it accepts (in the offer's order) and
/// the voice codec it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codecs {
    pub payloads: Vec<(u8, Codec)>,
    pub voice: (u8, Law),
}

impl Codecs {
    /// What the carrier offers when it calls (the PSAP): PCMU, PCMA, telephone-event.
    pub fn offered() -> Codecs {
        Codecs {
            payloads: vec![
                (0, Codec::Pcmu),
                (8, Codec::Pcma),
                (TELEPHONE_EVENT, Codec::TelephoneEvent),
            ],
            voice: (0, Law::Mu),
        }
    }

    /// What it can answer to `offer`: plain RTP with PCMU or PCMA, else `None` (a browser's
    /// DTLS-SRTP, Opus only...).
    pub fn of(offer: &Sdp) -> Option<Codecs> {
        if offer.is_webrtc() || !offer.profile.starts_with("RTP/AVP") {
            return None;
        }
        let (pt, codec) = offer.voice()?;
        let law = if codec == Codec::Pcma { Law::A } else { Law::Mu };
        Some(Codecs { payloads: offer.relayable().collect(), voice: (pt, law) })
    }
}

/// The carrier's description: RTP on `addr`, the call's codecs, telephone-event only at
/// `telephone_event`.
pub fn write(
    addr: SocketAddr,
    session: u64,
    version: u64,
    codecs: &Codecs,
    direction: Direction,
    telephone_event: Option<u8>,
) -> String {
    let payloads: Vec<(u8, Codec)> = codecs
        .payloads
        .iter()
        .copied()
        .filter(|(pt, c)| *c != Codec::TelephoneEvent || Some(*pt) == telephone_event)
        .collect();
    crate::media::sdp::plain(session, version, addr, &payloads, direction)
}

/// The audio description in a message body (alone or in a multipart).
pub fn of_body(content_type: Option<&[u8]>, body: &bytes::Bytes) -> Option<Sdp> {
    Sdp::parse(&crate::media::sdp::of_body(content_type, body)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROWSER_LIKE: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
a=sendrecv\r\nm=audio 40000 RTP/AVP 111 0 8 126\r\na=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:126 telephone-event/8000\r\na=sendonly\r\nm=video 40002 RTP/AVP 96\r\nc=IN IP4 10.0.0.1\r\n";

    #[test]
    fn reads_the_audio_stream_and_answers_what_it_can() {
        let a = Sdp::parse(BROWSER_LIKE).unwrap();
        assert_eq!(a.rtp_address(), Some("127.0.0.1:40000".parse().unwrap()));
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(a.telephone_event(), Some(126));
        let c = Codecs::of(&a).unwrap();
        let pts: Vec<u8> = c.payloads.iter().map(|(pt, _)| *pt).collect();
        assert_eq!(pts, [0, 8, 126], "opus is not spoken");
        assert_eq!(c.voice, (0, Law::Mu));
        let answer =
            write("127.0.0.2:30000".parse().unwrap(), 7, 1, &c, a.direction.reversed(), Some(126));
        assert!(answer.contains("m=audio 30000 RTP/AVP 0 8 126\r\n"), "{answer}");
        assert!(answer.contains("a=rtpmap:126 telephone-event/8000\r\n"), "{answer}");
        assert!(answer.contains("a=recvonly\r\n"), "{answer}");
        let back = Sdp::parse(&answer).unwrap();
        assert_eq!(back.rtp_address(), Some("127.0.0.2:30000".parse().unwrap()));
    }

    #[test]
    fn what_it_cannot_use_is_none() {
        let srtp = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n";
        assert!(Codecs::of(&Sdp::parse(srtp).unwrap()).is_none());
        let opus =
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 9 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(Codecs::of(&Sdp::parse(opus).unwrap()).is_none());
        for junk in ["", "m=audio", "m=audio x RTP/AVP 0", "\u{0}\u{ff}", "m=video 1 RTP/AVP 0"] {
            assert!(Sdp::parse(junk).ok().and_then(|a| Codecs::of(&a)).is_none(), "{junk:?}");
        }
        let hold = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(Sdp::parse(hold).unwrap().rtp_address(), None);
        assert!(
            of_body(Some(b"application/sdp"), &bytes::Bytes::from_static(&[0xff, 0xfe])).is_none()
        );
    }

    #[test]
    fn finds_the_sdp_in_a_multipart_body() {
        let body = "--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=audio 1 RTP/AVP 0\r\n\r\n--b1\r\nContent-Type: application/pidf+xml\r\n\r\n<x/>\r\n--b1--\r\n";
        let body = bytes::Bytes::from(body);
        assert!(of_body(Some(b"multipart/mixed;boundary=b1"), &body).is_some());
        assert!(of_body(None, &bytes::Bytes::from_static(b"v=0")).is_none());
    }
}
