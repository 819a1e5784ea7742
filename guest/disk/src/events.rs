//! What the log stores and answers, in the shapes the WIT contract uses:
//! lines as columns (lengths, runs of one pipe and millisecond, one text
//! buffer), the terminal event, and the answers to a read. The types are
//! every policy's, from `execd-policy-core`; the reasons for a gap and
//! the accounting of a read are this log's. A gap's `dropped_bytes` is
//! `None` when the cursor lies inside a dropped stretch at a point whose
//! offset the log did not keep.

pub use execd_policy_core::{
    Batch, Channel, Ending, Events, Gap, Outcome, ReadResult, Reason, Reopened, Run, Stored,
    TextSpan,
};

/// Gap reason: found corrupt when the log was reopened.
pub const DAMAGED: &str = "damaged";
/// Gap reason: the disk budget made the log drop (or never store) them.
pub const BUDGET: &str = "budget";
/// Gap reason: writing or reading them failed (a full disk, a bad file).
pub const IO: &str = "io";

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

    /// How many of `lens` fit, counting them, and their text bytes.
    pub(crate) fn take_lines(&mut self, lens: impl Iterator<Item = u32>) -> (usize, u64) {
        let (mut taken, mut text) = (0, 0);
        for len in lens {
            if !self.has_room() {
                break;
            }
            self.take(len);
            taken += 1;
            text += u64::from(len);
        }
        (taken, text)
    }
}
