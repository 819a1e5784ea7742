//! Encoding events for the wire: standard SSE framing, or execd's legacy
//! bare-JSON framing.
//!
//! Encoders append to a caller's buffer, so a whole batch of events becomes
//! one write with no allocation per event.

use std::io::Write;

use crate::ending::reason_word;
use crate::policy::wit::{Channel, Ending, Events, Gap, Outcome, Run};

/// How events are framed on the wire (`--sse-framing`, `?framing=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// WHATWG `text/event-stream`: `id:`, `event:`, `data:` lines.
    Standard,
    /// execd's: the bare JSON object and a blank line.
    Legacy,
}

impl Framing {
    /// Parses `standard` or `legacy`, as the `framing` query parameter
    /// and the daemon's flag spell them.
    pub fn parse(value: &str) -> Option<Framing> {
        match value {
            "standard" => Some(Framing::Standard),
            "legacy" => Some(Framing::Legacy),
            _ => None,
        }
    }
}

/// Writes the SSE lines before the JSON (`id:` only for logged events).
fn open(buf: &mut Vec<u8>, framing: Framing, eid: Option<u64>, kind: &str) {
    if framing == Framing::Standard {
        if let Some(eid) = eid {
            buf.extend_from_slice(b"id: ");
            number(buf, eid);
            buf.push(b'\n');
        }
        buf.extend_from_slice(b"event: ");
        buf.extend_from_slice(kind.as_bytes());
        buf.extend_from_slice(b"\ndata: ");
    }
}

fn close(buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"}\n\n");
}

/// Appends a decimal number.
fn number(buf: &mut Vec<u8>, n: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `text` as a JSON string literal. Every control character is
/// escaped, so the result never holds a raw `\r` or `\n` that would break
/// SSE framing. Clean runs are found eight bytes at a time and copied whole:
/// most text has nothing to escape.
fn json_str(buf: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if b == b'"' || b == b'\\' || b < 0x20 {
            buf.extend_from_slice(&bytes[start..i]);
            escape(buf, b);
            start = i + 1;
        }
        i += 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// Whether any of the eight bytes is `"`, `\\` or a control character
/// (SWAR: a byte is flagged when it is below 0x20 or equals either).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    below_space | has_zero(word ^ (ONES * b'"' as u64)) | has_zero(word ^ (ONES * b'\\' as u64))
        != 0
}

fn escape(buf: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => buf.extend_from_slice(b"\\\""),
        b'\\' => buf.extend_from_slice(b"\\\\"),
        b'\n' => buf.extend_from_slice(b"\\n"),
        b'\r' => buf.extend_from_slice(b"\\r"),
        b'\t' => buf.extend_from_slice(b"\\t"),
        0x08 => buf.extend_from_slice(b"\\b"),
        0x0c => buf.extend_from_slice(b"\\f"),
        _ => buf.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 0xf) as usize],
        ]),
    }
}

/// A run of logged events: output lines, and the terminal event if it is
/// among them. Returns whether it was.
pub fn events(buf: &mut Vec<u8>, framing: Framing, events: &Events) -> bool {
    // One reservation for the whole run: about 90 bytes of framing a line.
    buf.reserve(events.batch.text.len() + events.batch.len() * 96 + 256);
    // Validate the text once; slices of valid UTF-8 at char boundaries are
    // valid. A policy that lies gets U+FFFD, not a broken stream.
    let whole = std::str::from_utf8(&events.batch.text).ok();
    let mut stamp = Stamp::default();
    let mut eid = events.first_eid;
    let mut at = 0;
    // The log checked that runs and lengths describe the same lines.
    let mut lens = events.batch.lens.as_slice();
    for run in &events.batch.runs {
        let (these, rest) = lens.split_at((run.lines as usize).min(lens.len()));
        lens = rest;
        for (i, &len) in these.iter().enumerate() {
            let end = at + len as usize;
            let text = match whole.and_then(|w| w.get(at..end)) {
                Some(text) => std::borrow::Cow::Borrowed(text),
                None => String::from_utf8_lossy(events.batch.text.get(at..end).unwrap_or_default()),
            };
            at = end;
            // Only a run's last line can be a partial piece.
            let partial = run.partial && i + 1 == these.len();
            line(buf, framing, eid, run, &text, partial, &mut stamp);
            eid += 1;
        }
    }
    if let Some(ending) = &events.ending {
        end(buf, framing, eid, ending);
    }
    events.ending.is_some()
}

/// The last timestamp formatted: lines of one pipe read share theirs.
#[derive(Default)]
struct Stamp {
    ms: Option<u64>,
    digits: [u8; 20],
    len: usize,
}

impl Stamp {
    fn write(&mut self, buf: &mut Vec<u8>, ms: u64) {
        if self.ms != Some(ms) {
            let mut text = itoa::Buffer::new();
            let text = text.format(ms).as_bytes();
            self.digits[..text.len()].copy_from_slice(text);
            self.len = text.len();
            self.ms = Some(ms);
        }
        buf.extend_from_slice(&self.digits[..self.len]);
    }
}

