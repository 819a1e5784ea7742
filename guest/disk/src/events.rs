//! What the log stores and answers, in the shapes the WIT contract uses:
//! lines as columns (lengths, runs of one pipe and millisecond, one text
//! buffer), the terminal event, and the answers to a read.

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
}

/// Lines as columns: line `i`'s text is the next `lens[i]` bytes of
/// `text`; its pipe and time are those of the run it falls in.
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

    /// Adds a line, extending the last run when it has the same pipe and time.
    pub fn push(&mut self, channel: Channel, timestamp_ms: u64, text: &[u8]) {
        // A line over 4 GiB cannot cross the WIT boundary; saturate rather
        // than wrap so `check` then rejects the batch.
        self.lens
            .push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        self.text.extend_from_slice(text);
        self.extend_runs(channel, timestamp_ms, 1);
    }

    /// Adds `lines` lines' pipe and time (their lengths and texts are the
    /// caller's to add), merging with the last run when they match.
    pub(crate) fn extend_runs(&mut self, channel: Channel, timestamp_ms: u64, lines: u32) {
        match self.runs.last_mut() {
            Some(last) if last.channel == channel && last.timestamp_ms == timestamp_ms => {
                last.lines += lines;
            }
            _ => self.runs.push(Run {
                channel,
                timestamp_ms,
                lines,
            }),
        }
    }

    /// Adds the runs of lines `from..to` of a batch whose runs are `runs`.
    pub(crate) fn extend_runs_of(
        &mut self,
        runs: impl IntoIterator<Item = Run>,
        from: usize,
        to: usize,
    ) {
        // Runs are few (one per pipe switch or millisecond): walk them.
        let mut start = 0;
        for run in runs {
            let end = start + run.lines as usize;
            let (a, b) = (start.max(from), end.min(to));
            if a < b {
                self.extend_runs(run.channel, run.timestamp_ms, (b - a) as u32);
            }
            if end >= to {
                break;
            }
            start = end;
        }
    }

    /// Each line's pipe, time and length, in order.
    pub fn heads(&self) -> impl Iterator<Item = (Channel, u64, u32)> + '_ {
        self.runs
            .iter()
            .flat_map(|r| std::iter::repeat_n((r.channel, r.timestamp_ms), r.lines as usize))
            .zip(&self.lens)
            .map(|((channel, timestamp_ms), &len)| (channel, timestamp_ms, len))
    }

    /// Why the columns do not describe the same lines, if they do not.
    pub fn check(&self) -> Result<(), String> {
        let text: u64 = self.lens.iter().map(|&l| u64::from(l)).sum();
        if text != self.text.len() as u64 {
            return Err(format!(
                "line lengths add up to {text}, the text has {} bytes",
                self.text.len()
            ));
        }
        if self.text.len() > u32::MAX as usize {
            return Err(format!(
                "a batch of {} bytes is over 4 GiB",
                self.text.len()
            ));
        }
        let lines: u64 = self.runs.iter().map(|r| u64::from(r.lines)).sum();
        if lines != self.lens.len() as u64 || self.runs.iter().any(|r| r.lines == 0) {
            return Err(format!(
                "runs cover {lines} lines (or one is empty), the batch has {}",
                self.lens.len()
            ));
        }
        Ok(())
    }
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
}

/// The terminal event's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ending {
    pub outcome: Outcome,
    pub execution_ms: u64,
    pub timestamp_ms: u64,
}

/// Consecutive events from `first_eid`: the batch's lines, then the ending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Events {
    pub first_eid: u64,
    pub batch: Batch,
    pub ending: Option<Ending>,
}

/// Missing events right after a reader's cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub from_eid: u64,
    pub to_eid: u64,
    /// Text bytes of the missing events; `None` when the cursor lies inside
    /// a dropped stretch at a point whose offset the log did not keep.
    pub dropped_bytes: Option<u64>,
    pub reason: &'static str,
}

/// What [`crate::Log::reopen`] found in a directory a previous host left.
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

/// Gap reason: found corrupt when the log was reopened.
pub const DAMAGED: &str = "damaged";
/// Gap reason: the disk budget made the log drop (or never store) them.
pub const BUDGET: &str = "budget";
/// Gap reason: writing or reading them failed (a full disk, a bad file).
pub const IO: &str = "io";

/// Where a log stands after a write: the newest eid and the disk it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub last_eid: u64,
    pub disk_bytes: u64,
}

/// The answer to [`crate::Log::read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    Events(Events),
    Gap(Gap),
    Pending,
    Finished,
}

/// Bytes a read charges an event beyond its text, as `ring` does, so that
/// `max-bytes` also bounds a read of many empty lines.
pub(crate) const EVENT_OVERHEAD: u64 = 32;

/// A read's running count against its `max-events` and `max-bytes`.
pub(crate) struct Budget {
    max_events: u64,
    max_bytes: u64,
    events: u64,
    bytes: u64,
}

impl Budget {
    pub(crate) fn new(max_events: u32, max_bytes: u32) -> Budget {
        Budget {
            max_events: u64::from(max_events.max(1)),
            max_bytes: u64::from(max_bytes),
            events: 0,
            bytes: 0,
        }
    }

    /// Whether one more event fits (the first always does).
    pub(crate) fn has_room(&self) -> bool {
        self.events < self.max_events && (self.events == 0 || self.bytes < self.max_bytes)
    }

    /// Counts an event of `text_len` bytes.
    pub(crate) fn take(&mut self, text_len: u32) {
        self.events += 1;
        self.bytes += u64::from(text_len) + EVENT_OVERHEAD;
    }

    /// How many of `lens` fit, counting them.
    pub(crate) fn take_lines(&mut self, lens: impl Iterator<Item = u32>) -> usize {
        let mut taken = 0;
        for len in lens {
            if !self.has_room() {
                break;
            }
            self.take(len);
            taken += 1;
        }
        taken
    }
}
