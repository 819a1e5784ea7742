//! The disk budget: the files never take more, the oldest go first and are
//! reported as a `budget` gap with exact bytes, the ending stays.

use execd_policy_disk::{BUDGET, Channel, Log, ReadResult};

use crate::support::*;

#[test]
fn the_files_stay_within_the_budget_and_the_oldest_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(4096, 1 << 20), dir.path());
    let budget = 64 << 10;
    assert_eq!(log.set_disk_budget(budget), 0);
    let mut model = Model::default();
    let mut at = 0;
    while at < 40_000 {
        let stored = log.append(model.batch(&numbered(at, at + 50))).unwrap();
        assert!(
            stored.disk_bytes <= budget,
            "{} over {budget}",
            stored.disk_bytes
        );
        assert_eq!(stored.disk_bytes, bytes_in(dir.path()));
        at += 50;
    }
    // Segments of at most budget/8 (plus the record that crossed it).
    assert!(segment_files(dir.path()).len() >= 7);
    log.finish(ending()).unwrap();
    let seen = read_to_end(&mut log, 0, 1024, 256 << 10);
    // The dropped lines are the oldest ones, reported as one exact gap.
    let gap = one_budget_gap_over_the_oldest(&model, &seen);
    // What is kept is about the budget's worth, not much less: here text
    // is about half of what records take (lengths, many runs, headers),
    // and a drop frees an eighth of the budget.
    let kept_text = model.bytes(gap.to_eid + 1, 40_000);
    assert!(kept_text > budget * 7 / 8 * 4 / 10, "kept {kept_text}");
    assert_eq!(seen.ending, Some((40_001, ending())));
}

#[test]
fn a_lower_budget_drops_at_once_and_never_the_ending() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(4096, 8 << 10), dir.path());
    let mut model = Model::default();
    fill(&mut log, &mut model, 0, 10_000, 20);
    log.finish(ending()).unwrap();
    let before = log.disk_bytes();
    let after = log.set_disk_budget(before / 2);
    assert!(after <= before / 2 && after > 0);
    assert_eq!(after, bytes_in(dir.path()));
    assert_eq!(log.set_disk_budget(0), 0);
    assert_eq!(bytes_in(dir.path()), 0);
    // Only the tail and the ending are left.
    let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
    let missed = check_seen(&model, 0, &seen);
    assert_eq!(seen.gaps.len(), 1);
    assert_eq!(seen.gaps[0].reason, BUDGET);
    assert!(!missed.is_empty() && missed.len() < 10_000);
    assert_eq!(seen.ending, Some((10_001, ending())));
    let ReadResult::Events(e) = log.read_inline(10_000, 10, 10) else {
        panic!("the ending")
    };
    assert!(e.batch.is_empty() && e.ending == Some(ending()));
}

#[test]
fn a_reader_inside_a_dropped_segment_gets_exact_bytes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(4096, 1 << 20), dir.path());
    let mut model = Model::default();
    fill(&mut log, &mut model, 0, 5_000, 10);
    // A slow reader stops at 1234, inside the first segment.
    let seen = read_to_end_limited(&mut log, 1234);
    assert!(check_seen_prefix(&model, &seen, 1234));
    log.set_disk_budget(0);
    let ReadResult::Gap(gap) = log.read_inline(1234, 100, 1 << 20) else {
        panic!("a gap");
    };
    assert_eq!((gap.from_eid, gap.reason), (1235, BUDGET));
    assert_eq!(gap.dropped_bytes, Some(model.bytes(1235, gap.to_eid)));
    // A cursor the log never stopped at: the range is exact, the bytes are
    // exact or unknown, never wrong.
    let ReadResult::Gap(gap) = log.read_inline(777, 100, 1 << 20) else {
        panic!("a gap");
    };
    assert_eq!(gap.from_eid, 778);
    if let Some(bytes) = gap.dropped_bytes {
        assert_eq!(bytes, model.bytes(778, gap.to_eid));
    }
    let ReadResult::Events(events) = log.read_inline(gap.to_eid, 1, 1 << 20) else {
        panic!("the tail follows the gap");
    };
    assert_eq!(events.first_eid, gap.to_eid + 1);
}

/// Reads from 0 in reads of 100 until the cursor reaches `until`.
fn read_to_end_limited(log: &mut Log, until: u64) -> Seen {
    let mut seen = Seen::default();
    let mut cursor = 0;
    while cursor < until {
        let max = (until - cursor).min(100) as u32;
        cursor = apply(&mut seen, cursor, log.read_inline(cursor, max, 1 << 20)).unwrap();
    }
    seen
}

fn check_seen_prefix(model: &Model, seen: &Seen, until: u64) -> bool {
    seen.gaps.is_empty()
        && seen.lines.len() as u64 == until
        && seen
            .lines
            .iter()
            .all(|(eid, line)| *line == model.lines[*eid as usize - 1])
}

#[test]
fn a_batch_larger_than_the_budget_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(1, 1 << 20), dir.path());
    log.set_disk_budget(100);
    let mut model = Model::default();
    let big = vec![line(Channel::Stdout, 1, "x".repeat(200))];
    assert_eq!(log.append(model.batch(&big)).unwrap().disk_bytes, 0);
    // Still in memory: served.
    assert!(matches!(
        log.read_inline(0, 10, 1 << 20),
        ReadResult::Events(_)
    ));
    let small_line = vec![line(Channel::Stdout, 2, "y")];
    let stored = log.append(model.batch(&small_line)).unwrap();
    assert!(stored.disk_bytes <= 100 && stored.disk_bytes > 0);
    let seen = read_to_end(&mut log, 0, 10, 1 << 20);
    check_seen(&model, 0, &seen);
    assert_eq!(seen.gaps.len(), 1);
    assert_eq!(
        (
            seen.gaps[0].to_eid,
            seen.gaps[0].reason,
            seen.gaps[0].dropped_bytes
        ),
        (1, BUDGET, Some(200))
    );
}
