//! Incremental decoders for what the host sends: HTTP/1.1 chunked transfer
//! encoding, and the SSE events inside it.
//!
//! Both work on whatever slices the socket hands over and copy only what
//! straddles a read boundary, so the client stays cheap per event.

use anyhow::{Result, bail};
use memchr::memmem;

/// Decodes a chunked body as it arrives.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    size: usize,
    /// Bytes on the current trailer line, to spot the blank line that ends it.
    trailer_line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size.
    #[default]
    Size,
    /// Skipping a chunk extension up to the end of the size line.
    Extension,
    /// Inside chunk data, `size` bytes left.
    Data,
    /// The CRLF after chunk data.
    DataEnd,
    /// Trailer lines after the last (empty) chunk.
    Trailer,
    Done,
}

impl Chunked {
    /// True once the last chunk and the trailer are in.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Feeds raw bytes; hands each piece of body data to `data`.
    pub fn feed(&mut self, mut input: &[u8], mut data: impl FnMut(&[u8])) -> Result<()> {
        use ChunkState::*;
        while !input.is_empty() {
            match self.state {
                Data => {
                    let n = self.size.min(input.len());
                    data(&input[..n]);
                    self.size -= n;
                    input = &input[n..];
                    if self.size == 0 {
                        self.state = DataEnd;
                    }
                    continue;
                }
                Done => return Ok(()),
                _ => {}
            }
            let b = input[0];
            input = &input[1..];
            match (self.state, b) {
                (Size, b'\n') if self.size == 0 => self.state = Trailer,
                (Size | Extension, b'\n') => self.state = Data,
                (Size, b';') => self.state = Extension,
                (Size, b'\r') | (Extension, _) => {}
                (Size, _) => {
                    let digit = (b as char)
                        .to_digit(16)
                        .ok_or_else(|| anyhow::anyhow!("bad chunk size byte {b:#04x}"))?;
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(digit as usize))
                        .ok_or_else(|| anyhow::anyhow!("chunk size overflows"))?;
                }
                (DataEnd, b'\r') => {}
                (DataEnd, b'\n') => self.state = Size,
                (DataEnd, _) => bail!("chunk data not followed by CRLF"),
                (Trailer, b'\n') if self.trailer_line == 0 => self.state = Done,
                (Trailer, b'\n') => self.trailer_line = 0,
                (Trailer, b'\r') => {}
                (Trailer, _) => self.trailer_line += 1,
                (Data | Done, _) => unreachable!(),
            }
        }
        Ok(())
    }
}

/// What the client does with a stream: told of each socket read (so a
/// latency sink can take one clock reading per read), then of each event.
pub trait EventSink {
    fn on_read(&mut self) {}
    /// One event's bytes, without the blank line that ends it.
    fn on_event(&mut self, event: &[u8]);
}

/// Splits a byte stream into SSE events at blank lines (`\n\n`). The host
/// escapes newlines inside JSON, so a blank line always ends an event.
pub struct Events {
    carry: Vec<u8>,
    finder: memmem::Finder<'static>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            carry: Vec::new(),
            finder: memmem::Finder::new(b"\n\n"),
        }
    }
}

impl Events {
    pub fn feed(&mut self, mut data: &[u8], sink: &mut impl EventSink) {
        if !self.carry.is_empty() {
            // The blank line may straddle the read boundary.
            if self.carry.ends_with(b"\n") && data.first() == Some(&b'\n') {
                sink.on_event(&self.carry[..self.carry.len() - 1]);
                self.carry.clear();
                data = &data[1..];
            } else if let Some(p) = self.finder.find(data) {
                self.carry.extend_from_slice(&data[..p]);
                sink.on_event(&self.carry);
                self.carry.clear();
                data = &data[p + 2..];
            } else {
                self.carry.extend_from_slice(data);
                return;
            }
        }
        let mut start = 0;
        for p in self.finder.find_iter(data) {
            if p < start {
                // "\n\n\n": the second match overlaps the first.
                continue;
            }
            sink.on_event(&data[start..p]);
            start = p + 2;
        }
        self.carry.extend_from_slice(&data[start..]);
    }
}

