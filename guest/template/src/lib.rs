//! A minimal log policy: keeps the newest `max-events` events (default
//! 1000) in a queue, lets any number of readers follow, keeps a finished
//! log for a minute. Start from here to write your own.

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
    Admission, Body, Channel, Ending, Event, Gap, Guest, Line, ReadResult,
};

/// The log of the one command this instance serves.
struct Log {
    max_events: usize,
    events: VecDeque<Event>,
    next_eid: u64,
    finished: bool,
}

thread_local! {
    // The host makes one instance per command, so global state is per command.
    static LOG: RefCell<Log> = RefCell::new(Log {
        max_events: 1000,
        events: VecDeque::new(),
        next_eid: 1,
        finished: false,
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

    fn append(batch: Vec<Line>) -> Result<u64, String> {
        LOG.with_borrow_mut(|log| {
            for line in batch {
                let body = match line.channel {
                    Channel::Stdout => Body::Stdout(line.text),
                    Channel::Stderr => Body::Stderr(line.text),
                };
                log.push(line.timestamp_ms, body);
            }
            Ok(log.next_eid - 1)
        })
    }

    fn finish(ending: Ending) -> Result<u64, String> {
        LOG.with_borrow_mut(|log| {
            log.push(ending.timestamp_ms, Body::End(ending));
            log.finished = true;
            Ok(log.next_eid - 1)
        })
    }

    fn read(after: u64, max_events: u32, _max_bytes: u32) -> ReadResult {
        LOG.with_borrow(|log| {
            let newest = log.next_eid - 1;
            if after >= newest {
                return if log.finished {
                    ReadResult::Finished
                } else {
                    ReadResult::Pending
                };
            }
            let first = log.events.front().map_or(log.next_eid, |e| e.eid);
            if after + 1 < first {
                // Evicted: tell the reader exactly which events it missed.
                return ReadResult::Gap(Gap {
                    from_eid: after + 1,
                    to_eid: first - 1,
                    dropped_bytes: 0,
                });
            }
            let start = (after + 1 - first) as usize;
            let take = max_events.max(1) as usize;
            ReadResult::Events(log.events.iter().skip(start).take(take).cloned().collect())
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

impl Log {
    fn push(&mut self, timestamp_ms: u64, body: Body) {
        self.events.push_back(Event {
            eid: self.next_eid,
            timestamp_ms,
            body,
        });
        self.next_eid += 1;
        // Keep the newest event always: it may be the terminal one.
        while self.events.len() > self.max_events {
            self.events.pop_front();
        }
    }
}

export!(Policy);
