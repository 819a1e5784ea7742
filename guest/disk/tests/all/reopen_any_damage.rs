//! Property test over the disk format: for any appends (batches of any
//! size, lines of any length, some partial pieces), finished or not, any
//! single corrupted byte range in any segment file between two hosts, and
//! any budget shrink after the reopen, the reopened log (a) never gives
//! an eid another event than the one logged with it, (b) keeps the
//! terminal event unless the corruption hit its record, and (c) loses
//! only the records the corruption hit and, under the budget, the oldest
//! ones: its gaps say `damaged` over the first and `budget` over the
//! second, and every cursor sees the same.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;

use execd_policy_disk::format::{FILE_HEADER_LEN, Kind};
use execd_policy_disk::{BUDGET, Channel, DAMAGED, Log};

use crate::support::*;

fn text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[a-z0-9 ]{0,40}".prop_map(String::into_bytes),
        1 => "[é日本🚀x]{1,12}".prop_map(String::into_bytes),
        1 => (1usize..3000).prop_map(|n| vec![b'z'; n]),
    ]
}

/// A batch as a pipe read gives it: lines of either pipe, the last of a
/// read sometimes a piece with no `\n` yet.
fn batch() -> impl Strategy<Value = Vec<Line>> {
    prop::collection::vec(
        (any::<bool>(), 0u64..3, text(), prop::bool::weighted(0.2)).prop_map(
            |(err, ts, text, partial)| {
                let channel = if err {
                    Channel::Stderr
                } else {
                    Channel::Stdout
                };
                Line {
                    partial,
                    ..line(channel, ts, text)
                }
            },
        ),
        1..40,
    )
}

/// A corrupted byte range: in which file, where, how long, and the
/// (nonzero) byte each of its bytes is xored with.
#[derive(Clone, Debug)]
struct Corruption {
    file: Index,
    at: Index,
    len: usize,
    xor: u8,
}

/// What the corruption hit, by what the file held before it.
#[derive(Debug, Default)]
struct Hit {
    /// Eids of the lines in the records it fell in. A file header is no
    /// record: damage to it alone costs nothing; damage to it and to the
    /// first record's header leaves nothing to place the file by, which
    /// may cost all of it.
    eids: Vec<u64>,
    /// Whether it fell in the ending record (or may cost its file).
    ending: bool,
}

/// Corrupts a segment file of `dir` as said; returns what it hit.
fn corrupt(dir: &Path, c: &Corruption) -> Hit {
    let files = segment_files(dir);
    let path = dir.join(&files[c.file.index(files.len())]);
    let mut bytes = std::fs::read(&path).unwrap();
    let from = c.at.index(bytes.len());
    let to = (from + c.len).min(bytes.len());
    let mut hit = Hit::default();
    for (at, record) in records(&bytes) {
        let end = at + record.record_len() as usize;
        let unplaced = from < FILE_HEADER_LEN && to > FILE_HEADER_LEN;
        if unplaced || (at < to && end > from) {
            match record.kind {
                Kind::Lines => hit.eids.extend(record.first_eid..record.end_eid()),
                Kind::Ending => hit.ending = true,
            }
        }
    }
    for byte in &mut bytes[from..to] {
        *byte ^= c.xor;
    }
    std::fs::write(&path, &bytes).unwrap();
    hit
}

