//! A host restarted with a smaller disk budget: what the budget cannot
//! hold is the oldest output, every cursor sees the same single `budget`
//! gap over it, and the newest lines and the ending stay.

use std::path::Path;

use execd_policy_disk::{BUDGET, Batch, Channel, Config, Log, ReadResult};

use crate::support::*;

/// The daemon's settings: segments of 64 MiB unless a budget makes them
/// smaller, a 4 MiB tail.
fn daemon() -> Config {
    Config::default()
}

/// `seq 1 n` as the host appends it: whole lines, as many as fit in one
/// 64 KiB pipe read, a batch each.
fn seq(log: &mut Log, n: u64) {
    let mut batch = Batch::default();
    let mut bytes = 0;
    for i in 1..=n {
        let text = i.to_string();
        if bytes + text.len() + 1 > 64 << 10 {
            log.append(std::mem::take(&mut batch)).unwrap();
            bytes = 0;
        }
        bytes += text.len() + 1;
        batch.push(Channel::Stdout, 1_000 + i / 100_000, text.as_bytes(), false);
    }
    log.append(batch).unwrap();
}

/// Reads from `cursor` to the end and checks what it got against `seq`:
/// every line served is the number of its eid; returns what was seen.
fn read_seq(log: &mut Log, cursor: u64) -> Seen {
    let seen = read_to_end(log, cursor, 4096, 1 << 20);
    for (eid, line) in &seen.lines {
        assert_eq!(line.text, eid.to_string().into_bytes(), "eid {eid}");
    }
    seen
}

/// Leaves `seq 1 n`, finished, in `dir` under `budget`, as one host did.
fn left_by_one_host(dir: &Path, budget: u64, n: u64) {
    let mut log = Log::new(daemon(), dir);
    log.set_disk_budget(budget);
    seq(&mut log, n);
    log.finish(ending()).unwrap();
    assert_eq!(log.stored().last_eid, n + 1);
}

#[test]
fn a_smaller_budget_at_restart_costs_the_oldest_output_and_every_cursor_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let n = 1_400_000;
    // The host's default budget for one command's log: 1 GiB, so
    // segments of 64 MiB and the whole log in one file.
    left_by_one_host(dir.path(), 1 << 30, n);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(bytes_in(dir.path()) > 10 << 20);
    let mut log = Log::new(daemon(), dir.path());
    let reopened = log.reopen().unwrap();
    assert_eq!(reopened.last_eid, n + 1);
    let budget = 10 << 20;
    let on_disk = log.set_disk_budget(budget);
    assert!(on_disk <= budget, "{on_disk} over {budget}");
    assert_eq!(on_disk, bytes_in(dir.path()));
    assert!(on_disk > budget / 2, "only {on_disk} of {budget} kept");

    let from_0 = read_seq(&mut log, 0);
    assert_eq!(from_0.gaps.len(), 1, "{:?}", from_0.gaps);
    let gap = from_0.gaps[0];
    assert_eq!((gap.from_eid, gap.reason), (1, BUDGET), "{gap:?}");
    let kept = gap.to_eid + 1;
    assert!(kept > 1 && kept <= n, "the newest lines stay: {gap:?}");
    assert_eq!(from_0.lines.first().map(|(eid, _)| *eid), Some(kept));
    assert_eq!(from_0.lines.last().map(|(eid, _)| *eid), Some(n));
    assert_eq!(from_0.ending, Some((n + 1, ending())));

    // A cursor inside what was dropped gets the rest of the same gap.
    let from_1000 = read_seq(&mut log, 1_000);
    assert_eq!(from_1000.gaps.len(), 1, "{:?}", from_1000.gaps);
    let g = from_1000.gaps[0];
    assert_eq!(
        (g.from_eid, g.to_eid, g.reason),
        (1_001, gap.to_eid, BUDGET)
    );
    assert_eq!(from_1000.lines, from_0.lines);
    assert_eq!(from_1000.ending, Some((n + 1, ending())));
    // One inside what is kept gets no gap at all.
    let from_kept = read_seq(&mut log, kept + 10);
    assert!(from_kept.gaps.is_empty(), "{:?}", from_kept.gaps);
    assert_eq!(from_kept.lines[0].0, kept + 11);
    let ReadResult::Events(last) = log.read_inline(n - 1, 10, 1 << 20) else {
        panic!("the last line and the ending");
    };
    assert_eq!(
        (last.batch.text.as_slice(), last.ending),
        (n.to_string().as_bytes(), Some(ending()))
    );
}

