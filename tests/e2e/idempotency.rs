//! Exactly-once start (the contract's `Idempotency-Key`): a retry of a
//! start with the same key and body runs nothing and answers with the
//! first command's stream; every command here appends a line to a file, so
//! "ran once" is counted, not assumed. And the resume cursor rule: with
//! both `after_eid` and `Last-Event-ID`, the larger wins.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::*;

/// `POST path` with an `Idempotency-Key` and any more headers.
async fn keyed(host: &Host, path: &str, key: &str, more: &[(&str, &str)], body: &Value) -> Stream {
    let mut headers = vec![("Idempotency-Key", key)];
    headers.extend_from_slice(more);
    host.send("POST", path, &headers, body.to_string().as_bytes())
        .await
}

/// A command that leaves one line in `file` each time it runs.
fn counted(file: &Path, then: &str) -> Value {
    json!({ "command": format!("echo ran >> '{}'; {then}", file.display()) })
}

fn runs(file: &Path) -> usize {
    std::fs::read_to_string(file).map_or(0, |t| t.lines().count())
}

/// The init id and the logged events of a whole keyed start.
async fn whole(stream: &mut Stream, after: u64) -> (String, Vec<Event>) {
    assert_eq!(stream.status, 200);
    let id = init_id(stream).await;
    let events = logged(&stream.events().await, after);
    (id, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_runs_nothing_and_answers_the_first_stream() {
    let dir = TempDir::new("idem-retry");
    let file = dir.0.join("ran");
    let host = Host::start(&[]).await;
    let body = counted(&file, "seq 1 5");
    let (id, first) = whole(&mut keyed(&host, "/command", "k-1", &[], &body).await, 0).await;
    assert_eq!(first.len(), 6, "five lines and the end");
    let (again, second) = whole(&mut keyed(&host, "/command", "k-1", &[], &body).await, 0).await;
    assert_eq!(again, id, "the same command");
    assert_eq!(
        first.iter().map(|e| &e.data).collect::<Vec<_>>(),
        second.iter().map(|e| &e.data).collect::<Vec<_>>(),
        "the retry's stream is the first one's"
    );
    // Last-Event-ID on the retry skips what the client has.
    let mut stream = keyed(&host, "/command", "k-1", &[("Last-Event-ID", "3")], &body).await;
    let (again, rest) = whole(&mut stream, 3).await;
    assert_eq!((again.as_str(), rest.len()), (id.as_str(), 3));
    // The same body written otherwise (key order, spaces) is the same.
    let reordered = format!(
        "{{ \"command\" : {} }}",
        serde_json::to_string(&body["command"]).expect("json")
    );
    let mut stream = host
        .send(
            "POST",
            "/command",
            &[("Idempotency-Key", "k-1")],
            reordered.as_bytes(),
        )
        .await;
    assert_eq!(whole(&mut stream, 0).await.0, id);
    // Another key is another command.
    let (other, _) = whole(&mut keyed(&host, "/command", "k-2", &[], &body).await, 0).await;
    assert_ne!(other, id);
    assert_eq!(runs(&file), 2, "one run per key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_key_or_a_bad_one_is_refused() {
    let dir = TempDir::new("idem-refused");
    let file = dir.0.join("ran");
    let host = Host::start(&[]).await;
    whole(
        &mut keyed(&host, "/command", "once", &[], &counted(&file, "true")).await,
        0,
    )
    .await;
    let other = keyed(&host, "/command", "once", &[], &counted(&file, "false")).await;
    other
        .finish()
        .await
        .assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    let long = "k".repeat(256);
    let max = "k".repeat(255);
    for bad in ["", long.as_str(), "a b", "é"] {
        let response = keyed(&host, "/command", bad, &[], &counted(&file, "true")).await;
        response
            .finish()
            .await
            .assert_error(400, "INVALID_IDEMPOTENCY_KEY");
    }
    let twice = [("Idempotency-Key", "x"), ("Idempotency-Key", "y")];
    let body = counted(&file, "true").to_string();
    let response = host.send("POST", "/command", &twice, body.as_bytes()).await;
    response
        .finish()
        .await
        .assert_error(400, "INVALID_IDEMPOTENCY_KEY");
    assert_eq!(runs(&file), 1, "a refused start runs nothing");
    whole(
        &mut keyed(&host, "/command", &max, &[], &counted(&file, "true")).await,
        0,
    )
    .await;
    assert_eq!(runs(&file), 2, "255 characters is a key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_uses_run_once() {
    let dir = TempDir::new("idem-concurrent");
    let file = dir.0.join("ran");
    let host = std::sync::Arc::new(Host::start(&[]).await);
    let body = counted(&file, "seq 1 100");
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (host, body) = (std::sync::Arc::clone(&host), body.clone());
            tokio::spawn(async move {
                let mut stream = keyed(&host, "/command", "together", &[], &body).await;
                whole(&mut stream, 0).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        let (id, events) = task.await.expect("a start");
        assert_eq!(events.len(), 101, "every line and the end");
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one command: {ids:?}");
    assert_eq!(runs(&file), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_retry_answers_init_and_the_spawn() {
    let dir = TempDir::new("idem-background");
    let file = dir.0.join("ran");
    let host = Host::start(&[]).await;
    let mut body = counted(&file, "echo hi");
    body["background"] = json!(true);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut stream = keyed(&host, "/command", "bg", &[], &body).await;
        ids.push(init_id(&mut stream).await);
        let rest = stream.events().await;
        assert_eq!(
            rest.iter().map(Event::kind).collect::<Vec<_>>(),
            ["execution_complete"],
            "the spawn, without eid"
        );
        assert_eq!(rest[0].eid(), None);
    }
    assert_eq!(ids[0], ids[1]);
    host.wait_finished(&ids[0]).await;
    assert_eq!(runs(&file), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_run_retried_while_running_runs_once() {
    let dir = TempDir::new("idem-session");
    let file = dir.0.join("ran");
    let go = dir.0.join("go");
    let host = Host::start(&[]).await;
    let session = host.call("POST", "/session", "{}").await.json()["session_id"]
        .as_str()
        .expect("a session id")
        .to_string();
    let path = format!("/session/{session}/run");
    // The run waits for `go`, so the retry finds it running (a second run
    // would be 409 SESSION_BUSY).
    let wait = format!(
        "for i in $(seq 1 3000); do [ -e '{}' ] && break; sleep 0.01; done; echo done",
        go.display()
    );
    let body = counted(&file, &wait);
    let mut first = keyed(&host, &path, "s-1", &[], &body).await;
    let id = init_id(&mut first).await;
    let mut retry = keyed(&host, &path, "s-1", &[], &body).await;
    assert_eq!(retry.status, 200, "not busy: the retry runs nothing");
    assert_eq!(init_id(&mut retry).await, id);
    std::fs::write(&go, "").expect("go");
    for stream in [&mut first, &mut retry] {
        let events = logged(&stream.events().await, 0);
        assert_eq!(events.first().map(Event::text), Some("done"));
    }
    assert_eq!(runs(&file), 1);
    // The key is the session's route's: the same key on POST /command is
    // another request.
    let other = keyed(&host, "/command", "s-1", &[], &body).await;
    other
        .finish()
        .await
        .assert_error(422, "IDEMPOTENCY_KEY_REUSED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_survives_a_restart_and_an_expired_one_is_gone_not_rerun() {
    let dir = TempDir::new("idem-restart");
    let file = dir.0.join("ran");
    let state = dir.0.join("state");
    let state = state.to_str().expect("utf-8");
    let body = counted(&file, "seq 1 3");
    let host = Host::start(&["--state-dir", state]).await;
    let (id, first) = whole(&mut keyed(&host, "/command", "r-1", &[], &body).await, 0).await;
    host.terminate().await;
    let host = Host::start(&["--state-dir", state]).await;
    let (again, second) = whole(&mut keyed(&host, "/command", "r-1", &[], &body).await, 0).await;
    assert_eq!(again, id, "the restarted host knows the key");
    assert_eq!(
        first.iter().map(|e| &e.data).collect::<Vec<_>>(),
        second.iter().map(|e| &e.data).collect::<Vec<_>>()
    );
    assert_eq!(runs(&file), 1);
    drop(host);

    // Expired: 410 naming the id, and nothing runs.
    let host = Host::start(&["--policy-config", "retention-secs=1"]).await;
    let (id, _) = whole(&mut keyed(&host, "/command", "e-1", &[], &body).await, 0).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while host
        .call("GET", &format!("/command/status/{id}"), "")
        .await
        .status
        != 404
    {
        assert!(tokio::time::Instant::now() < deadline, "{id} never expired");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let response = keyed(&host, "/command", "e-1", &[], &body)
        .await
        .finish()
        .await;
    response.assert_error(410, "COMMAND_EXPIRED");
    assert!(response.text().contains(&id), "{}", response.text());
    assert_eq!(runs(&file), 2, "the first run on this host, not a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_larger_cursor_wins() {
    let host = Host::start(&[]).await;
    let mut stream = host.run(json!({ "command": "seq 1 10" })).await;
    let id = init_id(&mut stream).await;
    stream.events().await;
    for (query, header) in [("2", "5"), ("5", "2")] {
        let path = format!("/command/{id}/resume?after_eid={query}");
        let mut stream = host
            .send("GET", &path, &[("Last-Event-ID", header)], b"")
            .await;
        let events = logged(&stream.events().await, 5);
        assert_eq!(
            events.first().map(Event::text),
            Some("6"),
            "query {query}, header {header}"
        );
    }
}
