//! Policies compiled into the host, unsandboxed: `--policy native-ring`
//! (the `ring` crate) and `--policy native-disk` (the `disk` crate). They
//! exist to measure what the sandbox costs: the same logic, behind the
//! same interface, without wasm.

use std::path::Path;

use execd_policy_disk as disk;
use execd_policy_ring as ring;

use super::wit;

/// Conversions between the WIT types and a policy crate's own, which
/// mirror them field for field (both crates keep the contract's shapes so
/// that they build without wasm). One macro, so the two stay alike.
macro_rules! conversions {
    ($module:ident, $policy:ident) => {
        mod $module {
            use super::wit;
            use super::$policy as p;

            /// The wasm boundary copies the batch too: a fair comparison.
            pub fn batch_in(batch: &wit::Batch) -> p::Batch {
                p::Batch {
                    lens: batch.lens.clone(),
                    runs: batch.runs.iter().map(run_in).collect(),
                    text: batch.text.clone(),
                }
            }

            fn run_in(r: &wit::Run) -> p::Run {
                p::Run {
                    channel: match r.channel {
                        wit::Channel::Stdout => p::Channel::Stdout,
                        wit::Channel::Stderr => p::Channel::Stderr,
                    },
                    timestamp_ms: r.timestamp_ms,
                    lines: r.lines,
                }
            }

            fn run_out(r: &p::Run) -> wit::Run {
                wit::Run {
                    channel: match r.channel {
                        p::Channel::Stdout => wit::Channel::Stdout,
                        p::Channel::Stderr => wit::Channel::Stderr,
                    },
                    timestamp_ms: r.timestamp_ms,
                    lines: r.lines,
                }
            }

            pub fn ending_in(ending: wit::Ending) -> p::Ending {
                p::Ending {
                    outcome: match ending.outcome {
                        wit::Outcome::Completed => p::Outcome::Completed,
                        wit::Outcome::Failed(f) => p::Outcome::Failed {
                            exit_code: f.exit_code,
                            message: f.message,
                        },
                        wit::Outcome::HostRestarted => p::Outcome::HostRestarted,
                    },
                    execution_ms: ending.execution_ms,
                    timestamp_ms: ending.timestamp_ms,
                }
            }

            #[allow(dead_code)] // `ring` reopens nothing
            pub fn ending_out(end: p::Ending) -> wit::Ending {
                wit::Ending {
                    outcome: match end.outcome {
                        p::Outcome::Completed => wit::Outcome::Completed,
                        p::Outcome::Failed { exit_code, message } => {
                            wit::Outcome::Failed(wit::Failure { exit_code, message })
                        }
                        p::Outcome::HostRestarted => wit::Outcome::HostRestarted,
                    },
                    execution_ms: end.execution_ms,
                    timestamp_ms: end.timestamp_ms,
                }
            }

            pub fn read_out(result: p::ReadResult) -> wit::ReadResult {
                match result {
                    p::ReadResult::Events(events) => wit::ReadResult::Events(wit::Events {
                        first_eid: events.first_eid,
                        batch: wit::Batch {
                            lens: events.batch.lens,
                            runs: events.batch.runs.iter().map(run_out).collect(),
                            text: events.batch.text,
                        },
                        ending: events.ending.map(ending_out),
                    }),
                    p::ReadResult::Gap(g) => wit::ReadResult::Gap(wit::Gap {
                        from_eid: g.from_eid,
                        to_eid: g.to_eid,
                        dropped_bytes: g.dropped_bytes,
                        reason: g.reason.to_string(),
                    }),
                    p::ReadResult::Pending => wit::ReadResult::Pending,
                    p::ReadResult::Finished => wit::ReadResult::Finished,
                }
            }
        }
    };
}

conversions!(ring_wit, ring);
conversions!(disk_wit, disk);

fn pairs(settings: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    settings.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// `native-ring`.
pub struct NativeRing(ring::Ring);

impl NativeRing {
    pub fn new(settings: &[(String, String)]) -> Result<NativeRing, String> {
        let config = ring::Config::parse(pairs(settings)).map_err(|e| e.0)?;
        Ok(NativeRing(ring::Ring::new(config)))
    }

    pub fn append(&mut self, batch: &wit::Batch) -> Result<wit::Stored, String> {
        self.0.append(ring_wit::batch_in(batch)).map(in_memory)
    }

    pub fn finish(&mut self, ending: wit::Ending) -> Result<wit::Stored, String> {
        self.0.finish(ring_wit::ending_in(ending)).map(in_memory)
    }

    pub fn read(&self, after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        ring_wit::read_out(self.0.read(after, max_events, max_bytes))
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

/// What `native-ring` answers `reopen`: it kept nothing.
pub const RING_KEEPS_NOTHING: &str =
    "`native-ring` keeps its log in memory only: nothing survives a restart";

fn in_memory(last_eid: u64) -> wit::Stored {
    wit::Stored {
        last_eid,
        disk_bytes: 0,
    }
}

/// `native-disk`: its files go straight into the command's directory.
pub struct NativeDisk(disk::Log);

impl NativeDisk {
    /// Checks `settings` without making a log.
    pub fn check(settings: &[(String, String)]) -> Result<(), String> {
        disk::Config::parse(pairs(settings))
            .map(drop)
            .map_err(|e| e.0)
    }

    pub fn new(settings: &[(String, String)], dir: &Path) -> Result<NativeDisk, String> {
        let config = disk::Config::parse(pairs(settings)).map_err(|e| e.0)?;
        Ok(NativeDisk(disk::Log::new(config, dir)))
    }

    pub fn set_disk_budget(&mut self, bytes: u64) -> u64 {
        self.0.set_disk_budget(bytes)
    }

    pub fn reopen(&mut self) -> Result<wit::Reopened, String> {
        let reopened = self.0.reopen()?;
        Ok(wit::Reopened {
            last_eid: reopened.last_eid,
            disk_bytes: reopened.disk_bytes,
            ending: reopened.ending.map(disk_wit::ending_out),
            damage: reopened.damage,
        })
    }

    pub fn append(&mut self, batch: &wit::Batch) -> Result<wit::Stored, String> {
        self.0.append(disk_wit::batch_in(batch)).map(stored)
    }

    pub fn finish(&mut self, ending: wit::Ending) -> Result<wit::Stored, String> {
        self.0.finish(disk_wit::ending_in(ending)).map(stored)
    }

    pub fn read(&mut self, after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        disk_wit::read_out(self.0.read(after, max_events, max_bytes))
    }

    pub fn retention_ms(&self) -> u64 {
        self.0.retention_ms()
    }
}

fn stored(s: disk::Stored) -> wit::Stored {
    wit::Stored {
        last_eid: s.last_eid,
        disk_bytes: s.disk_bytes,
    }
}
