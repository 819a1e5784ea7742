//! Damage between two hosts costs exactly the damaged records: a reopen
//! resynchronises after a bad record on the next one whose checksum
//! holds and whose eids can follow, reports the eids in between as one
//! `damaged` gap, and still finds the ending after them; what the files
//! hold that was never logged where it lies is never served.

use std::path::Path;

use execd_policy_disk::format::{self, Kind, RecordHeader};
use execd_policy_disk::{Config, DAMAGED, Log, Reopened};

use crate::support::*;

/// A log of 20,000 lines in batches of 40 in `dir`, finished or not,
/// then dropped (the host died), and its model.
fn left_behind(dir: &Path, config: Config, finished: bool) -> Model {
    let mut log = Log::new(config, dir);
    let mut model = Model::default();
    fill(&mut log, &mut model, 0, 20_000, 40);
    if finished {
        log.finish(ending()).unwrap();
    }
    model
}

fn reopen(config: Config, dir: &Path) -> (Log, Reopened) {
    let mut log = Log::new(config, dir);
    let reopened = log.reopen().expect("the directory reopens");
    (log, reopened)
}

/// The records of `bytes` that bytes `from..to` fall in.
fn records_over(bytes: &[u8], from: usize, to: usize) -> Vec<RecordHeader> {
    records(bytes)
        .into_iter()
        .filter(|&(at, r)| at < to && at + r.record_len() as usize > from)
        .map(|(_, r)| r)
        .collect()
}

/// Flips 16 bytes in the middle of `path`; returns the eids of the
/// records they fall in.
fn flip_16_in_the_middle(path: &Path) -> (u64, u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    let hit = records_over(&bytes, mid, mid + 16);
    assert!(hit.iter().all(|r| r.kind == Kind::Lines));
    for byte in &mut bytes[mid..mid + 16] {
        *byte ^= 0xa5;
    }
    std::fs::write(path, &bytes).unwrap();
    (hit[0].first_eid, hit.last().unwrap().end_eid() - 1)
}

/// Checks that reads from 0, and from a cursor inside the gap, see
/// every line but `from..=to` as logged, those as one `damaged` gap, and
/// then `ending` at `end`.
fn serves_all_but(
    log: &mut Log,
    model: &Model,
    (from, to): (u64, u64),
    end: u64,
    ending: Option<execd_policy_disk::Ending>,
) {
    for (cursor, max_events, max_bytes) in [(0, 1024, 1 << 20), (0, 7, 300), (from, 100, 1 << 20)] {
        let seen = read_to_end(log, cursor, max_events, max_bytes);
        let missed = check_seen(model, cursor, &seen);
        assert_eq!(missed, (from.max(cursor + 1)..=to).collect::<Vec<_>>());
        assert_eq!(seen.gaps.len(), 1, "{:?}", seen.gaps);
        let gap = seen.gaps[0];
        // Its bytes, when given, are exact (`check_seen`): they are not
        // when the damage hit a record header, which says them.
        assert_eq!((gap.to_eid, gap.reason), (to, DAMAGED));
        assert_eq!(seen.ending, ending.clone().map(|e| (end, e)));
    }
}

#[test]
fn sixteen_flipped_bytes_cost_only_the_records_they_fall_in_and_the_ending_stays() {
    // One 64 MiB segment for the whole log, and segments of 16 KiB.
    for segment_bytes in [64 << 20, 16 << 10] {
        let dir = tempfile::tempdir().unwrap();
        let config = small(4096, segment_bytes);
        let model = left_behind(dir.path(), config.clone(), true);
        let files = segment_files(dir.path());
        let path = dir.path().join(&files[files.len() / 2]);
        let len = std::fs::metadata(&path).unwrap().len();
        let lost = flip_16_in_the_middle(&path);

        let (mut log, reopened) = reopen(config.clone(), dir.path());
        assert_eq!(
            (reopened.last_eid, &reopened.ending),
            (20_001, &Some(ending()))
        );
        let said = format!(
            "eids {} to {} are a gap with reason `damaged`",
            lost.0, lost.1
        );
        assert!(
            reopened.damage.iter().any(|d| d.contains(&said)),
            "{:?}",
            reopened.damage
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len, "not cut");
        assert_eq!(reopened.disk_bytes, bytes_in(dir.path()));
        serves_all_but(&mut log, &model, lost, 20_001, Some(ending()));
        // A second host sees the same.
        let (mut again, _) = reopen(config, dir.path());
        serves_all_but(&mut again, &model, lost, 20_001, Some(ending()));
    }
}

