//! Reopening the directory a previous log left (a host restart): the
//! reopened log answers reads as the old one did, from any cursor, with
//! the same eids and gaps, and takes the ending a restarted host gives it.

use std::path::Path;

use execd_policy_disk::{BUDGET, Config, IO, Log, ReadResult, Reopened, format};

use crate::support::*;

/// A new log on `dir`, reopened.
fn reopen(config: Config, dir: &Path) -> (Log, Reopened) {
    let mut log = Log::new(config, dir);
    let reopened = log.reopen().expect("the directory reopens");
    (log, reopened)
}

/// Checks that `new` answers reads from each of `cursors` as `old` does:
/// the same events and gaps to the end, and the same first answer for a
/// few read limits; returns how many cursors were compared. (Where one
/// read stops may differ: the old log serves its newest events from
/// memory, across segment ends.)
fn same_reads(old: &mut Log, new: &mut Log, cursors: impl IntoIterator<Item = u64>) -> usize {
    let mut compared = 0;
    for cursor in cursors {
        let want = read_to_end(old, cursor, 1024, 1 << 20);
        let got = read_to_end(new, cursor, 1024, 1 << 20);
        assert_eq!(got, want, "from cursor {cursor}");
        for (max_events, max_bytes) in [(1, 0), (7, 300)] {
            let want = old.read_inline(cursor, max_events, max_bytes);
            assert_eq!(
                new.read_inline(cursor, max_events, max_bytes),
                want,
                "{cursor}"
            );
        }
        if cursor % 64 == 0 {
            let want = read_to_end(old, cursor, 7, 300);
            assert_eq!(
                read_to_end(new, cursor, 7, 300),
                want,
                "{cursor}, small reads"
            );
        }
        compared += 1;
    }
    compared
}

#[test]
fn a_finished_log_reopens_to_the_same_reads_from_every_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 8 << 10);
    let mut old = Log::new(config.clone(), dir.path());
    let mut model = Model::default();
    fill(&mut old, &mut model, 0, 3_000, 13);
    let stored = old.finish(ending()).unwrap();
    assert!(segment_files(dir.path()).len() > 5, "several segments");
    let (mut new, reopened) = reopen(config, dir.path());
    assert_eq!(
        reopened,
        Reopened {
            last_eid: 3_001,
            disk_bytes: stored.disk_bytes,
            ending: Some(ending()),
            damage: vec![],
        }
    );
    assert_eq!(new.disk_bytes(), bytes_in(dir.path()));
    assert_eq!(new.tail_bytes(), 0, "nothing is read into memory");
    assert_eq!(same_reads(&mut old, &mut new, 0..=3_002), 3_003);
    let seen = read_to_end(&mut new, 0, 1024, 1 << 20);
    assert!(check_seen(&model, 0, &seen).is_empty());
    assert_eq!(seen.ending, Some((3_001, ending())));
    // No second ending, no more lines.
    assert!(new.finish(host_restarted()).is_err());
    assert!(new.append(model.batch(&numbered(0, 1))).is_err());
}

#[test]
fn an_unfinished_log_reopens_takes_its_ending_and_keeps_it_over_a_second_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 8 << 10);
    let mut old = Log::new(config.clone(), dir.path());
    let mut model = Model::default();
    fill(&mut old, &mut model, 0, 2_500, 11);
    let (mut new, reopened) = reopen(config.clone(), dir.path());
    assert_eq!((reopened.last_eid, reopened.ending), (2_500, None));
    assert!(reopened.damage.is_empty(), "{:?}", reopened.damage);
    assert_eq!(reopened.disk_bytes, old.disk_bytes());
    // Pending at the end, as the old log was.
    assert_eq!(new.read_inline(2_500, 10, 100), ReadResult::Pending);
    same_reads(&mut old, &mut new, (0..=2_501).step_by(3));
    // The restarted host ends it; the ending is written and served.
    let files = segment_files(dir.path());
    let stored = new.finish(host_restarted()).unwrap();
    assert_eq!(stored.last_eid, 2_501);
    assert_eq!(stored.disk_bytes, bytes_in(dir.path()));
    assert_eq!(segment_files(dir.path()), files, "after the last record");
    let seen = read_to_end(&mut new, 2_400, 1024, 1 << 20);
    assert!(check_seen(&model, 2_400, &seen).is_empty());
    assert_eq!(seen.ending, Some((2_501, host_restarted())));
    // A second restart finds it.
    let (mut again, reopened) = reopen(config, dir.path());
    assert_eq!(
        reopened,
        Reopened {
            last_eid: 2_501,
            disk_bytes: stored.disk_bytes,
            ending: Some(host_restarted()),
            damage: vec![],
        }
    );
    assert_eq!(same_reads(&mut new, &mut again, 0..=2_502), 2_503);
}

