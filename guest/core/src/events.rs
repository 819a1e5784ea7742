//! The contract's types, mirrored field for field.

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Stdout,
    Stderr,
}

/// Consecutive lines from one pipe at one millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub channel: Channel,
    pub timestamp_ms: u64,
    pub lines: u32,
    /// The run's last line is a piece not followed by `\n`; a run ends
    /// after every such piece.
    pub partial: bool,
}

/// Lines as columns: line `i`'s text is the next `lens[i]` bytes of
/// `text`; its pipe and time are those of the run it falls in.
///
/// ```
/// use execd_policy_core::{Batch, Channel};
///
/// let mut batch = Batch::default();
/// batch.push(Channel::Stdout, 7, b"hello", false);
/// batch.push(Channel::Stdout, 7, b"world", false);
/// batch.push(Channel::Stderr, 8, b"oops", true);
/// batch.push(Channel::Stderr, 8, b"!", false);
/// assert_eq!(batch.len(), 4);
/// // The two stdout lines share a run; a partial piece ends its run.
/// assert_eq!(batch.runs.len(), 3);
/// assert!(batch.runs[1].partial && !batch.runs[2].partial);
/// assert!(batch.check().is_ok());
///
/// batch.text.pop();
/// assert!(batch.check().is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub lens: Vec<u32>,
    pub runs: Vec<Run>,
    pub text: Vec<u8>,
}

impl Batch {
    /// How many lines.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Adds a line (a piece not followed by `\n` when `partial`),
    /// extending the last run when it has the same pipe and time.
    pub fn push(&mut self, channel: Channel, timestamp_ms: u64, text: &[u8], partial: bool) {
        // A line over 4 GiB cannot cross the WIT boundary; saturate rather
        // than wrap so `check` then rejects the batch.
        self.lens
            .push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        self.text.extend_from_slice(text);
        self.extend_runs(channel, timestamp_ms, 1, partial);
    }

    /// Adds `lines` lines' pipe and time (their lengths and texts are the
    /// caller's to add), the last of them a partial piece when `partial`,
    /// merging with the last run when they match and it ended on a whole
    /// line.
    pub fn extend_runs(&mut self, channel: Channel, timestamp_ms: u64, lines: u32, partial: bool) {
        match self.runs.last_mut() {
            Some(last)
                if last.channel == channel
                    && last.timestamp_ms == timestamp_ms
                    && !last.partial =>
            {
                last.lines += lines;
                last.partial = partial;
            }
            _ => self.runs.push(Run {
                channel,
                timestamp_ms,
                lines,
                partial,
            }),
        }
    }

    /// Adds the runs of lines `from..to` of a batch whose runs are `runs`.
    pub fn extend_runs_of(&mut self, runs: impl IntoIterator<Item = Run>, from: usize, to: usize) {
        // Runs are few (one per pipe switch or millisecond): walk them.
        let mut start = 0;
        for run in runs {
            let end = start + run.lines as usize;
            let (a, b) = (start.max(from), end.min(to));
            if a < b {
                // Only the run's last line can be partial.
                let partial = run.partial && b == end;
                self.extend_runs(run.channel, run.timestamp_ms, (b - a) as u32, partial);
            }
            if end >= to {
                break;
            }
            start = end;
        }
    }

    /// Each line's pipe, time and length, in order. Only meaningful once
    /// [`Batch::check`] passed: extra lengths or run lines are ignored.
    pub fn heads(&self) -> impl Iterator<Item = (Channel, u64, u32)> + '_ {
        self.runs
            .iter()
            .flat_map(|r| std::iter::repeat_n((r.channel, r.timestamp_ms), r.lines as usize))
            .zip(&self.lens)
            .map(|((channel, timestamp_ms), &len)| (channel, timestamp_ms, len))
    }

    /// Whether each line is a partial piece, in order (see [`Run::partial`]).
    pub fn partials(&self) -> impl Iterator<Item = bool> + '_ {
        self.runs.iter().flat_map(|r| {
            let whole = r.lines.saturating_sub(1) as usize;
            std::iter::repeat_n(false, whole).chain((r.lines > 0).then_some(r.partial))
        })
    }

    /// Why the columns do not describe the same lines, if they do not:
    /// [`check_columns`] of this batch.
    pub fn check(&self) -> Result<(), String> {
        check_columns(
            &self.lens,
            self.runs.iter().map(|r| r.lines),
            self.text.len(),
        )
    }
}

