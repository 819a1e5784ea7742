//! The ring itself: eid assignment, bounded storage, eviction and gaps.

use std::collections::VecDeque;

use crate::Config;

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Stdout,
    Stderr,
}

/// A line handed over by the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub channel: Channel,
    pub text: String,
    pub timestamp_ms: u64,
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed { exit_code: i32, message: String },
}

/// The terminal event's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ending {
    pub outcome: Outcome,
    pub execution_ms: u64,
    pub timestamp_ms: u64,
}

/// What an event holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Stdout(String),
    Stderr(String),
    End(Ending),
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub eid: u64,
    pub timestamp_ms: u64,
    pub body: Body,
}

/// Missing events right after a reader's cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub from_eid: u64,
    pub to_eid: u64,
    pub dropped_bytes: u64,
}

/// The answer to [`Ring::read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    Events(Vec<Event>),
    Gap(Gap),
    Pending,
    Finished,
}

/// Bytes an event is charged beyond its text, so that a flood of empty
/// lines is bounded by `max-bytes` too.
const EVENT_OVERHEAD: u64 = 32;

/// A stored event with the count of text bytes logged before it, which
/// makes a gap's `dropped_bytes` a subtraction.
struct Slot {
    event: Event,
    offset: u64,
}

/// The log of one command.
pub struct Ring {
    config: Config,
    slots: VecDeque<Slot>,
    /// Bytes the retained slots are charged.
    retained_bytes: u64,
    /// Eid the next event gets.
    next_eid: u64,
    /// Text bytes of every event logged so far.
    logged_bytes: u64,
    /// Offsets of recently evicted events, oldest first, so a gap reports
    /// exactly what a reader missed. Bounded like the ring itself.
    evicted_offsets: VecDeque<u64>,
    /// Eid of the first entry of `evicted_offsets`.
    evicted_first_eid: u64,
    finished: bool,
}