/// Rewrites a segment file as format version 1 wrote it: its version
/// field, and its header's and every record's checksum as CRC-32.
fn as_version_1(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mut records = Vec::new();
    let scan = format::scan_records(&bytes[..], bytes.len() as u64, |found| {
        records.push((found.offset as usize, found.header.record_len() as usize));
    })
    .unwrap();
    assert_eq!(scan.checksum, format::Checksum::WRITTEN);
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes[16..32]);
    bytes[12..16].copy_from_slice(&header_crc.to_le_bytes());
    for (at, len) in records {
        let crc = crc32fast::hash(&bytes[at + 4..at + len]);
        bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_log_of_version_1_files_reopens_and_its_ending_goes_to_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 8 << 10);
    let mut old = Log::new(config.clone(), dir.path());
    let mut model = Model::default();
    fill(&mut old, &mut model, 0, 2_000, 13);
    drop(old);
    let files = segment_files(dir.path());
    for name in &files {
        as_version_1(&dir.path().join(name));
    }
    // And a torn last write after its last whole record.
    let last = dir.path().join(files.last().unwrap());
    let last_len = std::fs::metadata(&last).unwrap().len();
    let mut torn = std::fs::read(&last).unwrap();
    torn.extend_from_slice(&[7; 10]);
    std::fs::write(&last, torn).unwrap();
    let (mut new, reopened) = reopen(config.clone(), dir.path());
    assert_eq!((reopened.last_eid, reopened.ending), (2_000, None));
    let truncated = reopened.damage.iter().any(|d| d.contains("truncated"));
    assert!(truncated, "{:?}", reopened.damage);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), last_len, "cut");
    let seen = read_to_end(&mut new, 0, 1024, 1 << 20);
    assert!(
        check_seen(&model, 0, &seen).is_empty(),
        "every line, no gap"
    );
    // A version-2 record never joins a version-1 file: the ending starts
    // a new one, and both versions reopen together.
    new.finish(host_restarted()).unwrap();
    assert_eq!(segment_files(dir.path()).len(), files.len() + 1);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), last_len);
    let (mut again, reopened) = reopen(config, dir.path());
    assert_eq!(reopened.last_eid, 2_001);
    assert_eq!(reopened.ending, Some(host_restarted()));
    assert!(reopened.damage.is_empty(), "{:?}", reopened.damage);
    assert_eq!(
        same_reads(&mut new, &mut again, (0..=2_001).step_by(7)),
        286
    );
}