/// Why a batch's columns (its line lengths, the line count of each of its
/// runs, its text's length) do not describe the same lines, if they do
/// not: the lengths must add up to the text, the text must fit the WIT
/// boundary's 4 GiB, and the runs, none empty, must cover every line.
///
/// Takes the columns rather than a [`Batch`] so that a batch of generated
/// bindings (the host's) is checked by the same code.
///
/// ```
/// use execd_policy_core::check_columns;
///
/// assert!(check_columns(&[2, 0, 3], [1, 2], 5).is_ok());
/// assert!(check_columns(&[2, 0, 3], [1, 2], 6).is_err()); // lengths vs text
/// assert!(check_columns(&[2, 0, 3], [3, 1], 5).is_err()); // runs vs lines
/// assert!(check_columns(&[2, 0, 3], [3, 0], 5).is_err()); // an empty run
/// ```
pub fn check_columns(
    lens: &[u32],
    run_lines: impl IntoIterator<Item = u32>,
    text_len: usize,
) -> Result<(), String> {
    let text: u64 = lens.iter().map(|&l| u64::from(l)).sum();
    if text != text_len as u64 {
        return Err(format!(
            "line lengths add up to {text}, the text has {text_len} bytes"
        ));
    }
    if text_len > u32::MAX as usize {
        return Err(format!("a batch of {text_len} bytes is over 4 GiB"));
    }
    let (mut lines, mut empty_run) = (0u64, false);
    for run in run_lines {
        lines += u64::from(run);
        empty_run |= run == 0;
    }
    if lines != lens.len() as u64 || empty_run {
        return Err(format!(
            "runs cover {lines} lines (or one is empty), the batch has {}",
            lens.len()
        ));
    }
    Ok(())
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed {
        exit_code: i32,
        message: String,
    },
    /// The host stopped before the command ended; a later host ended the log.
    HostRestarted,
    /// The host's own orderly shutdown ended the command.
    HostShutdown,
}

/// Why a command ended: the terminal event's `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Exit,
    Signal,
    Timeout,
    Interrupted,
    HostShutdown,
    HostRestarted,
    SpawnFailed,
}

impl Reason {
    /// Every reason, in the WIT's order: a stored reason is its index
    /// here plus one (0 is "not stored", see [`Reason::from_code`]).
    pub const ALL: [Reason; 7] = [
        Reason::Exit,
        Reason::Signal,
        Reason::Timeout,
        Reason::Interrupted,
        Reason::HostShutdown,
        Reason::HostRestarted,
        Reason::SpawnFailed,
    ];

    /// The byte a policy stores for this reason: 1 to 7.
    pub fn code(self) -> u8 {
        Reason::ALL.iter().position(|&r| r == self).unwrap_or(0) as u8 + 1
    }

    /// The reason stored as `code`; `None` for 0 (a record written before
    /// reasons were stored) or an unknown byte.
    pub fn from_code(code: u8) -> Option<Reason> {
        Reason::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// The reason a record that stored none implies by its outcome.
    pub fn implied_by(outcome: &Outcome) -> Reason {
        match outcome {
            Outcome::Completed => Reason::Exit,
            Outcome::Failed { exit_code: -1, .. } => Reason::Signal,
            Outcome::Failed { .. } => Reason::Exit,
            Outcome::HostRestarted => Reason::HostRestarted,
            Outcome::HostShutdown => Reason::HostShutdown,
        }
    }
}

/// The terminal event's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ending {
    pub outcome: Outcome,
    /// Why it ended.
    pub reason: Reason,
    /// The signal that ended it, if one did.
    pub signal: Option<u8>,
    pub execution_ms: u64,
    pub timestamp_ms: u64,
}

/// Consecutive events from `first_eid`: the batch's lines, then the ending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Events {
    pub first_eid: u64,
    /// The lines; their texts are `batch.text` followed by the bytes of
    /// `text_in_files`.
    pub batch: Batch,
    /// Text the host reads from the policy's directory itself.
    pub text_in_files: Vec<TextSpan>,
    pub ending: Option<Ending>,
}