/// An output line; `"partial":true` when no `\n` followed it.
fn line(
    buf: &mut Vec<u8>,
    framing: Framing,
    eid: u64,
    run: &Run,
    text: &str,
    partial: bool,
    stamp: &mut Stamp,
) {
    let kind = match run.channel {
        Channel::Stdout => "stdout",
        Channel::Stderr => "stderr",
    };
    let mut digits = itoa::Buffer::new();
    let eid = digits.format(eid).as_bytes();
    if framing == Framing::Standard {
        buf.extend_from_slice(b"id: ");
        buf.extend_from_slice(eid);
        buf.extend_from_slice(b"\nevent: ");
        buf.extend_from_slice(kind.as_bytes());
        buf.extend_from_slice(b"\ndata: ");
    }
    buf.extend_from_slice(b"{\"eid\":");
    buf.extend_from_slice(eid);
    buf.extend_from_slice(b",\"type\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"text\":");
    json_str(buf, text);
    buf.extend_from_slice(b",\"timestamp\":");
    stamp.write(buf, run.timestamp_ms);
    if partial {
        buf.extend_from_slice(b",\"partial\":true");
    }
    close(buf);
}

/// What a command that the host lost at a restart reports as its error.
pub const HOST_RESTARTED: &str = "the host restarted before the command ended";

/// What a command that the host's own orderly shutdown ended reports as
/// its error.
pub const HOST_SHUTDOWN: &str = "the host shut down before the command ended";

/// The terminal event: `execution_complete`, or `error` as execd sends it,
/// with the `reason` and `signal` execd's clients may ignore.
fn end(buf: &mut Vec<u8>, framing: Framing, eid: u64, ending: &Ending) {
    let ts = ending.timestamp_ms;
    let ms = ending.execution_ms;
    match &ending.outcome {
        Outcome::Completed => {
            open(buf, framing, Some(eid), "execution_complete");
            let _ = write!(
                buf,
                "{{\"eid\":{eid},\"type\":\"execution_complete\",\"timestamp\":{ts},\"execution_time\":{ms}"
            );
        }
        Outcome::Failed(failure) => {
            open(buf, framing, Some(eid), "error");
            let _ = write!(
                buf,
                "{{\"eid\":{eid},\"type\":\"error\",\"error\":{{\"ename\":\"CommandExecError\",\"evalue\":\"{}\",\"traceback\":[",
                failure.exit_code
            );
            json_str(buf, &failure.message);
            let _ = write!(buf, "]}},\"timestamp\":{ts},\"execution_time\":{ms}");
        }
        Outcome::HostRestarted => {
            open(buf, framing, Some(eid), "error");
            let _ = write!(
                buf,
                "{{\"eid\":{eid},\"type\":\"error\",\"error\":{{\"ename\":\"HostRestarted\",\"evalue\":\"-1\",\"traceback\":[\"{HOST_RESTARTED}\"]}},\"timestamp\":{ts},\"execution_time\":{ms}"
            );
        }
        Outcome::HostShutdown => {
            open(buf, framing, Some(eid), "error");
            let _ = write!(
                buf,
                "{{\"eid\":{eid},\"type\":\"error\",\"error\":{{\"ename\":\"HostShutdown\",\"evalue\":\"-1\",\"traceback\":[\"{HOST_SHUTDOWN}\"]}},\"timestamp\":{ts},\"execution_time\":{ms}"
            );
        }
    }
    let _ = write!(buf, ",\"reason\":\"{}\"", reason_word(ending.reason));
    if let Some(signal) = ending.signal {
        let _ = write!(buf, ",\"signal\":{signal}");
    }
    close(buf);
}

/// The `init` event that opens a command's first stream: no eid.
pub fn init(buf: &mut Vec<u8>, framing: Framing, command_id: &str, ts: u64) {
    open(buf, framing, None, "init");
    buf.extend_from_slice(b"{\"type\":\"init\",\"text\":");
    json_str(buf, command_id);
    let _ = write!(buf, ",\"timestamp\":{ts}");
    close(buf);
}

/// The `execution_complete` a background POST ends with: no eid.
pub fn spawned(buf: &mut Vec<u8>, framing: Framing, ts: u64) {
    open(buf, framing, None, "execution_complete");
    let _ = write!(
        buf,
        "{{\"type\":\"execution_complete\",\"timestamp\":{ts},\"execution_time\":0"
    );
    close(buf);
}

/// A `gap`: events the reader can no longer get.
pub fn gap(buf: &mut Vec<u8>, framing: Framing, gap: &Gap, ts: u64) {
    open(buf, framing, None, "gap");
    let _ = write!(
        buf,
        "{{\"type\":\"gap\",\"from_eid\":{},\"to_eid\":{},",
        gap.from_eid, gap.to_eid
    );
    // Absent when the policy no longer knows the size (see `wit/`).
    if let Some(bytes) = gap.dropped_bytes {
        let _ = write!(buf, "\"dropped_bytes\":{bytes},");
    }
    buf.extend_from_slice(b"\"reason\":");
    // The log checked it is a short word; escaped all the same.
    let _ = serde_json::to_writer(&mut *buf, &gap.reason);
    let _ = write!(buf, ",\"timestamp\":{ts}");
    close(buf);
}

