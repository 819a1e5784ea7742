//! Policies compiled into the host, unsandboxed: `--policy native-ring`
//! (the `ring` crate) and `--policy native-disk` (the `disk` crate). They
//! exist to measure what the sandbox costs: the same logic, behind the
//! same interface, without wasm.

use std::path::Path;

use execd_policy_core::Stored;
use execd_policy_disk as disk;
use execd_policy_ring as ring;

use super::wit;

// Both crates take and answer execd-policy-core's types, so one set of
// conversions serves both.
execd_policy_core::wit_conversions!(wit);

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
        // The wasm boundary copies the batch too: a fair comparison.
        self.0
            .append(batch.into())
            .map(|eid| Stored::in_memory(eid).into())
    }

    pub fn finish(&mut self, ending: wit::Ending) -> Result<wit::Stored, String> {
        self.0
            .finish(ending.into())
            .map(|eid| Stored::in_memory(eid).into())
    }

    pub fn read(&self, after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        self.0.read(after, max_events, max_bytes).into()
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
        self.0.reopen().map(Into::into)
    }

    pub fn append(&mut self, batch: &wit::Batch) -> Result<wit::Stored, String> {
        self.0.append(batch.into()).map(Into::into)
    }

    pub fn finish(&mut self, ending: wit::Ending) -> Result<wit::Stored, String> {
        self.0.finish(ending.into()).map(Into::into)
    }

    pub fn read(&mut self, after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        self.0.read(after, max_events, max_bytes).into()
    }

    pub fn retention_ms(&self) -> u64 {
        self.0.retention_ms()
    }
}
