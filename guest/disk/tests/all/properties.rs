//! Property tests: for any appends, cursors, limits and budgets, reads
//! return exactly the events kept, in order, and gaps cover exactly what
//! was dropped.

use proptest::prelude::*;

use execd_policy_disk::{BUDGET, Channel, Log};

use crate::support::*;

#[derive(Clone, Debug)]
enum Op {
    /// A batch of these lines.
    Append(Vec<Line>),
    /// Reader `n` reads once with these limits.
    Read(usize, u32, u32),
    /// Reader `n` goes away and comes back at cursor 0.
    Restart(usize),
    /// The host lowers (or sets) the budget.
    Budget(u64),
}

fn text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        "[a-z0-9 ]{1,40}".prop_map(String::into_bytes),
        "[é日本🚀\u{FFFD}x]{1,12}".prop_map(String::into_bytes),
        (1usize..3000).prop_map(|n| vec![b'z'; n]),
    ]
}

/// One batch's lines: any pipes, a few timestamps, texts of any size.
pub fn lines() -> impl Strategy<Value = Vec<Line>> {
    prop::collection::vec(
        (any::<bool>(), 0u64..3, text()).prop_map(|(err, ts, text)| {
            let channel = if err {
                Channel::Stderr
            } else {
                Channel::Stdout
            };
            line(channel, ts, text)
        }),
        1..40,
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => lines().prop_map(Op::Append),
        4 => (0usize..3, 0u32..50, 0u32..5000).prop_map(|(r, e, b)| Op::Read(r, e, b)),
        1 => (0usize..3).prop_map(Op::Restart),
        1 => (0u64..200_000).prop_map(Op::Budget),
    ]
}

/// Runs `ops` against a log and three readers, then finishes and drains
/// each reader; checks every answer against the model.
/// Returns the eids each reader missed (the last entry: a fresh reader
/// after the end) and the budget at the end.
fn run(
    ops: &[Op],
    memory_bytes: u64,
    segment_bytes: u64,
    budget: Option<u64>,
) -> (Vec<Vec<u64>>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(memory_bytes, segment_bytes), dir.path());
    let mut budget_now = budget.unwrap_or(u64::MAX);
    log.set_disk_budget(budget_now);
    let mut model = Model::default();
    let mut readers: [(u64, Seen); 3] = Default::default();
    let mut missed = vec![Vec::new(); 3];
    for op in ops {
        match op {
            Op::Append(lines) => {
                let stored = log.append(model.batch(lines)).unwrap();
                assert_eq!(stored.last_eid, model.lines.len() as u64);
                assert!(stored.disk_bytes <= budget_now);
                assert_eq!(stored.disk_bytes, bytes_in(dir.path()));
            }
            Op::Read(r, max_events, max_bytes) => {
                let (cursor, seen) = &mut readers[*r];
                if let Some(next) = apply(
                    seen,
                    *cursor,
                    log.read_inline(*cursor, *max_events, *max_bytes),
                ) {
                    *cursor = next;
                }
            }
            Op::Restart(r) => {
                let (cursor, seen) = std::mem::take(&mut readers[*r]);
                missed[*r].extend(check_until(&model, &seen, cursor));
            }
            Op::Budget(b) if budget.is_some() => {
                budget_now = budget_now.min(*b);
                let on_disk = log.set_disk_budget(budget_now);
                assert!(on_disk <= budget_now);
                assert_eq!(on_disk, bytes_in(dir.path()));
            }
            Op::Budget(_) => {}
        }
    }
    log.finish(crate::support::ending()).unwrap();
    let last = model.lines.len() as u64 + 1;
    for (r, (cursor, seen)) in readers.iter_mut().enumerate() {
        let mut more = read_to_end(&mut log, *cursor, 17, 900);
        assert_eq!(more.ending, Some((last, crate::support::ending())));
        seen.lines.append(&mut more.lines);
        seen.gaps.append(&mut more.gaps);
        missed[r].extend(check_seen(&model, 0, seen));
    }
    // A fresh reader from 0 after the end.
    let seen = read_to_end(&mut log, 0, 1024, 1 << 20);
    missed.push(check_seen(&model, 0, &seen));
    if budget.is_none() {
        assert!(seen.gaps.is_empty());
    } else {
        assert!(seen.gaps.iter().all(|g| g.reason == BUDGET));
    }
    (missed, budget_now)
}

/// Checks what a reader saw up to `cursor` (it stopped there).
fn check_until(model: &Model, seen: &Seen, cursor: u64) -> Vec<u64> {
    let partial = Model {
        lines: model.lines[..cursor as usize].to_vec(),
    };
    check_seen(&partial, 0, seen)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn unbounded_logs_lose_nothing(
        ops in prop::collection::vec(op(), 1..120),
        memory_bytes in 1u64..20_000,
        segment_bytes in 100u64..30_000,
    ) {
        for missed in run(&ops, memory_bytes, segment_bytes, None).0 {
            prop_assert!(missed.is_empty(), "missed {missed:?}");
        }
    }

    #[test]
    fn budgets_drop_only_the_oldest(
        ops in prop::collection::vec(op(), 1..120),
        memory_bytes in 1u64..20_000,
        segment_bytes in 100u64..30_000,
        budget in prop_oneof![0u64..300_000, (256u64 << 10)..(1 << 20)],
    ) {
        let (missed, budget) = run(&ops, memory_bytes, segment_bytes, Some(budget));
        // Records fit a budget of 256 KiB (a batch is < 40 × 3000 bytes
        // plus headers): then only the oldest lines are ever missing.
        if budget >= 256 << 10 {
            let fresh = missed.last().unwrap();
            let prefix: Vec<u64> = (1..=fresh.len() as u64).collect();
            prop_assert_eq!(fresh, &prefix);
        }
    }
}
