//! Reopening damaged directories: a torn tail is cut and the ending
//! follows it, a damaged record becomes a `damaged` gap up to where the
//! next file resumes, files that cannot be trusted are skipped, and
//! whatever is there, every event served is one that was logged.

use std::path::{Path, PathBuf};

use execd_policy_disk::format::{self, FileHeader, Kind};
use execd_policy_disk::{Channel, Config, DAMAGED, IO, Log, Reopened, Run};

use crate::support::*;

const CONFIG: fn() -> Config = || small(4096, 8 << 10);

/// A log of 3000 lines in batches of 20 over several segments, finished
/// or not, then dropped (the host died), and its model.
fn left_behind(dir: &Path, finished: bool) -> Model {
    let mut log = Log::new(CONFIG(), dir);
    let mut model = Model::default();
    for at in (0..3_000).step_by(20) {
        log.append(model.batch(&numbered(at, at + 20))).unwrap();
    }
    if finished {
        log.finish(ending()).unwrap();
    }
    assert!(segment_files(dir).len() >= 4, "several segments");
    model
}

fn reopen(dir: &Path) -> (Log, Reopened) {
    let mut log = Log::new(CONFIG(), dir);
    let reopened = log.reopen().expect("the directory reopens");
    (log, reopened)
}

/// Path of segment file `i` (in order; negative from the end).
fn segment(dir: &Path, i: isize) -> PathBuf {
    let files = segment_files(dir);
    let i = if i < 0 { files.len() as isize + i } else { i };
    dir.join(&files[i as usize])
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    change(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
}

fn mentions(reopened: &Reopened, what: &str) -> bool {
    reopened.damage.iter().any(|d| d.contains(what))
}

/// Checks that the log now serves exactly lines `1..=lines` of the model
/// and then, at the next eid, `ending` (or nothing yet).
fn serves_prefix(
    log: &mut Log,
    model: &Model,
    lines: u64,
    ending: Option<execd_policy_disk::Ending>,
) {
    for (max_events, max_bytes) in [(1024, 1 << 20), (3, 100)] {
        let seen = read_to_end(log, 0, max_events, max_bytes);
        let prefix = Model {
            lines: model.lines[..lines as usize].to_vec(),
        };
        assert!(check_seen(&prefix, 0, &seen).is_empty(), "{:?}", seen.gaps);
        assert_eq!(seen.ending, ending.clone().map(|e| (lines + 1, e)));
    }
}

#[test]
fn a_torn_last_write_is_cut_at_the_last_whole_record_and_the_ending_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = left_behind(dir.path(), false);
    let last = segment(dir.path(), -1);
    let bytes = std::fs::read(&last).unwrap();
    let &(at, torn) = records(&bytes).last().unwrap();
    std::fs::write(&last, &bytes[..at + 40]).unwrap();
    let (mut log, reopened) = reopen(dir.path());
    assert_eq!(
        (reopened.last_eid, &reopened.ending),
        (torn.first_eid - 1, &None)
    );
    assert!(mentions(&reopened, "truncated"), "{:?}", reopened.damage);
    assert_eq!(
        std::fs::metadata(&last).unwrap().len(),
        at as u64,
        "cut there"
    );
    assert_eq!(reopened.disk_bytes, bytes_in(dir.path()));
    serves_prefix(&mut log, &model, torn.first_eid - 1, None);
    assert_eq!(
        log.finish(host_restarted()).unwrap().last_eid,
        torn.first_eid
    );
    serves_prefix(&mut log, &model, torn.first_eid - 1, Some(host_restarted()));
    // A second restart finds the ending, and nothing damaged.
    let (mut again, reopened) = reopen(dir.path());
    assert_eq!(reopened.damage, Vec::<String>::new());
    assert_eq!(reopened.ending, Some(host_restarted()));
    serves_prefix(
        &mut again,
        &model,
        torn.first_eid - 1,
        Some(host_restarted()),
    );
}

#[test]
fn a_last_record_whose_checksum_fails_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let model = left_behind(dir.path(), false);
    let last = segment(dir.path(), -1);
    let len = std::fs::metadata(&last).unwrap().len() as usize;
    let mut whole = (0, 0);
    edit(&last, |bytes| {
        let &(at, header) = records(bytes).last().unwrap();
        whole = (at, header.first_eid);
        bytes[len - 1] ^= 0x20; // a letter of its last line's text
    });
    let (mut log, reopened) = reopen(dir.path());
    assert!(mentions(&reopened, "checksum"), "{:?}", reopened.damage);
    assert_eq!(reopened.last_eid, whole.1 - 1);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), whole.0 as u64);
    serves_prefix(&mut log, &model, whole.1 - 1, None);
}