#[test]
fn damage_mid_file_and_a_torn_tail_lose_the_damaged_and_the_torn_records_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 64 << 20);
    let model = left_behind(dir.path(), config.clone(), false);
    let path = dir.path().join(&segment_files(dir.path())[0]);
    let lost = flip_16_in_the_middle(&path);
    let bytes = std::fs::read(&path).unwrap();
    let &(at, torn) = records(&bytes).last().unwrap();
    std::fs::write(&path, &bytes[..at + 50]).unwrap();

    let (mut log, reopened) = reopen(config.clone(), dir.path());
    let end = torn.first_eid;
    assert_eq!((reopened.last_eid, &reopened.ending), (end - 1, &None));
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        at as u64,
        "cut there"
    );
    let prefix = Model {
        lines: model.lines[..end as usize - 1].to_vec(),
    };
    serves_all_but(&mut log, &prefix, lost, end, None);
    assert_eq!(log.finish(host_restarted()).unwrap().last_eid, end);
    serves_all_but(&mut log, &prefix, lost, end, Some(host_restarted()));
    let (mut again, reopened) = reopen(config, dir.path());
    assert_eq!(reopened.ending, Some(host_restarted()));
    serves_all_but(&mut again, &prefix, lost, end, Some(host_restarted()));
}

#[test]
fn a_whole_record_out_of_place_is_never_served_and_costs_only_what_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 64 << 20);
    let model = left_behind(dir.path(), config.clone(), true);
    let path = dir.path().join(&segment_files(dir.path())[0]);
    let bytes = std::fs::read(&path).unwrap();
    let all = records(&bytes);
    let copy = |i: usize| {
        let (at, r) = all[i];
        bytes[at..at + r.record_len() as usize].to_vec()
    };
    let (mid, _) = all[all.len() / 2];

    // An old record, checksum and all, put in the middle: nothing of the
    // log is lost, and its lines are not served twice.
    let mut put_in = bytes[..mid].to_vec();
    put_in.extend_from_slice(&copy(3));
    put_in.extend_from_slice(&bytes[mid..]);
    std::fs::write(&path, &put_in).unwrap();
    let (mut log, reopened) = reopen(config.clone(), dir.path());
    assert_eq!(reopened.ending, Some(ending()));
    assert!(
        reopened.damage.iter().any(|d| d.contains("held no eid")),
        "{:?}",
        reopened.damage
    );
    let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
    assert!(check_seen(&model, 0, &seen).is_empty(), "{:?}", seen.gaps);
    assert_eq!(seen.ending, Some((20_001, ending())));

    // The next record written over one of the same size: the record it
    // covers is lost, and the copy is not served in its place.
    let i = (all.len() / 2..all.len() - 2)
        .find(|&i| all[i].1.record_len() == all[i + 1].1.record_len())
        .expect("two records of the same size");
    let mut over = bytes.clone();
    let (at, hit) = all[i];
    over[at..at + hit.record_len() as usize].copy_from_slice(&copy(i + 1));
    std::fs::write(&path, &over).unwrap();
    let (mut log, _) = reopen(config, dir.path());
    let lost = (hit.first_eid, hit.end_eid() - 1);
    let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
    let missed = check_seen(&model, 0, &seen);
    assert_eq!(missed, (lost.0..=lost.1).collect::<Vec<_>>());
    assert_eq!(seen.gaps[0].reason, DAMAGED);
    assert_eq!(seen.ending, Some((20_001, ending())));
}

#[test]
fn bytes_that_keep_looking_like_records_cost_a_bounded_scan() {
    // Record headers every 32 bytes that decode, claim eids that could
    // follow and a body within the file: with no bound each would cost a
    // check of that body, read (1 MiB) or already in memory (200 KiB).
    for claimed in [1 << 20, 200 << 10] {
        let dir = tempfile::tempdir().unwrap();
        let config = small(4096, 64 << 20);
        let model = left_behind(dir.path(), config.clone(), true);
        let path = dir.path().join(&segment_files(dir.path())[0]);
        let mut bytes = std::fs::read(&path).unwrap();
        let all = records(&bytes);
        let (mid, next) = all[all.len() / 2];
        let mut fake = Vec::new();
        let run = execd_policy_disk::Run {
            channel: execd_policy_disk::Channel::Stdout,
            timestamp_ms: 1,
            lines: 1,
            partial: false,
        };
        let text = vec![b'x'; claimed];
        format::encode_lines(
            &mut fake,
            next.first_eid + 1,
            &[claimed as u32],
            &[run],
            &text,
        );
        let mut garbage = Vec::new();
        while garbage.len() < 4 << 20 {
            garbage.extend_from_slice(&fake[..32]);
        }
        bytes.splice(mid..mid, garbage);
        std::fs::write(&path, &bytes).unwrap();
        let (mut log, reopened) = reopen(config, dir.path());
        assert!(!reopened.damage.is_empty());
        // Whatever it kept (here the scan gives up on the rest of the
        // file), every line served is one logged, with its eid, and those
        // before the garbage are all there.
        let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
        for (eid, line) in &seen.lines {
            assert_eq!(line, &model.lines[*eid as usize - 1], "eid {eid}");
        }
        assert!(seen.lines.len() as u64 >= next.first_eid - 1);
    }
}
