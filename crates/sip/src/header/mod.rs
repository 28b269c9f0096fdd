//! Headers: kept in their original order as raw bytes, decoded into typed views on demand.
//!
//! A parsed message's headers point into the received buffer (no allocation per header). A
//! header that nobody changed is printed byte for byte as it arrived — folding, compact name,
//! odd whitespace and all (a proxy forwards what it does not touch). A changed or added header
//! is printed in canonical form, `Name: value`.

mod name;
pub mod typed;

use bytes::{BufMut, Bytes};

pub use name::HeaderName;

/// Where a piece of header text lives.
#[derive(Debug, Clone)]
pub(crate) enum Text {
    /// A range of the message's receive buffer.
    Span {
        start: u32,
        end: u32,
    },
    Static(&'static str),
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
            Text::Static(s) => s.as_bytes(),
            Text::Owned(b) => b,
        }
    }
}

/// One header line.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: HeaderName,
    /// The name as written (`v`, `VIA`, `X-Foo`).
    pub(crate) name_text: Text,
    /// The value, without the whitespace around it; folds are still inside.
    pub(crate) value: Text,
    /// The whole line as received, line ending included; `None` once the value changed.
    pub(crate) raw_line: Option<(u32, u32)>,
}

/// The header section of a message.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// The receive buffer the spans point into (empty for messages built locally).
    pub(crate) buf: Bytes,
    pub(crate) entries: Vec<Entry>,
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

    /// Iterates `(name, name as written, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (HeaderName, &[u8], &[u8])> {
        self.entries
            .iter()
            .map(|e| (e.name, e.name_text.resolve(&self.buf), e.value.resolve(&self.buf)))
    }

    /// The value of the first header called `name`.
    pub fn get(&self, name: HeaderName) -> Option<&[u8]> {
        self.entries.iter().find(|e| e.name == name).map(|e| e.value.resolve(&self.buf))
    }

    /// The values of every header called `name`, in order.
    pub fn get_all(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().filter(move |e| e.name == name).map(|e| e.value.resolve(&self.buf))
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
                    && e.name_text.resolve(&self.buf).eq_ignore_ascii_case(name.as_bytes())
            })
            .map(|e| e.value.resolve(&self.buf))
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
        self.entries.push(new_entry(name, value.into()));
    }

    /// Appends a header whose name lifeline does not know (`X-Foo`).
    pub fn push_other(&mut self, name: &'static str, value: impl Into<Bytes>) {
        let mut e = new_entry(HeaderName::from_bytes(name.as_bytes()), value.into());
        e.name_text = Text::Static(name);
        self.entries.push(e);
    }

    /// Inserts a header before the first header called `name`, or at the top when there is
    /// none: how a proxy pushes its Via or Record-Route (RFC 3261 §16.6 steps 4 and 8).
    pub fn prepend(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let at = self.entries.iter().position(|e| e.name == name).unwrap_or(0);
        self.entries.insert(at, new_entry(name, value.into()));
    }

    /// Replaces the value of the first header called `name`, or appends one.
    pub fn set(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let value = value.into();
        match self.entries.iter_mut().find(|e| e.name == name) {
            Some(e) => {
                e.value = Text::Owned(value);
                e.raw_line = None;
            }
            None => self.entries.push(new_entry(name, value)),
        }
    }

    /// Removes every header called `name`; returns how many there were.
    pub fn remove_all(&mut self, name: HeaderName) -> usize {
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

    fn pop_first_element(&mut self, name: HeaderName) -> Option<Bytes> {
        let idx = self.entries.iter().position(|e| e.name == name)?;
        let raw = Bytes::copy_from_slice(self.entries[idx].value.resolve(&self.buf));
        let text = std::str::from_utf8(&raw).ok();
        let split = text.and_then(crate::text::top_level_comma);
        match split {
            None => {
                self.entries.remove(idx);
                Some(raw)
            }
            Some(comma) => {
                let first = crate::text::trim_bytes(&raw[..comma]).to_vec();
                let rest = crate::text::trim_bytes(&raw[comma + 1..]).to_vec();
                if rest.is_empty() {
                    self.entries.remove(idx);
                } else {
                    let e = &mut self.entries[idx];
                    e.value = Text::Owned(rest.into());
                    e.raw_line = None;
                }
                Some(first.into())
            }
        }
    }

    /// Writes the header lines (each ending in CRLF), untouched ones byte for byte.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for e in &self.entries {
            match e.raw_line {
                Some((start, end)) => out.put_slice(&self.buf[start as usize..end as usize]),
                None => {
                    // The name as written (a changed header keeps its compact or long form).
                    out.put_slice(e.name_text.resolve(&self.buf));
                    out.put_slice(b": ");
                    out.put_slice(e.value.resolve(&self.buf));
                    out.put_slice(b"\r\n");
                }
            }
        }
    }

    /// Bytes needed to encode the headers (an upper bound for changed ones).
    pub(crate) fn encoded_len_hint(&self) -> usize {
        self.entries
            .iter()
            .map(|e| match e.raw_line {
                Some((s, end)) => (end - s) as usize,
                None => 24 + e.value.resolve(&self.buf).len(),
            })
            .sum()
    }
}

fn new_entry(name: HeaderName, value: Bytes) -> Entry {
    Entry {
        name,
        name_text: Text::Static(name.as_str()),
        value: Text::Owned(value),
        raw_line: None,
    }
}
