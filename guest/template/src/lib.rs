//! A minimal log policy: keeps the newest `max-events` lines (default 1000)
//! in a queue, lets any number of readers follow, keeps a finished log for
//! a minute. Start from here to write your own.

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::collections::VecDeque;

// Generates the `Guest` trait and the WIT types from the contract. Point
// `path` at your copy of execd-host's `wit/` folder.
wit_bindgen::generate!({
    path: "../../wit",
    world: "resume-policy",
});

use exports::execd::resume::log::{
    Admission, Batch, Channel, Ending, Events, Gap, Guest, ReadResult, Reopened, Run, Stored,
};

/// One kept line: its pipe, time and own text.
struct Line {
    eid: u64,
    channel: Channel,
    timestamp_ms: u64,
    text: Vec<u8>,
    /// A piece not followed by `\n`: the next line of its pipe continues it.
    partial: bool,
}

/// The log of the one command this instance serves.
struct Log {
    max_events: usize,
    lines: VecDeque<Line>,
    /// The terminal event, with its eid, once the command ended.
    ending: Option<(u64, Ending)>,
    next_eid: u64,
}

thread_local! {
    // The host makes one instance per command, so global state is per command.
    static LOG: RefCell<Log> = RefCell::new(Log {
        max_events: 1000,
        lines: VecDeque::new(),
        ending: None,
        next_eid: 1,
    });
}

struct Policy;

impl Guest for Policy {
    fn needs_directory() -> bool {
        false
    }

    fn configure(settings: Vec<(String, String)>) -> Result<(), String> {
        for (key, value) in settings {
            match key.as_str() {
                "max-events" => {
                    let n: usize = value.parse().ok().filter(|n| *n > 0).ok_or(format!(
                        "`max-events` must be a positive number, not `{value}`"
                    ))?;
                    LOG.with_borrow_mut(|log| log.max_events = n);
                }
                _ => return Err(format!("unknown setting `{key}` (known: max-events)")),
            }
        }
        Ok(())
    }

    fn set_disk_budget(_bytes: u64) -> u64 {
        // This log lives in memory only: there is no disk use to bound.
        0
    }

    fn reopen() -> Result<Reopened, String> {
        // Called only after a host restart, on a directory a previous host
        // left. A memory-only log kept nothing there: refusing drops it.
        Err("this policy keeps its log in memory only: nothing survives a restart".into())
    }

    fn append(batch: Batch) -> Result<Stored, String> {
        LOG.with_borrow_mut(|log| {
            // Line i's text is the next `lens[i]` bytes of the batch's text;
            // its pipe and time are those of the run it falls in.
            let (mut at, mut lens) = (0, batch.lens.iter());
            for run in &batch.runs {
                for i in 0..run.lines {
                    let len = lens.next().ok_or("runs cover more lines than `lens`")?;
                    let end = at + *len as usize;
                    let text = batch
                        .text
                        .get(at..end)
                        .ok_or("lengths exceed the text")?
                        .to_vec();
                    at = end;
                    log.lines.push_back(Line {
                        eid: log.next_eid,
                        channel: run.channel,
                        timestamp_ms: run.timestamp_ms,
                        text,
                        // Only a run's last line can be a partial piece.
                        partial: run.partial && i + 1 == run.lines,
                    });
                    log.next_eid += 1;
                    if log.lines.len() > log.max_events {
                        log.lines.pop_front();
                    }
                }
            }
            // The host never sends a batch whose columns disagree; say so
            // rather than guess if one ever does.
            if lens.next().is_some() || at != batch.text.len() {
                return Err("runs and line lengths do not cover the batch".into());
            }
            Ok(Stored {
                last_eid: log.next_eid - 1,
                disk_bytes: 0,
            })
        })
    }

    fn finish(ending: Ending) -> Result<Stored, String> {
        LOG.with_borrow_mut(|log| {
            let eid = log.next_eid;
            log.next_eid += 1;
            log.ending = Some((eid, ending));
            Ok(Stored {
                last_eid: eid,
                disk_bytes: 0,
            })
        })
    }

    fn read(after: u64, max_events: u32, _max_bytes: u32) -> ReadResult {
        LOG.with_borrow(|log| {
            let newest = log.next_eid - 1;
            if after >= newest {
                return if log.ending.is_some() {
                    ReadResult::Finished
                } else {
                    ReadResult::Pending
                };
            }
            let first = log.lines.front().map_or(newest, |s| s.eid);
            if after + 1 < first {
                // Evicted: tell the reader exactly which events it missed,
                // and why. This log keeps no sizes of evicted lines, so it
                // says it does not know how many bytes they held.
                return ReadResult::Gap(Gap {
                    from_eid: after + 1,
                    to_eid: first - 1,
                    dropped_bytes: None,
                    reason: "evicted".to_string(),
                });
            }
            let mut events = Events {
                first_eid: after + 1,
                batch: Batch {
                    lens: Vec::new(),
                    runs: Vec::new(),
                    text: Vec::new(),
                },
                // Text left in files is for policies that keep a directory.
                text_in_files: Vec::new(),
                ending: None,
            };
            let take = max_events.max(1) as usize;
            for line in log.lines.iter().filter(|l| l.eid > after).take(take) {
                let batch = &mut events.batch;
                batch.lens.push(line.text.len() as u32);
                batch.text.extend_from_slice(&line.text);
                // Lines of one pipe and millisecond share a run, which a
                // partial piece ends.
                match batch.runs.last_mut() {
                    Some(run)
                        if run.channel == line.channel
                            && run.timestamp_ms == line.timestamp_ms
                            && !run.partial =>
                    {
                        run.lines += 1;
                        run.partial = line.partial;
                    }
                    _ => batch.runs.push(Run {
                        channel: line.channel,
                        timestamp_ms: line.timestamp_ms,
                        lines: 1,
                        partial: line.partial,
                    }),
                }
            }
            // The terminal event follows the last line, if there is room.
            let lines = events.batch.lens.len();
            if let Some((eid, ending)) = &log.ending
                && lines < take
                && *eid == after + 1 + lines as u64
            {
                events.ending = Some(ending.clone());
            }
            ReadResult::Events(events)
        })
    }

    fn attach(_reader: u64, _live_readers: Vec<u64>) -> Admission {
        Admission::Accept
    }

    fn detach(_reader: u64) {}

    fn retention_ms() -> u64 {
        60_000
    }
}

export!(Policy);