/// How a reader from `cursor` saw each eid after it: `Ok(line)` served,
/// `Err(reason)` in a gap; eids after the last it saw are absent.
fn view(seen: &Seen) -> BTreeMap<u64, Result<Line, &'static str>> {
    let mut view = BTreeMap::new();
    for (eid, line) in &seen.lines {
        view.insert(*eid, Ok(line.clone()));
    }
    for gap in &seen.gaps {
        let reason = match gap.reason {
            DAMAGED => DAMAGED,
            BUDGET => BUDGET,
            other => panic!("a gap with reason {other}"),
        };
        for eid in gap.from_eid..=gap.to_eid {
            view.insert(eid, Err(reason));
        }
    }
    view
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn what_was_logged_stays_true_through_damage_and_a_smaller_budget(
        batches in prop::collection::vec(batch(), 1..40),
        segment_bytes in prop_oneof![Just(64u64 << 20), 300u64..20_000],
        finished in any::<bool>(),
        corruption in (any::<Index>(), any::<Index>(), prop_oneof![1usize..64, 64usize..4096], 1u8..=255)
            .prop_map(|(file, at, len, xor)| Corruption { file, at, len, xor }),
        shrink in prop::option::of(0u64..=1000),
        cursors in prop::collection::vec(any::<Index>(), 3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = small(4096, segment_bytes);
        let mut log = Log::new(config.clone(), dir.path());
        let mut model = Model::default();
        for lines in &batches {
            log.append(model.batch(lines)).unwrap();
        }
        let lines_end = model.lines.len() as u64;
        if finished {
            log.finish(ending()).unwrap();
        }
        drop(log);
        let hit = corrupt(dir.path(), &corruption);

        let mut log = Log::new(config, dir.path());
        let Ok(reopened) = log.reopen() else {
            // Refused: only when no file could be used, all it held hit.
            prop_assert_eq!(segment_files(dir.path()).len(), 1);
            prop_assert_eq!(hit.eids.len() as u64, lines_end);
            return Ok(());
        };
        if let Some(permille) = shrink {
            log.set_disk_budget(reopened.disk_bytes * permille / 1000);
        }

        let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
        // (a) Every event served is the one logged with its eid.
        for (eid, line) in &seen.lines {
            prop_assert!(*eid <= lines_end, "eid {} never logged", eid);
            prop_assert_eq!(line, &model.lines[*eid as usize - 1], "eid {}", eid);
        }
        if let Some(got) = &seen.ending {
            prop_assert!(finished);
            prop_assert_eq!(got, &(lines_end + 1, ending()));
        }
        // (b) The ending stays unless its record was hit.
        if finished && !hit.ending {
            prop_assert_eq!(&seen.ending, &Some((lines_end + 1, ending())));
        }
        // (c) What is lost is what was hit, or the oldest under the
        // budget; past the last eid seen, only what was hit.
        let first_served = seen.lines.first().map_or(u64::MAX, |(eid, _)| *eid);
        let seen_all = view(&seen);
        for eid in 1..=lines_end {
            match seen_all.get(&eid) {
                Some(Ok(_)) => {}
                Some(Err(reason)) if *reason == DAMAGED => {
                    prop_assert!(hit.eids.contains(&eid), "eid {} said damaged", eid);
                }
                Some(Err(_)) => {
                    prop_assert!(shrink.is_some(), "eid {}: a budget gap, no budget", eid);
                    prop_assert!(eid < first_served, "eid {} dropped, {} kept", eid, first_served);
                }
                None => prop_assert!(hit.eids.contains(&eid), "eid {} lost, not hit", eid),
            }
        }
        // Every cursor sees the same, and a smaller read too.
        let last = seen_all.keys().next_back().copied().unwrap_or(0);
        let cursors = cursors.iter().map(|c| c.index(last as usize + 2) as u64);
        for cursor in cursors.chain([0]) {
            let (max_events, max_bytes) = if cursor == 0 { (7, 300) } else { (100, 10_000) };
            let from_cursor = read_to_end(&mut log, cursor, max_events, max_bytes);
            let want: BTreeMap<_, _> = seen_all.range(cursor + 1..).map(|(k, v)| (*k, v.clone())).collect();
            prop_assert_eq!(view(&from_cursor), want, "from {}", cursor);
            let ending_after = seen.ending.clone().filter(|(eid, _)| *eid > cursor);
            prop_assert_eq!(from_cursor.ending, ending_after);
        }
    }
}
