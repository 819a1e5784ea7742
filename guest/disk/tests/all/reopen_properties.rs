//! Property tests of reopening: for any log and any cut of its last file,
//! the reopened log serves exactly a prefix of what was logged, cut at a
//! whole record; for any damage to any file, it never panics, never
//! serves an event that was not logged, and covers every eid it does not
//! serve with a gap.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;

use execd_policy_disk::format::{self, FILE_HEADER_LEN, FileHeader};
use execd_policy_disk::{BUDGET, Ending, Log};

use crate::properties::lines;
use crate::support::*;

/// Writes `batches` to a log in `dir` (under `budget`, if any), finishes
/// it if `finished`, and drops it as a dying host would. Returns the
/// model and the eid after each batch.
fn leave(
    dir: &Path,
    batches: &[Vec<Line>],
    memory_bytes: u64,
    segment_bytes: u64,
    budget: Option<u64>,
    finished: bool,
) -> (Model, Vec<u64>) {
    let mut log = Log::new(small(memory_bytes, segment_bytes), dir);
    if let Some(budget) = budget {
        log.set_disk_budget(budget);
    }
    let mut model = Model::default();
    let mut ends = Vec::new();
    for lines in batches {
        log.append(model.batch(lines)).unwrap();
        ends.push(model.lines.len() as u64 + 1);
    }
    if finished {
        log.finish(ending()).unwrap();
    }
    (model, ends)
}

/// The eid after the whole records of `bytes` (a segment file) that end
/// at or before `len`; `None` when `len` cuts its header.
fn whole_up_to(bytes: &[u8], len: usize) -> Option<u64> {
    let header = FileHeader::decode(bytes).ok()?;
    if len < FILE_HEADER_LEN {
        return None;
    }
    let mut end = header.first_eid;
    for (at, record) in records(bytes) {
        if at + record.record_len() as usize > len {
            break;
        }
        if record.kind == format::Kind::Lines {
            end = record.end_eid();
        }
    }
    Some(end)
}

/// Whether `len` falls on a record boundary of `bytes` (after the header).
fn on_a_boundary(bytes: &[u8], len: usize) -> bool {
    len == FILE_HEADER_LEN
        || records(bytes)
            .iter()
            .any(|(at, r)| at + r.record_len() as usize == len)
}

/// Checks what a reader saw from 0: an optional leading `budget` gap
/// (exact bytes when given), then lines `..end` as logged.
fn a_prefix(model: &Model, seen: &Seen, end: u64) -> Result<(), TestCaseError> {
    prop_assert!(seen.gaps.len() <= 1, "{:?}", seen.gaps);
    if let Some(gap) = seen.gaps.first() {
        prop_assert_eq!((gap.from_eid, gap.reason), (1, BUDGET));
    }
    let prefix = Model {
        lines: model.lines[..end as usize - 1].to_vec(),
    };
    check_seen(&prefix, 0, seen);
    Ok(())
}

