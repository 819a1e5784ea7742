//! What the tests share: building batches, a model of what was logged, and
//! reading a log to its end the way the host does.

use std::path::Path;

use execd_policy_disk::format::{self, RecordHeader};
use execd_policy_disk::{
    BUDGET, Batch, Channel, Config, Ending, Gap, Log, Outcome, ReadResult, Reason,
};

/// One logged line, as the model keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub channel: Channel,
    pub timestamp_ms: u64,
    pub text: Vec<u8>,
    /// A piece not followed by `\n`.
    pub partial: bool,
}

/// Everything appended, in eid order (eid `i + 1` is `lines[i]`).
#[derive(Default)]
pub struct Model {
    pub lines: Vec<Line>,
}

impl Model {
    /// Builds a batch of `lines`, logs them in the model, returns it.
    pub fn batch(&mut self, lines: &[Line]) -> Batch {
        let mut batch = Batch::default();
        for line in lines {
            batch.push(line.channel, line.timestamp_ms, &line.text, line.partial);
            self.lines.push(line.clone());
        }
        batch
    }

    /// Text bytes of eids `from..=to`.
    pub fn bytes(&self, from: u64, to: u64) -> u64 {
        (from..=to)
            .map(|eid| self.lines[eid as usize - 1].text.len() as u64)
            .sum()
    }
}

/// A small config that sends most reads to the files.
pub fn small(memory_bytes: u64, segment_bytes: u64) -> Config {
    Config {
        memory_bytes,
        segment_bytes,
        ..Config::default()
    }
}

pub fn line(channel: Channel, timestamp_ms: u64, text: impl Into<Vec<u8>>) -> Line {
    Line {
        channel,
        timestamp_ms,
        text: text.into(),
        partial: false,
    }
}

/// Numbered stdout lines `from..to`, `n` to a batch, timestamps changing
/// every 7 lines, and a stderr line every 5.
pub fn numbered(from: u64, to: u64) -> Vec<Line> {
    (from..to)
        .map(|i| {
            let channel = if i % 5 == 0 {
                Channel::Stderr
            } else {
                Channel::Stdout
            };
            // The last line of each millisecond a partial piece, so the
            // files must keep which (and records keep the layout that the
            // damage tests cut at fixed fractions of a file).
            Line {
                partial: i % 7 == 6,
                ..line(channel, 1000 + i / 7, format!("line {i} ✓"))
            }
        })
        .collect()
}

/// Appends `numbered(from..to)` to a log that holds `from` lines, in
/// batches of `per_batch`, checking the eid each batch ends at.
pub fn fill(log: &mut Log, model: &mut Model, from: u64, to: u64, per_batch: u64) {
    let mut at = from;
    while at < to {
        let next = (at + per_batch).min(to);
        let stored = log.append(model.batch(&numbered(at, next))).unwrap();
        assert_eq!(stored.last_eid, next);
        at = next;
    }
}

/// Checks that what `seen` (read from eid 1) missed is the oldest lines,
/// reported as one `budget` gap with their exact bytes; returns the gap.
pub fn one_budget_gap_over_the_oldest(model: &Model, seen: &Seen) -> Gap {
    let missed = check_seen(model, 0, seen);
    assert_eq!(seen.gaps.len(), 1);
    let gap = seen.gaps[0];
    assert_eq!((gap.from_eid, gap.reason), (1, BUDGET));
    assert_eq!(gap.dropped_bytes, Some(model.bytes(1, gap.to_eid)));
    assert_eq!(missed, (1..=gap.to_eid).collect::<Vec<_>>());
    gap
}

pub fn ending() -> Ending {
    Ending {
        outcome: Outcome::Failed {
            exit_code: 3,
            message: "exit status 3".into(),
        },
        // Not the reason the outcome implies (it trapped the TERM of a
        // DELETE and exited 3): a log must store it, not derive it.
        reason: Reason::Interrupted,
        signal: None,
        execution_ms: 12,
        timestamp_ms: 99,
    }
}

/// The ending a restarted host gives a log that had none.
pub fn host_restarted() -> Ending {
    Ending {
        outcome: Outcome::HostRestarted,
        reason: Reason::HostRestarted,
        signal: None,
        execution_ms: 40,
        timestamp_ms: 7_000,
    }
}

