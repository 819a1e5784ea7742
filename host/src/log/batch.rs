//! Working with the WIT `batch`: lines as columns (lengths, runs of one
//! pipe and millisecond, one text buffer), the shape that crosses the wasm
//! boundary as a few block copies instead of one copy per line.

// Public only for the property tests (`execd_host::internal`); not API.
#![allow(missing_docs)]

use crate::exec::lines::append_text;
use crate::policy::wit::{Batch, Channel, Run};

/// One line's place in a batch: its pipe, its time, its text's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub channel: Channel,
    pub timestamp_ms: u64,
    pub len: u32,
    /// A piece not followed by `\n` (see the WIT `run`'s `partial`).
    pub partial: bool,
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            lens: Vec::new(),
            runs: Vec::new(),
            text: Vec::new(),
        }
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Keeps the first `lines` lines (and `text_len` bytes of text, theirs).
    pub fn truncate(&mut self, lines: usize, text_len: usize) {
        self.lens.truncate(lines);
        self.text.truncate(text_len);
        let mut left = lines as u32;
        self.runs.retain_mut(|run| {
            let kept = run.lines.min(left);
            left -= kept;
            // Only a run's last line can be partial: gone if it was cut.
            run.partial &= kept == run.lines;
            run.lines = kept;
            kept > 0
        });
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Adds a line read from a pipe (a piece not followed by `\n` when
    /// `partial`): its text as the contract wants it (see
    /// [`append_text`]) goes into the batch's one text buffer.
    pub fn push_line(&mut self, channel: Channel, timestamp_ms: u64, line: &[u8], partial: bool) {
        let before = self.text.len();
        append_text(&mut self.text, line);
        let len = (self.text.len() - before) as u32;
        self.push_head(Head {
            channel,
            timestamp_ms,
            len,
            partial,
        });
    }

    /// Adds a line whose text the caller has appended to `text` already.
    pub fn push_head(&mut self, head: Head) {
        self.lens.push(head.len);
        match self.runs.last_mut() {
            // A partial piece ends its run.
            Some(run)
                if run.channel == head.channel
                    && run.timestamp_ms == head.timestamp_ms
                    && !run.partial =>
            {
                run.lines += 1;
                run.partial = head.partial;
            }
            _ => self.runs.push(Run {
                channel: head.channel,
                timestamp_ms: head.timestamp_ms,
                lines: 1,
                partial: head.partial,
            }),
        }
    }

    /// Each line's head, in order. Only meaningful once [`Batch::check`]
    /// passed: extra lengths or run lines are ignored.
    pub fn heads(&self) -> impl Iterator<Item = Head> + '_ {
        self.runs
            .iter()
            .flat_map(|r| {
                // Only a run's last line can be partial.
                let lines = r.lines as usize;
                (0..lines).map(move |i| (r.channel, r.timestamp_ms, r.partial && i + 1 == lines))
            })
            .zip(&self.lens)
            .map(|((channel, timestamp_ms, partial), &len)| Head {
                channel,
                timestamp_ms,
                len,
                partial,
            })
    }

    /// Why the columns do not describe the same lines, if they do not:
    /// the check every policy makes of its input, so one implementation
    /// ([`execd_policy_core::check_columns`]) says what a batch is.
    pub fn check(&self) -> Result<(), String> {
        execd_policy_core::check_columns(
            &self.lens,
            self.runs.iter().map(|r| r.lines),
            self.text.len(),
        )
    }
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_one_pipe_and_millisecond_share_a_run() {
        let mut b = Batch::new();
        b.push_line(Channel::Stdout, 5, b"a", false);
        b.push_line(Channel::Stdout, 5, b"", false);
        b.push_line(Channel::Stderr, 5, b"bc", false);
        b.push_line(Channel::Stderr, 6, b"\xff", false);
        assert_eq!(b.runs.len(), 3);
        assert_eq!(b.runs[0].lines, 2);
        assert!(b.heads().all(|h| !h.partial));
        b.check().unwrap();
        let heads: Vec<Head> = b.heads().collect();
        assert_eq!(heads.len(), 4);
        assert_eq!((heads[1].len, heads[1].channel), (1, Channel::Stdout));
        assert_eq!((heads[3].len, heads[3].timestamp_ms), (3, 6));
        assert_eq!(b.text, "a\nbc\u{fffd}".as_bytes());
    }

    #[test]
    fn a_partial_piece_ends_its_run_and_a_cut_drops_its_flag() {
        let mut b = Batch::new();
        b.push_line(Channel::Stdout, 5, b"a", false);
        b.push_line(Channel::Stdout, 5, b"b", true);
        b.push_line(Channel::Stdout, 5, b"c", true);
        b.push_line(Channel::Stdout, 5, b"d", false);
        let flags: Vec<bool> = b.heads().map(|h| h.partial).collect();
        assert_eq!(flags, [false, true, true, false]);
        assert_eq!(b.runs.len(), 3);
        b.check().unwrap();
        b.truncate(1, 1);
        assert!(b.heads().all(|h| !h.partial));
    }

    #[test]
    fn check_finds_columns_that_disagree() {
        let mut b = Batch::new();
        b.push_line(Channel::Stdout, 1, b"ab", false);
        let mut short = b.clone();
        short.text.pop();
        assert!(short.check().is_err());
        let mut extra = b.clone();
        extra.runs[0].lines = 2;
        assert!(extra.check().is_err());
        let mut empty_run = b.clone();
        empty_run.runs.push(Run {
            channel: Channel::Stderr,
            timestamp_ms: 1,
            lines: 0,
            partial: false,
        });
        assert!(empty_run.check().is_err());
    }
}
