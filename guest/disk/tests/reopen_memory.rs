//! A reopen reads no segment, and no record, into memory whole: its heap
//! peaks at a bounded buffer whatever the log holds, and what stays is
//! the index. Its own test binary, so that the counting allocator sees
//! this test alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

use execd_policy_disk::{Batch, Channel, Config, Log, ReadResult};

/// Counts the bytes allocated and not yet freed, and their peak.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

fn grow(by: i64) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size() as i64);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grow(new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_reopen_of_a_large_log_keeps_its_heap_small() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        memory_bytes: 64 << 10,
        segment_bytes: 16 << 20,
        ..Config::default()
    };
    let mut log = Log::new(config.clone(), dir.path());
    // 48 MiB: many small batches, and batches of one 6 MiB line (a
    // record bigger than any buffer of the scan).
    for i in 0..6u64 {
        for j in 0..2_000u64 {
            let mut batch = Batch::default();
            for k in 0..16 {
                let text = format!("{i} {j} {k} {}", "x".repeat(240));
                batch.push(Channel::Stdout, j, text.as_bytes(), false);
            }
            log.append(batch).unwrap();
        }
        let mut batch = Batch::default();
        batch.push(Channel::Stderr, i, &vec![b'y'; 6 << 20], false);
        log.append(batch).unwrap();
    }
    let eid = log.stored().last_eid;
    drop(log);

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut log = Log::new(config, dir.path());
    let reopened = log.reopen().unwrap();
    assert_eq!((reopened.last_eid, reopened.ending), (eid, None));
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let kept = LIVE.load(Ordering::Relaxed) - before;
    // A 512 KiB read buffer and a 64 KiB piece at a time; what is kept
    // is a checkpoint per 64 KiB of records and an entry per segment.
    assert!(
        peak < 1 << 20,
        "the reopen's heap peaked {peak} bytes higher"
    );
    assert!(kept < 64 << 10, "the reopened log holds {kept} bytes");
    assert_eq!(log.tail_bytes(), 0);
    // The line's 6 MiB stay in the file, for the host to read.
    let ReadResult::Events(events) = log.read(eid - 1, 1, 1 << 20) else {
        panic!("the last line");
    };
    assert!(events.batch.text.is_empty());
    let in_files: u64 = events.text_in_files.iter().map(|s| u64::from(s.len)).sum();
    assert_eq!(in_files, 6 << 20);
    let ReadResult::Events(events) = log.read_inline(eid - 1, 1, 1 << 20) else {
        panic!("the last line");
    };
    assert_eq!(events.batch.text, vec![b'y'; 6 << 20]);
}
