//! The WebAssembly component face of the log: keeps the one log of this
//! instance in `/log`; `execd_policy_core::wit_conversions!` converts
//! between the WIT types and [`Log`]'s.

use std::cell::RefCell;

use crate::{Config, Log};

wit_bindgen::generate!({
    path: "../../wit",
    world: "resume-policy",
});

use exports::execd::resume::log as wit;

execd_policy_core::wit_conversions!(wit);

/// The per-command directory the host preopens.
const DIR: &str = "/log";

thread_local! {
    // One instance serves one command, so one global log is the whole state.
    static LOG: RefCell<Log> = RefCell::new(Log::new(Config::default(), DIR));
}

struct Policy;

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
        LOG.with_borrow_mut(|log| log.reopen()).map(Into::into)
    }

    fn set_disk_budget(bytes: u64) -> u64 {
        LOG.with_borrow_mut(|log| log.set_disk_budget(bytes))
    }

    fn append(batch: wit::Batch) -> Result<wit::Stored, String> {
        LOG.with_borrow_mut(|log| log.append(batch.into()))
            .map(Into::into)
    }

    fn finish(ending: wit::Ending) -> Result<wit::Stored, String> {
        LOG.with_borrow_mut(|log| log.finish(ending.into()))
            .map(Into::into)
    }

    fn read(after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        LOG.with_borrow_mut(|log| log.read(after, max_events, max_bytes))
            .into()
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

export!(Policy);
