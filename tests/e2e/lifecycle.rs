//! Process lifecycle: every child is reaped (no zombies, whatever ended
//! it), and on SIGTERM the host stops accepting, kills the process groups it
//! started, lets connected streams end with their terminal event, closes
//! idle connections, removes its files and exits 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::probes::*;

/// How command `n` of the 200 ends.
async fn short_command(host: &Host, n: usize) {
    match n % 5 {
        // Exits by itself, with a status.
        0 => {
            let mut s = host
                .run(json!({ "command": format!("exit {}", n % 3) }))
                .await;
            init_id(&mut s).await;
            let events = logged(&s.events().await, 0);
            assert_eq!(events.len(), 1);
        }
        // Interrupted by DELETE.
        1 => {
            let mut s = host.run(json!({ "command": "echo up; sleep 5" })).await;
            let id = init_id(&mut s).await;
            assert_eq!(s.next_event().await.expect("up").text(), "up");
            let r = host.call("DELETE", &format!("/command?id={id}"), "").await;
            assert_eq!(r.status, 200);
            let events = s.events().await;
            let end = events.last().expect("terminal");
            assert_eq!(end.data["error"]["evalue"], "-1", "{:?}", end.data);
        }
        // Killed by its timeout.
        2 => {
            let mut s = host
                .run(json!({ "command": "sleep 5", "timeout": 100 }))
                .await;
            init_id(&mut s).await;
            let events = s.events().await;
            let end = events.last().expect("terminal");
            assert_eq!(end.data["error"]["evalue"], "-1", "{:?}", end.data);
        }
        // Leaves a background grandchild behind (foreground command).
        3 => {
            let mut s = host
                .run(json!({ "command": "sleep 0.1 & echo left" }))
                .await;
            init_id(&mut s).await;
            let events = logged(&s.events().await, 0);
            assert_eq!(events[0].text(), "left");
        }
        // Background command with a grandchild.
        _ => {
            let id = background(host, "sleep 0.1 & (sleep 0.05; echo sub) & echo bg").await;
            let status = host.wait_finished(&id).await;
            assert_eq!(status["exit_code"], 0);
        }
    }
}