/// Reads from 0 and checks the one `budget` gap from eid 1 and then the
/// model's lines to `end` (exclusive); returns the first eid kept.
fn oldest_gone(log: &mut Log, model: &Model, end: u64) -> u64 {
    let seen = read_to_end(log, 0, 1024, 1 << 20);
    let prefix = Model {
        lines: model.lines[..end as usize - 1].to_vec(),
    };
    let gap = one_budget_gap_over_the_oldest(&prefix, &seen);
    gap.to_eid + 1
}

#[test]
fn an_unfinished_log_trimmed_at_restart_takes_its_ending_and_reopens_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 4 << 20);
    let mut old = Log::new(config.clone(), dir.path());
    let mut model = Model::default();
    fill(&mut old, &mut model, 0, 40_000, 37);
    drop(old); // the host died
    assert_eq!(segment_files(dir.path()).len(), 1);
    let mut log = Log::new(config.clone(), dir.path());
    assert_eq!(log.reopen().unwrap().last_eid, 40_000);
    let budget = bytes_in(dir.path()) / 3;
    assert!(log.set_disk_budget(budget) <= budget);
    let kept = oldest_gone(&mut log, &model, 40_001);
    // About the newest third stays, not just the newest lines.
    assert!(kept > 20_000 && kept < 32_000, "kept from {kept}");
    let stored = log.finish(host_restarted()).unwrap();
    assert_eq!(stored.last_eid, 40_001);
    assert!(stored.disk_bytes <= budget);
    assert_eq!(stored.disk_bytes, bytes_in(dir.path()));
    let before = read_to_end(&mut log, 0, 1024, 1 << 20);
    assert_eq!(before.ending, Some((40_001, host_restarted())));
    // A second restart finds the trimmed file as it was left: the same
    // gap, the same lines, the ending, and nothing damaged.
    let mut again = Log::new(config, dir.path());
    let reopened = again.reopen().unwrap();
    assert!(reopened.damage.is_empty(), "{:?}", reopened.damage);
    assert_eq!(reopened.ending, Some(host_restarted()));
    for cursor in [0, 1, 1_000, kept - 1, kept, kept + 500, 39_999] {
        let want = read_to_end(&mut log, cursor, 100, 10_000);
        assert_eq!(
            read_to_end(&mut again, cursor, 100, 10_000),
            want,
            "{cursor}"
        );
    }
    assert_eq!(read_to_end(&mut again, 0, 1024, 1 << 20), before);
}

#[test]
fn a_budget_that_shrinks_under_a_running_log_costs_the_oldest_lines_of_its_open_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(4096, 64 << 20), dir.path());
    let mut model = Model::default();
    fill(&mut log, &mut model, 0, 30_000, 25);
    let budget = log.disk_bytes() / 2;
    assert!(log.set_disk_budget(budget) <= budget);
    assert_eq!(log.disk_bytes(), bytes_in(dir.path()));
    let kept = oldest_gone(&mut log, &model, 30_001);
    assert!(kept < 20_000, "only the oldest half goes, from {kept}");
    // The command goes on: the budget holds and what goes is still the
    // oldest, one gap from eid 1.
    fill(&mut log, &mut model, 30_000, 60_000, 25);
    assert!(log.disk_bytes() <= budget);
    assert_eq!(log.disk_bytes(), bytes_in(dir.path()));
    log.finish(ending()).unwrap();
    let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
    let gap = one_budget_gap_over_the_oldest(&model, &seen);
    assert!(gap.to_eid > kept && gap.to_eid < 50_000, "{gap:?}");
    assert_eq!(seen.ending, Some((60_001, ending())));
}

