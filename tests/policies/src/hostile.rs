//! The ring, with one misbehaviour switched on by a feature.

use std::cell::RefCell;

use execd_policy_ring::{Batch, Channel, Config, Ending, Outcome, ReadResult, Ring, Run};

wit_bindgen::generate!({
    path: "../../wit",
    world: "resume-policy",
});

use exports::execd::resume::log as wit;

thread_local! {
    static RING: RefCell<Ring> = RefCell::new(Ring::new(Config::default()));
    static TRIGGERED: RefCell<bool> = const { RefCell::new(false) };
}

const TRIGGER: &str = "trigger";

struct Policy;

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
        RING.with_borrow_mut(|ring| *ring = Ring::new(config));
        Ok(())
    }

    fn set_disk_budget(_bytes: u64) -> u64 {
        0
    }

    fn reopen() -> Result<wit::Reopened, String> {
        Err("memory only".into())
    }

    fn append(batch: wit::Batch) -> Result<wit::Stored, String> {
        let triggered = String::from_utf8_lossy(&batch.text).contains(TRIGGER);
        if triggered {
            TRIGGERED.with_borrow_mut(|t| *t = true);
            misbehave_in_append();
        }
        let batch = Batch {
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
        };
        let last = RING.with_borrow_mut(|ring| ring.append(batch))?;
        if triggered && cfg!(feature = "backwards-eids") {
            return Ok(in_memory(last.saturating_sub(10)));
        }
        Ok(in_memory(last))
    }

    fn finish(ending: wit::Ending) -> Result<wit::Stored, String> {
        let ending = Ending {
            outcome: match ending.outcome {
                wit::Outcome::Completed => Outcome::Completed,
                wit::Outcome::Failed(f) => Outcome::Failed {
                    exit_code: f.exit_code,
                    message: f.message,
                },
                wit::Outcome::HostRestarted => Outcome::HostRestarted,
            },
            execution_ms: ending.execution_ms,
            timestamp_ms: ending.timestamp_ms,
        };
        RING.with_borrow_mut(|ring| ring.finish(ending))
            .map(in_memory)
    }

    fn read(after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        match RING.with_borrow(|ring| ring.read(after, max_events, max_bytes)) {
            ReadResult::Events(events) => {
                if cfg!(feature = "panic-read")
                    && String::from_utf8_lossy(&events.batch.text).contains(TRIGGER)
                {
                    panic!("hostile policy: panic in read");
                }
                let mut runs: Vec<wit::Run> = events
                    .batch
                    .runs
                    .iter()
                    .map(|r| wit::Run {
                        channel: match r.channel {
                            Channel::Stdout => wit::Channel::Stdout,
                            Channel::Stderr => wit::Channel::Stderr,
                        },
                        timestamp_ms: r.timestamp_ms,
                        lines: r.lines,
                    })
                    .collect();
                let mut lens = events.batch.lens;
                let mut text = events.batch.text;
                let mut ending = events.ending.map(to_wit_ending);
                if cfg!(feature = "phantom-events") && TRIGGERED.with_borrow(|t| *t) {
                    // One more line than was ever logged.
                    let phantom = b"never logged";
                    lens.push(phantom.len() as u32);
                    runs.push(wit::Run {
                        channel: wit::Channel::Stdout,
                        timestamp_ms: 0,
                        lines: 1,
                    });
                    text.extend_from_slice(phantom);
                    ending = None;
                }
                if cfg!(feature = "bad-runs")
                    && TRIGGERED.with_borrow(|t| *t)
                    && let Some(first) = runs.first_mut()
                {
                    first.lines += 1;
                }
                wit::ReadResult::Events(wit::Events {
                    first_eid: events.first_eid,
                    batch: wit::Batch { lens, runs, text },
                    ending,
                })
            }
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
        if cfg!(feature = "refuse-readers") {
            return wit::Admission::Conflict("this policy admits no reader".into());
        }
        wit::Admission::Accept
    }

    fn detach(_reader: u64) {}

    fn retention_ms() -> u64 {
        RING.with_borrow(|ring| ring.retention_ms())
    }
}

fn misbehave_in_append() {
    if cfg!(feature = "trap-append") {
        core::arch::wasm32::unreachable();
    }
    if cfg!(feature = "loop-append") {
        let mut n = 0u64;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    if cfg!(feature = "alloc-append") {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every page, so the memory is really used.
            hoard.push(vec![0xA5; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

fn to_wit_ending(end: Ending) -> wit::Ending {
    wit::Ending {
        outcome: match end.outcome {
            Outcome::Completed => wit::Outcome::Completed,
            Outcome::Failed { exit_code, message } => {
                wit::Outcome::Failed(wit::Failure { exit_code, message })
            }
            Outcome::HostRestarted => wit::Outcome::HostRestarted,
        },
        execution_ms: end.execution_ms,
        timestamp_ms: end.timestamp_ms,
    }
}

export!(Policy);
