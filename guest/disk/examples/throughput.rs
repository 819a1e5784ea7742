//! Native throughput of the log: `seq 1 LINES` (or LINES lines of WIDTH
//! bytes) appended in batches like the host's 64 KiB pipe reads, then
//! replayed from the files and the memory tail with the host's read
//! limits. `cargo run --release -p execd-policy-disk --example throughput
//! [LINES [WIDTH]]`.

use std::time::Instant;

use execd_policy_disk::{Batch, Channel, Config, Log, ReadResult};

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut log = Log::new(Config::default(), dir.path());
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let lines = args.next().flatten().unwrap_or(2_000_000);
    let width = args.next().flatten();
    let per_batch = width.map_or(9_000, |w| (64 << 10) / (w + 1).max(1));
    let batches: Vec<Batch> = (1..=lines)
        .collect::<Vec<_>>()
        .chunks(per_batch as usize)
        .map(|chunk| {
            let mut batch = Batch::default();
            for i in chunk {
                match width {
                    Some(w) => batch.push(Channel::Stdout, 1, &vec![b'x'; w as usize], false),
                    None => batch.push(Channel::Stdout, 1, i.to_string().as_bytes(), false),
                }
            }
            batch
        })
        .collect();
    let text: usize = batches.iter().map(|b| b.text.len()).sum();
    let start = Instant::now();
    for batch in batches {
        if let Err(e) = log.append(batch) {
            eprintln!("append: {e}");
            return;
        }
    }
    let append = start.elapsed();
    println!(
        "append: {lines} lines, {text} bytes in {append:?} ({:.0} MB/s), {} bytes on disk",
        text as f64 / append.as_secs_f64() / 1e6,
        log.disk_bytes()
    );
    for _ in 0..3 {
        let start = Instant::now();
        let (mut cursor, mut reads) = (0, 0);
        while let ReadResult::Events(events) = log.read_inline(cursor, 1024, 256 << 10) {
            cursor = events.first_eid + events.batch.len() as u64 - 1;
            reads += 1;
        }
        let replay = start.elapsed();
        println!(
            "replay: {cursor} lines in {reads} reads, {replay:?} ({:.0} MB/s)",
            text as f64 / replay.as_secs_f64() / 1e6
        );
    }
}