/// The keepalive: a comment in standard framing, execd's ping in legacy.
pub fn keepalive(buf: &mut Vec<u8>, framing: Framing, ts: u64) {
    match framing {
        Framing::Standard => buf.extend_from_slice(b": ping\n\n"),
        Framing::Legacy => {
            let _ = write!(
                buf,
                "{{\"type\":\"ping\",\"text\":\"pong\",\"timestamp\":{ts}}}\n\n"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::wit::{Batch, Failure};

    fn one_line(eid: u64, text: &str, ending: Option<Ending>) -> Events {
        Events {
            first_eid: eid,
            batch: Batch {
                lens: vec![text.len() as u32],
                runs: vec![Run {
                    channel: Channel::Stdout,
                    timestamp_ms: 1764000000000,
                    lines: 1,
                    partial: false,
                }],
                text: text.as_bytes().to_vec(),
            },
            text_in_files: Vec::new(),
            ending,
        }
    }

    fn encode(framing: Framing, e: &Events) -> String {
        let mut buf = Vec::new();
        events(&mut buf, framing, e);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn stdout_standard_and_legacy() {
        let e = one_line(7, "tick\"7\n\r", None);
        assert_eq!(
            encode(Framing::Standard, &e),
            "id: 7\nevent: stdout\ndata: {\"eid\":7,\"type\":\"stdout\",\"text\":\"tick\\\"7\\n\\r\",\"timestamp\":1764000000000}\n\n"
        );
        assert_eq!(
            encode(Framing::Legacy, &e),
            "{\"eid\":7,\"type\":\"stdout\",\"text\":\"tick\\\"7\\n\\r\",\"timestamp\":1764000000000}\n\n"
        );
    }

    #[test]
    fn a_partial_piece_says_so() {
        let mut e = one_line(3, "abc", None);
        e.batch.runs[0].partial = true;
        assert_eq!(
            encode(Framing::Standard, &e),
            "id: 3\nevent: stdout\ndata: {\"eid\":3,\"type\":\"stdout\",\"text\":\"abc\",\"timestamp\":1764000000000,\"partial\":true}\n\n"
        );
    }

    #[test]
    fn error_event_follows_the_lines_and_is_valid_json() {
        let ending = Ending {
            outcome: Outcome::Failed(Failure {
                exit_code: 2,
                message: "exit status 2".into(),
            }),
            reason: crate::policy::wit::Reason::Interrupted,
            signal: None,
            execution_ms: 9,
            timestamp_ms: 5,
        };
        let text = encode(Framing::Legacy, &one_line(2, "x", Some(ending)));
        let mut parts = text.split("\n\n");
        let first: serde_json::Value = serde_json::from_str(parts.next().unwrap()).unwrap();
        assert_eq!(first["eid"], 2);
        let v: serde_json::Value = serde_json::from_str(parts.next().unwrap()).unwrap();
        assert_eq!(v["eid"], 3);
        assert_eq!(v["error"]["evalue"], "2");
        assert_eq!(v["error"]["traceback"][0], "exit status 2");
        assert_eq!(v["execution_time"], 9);
        assert_eq!(v["reason"], "interrupted");
        assert!(v.get("signal").is_none());
    }

    #[test]
    fn invalid_utf8_from_a_policy_becomes_replacement_characters() {
        let mut e = one_line(1, "ab", None);
        e.batch.text = vec![b'a', 0xff];
        assert!(encode(Framing::Legacy, &e).contains("a\u{fffd}"));
    }

    #[test]
    fn json_strings_round_trip_every_character() {
        let text: String = (0u8..0x80)
            .map(char::from)
            .chain("é€😀\u{2028}\u{fffd}".chars())
            .collect();
        let mut buf = Vec::new();
        json_str(&mut buf, &text);
        assert!(!buf.contains(&b'\n') && !buf.contains(&b'\r'));
        let back: String = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, text);
    }

    #[test]
    fn init_and_gap_carry_no_id() {
        let mut buf = Vec::new();
        init(&mut buf, Framing::Standard, "abc", 1);
        gap(
            &mut buf,
            Framing::Standard,
            &Gap {
                from_eid: 1,
                to_eid: 4,
                dropped_bytes: Some(10),
                reason: "evicted".into(),
            },
            2,
        );
        gap(
            &mut buf,
            Framing::Standard,
            &Gap {
                from_eid: 5,
                to_eid: 6,
                dropped_bytes: None,
                reason: "budget".into(),
            },
            3,
        );
        let text = String::from_utf8(buf).unwrap();
        assert!(!text.contains("id:"), "{text}");
        assert!(text.contains("event: gap\ndata: {\"type\":\"gap\",\"from_eid\":1,\"to_eid\":4,\"dropped_bytes\":10,\"reason\":\"evicted\",\"timestamp\":2}\n\n"), "{text}");
        assert!(text.contains("data: {\"type\":\"gap\",\"from_eid\":5,\"to_eid\":6,\"reason\":\"budget\",\"timestamp\":3}\n\n"), "{text}");
    }
}
