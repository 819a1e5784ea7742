//! The ring itself: eid assignment, bounded storage, eviction and gaps.
//!
//! Each appended batch is kept as it came (its text, line lengths and runs),
//! so appending and reading copy whole column slices, not lines. Eviction
//! is per event; a batch's memory goes when its last event does.

use std::collections::VecDeque;

use execd_policy_core::{Batch, Ending, Events, Gap, ReadResult};

use crate::Config;

/// Why a ring's gap is there: its memory bounds evicted the events. The
/// gap's `dropped_bytes` is `None` when they are older than the window of
/// sizes the ring remembers.
pub const EVICTED: &str = "evicted";

/// Bytes an event is charged beyond its text, so that a flood of empty
/// lines is bounded by `max-bytes` too.
const EVENT_OVERHEAD: u64 = 32;

/// One appended batch, as it came.
struct Chunk {
    first_eid: u64,
    batch: Batch,
    /// `starts[i]` is where line `i`'s text begins; one more at the end.
    starts: Vec<u32>,
    /// Text bytes logged before this chunk.
    offset: u64,
}

impl Chunk {
    fn len(&self) -> usize {
        self.batch.lens.len()
    }

    fn line_text(&self, i: usize) -> &[u8] {
        &self.batch.text[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// Appends lines `from..to` of this chunk to `out`.
    fn copy_lines(&self, from: usize, to: usize, out: &mut Batch) {
        out.lens.extend_from_slice(&self.batch.lens[from..to]);
        out.text.extend_from_slice(
            &self.batch.text[self.starts[from] as usize..self.starts[to] as usize],
        );
        out.extend_runs_of(self.batch.runs.iter().copied(), from, to);
    }
}

/// The log of one command.
pub struct Ring {
    config: Config,
    chunks: VecDeque<Chunk>,
    /// Events of the front chunk already evicted.
    front_skip: usize,
    retained_events: u64,
    /// Bytes the retained events are charged.
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
    /// The terminal event and its eid; never evicted.
    ending: Option<(u64, Ending)>,
}

impl Ring {
    pub fn new(config: Config) -> Ring {
        Ring {
            config,
            chunks: VecDeque::new(),
            front_skip: 0,
            retained_events: 0,
            retained_bytes: 0,
            next_eid: 1,
            logged_bytes: 0,
            evicted_offsets: VecDeque::new(),
            evicted_first_eid: 1,
            ending: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Logs a batch of lines; returns the eid of the last.
    pub fn append(&mut self, batch: Batch) -> Result<u64, String> {
        if self.ending.is_some() {
            return Err("append after finish".into());
        }
        // Also bounds the text by 4 GiB, so `starts` fit in u32.
        batch.check()?;
        let at = batch.text.len() as u64;
        if batch.is_empty() {
            return Ok(self.next_eid - 1);
        }
        let mut starts = Vec::with_capacity(batch.len() + 1);
        let mut next = 0u32;
        starts.push(0);
        for &len in &batch.lens {
            next += len;
            starts.push(next);
        }
        let count = batch.len() as u64;
        self.retained_events += count;
        self.retained_bytes += at + count * EVENT_OVERHEAD;
        self.chunks.push_back(Chunk {
            first_eid: self.next_eid,
            batch,
            starts,
            offset: self.logged_bytes,
        });
        self.next_eid += count;
        self.logged_bytes += at;
        self.evict();
        Ok(self.next_eid - 1)
    }

    /// Logs the terminal event; returns its eid.
    pub fn finish(&mut self, ending: Ending) -> Result<u64, String> {
        if self.ending.is_some() {
            return Err("finish called twice".into());
        }
        let eid = self.next_eid;
        self.next_eid += 1;
        self.retained_events += 1;
        self.retained_bytes += EVENT_OVERHEAD;
        self.ending = Some((eid, ending));
        self.evict();
        Ok(eid)
    }

    /// Drops the oldest lines until the bounds hold. The newest event is
    /// always kept: the terminal event, or else the last line.
    fn evict(&mut self) {
        while self.retained_events > self.config.max_events
            || self.retained_bytes > self.config.max_bytes
        {
            let lines_kept = self.retained_events - u64::from(self.ending.is_some());
            let keep_last_line = self.ending.is_none();
            if lines_kept == 0 || (keep_last_line && lines_kept == 1) {
                break;
            }
            let Some(front) = self.chunks.front() else {
                break;
            };
            let len = front.starts[self.front_skip + 1] - front.starts[self.front_skip];
            self.evicted_offsets
                .push_back(front.offset + u64::from(front.starts[self.front_skip]));
            if self.evicted_offsets.len() as u64 > self.config.max_events {
                self.evicted_offsets.pop_front();
                self.evicted_first_eid += 1;
            }
            self.retained_events -= 1;
            self.retained_bytes -= u64::from(len) + EVENT_OVERHEAD;
            self.front_skip += 1;
            if self.front_skip == front.len() {
                self.chunks.pop_front();
                self.front_skip = 0;
            }
        }
    }

    /// Eid and text offset of the oldest retained event.
    fn first_kept(&self) -> (u64, u64) {
        match self.chunks.front() {
            Some(c) => (
                c.first_eid + self.front_skip as u64,
                c.offset + u64::from(c.starts[self.front_skip]),
            ),
            None => (
                self.next_eid - u64::from(self.ending.is_some()),
                self.logged_bytes,
            ),
        }
    }

    /// Events after `after`: at most `max_events`, and about `max_bytes` of
    /// text (always at least one when any is there).
    pub fn read(&self, after: u64, max_events: u32, max_bytes: u32) -> ReadResult {
        let newest = self.next_eid - 1;
        if after >= newest {
            return if self.ending.is_some() {
                ReadResult::Finished
            } else {
                ReadResult::Pending
            };
        }
        let (first_kept, first_offset) = self.first_kept();
        if after + 1 < first_kept {
            return ReadResult::Gap(Gap {
                from_eid: after + 1,
                to_eid: first_kept - 1,
                dropped_bytes: self
                    .offset_of_evicted(after + 1)
                    .map(|from| first_offset - from),
                reason: EVICTED,
            });
        }
        let want = after + 1;
        let max_events = u64::from(max_events.max(1));
        let max_bytes = u64::from(max_bytes);
        let mut out = Events::inline(want, Batch::default(), None);
        let (mut count, mut bytes) = (0u64, 0u64);
        let first_chunk = self
            .chunks
            .partition_point(|c| c.first_eid + c.len() as u64 <= want);
        for chunk in self.chunks.range(first_chunk..) {
            let from = want.saturating_sub(chunk.first_eid) as usize;
            let mut to = from;
            while to < chunk.len() && count < max_events && (count == 0 || bytes < max_bytes) {
                bytes += u64::from(chunk.batch.lens[to]) + EVENT_OVERHEAD;
                count += 1;
                to += 1;
            }
            chunk.copy_lines(from, to, &mut out.batch);
            if to < chunk.len() {
                return ReadResult::Events(out);
            }
        }
        if let Some((_, ending)) = &self.ending
            && count < max_events
            && (count == 0 || bytes < max_bytes)
        {
            out.ending = Some(ending.clone());
        }
        ReadResult::Events(out)
    }

    /// Offset of an evicted eid; `None` for one older than the window of
    /// offsets remembered (only the first event's is known for ever: 0).
    fn offset_of_evicted(&self, eid: u64) -> Option<u64> {
        if eid <= 1 {
            return Some(0);
        }
        let index = eid.checked_sub(self.evicted_first_eid)?;
        self.evicted_offsets.get(index as usize).copied()
    }

    /// Whether a new reader may attach while `live_readers` are attached.
    pub fn admits(&self, live_readers: usize) -> Result<(), String> {
        if self.config.exclusive && live_readers > 0 && self.ending.is_none() {
            Err("another reader is attached to this command".into())
        } else {
            Ok(())
        }
    }

    pub fn retention_ms(&self) -> u64 {
        self.config.retention_ms
    }

    /// The text of the line with `eid`, if retained (for tests and tools).
    pub fn line_text(&self, eid: u64) -> Option<&[u8]> {
        let i = self
            .chunks
            .partition_point(|c| c.first_eid + c.len() as u64 <= eid);
        let chunk = self.chunks.get(i)?;
        let j = eid.checked_sub(chunk.first_eid)? as usize;
        (j < chunk.len() && (i > 0 || j >= self.front_skip)).then(|| chunk.line_text(j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use execd_policy_core::{Channel, Outcome, Run};

    fn batch(texts: &[&str]) -> Batch {
        let mut batch = Batch::default();
        for t in texts {
            batch.push(Channel::Stdout, 1, t.as_bytes(), false);
        }
        batch
    }

    fn ending() -> Ending {
        Ending {
            outcome: Outcome::Completed,
            reason: execd_policy_core::Reason::Exit,
            signal: None,
            execution_ms: 5,
            timestamp_ms: 2,
        }
    }

    /// The eids a read returned, the ending counted.
    fn eids(result: ReadResult) -> Vec<u64> {
        match result {
            ReadResult::Events(e) => {
                let n = e.batch.len() as u64 + u64::from(e.ending.is_some());
                (e.first_eid..e.first_eid + n).collect()
            }
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[test]
    fn eids_are_consecutive_across_batches_and_finish() {
        let mut ring = Ring::new(Config::default());
        assert_eq!(ring.append(batch(&["a", "b"])), Ok(2));
        assert_eq!(ring.append(batch(&["c"])), Ok(3));
        assert_eq!(ring.finish(ending()), Ok(4));
        assert_eq!(eids(ring.read(0, 100, 1 << 20)), vec![1, 2, 3, 4]);
        assert_eq!(eids(ring.read(2, 100, 1 << 20)), vec![3, 4]);
        assert_eq!(ring.read(4, 100, 1 << 20), ReadResult::Finished);
        assert!(ring.append(batch(&["late"])).is_err());
    }

    #[test]
    fn read_returns_texts_across_chunks() {
        let mut ring = Ring::new(Config::default());
        ring.append(batch(&["ab", "c"])).unwrap();
        ring.append(batch(&["", "def"])).unwrap();
        let ReadResult::Events(e) = ring.read(1, 100, 1 << 20) else {
            panic!()
        };
        assert_eq!(e.first_eid, 2);
        assert_eq!(e.batch.text, b"cdef");
        assert_eq!(e.batch.lens, [1, 0, 3]);
        assert_eq!(ring.line_text(4), Some(&b"def"[..]));
    }

    #[test]
    fn reads_keep_each_line_s_pipe_and_time() {
        let mut ring = Ring::new(Config::default());
        let mut lines = Vec::new();
        // Batch k's lines: stdout at ms 10+k, a stderr line in the middle,
        // stdout at ms 11+k; so each batch starts with the pipe and time
        // the previous one ended with, and a read across the seam must
        // merge the two runs.
        for k in 0..3u64 {
            let mut b = Batch::default();
            for i in 0..7u64 {
                let (channel, ts) = match i {
                    0..3 => (Channel::Stdout, 10 + k),
                    3 => (Channel::Stderr, 10 + k),
                    _ => (Channel::Stdout, 11 + k),
                };
                let text = format!("{k}-{i}");
                b.push(channel, ts, text.as_bytes(), false);
                lines.push((channel, ts, text));
            }
            ring.append(b).unwrap();
        }
        let ReadResult::Events(all) = ring.read(0, 100, 1 << 20) else {
            panic!()
        };
        // Three runs a batch, less the two merged at the seams.
        assert_eq!(all.batch.runs.len(), 3 * 3 - 2);
        // Every window, across chunks and from mid-run, gives the same heads.
        for after in 0..lines.len() as u64 {
            for max in 1..9 {
                let ReadResult::Events(e) = ring.read(after, max, 1 << 20) else {
                    panic!()
                };
                e.batch.check().unwrap();
                let mut at = 0;
                for (i, (channel, ts, len)) in e.batch.heads().enumerate() {
                    let (c, t, text) = &lines[after as usize + i];
                    assert_eq!((channel, ts), (*c, *t), "after {after} max {max} line {i}");
                    assert_eq!(&e.batch.text[at..at + len as usize], text.as_bytes());
                    at += len as usize;
                }
            }
        }
    }

    #[test]
    fn rejects_runs_that_do_not_cover_the_lines() {
        let mut ring = Ring::new(Config::default());
        let mut b = batch(&["a", "b"]);
        b.runs[0].lines = 1;
        assert!(ring.append(b).is_err());
        let mut b = batch(&["a"]);
        b.runs.push(Run {
            channel: Channel::Stderr,
            timestamp_ms: 1,
            lines: 0,
            partial: false,
        });
        assert!(ring.append(b).is_err());
    }

    #[test]
    fn rejects_lengths_that_do_not_add_up() {
        let mut ring = Ring::new(Config::default());
        let mut b = batch(&["abc"]);
        b.text.push(b'!');
        assert!(ring.append(b).is_err());
    }

    #[test]
    fn pending_until_appended() {
        let mut ring = Ring::new(Config::default());
        assert_eq!(ring.read(0, 10, 10), ReadResult::Pending);
        ring.append(batch(&["a"])).unwrap();
        assert_eq!(ring.read(1, 10, 10), ReadResult::Pending);
        assert_eq!(eids(ring.read(0, 10, 10)), vec![1]);
    }

    #[test]
    fn read_limits_events_and_bytes() {
        let mut ring = Ring::new(Config::default());
        ring.append(batch(&["0123456789"; 10])).unwrap();
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
        let texts: Vec<String> = (0..10).map(|i| "x".repeat(i)).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        ring.append(batch(&texts[..4])).unwrap();
        ring.append(batch(&texts[4..])).unwrap();
        // Kept: eids 8, 9, 10 (texts of 7, 8, 9 bytes).
        let gap = Gap {
            from_eid: 1,
            to_eid: 7,
            dropped_bytes: Some((0..7).sum()),
            reason: EVICTED,
        };
        assert_eq!(ring.read(0, 10, 1 << 20), ReadResult::Gap(gap));
        let gap = Gap {
            from_eid: 5,
            to_eid: 7,
            dropped_bytes: Some(4 + 5 + 6),
            reason: EVICTED,
        };
        assert_eq!(ring.read(4, 10, 1 << 20), ReadResult::Gap(gap));
        // The sizes of eids 2-4 fell out of the remembered window: unknown,
        // not under-reported.
        let gap = Gap {
            from_eid: 2,
            to_eid: 7,
            dropped_bytes: None,
            reason: EVICTED,
        };
        assert_eq!(ring.read(1, 10, 1 << 20), ReadResult::Gap(gap));
        assert_eq!(eids(ring.read(7, 10, 1 << 20)), vec![8, 9, 10]);
    }

    #[test]
    fn terminal_event_survives_byte_bound() {
        let config = Config {
            max_bytes: 1,
            ..Config::default()
        };
        let mut ring = Ring::new(config);
        ring.append(batch(&["hello", "world"])).unwrap();
        // Running: the newest line stays.
        assert_eq!(eids(ring.read(1, 10, 10)), vec![2]);
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
