//! Damaged files: a read that meets a bad record reports the rest of its
//! segment as an `io` gap; a scan finds where whole records end.

use std::io::Cursor;
use std::path::Path;

use execd_policy_disk::format::{self, FormatError};
use execd_policy_disk::{IO, Log};

use crate::support::*;

/// A finished log of 6000 lines in segments of 16 KiB, and its model.
fn several_segments(dir: &Path) -> (Log, Model) {
    let mut log = Log::new(small(4096, 16 << 10), dir);
    let mut model = Model::default();
    for at in (0..6_000).step_by(20) {
        log.append(model.batch(&numbered(at, at + 20))).unwrap();
    }
    log.finish(ending()).unwrap();
    (log, model)
}

#[test]
fn a_damaged_record_becomes_an_io_gap_to_the_end_of_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, model) = several_segments(dir.path());
    let first = dir.path().join(&segment_files(dir.path())[0]);
    let mut bytes = std::fs::read(&first).unwrap();
    let records = records(&bytes);
    let (at, damaged) = records[records.len() / 2];
    let end_eid = records.last().unwrap().1.end_eid();
    bytes[at + 8] = 0x7f; // an unknown record kind
    std::fs::write(&first, &bytes).unwrap();
    for max_events in [1024, 7] {
        let seen = read_to_end(&mut log, 0, max_events, 1 << 20);
        let missed = check_seen(&model, 0, &seen);
        // The lines before the damaged record are served, the gap ends
        // where the segment did, with exact bytes.
        assert_eq!(seen.gaps.len(), 1, "{:?}", seen.gaps);
        let gap = seen.gaps[0];
        assert_eq!((gap.from_eid, gap.to_eid), (damaged.first_eid, end_eid - 1));
        assert_eq!(gap.reason, IO);
        assert_eq!(missed, (damaged.first_eid..end_eid).collect::<Vec<_>>());
        assert_eq!(seen.ending, Some((6_001, ending())));
    }
}

#[test]
fn garbage_in_a_file_never_breaks_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = several_segments(dir.path());
    for (i, name) in segment_files(dir.path()).iter().enumerate().take(3) {
        let path = dir.path().join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        let mut state = 0x9e37_79b9_u32.wrapping_mul(i as u32 + 1);
        let len = bytes.len();
        for byte in &mut bytes[len / 4..len / 2] {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *byte = state as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
    }
    // Every eid comes once, as a line or in a gap (`apply` checks that
    // each answer follows the cursor), and the ending arrives.
    for max_events in [1024, 5] {
        let seen = read_to_end(&mut log, 0, max_events, 1 << 20);
        assert_eq!(seen.ending, Some((6_001, ending())));
        assert!(seen.gaps.iter().all(|g| g.reason == IO));
    }
}

/// A finished log's only segment, as bytes.
fn one_segment() -> (Vec<u8>, Model) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(4096, 64 << 20), dir.path());
    let mut model = Model::default();
    for at in (0..300).step_by(30) {
        log.append(model.batch(&numbered(at, at + 30))).unwrap();
    }
    log.finish(ending()).unwrap();
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    (std::fs::read(dir.path().join(&files[0])).unwrap(), model)
}

#[test]
fn a_scan_cuts_a_torn_tail_at_the_last_whole_record() {
    let (bytes, model) = one_segment();
    let whole = format::scan(Cursor::new(&bytes)).unwrap();
    assert_eq!(
        (whole.cut.clone(), whole.valid_len),
        (None, bytes.len() as u64)
    );
    assert_eq!((whole.end_eid, whole.text_end), (301, model.bytes(1, 300)));
    assert_eq!(whole.ending, Some((301, ending())));
    // Every torn length: the scan stops at a record boundary at or before
    // it, and says so unless the cut fell on one.
    let mut boundaries = vec![];
    for len in format::FILE_HEADER_LEN..bytes.len() {
        let scan = format::scan(Cursor::new(&bytes[..len])).unwrap();
        assert!(scan.valid_len <= len as u64);
        assert_eq!(scan.cut.is_none(), scan.valid_len == len as u64, "at {len}");
        assert!(scan.ending.is_none());
        if scan.cut.is_none() {
            boundaries.push((len, scan.end_eid));
        }
    }
    // One boundary per record: the header's end and each of the 10 batches.
    assert_eq!(boundaries.len(), 11);
    assert_eq!(boundaries.last().map(|b| b.1), Some(301));
    // Garbage after the ending is cut too.
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 40]);
    let scan = format::scan(Cursor::new(&longer)).unwrap();
    assert_eq!(scan.valid_len, bytes.len() as u64);
    assert!(scan.cut.is_some());
}

#[test]
fn a_scan_detects_a_flipped_bit() {
    let (bytes, _) = one_segment();
    let whole = format::scan(Cursor::new(&bytes)).unwrap();
    for at in [
        format::FILE_HEADER_LEN + 3,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 1;
        let scan = format::scan(Cursor::new(&damaged)).unwrap();
        // Either the scan resynchronised after the damaged record, or
        // (in the last record, which nothing follows) it cut there.
        let at = at as u64;
        let skipped = scan
            .stretches
            .iter()
            .any(|s| s.offset <= at && at < s.end_offset);
        assert!(skipped || scan.cut.is_some(), "flip at {at}");
        if scan.cut.is_some() {
            assert!(scan.valid_len <= at && scan.valid_len < whole.valid_len);
        } else {
            assert_eq!(scan.ending, whole.ending, "flip at {at}");
        }
    }
    let mut bad_header = bytes.clone();
    bad_header[20] ^= 1;
    assert!(format::scan(Cursor::new(&bad_header)).is_err());
    assert_eq!(
        format::FileHeader::decode(&bad_header),
        Err(FormatError::Checksum)
    );
}
