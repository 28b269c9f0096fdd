//! Stream framing (`sip::framing::check`) on arbitrary bytes.
//!
//! Input layout: byte 0 picks the size limit, bytes 1..3 seed the chunk sizes, the rest is the
//! stream as a peer would send it.
//!
//! Invariants:
//! - `check` never panics; a `Message { len }` or `KeepAlive { len }` fits in the buffer and
//!   `len` is at most the limit (and is not zero);
//! - `check` looks only at what it frames: for a message it answers the same on `buf[..len]` as
//!   on `buf`, and every strict prefix of a frame is `Incomplete` — never a message (which would
//!   cut the stream at the wrong place), never an error (which would close a good connection);
//! - the frame and the parser agree: a message frame that parses as a stream message prints
//!   back to the frame's bytes (the parser used the body length the framer found);
//! - when the framer refuses the Content-Length (bad or missing), the parser refuses the bytes
//!   too;
//! - fed in chunks (sizes derived from the input, as a socket would deliver them), a framing
//!   loop produces the same frames and the same final state as on the whole buffer.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip::framing::{self, Frame, FrameError};
use sip::{Framing, Message};

const LIMITS: [usize; 8] = [16, 64, 200, 512, 1500, 4096, 65_535, usize::MAX];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let limit = LIMITS[usize::from(data[0]) % LIMITS.len()];
    let seed = u32::from(data[1]) << 8 | u32::from(data[2]);
    let stream = &data[3..];

    let whole = run(stream, limit, &[stream.len().max(1)], true);
    let sizes = chunk_sizes(seed, stream.len());
    // The frame checks are the same on both runs (same frames): done once.
    let chunked = run(stream, limit, &sizes, false);
    assert_eq!(
        whole, chunked,
        "chunking changed the framing (chunks {sizes:?})"
    );
});

/// What a framing loop saw: the frames, then why it stopped.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<(Kind, usize, usize)>,
    end: End,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Kind {
    Message,
    Ping,
    Pong,
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// All input consumed or waiting for more: how many bytes are left buffered.
    Waiting(usize),
    Error(FrameError),
}

/// Feeds `stream` in chunks of `sizes` (cycled) to a buffer and frames it as a connection
/// would: after each read, take every whole frame at the front. `deep` checks each frame.
fn run(stream: &[u8], limit: usize, sizes: &[usize], deep: bool) -> Outcome {
    let mut frames = Vec::new();
    let mut start = 0; // first unconsumed byte
    let mut received = 0;
    let mut i = 0;
    loop {
        // Frame everything already received.
        loop {
            let buf = &stream[start..received];
            match framing::check(buf, limit) {
                Ok(Frame::Incomplete) => break,
                Ok(Frame::KeepAlive { len, ping }) => {
                    // (A pong is only known to be one when the next byte is not LF, so the
                    // answer on `buf[..len]` may differ here: not checked.)
                    assert!(len > 0 && len <= buf.len() && len <= 4);
                    frames.push((if ping { Kind::Ping } else { Kind::Pong }, start, len));
                    start += len;
                }
                Ok(Frame::Message { len }) => {
                    assert!(len > 0, "empty message frame");
                    assert!(len <= buf.len(), "frame longer than the buffer");
                    assert!(len <= limit, "frame longer than the limit");
                    if deep {
                        assert_same_on_frame(buf, len, limit);
                        assert_prefixes_incomplete(&buf[..len], limit);
                        assert_parser_agrees(&buf[..len]);
                    }
                    frames.push((Kind::Message, start, len));
                    start += len;
                }
                Err(e) => {
                    if deep {
                        assert_parser_refuses_too(buf, e);
                    }
                    return Outcome {
                        frames,
                        end: End::Error(e),
                    };
                }
            }
        }
        if received == stream.len() {
            return Outcome {
                frames,
                end: End::Waiting(received - start),
            };
        }
        received = (received + sizes[i % sizes.len()]).min(stream.len());
        i += 1;
    }
}

fn assert_same_on_frame(buf: &[u8], len: usize, limit: usize) {
    assert_eq!(
        framing::check(&buf[..len], limit),
        framing::check(buf, limit),
        "bytes after the frame changed the answer"
    );
}

fn assert_prefixes_incomplete(frame: &[u8], limit: usize) {
    // Every prefix for small frames; for big ones the prefixes ending at or just around a line
    // break (where the framer's decisions are made) and a stride through the rest.
    let step = (frame.len() / 256).max(1);
    for n in 0..frame.len() {
        let near_nl = frame[n.saturating_sub(2)..(n + 2).min(frame.len())].contains(&b'\n');
        if n % step != 0 && !near_nl {
            continue;
        }
        assert_eq!(
            framing::check(&frame[..n], limit),
            Ok(Frame::Incomplete),
            "a strict prefix ({n} of {} bytes) of a frame is not Incomplete: {:?}",
            frame.len(),
            Bytes::copy_from_slice(&frame[..n])
        );
    }
}

fn assert_parser_agrees(frame: &[u8]) {
    let Ok(msg) = Message::parse(Bytes::copy_from_slice(frame), Framing::Stream) else {
        return;
    };
    let skip = frame
        .iter()
        .position(|c| !matches!(c, b'\r' | b'\n'))
        .unwrap_or(frame.len());
    assert_eq!(
        msg.to_bytes(),
        &frame[skip..],
        "the parser and the framer disagree on where the message ends"
    );
}

/// When the framer gives up on the Content-Length, the parser must not accept the same bytes
/// as a stream message: the framer would close a connection over a message the edge can read.
fn assert_parser_refuses_too(buf: &[u8], e: FrameError) {
    if !matches!(
        e,
        FrameError::BadContentLength | FrameError::MissingContentLength
    ) {
        return;
    }
    // Regression: crates/sip/tests/fuzz_regressions/framing-folded-content-length.sip.
    if let Ok(m) = Message::parse(Bytes::copy_from_slice(buf), Framing::Stream) {
        panic!(
            "the framer refused ({e}) a message the parser accepts: {:?}",
            m.to_bytes()
        );
    }
}

/// Chunk sizes from a xorshift seeded by the input: mostly small (1..=16), sometimes large.
fn chunk_sizes(seed: u32, total: usize) -> Vec<usize> {
    let mut x = seed | 1;
    let mut sizes = Vec::new();
    let mut sum = 0;
    while sum < total && sizes.len() < 4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let size = if x % 8 == 0 {
            (x as usize >> 3) % 2048 + 1
        } else {
            (x as usize >> 3) % 16 + 1
        };
        sizes.push(size);
        sum += size;
    }
    if sizes.is_empty() {
        sizes.push(1);
    }
    sizes
}
