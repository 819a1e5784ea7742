//! The library's API in-process: hosts made with `Host::builder()`, served
//! on port 0 or mounted in an axum router, commands run with typed
//! events, and a shutdown that leaves nothing behind. Real processes,
//! real policies, real TCP; no daemon binary.

use std::time::Duration;

use execd_host::{Channel, Event, Host, Outcome, Run, RunError};
use futures_util::StreamExt;

use crate::harness::{TempDir, try_request};

async fn ring_host() -> Host {
    Host::builder()
        .policy("ring")
        .build()
        .await
        .expect("the host starts")
}

async fn collect(events: execd_host::Events) -> Vec<Event> {
    tokio::time::timeout(Duration::from_secs(20), events.collect::<Vec<_>>())
        .await
        .expect("the stream ends")
}

fn lines(events: &[Event]) -> Vec<(u64, Channel, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Lines(lines) => Some(lines),
            _ => None,
        })
        .flatten()
        .map(|l| (l.eid, l.channel, l.text.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_gives_typed_events_and_resumes_from_any_eid() {
    let host = ring_host().await;
    let command = host
        .run(Run::shell("echo one; echo two >&2; echo three; exit 3"))
        .await
        .expect("it starts");
    assert_eq!(command.id().len(), 32);
    let all = collect(command.events(0).await.expect("a reader")).await;
    let got = lines(&all);
    let mut eids: Vec<u64> = got.iter().map(|l| l.0).collect();
    eids.sort();
    assert_eq!(eids, [1, 2, 3]);
    for (_, channel, text) in &got {
        assert_eq!(*channel == Channel::Stderr, text == "two", "{got:?}");
    }
    let stdout: Vec<&str> = got
        .iter()
        .filter(|l| l.1 == Channel::Stdout)
        .map(|l| l.2.as_str())
        .collect();
    assert_eq!(stdout, ["one", "three"]);
    let Some(Event::End(end)) = all.last() else {
        panic!("the last event is the terminal one: {all:?}");
    };
    assert_eq!(end.eid, 4);
    assert!(matches!(end.outcome, Outcome::Failed { exit_code: 3, .. }));
    // The same cursor as /resume: after eid 2, the rest.
    let rest = collect(command.events(2).await.expect("a reader")).await;
    assert_eq!(lines(&rest).iter().map(|l| l.0).collect::<Vec<_>>(), [3]);
    assert!(matches!(rest.last(), Some(Event::End(e)) if e.eid == 4));
    let status = command.status();
    assert!(!status.running);
    assert_eq!(status.exit_code, Some(3));
    // Over HTTP too: the command is the same one.
    assert!(host.command(command.id()).is_some());
    host.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_what_post_command_refuses() {
    let host = ring_host().await;
    for run in [
        Run::shell("   "),
        Run::argv(Vec::<String>::new()),
        Run::shell("true").env("A=B", "c"),
        Run::shell("true").cwd("/no/such/dir"),
    ] {
        assert!(
            matches!(host.run(run.clone()).await, Err(RunError::Invalid(_))),
            "{run:?} is refused"
        );
    }
    host.shutdown(Duration::from_secs(3)).await;
    assert!(matches!(
        host.run(Run::shell("true")).await,
        Err(RunError::ShuttingDown)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_port_zero_answers_the_api() {
    let host = ring_host().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serving = tokio::spawn(host.serve(listener).into_future());
    let ping = try_request(&addr, "GET", "/ping", &[])
        .await
        .expect("an answer");
    assert_eq!(ping.status, 200);
    let missing = try_request(&addr, "GET", "/command/status/nope", &[])
        .await
        .expect("an answer")
        .finish()
        .await;
    missing.assert_error(404, "COMMAND_NOT_FOUND");
    host.shutdown(Duration::from_secs(3)).await;
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve returns at shutdown")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_mounts_in_axum_beside_its_own_routes() {
    let host = ring_host().await;
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .fallback_service(host.service());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let health = try_request(&addr, "GET", "/healthz", &[])
        .await
        .unwrap()
        .finish()
        .await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));
    let ping = try_request(&addr, "GET", "/ping", &[]).await.unwrap();
    assert_eq!(ping.status, 200);
    host.shutdown(Duration::from_secs(3)).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_state_dir_keeps_commands_for_the_next_host() {
    let dir = TempDir::new("library-kept");
    let first = Host::builder()
        .policy("disk")
        .state_dir(&dir.0)
        .build()
        .await
        .expect("the host starts");
    let command = first.run(Run::shell("echo kept")).await.unwrap();
    let id = command.id().to_string();
    collect(command.events(0).await.unwrap()).await;
    drop(command);
    first.shutdown(Duration::from_secs(3)).await;
    assert!(dir.0.exists(), "a given state dir stays");
    let second = Host::builder()
        .policy("disk")
        .state_dir(&dir.0)
        .build()
        .await
        .expect("the next host starts");
    let recovered = second.command(&id).expect("the next host knows it");
    let events = collect(recovered.events(0).await.unwrap()).await;
    assert_eq!(
        lines(&events)
            .iter()
            .map(|l| l.2.as_str())
            .collect::<Vec<_>>(),
        ["kept"]
    );
    second.shutdown(Duration::from_secs(3)).await;
}

/// Run in a process of its own by [`shutdown_leaves_no_task_thread_or_file`],
/// so that nothing else in this test binary moves the counts.
#[test]
#[ignore = "run in its own process by shutdown_leaves_no_task_thread_or_file"]
fn shutdown_probe() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_keep_alive(Duration::from_millis(50))
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Once to warm what lives as long as the process whoever made it
        // (wasmtime's compile pool, the blocking pool).
        lifecycle().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = threads();
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let dir = lifecycle().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!dir.exists(), "the fresh state dir {dir:?} is removed");
        let after = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        assert_eq!(after, tasks, "every task of the host ended");
        let left = threads();
        assert!(
            !left.iter().any(|name| name == "policy-epoch"),
            "the epoch ticker ended: {left:?}"
        );
        assert_eq!(
            left.len(),
            before.len(),
            "threads before {before:?}, after {left:?}"
        );
    });
}

/// A host that runs a command to its end, one left running (with a
/// reader following it), and one in retention, then shuts down.
async fn lifecycle() -> std::path::PathBuf {
    let host = Host::builder().policy("disk").build().await.unwrap();
    let dir = host.state_dir().to_path_buf();
    let done = host
        .run(Run::shell("echo done").background(true))
        .await
        .unwrap();
    collect(done.events(0).await.unwrap()).await;
    let running = host
        .run(Run::shell("echo started; exec sleep 60"))
        .await
        .unwrap();
    let mut events = running.events(0).await.unwrap();
    assert!(matches!(events.next().await, Some(Event::Lines(_))));
    let follower = tokio::spawn(async move { events.collect::<Vec<_>>().await });
    host.shutdown(Duration::from_secs(3)).await;
    let rest = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("the reader ends")
        .unwrap();
    assert!(
        matches!(rest.last(), Some(Event::End(_))),
        "the reader got the terminal event: {rest:?}"
    );
    dir
}

/// The names of this process's threads.
fn threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn shutdown_leaves_no_task_thread_or_file() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "library::shutdown_probe",
            "--exact",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
