//! The WebAssembly component face of the ring: converts between the WIT
//! types and [`Ring`]'s, and keeps the one log of this instance.

use std::cell::RefCell;

use crate::{Batch, Channel, Config, Ending, Outcome, ReadResult, Ring, Run};

wit_bindgen::generate!({
    path: "../../wit",
    world: "resume-policy",
});

use exports::execd::resume::log as wit;

/// Whether this build is the `exclusive` flavour (one live reader).
const EXCLUSIVE: bool = cfg!(feature = "exclusive");

thread_local! {
    // One instance serves one command, so one global log is the whole state.
    static RING: RefCell<Ring> = RefCell::new(Ring::new(flavoured(Config::default())));
}

fn flavoured(config: Config) -> Config {
    Config {
        exclusive: EXCLUSIVE,
        ..config
    }
}

struct Policy;

/// Where a memory-only log stands: nothing on disk.
fn in_memory(last_eid: u64) -> wit::Stored {
    wit::Stored {
        last_eid,
        disk_bytes: 0,
    }
}

impl wit::Guest for Policy {
    fn needs_directory() -> bool {
        false
    }

    fn configure(settings: Vec<(String, String)>) -> Result<(), String> {
        let config = Config::parse(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| e.0)?;
        RING.with_borrow_mut(|ring| *ring = Ring::new(flavoured(config)));
        Ok(())
    }

    fn set_disk_budget(_bytes: u64) -> u64 {
        // Memory only: nothing on disk to bound.
        0
    }

    fn reopen() -> Result<wit::Reopened, String> {
        Err("`ring` keeps its log in memory only: nothing survives a restart".into())
    }

    fn append(batch: wit::Batch) -> Result<wit::Stored, String> {
        RING.with_borrow_mut(|ring| ring.append(from_wit_batch(batch)))
            .map(in_memory)
    }

    fn finish(ending: wit::Ending) -> Result<wit::Stored, String> {
        RING.with_borrow_mut(|ring| ring.finish(from_wit_ending(ending)))
            .map(in_memory)
    }

    fn read(after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        match RING.with_borrow(|ring| ring.read(after, max_events, max_bytes)) {
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

    fn attach(_reader: u64, live_readers: Vec<u64>) -> wit::Admission {
        match RING.with_borrow(|ring| ring.admits(live_readers.len())) {
            Ok(()) => wit::Admission::Accept,
            Err(why) => wit::Admission::Conflict(why),
        }
    }

    fn detach(_reader: u64) {}

    fn retention_ms() -> u64 {
        RING.with_borrow(|ring| ring.retention_ms())
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