#[test]
fn a_segment_whose_lines_do_not_fit_keeps_its_ending_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 64 << 20);
    let mut old = Log::new(config.clone(), dir.path());
    let mut model = Model::default();
    let big = line(Channel::Stdout, 5, vec![b'x'; 1 << 20]);
    old.append(model.batch(&[big])).unwrap();
    old.finish(ending()).unwrap();
    drop(old);
    let mut log = Log::new(config.clone(), dir.path());
    log.reopen().unwrap();
    assert!(log.set_disk_budget(64 << 10) <= 64 << 10);
    let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
    assert_eq!((seen.gaps.len(), seen.gaps[0].to_eid), (1, 1));
    assert_eq!(seen.ending, Some((2, ending())));
    // The ending's record is the file's: a second restart finds it.
    let mut again = Log::new(config, dir.path());
    let reopened = again.reopen().unwrap();
    assert_eq!((reopened.last_eid, reopened.ending), (2, Some(ending())));
    assert!(reopened.damage.is_empty(), "{:?}", reopened.damage);
    assert_eq!(read_to_end(&mut again, 0, 1024, 1 << 20), seen);
}

#[test]
fn a_trim_the_host_did_not_finish_is_removed_at_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 1 << 20);
    let mut old = Log::new(config.clone(), dir.path());
    let mut model = Model::default();
    fill(&mut old, &mut model, 0, 3_000, 10);
    old.finish(ending()).unwrap();
    let whole = bytes_in(dir.path());
    let name = &segment_files(dir.path())[0];
    let half = std::fs::read(dir.path().join(name)).unwrap();
    std::fs::write(dir.path().join("0000000001.trim"), &half[..half.len() / 2]).unwrap();
    std::fs::write(dir.path().join("1.trim"), b"not ours").unwrap();
    let mut log = Log::new(config, dir.path());
    let reopened = log.reopen().unwrap();
    assert!(
        reopened
            .damage
            .iter()
            .any(|d| d.contains("0000000001.trim") && d.contains("removed")),
        "{:?}",
        reopened.damage
    );
    assert!(!dir.path().join("0000000001.trim").exists());
    assert!(
        dir.path().join("1.trim").exists(),
        "not a name a trim gives"
    );
    assert_eq!(reopened.disk_bytes, whole + 8);
    let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
    assert!(check_seen(&model, 0, &seen).is_empty());
    assert_eq!(seen.ending, Some((3_001, ending())));
}

#[test]
fn a_file_whose_header_is_damaged_can_be_trimmed_and_gets_a_good_header() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(4096, 64 << 20);
    let mut old = Log::new(config.clone(), dir.path());
    let mut model = Model::default();
    fill(&mut old, &mut model, 0, 20_000, 50);
    old.finish(ending()).unwrap();
    drop(old);
    let path = dir.path().join(&segment_files(dir.path())[0]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 8; // its first eid
    std::fs::write(&path, &bytes).unwrap();
    let mut log = Log::new(config.clone(), dir.path());
    let reopened = log.reopen().unwrap();
    assert!(
        reopened
            .damage
            .iter()
            .any(|d| d.contains("header is damaged")),
        "{:?}",
        reopened.damage
    );
    let budget = reopened.disk_bytes / 2;
    assert!(log.set_disk_budget(budget) <= budget);
    let kept = oldest_gone(&mut log, &model, 20_001);
    assert!(kept > 5_000 && kept < 15_000, "kept from {kept}");
    let mut again = Log::new(config, dir.path());
    let reopened = again.reopen().unwrap();
    assert!(reopened.damage.is_empty(), "{:?}", reopened.damage);
    assert_eq!(
        read_to_end(&mut again, 0, 1024, 1 << 20),
        read_to_end(&mut log, 0, 1024, 1 << 20)
    );
}
