//! The library's API in-process: hosts made with `Host::builder()`, served
//! on port 0 or mounted in an axum router, commands run with typed
//! events, and a shutdown that leaves nothing behind. Real processes,
//! real policies, real TCP; no daemon binary.

use std::time::Duration;

use execd_host::{
    Channel, Ending, Event, Execution, Host, LogsError, NewSession, Outcome, Run, RunError,
    SessionError, SessionRun,
};
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
    // How it ended, as the first host logged it.
    assert_eq!(recovered.wait().await, Ending::Exited(0));
    assert_eq!(recovered.status().ending, Some(Ending::Exited(0)));
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

/// Waits for the first line of `command`'s output: the command has
/// started, and wrote it.
async fn first_line(command: &Execution) -> String {
    let mut events = command.events(0).await.expect("a reader");
    let next = tokio::time::timeout(Duration::from_secs(20), events.next()).await;
    match next.expect("a line in time") {
        Some(Event::Lines(lines)) => lines[0].text.clone(),
        other => panic!("expected a line first: {other:?}"),
    }
}

async fn wait(command: &Execution) -> Ending {
    tokio::time::timeout(Duration::from_secs(20), command.wait())
        .await
        .expect("it ends in time")
}

/// The terminal event, as the typed stream gives it.
async fn end_of(command: &Execution) -> execd_host::End {
    match collect(command.events(0).await.expect("a reader"))
        .await
        .pop()
    {
        Some(Event::End(end)) => end,
        other => panic!("the last event is the terminal one: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_says_how_each_command_ended_as_the_wire_does() {
    let host = ring_host().await;
    let cases = [
        (Run::shell("true"), Ending::Exited(0)),
        (Run::shell("exit 3"), Ending::Exited(3)),
        (Run::shell("kill -KILL $$"), Ending::Signaled(9)),
        (
            Run::shell("exec sleep 60").timeout(Duration::from_millis(200)),
            Ending::TimedOut { signal: Some(9) },
        ),
    ];
    for (run, want) in cases {
        let command = host.run(run.clone()).await.expect("it starts");
        assert_eq!(wait(&command).await, want, "{run:?}");
        // Again, once ended: at once, the same.
        assert_eq!(command.wait().await, want);
        // The status and the terminal event say the same, in the wire's words.
        let status = command.status();
        assert_eq!(status.ending.as_ref(), Some(&want));
        assert_eq!(status.reason, Some(want.reason()));
        assert_eq!(status.signal, want.signal());
        let end = end_of(&command).await;
        assert_eq!(end.ending, want);
        assert_eq!((end.reason, end.signal), (want.reason(), want.signal()));
    }

    // An interrupt: SIGTERM to a command that is running (its line is out).
    let running = host
        .run(Run::shell("echo ready; exec sleep 60"))
        .await
        .unwrap();
    assert_eq!(first_line(&running).await, "ready");
    let waiter = tokio::spawn({
        let host = host.clone();
        let id = running.id().to_string();
        async move { host.command(&id).unwrap().wait().await }
    });
    running.interrupt();
    let want = Ending::Interrupted { signal: Some(15) };
    assert_eq!(waiter.await.unwrap(), want, "a wait under way sees the end");
    assert_eq!(end_of(&running).await.ending, want);
    assert!(!want.is_success() && want.reason() == "interrupted");

    // The host's shutdown ends what still runs: a wait under way returns.
    let last = host
        .run(Run::shell("echo up; exec sleep 60"))
        .await
        .unwrap();
    assert_eq!(first_line(&last).await, "up");
    let waiter = tokio::spawn(async move { last.wait().await });
    host.shutdown(Duration::from_secs(3)).await;
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the wait ends with the host")
            .unwrap(),
        Ending::HostShutdown { signal: Some(15) }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_lists_what_get_command_lists_oldest_first() {
    let host = ring_host().await;
    assert!(host.commands().is_empty());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serving = tokio::spawn(host.serve(listener).into_future());
    let done = host.run(Run::shell("exit 2")).await.unwrap();
    wait(&done).await;
    let running = host
        .run(Run::shell("echo on; exec sleep 60"))
        .await
        .unwrap();
    assert_eq!(first_line(&running).await, "on");
    let third = host.run(Run::shell("true").background(true)).await.unwrap();
    wait(&third).await;

    let listed = host.commands();
    let ids: Vec<&str> = listed.iter().map(|c| c.id()).collect();
    assert_eq!(ids, [done.id(), running.id(), third.id()]);
    let started: Vec<_> = listed.iter().map(|c| c.started_at()).collect();
    assert!(started.is_sorted(), "oldest first: {started:?}");
    assert_eq!(listed[0].status().ending, Some(Ending::Exited(2)));
    assert!(listed[1].status().running && listed[1].status().ending.is_none());
    assert_eq!(listed[2].status().ending, Some(Ending::Exited(0)));
    // The same list, in the same order, over HTTP.
    let over_http = try_request(&addr, "GET", "/command", &[])
        .await
        .unwrap()
        .finish()
        .await
        .json();
    let http_ids: Vec<&str> = over_http["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(http_ids, ids);
    host.shutdown(Duration::from_secs(3)).await;
    serving.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_gives_the_raw_bytes_from_a_cursor_as_get_logs_does() {
    let host = ring_host().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serving = tokio::spawn(host.serve(listener).into_future());
    // Bytes the events cannot keep: a CR, invalid UTF-8, no last newline.
    let raw: &[u8] = b"one\r\xff\ntwo";
    let command = host
        .run(Run::shell(r"printf 'one\r\377\ntwo'").background(true))
        .await
        .unwrap();
    assert_eq!(wait(&command).await, Ending::Exited(0));
    let all = command.logs(0).await.expect("kept");
    assert_eq!(all.bytes, raw);
    assert_eq!((all.next_cursor, all.head_cursor), (raw.len() as u64, 0));
    let rest = command.logs(4).await.unwrap();
    assert_eq!(rest.bytes, &raw[4..]);
    assert_eq!(rest.next_cursor, raw.len() as u64);
    let none = command.logs(all.next_cursor).await.unwrap();
    assert!(none.bytes.is_empty() && none.next_cursor == all.next_cursor);
    // Past the end: nothing, and the cursor stays, as the header does.
    assert_eq!(command.logs(100).await.unwrap().next_cursor, 100);
    // The same bytes and cursors as GET /command/{id}/logs.
    let http = try_request(
        &addr,
        "GET",
        &format!("/command/{}/logs?cursor=4", command.id()),
        &[],
    )
    .await
    .unwrap()
    .finish()
    .await;
    assert_eq!(http.body, rest.bytes);
    assert_eq!(
        http.header("EXECD-COMMANDS-TAIL-CURSOR"),
        Some(rest.next_cursor.to_string().as_str())
    );

    // While it runs: what it wrote so far (its line has been logged, so
    // its bytes are kept), then only what came since.
    let live = host
        .run(Run::shell("echo first; echo second >&2; exec sleep 60").background(true))
        .await
        .unwrap();
    let mut events = live.events(0).await.unwrap();
    let mut seen = 0;
    while seen < 2 {
        match events.next().await {
            Some(Event::Lines(lines)) => seen += lines.len(),
            other => panic!("two lines first: {other:?}"),
        }
    }
    let so_far = live.logs(0).await.unwrap();
    let mut lines: Vec<&[u8]> = so_far.bytes.split_inclusive(|&b| b == b'\n').collect();
    lines.sort();
    assert_eq!(lines, [b"first\n".as_slice(), b"second\n"], "both pipes");
    live.interrupt();
    wait(&live).await;
    let after = live.logs(so_far.next_cursor).await.unwrap();
    assert!(after.bytes.is_empty(), "{:?}", after.bytes);

    // A foreground command keeps no raw bytes.
    let foreground = host.run(Run::shell("echo hi")).await.unwrap();
    wait(&foreground).await;
    assert!(matches!(foreground.logs(0).await, Err(LogsError::NotKept)));
    host.shutdown(Duration::from_secs(3)).await;
    serving.await.unwrap();
}

/// `printed` (what `pwd` said) is the directory `dir`, whichever path
/// names it.
fn assert_same_dir(printed: &str, dir: &std::path::Path) {
    let printed = std::path::Path::new(printed).canonicalize().unwrap();
    assert_eq!(printed, dir.canonicalize().unwrap());
}

/// The lines of a run, to its end.
async fn texts(command: &Execution) -> Vec<String> {
    let events = collect(command.events(0).await.expect("a reader")).await;
    lines(&events).into_iter().map(|l| l.2).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_its_state_between_runs_as_the_session_routes_do() {
    let dir = TempDir::new("library-session");
    std::fs::create_dir(dir.0.join("sub")).unwrap();
    let host = ring_host().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serving = tokio::spawn(host.serve(listener).into_future());
    let session = host
        .session(NewSession::default().cwd(&dir.0))
        .expect("a session");
    assert!(session.id().starts_with("session-"));

    let first = session
        .run("export KEPT=yes; cd sub; exit 4")
        .await
        .unwrap();
    assert_eq!(wait(&first).await, Ending::Exited(4));
    let second = session.run(r#"echo "$KEPT"; pwd"#).await.unwrap();
    let sub = dir.0.join("sub");
    let second_lines = texts(&second).await;
    assert_eq!(second_lines[0], "yes");
    assert_same_dir(&second_lines[1], &sub);
    // A cwd for one run only.
    let elsewhere = session
        .run(SessionRun::new("pwd").cwd(&dir.0))
        .await
        .unwrap();
    assert_same_dir(&texts(&elsewhere).await[0], &dir.0);
    let back = session.run("pwd").await.unwrap();
    assert_same_dir(&texts(&back).await[0], &sub);
    // Runs are commands like any other.
    let ids: Vec<String> = host.commands().iter().map(|c| c.id().to_string()).collect();
    assert_eq!(ids, [first.id(), second.id(), elsewhere.id(), back.id()]);

    // One run at a time.
    let long = session.run("echo started; exec sleep 60").await.unwrap();
    assert_eq!(first_line(&long).await, "started");
    assert!(matches!(
        session.run("true").await,
        Err(SessionError::Busy(_))
    ));
    // What the routes see is the same session.
    let listed = try_request(&addr, "GET", "/session", &[])
        .await
        .unwrap()
        .finish()
        .await
        .json();
    assert_eq!(listed["sessions"][0]["session_id"], session.id());
    assert_eq!(listed["sessions"][0]["running"], long.id());
    // What the routes refuse, it refuses.
    assert!(matches!(
        session.run("   ").await,
        Err(SessionError::Run(RunError::Invalid(_)))
    ));
    assert!(matches!(
        host.session(NewSession::default().cwd("/no/such/dir")),
        Err(SessionError::Invalid(_))
    ));

    // Deleting it interrupts its run, and it is gone.
    session.delete().unwrap();
    assert_eq!(wait(&long).await, Ending::Interrupted { signal: Some(15) });
    assert!(matches!(
        session.run("true").await,
        Err(SessionError::NotFound(_))
    ));
    assert!(matches!(session.delete(), Err(SessionError::NotFound(_))));
    let left = host.session(NewSession::default()).unwrap();
    host.shutdown(Duration::from_secs(3)).await;
    serving.await.unwrap();
    // The shutdown removed the session left; none is made after it.
    assert!(matches!(
        left.run("true").await,
        Err(SessionError::NotFound(_))
    ));
    assert!(matches!(
        host.session(NewSession::default()),
        Err(SessionError::ShuttingDown)
    ));
    assert!(!host.state_dir().exists(), "nothing made again");
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
