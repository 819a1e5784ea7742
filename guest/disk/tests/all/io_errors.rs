//! Write failures never fail a call: the log keeps serving from memory,
//! retries, and reports what left memory unwritten as an `io` gap.

use std::os::unix::fs::symlink;
use std::path::Path;

use execd_policy_disk::{IO, Log, ReadResult};

use crate::support::*;

/// Makes segment files `seqs` land on `/dev/full`: their writes fail with
/// "no space left on device", as on a full disk.
fn full_disk_for(dir: &Path, seqs: impl IntoIterator<Item = u64>) {
    for seq in seqs {
        symlink("/dev/full", dir.join(format!("{seq:010}.seg"))).unwrap();
    }
}

#[test]
fn a_directory_that_cannot_hold_files_loses_only_what_leaves_memory() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the directory should be: every create fails.
    let not_a_dir = dir.path().join("log");
    std::fs::write(&not_a_dir, b"").unwrap();
    let mut log = Log::new(small(4096, 1 << 20), &not_a_dir);
    let mut model = Model::default();
    let mut at = 0;
    while at < 2_000 {
        let stored = log.append(model.batch(&numbered(at, at + 10))).unwrap();
        assert_eq!(stored.disk_bytes, 0);
        at += 10;
    }
    assert_eq!(log.finish(ending()).unwrap().last_eid, 2_001);
    let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
    let missed = check_seen(&model, 0, &seen);
    assert_eq!(seen.gaps.len(), 1);
    assert_eq!((seen.gaps[0].from_eid, seen.gaps[0].reason), (1, IO));
    assert_eq!(
        seen.gaps[0].dropped_bytes,
        Some(model.bytes(1, seen.gaps[0].to_eid))
    );
    assert!(missed.len() < 2_000, "the tail is still served");
    assert_eq!(seen.ending, Some((2_001, ending())));
}

#[test]
fn a_disk_full_for_a_while_loses_nothing_the_tail_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    full_disk_for(dir.path(), [2]);
    let mut log = Log::new(small(64 << 10, 4 << 10), dir.path());
    let mut model = Model::default();
    for at in (0..20_000).step_by(10) {
        log.append(model.batch(&numbered(at, at + 10))).unwrap();
    }
    let stored = log.finish(ending()).unwrap();
    // The retry wrote what waited in memory to the next segment.
    let files = segment_files(dir.path());
    assert!(files.contains(&"0000000001.seg".into()) && files.contains(&"0000000003.seg".into()));
    assert!(!files.contains(&"0000000002.seg".into()));
    assert_eq!(stored.disk_bytes, bytes_in(dir.path()));
    let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
    assert!(check_seen(&model, 0, &seen).is_empty(), "{:?}", seen.gaps);
}

#[test]
fn a_long_disk_full_is_an_exact_io_gap_and_writing_resumes() {
    let dir = tempfile::tempdir().unwrap();
    full_disk_for(dir.path(), 2..40);
    let mut log = Log::new(small(4096, 4 << 10), dir.path());
    let mut model = Model::default();
    for at in (0..30_000).step_by(10) {
        log.append(model.batch(&numbered(at, at + 10))).unwrap();
    }
    log.finish(ending()).unwrap();
    assert!(
        segment_files(dir.path())
            .iter()
            .any(|f| f.as_str() > "0000000040.seg")
    );
    for max_events in [1024, 3] {
        let seen = read_to_end(&mut log, 0, max_events, 1 << 20);
        let missed = check_seen(&model, 0, &seen);
        assert!(!seen.gaps.is_empty());
        assert!(
            seen.gaps
                .iter()
                .all(|g| g.reason == IO && g.dropped_bytes.is_some())
        );
        // Lost: a stretch after the first segment; the last lines are kept.
        assert!(missed[0] > 1 && *missed.last().unwrap() < 29_000);
        assert_eq!(seen.ending, Some((30_001, ending())));
    }
    assert_eq!(log.disk_bytes(), bytes_in(dir.path()));
    assert!(matches!(
        log.read_inline(30_001, 1, 1),
        ReadResult::Finished
    ));
}
