//! What was logged stays true (issue 19): a restart with a smaller budget,
//! a full disk and a damaged file cost output, said with one `gap`, but
//! never the terminal event, and no eid ever names another event than the
//! one it named before, over any number of restarts.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::{Event, Host, Stream, TempDir, init_id};
use crate::lossless::SmallFs;

/// The events a resume after `after` gets, every one (gaps included).
async fn resumed(host: &Host, id: &str, after: u64) -> Vec<Event> {
    let mut stream: Stream = host.resume(id, after).await;
    assert_eq!(stream.status, 200, "resume {id} after {after}");
    stream.events().await
}

/// Checks a resume's answer against what was logged (`before[eid - 1]`):
/// every event it names is the one logged under that eid, the gaps say
/// `reason` and, with the events, cover every eid after the cursor once,
/// and the terminal event is the one logged. Returns the gaps, as
/// `(from, to)`.
fn same_history(events: &[Event], before: &[Value], after: u64, reason: &str) -> Vec<(u64, u64)> {
    let mut next = after + 1;
    let mut gaps = Vec::new();
    for event in events {
        if event.kind() == "gap" {
            assert_eq!(event.data["from_eid"], next, "{:?}", event.data);
            assert_eq!(event.data["reason"], reason, "{:?}", event.data);
            let to = event.data["to_eid"].as_u64().expect("to_eid");
            gaps.push((next, to));
            next = to + 1;
            continue;
        }
        let Some(eid) = event.eid() else { continue };
        assert_eq!(eid, next, "eids in order, nothing repeated");
        assert_eq!(
            &event.data,
            &before[eid as usize - 1],
            "eid {eid} names what it named before"
        );
        next += 1;
    }
    assert_eq!(next as usize, before.len() + 1, "up to the terminal event");
    assert!(
        events.last().is_some_and(Event::is_terminal),
        "the terminal event ends it"
    );
    gaps
}

/// A state directory, and the flags that put a host on it.
fn state_args<'a>(state: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--state-dir", state];
    args.extend_from_slice(extra);
    args
}

/// Runs `command` to its end on `host` and returns every event it logged,
/// as read live.
async fn run_to_end(host: &Host, command: &str) -> (String, Vec<Value>) {
    let mut stream = host.run(json!({ "command": command })).await;
    let id = init_id(&mut stream).await;
    let events: Vec<Value> = stream
        .events()
        .await
        .into_iter()
        .filter(|e| e.eid().is_some())
        .map(|e| e.data)
        .collect();
    assert!(
        events
            .last()
            .is_some_and(|e| e["type"] == "execution_complete"),
        "it completed"
    );
    (id, events)
}

