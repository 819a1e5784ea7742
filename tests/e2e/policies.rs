//! Policies: the shipped `spill`, a component loaded from a path (the
//! template), and hostile components that must not hurt the host.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_policy_builds_loads_and_serves() {
    let wasm = build_policy("execd-policy-template", None).await;
    let path = wasm.to_str().expect("utf-8 path");
    let host = Host::start(&["--policy", path, "--policy-config", "max-events=5"]).await;
    let mut stream = host.run(json!({ "command": "seq 1 20" })).await;
    let id = init_id(&mut stream).await;
    // The first stream is a reader like any other: it may start with a gap.
    let events = stream.events().await;
    let after = events
        .iter()
        .find(|e| e.kind() == "gap")
        .map_or(0, |g| g.data["to_eid"].as_u64().unwrap_or(0));
    let rest: Vec<Event> = events.into_iter().filter(|e| e.kind() != "gap").collect();
    assert_eq!(logged(&rest, after).last().and_then(Event::eid), Some(21));
    // Bounded to 5 lines (and the terminal event): a resume from 0 starts
    // with a gap.
    let replay = host.resume(&id, 0).await.events().await;
    assert_eq!(replay[0].kind(), "gap");
    assert_eq!(
        (
            replay[0].data["from_eid"].as_u64(),
            replay[0].data["to_eid"].as_u64()
        ),
        (Some(1), Some(15))
    );
    logged(&replay[1..], 15);
    // The template rejects settings it does not know.
    let err = Host::try_start(&["--policy", path, "--policy-config", "shape=round"])
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("rejected its configuration") && err.contains("shape"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_wit_version_stops_the_host_at_start() {
    let wasm = build_policy("execd-test-policies", Some("incompatible-wit")).await;
    let path = wasm.to_str().expect("utf-8 path");
    let err = Host::try_start(&["--policy", path])
        .await
        .err()
        .expect("refused");
    assert!(err.contains(path), "names the file: {err}");
    assert!(
        err.contains("built against execd:resume@0.2.0")
            && err.contains("this host speaks execd:resume@0.6.0"),
        "says which version it was built for and which the host speaks: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spill_keeps_everything_with_bounded_memory() {
    let state = std::env::temp_dir().join(format!("execd-spill-test-{}", std::process::id()));
    let state_arg = state.to_str().expect("utf-8 path").to_string();
    let host = Host::start(&[
        "--policy",
        "spill",
        "--policy-config",
        "memory-bytes=65536",
        "--state-dir",
        &state_arg,
    ])
    .await;
    let mut stream = host
        .run(json!({ "command": "seq 1 300000", "background": true }))
        .await;
    let id = init_id(&mut stream).await;
    host.wait_finished(&id).await;
    let spill_dir = state.join(format!("{id}.log"));
    assert!(
        spill_dir
            .join("events.bin")
            .metadata()
            .map(|m| m.len() > 1 << 20)
            .unwrap_or(false),
        "spilled to disk"
    );
    let events = logged(&host.resume(&id, 0).await.events().await, 0);
    assert_eq!(events.len(), 300_001, "no gap, nothing lost");
    for (i, e) in events[..300_000].iter().enumerate() {
        assert_eq!(e.text(), (i + 1).to_string());
    }
    // Resume from the middle of the spilled part too.
    let events = logged(&host.resume(&id, 123_456).await.events().await, 123_456);
    assert_eq!(events[0].text(), "123457");
    // The host keeps an operator's --state-dir for the next host, and that
    // one, which cannot reopen spill's files, removes them.
    let status = host.terminate().await;
    assert!(status.success(), "{status:?}");
    assert!(spill_dir.exists(), "kept at exit");
    let host = Host::start(&["--policy", "spill", "--state-dir", &state_arg]).await;
    assert!(
        !spill_dir.exists(),
        "spill directory removed by the next host"
    );
    host.resume(&id, 0)
        .await
        .finish()
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
    drop(host);
    let _ = std::fs::remove_dir_all(&state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spill_replays_a_gigabyte_with_no_gap_and_bounded_rss() {
    let host = Host::start(&["--policy", "spill"]).await;
    let line = "0123456789".repeat(10);
    let command = format!("yes {line} | head -c 1000000000");
    let mut stream = host
        .run(json!({ "command": command, "background": true }))
        .await;
    let id = init_id(&mut stream).await;
    let mut peak = 0;
    loop {
        peak = peak.max(host.rss_kib());
        if host.status(&id).await["running"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // 1e9 bytes of 101-byte lines: 9,900,990 whole lines and a 10-byte
    // tail. A line the writer stalls in may arrive in two pieces, so count
    // text bytes, which no split changes.
    let lines = 1_000_000_000 / 101 + 1;
    let text_bytes = 1_000_000_000 - (lines - 1);
    let mut replay = host.resume(&id, 0).await;
    let (mut next_eid, mut bytes, mut ended) = (1u64, 0u64, false);
    while let Some(event) = replay.next_event().await {
        assert_eq!(
            event.eid(),
            Some(next_eid),
            "no gap, in order: {:?}",
            event.data
        );
        next_eid += 1;
        if event.kind() == "stdout" {
            bytes += event.text().len() as u64;
        }
        ended = event.is_terminal();
        if next_eid % 1_000_000 == 0 {
            peak = peak.max(host.rss_kib());
        }
    }
    assert!(ended, "the replay ends with the terminal event");
    assert!(next_eid > lines, "every line: {} events", next_eid - 1);
    assert_eq!(bytes, text_bytes, "every byte");
    assert!(peak < 256 * 1024, "host RSS peaked at {peak} KiB");
}

/// The script every hostile test runs: output before the trigger, the
/// trigger line, then output after it, which connected readers must get.
const SCRIPT: &str = "echo before; sleep 0.3; echo trigger; sleep 0.5; echo after; exit 7";

/// Runs the script under a hostile policy and checks what must hold.
async fn survive(feature: &str, extra: &[&str], what: &str) {
    let wasm = build_policy("execd-test-policies", Some(feature)).await;
    let mut args = vec!["--policy", wasm.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let host = Host::start(&args).await;
    let rss_before = host.rss_kib();

    // A bystander command runs the whole time on another instance.
    let mut bystander = host
        .run(json!({ "command": "for i in $(seq 1 30); do echo b$i; sleep 0.03; done" }))
        .await;
    let bystander_id = init_id(&mut bystander).await;

    let mut stream = host.run(json!({ "command": SCRIPT })).await;
    let id = init_id(&mut stream).await;
    let events = stream.events().await;
    // The connected reader got live output after the failure, eids continued.
    let texts: Vec<&str> = events.iter().map(Event::text).collect();
    assert!(
        texts.contains(&"before") && texts.contains(&"after"),
        "{feature}: {texts:?}"
    );
    let end = events.last().expect("terminal event");
    assert_eq!(
        end.data["error"]["evalue"], "7",
        "{feature}: the command kept running to its end"
    );
    let eids: Vec<u64> = events.iter().filter_map(Event::eid).collect();
    assert!(
        eids.windows(2).all(|w| w[1] > w[0]),
        "{feature}: eids increase: {eids:?}"
    );
    assert!(
        events.iter().all(|e| e.text() != "never logged"),
        "{feature}: no phantom event reached a client"
    );

    // A resume says what happened.
    let resumed = host.resume(&id, 0).await.finish().await;
    resumed.assert_error(503, "POLICY_FAILED");
    let message = resumed.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(what),
        "{feature}: message {message:?} should say {what:?}"
    );

    // The bystander is untouched.
    let bystander_events = logged(&bystander.events().await, 0);
    assert_eq!(bystander_events.len(), 31, "{feature}: bystander complete");
    assert_eq!(
        logged(&host.resume(&bystander_id, 0).await.events().await, 0).len(),
        31
    );

    // The host is up, serves new commands, and logged the failure once.
    let mut next = host.run(json!({ "command": "echo fine" })).await;
    init_id(&mut next).await;
    assert_eq!(logged(&next.events().await, 0)[0].text(), "fine");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = host.stderr();
    assert_eq!(
        log.matches(&id).count(),
        1,
        "{feature}: logged once:\n{log}"
    );
    assert!(
        log.contains(what),
        "{feature}: the log says what happened:\n{log}"
    );

    // The failed instance's memory was returned.
    let rss_after = host.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "{feature}: RSS {rss_before} KiB -> {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_trap_in_append() {
    survive("trap-append", &[], "trapped in `append`").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_infinite_loop_hits_the_cpu_deadline() {
    survive(
        "loop-append",
        &["--policy-call-ms", "100"],
        "CPU deadline of 100 ms",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_unbounded_allocation_hits_the_memory_cap() {
    survive(
        "alloc-append",
        &["--policy-memory-mb", "64"],
        "memory cap of 64 MiB",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_eids_going_backwards() {
    survive("backwards-eids", &[], "broke the log rules in `append`").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_never_given() {
    survive("phantom-events", &[], "broke the log rules in `read`").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_runs_that_disagree_with_the_lengths() {
    survive("bad-runs", &[], "broke the log rules in `read`").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_in_files_beyond_what_a_read_may_return() {
    survive("text-too-long", &[], "more than the").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_left_in_a_missing_file_is_an_io_gap_not_a_failure() {
    let wasm = build_policy("execd-test-policies", Some("text-missing")).await;
    let host = Host::start(&["--policy", wasm.to_str().expect("utf-8 path")]).await;
    let mut stream = host
        .run(json!({ "command": "echo one; echo two; exit 3" }))
        .await;
    let id = init_id(&mut stream).await;
    let _ = stream.events().await;
    // Every read now says the lines' text is in a file that is not there.
    let events = host.resume(&id, 0).await.events().await;
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    assert_eq!(kinds, ["gap", "error"], "{events:?}");
    let gap = &events[0];
    assert_eq!(gap.data["reason"], "io");
    assert_eq!(
        (gap.data["from_eid"].as_u64(), gap.data["to_eid"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(gap.data["dropped_bytes"], 6, "one, two");
    assert_eq!(events[1].data["error"]["evalue"], "3", "the ending follows");
    // Not a policy failure: the log still answers, and the operator is
    // told once what could not be read.
    let again = host.resume(&id, 2).await.events().await;
    assert_eq!(again.len(), 1, "{again:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = host.stderr();
    assert_eq!(
        log.matches("cannot read the text").count(),
        1,
        "logged once:\n{log}"
    );
    assert!(log.contains("4000000000.seg"), "names the file:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_panic_in_read() {
    survive("panic-read", &[], "trapped in `read`").await;
}
