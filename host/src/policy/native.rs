//! The `ring` policy compiled into the host, unsandboxed (`--policy
//! native-ring`). It exists to measure what the sandbox costs: the same
//! logic, behind the same interface, without wasm.

use execd_policy_ring as ring;

use super::wit;

pub struct NativeRing(ring::Ring);

impl NativeRing {
    pub fn new(settings: &[(String, String)]) -> Result<NativeRing, String> {
        let config = ring::Config::parse(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| e.0)?;
        Ok(NativeRing(ring::Ring::new(config)))
    }

    pub fn append(&mut self, batch: &wit::Batch) -> Result<wit::Stored, String> {
        // The wasm boundary copies the batch too: a fair comparison.
        self.0
            .append(ring::Batch {
                lens: batch.lens.clone(),
                runs: batch.runs.iter().map(to_ring_run).collect(),
                text: batch.text.clone(),
            })
            .map(in_memory)
    }

    pub fn finish(&mut self, ending: wit::Ending) -> Result<wit::Stored, String> {
        let ending = ring::Ending {
            outcome: match ending.outcome {
                wit::Outcome::Completed => ring::Outcome::Completed,
                wit::Outcome::Failed(f) => ring::Outcome::Failed {
                    exit_code: f.exit_code,
                    message: f.message,
                },
            },
            execution_ms: ending.execution_ms,
            timestamp_ms: ending.timestamp_ms,
        };
        self.0.finish(ending).map(in_memory)
    }

    pub fn read(&self, after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        match self.0.read(after, max_events, max_bytes) {
            ring::ReadResult::Events(events) => wit::ReadResult::Events(wit::Events {
                first_eid: events.first_eid,
                batch: wit::Batch {
                    lens: events.batch.lens,
                    runs: events.batch.runs.iter().map(to_wit_run).collect(),
                    text: events.batch.text,
                },
                ending: events.ending.map(to_wit_ending),
            }),
            ring::ReadResult::Gap(g) => wit::ReadResult::Gap(wit::Gap {
                from_eid: g.from_eid,
                to_eid: g.to_eid,
                dropped_bytes: g.dropped_bytes,
                reason: g.reason.to_string(),
            }),
            ring::ReadResult::Pending => wit::ReadResult::Pending,
            ring::ReadResult::Finished => wit::ReadResult::Finished,
        }
    }

    pub fn attach(&self, live_readers: &[u64]) -> wit::Admission {
        match self.0.admits(live_readers.len()) {
            Ok(()) => wit::Admission::Accept,
            Err(why) => wit::Admission::Conflict(why),
        }
    }

    pub fn retention_ms(&self) -> u64 {
        self.0.retention_ms()
    }
}

fn in_memory(last_eid: u64) -> wit::Stored {
    wit::Stored {
        last_eid,
        disk_bytes: 0,
    }
}

fn to_ring_run(r: &wit::Run) -> ring::Run {
    ring::Run {
        channel: match r.channel {
            wit::Channel::Stdout => ring::Channel::Stdout,
            wit::Channel::Stderr => ring::Channel::Stderr,
        },
        timestamp_ms: r.timestamp_ms,
        lines: r.lines,
    }
}

fn to_wit_run(r: &ring::Run) -> wit::Run {
    wit::Run {
        channel: match r.channel {
            ring::Channel::Stdout => wit::Channel::Stdout,
            ring::Channel::Stderr => wit::Channel::Stderr,
        },
        timestamp_ms: r.timestamp_ms,
        lines: r.lines,
    }
}

fn to_wit_ending(end: ring::Ending) -> wit::Ending {
    wit::Ending {
        outcome: match end.outcome {
            ring::Outcome::Completed => wit::Outcome::Completed,
            ring::Outcome::Failed { exit_code, message } => {
                wit::Outcome::Failed(wit::Failure { exit_code, message })
            }
        },
        execution_ms: end.execution_ms,
        timestamp_ms: end.timestamp_ms,
    }
}
