//! The WebAssembly component face of the log: converts between the WIT
//! types and [`Log`]'s, and keeps the one log of this instance in `/log`.

use std::cell::RefCell;

use crate::{Batch, Channel, Config, Ending, Log, Outcome, ReadResult, Run, Stored};

wit_bindgen::generate!({
    path: "../../wit",
    world: "resume-policy",
});

use exports::execd::resume::log as wit;

/// The per-command directory the host preopens.
const DIR: &str = "/log";

thread_local! {
    // One instance serves one command, so one global log is the whole state.
    static LOG: RefCell<Log> = RefCell::new(Log::new(Config::default(), DIR));
}

struct Policy;

fn to_wit_stored(stored: Stored) -> wit::Stored {
    wit::Stored {
        last_eid: stored.last_eid,
        disk_bytes: stored.disk_bytes,
    }
}

impl wit::Guest for Policy {
    fn needs_directory() -> bool {
        true
    }

    fn configure(settings: Vec<(String, String)>) -> Result<(), String> {
        let config = Config::parse(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| e.0)?;
        LOG.with_borrow_mut(|log| *log = Log::new(config, DIR));
        Ok(())
    }

    fn reopen() -> Result<wit::Reopened, String> {
        let reopened = LOG.with_borrow_mut(|log| log.reopen())?;
        Ok(wit::Reopened {
            last_eid: reopened.last_eid,
            disk_bytes: reopened.disk_bytes,
            ending: reopened.ending.map(to_wit_ending),
            damage: reopened.damage,
        })
    }

    fn set_disk_budget(bytes: u64) -> u64 {
        LOG.with_borrow_mut(|log| log.set_disk_budget(bytes))
    }

    fn append(batch: wit::Batch) -> Result<wit::Stored, String> {
        LOG.with_borrow_mut(|log| log.append(from_wit_batch(batch)))
            .map(to_wit_stored)
    }

    fn finish(ending: wit::Ending) -> Result<wit::Stored, String> {
        LOG.with_borrow_mut(|log| log.finish(from_wit_ending(ending)))
            .map(to_wit_stored)
    }

    fn read(after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        match LOG.with_borrow_mut(|log| log.read(after, max_events, max_bytes)) {
            ReadResult::Events(events) => wit::ReadResult::Events(wit::Events {
                first_eid: events.first_eid,
                batch: to_wit_batch(events.batch),
                ending: events.ending.map(to_wit_ending),
            }),
            ReadResult::Gap(g) => wit::ReadResult::Gap(wit::Gap {
                from_eid: g.from_eid,
                to_eid: g.to_eid,
                dropped_bytes: g.dropped_bytes,
                reason: g.reason.to_string(),
            }),
            ReadResult::Pending => wit::ReadResult::Pending,
            ReadResult::Finished => wit::ReadResult::Finished,
        }
    }

    fn attach(_reader: u64, _live_readers: Vec<u64>) -> wit::Admission {
        // Readers are cursors: any number may follow.
        wit::Admission::Accept
    }

    fn detach(_reader: u64) {}

    fn retention_ms() -> u64 {
        LOG.with_borrow(|log| log.retention_ms())
    }
}

// The columns cross as they are; only the few runs are converted.
fn from_wit_batch(batch: wit::Batch) -> Batch {
    Batch {
        lens: batch.lens,
        runs: batch
            .runs
            .into_iter()
            .map(|r| Run {
                channel: match r.channel {
                    wit::Channel::Stdout => Channel::Stdout,
                    wit::Channel::Stderr => Channel::Stderr,
                },
                timestamp_ms: r.timestamp_ms,
                lines: r.lines,
            })
            .collect(),
        text: batch.text,
    }
}

fn to_wit_batch(batch: Batch) -> wit::Batch {
    wit::Batch {
        lens: batch.lens,
        runs: batch
            .runs
            .into_iter()
            .map(|r| wit::Run {
                channel: match r.channel {
                    Channel::Stdout => wit::Channel::Stdout,
                    Channel::Stderr => wit::Channel::Stderr,
                },
                timestamp_ms: r.timestamp_ms,
                lines: r.lines,
            })
            .collect(),
        text: batch.text,
    }
}

fn from_wit_ending(e: wit::Ending) -> Ending {
    Ending {
        outcome: match e.outcome {
            wit::Outcome::Completed => Outcome::Completed,
            wit::Outcome::Failed(f) => Outcome::Failed {
                exit_code: f.exit_code,
                message: f.message,
            },
            wit::Outcome::HostRestarted => Outcome::HostRestarted,
        },
        execution_ms: e.execution_ms,
        timestamp_ms: e.timestamp_ms,
    }
}

fn to_wit_ending(e: Ending) -> wit::Ending {
    wit::Ending {
        outcome: match e.outcome {
            Outcome::Completed => wit::Outcome::Completed,
            Outcome::Failed { exit_code, message } => {
                wit::Outcome::Failed(wit::Failure { exit_code, message })
            }
            Outcome::HostRestarted => wit::Outcome::HostRestarted,
        },
        execution_ms: e.execution_ms,
        timestamp_ms: e.timestamp_ms,
    }
}

export!(Policy);