impl Events {
    /// Events whose text is all in `batch`.
    pub fn inline(first_eid: u64, batch: Batch, ending: Option<Ending>) -> Events {
        Events {
            first_eid,
            batch,
            text_in_files: Vec::new(),
            ending,
        }
    }
}

/// Bytes of a file in the policy's directory, by the file's number:
/// [`TextSpan::file_name`] is the name it has there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextSpan {
    pub file: u64,
    pub offset: u64,
    pub len: u32,
}

impl TextSpan {
    /// The name of file number `file` in the policy's directory, as the
    /// host opens it: the number zero-padded to 10 digits, and `.seg`.
    ///
    /// ```
    /// assert_eq!(execd_policy_core::TextSpan::file_name(7), "0000000007.seg");
    /// ```
    pub fn file_name(file: u64) -> String {
        format!("{file:010}.seg")
    }
}

/// Missing events right after a reader's cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub from_eid: u64,
    pub to_eid: u64,
    /// Text bytes of the missing events; `None` when the policy no longer
    /// knows them (each policy says when).
    pub dropped_bytes: Option<u64>,
    /// Why they are missing: one of the policy's reason constants.
    pub reason: &'static str,
}

/// The answer to a read of the events after a cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    Events(Events),
    Gap(Gap),
    /// Nothing after the cursor yet; the command is running.
    Pending,
    /// The cursor is at the terminal event.
    Finished,
}

/// Where a log stands after a write: the newest eid and the disk it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub last_eid: u64,
    pub disk_bytes: u64,
}

impl Stored {
    /// Where a log kept in memory only stands: nothing on disk.
    pub fn in_memory(last_eid: u64) -> Stored {
        Stored {
            last_eid,
            disk_bytes: 0,
        }
    }
}

/// What a policy found in the directory a previous host left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reopened {
    /// Eid of the newest event kept, 0 when none.
    pub last_eid: u64,
    pub disk_bytes: u64,
    /// The terminal event, when the log has one (its eid is `last_eid`).
    pub ending: Option<Ending>,
    /// What was damaged and cut or skipped, in words for the host's log.
    pub damage: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_finds_columns_that_disagree() {
        let mut b = Batch::default();
        b.push(Channel::Stdout, 1, b"ab", false);
        b.push(Channel::Stderr, 1, b"c", false);
        b.check().unwrap();
        let mut short = b.clone();
        short.text.pop();
        assert_eq!(
            short.check().unwrap_err(),
            "line lengths add up to 3, the text has 2 bytes"
        );
        let mut extra = b.clone();
        extra.runs[0].lines = 2;
        assert_eq!(
            extra.check().unwrap_err(),
            "runs cover 3 lines (or one is empty), the batch has 2"
        );
        let mut empty_run = b.clone();
        empty_run.runs.push(Run {
            channel: Channel::Stderr,
            timestamp_ms: 1,
            lines: 0,
            partial: false,
        });
        assert!(empty_run.check().is_err());
    }

    #[test]
    fn runs_of_a_window_are_its_lines_runs() {
        let mut b = Batch::default();
        for (channel, ts, partial) in [
            (Channel::Stdout, 1, false),
            (Channel::Stdout, 1, true),
            (Channel::Stdout, 1, false),
            (Channel::Stderr, 1, false),
        ] {
            b.push(channel, ts, b"x", partial);
        }
        b.push(Channel::Stdout, 2, b"y", true);
        for from in 0..=b.len() {
            for to in from..=b.len() {
                let mut out = Batch::default();
                out.extend_runs_of(b.runs.iter().copied(), from, to);
                let want: Vec<_> = b
                    .heads()
                    .skip(from)
                    .take(to - from)
                    .map(|h| (h.0, h.1))
                    .collect();
                let got: Vec<_> = out
                    .runs
                    .iter()
                    .flat_map(|r| {
                        std::iter::repeat_n((r.channel, r.timestamp_ms), r.lines as usize)
                    })
                    .collect();
                assert_eq!(got, want, "{from}..{to}");
                let want: Vec<bool> = b.partials().skip(from).take(to - from).collect();
                assert_eq!(out.partials().collect::<Vec<_>>(), want, "{from}..{to}");
            }
        }
    }
}