/// What a command leaves running (`./server & echo started`) keeps
/// writing after the command ended and its output was logged: the host
/// must neither kill it with SIGPIPE by closing the pipe, nor block it by
/// leaving the pipe unread once full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_command_leaves_running_may_keep_writing() {
    let dir = TempDir::new("lifecycle-leftover");
    let marker = dir.0.join("survived");
    let host = Host::start(&[]).await;
    // Past the host's drain of the pipes (at most 5 s), it writes more
    // than a pipe holds, then leaves a mark.
    let command = format!(
        "(sleep 0.6; head -c 300000 /dev/zero; echo late; head -c 300000 /dev/zero >&2; echo ok > {}) & echo early",
        marker.display()
    );
    let mut stream = host.run(json!({ "command": command })).await;
    init_id(&mut stream).await;
    let events = logged(&stream.events().await, 0);
    let texts: Vec<&str> = events.iter().map(|e| e.text()).collect();
    assert_eq!(
        texts.first(),
        Some(&"early"),
        "{:?}",
        &texts[..texts.len().min(3)]
    );
    assert_eq!(events.last().map(Event::kind), Some("execution_complete"));
    let survived = eventually(Duration::from_secs(10), || marker.exists()).await;
    assert!(
        survived,
        "the process the command left running was killed or blocked writing to its pipes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_child_is_reaped() {
    let started = Instant::now();
    let host = Arc::new(Host::start(&[]).await);
    let pid = host.pid().expect("host pid");
    let total = 200;
    let concurrency = 10;
    for start in (0..total).step_by(concurrency) {
        let tasks: Vec<_> = (start..start + concurrency)
            .map(|n| {
                let host = Arc::clone(&host);
                tokio::spawn(async move { short_command(&host, n).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("command task");
        }
    }
    // Grandchildren outlive their parents by up to 0.1 s; they were never
    // the host's children, but give them the time anyway.
    let reaped = eventually(Duration::from_secs(3), || children(pid).is_empty()).await;
    let left = children(pid);
    let zombies: Vec<_> = left.iter().filter(|(_, s)| *s == 'Z').collect();
    println!(
        "lifecycle: {total} commands (exit, DELETE, timeout, grandchildren); children left {left:?}; {:?}",
        started.elapsed()
    );
    assert!(
        zombies.is_empty(),
        "zombie children of the host: {zombies:?}"
    );
    assert!(reaped, "children of the host still there: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_kills_groups_keeps_files_for_the_next_host_and_exits_0() {
    let dir = TempDir::new("lifecycle-sigterm");
    let state = dir.0.clone();
    let state_arg = state.to_str().expect("utf-8 path").to_string();
    let host = Host::start(&["--state-dir", &state_arg]).await;
    let pid = host.pid().expect("host pid");

    // A foreground stream, connected, on `sleep 30`.
    let mut stream = host.run(json!({ "command": "echo $$; sleep 30" })).await;
    let id = init_id(&mut stream).await;
    let group: u32 = stream
        .next_event()
        .await
        .expect("pid line")
        .text()
        .parse()
        .expect("a pid");
    // A background command that ignores SIGTERM (so SIGKILL must follow),
    // and has an output file in the state dir.
    let stubborn = background(&host, "trap '' TERM; echo $$; sleep 30").await;
    let deadline = Instant::now() + PATIENCE;
    let stubborn_group: u32 = loop {
        let logs = host
            .call("GET", &format!("/command/{stubborn}/logs"), "")
            .await;
        if let Ok(pid) = logs.text().trim().parse() {
            break pid;
        }
        assert!(Instant::now() < deadline, "no pid in the logs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(state.join(format!("{stubborn}.out")).exists());
    assert!(!group_alive(group).is_empty() && !group_alive(stubborn_group).is_empty());

    // An idle keep-alive connection.
    let mut idle = TcpStream::connect(&host.addr).await.expect("connect");
    idle.write_all(&request(&host, "GET", "/ping", b"", false))
        .await
        .expect("ping");
    let mut buf = vec![0; 1024];
    let n = idle.read(&mut buf).await.expect("ping response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "keep-alive ping");

    // Read the stream to its end while the host shuts down.
    let reader = tokio::spawn(async move {
        let events = stream.events().await;
        (events, Instant::now())
    });
    let addr = host.addr.clone();
    let t0 = Instant::now();
    // SAFETY: signalling the host we started, by its pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    // It stops accepting at once, while it still waits for the stubborn
    // command's grace to run out.
    let refused = eventually(Duration::from_secs(2), || {
        std::net::TcpStream::connect_timeout(
            &addr.parse().expect("socket address"),
            Duration::from_millis(200),
        )
        .is_err()
    })
    .await;
    let refused_at = t0.elapsed();
    let still_up = stat(pid).is_some_and(|p| p.3 != 'Z');
    let status = host.terminate().await;
    let exited_at = t0.elapsed();

    let (events, stream_end) = reader.await.expect("reader");
    let end = events.last().expect("terminal event");
    println!(
        "lifecycle/sigterm: refused connections after {refused_at:?}, exit {status:?} after \
         {exited_at:?}, stream ended after {:?}",
        stream_end - t0
    );
    assert!(status.success(), "exit status {status:?}");
    assert!(exited_at < Duration::from_secs(10), "{exited_at:?}");
    assert!(refused, "still accepting connections after SIGTERM");
    assert!(
        still_up,
        "new connections were refused while the host drained"
    );
    // The connected stream got the terminal event, then ended cleanly.
    let logged = logged(&events, 1);
    assert_eq!(end.kind(), "error", "{:?}", end.data);
    assert_eq!(end.data["error"]["evalue"], "-1");
    assert_eq!(logged.len(), 1, "only the terminal event after the pid");
    assert!(
        stream_end - t0 < Duration::from_secs(6),
        "the stream ended with the SIGTERMed command, not at the drain limit"
    );
    // The idle keep-alive connection was closed.
    let closed = tokio::time::timeout(Duration::from_secs(1), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection closed: {closed:?}"
    );
    // Both process groups are gone, the stubborn one too.
    assert!(is_dead(group), "the sleep's shell {group} still runs");
    assert!(
        group_alive(group).is_empty(),
        "group {group} still has members"
    );
    assert!(
        group_alive(stubborn_group).is_empty(),
        "the SIGTERM-ignoring group {stubborn_group} survived"
    );
    // An operator's --state-dir keeps what a later host needs to serve
    // these logs again (see restart.rs), and nothing else.
    let mut left: Vec<String> = std::fs::read_dir(&state)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().into_string().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    left.sort();
    let mut want = vec![
        format!("{id}.end"),
        format!("{id}.json"),
        format!("{id}.log"),
        format!("{stubborn}.end"),
        format!("{stubborn}.json"),
        format!("{stubborn}.log"),
        format!("{stubborn}.out"),
        "execd-host.lock".to_string(),
        "execd.env".to_string(),
    ];
    want.sort();
    assert_eq!(left, want, "the state dir after shutdown");
}
