//! The ring, with one misbehaviour switched on by a feature.

use std::cell::RefCell;

use execd_policy_ring::{Batch, Channel, Config, Ending, Line, Outcome, ReadResult, Ring};

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

    fn append(batch: wit::Batch) -> Result<u64, String> {
        let triggered = String::from_utf8_lossy(&batch.text).contains(TRIGGER);
        if triggered {
            TRIGGERED.with_borrow_mut(|t| *t = true);
            misbehave_in_append();
        }
        let batch = Batch {
            lines: batch
                .lines
                .into_iter()
                .map(|l| Line {
                    channel: match l.channel {
                        wit::Channel::Stdout => Channel::Stdout,
                        wit::Channel::Stderr => Channel::Stderr,
                    },
                    len: l.len,
                    timestamp_ms: l.timestamp_ms,
                })
                .collect(),
            text: batch.text,
        };
        let last = RING.with_borrow_mut(|ring| ring.append(batch))?;
        if triggered && cfg!(feature = "backwards-eids") {
            return Ok(last.saturating_sub(10));
        }
        Ok(last)
    }

    fn finish(ending: wit::Ending) -> Result<u64, String> {
        let ending = Ending {
            outcome: match ending.outcome {
                wit::Outcome::Completed => Outcome::Completed,
                wit::Outcome::Failed(f) => Outcome::Failed {
                    exit_code: f.exit_code,
                    message: f.message,
                },
            },
            execution_ms: ending.execution_ms,
            timestamp_ms: ending.timestamp_ms,
        };
        RING.with_borrow_mut(|ring| ring.finish(ending))
    }

    fn read(after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        match RING.with_borrow(|ring| ring.read(after, max_events, max_bytes)) {
            ReadResult::Events(events) => {
                if cfg!(feature = "panic-read")
                    && String::from_utf8_lossy(&events.batch.text).contains(TRIGGER)
                {
                    panic!("hostile policy: panic in read");
                }
                let mut lines: Vec<wit::Line> = events
                    .batch
                    .lines
                    .iter()
                    .map(|l| wit::Line {
                        channel: match l.channel {
                            Channel::Stdout => wit::Channel::Stdout,
                            Channel::Stderr => wit::Channel::Stderr,
                        },
                        len: l.len,
                        timestamp_ms: l.timestamp_ms,
                    })
                    .collect();
                let mut text = events.batch.text;
                let mut ending = events.ending.map(to_wit_ending);
                if cfg!(feature = "phantom-events") && TRIGGERED.with_borrow(|t| *t) {
                    // One more line than was ever logged.
                    let phantom = b"never logged";
                    lines.push(wit::Line {
                        channel: wit::Channel::Stdout,
                        len: phantom.len() as u32,
                        timestamp_ms: 0,
                    });
                    text.extend_from_slice(phantom);
                    ending = None;
                }
                wit::ReadResult::Events(wit::Events {
                    first_eid: events.first_eid,
                    batch: wit::Batch { lines, text },
                    ending,
                })
            }
            ReadResult::Gap(g) => wit::ReadResult::Gap(wit::Gap {
                from_eid: g.from_eid,
                to_eid: g.to_eid,
                dropped_bytes: g.dropped_bytes,
            }),
            ReadResult::Pending => wit::ReadResult::Pending,
            ReadResult::Finished => wit::ReadResult::Finished,
        }
    }

    fn attach(_reader: u64, _live_readers: Vec<u64>) -> wit::Admission {
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
        },
        execution_ms: end.execution_ms,
        timestamp_ms: end.timestamp_ms,
    }
}

export!(Policy);
