//! Disk budgets (issue #10): a command's raw output for `/logs` keeps its
//! newest bytes within the command's budget, with absolute offsets and a
//! head cursor; the host's budget expires finished logs oldest first, and
//! shrinks running commands only when nothing finished is left.

use std::time::Duration;

use crate::harness::*;
use crate::probes::*;

/// Bytes of every file under `dir`.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_dir() => total += disk_bytes(&path),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// What `seq 1 n` prints.
fn seq_output(n: u32) -> Vec<u8> {
    (1..=n)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect()
}

fn header_u64(response: &Response, name: &str) -> u64 {
    response
        .header(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {name}: {:?}", response.headers))
}

/// A `ring` host (memory only, so the disk holds raw output alone) on
/// `state`, with these budget flags.
async fn ring_host(state: &TempDir, budgets: &[&str]) -> Host {
    let dir = state.0.to_str().expect("utf-8");
    let mut args = vec!["--state-dir", dir, "--policy", "ring"];
    args.extend_from_slice(budgets);
    Host::start(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_keep_their_newest_bytes_within_the_command_budget() {
    let state = TempDir::new("budget-logs");
    let host = ring_host(&state, &["--command-disk-budget", "1M"]).await;
    let n = 300_000;
    let id = background(&host, &format!("seq 1 {n}")).await;
    host.wait_finished(&id).await;
    let all = seq_output(n);
    assert!(all.len() > 1 << 20, "more than the budget is printed");

    let logs = host.call("GET", &format!("/command/{id}/logs"), "").await;
    assert_eq!(logs.status, 200);
    let head = header_u64(&logs, "EXECD-COMMANDS-HEAD-CURSOR");
    let tail = header_u64(&logs, "EXECD-COMMANDS-TAIL-CURSOR");
    assert_eq!(tail, all.len() as u64, "offsets are absolute");
    assert!(head > 0, "the oldest bytes were dropped");
    assert!(
        tail - head <= 512 << 10,
        "the raw half of 1 MiB: {}",
        tail - head
    );
    assert_eq!(logs.body, all[head as usize..], "the newest bytes, exact");
    // A cursor before the head answers from the head; inside, from there.
    let inside = head + 1000;
    let logs = host
        .call("GET", &format!("/command/{id}/logs?cursor={inside}"), "")
        .await;
    assert_eq!(header_u64(&logs, "EXECD-COMMANDS-HEAD-CURSOR"), head);
    assert_eq!(logs.body, all[inside as usize..]);
    let logs = host
        .call("GET", &format!("/command/{id}/logs?cursor=5"), "")
        .await;
    assert_eq!(logs.body, all[head as usize..]);
    assert!(
        disk_bytes(&state.0) <= 1 << 20,
        "the state dir holds {} bytes",
        disk_bytes(&state.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_budget_expires_the_oldest_finished_logs_first() {
    let state = TempDir::new("budget-host");
    let host = ring_host(
        &state,
        &["--command-disk-budget", "1M", "--disk-budget", "1M"],
    )
    .await;
    // Each keeps about 400 KB for /logs; three do not fit in 1 MiB.
    let print = "head -c 400000 /dev/zero | tr '\\0' x";
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = background(&host, print).await;
        host.wait_finished(&id).await;
        ids.push(id);
    }
    let first_gone = eventually(Duration::from_secs(10), || disk_bytes(&state.0) <= 1 << 20).await;
    assert!(first_gone, "still {} bytes", disk_bytes(&state.0));
    let status = |id: &str| {
        let path = format!("/command/status/{id}");
        let host = &host;
        async move { host.call("GET", &path, "").await.status }
    };
    assert_eq!(
        status(&ids[0]).await,
        404,
        "the oldest finished log went first"
    );
    assert_eq!(status(&ids[1]).await, 200, "the next one is kept");
    assert_eq!(status(&ids[2]).await, 200, "the newest is kept");
    let logs = host
        .call("GET", &format!("/command/{}/logs", ids[2]), "")
        .await;
    assert_eq!(logs.body.len(), 400_000, "the newest log is whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_command_shrinks_only_when_nothing_finished_is_left() {
    let state = TempDir::new("budget-running");
    let host = ring_host(
        &state,
        &["--command-disk-budget", "8M", "--disk-budget", "1M"],
    )
    .await;
    // 3 MB of raw output, within its own budget's raw half (4 MiB), but
    // not within the host's 1 MiB: it keeps its newest bytes.
    // It runs on after printing, so it is still running when the host
    // goes over its budget.
    let id = background(
        &host,
        "head -c 3000000 /dev/zero | tr '\\0' y; echo; echo last; sleep 2",
    )
    .await;
    host.wait_finished(&id).await;
    let kept = eventually(Duration::from_secs(10), || {
        disk_bytes(&state.0) <= (1 << 20) + (512 << 10)
    })
    .await;
    assert!(kept, "state dir holds {} bytes", disk_bytes(&state.0));
    let logs = host.call("GET", &format!("/command/{id}/logs"), "").await;
    assert!(header_u64(&logs, "EXECD-COMMANDS-HEAD-CURSOR") > 0);
    assert!(
        logs.text().ends_with("\nlast\n"),
        "the newest bytes are kept"
    );
    assert!(
        host.stderr().contains("disk budget is full"),
        "one clear log line: {}",
        host.stderr()
    );
}

/// With nothing running, the newest finished log is the one in use: over
/// the host's budget, it keeps its newest output that fits and its
/// terminal event rather than vanish. Here a restarted host finds it over a smaller
/// budget (the same holds for a command that finishes before the host
/// gets to shrink it, which only timing decides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_finished_log_shrinks_rather_than_vanish() {
    let state = TempDir::new("budget-newest");
    let dir = state.0.to_str().expect("utf-8");
    let first = Host::start(&["--state-dir", dir]).await;
    let n = 300_000u64;
    let mut stream = first
        .run(serde_json::json!({ "command": format!("seq 1 {n}") }))
        .await;
    let id = init_id(&mut stream).await;
    let _ = stream.events().await;
    first.wait_finished(&id).await;
    assert!(disk_bytes(&state.0) > 2 << 20, "more than the next budget");
    assert!(first.terminate().await.success());

    let second = Host::start(&["--state-dir", dir, "--disk-budget", "1M"]).await;
    let within = eventually(Duration::from_secs(10), || {
        disk_bytes(&state.0) <= (1 << 20) + (512 << 10)
    })
    .await;
    assert!(within, "state dir holds {} bytes", disk_bytes(&state.0));
    let status = second.status(&id).await;
    assert_eq!(status["exit_code"], 0, "{status}");
    let events = second.resume(&id, 0).await.events().await;
    let gap = events.first().expect("a gap first");
    assert_eq!(gap.kind(), "gap", "{:?}", gap.data);
    assert_eq!(gap.data["reason"], "budget", "{:?}", gap.data);
    // What stays is whole segment files: here the log's one file went,
    // and the terminal event, kept apart, tells how the command ended.
    let after = gap.data["to_eid"].as_u64().expect("to_eid");
    let rest = logged(&events[1..], after);
    let end = rest.last().expect("the terminal event");
    assert_eq!(end.kind(), "execution_complete");
    assert_eq!(end.eid(), Some(n + 1));
    assert!(
        rest.iter()
            .filter(|e| e.kind() == "stdout")
            .all(|e| e.eid().is_some_and(|eid| e.text() == eid.to_string())),
        "what is kept is the newest lines, as printed"
    );
}