#[test]
fn a_version_1_file_trimmed_by_a_smaller_budget_stays_version_1_and_reopens_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 64 << 20);
    let mut old = Log::new(config.clone(), dir.path());
    let mut model = Model::default();
    fill(&mut old, &mut model, 0, 20_000, 50);
    old.finish(ending()).unwrap();
    drop(old);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    let path = dir.path().join(&files[0]);
    as_version_1(&path);
    let (mut new, reopened) = reopen(config.clone(), dir.path());
    let budget = reopened.disk_bytes / 2;
    assert!(new.set_disk_budget(budget) <= budget);
    // Copied as they are, the records keep their CRC-32s: the header
    // says version 1 still.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[8..12], 1u32.to_le_bytes());
    let seen = read_to_end(&mut new, 0, 1024, 1 << 20);
    let gap = one_budget_gap_over_the_oldest(&model, &seen);
    assert!(gap.to_eid > 5_000 && gap.to_eid < 15_000, "{gap:?}");
    assert_eq!(seen.ending, Some((20_001, ending())));
    let (mut again, reopened) = reopen(config, dir.path());
    assert!(reopened.damage.is_empty(), "{:?}", reopened.damage);
    assert_eq!(reopened.ending, Some(ending()));
    same_reads(&mut new, &mut again, (0..=20_001).step_by(997));
}

#[test]
fn an_ending_that_does_not_fit_the_last_segment_goes_to_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 4 << 10);
    let mut old = Log::new(config.clone(), dir.path());
    let mut model = Model::default();
    // Records of about 1.1 KiB: the last segment is nearly full.
    fill(&mut old, &mut model, 0, 400, 40);
    drop(old);
    let files = segment_files(dir.path());
    let (mut new, _) = reopen(config.clone(), dir.path());
    new.set_disk_budget(u64::MAX);
    // A long message: the record does not fit the open segment.
    let mut long = host_restarted();
    long.outcome = execd_policy_disk::Outcome::Failed {
        exit_code: -1,
        message: "m".repeat(5_000),
    };
    new.finish(long.clone()).unwrap();
    assert_eq!(segment_files(dir.path()).len(), files.len() + 1);
    let (mut again, reopened) = reopen(config, dir.path());
    assert_eq!((reopened.last_eid, &reopened.ending), (401, &Some(long)));
    assert!(reopened.damage.is_empty(), "{:?}", reopened.damage);
    same_reads(&mut new, &mut again, (0..=402).step_by(5));
}

#[test]
fn budget_gaps_survive_a_reopen_with_their_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 1 << 20);
    let mut old = Log::new(config.clone(), dir.path());
    old.set_disk_budget(64 << 10);
    let mut model = Model::default();
    fill(&mut old, &mut model, 0, 20_000, 50);
    old.finish(ending()).unwrap();
    let (mut new, reopened) = reopen(config, dir.path());
    assert!(reopened.damage.is_empty(), "{:?}", reopened.damage);
    assert_eq!(reopened.last_eid, 20_001);
    let seen = read_to_end(&mut new, 0, 1024, 1 << 20);
    let gap = one_budget_gap_over_the_oldest(&model, &seen);
    // From every cursor around the gap's end, and a sample elsewhere.
    let around = gap.to_eid.saturating_sub(30)..gap.to_eid + 30;
    same_reads(&mut old, &mut new, around.chain((0..=20_002).step_by(101)));
}

#[test]
fn a_budget_after_reopen_drops_the_oldest_recovered_segments_never_the_ending() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 8 << 10);
    let mut old = Log::new(config.clone(), dir.path());
    let mut model = Model::default();
    fill(&mut old, &mut model, 0, 6_000, 20);
    old.finish(ending()).unwrap();
    let (mut new, reopened) = reopen(config, dir.path());
    let half = reopened.disk_bytes / 2;
    // The same budget on both drops the same segments.
    assert_eq!(new.set_disk_budget(half), old.set_disk_budget(half));
    assert!(new.disk_bytes() <= half && new.disk_bytes() > 0);
    assert_eq!(new.disk_bytes(), bytes_in(dir.path()));
    same_reads(&mut old, &mut new, (0..=6_002).step_by(7));
    let seen = read_to_end(&mut new, 0, 1024, 1 << 20);
    assert_eq!(seen.gaps.len(), 1);
    assert_eq!(seen.gaps[0].reason, BUDGET);
    check_seen(&model, 0, &seen);
    assert_eq!(seen.ending, Some((6_001, ending())));
    // Every segment gone: the ending is still served.
    assert_eq!(new.set_disk_budget(0), 0);
    assert_eq!(bytes_in(dir.path()), 0);
    let seen = read_to_end(&mut new, 0, 1024, 1 << 20);
    assert_eq!(seen.ending, Some((6_001, ending())));
    assert_eq!(seen.gaps.len(), 1);
}