#[test]
fn a_damaged_ending_leaves_the_log_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let model = left_behind(dir.path(), true);
    let last = segment(dir.path(), -1);
    edit(&last, |bytes| {
        let &(at, header) = records(bytes).last().unwrap();
        assert_eq!(header.kind, Kind::Ending);
        bytes[at + 40] ^= 1;
    });
    let (mut log, reopened) = reopen(dir.path());
    assert_eq!((reopened.last_eid, &reopened.ending), (3_000, &None));
    assert!(!reopened.damage.is_empty());
    assert_eq!(log.finish(host_restarted()).unwrap().last_eid, 3_001);
    serves_prefix(&mut log, &model, 3_000, Some(host_restarted()));
}

#[test]
fn a_damaged_record_mid_file_becomes_a_damaged_gap_of_its_own_eids() {
    let dir = tempfile::tempdir().unwrap();
    let model = left_behind(dir.path(), true);
    let first = segment(dir.path(), 0);
    let len = std::fs::metadata(&first).unwrap().len();
    let mut damaged = None;
    edit(&first, |bytes| {
        let records = records(bytes);
        let (at, header) = records[records.len() / 2];
        damaged = Some(header);
        bytes[at] ^= 0xff; // its checksum
    });
    let damaged = damaged.unwrap();
    let (from, to) = (damaged.first_eid, damaged.end_eid() - 1);
    let (mut log, reopened) = reopen(dir.path());
    assert_eq!(reopened.ending, Some(ending()));
    assert!(
        mentions(&reopened, "0000000001.seg"),
        "{:?}",
        reopened.damage
    );
    assert!(mentions(&reopened, &format!("eids {from} to {to}")));
    assert_eq!(
        std::fs::metadata(&first).unwrap().len(),
        len,
        "left as it is"
    );
    for max_events in [1024, 7] {
        let seen = read_to_end(&mut log, 0, max_events, 1 << 20);
        let missed = check_seen(&model, 0, &seen);
        assert_eq!(seen.gaps.len(), 1);
        let gap = seen.gaps[0];
        assert_eq!((gap.from_eid, gap.to_eid, gap.reason), (from, to, DAMAGED));
        // Its header still says how much text it held.
        assert_eq!(gap.dropped_bytes, Some(model.bytes(from, to)));
        assert_eq!(missed, (from..=to).collect::<Vec<_>>());
        assert_eq!(seen.ending, Some((3_001, ending())));
    }
}

#[test]
fn a_file_with_a_damaged_header_whose_records_follow_on_costs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = left_behind(dir.path(), true);
    let files = segment_files(dir.path());
    // The second file's first eid, the last's magic, and the first's
    // version (to one whose checksum its records do not hold with).
    edit(&segment(dir.path(), 1), |bytes| bytes[20] ^= 4);
    edit(&segment(dir.path(), -1), |bytes| bytes[0] = b'X');
    edit(&segment(dir.path(), 0), |bytes| bytes[8] ^= 2);
    let (mut log, reopened) = reopen(dir.path());
    for name in [&files[0], &files[1], files.last().unwrap()] {
        let said = format!("{name}: its header is damaged");
        assert!(mentions(&reopened, &said), "{:?}", reopened.damage);
    }
    assert_eq!(reopened.ending, Some(ending()));
    let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
    assert!(check_seen(&model, 0, &seen).is_empty(), "{:?}", seen.gaps);
    assert_eq!(seen.ending, Some((3_001, ending())));
}

#[test]
fn a_file_with_a_bad_header_whose_records_do_not_follow_on_is_skipped_and_its_eids_are_a_damaged_gap()
 {
    let dir = tempfile::tempdir().unwrap();
    let model = left_behind(dir.path(), true);
    let scan = |i| format::scan(std::fs::File::open(segment(dir.path(), i)).unwrap()).unwrap();
    let (second, third) = (scan(1), scan(2));
    // The second file holds the first's records, under a bad header.
    std::fs::copy(segment(dir.path(), 0), segment(dir.path(), 1)).unwrap();
    edit(&segment(dir.path(), 1), |bytes| bytes[20] ^= 4);
    let (mut log, reopened) = reopen(dir.path());
    assert!(
        mentions(&reopened, "0000000002.seg"),
        "{:?}",
        reopened.damage
    );
    assert_eq!(
        reopened.disk_bytes,
        bytes_in(dir.path()),
        "counted, left as it is"
    );
    let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
    check_seen(&model, 0, &seen);
    assert_eq!(seen.gaps.len(), 1);
    let gap = seen.gaps[0];
    let (from, to) = (second.header.first_eid, third.header.first_eid - 1);
    assert_eq!((gap.from_eid, gap.to_eid, gap.reason), (from, to, DAMAGED));
    assert_eq!(gap.dropped_bytes, Some(model.bytes(from, to)));
    assert_eq!(seen.ending, Some((3_001, ending())));
}

