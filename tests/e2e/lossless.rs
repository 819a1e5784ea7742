//! Lossless by default (issue #10): with no flags at all, every reader gets
//! every event exactly once, whether it is connected and fast or gone and
//! back; a command over its disk budget loses its oldest events as one
//! `gap` with a reason, never its terminal event; a full disk is a gap
//! with reason `io`, not a crash or silence.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::probes::*;

/// Reads a whole stream as raw SSE and counts `id:` lines and gaps; checks
/// the ids run 1, 2, 3, ... with no hole.
async fn count_ids(stream: &mut Stream) -> (u64, usize) {
    let (mut next, mut gaps) = (1u64, 0usize);
    while let Some(event) = stream.next_event().await {
        if event.kind() == "gap" {
            gaps += 1;
            continue;
        }
        if let Some(id) = event.id {
            assert_eq!(id, next, "ids in order, none skipped or repeated");
            next += 1;
        }
    }
    (next - 1, gaps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_connected_client_gets_every_event_with_no_flags() {
    let host = Host::start(&[]).await;
    let mut stream = host.run(json!({"command": "seq 1 2000000"})).await;
    let _id = init_id(&mut stream).await;
    let (ids, gaps) = count_ids(&mut stream).await;
    assert_eq!(
        (ids, gaps),
        (2_000_001, 0),
        "every line and the terminal event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_awk_lines_arrive_byte_exact() {
    let host = Host::start(&[]).await;
    let mut stream = host
        .run(json!({"command": "awk 'BEGIN { for (i = 0; i < 400000; i++) print \"l\" i % 7 }'"}))
        .await;
    let _id = init_id(&mut stream).await;
    let mut n = 0usize;
    while let Some(event) = stream.next_event().await {
        assert_ne!(event.kind(), "gap");
        if event.kind() == "stdout" {
            assert_eq!(event.text(), format!("l{}", n % 7), "line {n}");
            n += 1;
        }
    }
    assert_eq!(n, 400_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_gone_after_a_thousand_events_gets_the_rest_later() {
    let host = Host::start(&[]).await;
    let rss0 = host.rss_kib();
    let lines = 3_000_000u64;
    let mut stream = host.run(json!({"command": format!("seq 1 {lines}")})).await;
    let id = init_id(&mut stream).await;
    let mut last = 0;
    while last < 1000 {
        last = stream
            .next_event()
            .await
            .and_then(|e| e.eid())
            .expect("an event");
    }
    drop(stream);
    host.wait_finished(&id).await;
    let peak = host.rss_kib();
    let mut resumed = host.resume(&id, last).await;
    let mut next = last + 1;
    while let Some(event) = resumed.next_event().await {
        assert_ne!(event.kind(), "gap", "nothing is lost within the budget");
        assert_eq!(event.eid(), Some(next));
        if event.kind() == "stdout" {
            assert_eq!(event.text(), next.to_string());
        }
        next += 1;
    }
    assert_eq!(
        next - 1,
        lines + 1,
        "every event once, the terminal one last"
    );
    let after = host.rss_kib();
    println!(
        "lossless/resume: RSS {rss0} KiB at start, {peak} KiB after the run, {after} KiB after the replay"
    );
    assert!(
        peak.max(after) < rss0 + 96 * 1024,
        "host RSS grew with the output: {rss0} -> {peak} -> {after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_over_its_budget_loses_its_oldest_events_as_one_gap() {
    let state = TempDir::new("lossless-budget");
    let dir = state.0.to_str().expect("utf-8").to_string();
    let host = Host::start(&[
        "--state-dir",
        &dir,
        "--command-disk-budget",
        "2M",
        "--policy-config",
        "memory-bytes=65536",
    ])
    .await;
    let lines = 1_000_000u64; // about 6.9 MB of text
    let mut stream = host
        .run(json!({"command": format!("seq 1 {lines}; exit 3")}))
        .await;
    let id = init_id(&mut stream).await;
    drop(stream);
    host.wait_finished(&id).await;
    let log_dir = state.0.join(format!("{id}.log"));
    let on_disk: u64 = std::fs::read_dir(&log_dir)
        .expect("the log's directory")
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(on_disk <= 2 << 20, "the log takes {on_disk} bytes on disk");
    let events = host.resume(&id, 0).await.events().await;
    let gap = &events[0];
    assert_eq!(gap.kind(), "gap", "{:?}", gap.data);
    assert_eq!(gap.data["reason"], "budget");
    assert_eq!(gap.data["from_eid"], 1);
    let to = gap.data["to_eid"].as_u64().expect("to_eid");
    let dropped: u64 = (1..=to).map(|i| i.to_string().len() as u64).sum();
    assert_eq!(gap.data["dropped_bytes"], dropped, "exact bytes");
    // Then the newest events, in order, and the terminal event.
    assert!(events.iter().skip(1).all(|e| e.kind() != "gap"), "one gap");
    for (i, event) in events.iter().skip(1).enumerate() {
        assert_eq!(event.eid(), Some(to + 1 + i as u64));
    }
    let end = events.last().expect("terminal");
    assert_failed(end, "3", "exit status 3");
    assert_eq!(end.eid(), Some(lines + 1));
}

/// A mount point on a small tmpfs, unmounted when dropped; `None` when the
/// tests cannot mount (not root, or no mount permission in a container).
pub(crate) struct SmallFs(pub(crate) std::path::PathBuf);

impl SmallFs {
    pub(crate) fn mount(name: &str, size: &str) -> Option<SmallFs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("{name}: skipped: mounting a small tmpfs needs root");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("execd-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status();
        match status {
            Ok(s) if s.success() => Some(SmallFs(dir)),
            other => {
                println!("{name}: skipped: cannot mount a tmpfs ({other:?})");
                let _ = std::fs::remove_dir(&dir);
                None
            }
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_gap_with_a_reason_and_nothing_else_breaks() {
    let Some(fs) = SmallFs::mount("lossless-full", "3m") else {
        return;
    };
    let dir = fs.0.to_str().expect("utf-8").to_string();
    // Budgets far above the 3 MiB the filesystem has.
    let host = Host::start(&[
        "--state-dir",
        &dir,
        "--disk-budget",
        "1G",
        "--policy-config",
        "memory-bytes=65536",
    ])
    .await;
    // A quiet command, running beside the one that fills the disk.
    let mut quiet = host
        .run(json!({"command": "for i in 1 2 3 4 5; do echo q$i; sleep 0.3; done"}))
        .await;
    let quiet_id = init_id(&mut quiet).await;
    let lines = 1_000_000u64;
    let mut stream = host.run(json!({"command": format!("seq 1 {lines}")})).await;
    let id = init_id(&mut stream).await;
    drop(stream);
    host.wait_finished(&id).await;
    // The quiet command's connected reader got all it said.
    let quiet_events = quiet.events().await;
    let texts: Vec<&str> = quiet_events.iter().map(Event::text).collect();
    assert_eq!(texts[..5], ["q1", "q2", "q3", "q4", "q5"], "{texts:?}");
    host.wait_finished(&quiet_id).await;
    // A late reader of the big one learns what is missing, and why.
    let events = host.resume(&id, 0).await.events().await;
    let gaps: Vec<&Event> = events.iter().filter(|e| e.kind() == "gap").collect();
    assert!(!gaps.is_empty(), "the lost output is a gap, not silence");
    assert!(
        gaps.iter().all(|g| g.data["reason"] == "io"),
        "{:?}",
        gaps.iter().map(|g| &g.data).collect::<Vec<_>>()
    );
    let end = events.last().expect("terminal");
    assert!(end.is_terminal() && end.eid() == Some(lines + 1));
    // Every event is either delivered or covered by a gap, in order.
    let mut next = 1;
    for event in &events {
        match (event.kind(), event.eid()) {
            ("gap", _) => {
                assert_eq!(event.data["from_eid"], next);
                next = event.data["to_eid"].as_u64().expect("to_eid") + 1;
            }
            (_, Some(eid)) => {
                assert_eq!(eid, next);
                next += 1;
            }
            _ => {}
        }
    }
    assert_eq!(next, lines + 2);
    ping(&host).await;
    let stderr = host.stderr();
    assert!(
        stderr.contains("could not store this command's output"),
        "one clear line in the host's log: {stderr}"
    );
    drop(host);
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Retention never expires a log under a connected reader (issue 19, item
/// 4): it counts from the later of the end and the last reader's detach.
/// A reader that falls behind past the retention of a finished command
/// still gets every event, with no `gap` (before, the log's files went
/// mid-read, and the reader got gaps with reason `io` on a sound disk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_behind_past_the_retention_still_gets_every_event() {
    let state = TempDir::new("lossless-retention-reader");
    let dir = state.0.to_str().expect("utf-8").to_string();
    let host = Host::start(&[
        "--state-dir",
        &dir,
        "--policy-config",
        "retention-secs=1",
        "--policy-config",
        "memory-bytes=65536",
    ])
    .await;
    // Far more than the socket buffers hold: most of it is read from the
    // log's files after the retention has run out.
    let lines = 300_000u64;
    let mut stream = host
        .run(json!({ "command": format!("seq 1 {lines}") }))
        .await;
    let id = init_id(&mut stream).await;
    assert_eq!(stream.next_event().await.expect("first").eid(), Some(1));
    host.wait_finished(&id).await;
    // Three retentions behind. A slow reader, not synchronisation: were
    // the wait too short, the test would pass, never fail, by chance.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        host.call("GET", &format!("/command/status/{id}"), "")
            .await
            .status,
        200,
        "expired under its reader"
    );
    let mut next = 2u64;
    while let Some(event) = stream.next_event().await {
        assert_ne!(event.kind(), "gap", "{:?}", event.data);
        if let Some(eid) = event.eid() {
            assert_eq!(eid, next, "{:?}", event.data);
            next += 1;
        }
    }
    assert_eq!(next, lines + 2, "every event and the terminal one");
    drop(stream);
    // Once the reader is gone the retention runs, from its detach.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = host.call("GET", &format!("/command/status/{id}"), "").await;
        if status.status == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never expired after its reader went"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
