//! Splitting a pipe's bytes into lines, as the contract defines them.
//!
//! Only `\n` ends a line, and is dropped; `\r` and everything else stay in
//! the text. A line longer than [`MAX_LINE`] is cut there (at a UTF-8
//! character boundary where one is near), and the pump may flush an
//! unterminated line when the pipe goes idle (less half a character, which
//! waits for its rest) or closes. Every such piece is emitted as
//! `partial`: no `\n` follows it, the next piece of the pipe continues it.
//! So the pieces and their flags rebuild the pipe's bytes exactly: each
//! piece, plus `\n` unless it is partial.

// Public only for the property tests (`execd_host::internal`); not API.
#![allow(missing_docs)]

/// Longest line sent as one event; longer ones are cut into pieces.
pub const MAX_LINE: usize = 64 * 1024;

/// Incremental line splitter for one pipe.
#[derive(Debug)]
pub struct LineSplitter {
    /// Bytes of the line not yet terminated.
    partial: Vec<u8>,
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
            max_line: max_line.max(4),
        }
    }

    /// Feeds a chunk; `emit` gets every line (without its `\n`, `false`)
    /// and every piece cut at the limit (`true`: partial). A `\n` right
    /// after pieces sent already ends their line as an empty line does,
    /// since the last piece said no `\n` followed it.
    pub fn push(&mut self, mut chunk: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        while let Some(end) = memchr::memchr(b'\n', chunk) {
            let (text, rest) = chunk.split_at(end);
            if self.partial.is_empty() {
                self.emit_cut(text, &mut emit);
            } else {
                self.partial.extend_from_slice(text);
                let line = std::mem::take(&mut self.partial);
                self.emit_cut(&line, &mut emit);
                self.partial = line;
                self.partial.clear();
            }
            chunk = &rest[1..];
        }
        self.partial.extend_from_slice(chunk);
        // Cut only once more bytes than fit are here: a line of exactly the
        // limit may still end with the next byte, whatever the chunking.
        while self.partial.len() > self.max_line {
            let cut = cut_point(&self.partial[..self.max_line]);
            emit(&self.partial[..cut], true);
            self.partial.drain(..cut);
        }
    }

    /// Emits `line` (followed by `\n`), in partial pieces first if it is
    /// over the limit.
    fn emit_cut(&self, mut line: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        while line.len() > self.max_line {
            let cut = cut_point(&line[..self.max_line]);
            emit(&line[..cut], true);
            line = &line[cut..];
        }
        emit(line, false);
    }

    /// Whether bytes of an unterminated line are waiting.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Emits the unterminated line, if any, as a partial piece (the pipe
    /// closed: no `\n` followed it).
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.partial.is_empty() {
            emit(&self.partial, true);
            self.partial.clear();
        }
    }

    /// Emits what has come of the unterminated line while the pipe is idle,
    /// as a partial piece, less a trailing incomplete UTF-8 sequence: a
    /// writer that pauses in the middle of a character sends the rest of it
    /// next, and the two halves sent apart would each be invalid text. What
    /// is held back goes with the next bytes, or with
    /// [`LineSplitter::flush`].
    pub fn flush_idle(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        let cut = cut_point(&self.partial);
        if cut > 0 {
            emit(&self.partial[..cut], true);
            self.partial.drain(..cut);
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

    /// The pieces of `chunks`, each with its partial flag.
    fn split(chunks: &[&[u8]], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l, p| out.push((l.to_vec(), p)));
        }
        s.flush(|l, p| out.push((l.to_vec(), p)));
        out
    }

    /// The bytes the pieces stand for: each, plus `\n` unless partial.
    fn rebuild(pieces: &[(Vec<u8>, bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (text, partial) in pieces {
            out.extend_from_slice(text);
            if !partial {
                out.push(b'\n');
            }
        }
        out
    }

    #[test]
    fn only_newline_ends_a_line() {
        let got = split(&[b"a\nb\r\nc\rd\n\ne"], 100);
        let want: Vec<(Vec<u8>, bool)> = vec![
            (b"a".to_vec(), false),
            (b"b\r".to_vec(), false),
            (b"c\rd".to_vec(), false),
            (b"".to_vec(), false),
            (b"e".to_vec(), true),
        ];
        assert_eq!(got, want);
        assert_eq!(rebuild(&got), b"a\nb\r\nc\rd\n\ne");
    }

    #[test]
    fn partial_lines_join_across_chunks() {
        let got = split(&[b"hel", b"lo\nwor", b"ld"], 100);
        assert_eq!(
            got,
            vec![(b"hello".to_vec(), false), (b"world".to_vec(), true)]
        );
    }

    #[test]
    fn long_lines_are_cut_at_the_limit_into_partial_pieces() {
        let got = split(&[&[b'x'; 10], b"\n"], 4);
        let want: Vec<(Vec<u8>, bool)> = vec![
            (b"xxxx".to_vec(), true),
            (b"xxxx".to_vec(), true),
            (b"xx".to_vec(), false),
        ];
        assert_eq!(got, want);
        let got = split(&[&[b'y'; 5], &[b'y'; 5]], 4);
        assert_eq!(rebuild(&got), vec![b'y'; 10]);
        assert!(got.iter().all(|(l, p)| l.len() <= 4 && *p));
    }

    #[test]
    fn cuts_never_split_a_character() {
        // "aé€" = 61 C3A9 E282AC; a 4-byte window would split the euro sign.
        let text = "aé€😀".repeat(3);
        let got = split(&[text.as_bytes()], 4);
        for (piece, _) in &got {
            assert!(std::str::from_utf8(piece).is_ok(), "{piece:?}");
        }
        assert_eq!(rebuild(&got), text.as_bytes());
    }

    #[test]
    fn a_newline_after_sent_pieces_is_an_empty_whole_line() {
        // Cut exactly at the limit, newline in the next chunk.
        let got = split(&[b"abcd", b"\nef"], 4);
        assert_eq!(rebuild(&got), b"abcd\nef");
        // Flushed when idle, then the newline.
        let mut s = LineSplitter::new(100);
        let mut out = Vec::new();
        s.push(b"prompt> ", |l, p| out.push((l.to_vec(), p)));
        s.flush_idle(|l, p| out.push((l.to_vec(), p)));
        s.push(b"\n\nnext\n", |l, p| out.push((l.to_vec(), p)));
        let want: Vec<(Vec<u8>, bool)> = vec![
            (b"prompt> ".to_vec(), true),
            (b"".to_vec(), false),
            (b"".to_vec(), false),
            (b"next".to_vec(), false),
        ];
        assert_eq!(out, want);
        assert_eq!(rebuild(&out), b"prompt> \n\nnext\n");
    }

    #[test]
    fn an_idle_flush_holds_back_half_a_character() {
        let mut s = LineSplitter::new(100);
        let mut out: Vec<(Vec<u8>, bool)> = Vec::new();
        // "price €5": the euro sign's first two bytes, a pause, the rest.
        s.push(b"price \xe2\x82", |l, p| out.push((l.to_vec(), p)));
        s.flush_idle(|l, p| out.push((l.to_vec(), p)));
        assert_eq!(out, [(b"price ".to_vec(), true)]);
        assert!(s.has_partial(), "the half character waits");
        // Nothing but half a character: nothing to send yet.
        s.flush_idle(|l, p| out.push((l.to_vec(), p)));
        assert_eq!(out.len(), 1);
        s.push(b"\xac5\n", |l, p| out.push((l.to_vec(), p)));
        assert_eq!(out[1], ("€5".as_bytes().to_vec(), false));
        // Whole characters go at once; at the pipe's end, whatever is left.
        s.push("é".as_bytes(), |l, p| out.push((l.to_vec(), p)));
        s.flush_idle(|l, p| out.push((l.to_vec(), p)));
        assert_eq!(out[2], ("é".as_bytes().to_vec(), true));
        s.push(b"\xf0\x9f", |l, p| out.push((l.to_vec(), p)));
        s.flush(|l, p| out.push((l.to_vec(), p)));
        assert_eq!(out[3], (b"\xf0\x9f".to_vec(), true));
        assert!(!s.has_partial());
    }

    #[test]
    fn empty_line_text() {
        assert_eq!(text_of(b""), "\n");
        assert_eq!(text_of(b"\xffa"), "\u{fffd}a");
    }
}
