//! Splitting a pipe's bytes into lines, as the contract defines them.
//!
//! `\n`, `\r\n` and `\r` each end a line and are dropped. A line longer than
//! [`MAX_LINE`] is cut there (at a UTF-8 character boundary where one is
//! near), and the pump may flush a partial line when the pipe goes idle
//! (less half a character, which waits for its rest) or closes.

// Public only for the property tests (`execd_host::internal`); not API.
#![allow(missing_docs)]

/// Longest line sent as one event; longer ones are cut into pieces.
pub const MAX_LINE: usize = 64 * 1024;

/// Incremental line splitter for one pipe.
#[derive(Debug)]
pub struct LineSplitter {
    /// Bytes of the line not yet terminated.
    partial: Vec<u8>,
    /// The previous chunk ended in `\r`: a leading `\n` belongs to it.
    after_cr: bool,
    /// Pieces of the current line were sent already (cut at the limit, or
    /// flushed when the pipe went idle): its terminator ends it, and is no
    /// empty line of its own.
    sent_part: bool,
    max_line: usize,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new(MAX_LINE)
    }
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            partial: Vec::new(),
            after_cr: false,
            sent_part: false,
            max_line: max_line.max(4),
        }
    }

    /// Feeds a chunk; `emit` gets every complete line, without terminator.
    pub fn push(&mut self, mut chunk: &[u8], mut emit: impl FnMut(&[u8])) {
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', chunk) {
            let (text, rest) = chunk.split_at(end);
            if self.partial.is_empty() && text.is_empty() && self.sent_part {
                // The end of a line whose every byte was sent already.
            } else if self.partial.is_empty() {
                self.emit_cut(text, &mut emit);
            } else {
                self.partial.extend_from_slice(text);
                let line = std::mem::take(&mut self.partial);
                self.emit_cut(&line, &mut emit);
                self.partial = line;
                self.partial.clear();
            }
            self.sent_part = false;
            let terminator = rest[0];
            chunk = &rest[1..];
            if terminator == b'\r' {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.partial.extend_from_slice(chunk);
        // Cut only once more bytes than fit are here: a line of exactly the
        // limit may still end with the next byte, whatever the chunking.
        while self.partial.len() > self.max_line {
            let cut = cut_point(&self.partial[..self.max_line]);
            emit(&self.partial[..cut]);
            self.partial.drain(..cut);
            self.sent_part = true;
        }
    }

    /// Emits `line` (a complete line), in pieces if it is over the limit.
    fn emit_cut(&self, mut line: &[u8], emit: &mut impl FnMut(&[u8])) {
        while line.len() > self.max_line {
            let cut = cut_point(&line[..self.max_line]);
            emit(&line[..cut]);
            line = &line[cut..];
        }
        emit(line);
    }

    /// Whether bytes of an unterminated line are waiting.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Emits the unterminated line, if any (the pipe closed).
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
            self.sent_part = true;
        }
    }

    /// Emits what has come of the unterminated line while the pipe is idle,
    /// less a trailing incomplete UTF-8 sequence: a writer that pauses in
    /// the middle of a character sends the rest of it next, and the two
    /// halves sent apart would each be invalid text. What is held back
    /// goes with the next bytes, or with [`LineSplitter::flush`].
    pub fn flush_idle(&mut self, mut emit: impl FnMut(&[u8])) {
        let cut = cut_point(&self.partial);
        if cut > 0 {
            emit(&self.partial[..cut]);
            self.partial.drain(..cut);
            self.sent_part = true;
        }
    }
}

/// Where to cut a full window so a multi-byte character is not split:
/// before a trailing incomplete UTF-8 sequence, if there is one.
fn cut_point(window: &[u8]) -> usize {
    let len = window.len();
    for back in 1..=3.min(len) {
        let byte = window[len - back];
        if byte & 0xC0 != 0x80 {
            // A lead byte: does the sequence it starts fit in the window?
            let need = match byte {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => return len,
            };
            return if need > back { len - back } else { len };
        }
    }
    len
}

/// The event text for a line: lossy UTF-8, and `"\n"` for an empty line.
pub fn text_of(line: &[u8]) -> String {
    let mut text = Vec::new();
    append_text(&mut text, line);
    String::from_utf8(text).unwrap_or_default()
}

