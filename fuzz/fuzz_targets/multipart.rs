//! Multipart bodies (`sip::multipart::parse`) with a boundary taken from the input.
//!
//! Input layout: byte 0 is the boundary length (mod 80, so over-long boundaries are tried
//! too), then the boundary, then the body.
//!
//! Invariants:
//! - `parse` never panics, and the parts borrow from the body (no copy);
//! - the parts it finds, written back with `build` under the same boundary, parse to the same
//!   parts (header names and values, bodies).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::multipart::{self, NewPart, Part};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n) % 80;
    if rest.len() < n {
        return;
    }
    let (boundary, body) = rest.split_at(n);
    let Ok(boundary) = std::str::from_utf8(boundary) else {
        return;
    };
    let Ok(parts) = multipart::parse(body, boundary) else {
        return;
    };
    let range = body.as_ptr_range();
    for p in &parts {
        let r = p.body.as_ptr_range();
        assert!(
            range.start <= r.start && r.end <= range.end,
            "part body not borrowed"
        );
        let _ = (p.content_type(), p.content_id());
    }

    let rebuilt: Vec<NewPart> = parts
        .iter()
        .map(|p| NewPart {
            headers: p
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: p.body.to_vec(),
        })
        .collect();
    let bytes = multipart::build(boundary, &rebuilt).expect("the boundary was accepted by parse");
    let again = multipart::parse(&bytes, boundary).expect("a built body parses");
    assert_eq!(
        strip(&parts),
        strip(&again),
        "build(parse(body)) does not parse to the same parts\n  body:    {:?}\n  rebuilt: {:?}",
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(&bytes)
    );
});

fn strip<'a>(parts: &[Part<'a>]) -> Vec<(Vec<(&'a str, &'a str)>, &'a [u8])> {
    parts.iter().map(|p| (p.headers.clone(), p.body)).collect()
}
