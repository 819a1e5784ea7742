//! Lossless reads: every reader gets every event once, in order, from
//! memory or from the files, whatever its cursor and limits.

use execd_policy_disk::{Batch, Channel, Config, Log, ReadResult, Run, TextSpan, format};

use crate::support::*;

#[test]
fn eids_follow_on_across_batches_and_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(Config::default(), dir.path());
    let mut model = Model::default();
    assert_eq!(log.read_inline(0, 10, 100), ReadResult::Pending);
    let a = model.batch(&numbered(0, 2));
    assert_eq!(log.append(a).unwrap().last_eid, 2);
    let b = model.batch(&numbered(2, 3));
    assert_eq!(log.append(b).unwrap().last_eid, 3);
    assert_eq!(log.read_inline(3, 10, 100), ReadResult::Pending);
    assert_eq!(log.finish(ending()).unwrap().last_eid, 4);
    let seen = read_to_end(&mut log, 0, 100, 1 << 20);
    assert!(check_seen(&model, 0, &seen).is_empty());
    assert_eq!(seen.ending, Some((4, ending())));
    assert_eq!(log.read_inline(4, 10, 100), ReadResult::Finished);
    assert_eq!(log.read_inline(9, 10, 100), ReadResult::Finished);
    assert!(log.append(model.batch(&numbered(3, 4))).is_err());
    assert!(log.finish(ending()).is_err());
}

#[test]
fn replays_everything_from_the_files_with_a_small_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(4096, 16 << 10), dir.path());
    let mut model = Model::default();
    fill(&mut log, &mut model, 0, 30_000, 37);
    log.finish(ending()).unwrap();
    assert!(segment_files(dir.path()).len() > 10, "several segments");
    assert!(log.tail_bytes() < 8192, "the tail stays small");
    for (cursor, max_events, max_bytes) in [(0, 1024, 256 << 10), (0, 7, 100), (12_345, 1, 0)] {
        let seen = read_to_end(&mut log, cursor, max_events, max_bytes);
        assert!(check_seen(&model, cursor, &seen).is_empty(), "no gap");
        assert_eq!(seen.ending, Some((30_001, ending())));
    }
}

#[test]
fn a_replay_from_the_files_leaves_the_text_in_them_for_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(4096, 16 << 10), dir.path());
    let mut model = Model::default();
    fill(&mut log, &mut model, 0, 3_000, 37);
    let mut cursor = 0;
    let mut from_files = 0;
    while cursor < 3_000 {
        let ReadResult::Events(events) = log.read(cursor, 100, 4096) else {
            panic!("events after {cursor}");
        };
        let mut text = events.batch.text.clone();
        if !events.text_in_files.is_empty() {
            from_files += 1;
            assert!(events.batch.text.is_empty(), "none of it copied in");
        }
        for span in &events.text_in_files {
            let name = TextSpan::file_name(span.file);
            assert!(segment_files(dir.path()).contains(&name), "{span:?}");
            assert!(span.len > 0, "no empty span");
            let bytes = std::fs::read(dir.path().join(name)).unwrap();
            let at = span.offset as usize;
            text.extend_from_slice(&bytes[at..at + span.len as usize]);
        }
        let mut at = 0;
        for (i, &len) in events.batch.lens.iter().enumerate() {
            let line = &model.lines[(cursor + i as u64) as usize];
            assert_eq!(text[at..at + len as usize], line.text[..]);
            at += len as usize;
        }
        assert_eq!(at, text.len(), "no byte more than the lines'");
        cursor += events.batch.len() as u64;
    }
    assert!(from_files > 10, "most of it was in the files: {from_files}");
    // What the tail still holds comes inline.
    let ReadResult::Events(newest) = log.read(2_999, 10, 4096) else {
        panic!("the newest line");
    };
    assert!(newest.text_in_files.is_empty());
    assert_eq!(newest.batch.text, model.lines[2_999].text);
}