impl Ring {
    pub fn new(config: Config) -> Ring {
        Ring {
            config,
            slots: VecDeque::new(),
            retained_bytes: 0,
            next_eid: 1,
            logged_bytes: 0,
            evicted_offsets: VecDeque::new(),
            evicted_first_eid: 1,
            finished: false,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Logs a batch of lines; returns the eid of the last.
    pub fn append(&mut self, batch: Vec<Line>) -> Result<u64, String> {
        if self.finished {
            return Err("append after finish".into());
        }
        for line in batch {
            let body = match line.channel {
                Channel::Stdout => Body::Stdout(line.text),
                Channel::Stderr => Body::Stderr(line.text),
            };
            self.push(line.timestamp_ms, body);
        }
        Ok(self.next_eid - 1)
    }

    /// Logs the terminal event; returns its eid.
    pub fn finish(&mut self, ending: Ending) -> Result<u64, String> {
        if self.finished {
            return Err("finish called twice".into());
        }
        self.finished = true;
        let timestamp_ms = ending.timestamp_ms;
        self.push(timestamp_ms, Body::End(ending));
        Ok(self.next_eid - 1)
    }

    fn push(&mut self, timestamp_ms: u64, body: Body) {
        let text_len = match &body {
            Body::Stdout(t) | Body::Stderr(t) => t.len() as u64,
            Body::End(_) => 0,
        };
        let eid = self.next_eid;
        self.next_eid += 1;
        self.slots.push_back(Slot {
            event: Event {
                eid,
                timestamp_ms,
                body,
            },
            offset: self.logged_bytes,
        });
        self.logged_bytes += text_len;
        self.retained_bytes += text_len + EVENT_OVERHEAD;
        self.evict();
    }

    /// Drops the oldest events until the bounds hold; the newest event is
    /// always kept, so the terminal event stays readable.
    fn evict(&mut self) {
        while self.slots.len() > 1
            && (self.slots.len() as u64 > self.config.max_events
                || self.retained_bytes > self.config.max_bytes)
        {
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            self.retained_bytes -= charge(&slot.event);
            self.evicted_offsets.push_back(slot.offset);
            if self.evicted_offsets.len() as u64 > self.config.max_events {
                self.evicted_offsets.pop_front();
                self.evicted_first_eid += 1;
            }
        }
    }

    /// Events after `after`: at most `max_events`, and about `max_bytes` of
    /// text (always at least one when any is there).
    pub fn read(&self, after: u64, max_events: u32, max_bytes: u32) -> ReadResult {
        let newest = self.next_eid - 1;
        if after >= newest {
            return if self.finished {
                ReadResult::Finished
            } else {
                ReadResult::Pending
            };
        }
        let Some(front) = self.slots.front() else {
            return ReadResult::Pending;
        };
        let first_kept = front.event.eid;
        if after + 1 < first_kept {
            return ReadResult::Gap(Gap {
                from_eid: after + 1,
                to_eid: first_kept - 1,
                dropped_bytes: front.offset - self.offset_of_evicted(after + 1),
            });
        }
        let start = (after + 1 - first_kept) as usize;
        let mut events = Vec::new();
        let mut bytes = 0u64;
        for slot in self.slots.range(start..) {
            if events.len() as u32 >= max_events.max(1)
                || (!events.is_empty() && bytes >= u64::from(max_bytes))
            {
                break;
            }
            bytes += charge(&slot.event);
            events.push(slot.event.clone());
        }
        ReadResult::Events(events)
    }

    /// Offset of an evicted eid. For one older than the remembered window
    /// the oldest remembered offset stands in, so the count is a lower bound.
    fn offset_of_evicted(&self, eid: u64) -> u64 {
        if eid <= 1 {
            return 0;
        }
        let index = eid.saturating_sub(self.evicted_first_eid) as usize;
        self.evicted_offsets.get(index).copied().unwrap_or(0)
    }

    /// Whether a new reader may attach while `live_readers` are attached.
    pub fn admits(&self, live_readers: usize) -> Result<(), String> {
        if self.config.exclusive && live_readers > 0 && !self.finished {
            Err("another reader is attached to this command".into())
        } else {
            Ok(())
        }
    }

    pub fn retention_ms(&self) -> u64 {
        self.config.retention_ms
    }
}

fn charge(event: &Event) -> u64 {
    EVENT_OVERHEAD
        + match &event.body {
            Body::Stdout(t) | Body::Stderr(t) => t.len() as u64,
            Body::End(_) => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        Line {
            channel: Channel::Stdout,
            text: text.into(),
            timestamp_ms: 1,
        }
    }

    fn ending() -> Ending {
        Ending {
            outcome: Outcome::Completed,
            execution_ms: 5,
            timestamp_ms: 2,
        }
    }

    fn eids(result: ReadResult) -> Vec<u64> {
        match result {
            ReadResult::Events(events) => events.iter().map(|e| e.eid).collect(),
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[test]
    fn eids_are_consecutive_across_batches_and_finish() {
        let mut ring = Ring::new(Config::default());
        assert_eq!(ring.append(vec![line("a"), line("b")]), Ok(2));
        assert_eq!(ring.append(vec![line("c")]), Ok(3));
        assert_eq!(ring.finish(ending()), Ok(4));
        assert_eq!(eids(ring.read(0, 100, 1 << 20)), vec![1, 2, 3, 4]);
        assert_eq!(eids(ring.read(2, 100, 1 << 20)), vec![3, 4]);
        assert_eq!(ring.read(4, 100, 1 << 20), ReadResult::Finished);
        assert!(ring.append(vec![line("late")]).is_err());
    }

    #[test]
    fn pending_until_appended() {
        let mut ring = Ring::new(Config::default());
        assert_eq!(ring.read(0, 10, 10), ReadResult::Pending);
        ring.append(vec![line("a")]).unwrap();
        assert_eq!(ring.read(1, 10, 10), ReadResult::Pending);
        assert_eq!(eids(ring.read(0, 10, 10)), vec![1]);
    }

    #[test]
    fn read_limits_events_and_bytes() {
        let mut ring = Ring::new(Config::default());
        ring.append((0..10).map(|_| line("0123456789")).collect())
            .unwrap();
        assert_eq!(eids(ring.read(0, 3, 1 << 20)), vec![1, 2, 3]);
        // 42 bytes a line: the first always comes, the second crosses 50.
        assert_eq!(eids(ring.read(0, 100, 50)), vec![1, 2]);
        assert_eq!(eids(ring.read(0, 100, 0)), vec![1]);
    }

    #[test]
    fn eviction_reports_exact_gap() {
        let config = Config {
            max_events: 3,
            ..Config::default()
        };
        let mut ring = Ring::new(config);
        ring.append((0..10).map(|i| line(&"x".repeat(i))).collect())
            .unwrap();
        // Kept: eids 8, 9, 10 (texts of 7, 8, 9 bytes).
        let gap = Gap {
            from_eid: 1,
            to_eid: 7,
            dropped_bytes: (0..7).sum(),
        };
        assert_eq!(ring.read(0, 10, 1 << 20), ReadResult::Gap(gap));
        let gap = Gap {
            from_eid: 5,
            to_eid: 7,
            dropped_bytes: 4 + 5 + 6,
        };
        assert_eq!(ring.read(4, 10, 1 << 20), ReadResult::Gap(gap));
        assert_eq!(eids(ring.read(7, 10, 1 << 20)), vec![8, 9, 10]);
    }

    #[test]
    fn terminal_event_survives_byte_bound() {
        let config = Config {
            max_bytes: 1,
            ..Config::default()
        };
        let mut ring = Ring::new(config);
        ring.append(vec![line("hello"), line("world")]).unwrap();
        assert_eq!(ring.finish(ending()), Ok(3));
        assert!(matches!(
            ring.read(0, 10, 10),
            ReadResult::Gap(Gap {
                from_eid: 1,
                to_eid: 2,
                ..
            })
        ));
        assert_eq!(eids(ring.read(2, 10, 10)), vec![3]);
    }

    #[test]
    fn exclusive_admits_one_reader_while_running() {
        let mut ring = Ring::new(Config {
            exclusive: true,
            ..Config::default()
        });
        assert!(ring.admits(0).is_ok());
        assert!(ring.admits(1).is_err());
        ring.finish(ending()).unwrap();
        assert!(ring.admits(1).is_ok());
        let ring = Ring::new(Config::default());
        assert!(ring.admits(5).is_ok());
    }
}
