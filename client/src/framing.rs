//! Reading frames off the wire. The host frames events as standard SSE
//! (`id:`/`event:`/`data:` lines and a blank line) or as execd's legacy
//! bare JSON objects and a blank line. One decoder reads both: a line that
//! starts with `{` can only be a legacy object, so the client never needs
//! to know in advance which framing a host defaults to.

use std::fmt;

/// Which framing to ask the host for with `?framing=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Framing {
    /// WHATWG `text/event-stream`: `id:`, `event:`, `data:` lines.
    #[default]
    Standard,
    /// execd's: the bare JSON object and a blank line.
    Legacy,
}

impl Framing {
    /// The query parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Standard => "standard",
            Framing::Legacy => "legacy",
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Framing {
    type Err = String;
    fn from_str(s: &str) -> Result<Framing, String> {
        match s {
            "standard" => Ok(Framing::Standard),
            "legacy" => Ok(Framing::Legacy),
            other => Err(format!("framing is `standard` or `legacy`, not {other:?}")),
        }
    }
}

/// One dispatched frame: the `data` text, or a comment (keepalive).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Raw {
    /// An event's data (the JSON object).
    Data(String),
    /// A comment line (`: ping`), which proves the stream is alive.
    Comment,
}

/// Incremental decoder: feed bytes as they arrive, take whole frames out.
/// Bytes of an incomplete frame wait for the next chunk, so a cut in the
/// middle of an event yields nothing for it.
#[derive(Default)]
pub(crate) struct Decoder {
    buf: Vec<u8>,
    /// Where the next line starts in `buf`.
    start: usize,
    /// `data` lines of the frame being read.
    data: String,
}

impl Decoder {
    /// Appends received bytes.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one has arrived.
    pub(crate) fn next(&mut self) -> Option<Raw> {
        loop {
            let rest = &self.buf[self.start..];
            let end = rest.iter().position(|&b| b == b'\n')?;
            let mut line = &rest[..end];
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            // The host escapes every control character inside JSON text,
            // so splitting on `\n` never cuts an event's text.
            let line = String::from_utf8_lossy(line).into_owned();
            self.start += end + 1;
            if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            if line.is_empty() {
                if !self.data.is_empty() {
                    return Some(Raw::Data(std::mem::take(&mut self.data)));
                }
                continue;
            }
            if line.starts_with(':') {
                return Some(Raw::Comment);
            }
            if line.starts_with('{') {
                self.push_data(&line);
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_str(), ""),
            };
            // `id:` repeats the JSON's eid and `event:` its type; the JSON
            // is what both framings share, so only `data` is kept.
            if field == "data" {
                self.push_data(value);
            }
        }
    }

    fn push_data(&mut self, value: &str) {
        if !self.data.is_empty() {
            self.data.push('\n');
        }
        self.data.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: &str = "event: init\ndata: {\"type\":\"init\",\"text\":\"a\"}\n\n: ping\n\nid: 1\nevent: stdout\ndata: {\"eid\":1}\n\n";
    const LEGACY: &str =
        "{\"type\":\"init\",\"text\":\"a\"}\n\n{\"type\":\"ping\"}\n\n{\"eid\":1}\n\n";

    fn all(decoder: &mut Decoder) -> Vec<Raw> {
        std::iter::from_fn(|| decoder.next()).collect()
    }

    #[test]
    fn both_framings_whatever_the_chunking() {
        for (text, expect) in [
            (
                STANDARD,
                vec![
                    Raw::Data("{\"type\":\"init\",\"text\":\"a\"}".into()),
                    Raw::Comment,
                    Raw::Data("{\"eid\":1}".into()),
                ],
            ),
            (
                LEGACY,
                vec![
                    Raw::Data("{\"type\":\"init\",\"text\":\"a\"}".into()),
                    Raw::Data("{\"type\":\"ping\"}".into()),
                    Raw::Data("{\"eid\":1}".into()),
                ],
            ),
        ] {
            for size in 1..text.len() {
                let mut decoder = Decoder::default();
                let mut got = Vec::new();
                for chunk in text.as_bytes().chunks(size) {
                    decoder.feed(chunk);
                    got.extend(all(&mut decoder));
                }
                assert_eq!(got, expect, "chunks of {size}");
            }
        }
    }

    #[test]
    fn crlf_and_an_incomplete_frame() {
        let mut decoder = Decoder::default();
        decoder.feed(b"data: {\"a\":1}\r\n\r\ndata: {\"b\"");
        assert_eq!(all(&mut decoder), vec![Raw::Data("{\"a\":1}".into())]);
        decoder.feed(b":2}\n");
        assert_eq!(all(&mut decoder), vec![]);
    }
}