/// Damage done to a directory a log left.
#[derive(Clone, Debug)]
enum Damage {
    /// Xor a byte of a segment file.
    Flip(Index, Index, u8),
    /// Cut a segment file short.
    Truncate(Index, Index),
    /// Zero a stretch of a segment file (a lost page).
    Zero(Index, Index, u16),
    /// Write bytes under a name: a segment's (`seq`), or another.
    Garbage(Option<u64>, Vec<u8>),
    /// A segment header (that may lie) followed by bytes, as segment `seq`.
    Header(u64, u64, u64, Vec<u8>),
    /// Copy a segment file to segment `seq`.
    Copy(Index, u64),
    Remove(Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    let bytes = prop::collection::vec(any::<u8>(), 0..200);
    prop_oneof![
        4 => (any::<Index>(), any::<Index>(), 1u8..=255).prop_map(|(f, a, x)| Damage::Flip(f, a, x)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(f, a)| Damage::Truncate(f, a)),
        1 => (any::<Index>(), any::<Index>(), any::<u16>()).prop_map(|(f, a, n)| Damage::Zero(f, a, n)),
        1 => (prop::option::of(0u64..30), bytes.clone()).prop_map(|(s, b)| Damage::Garbage(s, b)),
        1 => (0u64..30, 0u64..3000, 0u64..200_000, bytes).prop_map(|(s, e, t, b)| Damage::Header(s, e, t, b)),
        1 => (any::<Index>(), 0u64..30).prop_map(|(f, s)| Damage::Copy(f, s)),
        1 => any::<Index>().prop_map(Damage::Remove),
    ]
}

fn seg(dir: &Path, seq: u64) -> std::path::PathBuf {
    dir.join(format!("{seq:010}.seg"))
}

/// Does `damage` to the segment files of `dir`.
fn apply_damage(dir: &Path, damage: &Damage) {
    let files = segment_files(dir);
    let pick = |i: &Index| (!files.is_empty()).then(|| dir.join(&files[i.index(files.len())]));
    let edit = |i: &Index, change: &dyn Fn(&mut Vec<u8>)| {
        if let Some(path) = pick(i) {
            let mut bytes = std::fs::read(&path).unwrap();
            change(&mut bytes);
            std::fs::write(&path, &bytes).unwrap();
        }
    };
    match damage {
        Damage::Flip(file, at, xor) => edit(file, &|b| {
            if !b.is_empty() {
                let i = at.index(b.len());
                b[i] ^= xor;
            }
        }),
        Damage::Truncate(file, at) => edit(file, &|b| b.truncate(at.index(b.len() + 1))),
        Damage::Zero(file, at, n) => edit(file, &|b| {
            let from = at.index(b.len() + 1);
            let to = (from + *n as usize).min(b.len());
            b[from..to].fill(0);
        }),
        Damage::Garbage(seq, bytes) => {
            let path = seq.map_or_else(|| dir.join("stray.tmp"), |s| seg(dir, s));
            std::fs::write(path, bytes).unwrap();
        }
        Damage::Header(seq, first_eid, text_offset, bytes) => {
            let header = FileHeader {
                first_eid: *first_eid,
                text_offset: *text_offset,
            };
            let mut file = header.encode().to_vec();
            file.extend_from_slice(bytes);
            std::fs::write(seg(dir, *seq), file).unwrap();
        }
        Damage::Copy(file, seq) => {
            if let Some(path) = pick(file) {
                let bytes = std::fs::read(path).unwrap();
                std::fs::write(seg(dir, *seq), bytes).unwrap();
            }
        }
        Damage::Remove(file) => {
            if let Some(path) = pick(file) {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
}

/// Reads `log` from `cursor` to its end and checks every line served is
/// the one logged with its eid (gaps may say anything about bytes: a
/// damaged header may lie), and that the ending, if any, is one of
/// `endings` (those logged). `apply` checks that every answer follows
/// on, so every eid is served once or inside a gap.
fn only_logged(
    log: &mut Log,
    model: &Model,
    cursor: u64,
    limits: (u32, u32),
    endings: &[(u64, Ending)],
) -> Result<Seen, TestCaseError> {
    let seen = read_to_end(log, cursor, limits.0, limits.1);
    let mut next = cursor + 1;
    let mut gaps = seen.gaps.iter().peekable();
    for (eid, line) in &seen.lines {
        while let Some(gap) = gaps.next_if(|g| g.from_eid == next) {
            next = gap.to_eid + 1;
        }
        prop_assert_eq!(*eid, next, "lines and gaps in eid order");
        prop_assert!(
            *eid as usize <= model.lines.len(),
            "eid {} never logged",
            eid
        );
        prop_assert_eq!(line, &model.lines[*eid as usize - 1], "eid {}", eid);
        next += 1;
    }
    if let Some(got) = &seen.ending {
        prop_assert!(endings.contains(got), "ending {:?} never logged", got);
    }
    Ok(seen)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_cut_last_file_reopens_to_a_prefix_cut_at_a_whole_record(
        batches in prop::collection::vec(lines(), 1..30),
        memory_bytes in 1u64..20_000,
        segment_bytes in 100u64..30_000,
        budget in prop::option::of(20_000u64..1_000_000),
        finished in any::<bool>(),
        cut in any::<Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (model, ends) = leave(dir.path(), &batches, memory_bytes, segment_bytes, budget, finished);
        let files = segment_files(dir.path());
        prop_assume!(!files.is_empty());
        let last = dir.path().join(files.last().unwrap());
        let bytes = std::fs::read(&last).unwrap();
        let had_ending = format::scan(&bytes[..]).unwrap().ending.is_some();
        let len = cut.index(bytes.len() + 1);
        std::fs::write(&last, &bytes[..len]).unwrap();

        let config = small(memory_bytes, segment_bytes);
        let mut log = Log::new(config.clone(), dir.path());
        let reopened = log.reopen().unwrap();
        // Where the lines end: at the last whole record before the cut, or
        // where the file before it ended when the cut took the header.
        let end = match whole_up_to(&bytes, len) {
            Some(end) => end,
            None if files.len() > 1 => FileHeader::decode(&bytes).unwrap().first_eid,
            None => 1,
        };
        prop_assert!(end == 1 || ends.contains(&end), "{} is no batch's end", end);
        let ended = had_ending && len == bytes.len();
        prop_assert_eq!(reopened.ending.is_some(), ended);
        prop_assert_eq!(reopened.last_eid, if ended { end } else { end - 1 });
        let clean = len == bytes.len() || (len >= FILE_HEADER_LEN && on_a_boundary(&bytes, len));
        prop_assert_eq!(reopened.damage.is_empty(), clean, "{:?}", reopened.damage);
        prop_assert_eq!(reopened.disk_bytes, bytes_in(dir.path()));
        let seen = read_to_end(&mut log, 0, 13, 2_000);
        a_prefix(&model, &seen, end)?;
        prop_assert_eq!(seen.ending.is_some(), ended);

        if !ended {
            // The restarted host ends the log; a second restart finds it.
            log.set_disk_budget(budget.unwrap_or(u64::MAX));
            prop_assert_eq!(log.finish(host_restarted()).unwrap().last_eid, end);
            let mut again = Log::new(config, dir.path());
            let reopened = again.reopen().unwrap();
            prop_assert_eq!(reopened.damage, Vec::<String>::new());
            prop_assert_eq!((reopened.last_eid, reopened.ending), (end, Some(host_restarted())));
            let seen = read_to_end(&mut again, 0, 1024, 1 << 20);
            a_prefix(&model, &seen, end)?;
            prop_assert_eq!(seen.ending, Some((end, host_restarted())));
        }
    }

    #[test]
    fn damaged_files_never_yield_an_event_that_was_not_logged(
        batches in prop::collection::vec(lines(), 1..30),
        segment_bytes in 100u64..30_000,
        finished in any::<bool>(),
        damages in prop::collection::vec(damage(), 1..6),
        cursors in prop::collection::vec(any::<Index>(), 3),
        limits in (1u32..100, 0u32..5_000),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (model, _) = leave(dir.path(), &batches, 4096, segment_bytes, None, finished);
        for damage in &damages {
            apply_damage(dir.path(), damage);
        }
        let config = small(4096, segment_bytes);
        let mut log = Log::new(config.clone(), dir.path());
        let Ok(reopened) = log.reopen() else {
            // Refused: there must have been segment files to refuse.
            prop_assert!(!segment_files(dir.path()).is_empty());
            return Ok(());
        };
        prop_assert_eq!(reopened.disk_bytes, bytes_in(dir.path()));
        let last = reopened.last_eid;
        let mut endings = Vec::new();
        if finished {
            endings.push((model.lines.len() as u64 + 1, ending()));
        }
        let cursors = cursors.iter().map(|c| c.index(last as usize + 2) as u64);
        for cursor in std::iter::once(0).chain(cursors) {
            only_logged(&mut log, &model, cursor, limits, &endings)?;
        }
        if reopened.ending.is_none() {
            let stored = log.finish(host_restarted()).unwrap();
            prop_assert_eq!(stored.last_eid, last + 1);
            endings.push((last + 1, host_restarted()));
            let seen = only_logged(&mut log, &model, 0, limits, &endings)?;
            prop_assert_eq!(seen.ending, Some((last + 1, host_restarted())));
            // A second restart finds the same log, and its ending.
            let mut again = Log::new(config, dir.path());
            let reopened = again.reopen().unwrap();
            prop_assert_eq!((reopened.last_eid, reopened.ending), (last + 1, Some(host_restarted())));
            let seen = only_logged(&mut again, &model, 0, limits, &endings)?;
            prop_assert_eq!(seen.ending, Some((last + 1, host_restarted())));
        }
    }
}
