//! The WebAssembly component face of the ring: keeps the one log of this
//! instance; `execd_policy_core::wit_conversions!` converts between the
//! WIT types and [`Ring`]'s.

use std::cell::RefCell;

use crate::{Config, Ring, Stored};

wit_bindgen::generate!({
    path: "../../wit",
    world: "resume-policy",
});

use exports::execd::resume::log as wit;

execd_policy_core::wit_conversions!(wit);

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
        RING.with_borrow_mut(|ring| ring.append(batch.into()))
            .map(|eid| Stored::in_memory(eid).into())
    }

    fn finish(ending: wit::Ending) -> Result<wit::Stored, String> {
        RING.with_borrow_mut(|ring| ring.finish(ending.into()))
            .map(|eid| Stored::in_memory(eid).into())
    }

    fn read(after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        RING.with_borrow(|ring| ring.read(after, max_events, max_bytes))
            .into()
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

export!(Policy);
