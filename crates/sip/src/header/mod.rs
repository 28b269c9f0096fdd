//! Headers: kept in their original order as raw bytes, decoded into typed views on demand.
//!
//! A parsed message's headers point into the received buffer (no allocation per header). A
//! header that nobody changed is printed byte for byte as it arrived — folding, compact name,
//! odd whitespace and all (a proxy forwards what it does not touch). A changed or added header
//! is printed in canonical form, `Name: value`.
//!
//! The index of a section is one vector of small plain entries (40 bytes: name, and where the
//! name as written, the value and the raw line are); the values of changed and added headers
//! live beside it in `owned`, which a parsed message nobody changed never allocates.

mod name;
pub mod typed;

use bytes::{BufMut, Bytes};

pub use name::HeaderName;

/// Where the request URI or the reason phrase lives.
#[derive(Debug, Clone)]
pub(crate) enum Text {
    /// A range of the message's receive buffer.
    Span {
        start: u32,
        end: u32,
    },
    Owned(Bytes),
}

impl Text {
    pub(crate) fn span(start: usize, end: usize) -> Text {
        // Messages are bounded far below 4 GiB by the framing limit.
        Text::Span { start: start as u32, end: end as u32 }
    }

    pub(crate) fn resolve<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        match self {
            Text::Span { start, end } => buf.get(*start as usize..*end as usize).unwrap_or(b""),
            Text::Owned(b) => b,
        }
    }
}

/// Where a piece of a header line lives. Plain data (no drop, no reference count), so that a
/// parsed header section is one small allocation that is freed without a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A range of the message's receive buffer.
    Span { start: u32, end: u32 },
    /// One of the section's own byte strings ([`Headers::owned`]): the value of a changed or
    /// added header, the name of an added `Other` header.
    Owned(u32),
}

impl Piece {
    pub(crate) fn span(start: usize, end: usize) -> Piece {
        // Messages are bounded far below 4 GiB by the framing limit.
        Piece::Span { start: start as u32, end: end as u32 }
    }
}

/// The part of `range` within `bytes` without the whitespace around it
/// ([`crate::text::trim_bytes`]), as a range of `bytes`.
fn trimmed(bytes: &[u8], range: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let (mut start, mut end) = (range.start, range.end.min(bytes.len()));
    while start < end && matches!(bytes[start], b' ' | b'\t' | b'\r' | b'\n') {
        start += 1;
    }
    while end > start && matches!(bytes[end - 1], b' ' | b'\t' | b'\r' | b'\n') {
        end -= 1;
    }
    start..end
}

/// One header line.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: HeaderName,
    /// The name as written (`v`, `VIA`, `X-Foo`); `None` for the canonical name of `name` (a
    /// header added locally).
    pub(crate) name_text: Option<Piece>,
    /// The value, without the whitespace around it; folds are still inside.
    pub(crate) value: Piece,
    /// The whole line as received, line ending included; `None` once the value changed.
    pub(crate) raw_line: Option<(u32, u32)>,
}

/// The header section of a message.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// The receive buffer the spans point into (empty for messages built locally).
    pub(crate) buf: Bytes,
    pub(crate) entries: Vec<Entry>,
    /// The byte strings `Piece::Owned` points to; empty (and unallocated) in a parsed message
    /// that nobody changed.
    pub(crate) owned: Vec<Bytes>,
    /// The top Via element as decoded by the first [`Headers::top_via`] since the last change
    /// (`None` inside: it did not decode, the slow path answers). Transaction matching, the
    /// proxy rules and the core each ask for it, about twenty times per call; every change to
    /// a Via header clears it ([`Headers::changed`]).
    pub(crate) top_via: std::sync::OnceLock<Option<typed::ViaAt>>,
    /// Where the To tag lies in the To value (`None` inside: no tag), as found by the first
    /// [`Headers::to_tag`] since the last change; asked about ten times per call (is a request
    /// in a dialog?). A To that does not decode is not kept.
    pub(crate) to_tag: std::sync::OnceLock<Option<crate::uri::At>>,
}

impl Headers {
    /// An empty header section for a message built locally.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The number of header lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes of a piece of this section.
    pub(crate) fn piece(&self, p: Piece) -> &[u8] {
        match p {
            Piece::Span { start, end } => self.buf.get(start as usize..end as usize).unwrap_or(b""),
            Piece::Owned(i) => self.owned.get(i as usize).map_or(b"", |b| b),
        }
    }

