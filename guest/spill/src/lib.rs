//! `spill`: a lossless execd-host log policy.
//!
//! Every event of a command is kept, however long the output: the newest
//! up to `memory-bytes` in memory, older ones in chunk files in the
//! command's private directory (`/log`, preopened by the host). A reader
//! never sees a gap.
//!
//! Settings: `memory-bytes` (default 1 MiB), `retention-secs` (300).

#![cfg(target_arch = "wasm32")]

mod codec;
mod store;

use std::cell::RefCell;

use codec::Body;
use store::Store;

wit_bindgen::generate!({
    path: "../../wit",
    world: "resume-policy",
});

use exports::execd::resume::log as wit;

thread_local! {
    // One instance serves one command: one log.
    static STORE: RefCell<Store> = RefCell::new(Store::new(store::Settings::default()));
}

struct Policy;

impl wit::Guest for Policy {
    fn needs_directory() -> bool {
        true
    }

    fn configure(settings: Vec<(String, String)>) -> Result<(), String> {
        let settings = store::Settings::parse(&settings)?;
        STORE.with_borrow_mut(|s| *s = Store::new(settings));
        Ok(())
    }

    fn set_disk_budget(_bytes: u64) -> u64 {
        // Lossless and unbounded by design: it keeps everything it is given.
        STORE.with_borrow(|s| s.disk_bytes())
    }

    fn reopen() -> Result<wit::Reopened, String> {
        // Its chunk files carry no checksums: it cannot tell a torn or
        // forged file from a good one, so it recovers nothing.
        Err("`spill` cannot reopen its files after a restart".into())
    }

    fn append(batch: wit::Batch) -> Result<wit::Stored, String> {
        STORE.with_borrow_mut(|s| {
            let (mut at, mut lens) = (0, batch.lens.iter());
            // Line i takes the pipe and time of the run it falls in.
            for run in &batch.runs {
                for i in 0..run.lines {
                    let len = lens.next().ok_or("runs cover more lines than `lens`")?;
                    let end = at + *len as usize;
                    let text = batch
                        .text
                        .get(at..end)
                        .and_then(|t| std::str::from_utf8(t).ok())
                        .ok_or("line lengths do not match the text")?
                        .to_string();
                    at = end;
                    let body = match run.channel {
                        wit::Channel::Stdout => Body::Stdout(text),
                        wit::Channel::Stderr => Body::Stderr(text),
                    };
                    // Only a run's last line can be a partial piece.
                    let partial = run.partial && i + 1 == run.lines;
                    s.push(run.timestamp_ms, body, partial)?;
                }
            }
            if lens.next().is_some() || at != batch.text.len() {
                return Err("runs and line lengths do not cover the batch".into());
            }
            Ok(s.stored())
        })
    }

    fn finish(ending: wit::Ending) -> Result<wit::Stored, String> {
        STORE.with_borrow_mut(|s| s.finish(ending))
    }

    fn read(after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        STORE.with_borrow_mut(|s| s.read(after, max_events, max_bytes))
    }

    fn attach(_reader: u64, _live_readers: Vec<u64>) -> wit::Admission {
        wit::Admission::Accept
    }

    fn detach(_reader: u64) {}

    fn retention_ms() -> u64 {
        STORE.with_borrow(|s| s.retention_ms())
    }
}

export!(Policy);
