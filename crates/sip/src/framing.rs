//! Finding whole messages in a byte stream (TCP, TLS; RFC 3261 §18.3) in two steps:
//! [`check`] says whether the buffer starts with a whole message and how long it is, without
//! building anything; then [`crate::Message::parse`] decodes exactly that many bytes.
//!
//! Keep-alives (RFC 5626 §3.5.1) are recognised: a double CRLF "ping", which the receiver
//! answers with a single CRLF "pong", and a lone CRLF (a pong, or a blank line before a
//! message, RFC 3261 §7.5), which is consumed.
//!
//! A message larger than `max_message` is an error as soon as that is known, so a peer that
//! never finishes its headers cannot make the buffer grow without bound.

use std::fmt;

use crate::header::HeaderName;
use crate::header::typed::parse_number;

/// What the start of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet: read more.
    Incomplete,
    /// A keep-alive of `len` bytes to consume; answer a `ping` with `\r\n` (RFC 5626 §4.4.1).
    KeepAlive { len: usize, ping: bool },
    /// A whole message of `len` bytes.
    Message { len: usize },
}

/// The stream cannot be framed; the connection should be closed (after a 4xx/513 where the
/// start of the message is readable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The message is, or will be, larger than the limit.
    TooLarge,
    /// No Content-Length: on a stream the message boundary cannot be known (RFC 3261 §18.3).
    MissingContentLength,
    /// A Content-Length that is not a number, or two that disagree.
    BadContentLength,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameError::TooLarge => "message too large",
            FrameError::MissingContentLength => "missing Content-Length on a stream",
            FrameError::BadContentLength => "bad Content-Length",
        })
    }
}

impl std::error::Error for FrameError {}

/// Looks at the start of `buf` for a keep-alive or a whole message of at most `max_message`
/// bytes.
pub fn check(buf: &[u8], max_message: usize) -> Result<Frame, FrameError> {
    match buf {
        [] | [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => {
            return Ok(Frame::Incomplete);
        }
        [b'\r', b'\n', b'\r', b'\n', ..] => return Ok(Frame::KeepAlive { len: 4, ping: true }),
        [b'\r', b'\n', ..] => {
            return Ok(Frame::KeepAlive { len: 2, ping: false });
        }
        // A bare LF, or a CR not followed by LF: stray line-break bytes before a start line,
        // which the parser skips too (RFC 3261 §7.5).
        [b'\n', ..] | [b'\r', ..] => {
            return Ok(Frame::KeepAlive { len: 1, ping: false });
        }
        _ => {}
    }
    let mut pos = 0;
    let mut content_length: Option<u32> = None;
    // A Content-Length header being read: its value may continue on folded lines (RFC 3261
    // §7.3.1), so it is decoded once the next header starts.
    let mut pending: Option<Vec<u8>> = None;
    let mut first = true;
    loop {
        let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
            return if buf.len() > max_message {
                Err(FrameError::TooLarge)
            } else {
                Ok(Frame::Incomplete)
            };
        };
        let next = pos + nl + 1;
        if next > max_message {
            return Err(FrameError::TooLarge);
        }
        let mut line = &buf[pos..pos + nl];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        let folded = matches!(line.first(), Some(b' ' | b'\t'));
        if folded && let Some(value) = pending.as_mut() {
            value.push(b' ');
            value.extend_from_slice(line);
        } else if let Some(value) = pending.take() {
            let n = decode_content_length(&value)?;
            match content_length {
                Some(prev) if prev != n => return Err(FrameError::BadContentLength),
                _ => content_length = Some(n),
            }
        }
        if line.is_empty() {
            let len = content_length.ok_or(FrameError::MissingContentLength)? as usize;
            let total = next + len;
            if total > max_message {
                return Err(FrameError::TooLarge);
            }
            return Ok(if buf.len() >= total {
                Frame::Message { len: total }
            } else {
                Frame::Incomplete
            });
        }
        if !first && !folded {
            pending = content_length_value(line).map(<[u8]>::to_vec);
        }
        first = false;
        pos = next;
    }
}

/// The value of a header line when it is Content-Length (long or compact name).
fn content_length_value(line: &[u8]) -> Option<&[u8]> {
    let colon = memchr::memchr(b':', line)?;
    let mut name = &line[..colon];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    (HeaderName::from_bytes(name) == HeaderName::ContentLength).then(|| &line[colon + 1..])
}

fn decode_content_length(value: &[u8]) -> Result<u32, FrameError> {
    let value = std::str::from_utf8(value).map_err(|_| FrameError::BadContentLength)?;
    parse_number(value).map_err(|_| FrameError::BadContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 4\r\n\r\nbody";

    #[test]
    fn whole_message_and_prefixes() {
        assert_eq!(check(MSG, 65535), Ok(Frame::Message { len: MSG.len() }));
        for n in 0..MSG.len() {
            assert_eq!(check(&MSG[..n], 65535), Ok(Frame::Incomplete), "prefix {n}");
        }
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        assert_eq!(check(&two, 65535), Ok(Frame::Message { len: MSG.len() }));
    }

    #[test]
    fn keep_alives() {
        assert_eq!(check(b"\r\n\r\n", 100), Ok(Frame::KeepAlive { len: 4, ping: true }));
        assert_eq!(check(b"\r\nINVITE", 100), Ok(Frame::KeepAlive { len: 2, ping: false }));
        assert_eq!(check(b"\r\n", 100), Ok(Frame::Incomplete));
    }

    #[test]
    fn limits_and_errors() {
        assert_eq!(check(MSG, 20), Err(FrameError::TooLarge));
        assert_eq!(check(&[b'A'; 200], 100), Err(FrameError::TooLarge));
        assert_eq!(
            check(b"INVITE sip:a@b SIP/2.0\r\n\r\n", 100),
            Err(FrameError::MissingContentLength)
        );
        assert_eq!(
            check(b"X sip:a@b SIP/2.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 100),
            Err(FrameError::BadContentLength)
        );
        assert_eq!(
            check(b"X sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", 100),
            Err(FrameError::BadContentLength)
        );
        // A body that would pass the limit is refused before it arrives.
        assert_eq!(check(b"X sip:a@b SIP/2.0\r\nl: 5000\r\n\r\n", 1000), Err(FrameError::TooLarge));
    }
}
