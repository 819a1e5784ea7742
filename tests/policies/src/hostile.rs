//! The ring, with one misbehaviour switched on by a feature.

use std::cell::RefCell;

use execd_policy_ring::{Config, ReadResult, Ring, Stored};

wit_bindgen::generate!({
    path: "../../wit",
    world: "resume-policy",
});

use exports::execd::resume::log as wit;

execd_policy_core::wit_conversions!(wit);

thread_local! {
    static RING: RefCell<Ring> = RefCell::new(Ring::new(Config::default()));
    static TRIGGERED: RefCell<bool> = const { RefCell::new(false) };
}

const TRIGGER: &str = "trigger";

struct Policy;

impl wit::Guest for Policy {
    fn needs_directory() -> bool {
        cfg!(any(feature = "text-too-long", feature = "text-missing"))
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
        let last = RING.with_borrow_mut(|ring| ring.append(batch.into()))?;
        if triggered && cfg!(feature = "backwards-eids") {
            return Ok(Stored::in_memory(last.saturating_sub(10)).into());
        }
        Ok(Stored::in_memory(last).into())
    }

    fn finish(ending: wit::Ending) -> Result<wit::Stored, String> {
        RING.with_borrow_mut(|ring| ring.finish(ending.into()))
            .map(|eid| Stored::in_memory(eid).into())
    }

    fn read(after: u64, max_events: u32, max_bytes: u32) -> wit::ReadResult {
        let result = RING.with_borrow(|ring| ring.read(after, max_events, max_bytes));
        let ReadResult::Events(events) = result else {
            return result.into();
        };
        if cfg!(feature = "panic-read")
            && String::from_utf8_lossy(&events.batch.text).contains(TRIGGER)
        {
            panic!("hostile policy: panic in read");
        }
        let mut events = wit::Events::from(events);
        if cfg!(feature = "phantom-events") && TRIGGERED.with_borrow(|t| *t) {
            // One more line than was ever logged.
            let phantom = b"never logged";
            events.batch.lens.push(phantom.len() as u32);
            events.batch.runs.push(wit::Run {
                channel: wit::Channel::Stdout,
                timestamp_ms: 0,
                lines: 1,
                partial: false,
            });
            events.batch.text.extend_from_slice(phantom);
            events.ending = None;
        }
        if cfg!(feature = "bad-runs")
            && TRIGGERED.with_borrow(|t| *t)
            && let Some(first) = events.batch.runs.first_mut()
        {
            first.lines += 1;
        }
        if cfg!(feature = "text-too-long") && TRIGGERED.with_borrow(|t| *t) {
            // 4 GiB "in" its first file, whatever the lines' lengths say.
            leave_text_in(&mut events, 1);
            if let Some(span) = events.text_in_files.first_mut() {
                span.len = u32::MAX;
            }
        }
        // Only once the log has its ending: a read of lines then never
        // includes the newest event.
        if cfg!(feature = "text-missing") && events.ending.is_some() {
            leave_text_in(&mut events, 4_000_000_000);
        }
        wit::ReadResult::Events(events)
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

/// Says the batch's text is in file number `file` of the directory,
/// instead of giving it.
fn leave_text_in(events: &mut wit::Events, file: u64) {
    let text = std::mem::take(&mut events.batch.text);
    if !text.is_empty() {
        events.text_in_files.push(wit::TextSpan {
            file,
            offset: 0,
            len: text.len() as u32,
        });
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

export!(Policy);