/// The segment files of a command's log, in order.
fn segments(state: &Path, id: &str) -> Vec<PathBuf> {
    let dir = state.join(format!("{id}.log"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the log's directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Item 1: a restart with half the disk budget keeps the newest output and
/// the terminal event, every cursor sees the same, and a third host sees
/// it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smaller_budget_costs_the_oldest_output_and_never_the_ending() {
    let dir = TempDir::new("history-budget");
    let state = dir.0.join("state");
    let state_s = state.to_str().expect("utf-8");
    let lines = 1_400_000u64;
    let host = Host::start(&state_args(state_s, &["--disk-budget", "20M"])).await;
    let (id, before) = run_to_end(&host, &format!("seq 1 {lines}")).await;
    assert_eq!(before.len() as u64, lines + 1);
    assert!(host.terminate().await.success());

    let mut kept_from = None;
    for round in 0..2 {
        let host = Host::start(&state_args(state_s, &["--disk-budget", "10M"])).await;
        let from_start = resumed(&host, &id, 0).await;
        let gaps = same_history(&from_start, &before, 0, "budget");
        assert!(gaps.len() <= 1, "one gap for what is gone: {gaps:?}");
        // What is gone is the oldest: the gap, if any, starts at eid 1.
        let first_kept = gaps.first().map_or(1, |&(_, to)| to + 1);
        assert!(
            first_kept <= lines,
            "the newest output is kept (from eid {first_kept})"
        );
        if let Some(earlier) = kept_from {
            assert_eq!(first_kept, earlier, "round {round}: the same view again");
        }
        kept_from = Some(first_kept);
        let from_1000 = resumed(&host, &id, 1000).await;
        let gaps = same_history(&from_1000, &before, 1000, "budget");
        let seen_from = gaps.first().map_or(1001, |&(_, to)| to + 1);
        assert_eq!(
            seen_from,
            first_kept.max(1001),
            "a later cursor sees the same kept range"
        );
        let status = host.status(&id).await;
        assert_eq!(status["exit_code"], 0, "{status}");
        assert!(!segments(&state, &id).is_empty(), "its files are kept");
        assert!(host.terminate().await.success());
    }
}

/// Item 5: 16 bytes flipped in the middle of a finished log's only
/// segment cost exactly the damaged record: a `damaged` gap over its
/// eids, every other event as it was, and the terminal event as it was,
/// on this restart and the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_costs_the_damaged_record_and_never_the_ending() {
    let dir = TempDir::new("history-damage");
    let state = dir.0.join("state");
    let state_s = state.to_str().expect("utf-8");
    let lines = 200_000u64;
    let host = Host::start(&state_args(state_s, &[])).await;
    let (id, before) = run_to_end(&host, &format!("seq 1 {lines}")).await;
    assert!(host.terminate().await.success());

    let files = segments(&state, &id);
    assert_eq!(files.len(), 1, "one segment: {files:?}");
    let mut bytes = std::fs::read(&files[0]).expect("the segment");
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&files[0], bytes).expect("damaged");

    let mut first_view = None;
    for round in 0..2 {
        let host = Host::start(&state_args(state_s, &[])).await;
        let events = resumed(&host, &id, 0).await;
        let gaps = same_history(&events, &before, 0, "damaged");
        assert_eq!(gaps.len(), 1, "the damage is said: {gaps:?}");
        let (from, to) = gaps[0];
        assert!(
            to < lines,
            "what follows the damaged record is read again: gap {from}..={to}"
        );
        // One record is one pipe read's worth of lines: far fewer than a
        // tenth of the output.
        assert!(
            to - from < lines / 10,
            "only the damaged record is lost: gap {from}..={to}"
        );
        if round == 0 {
            assert!(
                host.stderr().contains("damaged"),
                "the host's log says so: {}",
                host.stderr()
            );
        }
        // A gap's timestamp is when it was sent; the rest is history.
        let view: Vec<Value> = events
            .iter()
            .map(|e| {
                let mut data = e.data.clone();
                if e.kind() == "gap" {
                    data.as_object_mut().map(|o| o.remove("timestamp"));
                }
                data
            })
            .collect();
        if let Some(first) = &first_view {
            assert_eq!(&view, first, "round {round}: the same view again");
        }
        first_view = Some(view);
        let status = host.status(&id).await;
        assert_eq!(status["exit_code"], 0, "{status}");
        assert!(host.terminate().await.success());
    }
}