    /// Keeps `bytes` in this section and returns the piece that points to them.
    pub(crate) fn own(&mut self, bytes: Bytes) -> Piece {
        self.owned.push(bytes);
        // At most a few edits per message: far below 2^32.
        Piece::Owned((self.owned.len() - 1) as u32)
    }

    /// A header added locally: its value kept here, printed in canonical form.
    fn new_entry(&mut self, name: HeaderName, value: Bytes) -> Entry {
        Entry { name, name_text: None, value: self.own(value), raw_line: None }
    }

    /// The name of an entry as written.
    fn name_text(&self, e: &Entry) -> &[u8] {
        match e.name_text {
            Some(p) => self.piece(p),
            None => e.name.as_str().as_bytes(),
        }
    }

    /// Forgets what was decoded from the `name` headers: called by every change, with the
    /// name of the headers it adds, removes or rewrites. What is kept is a range of the value
    /// it was decoded from, so changes to other headers leave it valid.
    pub(crate) fn changed(&mut self, name: HeaderName) {
        match name {
            HeaderName::Via => drop(self.top_via.take()),
            HeaderName::To => drop(self.to_tag.take()),
            _ => {}
        }
    }

    /// Gives entry `idx` a new value (reusing its own slot when it had one), printed in
    /// canonical form from now on.
    pub(crate) fn set_value(&mut self, idx: usize, value: Bytes) {
        let Some(name) = self.entries.get(idx).map(|e| e.name) else { return };
        self.changed(name);
        let piece = match self.entries.get(idx).map(|e| e.value) {
            Some(Piece::Owned(i)) if (i as usize) < self.owned.len() => {
                self.owned[i as usize] = value;
                Piece::Owned(i)
            }
            _ => self.own(value),
        };
        if let Some(e) = self.entries.get_mut(idx) {
            e.value = piece;
            e.raw_line = None;
        }
    }