#[test]
fn files_not_named_like_segments_are_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let model = left_behind(dir.path(), true);
    let on_disk = bytes_in(dir.path());
    let copy = std::fs::read(segment(dir.path(), 0)).unwrap();
    std::fs::write(dir.path().join("notes.txt"), [b'n'; 100]).unwrap();
    std::fs::write(dir.path().join("0000000001.seg.bak"), &copy).unwrap();
    std::fs::write(dir.path().join("12.seg"), &copy).unwrap();
    std::fs::create_dir(dir.path().join("0000000050.seg")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("0000000099.seg")).unwrap();
    let (mut log, reopened) = reopen(dir.path());
    for name in [
        "notes.txt",
        "0000000001.seg.bak",
        "12.seg",
        "0000000050.seg",
        "0000000099.seg",
    ] {
        assert!(mentions(&reopened, name), "{name}: {:?}", reopened.damage);
        assert!(std::fs::symlink_metadata(dir.path().join(name)).is_ok());
    }
    assert_eq!(reopened.disk_bytes, on_disk + 100 + 2 * copy.len() as u64);
    let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
    assert!(check_seen(&model, 0, &seen).is_empty());
    assert_eq!(seen.ending, Some((3_001, ending())));
}

#[test]
fn a_file_whose_eids_go_back_is_skipped_and_the_ending_goes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = left_behind(dir.path(), false);
    let files = segment_files(dir.path());
    let copy = dir.path().join(format!("{:010}.seg", files.len() + 1));
    std::fs::copy(segment(dir.path(), 1), &copy).unwrap();
    let (mut log, reopened) = reopen(dir.path());
    assert!(mentions(&reopened, "skipped"), "{:?}", reopened.damage);
    assert_eq!(reopened.last_eid, 3_000);
    serves_prefix(&mut log, &model, 3_000, None);
    log.finish(host_restarted()).unwrap();
    assert_eq!(
        segment_files(dir.path()).len(),
        files.len() + 2,
        "a new file"
    );
    let (mut again, reopened) = reopen(dir.path());
    assert_eq!(reopened.ending, Some(host_restarted()));
    serves_prefix(&mut again, &model, 3_000, Some(host_restarted()));
}

#[test]
fn anything_after_the_ending_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let model = left_behind(dir.path(), true);
    let last = segment(dir.path(), -1);
    // A whole, checked lines record after the ending in its file, and a
    // well-formed file after that one.
    let mut record = Vec::new();
    let runs = [Run {
        channel: Channel::Stdout,
        timestamp_ms: 1,
        lines: 1,
        partial: false,
    }];
    format::encode_lines(&mut record, 3_001, &[5], &runs, b"ghost");
    edit(&last, |bytes| bytes.extend_from_slice(&record));
    let len = std::fs::metadata(&last).unwrap().len();
    let header = FileHeader {
        first_eid: 3_002,
        text_offset: model.bytes(1, 3_000) + 5,
    };
    let mut file = header.encode().to_vec();
    format::encode_lines(&mut file, 3_002, &[5], &runs, b"ghost");
    let after = format!("{:010}.seg", segment_files(dir.path()).len() + 1);
    std::fs::write(dir.path().join(&after), &file).unwrap();
    let (mut log, reopened) = reopen(dir.path());
    assert_eq!(
        (reopened.last_eid, &reopened.ending),
        (3_001, &Some(ending()))
    );
    assert!(
        mentions(&reopened, "after the ending"),
        "{:?}",
        reopened.damage
    );
    assert!(mentions(&reopened, &after), "{:?}", reopened.damage);
    assert_eq!(
        std::fs::metadata(&last).unwrap().len(),
        len,
        "a finished log is not cut"
    );
    serves_prefix(&mut log, &model, 3_000, Some(ending()));
}