/// What one reader saw, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// `(eid, line)` of each line event.
    pub lines: Vec<(u64, Line)>,
    pub gaps: Vec<Gap>,
    pub ending: Option<(u64, Ending)>,
}

/// Applies one read's answer at `cursor` to `seen`, checking that it
/// follows the cursor; returns the new cursor, or `None` for nothing new.
pub fn apply(seen: &mut Seen, cursor: u64, result: ReadResult) -> Option<u64> {
    match result {
        ReadResult::Events(events) => {
            assert_eq!(
                events.first_eid,
                cursor + 1,
                "events must follow the cursor"
            );
            events.batch.check().expect("a consistent batch");
            assert!(
                !events.batch.is_empty() || events.ending.is_some(),
                "events are never empty"
            );
            let mut at = 0;
            let mut eid = events.first_eid;
            let heads = events.batch.heads().zip(events.batch.partials());
            for ((channel, timestamp_ms, len), partial) in heads {
                let text = events.batch.text[at..at + len as usize].to_vec();
                at += len as usize;
                seen.lines.push((
                    eid,
                    Line {
                        channel,
                        timestamp_ms,
                        text,
                        partial,
                    },
                ));
                eid += 1;
            }
            if let Some(ending) = events.ending {
                seen.ending = Some((eid, ending));
                return Some(eid);
            }
            Some(eid - 1)
        }
        ReadResult::Gap(gap) => {
            assert_eq!(
                gap.from_eid,
                cursor + 1,
                "a gap must start after the cursor"
            );
            assert!(gap.to_eid >= gap.from_eid);
            seen.gaps.push(gap);
            Some(gap.to_eid)
        }
        ReadResult::Pending | ReadResult::Finished => None,
    }
}

/// Reads from `cursor` until nothing new, `max_events`/`max_bytes` a read.
pub fn read_to_end(log: &mut Log, cursor: u64, max_events: u32, max_bytes: u32) -> Seen {
    let mut seen = Seen::default();
    let mut cursor = cursor;
    while let Some(next) = apply(
        &mut seen,
        cursor,
        log.read_inline(cursor, max_events, max_bytes),
    ) {
        cursor = next;
    }
    seen
}

/// Checks that `seen` (read from `cursor`) has every eid after it once,
/// as a line equal to the model's or inside a gap whose bytes, when
/// given, are exact; returns the eids missed.
pub fn check_seen(model: &Model, cursor: u64, seen: &Seen) -> Vec<u64> {
    let mut missed = Vec::new();
    let mut lines = seen.lines.iter().peekable();
    let mut gaps = seen.gaps.iter().peekable();
    let mut eid = cursor + 1;
    while eid <= model.lines.len() as u64 {
        if let Some(gap) = gaps.next_if(|g| g.from_eid == eid) {
            if let Some(bytes) = gap.dropped_bytes {
                assert_eq!(bytes, model.bytes(gap.from_eid, gap.to_eid), "{gap:?}");
            }
            missed.extend(gap.from_eid..=gap.to_eid);
            eid = gap.to_eid + 1;
            continue;
        }
        let Some((got, line)) = lines.next() else {
            panic!("eid {eid} neither read nor in a gap");
        };
        assert_eq!(*got, eid);
        assert_eq!(line, &model.lines[eid as usize - 1], "eid {eid}");
        eid += 1;
    }
    assert!(
        lines.next().is_none() && gaps.next().is_none(),
        "nothing after the last line"
    );
    missed
}

/// Bytes of the files in `dir`.
pub fn bytes_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Names of the segment files in `dir`, sorted.
pub fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".seg"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Offsets and headers of the records of a segment file's bytes (up to
/// the first that does not decode).
pub fn records(bytes: &[u8]) -> Vec<(usize, RecordHeader)> {
    let mut at = format::FILE_HEADER_LEN;
    let mut out = Vec::new();
    while let Some(header) = bytes.get(at..).and_then(|b| RecordHeader::decode(b).ok()) {
        out.push((at, header));
        at += header.record_len() as usize;
    }
    out
}