#[test]
fn reads_from_any_cursor_in_a_large_segment() {
    // One segment of several MiB: a fresh cursor starts from the nearest
    // checkpoint, not from the file's start.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(64 << 10, 64 << 20), dir.path());
    let mut model = Model::default();
    fill(&mut log, &mut model, 0, 300_000, 100);
    assert_eq!(segment_files(dir.path()).len(), 1);
    for cursor in [0, 1, 99, 100, 101, 4_321, 150_000, 299_000, 299_998] {
        let ReadResult::Events(events) = log.read_inline(cursor, 5, 1 << 20) else {
            panic!("events at {cursor}");
        };
        let mut seen = Seen::default();
        apply(&mut seen, cursor, ReadResult::Events(events));
        let want: Vec<_> = (cursor + 1..=(cursor + 5).min(300_000))
            .map(|eid| (eid, model.lines[eid as usize - 1].clone()))
            .collect();
        assert_eq!(seen.lines, want, "from {cursor}");
    }
}

#[test]
fn reads_keep_to_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(4096, 1 << 20), dir.path());
    let mut model = Model::default();
    let texts: Vec<Line> = (0..500)
        .map(|_| line(Channel::Stdout, 1, "0123456789"))
        .collect();
    log.append(model.batch(&texts)).unwrap();
    // From the files (eid 1 left the tail) and from memory (eid 499).
    for cursor in [0, 498] {
        let count = |r: ReadResult| match r {
            ReadResult::Events(e) => e.batch.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(count(log.read_inline(cursor, 1, 1 << 20)), 1);
        assert_eq!(
            count(log.read_inline(cursor, 0, 1 << 20)),
            1,
            "at least one"
        );
        assert_eq!(count(log.read_inline(cursor, 100, 0)), 1, "at least one");
        // 42 bytes an event: the second crosses 50.
        assert_eq!(count(log.read_inline(cursor, 100, 50)), 2);
    }
}

#[test]
fn pipes_times_and_multibyte_texts_survive_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(1, 4096), dir.path());
    let mut model = Model::default();
    for k in 0..50u64 {
        let lines = [
            line(Channel::Stdout, 10 + k, "héllo"),
            line(Channel::Stdout, 10 + k, ""),
            line(Channel::Stderr, 10 + k, "日本語 🚀"),
            line(Channel::Stdout, 11 + k, "\u{FFFD}"),
        ];
        log.append(model.batch(&lines)).unwrap();
    }
    log.finish(ending()).unwrap();
    for max_events in [1, 3, 1000] {
        let seen = read_to_end(&mut log, 0, max_events, 1 << 20);
        assert!(check_seen(&model, 0, &seen).is_empty());
    }
}

#[test]
fn rejects_batches_whose_columns_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(Config::default(), dir.path());
    let mut b = Batch::default();
    b.push(Channel::Stdout, 1, b"a", false);
    b.push(Channel::Stdout, 1, b"b", false);
    b.runs[0].lines = 1;
    assert!(log.append(b).is_err());
    let mut b = Batch::default();
    b.push(Channel::Stdout, 1, b"abc", false);
    b.text.push(b'!');
    assert!(log.append(b).is_err());
    let mut b = Batch::default();
    b.push(Channel::Stdout, 1, b"a", false);
    b.runs.push(Run {
        channel: Channel::Stderr,
        timestamp_ms: 1,
        lines: 0,
        partial: false,
    });
    assert!(log.append(b).is_err());
    // Nothing was logged by the rejected batches.
    assert_eq!(log.stored().last_eid, 0);
}

#[test]
fn files_are_self_describing_and_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new(small(4096, 8 << 10), dir.path());
    let mut model = Model::default();
    fill(&mut log, &mut model, 0, 5_000, 13);
    let stored = log.finish(ending()).unwrap();
    assert_eq!(stored.disk_bytes, bytes_in(dir.path()));
    // Each file picks up where the previous one ended; the last holds
    // the ending.
    let mut next = (1, 0);
    let files = segment_files(dir.path());
    for (i, name) in files.iter().enumerate() {
        let file = std::fs::File::open(dir.path().join(name)).unwrap();
        let scan = format::scan(std::io::BufReader::new(file)).unwrap();
        assert_eq!(scan.cut, None, "{name}");
        assert_eq!((scan.header.first_eid, scan.header.text_offset), next);
        next = (scan.end_eid, scan.text_end);
        assert_eq!(scan.ending.is_some(), i == files.len() - 1);
    }
    assert_eq!(next, (5_001, model.bytes(1, 5_000)));
}