#[test]
fn nothing_usable_is_an_error_and_a_file_torn_as_it_was_made_is_nothing() {
    // Garbage under a segment's name.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0000000001.seg"), [7u8; 100]).unwrap();
    let error = Log::new(CONFIG(), dir.path()).reopen().unwrap_err();
    assert!(error.contains("0000000001.seg"), "{error}");
    // Every header of a real log damaged, whose records do not follow on
    // from eid 1 (the budget had dropped its first files).
    let dir = tempfile::tempdir().unwrap();
    left_behind(dir.path(), true);
    std::fs::remove_file(segment(dir.path(), 0)).unwrap();
    std::fs::remove_file(segment(dir.path(), 0)).unwrap();
    for name in segment_files(dir.path()) {
        edit(&dir.path().join(name), |bytes| bytes[0] = b'X');
    }
    assert!(Log::new(CONFIG(), dir.path()).reopen().is_err());
    // A first file cut inside its header holds nothing: an empty log.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0000000001.seg"), b"EXECDSEG\x01").unwrap();
    let (mut log, reopened) = reopen(dir.path());
    assert_eq!((reopened.last_eid, reopened.disk_bytes), (0, 0));
    assert!(mentions(&reopened, "removed"), "{:?}", reopened.damage);
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(log.finish(host_restarted()).unwrap().last_eid, 1);
    assert_eq!(segment_files(dir.path()), ["0000000002.seg"]);
}

#[test]
fn a_file_changed_after_the_reopen_reads_as_an_io_gap() {
    let dir = tempfile::tempdir().unwrap();
    let model = left_behind(dir.path(), true);
    let (mut log, _) = reopen(dir.path());
    let second = segment(dir.path(), 1);
    let half = std::fs::metadata(&second).unwrap().len() / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&second)
        .unwrap()
        .set_len(half)
        .unwrap();
    edit(&segment(dir.path(), 2), |bytes| {
        let at = bytes.len() / 3;
        bytes[at..].fill(0);
    });
    std::fs::remove_file(segment(dir.path(), 3)).unwrap();
    for max_events in [1024, 5] {
        let seen = read_to_end(&mut log, 0, max_events, 1 << 20);
        let missed = check_seen(&model, 0, &seen);
        assert!(!missed.is_empty());
        assert!(seen.gaps.iter().all(|g| g.reason == IO), "{:?}", seen.gaps);
        assert_eq!(seen.ending, Some((3_001, ending())));
    }
}

#[test]
fn files_that_claim_impossible_numbers_never_break_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let model = left_behind(dir.path(), false);
    let text_end = model.bytes(1, 3_000);
    let runs = [Run {
        channel: Channel::Stdout,
        timestamp_ms: 1,
        lines: 1,
        partial: false,
    }];
    let next = segment_files(dir.path()).len() as u64 + 1;
    let write = |seq: u64, first_eid: u64, text_offset: u64, record: &[u8]| {
        let mut file = FileHeader {
            first_eid,
            text_offset,
        }
        .encode()
        .to_vec();
        file.extend_from_slice(record);
        std::fs::write(dir.path().join(format!("{seq:010}.seg")), file).unwrap();
    };
    // Eids near the largest number.
    write(next, u64::MAX - 1, text_end, &[]);
    // A checked record whose lengths do not add up to its text.
    let mut record = Vec::new();
    format::encode_lines(&mut record, 3_001, &[9], &runs, b"ghost");
    write(next + 1, 3_001, text_end, &record);
    let (mut log, reopened) = reopen(dir.path());
    assert_eq!(reopened.last_eid, 3_000);
    assert!(
        mentions(&reopened, "do not add up"),
        "{:?}",
        reopened.damage
    );
    serves_prefix(&mut log, &model, 3_000, None);
    // Far eids with a good header are taken: an io gap up to them.
    let dir = tempfile::tempdir().unwrap();
    let model = left_behind(dir.path(), false);
    let next = segment_files(dir.path()).len() as u64 + 1;
    let far = 1 << 40;
    let mut file = FileHeader {
        first_eid: far,
        text_offset: model.bytes(1, 3_000),
    }
    .encode()
    .to_vec();
    format::encode_lines(&mut file, far, &[5], &runs, b"later");
    std::fs::write(dir.path().join(format!("{next:010}.seg")), file).unwrap();
    let (mut log, reopened) = reopen(dir.path());
    assert_eq!(reopened.last_eid, far);
    let seen = read_to_end(&mut log, 2_990, 1024, 1 << 20);
    assert_eq!(seen.gaps.len(), 1);
    assert_eq!(
        (seen.gaps[0].from_eid, seen.gaps[0].to_eid),
        (3_001, far - 1)
    );
    assert_eq!(log.finish(host_restarted()).unwrap().last_eid, far + 1);
}
