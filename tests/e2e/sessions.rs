//! Bash sessions (issue #13): state carries over between runs, each run is
//! a resumable command, one run at a time, and every bad input is refused.

use serde_json::json;

use crate::harness::*;

async fn create(host: &Host, body: &str) -> String {
    let response = host.call("POST", "/session", body).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let id = response.json()["session_id"]
        .as_str()
        .expect("session_id")
        .to_string();
    assert!(!id.is_empty());
    id
}

async fn start_run(host: &Host, session: &str, body: serde_json::Value) -> (String, Stream) {
    let mut stream = host
        .send(
            "POST",
            &format!("/session/{session}/run"),
            &[],
            body.to_string().as_bytes(),
        )
        .await;
    let id = init_id(&mut stream).await;
    (id, stream)
}

/// Runs to the end: the run's command id and its logged events.
async fn run(host: &Host, session: &str, command: &str) -> (String, Vec<Event>) {
    let (id, mut stream) = start_run(host, session, json!({"command": command})).await;
    let events = stream.events().await;
    (id, logged(&events, 0))
}

fn texts(events: &[Event], kind: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind() == kind)
        .map(|e| e.text().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_and_the_directory_carry_over() {
    let host = Host::start(&[]).await;
    let session = create(&host, "").await;
    let (_, first) = run(
        &host,
        &session,
        "cd /usr; export A=1; B=unexported; echo out; echo err >&2",
    )
    .await;
    assert_eq!(texts(&first, "stdout"), vec!["out"]);
    assert_eq!(
        texts(&first, "stderr"),
        vec!["err"],
        "stderr stays its own event"
    );
    assert_eq!(first.last().map(Event::kind), Some("execution_complete"));

    let (_, second) = run(
        &host,
        &session,
        "echo \"$A|${B-none}|$PWD\"; export C='x y'; exit 3",
    )
    .await;
    assert_eq!(texts(&second, "stdout"), vec!["1|none|/usr"]);
    assert_failed(second.last().expect("terminal"), "3", "exit status 3");

    // `exit 3` still saved the state; a run's cwd is for that run only.
    let (_, third) = run(&host, &session, "echo \"$A|$C|$(pwd)\"").await;
    assert_eq!(texts(&third, "stdout"), vec!["1|x y|/usr"]);
    let (id, mut stream) =
        start_run(&host, &session, json!({"command": "pwd", "cwd": "/tmp"})).await;
    let events = stream.events().await;
    assert_eq!(texts(&logged(&events, 0), "stdout"), vec!["/tmp"]);
    let status = host.wait_finished(&id).await;
    assert_eq!(status["content"], "pwd", "status shows the user's command");
    let (_, fifth) = run(&host, &session, "pwd").await;
    assert_eq!(texts(&fifth, "stdout"), vec!["/usr"]);

    // Another session starts fresh, in its own cwd.
    let other = create(&host, r#"{"cwd":"/tmp"}"#).await;
    let (_, fresh) = run(&host, &other, "echo \"${A-unset}|$PWD\"").await;
    assert_eq!(texts(&fresh, "stdout"), vec!["unset|/tmp"]);

    // The directory a session was left in is gone: the next run says so
    // in plain words, and starts where the session did.
    let dir = TempDir::new("session-gone");
    let gone = dir.0.join("here");
    run(
        &host,
        &other,
        &format!("mkdir {0} && cd {0}", gone.display()),
    )
    .await;
    std::fs::remove_dir(&gone).expect("remove the session's directory");
    let (_, after) = run(&host, &other, "pwd").await;
    assert_eq!(texts(&after, "stdout"), vec!["/tmp"]);
    let said = texts(&after, "stderr");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("the session directory is gone"),
        "{said:?}"
    );
    assert!(!said[0].contains("state.sh"), "no host internals: {said:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_a_command_resumable_after_a_cut() {
    let host = Host::start(&[]).await;
    let session = create(&host, "{}").await;
    let (id, mut stream) = start_run(
        &host,
        &session,
        json!({"command": "for i in $(seq 1 40); do echo out$i; echo err$i >&2; sleep 0.005; done"}),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(stream.next_event().await.expect("an event"));
    }
    drop(stream);
    let after = seen.last().and_then(Event::eid).expect("an eid");
    let mut resumed = host.resume(&id, after).await;
    assert_eq!(resumed.status, 200);
    seen.extend(resumed.events().await);
    let all = logged(&seen, 0);
    let out: Vec<String> = (1..=40).map(|i| format!("out{i}")).collect();
    let err: Vec<String> = (1..=40).map(|i| format!("err{i}")).collect();
    assert_eq!(texts(&all, "stdout"), out, "every stdout line exactly once");
    assert_eq!(texts(&all, "stderr"), err, "every stderr line exactly once");
    let status = host.wait_finished(&id).await;
    assert_eq!(status["exit_code"], 0);
    let listed = host.call("GET", "/command", "").await.json();
    assert!(
        listed["commands"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["id"] == id.as_str())),
        "{listed}"
    );
}

/// Ended by a signal: SIGTERM, or the SIGKILL 3 s later when the TERM
/// reached bash in a moment it defers signals (seen under load).
fn assert_ended_by_a_signal(end: &Event) {
    let traceback = end.data["error"]["traceback"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        matches!(traceback, "signal: terminated" | "signal: killed"),
        "{:?}",
        end.data
    );
    assert_failed(end, "-1", traceback);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_at_a_time_and_delete_ends_the_running_one() {
    let host = Host::start(&[]).await;
    let session = create(&host, "").await;
    let (id, mut stream) = start_run(
        &host,
        &session,
        json!({"command": "export GONE=yes; cd /; echo started; sleep 60"}),
    )
    .await;
    assert_eq!(stream.next_event().await.expect("a line").text(), "started");
    host.call(
        "POST",
        &format!("/session/{session}/run"),
        r#"{"command":"echo second"}"#,
    )
    .await
    .assert_error(409, "SESSION_BUSY");

    // DELETE /command works on a run, and frees the session.
    let deleted = host.call("DELETE", &format!("/command?id={id}"), "").await;
    assert_eq!(deleted.status, 200);
    let rest = stream.events().await;
    assert_ended_by_a_signal(rest.last().expect("terminal"));
    host.wait_finished(&id).await;
    let (_, after) = run(&host, &session, "echo \"second${GONE:+ $GONE}\"; pwd").await;
    let before: Vec<String> = texts(&after, "stdout");
    assert_eq!(before[0], "second", "a run ended by SIGTERM saves nothing");
    assert_ne!(before[1], "/", "not even its directory");
    assert!(
        texts(&after, "stderr").is_empty(),
        "{:?}",
        texts(&after, "stderr")
    );

    // Deleting the session ends its running run.
    let (id, mut stream) =
        start_run(&host, &session, json!({"command": "echo again; sleep 60"})).await;
    assert_eq!(stream.next_event().await.expect("a line").text(), "again");
    let response = host
        .call("DELETE", &format!("/session/{session}"), "")
        .await;
    assert_eq!(response.status, 200);
    let rest = tokio::time::timeout(PATIENCE, stream.events())
        .await
        .expect("the run ends");
    assert_ended_by_a_signal(rest.last().expect("terminal"));
    assert_eq!(host.wait_finished(&id).await["running"], false);
    host.call(
        "POST",
        &format!("/session/{session}/run"),
        r#"{"command":"echo"}"#,
    )
    .await
    .assert_error(404, "SESSION_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_timeout_kills_it_and_the_session_goes_on() {
    let host = Host::start(&[]).await;
    let session = create(&host, "").await;
    run(&host, &session, "export KEPT=yes").await;
    let (_, mut stream) = start_run(
        &host,
        &session,
        json!({"command": "export KEPT=no; sleep 30", "timeout": 300}),
    )
    .await;
    let events = logged(&stream.events().await, 0);
    assert_failed(events.last().expect("terminal"), "-1", "signal: killed");
    let (_, next) = run(&host, &session, "echo $KEPT").await;
    assert_eq!(
        texts(&next, "stdout"),
        vec!["yes"],
        "a killed run saves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_errors() {
    let host = Host::start(&[]).await;
    for bad in [
        "not json",
        "[]",
        "7",
        r#"{"cwd":7}"#,
        r#"{"cwd":"/definitely/not/here"}"#,
        r#"{"cwd":"$NOT_DEFINED_HERE"}"#,
    ] {
        host.call("POST", "/session", bad)
            .await
            .assert_error(400, "INVALID_REQUEST_BODY");
    }
    let session = create(&host, r#"{"cwd":""}"#).await;
    let path = format!("/session/{session}/run");
    for bad in [
        "",
        "not json",
        "{}",
        r#"{"command":""}"#,
        r#"{"command":"   "}"#,
        r#"{"command":"a\u0000b"}"#,
        r#"{"command":7}"#,
        r#"{"command":"echo","timeout":-1}"#,
        r#"{"command":"echo","timeout":"soon"}"#,
        r#"{"command":"echo","cwd":"/definitely/not/here"}"#,
        r#"{"command":"echo","cwd":"${NOT_DEFINED_HERE}"}"#,
    ] {
        host.call("POST", &path, bad)
            .await
            .assert_error(400, "INVALID_REQUEST_BODY");
    }
    host.call(
        "POST",
        &format!("{path}?framing=bogus"),
        r#"{"command":"echo"}"#,
    )
    .await
    .assert_error(400, "INVALID_QUERY");
    let big = format!(r#"{{"command":"{}"}}"#, "x".repeat(2 << 20));
    host.call("POST", &path, &big)
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    // Nothing of the above ran or left the session busy.
    let (_, ok) = run(&host, &session, "echo fine").await;
    assert_eq!(texts(&ok, "stdout"), vec!["fine"]);

    for (method, path) in [("POST", "/session/nope/run"), ("DELETE", "/session/nope")] {
        host.call(method, path, r#"{"command":"echo"}"#)
            .await
            .assert_error(404, "SESSION_NOT_FOUND");
    }
    for (method, path) in [
        ("PUT", "/session".to_string()),
        ("DELETE", "/session".to_string()),
        ("GET", format!("/session/{session}")),
        ("GET", path.clone()),
    ] {
        host.call(method, &path, "")
            .await
            .assert_error(405, "METHOD_NOT_ALLOWED");
    }
    assert_eq!(
        host.call("DELETE", &format!("/session/{session}"), "")
            .await
            .status,
        200
    );
    host.call("DELETE", &format!("/session/{session}"), "")
        .await
        .assert_error(404, "SESSION_NOT_FOUND");
}

fn listed(response: &Response) -> Vec<serde_json::Value> {
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["sessions"]
        .as_array()
        .expect("a sessions array")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_oldest_first_with_their_running_run() {
    let host = Host::start(&[]).await;
    assert!(listed(&host.call("GET", "/session", "").await).is_empty());
    // Enough sessions that random ids would not come back in creation
    // order by chance.
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(create(&host, r#"{"cwd":"/tmp"}"#).await);
    }
    let (run_id, _stream) = start_run(&host, &ids[3], json!({"command": "sleep 30"})).await;

    let sessions = listed(&host.call("GET", "/session", "").await);
    let order: Vec<&str> = sessions
        .iter()
        .map(|s| s["session_id"].as_str().expect("session_id"))
        .collect();
    assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>());
    for (i, session) in sessions.iter().enumerate() {
        assert_eq!(session["cwd"], "/tmp");
        assert!(
            session["created_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        let running = if i == 3 { json!(run_id) } else { json!(null) };
        assert_eq!(session["running"], running, "{session}");
    }

    // A deleted session is gone from the list, and its run with it.
    assert_eq!(
        host.call("DELETE", &format!("/session/{}", ids[3]), "")
            .await
            .status,
        200
    );
    let after = listed(&host.call("GET", "/session", "").await);
    assert_eq!(after.len(), 7);
    assert!(after.iter().all(|s| s["session_id"] != ids[3].as_str()));
    assert!(after.iter().all(|s| s["running"].is_null()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_files_go_with_the_session_and_the_host() {
    let state = TempDir::new("session-state");
    let dir = state.0.join("state");
    let dir_s = dir.to_str().expect("utf-8").to_string();
    let host = Host::start(&["--state-dir", &dir_s]).await;
    let session = create(&host, "").await;
    run(&host, &session, "export A=1").await;
    let session_dir = dir.join("sessions").join(&session);
    assert!(session_dir.join("state.sh").is_file(), "state saved");
    assert_eq!(
        host.call("DELETE", &format!("/session/{session}"), "")
            .await
            .status,
        200
    );
    assert!(
        !session_dir.exists(),
        "deleting a session removes its directory"
    );
    let kept = create(&host, "").await;
    assert!(dir.join("sessions").join(&kept).is_dir());
    assert!(host.terminate().await.success());
    assert!(
        !dir.join("sessions").exists(),
        "the host removes sessions at exit"
    );
}