/// Appends a line's event text to `out` (see [`text_of`]) without an
/// allocation of its own: valid UTF-8, the common case, is copied as is.
pub fn append_text(out: &mut Vec<u8>, line: &[u8]) {
    if line.is_empty() {
        out.push(b'\n');
        return;
    }
    for chunk in line.utf8_chunks() {
        out.extend_from_slice(chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<Vec<u8>> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l| out.push(l.to_vec()));
        }
        s.flush(|l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn all_terminators() {
        let got = split(&[b"a\nb\r\nc\rd\n\ne"], 100);
        let want: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"", b"e"];
        assert_eq!(got, want);
    }

    #[test]
    fn crlf_split_across_chunks() {
        let got = split(&[b"a\r", b"\nb\r", b"", b"\n", b"\n"], 100);
        let want: Vec<&[u8]> = vec![b"a", b"b", b""];
        assert_eq!(got, want);
    }

    #[test]
    fn lone_cr_then_text_across_chunks() {
        let got = split(&[b"a\r", b"b\n"], 100);
        let want: Vec<&[u8]> = vec![b"a", b"b"];
        assert_eq!(got, want);
    }

    #[test]
    fn partial_lines_join_across_chunks() {
        let got = split(&[b"hel", b"lo\nwor", b"ld"], 100);
        let want: Vec<&[u8]> = vec![b"hello", b"world"];
        assert_eq!(got, want);
    }

    #[test]
    fn long_lines_are_cut_at_the_limit() {
        let got = split(&[&[b'x'; 10], b"\n"], 4);
        let want: Vec<&[u8]> = vec![b"xxxx", b"xxxx", b"xx"];
        assert_eq!(got, want);
        let got = split(&[&[b'y'; 5], &[b'y'; 5]], 4);
        assert_eq!(got.concat(), vec![b'y'; 10]);
        assert!(got.iter().all(|l| l.len() <= 4));
    }

    #[test]
    fn cuts_never_split_a_character() {
        // "aé€" = 61 C3A9 E282AC; a 4-byte window would split the euro sign.
        let text = "aé€😀".repeat(3);
        let got = split(&[text.as_bytes()], 4);
        for piece in &got {
            assert!(std::str::from_utf8(piece).is_ok(), "{piece:?}");
        }
        assert_eq!(got.concat(), text.as_bytes());
    }

    #[test]
    fn a_terminator_after_sent_pieces_is_no_empty_line() {
        // Cut exactly at the limit, newline in the next chunk.
        let got = split(&[b"abcd", b"\nef"], 4);
        let want: Vec<&[u8]> = vec![b"abcd", b"ef"];
        assert_eq!(got, want);
        // Flushed when idle, then the newline.
        let mut s = LineSplitter::new(100);
        let mut out: Vec<Vec<u8>> = Vec::new();
        s.push(b"prompt> ", |l| out.push(l.to_vec()));
        s.flush(|l| out.push(l.to_vec()));
        s.push(b"\r\n\nnext\n", |l| out.push(l.to_vec()));
        let want: Vec<&[u8]> = vec![b"prompt> ", b"", b"next"];
        assert_eq!(out, want);
    }

    #[test]
    fn an_idle_flush_holds_back_half_a_character() {
        let mut s = LineSplitter::new(100);
        let mut out: Vec<Vec<u8>> = Vec::new();
        // "price €5": the euro sign's first two bytes, a pause, the rest.
        s.push(b"price \xe2\x82", |l| out.push(l.to_vec()));
        s.flush_idle(|l| out.push(l.to_vec()));
        assert_eq!(out, [b"price ".to_vec()]);
        assert!(s.has_partial(), "the half character waits");
        // Nothing but half a character: nothing to send yet.
        s.flush_idle(|l| out.push(l.to_vec()));
        assert_eq!(out.len(), 1);
        s.push(b"\xac5\n", |l| out.push(l.to_vec()));
        assert_eq!(out[1], "€5".as_bytes());
        // Whole characters go at once; at the pipe's end, whatever is left.
        s.push("é".as_bytes(), |l| out.push(l.to_vec()));
        s.flush_idle(|l| out.push(l.to_vec()));
        assert_eq!(out[2], "é".as_bytes());
        s.push(b"\xf0\x9f", |l| out.push(l.to_vec()));
        s.flush(|l| out.push(l.to_vec()));
        assert_eq!(out[3], b"\xf0\x9f");
        assert!(!s.has_partial());
    }

    #[test]
    fn empty_line_text() {
        assert_eq!(text_of(b""), "\n");
        assert_eq!(text_of(b"\xffa"), "\u{fffd}a");
    }
}
