//! The command API as execd clients see it: ping, foreground and background
//! runs, status, logs, interrupt, timeout, cwd/envs/uid, framing, keepalive.

use crate::harness::*;

use std::time::{Duration, Instant};

use serde_json::json;

/// Reads every event of `stream`, failing if it takes longer than `limit`.
async fn events_within(stream: &mut Stream, limit: Duration) -> Vec<Event> {
    tokio::time::timeout(limit, stream.events())
        .await
        .unwrap_or_else(|_| panic!("stream did not end within {limit:?}"))
}

/// Runs a foreground command to its end and returns its id and events.
async fn run_all(host: &Host, body: serde_json::Value) -> (String, Vec<Event>) {
    let mut stream = host.run(body).await;
    let id = init_id(&mut stream).await;
    let events = events_within(&mut stream, Duration::from_secs(8)).await;
    (id, events)
}

fn stdout_lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind() == "stdout")
        .map(|e| e.text().to_string())
        .collect()
}

fn terminal(events: &[Event]) -> &Event {
    events
        .iter()
        .rev()
        .find(|e| e.is_terminal())
        .unwrap_or_else(|| panic!("no terminal event in {events:?}"))
}

/// Starts a background command and returns its id once the POST stream ended.
async fn run_background(host: &Host, command: &str) -> String {
    let mut stream = host
        .run(json!({"command": command, "background": true}))
        .await;
    let id = init_id(&mut stream).await;
    let rest = events_within(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(rest.len(), 1, "background: one event after init: {rest:?}");
    id
}

fn assert_rfc3339(value: &serde_json::Value) -> std::time::SystemTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    assert!(text.ends_with('Z'), "RFC 3339 in UTC: {text}");
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("not RFC 3339 ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_200_with_empty_body() {
    let host = Host::start(&[]).await;
    let resp = host.call("GET", "/ping", "").await;
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    assert!(resp.body.is_empty(), "ping body: {:?}", resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_stream_headers_and_events() {
    let host = Host::start(&[]).await;
    let mut stream = host.run(json!({"command": "echo out; echo err >&2"})).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("cache-control"), Some("no-cache"));
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));

    let init = stream.next_event().await.expect("init event");
    assert_eq!(init.kind(), "init");
    assert_eq!(init.id, None, "init carries no id line");
    assert_eq!(init.eid(), None, "init carries no eid");
    assert_eq!(init.event.as_deref(), Some("init"));
    let id = init.text().to_string();
    assert!(!id.is_empty(), "init text is the command id");
    assert!(
        init.data["timestamp"].is_u64(),
        "init timestamp: {:?}",
        init.data
    );

    let events = events_within(&mut stream, Duration::from_secs(5)).await;
    let logged = logged(&events, 0);
    for e in &events {
        assert!(
            e.data["timestamp"].is_u64(),
            "numeric timestamp: {:?}",
            e.data
        );
        assert_eq!(
            e.event.as_deref(),
            Some(e.kind()),
            "event line equals data.type"
        );
        assert_eq!(e.id, e.eid(), "id line equals eid");
    }
    assert_eq!(logged.len(), 3, "stdout, stderr, terminal: {events:?}");
    assert!(
        logged
            .iter()
            .any(|e| e.kind() == "stdout" && e.text() == "out"),
        "{events:?}"
    );
    assert!(
        logged
            .iter()
            .any(|e| e.kind() == "stderr" && e.text() == "err"),
        "{events:?}"
    );
    let done = logged.last().unwrap();
    assert_eq!(done.kind(), "execution_complete", "{:?}", done.data);
    assert!(
        done.data["execution_time"].is_u64(),
        "execution_time: {:?}",
        done.data
    );
    assert!(done.data.get("error").is_none(), "{:?}", done.data);

    let status = host.wait_finished(&id).await;
    assert_eq!(status["exit_code"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_nonzero_exit_is_error_event() {
    let host = Host::start(&[]).await;
    let (id, events) = run_all(&host, json!({"command": "echo x; exit 3"})).await;
    let logged = logged(&events, 0);
    assert_eq!(stdout_lines(&events), ["x"]);
    let end = logged.last().unwrap();
    assert_failed(end, "3", "exit status 3");
    assert_eq!(end.event.as_deref(), Some("error"));
    assert!(end.data["timestamp"].is_u64());

    let status = host.wait_finished(&id).await;
    assert_eq!(status["exit_code"], 3, "{status}");
    assert_eq!(status["error"], "exit status 3", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_post_ends_after_spawn_and_status_follows() {
    let host = Host::start(&[]).await;
    let started = Instant::now();
    let mut stream = host
        .run(json!({"command": "sleep 8; echo bg", "background": true}))
        .await;
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    let id = init_id(&mut stream).await;
    let rest = events_within(&mut stream, Duration::from_secs(5)).await;
    assert!(
        // Well short of the command's 8 s, with room for a busy machine.
        started.elapsed() < Duration::from_secs(5),
        "background POST must not wait for the command: {:?}",
        started.elapsed()
    );
    assert_eq!(
        rest.len(),
        1,
        "only execution_complete after init: {rest:?}"
    );
    let spawned = &rest[0];
    assert_eq!(spawned.kind(), "execution_complete", "{:?}", spawned.data);
    assert_eq!(spawned.eid(), None, "no eid: {:?}", spawned.data);
    assert_eq!(spawned.id, None, "no id line");
    assert!(spawned.data["timestamp"].is_u64(), "{:?}", spawned.data);

    let running = host.status(&id).await;
    assert_eq!(running["running"], true, "{running}");
    assert!(running.get("exit_code").is_none(), "{running}");
    assert!(running.get("finished_at").is_none(), "{running}");

    let status = host.wait_finished(&id).await;
    assert_eq!(status["id"], id.as_str(), "{status}");
    assert_eq!(status["running"], false, "{status}");
    assert_eq!(status["exit_code"], 0, "{status}");
    assert_eq!(status["content"], "sleep 8; echo bg", "{status}");
    assert!(status.get("error").is_none(), "no error key: {status}");
    let start = assert_rfc3339(&status["started_at"]);
    let end = assert_rfc3339(&status["finished_at"]);
    assert!(start <= end, "started_at <= finished_at: {status}");

    // The output is logged and resumable.
    let mut resumed = host.resume(&id, 0).await;
    assert_eq!(resumed.status, 200);
    let events = events_within(&mut resumed, Duration::from_secs(5)).await;
    logged(&events, 0);
    assert_eq!(stdout_lines(&events), ["bg"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_failing_background_command() {
    let host = Host::start(&[]).await;
    let id = run_background(&host, "exit 2").await;
    let status = host.wait_finished(&id).await;
    assert_eq!(status["exit_code"], 2, "{status}");
    assert_eq!(status["error"], "exit status 2", "{status}");
    assert_eq!(status["content"], "exit 2", "{status}");
    assert_rfc3339(&status["finished_at"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_unknown_id_is_404() {
    let host = Host::start(&[]).await;
    let resp = host.call("GET", "/command/status/no-such-id", "").await;
    resp.assert_error(404, "COMMAND_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_background_command_by_cursor() {
    let host = Host::start(&[]).await;
    let id = run_background(&host, "printf 'ab\\ncd\\n'").await;
    host.wait_finished(&id).await;

    let all = host
        .call("GET", &format!("/command/{id}/logs?cursor=0"), "")
        .await;
    assert_eq!(all.status, 200, "body: {}", all.text());
    assert!(
        all.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "content-type: {:?}",
        all.header("content-type")
    );
    assert_eq!(all.body, b"ab\ncd\n");
    assert_eq!(all.header("execd-commands-tail-cursor"), Some("6"));

    let tail = host
        .call("GET", &format!("/command/{id}/logs?cursor=3"), "")
        .await;
    assert_eq!(tail.status, 200, "body: {}", tail.text());
    assert_eq!(tail.body, b"cd\n");
    assert_eq!(tail.header("execd-commands-tail-cursor"), Some("6"));

    let past = host
        .call("GET", &format!("/command/{id}/logs?cursor=100"), "")
        .await;
    assert_eq!(past.status, 200, "body: {}", past.text());
    assert!(past.body.is_empty(), "past the end: {:?}", past.text());
    assert_eq!(past.header("execd-commands-tail-cursor"), Some("100"));

    let default = host.call("GET", &format!("/command/{id}/logs"), "").await;
    assert_eq!(default.status, 200, "body: {}", default.text());
    assert_eq!(default.body, b"ab\ncd\n", "no cursor = from 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_keep_raw_invalid_utf8_bytes() {
    let host = Host::start(&[]).await;
    let id = run_background(&host, "printf '\\xff\\xfe'").await;
    host.wait_finished(&id).await;
    let resp = host
        .call("GET", &format!("/command/{id}/logs?cursor=0"), "")
        .await;
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    assert_eq!(resp.body, [0xff, 0xfe]);
    assert_eq!(resp.header("execd-commands-tail-cursor"), Some("2"));

    // The event stream carries the replacement character instead.
    let mut resumed = host.resume(&id, 0).await;
    let events = events_within(&mut resumed, Duration::from_secs(5)).await;
    logged(&events, 0);
    let text: String = stdout_lines(&events).concat();
    assert!(text.contains('\u{FFFD}'), "U+FFFD in text: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_foreground_or_unknown_command_are_rejected() {
    let host = Host::start(&[]).await;
    let (id, _) = run_all(&host, json!({"command": "echo fg"})).await;
    host.call("GET", &format!("/command/{id}/logs?cursor=0"), "")
        .await
        .assert_error(400, "NOT_SUPPORTED");
    host.call("GET", "/command/no-such-id/logs?cursor=0", "")
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_interrupts_with_sigterm() {
    let host = Host::start(&[]).await;
    let mut stream = host.run(json!({"command": "sleep 30"})).await;
    let id = init_id(&mut stream).await;
    let resp = host.call("DELETE", &format!("/command?id={id}"), "").await;
    assert_eq!(resp.status, 200, "body: {}", resp.text());

    let events = events_within(&mut stream, Duration::from_secs(5)).await;
    let logged = logged(&events, 0);
    let end = logged.last().unwrap();
    assert_failed(end, "-1", "signal: terminated");

    let status = host.wait_finished(&id).await;
    assert_eq!(status["exit_code"], -1, "{status}");
    assert_reason(end, &status, "interrupted", Some(libc::SIGTERM));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_escalates_to_sigkill_after_grace() {
    let host = Host::start(&[]).await;
    let mut stream = host.run(json!({"command": "trap '' TERM; sleep 30"})).await;
    let id = init_id(&mut stream).await;
    // Let bash install the trap before the signal arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let resp = host.call("DELETE", &format!("/command?id={id}"), "").await;
    assert_eq!(resp.status, 200, "body: {}", resp.text());

    let events = events_within(&mut stream, Duration::from_secs(7)).await;
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_millis(6000),
        "SIGKILL about 3 s after SIGTERM, took {took:?}"
    );
    let logged = logged(&events, 0);
    let end = logged.last().unwrap();
    assert_failed(end, "-1", "signal: killed");
    let status = host.wait_finished(&id).await;
    assert_eq!(status["exit_code"], -1, "{status}");
    assert_reason(end, &status, "interrupted", Some(libc::SIGKILL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_needs_a_known_id() {
    let host = Host::start(&[]).await;
    host.call("DELETE", "/command", "")
        .await
        .assert_error(400, "MISSING_QUERY");
    host.call("DELETE", "/command?id=no-such-id", "")
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_command() {
    let host = Host::start(&[]).await;
    let started = Instant::now();
    let (id, events) = run_all(&host, json!({"command": "sleep 30", "timeout": 300})).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "not before the timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "killed soon after the timeout: {took:?}"
    );
    let logged = logged(&events, 0);
    let end = logged.last().unwrap();
    assert_failed(end, "-1", "signal: killed");
    let status = host.wait_finished(&id).await;
    assert_eq!(status["exit_code"], -1, "{status}");
    // Not any SIGKILL: the timeout's.
    assert_reason(end, &status, "timeout", Some(libc::SIGKILL));
}

/// Whether `pid` is gone (or only a zombie waiting for a reaper).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            matches!(state, Some(Some('Z' | 'X')))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_process_group() {
    let host = Host::start(&[]).await;
    let body = json!({"command": "sleep 30 & echo $!; sleep 30; wait", "timeout": 300});
    let (_, events) = run_all(&host, body).await;
    let logged = logged(&events, 0);
    assert_eq!(logged.last().unwrap().data["error"]["evalue"], "-1");
    let lines = stdout_lines(&events);
    let pid: u32 = lines
        .first()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("background pid printed: {lines:?}"));
    let deadline = Instant::now() + Duration::from_secs(2);
    while !is_dead(pid) {
        assert!(
            Instant::now() < deadline,
            "background sleep {pid} survived the timeout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cwd_is_honoured_and_expanded() {
    let host = Host::start(&[]).await;
    let (_, events) = run_all(&host, json!({"command": "pwd", "cwd": "/tmp"})).await;
    logged(&events, 0);
    assert_eq!(stdout_lines(&events), ["/tmp"]);

    let home = std::env::var("HOME").expect("HOME is set");
    let home = std::fs::canonicalize(&home).expect("HOME exists");
    let (_, events) = run_all(&host, json!({"command": "pwd -P", "cwd": "~"})).await;
    assert_eq!(
        stdout_lines(&events),
        [home.to_string_lossy()],
        "{events:?}"
    );
    assert_eq!(terminal(&events).kind(), "execution_complete");

    let dir = TempDir::new("cwd");
    let dir_path = std::fs::canonicalize(&dir.0).unwrap();
    let body = json!({"command": "pwd -P", "cwd": "$WHERE", "envs": {"WHERE": dir_path}});
    let (_, events) = run_all(&host, body).await;
    assert_eq!(
        stdout_lines(&events),
        [dir_path.to_string_lossy()],
        "{events:?}"
    );
    assert_eq!(terminal(&events).kind(), "execution_complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envs_overlay_the_host_environment() {
    let host = Host::start(&[]).await;
    let (_, events) = run_all(
        &host,
        json!({"command": "echo $FOO", "envs": {"FOO": "bar"}}),
    )
    .await;
    logged(&events, 0);
    assert_eq!(stdout_lines(&events), ["bar"]);

    // Inherited: PATH finds external programs, HOME is the host's.
    let home = std::env::var("HOME").expect("HOME is set");
    let (_, events) = run_all(&host, json!({"command": "printenv HOME"})).await;
    assert_eq!(
        terminal(&events).kind(),
        "execution_complete",
        "PATH works: {events:?}"
    );
    assert_eq!(stdout_lines(&events), [home]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_and_gid_drop_privileges() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        panic!("this test needs root to switch uid");
    }
    // Without a token, `uid` is refused (403 TOKEN_REQUIRED).
    let host = Host::start(&["--access-token", "t0ken-for-uid"]).await;
    let dir = TempDir::new("uid");
    let secret = dir.0.join("secret");
    std::fs::write(&secret, "classified\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cat = format!("cat {}", secret.display());

    // As the host's own user (root) the file is readable...
    let (_, events) = run_all(&host, json!({"command": cat})).await;
    assert_eq!(stdout_lines(&events), ["classified"]);
    assert_eq!(terminal(&events).kind(), "execution_complete");

    // ...as nobody it is not.
    let (_, events) = run_all(&host, json!({"command": cat, "uid": 65534})).await;
    let logged = logged(&events, 0);
    assert!(stdout_lines(&events).is_empty(), "{events:?}");
    let end = logged.last().unwrap();
    assert_eq!(end.kind(), "error", "{events:?}");
    assert_ne!(end.data["error"]["evalue"], "0");

    let (_, events) = run_all(&host, json!({"command": "id -u", "uid": 65534})).await;
    assert_eq!(stdout_lines(&events), ["65534"]);
    assert_eq!(terminal(&events).kind(), "execution_complete");

    let (_, events) = run_all(
        &host,
        json!({"command": "id -u; id -g", "uid": 65534, "gid": 65534}),
    )
    .await;
    assert_eq!(stdout_lines(&events), ["65534", "65534"]);
    assert_eq!(terminal(&events).kind(), "execution_complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_framing_host_writes_bare_json() {
    let host = Host::start(&["--sse-framing", "legacy"]).await;
    let resp = host
        .call(
            "POST",
            "/command",
            &json!({"command": "echo hi"}).to_string(),
        )
        .await;
    assert_eq!(resp.status, 200);
    let text = resp.text();
    assert!(
        text.starts_with("{\"type\":\"init\""),
        "legacy body: {text:?}"
    );
    for line in text.lines() {
        assert!(
            line.is_empty() || line.starts_with('{'),
            "bare JSON only, got line {line:?} in {text:?}"
        );
    }
    let blocks: Vec<serde_json::Value> = text
        .split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("bad JSON {b:?}: {e}")))
        .collect();
    let kinds: Vec<&str> = blocks
        .iter()
        .map(|b| b["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["init", "stdout", "execution_complete"], "{text:?}");
    assert_eq!(blocks[1]["text"], "hi");
    assert_eq!(blocks[1]["eid"], 1);
    assert_eq!(blocks[2]["eid"], 2);

    // A request can ask for standard framing on a legacy host.
    let resp = host
        .call(
            "POST",
            "/command?framing=standard",
            &json!({"command": "echo hi"}).to_string(),
        )
        .await;
    assert_eq!(resp.status, 200);
    let text = resp.text();
    assert!(text.contains("event: init\n"), "standard framing: {text:?}");
    assert!(
        text.contains("event: stdout\n") && text.contains("id: 1\n"),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_can_choose_legacy_framing() {
    let host = Host::start(&[]).await;
    let resp = host
        .call(
            "POST",
            "/command?framing=legacy",
            &json!({"command": "echo hi"}).to_string(),
        )
        .await;
    assert_eq!(resp.status, 200);
    let text = resp.text();
    assert!(
        text.starts_with("{\"type\":\"init\""),
        "legacy body: {text:?}"
    );
    assert!(
        !text.contains("event:") && !text.contains("id:") && !text.contains("data:"),
        "{text:?}"
    );
    assert!(text.contains("\"type\":\"execution_complete\""), "{text:?}");

    // Without the parameter the same host frames as standard.
    let resp = host
        .call(
            "POST",
            "/command",
            &json!({"command": "echo hi"}).to_string(),
        )
        .await;
    assert!(
        resp.text().starts_with("event: init\n"),
        "{:?}",
        resp.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_comments_while_idle() {
    let host = Host::start(&[]).await;
    let mut stream = host.run(json!({"command": "sleep 4; echo done"})).await;
    init_id(&mut stream).await;
    let events = events_within(&mut stream, Duration::from_secs(8)).await;
    logged(&events, 0);
    assert_eq!(stdout_lines(&events), ["done"]);
    assert!(stream.comments > 0, "at least one `: ping` comment in 4 s");
    assert!(
        events.iter().all(|e| e.kind() != "ping"),
        "no ping events in standard framing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_ping_event_in_legacy_framing() {
    let host = Host::start(&[]).await;
    let mut stream = host
        .send(
            "POST",
            "/command?framing=legacy",
            &[],
            json!({"command": "sleep 4; echo done"})
                .to_string()
                .as_bytes(),
        )
        .await;
    init_id(&mut stream).await;
    let events = events_within(&mut stream, Duration::from_secs(8)).await;
    let pings: Vec<&Event> = events.iter().filter(|e| e.kind() == "ping").collect();
    assert!(!pings.is_empty(), "a ping event in 4 s: {events:?}");
    for ping in pings {
        assert_eq!(ping.text(), "pong", "{:?}", ping.data);
        assert!(ping.data["timestamp"].is_u64(), "{:?}", ping.data);
        assert_eq!(ping.eid(), None, "{:?}", ping.data);
    }
    assert_eq!(stream.comments, 0, "no SSE comments in legacy framing");
    assert_eq!(stdout_lines(&events), ["done"]);
    assert_eq!(terminal(&events).kind(), "execution_complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_and_wrong_method() {
    let host = Host::start(&[]).await;
    host.call("GET", "/nope", "")
        .await
        .assert_error(404, "NOT_FOUND");
    host.call("PUT", "/command", "")
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    host.call("POST", "/ping", "")
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_dev_null() {
    let host = Host::start(&[]).await;
    let (_, events) = run_all(&host, json!({"command": "cat; echo after"})).await;
    logged(&events, 0);
    assert_eq!(stdout_lines(&events), ["after"]);
    assert_eq!(terminal(&events).kind(), "execution_complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_does_not_kill_the_command() {
    let host = Host::start(&[]).await;
    let mut stream = host.run(json!({"command": "sleep 1; echo late"})).await;
    let id = init_id(&mut stream).await;
    drop(stream);

    let mut resumed = host.resume(&id, 0).await;
    assert_eq!(resumed.status, 200);
    let events = events_within(&mut resumed, Duration::from_secs(5)).await;
    let logged = logged(&events, 0);
    assert_eq!(stdout_lines(&events), ["late"]);
    assert_eq!(logged.last().unwrap().kind(), "execution_complete");
    let status = host.wait_finished(&id).await;
    assert_eq!(status["exit_code"], 0, "{status}");
}
