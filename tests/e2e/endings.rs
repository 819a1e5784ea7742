//! Endings that say why (issue 21): `reason` and `signal` on every
//! terminal event, in the status body and the command list. Timeouts and
//! DELETEs are in `api`, the host's own shutdown and a host that died in
//! `restart`; here the rest, and a shutdown seen by a connected reader.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// Runs `command` to its end: its terminal event and its status.
async fn ending(host: &Host, command: &str) -> (Event, Value) {
    let mut stream = host.run(json!({ "command": command })).await;
    let id = init_id(&mut stream).await;
    let events = logged(&stream.events().await, 0);
    let end = events.last().expect("a terminal event").clone();
    (end, host.wait_finished(&id).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_a_failure_and_a_signal_of_its_own() {
    let host = Host::start(&[]).await;
    let (end, status) = ending(&host, "true").await;
    assert_eq!(end.kind(), "execution_complete");
    assert_reason(&end, &status, "exit", None);

    let (end, status) = ending(&host, "exit 3").await;
    assert_failed(&end, "3", "exit status 3");
    assert_reason(&end, &status, "exit", None);

    // A signal the host did not send.
    let (end, status) = ending(&host, "kill -KILL $$").await;
    assert_failed(&end, "-1", "signal: killed");
    assert_reason(&end, &status, "signal", Some(libc::SIGKILL));
    let (end, status) = ending(&host, "kill -SEGV $$").await;
    assert_reason(&end, &status, "signal", Some(libc::SIGSEGV));

    // The list says the same as each status.
    let list = host.call("GET", "/command", "").await.json();
    let reasons: Vec<&str> = list["commands"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["exit", "exit", "signal", "signal"], "{list}");
}

/// A command that handles the DELETE's SIGTERM and exits by itself was
/// still ended by the DELETE: `interrupted`, with its exit code and no
/// signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_that_the_command_handles_is_still_interrupted() {
    let host = Host::start(&[]).await;
    let mut stream = host
        .run(json!({"command": "trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done"}))
        .await;
    let id = init_id(&mut stream).await;
    let ready = stream.next_event().await.expect("ready");
    assert_eq!(ready.text(), "ready");
    let resp = host.call("DELETE", &format!("/command?id={id}"), "").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let events = stream.events().await;
    let end = events.last().expect("terminal").clone();
    assert_failed(&end, "3", "exit status 3");
    let status = host.wait_finished(&id).await;
    assert_reason(&end, &status, "interrupted", None);
}

/// SIGTERM to the host: a reader still connected gets `HostShutdown`,
/// reason `host-shutdown`, before the host exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_connected_at_shutdown_learns_the_host_ended_it() {
    let host = Host::start(&[]).await;
    let mut stream = host.run(json!({"command": "echo started; sleep 60"})).await;
    init_id(&mut stream).await;
    let started = stream.next_event().await.expect("started");
    assert_eq!(started.text(), "started");
    let stopping = tokio::spawn(host.terminate());
    let rest = tokio::time::timeout(PATIENCE, stream.events())
        .await
        .expect("the stream ends");
    let end = rest.last().expect("a terminal event");
    assert!(end.is_terminal(), "{:?}", end.data);
    assert_eq!(end.data["error"]["ename"], "HostShutdown", "{:?}", end.data);
    assert_eq!(end.data["error"]["evalue"], "-1");
    assert_eq!(end.data["reason"], "host-shutdown");
    assert_eq!(end.data["signal"], libc::SIGTERM);
    let status = tokio::time::timeout(PATIENCE + Duration::from_secs(5), stopping)
        .await
        .expect("host exits")
        .expect("join");
    assert!(status.success(), "{status:?}");
}