/// What an event is, from its first bytes (standard framing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A logged event: it has an `id:` line (stdout, stderr, terminal).
    Logged,
    Gap,
    Init,
    /// A comment (keepalive) or anything else.
    Other,
}

pub fn kind(event: &[u8]) -> Kind {
    if event.starts_with(b"id: ") {
        Kind::Logged
    } else if event.starts_with(b"event: gap") {
        Kind::Gap
    } else if event.starts_with(b"event: init") {
        Kind::Init
    } else {
        Kind::Other
    }
}

/// True for a logged `stdout` event.
pub fn is_stdout(event: &[u8]) -> bool {
    // "id: N\nevent: stdout\n": the event line follows the id line.
    kind(event) == Kind::Logged
        && memchr::memchr(b'\n', event)
            .is_some_and(|nl| event[nl + 1..].starts_with(b"event: stdout"))
}

/// True for a logged event other than stdout/stderr: the terminal one.
pub fn is_terminal(event: &[u8]) -> bool {
    kind(event) == Kind::Logged
        && memchr::memchr(b'\n', event)
            .is_some_and(|nl| !event[nl + 1..].starts_with(b"event: std"))
}

/// The raw `text` string of an event's JSON, for texts without escapes
/// (timestamps, ids); `None` if absent.
pub fn text(event: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"text\":\"";
    let start = memmem::find(event, KEY)? + KEY.len();
    let len = memchr::memchr(b'"', &event[start..])?;
    Some(&event[start..start + len])
}

/// Parses ASCII decimal digits.
pub fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<String>);
    impl EventSink for Collect {
        fn on_event(&mut self, event: &[u8]) {
            self.0.push(String::from_utf8(event.to_vec()).unwrap());
        }
    }

    fn decode_all(wire: &[u8], step: usize) -> (Vec<u8>, bool) {
        let mut dec = Chunked::default();
        let mut body = Vec::new();
        for piece in wire.chunks(step) {
            dec.feed(piece, |d| body.extend_from_slice(d)).unwrap();
        }
        (body, dec.done())
    }

    #[test]
    fn chunked_in_any_split() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\nC\r\nworld, again\r\n0\r\n\r\nextra";
        for step in 1..wire.len() {
            let (body, done) = decode_all(wire, step);
            assert_eq!(body, b"hello world, again");
            assert!(done, "step {step}");
        }
    }

    #[test]
    fn chunked_with_trailer() {
        let (body, done) = decode_all(b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", 2);
        assert_eq!(body, b"abc");
        assert!(done);
        let (_, done) = decode_all(b"3\r\nabc\r\n0\r\nX-T: 1\r\n", 2);
        assert!(!done);
    }

    #[test]
    fn chunked_rejects_garbage() {
        let mut dec = Chunked::default();
        assert!(dec.feed(b"zz\r\n", |_| {}).is_err());
    }

    #[test]
    fn events_in_any_split() {
        let stream = b"event: init\ndata: {\"text\":\"x\"}\n\nid: 1\nevent: stdout\ndata: {\"eid\":1,\"type\":\"stdout\",\"text\":\"42\"}\n\n: ping\n\nid: 2\nevent: execution_complete\ndata: {}\n\n";
        for step in 1..stream.len() {
            let mut events = Events::default();
            let mut sink = Collect::default();
            for piece in stream.chunks(step) {
                events.feed(piece, &mut sink);
            }
            assert_eq!(sink.0.len(), 4, "step {step}: {:?}", sink.0);
            let kinds: Vec<Kind> = sink.0.iter().map(|e| kind(e.as_bytes())).collect();
            assert_eq!(kinds, [Kind::Init, Kind::Logged, Kind::Other, Kind::Logged]);
            assert!(is_stdout(sink.0[1].as_bytes()));
            assert!(!is_stdout(sink.0[3].as_bytes()));
            assert!(is_terminal(sink.0[3].as_bytes()));
            assert!(!is_terminal(sink.0[1].as_bytes()));
            assert_eq!(text(sink.0[1].as_bytes()), Some(&b"42"[..]));
        }
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal(b"1764000000123456"), Some(1764000000123456));
        assert_eq!(decimal(b""), None);
        assert_eq!(decimal(b"12a"), None);
    }
}
