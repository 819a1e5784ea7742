//! Bounds: the number of running commands, readers per command, and the
//! line length are configurable, reject with a clear 503 (or cut lines)
//! when exceeded, and never take the host down; running out of file
//! descriptors is answered as the server's condition. The body-size bound
//! is tested in errors.rs.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use crate::probes::*;

/// The 503 a bound answers, as the contract's JSON error body.
async fn assert_503(stream: Stream, code: &str) {
    let response = stream.finish().await;
    response.assert_error(503, code);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_commands_rejects_the_third_and_frees_slots_at_exit() {
    let started = Instant::now();
    let host = Host::start(&["--max-commands", "2"]).await;
    let mut first = host.run(json!({ "command": "sleep 2" })).await;
    let a = init_id(&mut first).await;
    let b = background(&host, "sleep 2").await;
    assert_eq!(host.status(&a).await["running"], true);
    assert_eq!(host.status(&b).await["running"], true);

    // Foreground or background, the third is refused before it runs.
    for background in [false, true] {
        let third = host
            .run(json!({ "command": "touch /nonexistent-dir/never", "background": background }))
            .await;
        assert_503(third, "TOO_MANY_COMMANDS").await;
    }
    ping(&host).await;

    // Once both have finished (the foreground one's terminal event read,
    // the background one's status says so), the slots are free again.
    let events = first.events().await;
    assert_eq!(logged(&events, 0).len(), 1);
    host.wait_finished(&b).await;
    let mut next = host.run(json!({ "command": "echo again" })).await;
    assert_eq!(
        next.status, 200,
        "a slot is free after the commands finished"
    );
    let events = next.events().await;
    assert_eq!(events[1].text(), "again");
    println!(
        "max-commands: third refused, slot reused in {:?}",
        started.elapsed()
    );
}

/// A client that sees a command end (terminal event, or status `running:
/// false`) and starts the next one at once must not be refused: the slot
/// is given back when the command is seen to end, not a moment later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_commands_slot_is_free_as_soon_as_the_end_is_visible() {
    let host = Host::start(&["--max-commands", "1"]).await;
    let mut refused = 0;
    for round in 0..60 {
        let background = round % 2 == 1;
        let mut stream = host
            .run(json!({ "command": "echo x", "background": background }))
            .await;
        if stream.status == 503 {
            refused += 1;
            let _ = stream.finish().await;
            // Let the previous one's slot go before the next round.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let id = init_id(&mut stream).await;
        let _ = stream.events().await;
        if background {
            host.wait_finished(&id).await;
        }
    }
    assert_eq!(
        refused, 0,
        "{refused} of 60 POSTs got 503 TOO_MANY_COMMANDS right after the \
         previous command was reported finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_readers_rejects_the_third_and_admits_after_a_disconnect() {
    let host = Host::start(&["--max-readers", "2"]).await;
    let mut primary = host
        .run(json!({ "command": "echo start; sleep 4; echo end" }))
        .await;
    let id = init_id(&mut primary).await;
    assert_eq!(primary.next_event().await.expect("start").text(), "start");

    let mut second = host.resume(&id, 0).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.next_event().await.expect("replayed").text(), "start");

    // The POST stream counts: a third reader is refused, by query or header.
    assert_503(host.resume(&id, 0).await, "TOO_MANY_READERS").await;
    let by_header = host
        .send(
            "GET",
            &format!("/command/{id}/resume"),
            &[("Last-Event-ID", "1")],
            b"",
        )
        .await;
    assert_503(by_header, "TOO_MANY_READERS").await;
    ping(&host).await;

    // One reader leaves: within a second a new one is admitted.
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(1);
    let waited = Instant::now();
    let mut third = loop {
        let stream = host.resume(&id, 1).await;
        if stream.status == 200 {
            break stream;
        }
        assert_eq!(stream.status, 503);
        assert!(
            Instant::now() < deadline,
            "no reader admitted within 1 s after one disconnected"
        );
        let _ = stream.finish().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "max-readers: a reader was admitted {:?} after one left",
        waited.elapsed()
    );
    // Both remaining readers get the rest, and a reader that read to the end
    // frees its place too.
    let rest = logged(&third.events().await, 1);
    assert_eq!(rest[0].text(), "end");
    let rest = logged(&primary.events().await, 1);
    assert_eq!(rest[0].text(), "end");
    let mut after = host.resume(&id, 0).await;
    assert_eq!(after.status, 200);
    assert_eq!(logged(&after.events().await, 0).len(), 3);
}

/// Stdout events' texts.
fn stdout(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind() == "stdout")
        .map(|e| e.text().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_line_bytes_cuts_a_5000_byte_line_into_5_pieces() {
    let host = Host::start(&["--max-line-bytes", "1000"]).await;
    let line = "x".repeat(5000);
    // The line and its newline in one write.
    let mut stream = host
        .run(json!({ "command": "printf '%5000s\\n' '' | tr ' ' x; echo next" }))
        .await;
    init_id(&mut stream).await;
    let got = stdout(&logged(&stream.events().await, 0));
    let pieces: Vec<String> = vec!["x".repeat(1000); 5];
    assert_eq!(got[..5], pieces[..], "5 pieces of 1000");
    assert_eq!(got[5..], ["next"], "nothing else: {:?}", &got[5..]);
    assert_eq!(got[..5].concat(), line);

    // A line of 2500 bytes: 1000, 1000, 500; and a UTF-8 line is cut at a
    // character boundary (999 bytes of 3-byte characters, then the rest).
    let mut stream = host
        .run(json!({ "command": "printf '%2500s\\n' '' | tr ' ' y; printf '€%.0s' $(seq 1 400); echo" }))
        .await;
    init_id(&mut stream).await;
    let got = stdout(&logged(&stream.events().await, 0));
    let lens: Vec<usize> = got.iter().map(String::len).collect();
    assert_eq!(lens, [1000, 1000, 500, 999, 201], "{lens:?}");
    assert_eq!(got[3..].concat(), "€".repeat(400));
    ping(&host).await;
}

/// The same 5000-byte line when its newline arrives in a later read (a
/// separate write): still 5 pieces, not 5 pieces and an empty line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_line_bytes_line_whose_newline_comes_later() {
    let host = Host::start(&["--max-line-bytes", "1000"]).await;
    let mut stream = host
        .run(json!({ "command": "printf '%5000s' '' | tr ' ' x; sleep 0.02; echo; echo next" }))
        .await;
    init_id(&mut stream).await;
    let got = stdout(&logged(&stream.events().await, 0));
    let mut want = vec!["x".repeat(1000); 5];
    want.push("next".into());
    assert_eq!(
        got.iter().map(String::len).collect::<Vec<_>>(),
        want.iter().map(String::len).collect::<Vec<_>>(),
        "a 5000-byte line whose newline is written 20 ms later: {:?}",
        got.iter()
            .map(|t| if t.len() > 8 {
                format!("{}x{}", &t[..1], t.len())
            } else {
                t.clone()
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(got, want);
}

/// Out of file descriptors (a server-side limit, not the client's fault),
/// `POST /command` is refused with a 5xx error body (not a 400 blaming the
/// request), and once fds are available again the host serves as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_exhaustion_is_a_server_error_and_the_host_recovers() {
    let host = Host::start(&[]).await;
    let pid = host.pid().expect("host pid") as i32;
    let mut before = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads the host's limit into a struct we own.
    unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut before) };
    let set_limit = |n: u64| {
        let limit = libc::rlimit {
            rlim_cur: n,
            rlim_max: before.rlim_max,
        };
        // SAFETY: prlimit(2) on the host we started, with a valid rlimit.
        let set = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
        assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    };
    ping(&host).await;
    // Room for the connection, not for the command's pipes.
    set_limit(host_fds(&host) as u64 + 2);
    let refused = host
        .run(json!({ "command": "echo never" }))
        .await
        .finish()
        .await;
    set_limit(before.rlim_cur);
    println!(
        "bounds/fds: out of fds, POST /command answered {} {}",
        refused.status,
        refused.text()
    );
    assert!(
        (500..600).contains(&refused.status),
        "out of fds is the server's condition, not a bad request: {} {}",
        refused.status,
        refused.text()
    );
    let json = refused.json();
    assert!(json["code"].is_string() && json["message"].is_string());
    let mut stream = host.run(json!({ "command": "echo back" })).await;
    init_id(&mut stream).await;
    assert_eq!(logged(&stream.events().await, 0)[0].text(), "back");
}
