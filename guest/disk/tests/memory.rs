//! Memory does not grow with the output: a quiet command appending one
//! line per batch for a long time keeps the log's heap flat. Its own test
//! binary, so that the counting allocator sees this test alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

use execd_policy_disk::{Batch, Channel, Config, Log, ReadResult};

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn append_lines(log: &mut Log, from: u64, to: u64) {
    for i in from..to {
        let mut batch = Batch::default();
        batch.push(Channel::Stdout, i, format!("tick {i}").as_bytes(), false);
        log.append(batch).unwrap();
    }
}

#[test]
fn one_line_batches_for_hours_keep_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        memory_bytes: 64 << 10,
        ..Config::default()
    };
    let mut log = Log::new(config, dir.path());
    // Fill the tail, and read once from the files so the read blocks exist.
    append_lines(&mut log, 0, 50_000);
    assert!(matches!(log.read(0, 10, 1 << 10), ReadResult::Events(_)));
    let before = LIVE.load(Ordering::Relaxed);
    append_lines(&mut log, 50_000, 350_000);
    assert!(matches!(log.read(10, 10, 1 << 10), ReadResult::Events(_)));
    let growth = LIVE.load(Ordering::Relaxed) - before;
    // 300,000 more batches: an entry of even 8 bytes each would be 2.4 MB.
    // What may grow is a checkpoint (24 bytes) per 64 KiB of records.
    assert!(growth < 64 << 10, "heap grew by {growth} bytes");
    assert!(log.tail_bytes() <= (64 << 10) + 1024);
}