    /// Iterates `(name, name as written, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (HeaderName, &[u8], &[u8])> {
        self.entries.iter().map(|e| (e.name, self.name_text(e), self.piece(e.value)))
    }

    /// The value of the first header called `name`.
    pub fn get(&self, name: HeaderName) -> Option<&[u8]> {
        self.entries.iter().find(|e| e.name == name).map(|e| self.piece(e.value))
    }

    /// The values of every header called `name`, in order.
    pub fn get_all(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().filter(move |e| e.name == name).map(|e| self.piece(e.value))
    }

    /// The value of the first header whose name is `name` (case-insensitive), known or not.
    pub fn get_named(&self, name: &str) -> Option<&[u8]> {
        let known = HeaderName::from_bytes(name.as_bytes());
        if known != HeaderName::Other {
            return self.get(known);
        }
        self.entries
            .iter()
            .find(|e| {
                e.name == HeaderName::Other
                    && self.name_text(e).eq_ignore_ascii_case(name.as_bytes())
            })
            .map(|e| self.piece(e.value))
    }

    /// How many headers called `name` there are.
    pub fn count(&self, name: HeaderName) -> usize {
        self.entries.iter().filter(|e| e.name == name).count()
    }

    /// Whether a header called `name` is present.
    pub fn contains(&self, name: HeaderName) -> bool {
        self.entries.iter().any(|e| e.name == name)
    }

    /// Appends a header after all others.
    pub fn push(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        self.changed(name);
        let e = self.new_entry(name, value.into());
        self.entries.push(e);
    }

    /// Appends a header whose name lifeline does not know (`X-Foo`).
    pub fn push_other(&mut self, name: &'static str, value: impl Into<Bytes>) {
        let known = HeaderName::from_bytes(name.as_bytes());
        self.changed(known);
        let mut e = self.new_entry(known, value.into());
        e.name_text = Some(self.own(Bytes::from_static(name.as_bytes())));
        self.entries.push(e);
    }

    /// Appends a copy of `e`, an entry of `src`, in canonical form. `self` must share `src`'s
    /// receive buffer (`buf`): a value there is kept as the same span, without copying.
    pub(crate) fn push_copy_of(&mut self, src: &Headers, e: &Entry) {
        self.changed(e.name);
        let value = match e.value {
            span @ Piece::Span { .. } => span,
            Piece::Owned(_) => self.own(Bytes::copy_from_slice(src.piece(e.value))),
        };
        let name_text = match e.name_text {
            Some(span @ Piece::Span { .. }) => Some(span),
            Some(owned) => Some(self.own(Bytes::copy_from_slice(src.piece(owned)))),
            None => None,
        };
        self.entries.push(Entry { name: e.name, name_text, value, raw_line: None });
    }

    /// Inserts a header before the first header called `name`, or at the top when there is
    /// none: how a proxy pushes its Via or Record-Route (RFC 3261 §16.6 steps 4 and 8).
    pub fn prepend(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        self.changed(name);
        let at = self.entries.iter().position(|e| e.name == name).unwrap_or(0);
        let e = self.new_entry(name, value.into());
        self.entries.insert(at, e);
    }

    /// Replaces the value of the first header called `name`, or appends one.
    pub fn set(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let value = value.into();
        match self.entries.iter().position(|e| e.name == name) {
            Some(idx) => self.set_value(idx, value),
            None => self.push(name, value),
        }
    }

    /// Removes every header called `name`; returns how many there were.
    pub fn remove_all(&mut self, name: HeaderName) -> usize {
        self.changed(name);
        let before = self.entries.len();
        self.entries.retain(|e| e.name != name);
        before - self.entries.len()
    }

    /// Removes the first comma-separated element of the first header called `name` (the top
    /// Via or the first Route, RFC 3261 §16.4, §16.7 step 3) and returns it. A header left
    /// empty is removed; otherwise the rest of its elements stay in place.
    pub fn pop_first_value(&mut self, name: HeaderName) -> Option<Bytes> {
        // Empty elements (`Route: , <sip:p1>`) are skipped, as the typed views skip them.
        loop {
            let popped = self.pop_first_element(name)?;
            if !crate::text::trim_bytes(&popped).is_empty() {
                return Some(popped);
            }
        }
    }

    /// Takes the first element of the first `name` header without copying: the element is a
    /// slice of the bytes the value lives in, and the rest stays where it is (a narrower span
    /// of the receive buffer, or a slice of the owned value).
    fn pop_first_element(&mut self, name: HeaderName) -> Option<Bytes> {
        self.changed(name);
        let idx = self.entries.iter().position(|e| e.name == name)?;
        let piece = self.entries[idx].value;
        let whole = match piece {
            Piece::Span { start, end } if end as usize <= self.buf.len() && start <= end => {
                self.buf.slice(start as usize..end as usize)
            }
            Piece::Owned(i) => self.owned.get(i as usize).cloned().unwrap_or_default(),
            Piece::Span { .. } => Bytes::new(),
        };
        let split = std::str::from_utf8(&whole).ok().and_then(crate::text::top_level_comma);
        let Some(comma) = split else {
            self.entries.remove(idx);
            return Some(whole);
        };
        let first = trimmed(&whole, 0..comma);
        let rest = trimmed(&whole, comma + 1..whole.len());
        if rest.is_empty() {
            self.entries.remove(idx);
            return Some(whole.slice(first));
        }
        let value = match piece {
            Piece::Span { start, .. } => Piece::Span {
                // Within a span that fits in u32 already.
                start: start + rest.start as u32,
                end: start + rest.end as u32,
            },
            Piece::Owned(i) => {
                if let Some(slot) = self.owned.get_mut(i as usize) {
                    *slot = whole.slice(rest);
                }
                Piece::Owned(i)
            }
        };
        if let Some(e) = self.entries.get_mut(idx) {
            e.value = value;
            e.raw_line = None;
        }
        Some(whole.slice(first))
    }

    /// Writes the header lines (each ending in CRLF), untouched ones byte for byte.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for e in &self.entries {
            match e.raw_line {
                Some((start, end)) => out.put_slice(&self.buf[start as usize..end as usize]),
                None => {
                    // The name as written (a changed header keeps its compact or long form).
                    out.put_slice(self.name_text(e));
                    out.put_slice(b": ");
                    out.put_slice(self.piece(e.value));
                    out.put_slice(b"\r\n");
                }
            }
        }
    }

    /// Exactly the bytes [`Headers::encode`] writes.
    pub(crate) fn encoded_len(&self) -> usize {
        self.entries
            .iter()
            .map(|e| match e.raw_line {
                Some((s, end)) => (end - s) as usize,
                None => self.name_text(e).len() + 2 + self.piece(e.value).len() + 2,
            })
            .sum()
    }

    /// Bytes needed to encode the headers (an upper bound for changed ones).
    pub(crate) fn encoded_len_hint(&self) -> usize {
        self.entries
            .iter()
            .map(|e| match e.raw_line {
                Some((s, end)) => (end - s) as usize,
                None => 24 + self.piece(e.value).len(),
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twenty entries (a typical INVITE has 12 to 20 header lines) stay within one small
    /// allocation that the allocator serves from its per-thread cache (at most 1 KiB in glibc).
    #[test]
    fn an_entry_is_forty_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }
}