/// Item 3: a command whose terminal event was delivered live while the
/// disk was full keeps it, eid and all, after an orderly restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ending_delivered_on_a_full_disk_survives_a_restart() {
    let Some(fs) = SmallFs::mount("history-full", "3m") else {
        return;
    };
    let state_s = fs.0.to_str().expect("utf-8").to_string();
    let lines = 1_000_000u64;
    // A budget far above the 3 MiB there are: the disk fills first.
    let flags = [
        "--disk-budget",
        "1G",
        "--policy-config",
        "memory-bytes=65536",
    ];
    let host = Host::start(&state_args(&state_s, &flags)).await;
    let mut stream = host.run(json!({"command": format!("seq 1 {lines}")})).await;
    let id = init_id(&mut stream).await;
    let live = stream.events().await;
    let end = live.last().expect("the terminal event").clone();
    assert!(end.is_terminal(), "{:?}", end.data);
    assert_eq!(end.eid(), Some(lines + 1));
    assert!(
        live.iter()
            .any(|e| e.kind() == "gap" && e.data["reason"] == "io")
            || host.stderr().contains("could not store"),
        "the disk did fill: {}",
        host.stderr()
    );
    assert!(host.terminate().await.success());

    for _ in 0..2 {
        let host = Host::start(&state_args(&state_s, &flags)).await;
        let events = resumed(&host, &id, 0).await;
        let last = events.last().expect("events");
        assert_eq!(last.data, end.data, "the same terminal event, same eid");
        let status = host.status(&id).await;
        assert_eq!(status["exit_code"], 0, "{status}");
        let mut next = 1;
        for event in &events {
            if event.kind() == "gap" {
                assert_eq!(event.data["from_eid"], next, "{:?}", event.data);
                assert_eq!(
                    event.data["reason"],
                    "io",
                    "{:?}: {}",
                    event.data,
                    host.stderr()
                );
                next = event.data["to_eid"].as_u64().expect("to_eid") + 1;
            } else if let Some(eid) = event.eid() {
                assert_eq!(eid, next);
                next += 1;
            }
        }
        assert_eq!(next, lines + 2);
        assert!(host.terminate().await.success());
    }
}

/// A command still running when its host was SIGKILLed, whose log's last
/// record is then damaged: its `HostRestarted` ending takes an eid after
/// every eid a reader of the dead host saw (the host's high-water mark),
/// never one of them, and the lost eids are one `damaged` gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_commands_ending_never_takes_an_eid_a_reader_saw() {
    let dir = TempDir::new("history-running");
    let state = dir.0.join("state");
    let state_s = state.to_str().expect("utf-8");
    let lines = 50_000u64;
    let host = Host::start(&state_args(state_s, &[])).await;
    let mut stream = host
        .run(json!({ "command": format!("seq 1 {lines}; sleep 60") }))
        .await;
    let id = init_id(&mut stream).await;
    let mut before = Vec::new();
    while (before.len() as u64) < lines {
        let event = stream.next_event().await.expect("the lines");
        if event.eid().is_some() {
            before.push(event.data);
        }
    }
    host.kill().await;

    // The last record: 16 bytes flipped a little before the file's end.
    let files = segments(&state, &id);
    let last = files.last().expect("a segment");
    let mut bytes = std::fs::read(last).expect("the segment");
    let at = bytes.len() - 64;
    for b in &mut bytes[at..at + 16] {
        *b ^= 0xff;
    }
    std::fs::write(last, bytes).expect("damaged");

    let mut first_end = None;
    for _ in 0..2 {
        let host = Host::start(&state_args(state_s, &[])).await;
        let events = resumed(&host, &id, 0).await;
        let mut next = 1u64;
        let mut gaps = 0;
        for event in &events {
            if event.kind() == "gap" {
                assert_eq!(event.data["from_eid"], next, "{:?}", event.data);
                assert_eq!(event.data["reason"], "damaged", "{:?}", event.data);
                next = event.data["to_eid"].as_u64().expect("to_eid") + 1;
                gaps += 1;
                continue;
            }
            let Some(eid) = event.eid() else { continue };
            assert_eq!(eid, next, "eids in order");
            next += 1;
            if event.is_terminal() {
                break;
            }
            assert_eq!(
                &event.data,
                &before[eid as usize - 1],
                "eid {eid} names what it named before"
            );
        }
        assert_eq!(gaps, 1, "the damaged record is said");
        let end = events.last().expect("events");
        assert!(end.is_terminal(), "{:?}", end.data);
        assert_eq!(
            end.data["error"]["ename"], "HostRestarted",
            "{:?}",
            end.data
        );
        let end_eid = end.eid().expect("its eid");
        assert!(
            end_eid > lines,
            "the ending takes eid {end_eid}, which a reader saw naming a line"
        );
        if let Some(first) = first_end {
            assert_eq!(end_eid, first, "the same ending on the next restart");
        }
        first_end = Some(end_eid);
        host.stop().await;
    }
}
