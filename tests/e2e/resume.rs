//! Resumption: disconnect anywhere, resume by `after_eid` or
//! `Last-Event-ID`, and get every event exactly once, in order.

use std::time::Duration;

use rand::Rng;
use serde_json::json;

use crate::harness::*;

/// Reads a command to its end through many short-lived connections.
async fn read_with_disconnects(
    host: &Host,
    mut stream: Stream,
    id: &str,
    max_per_conn: usize,
) -> (Vec<Event>, usize) {
    let mut rng = rand::rng();
    let mut all: Vec<Event> = Vec::new();
    let mut reconnects = 0;
    loop {
        let take = rng.random_range(1..=max_per_conn);
        let mut ended = false;
        for _ in 0..take {
            match stream.next_event().await {
                Some(e) => {
                    assert_ne!(e.kind(), "gap", "no gap with default bounds");
                    let terminal = e.is_terminal();
                    all.push(e);
                    if terminal {
                        ended = true;
                        break;
                    }
                }
                None => break,
            }
        }
        if ended {
            return (all, reconnects);
        }
        drop(stream);
        reconnects += 1;
        let after = all.iter().filter_map(Event::eid).next_back().unwrap_or(0);
        stream = host.resume_by(id, after, reconnects % 2 == 0).await;
        assert_eq!(stream.status, 200, "resume after {after}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_disconnects_deliver_every_event_exactly_once() {
    let host = Host::start(&[]).await;
    let script = "for i in $(seq 1 3000); do echo o$i; \
                  if [ $((i % 7)) = 0 ]; then echo e$i >&2; fi; \
                  if [ $((i % 300)) = 0 ]; then sleep 0.05; fi; done; exit 4";
    let mut total_reconnects = 0;
    for _round in 0..3 {
        let mut stream = host.run(json!({ "command": script })).await;
        let id = init_id(&mut stream).await;
        let (events, reconnects) = read_with_disconnects(&host, stream, &id, 150).await;
        total_reconnects += reconnects;
        let logged = logged(&events, 0);
        let stdout: Vec<&str> = logged
            .iter()
            .filter(|e| e.kind() == "stdout")
            .map(Event::text)
            .collect();
        let stderr: Vec<&str> = logged
            .iter()
            .filter(|e| e.kind() == "stderr")
            .map(Event::text)
            .collect();
        let want_out: Vec<String> = (1..=3000).map(|i| format!("o{i}")).collect();
        let want_err: Vec<String> = (1..=3000)
            .filter(|i| i % 7 == 0)
            .map(|i| format!("e{i}"))
            .collect();
        assert_eq!(stdout, want_out);
        assert_eq!(stderr, want_err);
        let end = logged.last().expect("terminal");
        assert_eq!(end.kind(), "error");
        assert_eq!(end.data["error"]["evalue"], "4");
    }
    assert!(total_reconnects >= 30, "only {total_reconnects} reconnects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_and_query_precedence() {
    let host = Host::start(&[]).await;
    let mut stream = host.run(json!({ "command": "seq 1 6" })).await;
    let id = init_id(&mut stream).await;
    logged(&stream.events().await, 0);

    let mut s = host
        .send(
            "GET",
            &format!("/command/{id}/resume"),
            &[("Last-Event-ID", "2")],
            b"",
        )
        .await;
    let events = s.events().await;
    assert_eq!(events[0].eid(), Some(3));
    logged(&events, 2);

    let path = format!("/command/{id}/resume?after_eid=4");
    let mut s = host
        .send("GET", &path, &[("Last-Event-ID", "1")], b"")
        .await;
    let events = s.events().await;
    assert_eq!(events[0].eid(), Some(5), "the larger cursor wins");
    logged(&events, 4);

    // Neither: everything retained.
    let mut s = host
        .send("GET", &format!("/command/{id}/resume"), &[], b"")
        .await;
    let events = s.events().await;
    assert_eq!(
        events
            .iter()
            .filter_map(Event::text_if_stdout)
            .collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5", "6"]
    );
}

trait TextIfStdout {
    fn text_if_stdout(&self) -> Option<&str>;
}

impl TextIfStdout for Event {
    fn text_if_stdout(&self) -> Option<&str> {
        (self.kind() == "stdout").then(|| self.text())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_racing_completion_reads_to_the_end() {
    let host = Host::start(&[]).await;
    for round in 0..25u64 {
        let mut stream = host.run(json!({ "command": "seq 1 300" })).await;
        let id = init_id(&mut stream).await;
        let mut got = Vec::new();
        for _ in 0..(round % 5) {
            got.push(stream.next_event().await.expect("event"));
        }
        drop(stream);
        // The command is finishing (or finished) while this resume replays.
        let after = got.iter().filter_map(Event::eid).next_back().unwrap_or(0);
        let mut resumed = host.resume(&id, after).await;
        assert_eq!(resumed.status, 200);
        got.extend(resumed.events().await);
        let logged = logged(&got, 0);
        assert_eq!(logged.len(), 301, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_does_not_slow_the_command_or_other_readers() {
    let host = Host::start(&[]).await;
    let mut fast = host.run(json!({ "command": "seq 1 20000" })).await;
    let id = init_id(&mut fast).await;
    let mut slow = host.resume(&id, 0).await;
    // The slow reader takes a few events, pausing, while the fast one and
    // the command run to the end.
    let mut slow_events = Vec::new();
    for _ in 0..5 {
        slow_events.push(slow.next_event().await.expect("slow event"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fast_events = fast.events().await;
    assert_eq!(logged(&fast_events, 0).len(), 20001);
    let status = host.wait_finished(&id).await;
    assert_eq!(status["exit_code"], 0);
    // Now the slow reader catches up: still everything, exactly once.
    slow_events.extend(slow.events().await);
    assert_eq!(logged(&slow_events, 0).len(), 20001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_reports_a_gap_with_the_exact_range() {
    let host = Host::start(&["--policy", "ring", "--policy-config", "max-events=10"]).await;
    let mut stream = host
        .run(json!({ "command": "seq 1 100", "background": true }))
        .await;
    let id = init_id(&mut stream).await;
    host.wait_finished(&id).await;
    // 100 lines and the terminal event: eids 1..=101; the ring keeps 92..=101.
    let events = host.resume(&id, 0).await.events().await;
    let gap = &events[0];
    assert_eq!(gap.kind(), "gap");
    assert_eq!(gap.event.as_deref(), Some("gap"));
    assert_eq!(gap.id, None, "a gap carries no id");
    assert_eq!(gap.data["from_eid"], 1);
    assert_eq!(gap.data["to_eid"], 91);
    let dropped: usize = (1..=91).map(|i: u32| i.to_string().len()).sum();
    assert_eq!(gap.data["dropped_bytes"], dropped as u64);
    let rest = logged(&events[1..], 91);
    assert_eq!(rest[0].text(), "92");
    assert_eq!(rest.len(), 10);
    // From inside the kept window: no gap.
    let events = host.resume(&id, 95).await.events().await;
    assert_eq!(logged(&events, 95).len(), 6);
    // From inside the evicted window: a gap from the cursor on.
    let events = host.resume(&id, 50).await.events().await;
    assert_eq!(
        (
            events[0].data["from_eid"].as_u64(),
            events[0].data["to_eid"].as_u64()
        ),
        (Some(51), Some(91))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_expiry_answers_404_and_the_terminal_cursor_204() {
    let host = Host::start(&["--policy-config", "retention-secs=1"]).await;
    let mut stream = host.run(json!({ "command": "echo hi" })).await;
    let id = init_id(&mut stream).await;
    let events = stream.events().await;
    let terminal = logged(&events, 0)
        .last()
        .and_then(Event::eid)
        .expect("terminal eid");
    assert_eq!(terminal, 2);
    // Retained: replay works, and a cursor at or past the end gets 204.
    assert_eq!(
        logged(&host.resume(&id, 0).await.events().await, 0).len(),
        2
    );
    assert_eq!(host.resume(&id, 2).await.status, 204);
    assert_eq!(host.resume(&id, 7).await.status, 204);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    host.resume(&id, 0)
        .await
        .finish()
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
    host.resume(&id, 1)
        .await
        .finish()
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
    assert_eq!(
        host.resume(&id, 2).await.status,
        204,
        "EventSource stops on 204"
    );
    host.call("GET", &format!("/command/status/{id}"), "")
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
    host.resume("0123456789abcdef", 0)
        .await
        .finish()
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_policy_admits_one_live_reader() {
    let host = Host::start(&["--policy", "exclusive"]).await;
    let mut primary = host.run(json!({ "command": "sleep 2; echo done" })).await;
    let id = init_id(&mut primary).await;
    host.resume(&id, 0)
        .await
        .finish()
        .await
        .assert_error(409, "STREAM_CONFLICT");
    drop(primary);
    // The drop is noticed from the body going away, not a timer.
    let started = tokio::time::Instant::now();
    let mut resumed = loop {
        let s = host.resume(&id, 0).await;
        if s.status == 200 {
            break s;
        }
        assert!(
            // A bounded poll: generous, as a busy machine is slow to
            // schedule the host, but far short of any timer's idle limit.
            started.elapsed() < Duration::from_secs(5),
            "drop not noticed within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let events = resumed.events().await;
    assert_eq!(logged(&events, 0)[0].text(), "done");
}