#[test]
fn an_unfinished_log_under_a_budget_writes_its_ending_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 8 << 10);
    let mut old = Log::new(config.clone(), dir.path());
    let mut model = Model::default();
    fill(&mut old, &mut model, 0, 6_000, 20);
    drop(old);
    let (mut new, reopened) = reopen(config.clone(), dir.path());
    let budget = reopened.disk_bytes / 3;
    assert!(new.set_disk_budget(budget) <= budget);
    let stored = new.finish(host_restarted()).unwrap();
    assert!(stored.disk_bytes <= budget);
    assert_eq!(stored.disk_bytes, bytes_in(dir.path()));
    let (mut again, reopened) = reopen(config, dir.path());
    assert_eq!(reopened.ending, Some(host_restarted()));
    assert!(reopened.damage.is_empty(), "{:?}", reopened.damage);
    same_reads(&mut new, &mut again, (0..=6_002).step_by(13));
}

#[test]
fn io_gaps_between_files_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // Segments 2 to 19 land on /dev/full: their writes fail.
    for seq in 2..20u64 {
        std::os::unix::fs::symlink("/dev/full", dir.path().join(format!("{seq:010}.seg"))).unwrap();
    }
    let config = small(4096, 4 << 10);
    let mut old = Log::new(config.clone(), dir.path());
    let mut model = Model::default();
    fill(&mut old, &mut model, 0, 20_000, 10);
    old.finish(ending()).unwrap();
    let before = read_to_end(&mut old, 0, 1024, 1 << 20);
    assert!(!before.gaps.is_empty() && before.gaps.iter().all(|g| g.reason == IO));
    let (mut new, reopened) = reopen(config, dir.path());
    assert!(reopened.damage.is_empty(), "{:?}", reopened.damage);
    assert_eq!(reopened.last_eid, 20_001);
    // From every cursor around each end of the first gap, and a sample.
    let gap = before.gaps[0];
    let around = (gap.from_eid - 20..gap.from_eid + 20).chain(gap.to_eid - 20..gap.to_eid + 20);
    same_reads(&mut old, &mut new, around.chain((0..=20_002).step_by(197)));
}

#[test]
fn an_absent_or_empty_directory_is_an_empty_log() {
    let (parent, empty) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let absent = parent.path().join("log");
    for dir in [absent.as_path(), empty.path()] {
        let (mut log, reopened) = reopen(Config::default(), dir);
        assert_eq!(
            reopened,
            Reopened {
                last_eid: 0,
                disk_bytes: 0,
                ending: None,
                damage: vec![],
            }
        );
        assert_eq!(log.read_inline(0, 10, 100), ReadResult::Pending);
        std::fs::create_dir_all(dir).unwrap();
        assert_eq!(log.finish(host_restarted()).unwrap().last_eid, 1);
        let (mut again, reopened) = reopen(Config::default(), dir);
        assert_eq!(
            (reopened.last_eid, reopened.ending),
            (1, Some(host_restarted()))
        );
        let ReadResult::Events(events) = again.read_inline(0, 10, 100) else {
            panic!("the ending");
        };
        assert_eq!(
            (events.first_eid, events.ending),
            (1, Some(host_restarted()))
        );
        for name in segment_files(dir) {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
    }
}

#[test]
fn reopen_refuses_a_log_that_already_began() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(Config::default(), dir.path());
    let mut model = Model::default();
    log.append(model.batch(&numbered(0, 3))).unwrap();
    assert!(log.reopen().is_err());
    assert_eq!(log.stored().last_eid, 3);
}
