//! The host's own log of a command whose policy failed: the eids continue
//! in a small buffer of the newest lines, for the readers already
//! connected, with a `policy-failed` gap over whatever the policy held.

use std::collections::VecDeque;

use super::Standing;
use crate::log::batch::Head;
use crate::policy::wit::{self, ReadResult};

/// The reason of a gap over what a failed policy held.
const POLICY_FAILED_REASON: &str = "policy-failed";

/// Most events the host keeps for connected readers after a policy failure.
const FALLBACK_EVENTS: usize = 4096;
/// Most text bytes it keeps for them.
const FALLBACK_BYTES: usize = 8 << 20;

/// The newest lines logged since the failure, within the bounds above.
#[derive(Default)]
pub struct Fallback {
    recent: VecDeque<Kept>,
    bytes: usize,
}

/// A line the host logged itself.
struct Kept {
    eid: u64,
    head: Head,
    text: Vec<u8>,
}

impl Fallback {
    /// Keeps line `eid`, dropping the oldest beyond the bounds.
    pub fn keep(&mut self, eid: u64, head: Head, text: Vec<u8>) {
        self.bytes += text.len();
        self.recent.push_back(Kept { eid, head, text });
        while self.recent.len() > FALLBACK_EVENTS
            || (self.bytes > FALLBACK_BYTES && self.recent.len() > 1)
        {
            if let Some(old) = self.recent.pop_front() {
                self.bytes -= old.text.len();
            }
        }
    }

    /// Events after `after`, at most `max_events` lines, as a policy's
    /// `read` would answer.
    pub fn read(&self, after: u64, max_events: u32, log: Standing<'_>) -> ReadResult {
        if log.terminal.is_some_and(|t| after >= t) {
            return ReadResult::Finished;
        }
        if after >= log.newest {
            return ReadResult::Pending;
        }
        let first = self.recent.front().map_or(log.newest + 1, |k| k.eid);
        // The terminal event is always there; lines may be gone.
        let first = first.min(log.terminal.unwrap_or(u64::MAX));
        if after + 1 < first {
            // What the failed policy held is gone; say so, don't skip.
            return ReadResult::Gap(wit::Gap {
                from_eid: after + 1,
                to_eid: first - 1,
                dropped_bytes: None,
                reason: POLICY_FAILED_REASON.to_string(),
            });
        }
        let mut events = wit::Events {
            first_eid: after + 1,
            batch: wit::Batch::new(),
            text_in_files: Vec::new(),
            ending: None,
        };
        let take = max_events.max(1) as usize;
        for kept in self.recent.iter().filter(|k| k.eid > after).take(take) {
            events.batch.push_head(kept.head);
            events.batch.text.extend_from_slice(&kept.text);
        }
        if events.batch.len() < take
            && log
                .terminal
                .is_some_and(|t| t == after + 1 + events.batch.len() as u64)
        {
            events.ending = log.ending.cloned();
        }
        if events.batch.is_empty() && events.ending.is_none() {
            return ReadResult::Pending;
        }
        ReadResult::Events(events)
    }
}
