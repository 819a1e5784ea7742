//! Connection faults: resets mid-event, half-open connections, a client
//! that never reads, thousands of connections opened and dropped. The host
//! keeps serving, and leaks no file descriptors, reader tasks or memory:
//! its /proc/PID/fd count returns to where it was, readers detach (checked
//! with a small `--max-readers`, which a leaked reader would exhaust), and
//! VmRSS stays within a generous margin.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::probes::*;

/// Waits (at most 5 s) for the host's fd count to come back to `baseline`
/// plus `margin`, and returns the count.
async fn settled_fds(host: &Host, baseline: usize, margin: usize) -> usize {
    eventually(Duration::from_secs(5), || {
        host_fds(host) <= baseline + margin
    })
    .await;
    host_fds(host)
}

/// A fd baseline once the host has served a bit (runtime threads, the
/// policy engine's first instance, a finished command) and settled.
async fn warmed_up(host: &Host) -> (usize, u64) {
    let mut stream = host.run(json!({ "command": "echo warm" })).await;
    let id = init_id(&mut stream).await;
    let _ = stream.events().await;
    let _ = host.resume(&id, 0).await.events().await;
    ping(host).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    (host_fds(host), host.rss_kib())
}

/// Opens a raw resume of `id` (keep-alive, so the host watches the read
/// side), returning the connection once the response head is in.
async fn raw_resume(host: &Host, id: &str, after: u64) -> TcpStream {
    let mut conn = connect(host).await;
    let path = format!("/command/{id}/resume?after_eid={after}");
    conn.write_all(&request(host, "GET", &path, b"", false))
        .await
        .expect("write resume");
    conn
}

/// Reads at least `n` bytes (or to the end) from `conn`.
async fn read_some(conn: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0; 16 * 1024];
    while got.len() < n {
        match tokio::time::timeout(PATIENCE, conn.read(&mut buf))
            .await
            .expect("data in time")
        {
            Ok(0) | Err(_) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
        }
    }
    got
}

/// A command writing a steady fast stream for at most `ms`, killed then.
fn flowing(ms: u64) -> serde_json::Value {
    json!({
        "command": "while :; do seq 100000 102000; sleep 0.01; done",
        "timeout": ms,
    })
}

/// Whether `max` readers can attach to `id` at once right now (so no
/// reader leaked from earlier connections holds a place).
async fn all_places_free(host: &Host, id: &str, max: usize) -> bool {
    let mut held = Vec::new();
    for _ in 0..max {
        let stream = host.resume(id, 0).await;
        if stream.status != 200 {
            return false;
        }
        held.push(stream);
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_mid_event_leak_nothing() {
    let started = Instant::now();
    let host = Host::start(&[
        "--max-readers",
        "3",
        "--policy",
        "ring",
        "--policy-config",
        "max-bytes=4194304",
    ])
    .await;
    let (fds0, rss0) = warmed_up(&host).await;

    // The POST stream itself, reset mid-event.
    let mut conn = connect(&host).await;
    let body = flowing(20_000).to_string();
    conn.write_all(&request(&host, "POST", "/command", body.as_bytes(), false))
        .await
        .expect("post");
    let head = read_some(&mut conn, 4096).await;
    let text = String::from_utf8_lossy(&head);
    let id = text
        .split("\"type\":\"init\",\"text\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("init event in the first bytes")
        .to_string();
    let _ = read_some(&mut conn, 50_000).await;
    conn.set_zero_linger().expect("SO_LINGER 0");
    drop(conn);
    // The cursors below go up to 2,000: a resume past the newest event is
    // a 400, so wait until that many are logged (on a loaded machine the
    // first 50 KB may be less).
    let mut probe = host.resume(&id, 0).await;
    while probe.next_event().await.and_then(|e| e.eid()).unwrap_or(0) < 2000 {}
    drop(probe);

    // Readers resumed at random points, each reset after a random number of
    // bytes: almost always inside an event.
    let mut rng = rand::rng();
    let resets = 60;
    for i in 0..resets {
        let after = rng.random_range(0..2000);
        let mut conn = raw_resume(&host, &id, after).await;
        let got = read_some(&mut conn, rng.random_range(1..200_000)).await;
        assert!(
            got.starts_with(b"HTTP/1.1 200") || got.starts_with(b"HTTP/1.1 503"),
            "resume {i}: {:?}",
            String::from_utf8_lossy(&got[..got.len().min(200)])
        );
        conn.set_zero_linger().expect("SO_LINGER 0");
        drop(conn);
    }
    ping(&host).await;
    assert_eq!(host.status(&id).await["running"], true, "still running");

    // Every reset reader detached: the 3 places are free again.
    assert!(
        wait_places(&host, &id, 3, Duration::from_secs(2)).await,
        "reader places still held after {resets} resets"
    );

    let deleted = host.call("DELETE", &format!("/command?id={id}"), "").await;
    assert_eq!(deleted.status, 200);
    host.wait_finished(&id).await;
    let fds = settled_fds(&host, fds0, 2).await;
    let rss = host.rss_kib();
    println!(
        "faults/reset: {} resets; fds {fds0} -> {fds}; rss {rss0} -> {rss} KiB; {:?}",
        resets + 1,
        started.elapsed()
    );
    assert!(fds <= fds0 + 2, "fds {fds0} -> {fds}");
    assert!(rss < rss0 + 64 * 1024, "rss {rss0} -> {rss} KiB");
}

/// Polls until all `max` reader places of `id` can be taken at once.
async fn wait_places(host: &Host, id: &str, max: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if all_places_free(host, id, max).await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_do_not_block_others_or_leak() {
    let started = Instant::now();
    let host = Host::start(&["--max-readers", "2"]).await;
    let (fds0, _) = warmed_up(&host).await;

    // Fifty connections stalled mid request line, mid headers, or mid body.
    let mut stalled = Vec::new();
    for i in 0..50 {
        let mut conn = connect(&host).await;
        let partial: &[u8] = match i % 4 {
            0 => b"GET /pi",
            1 => b"GET /ping HTTP/1.1\r\nHost: x\r\n",
            2 => b"POST /command HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"command\":",
            _ => b"",
        };
        conn.write_all(partial).await.expect("partial request");
        stalled.push(conn);
    }
    // Others are served meanwhile, promptly.
    let t = Instant::now();
    ping(&host).await;
    let mut stream = host.run(json!({ "command": "echo served" })).await;
    init_id(&mut stream).await;
    assert_eq!(stream.next_event().await.expect("output").text(), "served");
    let _ = stream.events().await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(host_fds(&host) >= fds0 + 50, "the stalled ones are open");

    // A reader that half-closes (shuts down its write side) after its
    // request, on a running command: the host either keeps streaming to it
    // or closes; either way, once the client is gone its place is free.
    let mut primary = host
        .run(json!({ "command": "for i in $(seq 1 30); do echo t$i; sleep 0.1; done" }))
        .await;
    let id = init_id(&mut primary).await;
    let mut half = raw_resume(&host, &id, 0).await;
    half.shutdown().await.expect("shutdown write side");
    let got = read_some(&mut half, 200).await;
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    drop(half);
    assert_eq!(host.status(&id).await["running"], true, "not killed");
    // The POST stream plus one more reader fit again once it is gone.
    assert!(
        wait_places(&host, &id, 1, Duration::from_secs(2)).await,
        "the half-closed reader's place is still held"
    );

    // The stalled clients go; their fds go with them.
    drop(stalled);
    let _ = primary.events().await;
    host.wait_finished(&id).await;
    let fds = settled_fds(&host, fds0, 2).await;
    println!(
        "faults/half-open: 50 stalled + 1 half-closed; fds {fds0} -> {fds}; {:?}",
        started.elapsed()
    );
    assert!(fds <= fds0 + 2, "fds {fds0} -> {fds}");
    ping(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_costs_bounded_memory() {
    let started = Instant::now();
    // The ring's own bound is set low, so memory growth beyond it would be
    // per-connection buffering.
    let host = Host::start(&["--policy", "ring", "--policy-config", "max-bytes=16777216"]).await;
    let (fds0, rss0) = warmed_up(&host).await;

    let mut conn = connect(&host).await;
    let body = json!({ "command": "yes \"$(printf '%0100d' 0)\" | head -c 200000000" }).to_string();
    conn.write_all(&request(&host, "POST", "/command", body.as_bytes(), false))
        .await
        .expect("post");
    // Read just enough for the command id, then never read again.
    let mut head = Vec::new();
    let id = loop {
        let mut byte = [0u8; 1];
        conn.read_exact(&mut byte).await.expect("head");
        head.push(byte[0]);
        let text = String::from_utf8_lossy(&head);
        if let Some(rest) = text.split("\"type\":\"init\",\"text\":\"").nth(1)
            && let Some(end) = rest.find('"')
        {
            break rest[..end].to_string();
        }
        assert!(head.len() < 4096, "no init event: {text}");
    };
    // The command runs to its end while the client stalls; memory stays
    // bounded throughout.
    let mut peak = rss0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished_at = loop {
        peak = peak.max(host.rss_kib());
        if host.status(&id).await["running"] == false {
            break started.elapsed();
        }
        assert!(Instant::now() < deadline, "200 MB command did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // And stays bounded while the client keeps stalling a while longer.
    for _ in 0..20 {
        peak = peak.max(host.rss_kib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ping(&host).await;
    drop(conn);
    let fds = settled_fds(&host, fds0, 2).await;
    println!(
        "faults/never-reads: 200 MB written to a stalled client; finished at {finished_at:?}; \
         rss {rss0} KiB, peak {peak} KiB (+{} MiB); fds {fds0} -> {fds}",
        (peak - rss0) / 1024
    );
    assert!(
        peak < rss0 + 100 * 1024,
        "rss grew by {} MiB with a client that never reads",
        (peak - rss0) / 1024
    );
    assert!(fds <= fds0 + 2, "fds {fds0} -> {fds}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_connections_opened_and_dropped() {
    let started = Instant::now();
    // Retention 1 s: the commands POSTed below (background ones keep an
    // output file open while retained) are gone when fds are compared.
    let host = Arc::new(
        Host::start(&[
            "--policy",
            "ring",
            "--policy-config",
            "max-bytes=4194304",
            "--policy-config",
            "retention-secs=1",
        ])
        .await,
    );
    let (fds0, rss0) = warmed_up(&host).await;
    let mut stream = host.run(flowing(60_000)).await;
    let id = init_id(&mut stream).await;
    // The resumes below start anywhere in the first 500 eids: they must
    // be logged (a cursor past the newest eid is a 400).
    while stream
        .next_event()
        .await
        .and_then(|e| e.eid())
        .is_some_and(|eid| eid < 500)
    {}
    drop(stream);

    let total = 2000;
    let batch = 100;
    let mut kinds = [0usize; 6];
    for start in (0..total).step_by(batch) {
        let tasks: Vec<_> = (start..start + batch)
            .map(|i| {
                let host = Arc::clone(&host);
                let id = id.clone();
                tokio::spawn(async move { one_connection(&host, &id, i).await })
            })
            .collect();
        for task in tasks {
            kinds[task.await.expect("connection task")] += 1;
        }
    }
    ping(&host).await;
    let deleted = host.call("DELETE", &format!("/command?id={id}"), "").await;
    assert_eq!(deleted.status, 200);
    host.wait_finished(&id).await;
    // The POSTed `true` commands have all finished and expired by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fds = settled_fds(&host, fds0, 3).await;
    let rss = host.rss_kib();
    println!(
        "faults/many: {total} connections (dropped at once {}, mid request line {}, mid body {}, \
         mid stream {}, after a keep-alive response {}, right after a POST {}); \
         fds {fds0} -> {fds}; rss {rss0} -> {rss} KiB; {:?}",
        kinds[0],
        kinds[1],
        kinds[2],
        kinds[3],
        kinds[4],
        kinds[5],
        started.elapsed()
    );
    assert!(
        fds <= fds0 + 3,
        "fds {fds0} -> {fds}: {:?}",
        fd_targets(host.pid().unwrap())
    );
    assert!(rss < rss0 + 64 * 1024, "rss {rss0} -> {rss} KiB");
}

/// One short-lived connection of kind `i % 6`; returns the kind.
async fn one_connection(host: &Host, id: &str, i: usize) -> usize {
    let kind = i % 6;
    let mut conn = connect(host).await;
    match kind {
        0 => {}
        1 => {
            conn.write_all(b"GET /command/status/").await.ok();
        }
        2 => {
            let head = format!(
                "POST /command HTTP/1.1\r\nHost: {}\r\nContent-Length: 500\r\n\r\n{{\"comm",
                host.addr
            );
            conn.write_all(head.as_bytes()).await.ok();
        }
        3 => {
            let path = format!("/command/{id}/resume?after_eid={}", i % 500);
            conn.write_all(&request(host, "GET", &path, b"", i.is_multiple_of(2)))
                .await
                .ok();
            let got = read_some(&mut conn, 1 + (i * 7919) % 30_000).await;
            assert!(got.starts_with(b"HTTP/1.1 "), "{got:?}");
            if i.is_multiple_of(3) {
                conn.set_zero_linger().ok();
            }
        }
        4 => {
            conn.write_all(&request(host, "GET", "/ping", b"", false))
                .await
                .ok();
            let got = read_some(&mut conn, 10).await;
            assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
        }
        _ => {
            let body = json!({ "command": "true", "background": i % 12 == 5 }).to_string();
            conn.write_all(&request(host, "POST", "/command", body.as_bytes(), true))
                .await
                .ok();
        }
    }
    if i.is_multiple_of(5) {
        conn.set_zero_linger().ok();
    }
    drop(conn);
    kind
}

/// A client that sends a whole `POST /command` and closes its connection
/// at once (fire and forget, as a background POST allows) still gets its
/// command run: a disconnect never cancels a command, and execd runs every
/// request it has received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_post_runs_even_if_the_client_leaves_at_once() {
    let dir = TempDir::new("faults-fire-and-forget");
    let host = Host::start(&[]).await;
    let total = 20usize;
    for i in 0..total {
        let marker = dir.0.join(format!("ran-{i}"));
        let body = json!({
            "command": format!("touch {}", marker.display()),
            "background": i.is_multiple_of(2),
        })
        .to_string();
        let mut conn = connect(&host).await;
        conn.write_all(&request(&host, "POST", "/command", body.as_bytes(), true))
            .await
            .expect("post");
        // Close (FIN) without reading anything.
        drop(conn);
    }
    let ran = || {
        (0..total)
            .filter(|i| dir.0.join(format!("ran-{i}")).exists())
            .count()
    };
    eventually(Duration::from_secs(3), || ran() == total).await;
    println!(
        "faults/fire-and-forget: {} of {total} POSTs closed right after sending ran",
        ran()
    );
    assert_eq!(
        ran(),
        total,
        "commands whose client closed right after a complete POST never ran"
    );
}

/// Requests that stall time out (`--request-timeout-ms`): a head not
/// complete in time, or an idle keep-alive connection, is closed without an
/// answer; a body not complete in time gets 408 `REQUEST_TIMEOUT`. Their
/// fds go although the clients never leave, and nothing stalled runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_requests_time_out() {
    let dir = TempDir::new("faults-stalled");
    let marker = dir.0.join("ran");
    let host = Host::start(&["--request-timeout-ms", "500"]).await;
    let (fds0, _) = warmed_up(&host).await;
    let body = json!({ "command": format!("touch {}", marker.display()) }).to_string();
    let mid_body = format!(
        "POST /command HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..body.len() - 1]
    );
    let cases: [(&str, &[u8]); 4] = [
        ("mid request line", b"GET /pi"),
        ("mid headers", b"GET /ping HTTP/1.1\r\nHost: x\r\n"),
        ("idle keep-alive", b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("mid body", mid_body.as_bytes()),
    ];
    let mut conns = Vec::new();
    for (_, bytes) in cases {
        let mut conn = connect(&host).await;
        conn.write_all(bytes).await.expect("partial request");
        conns.push(conn);
    }
    let started = Instant::now();
    for ((what, _), mut conn) in cases.iter().zip(conns) {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("{what}: still open after 5 s"))
            .expect("read");
        let text = String::from_utf8_lossy(&got);
        match *what {
            "idle keep-alive" => {
                assert!(text.starts_with("HTTP/1.1 200"), "{what}: {text}");
                assert_eq!(text.matches("HTTP/1.1").count(), 1, "{what}: {text}");
            }
            "mid body" => {
                assert!(text.starts_with("HTTP/1.1 408"), "{what}: {text}");
                let json = text.split_once("\r\n\r\n").expect("head and body").1;
                let error: serde_json::Value = serde_json::from_str(json).expect("JSON body");
                assert_eq!(error["code"], "REQUEST_TIMEOUT", "{what}: {text}");
            }
            _ => assert!(got.is_empty(), "{what}: closed without an answer: {text}"),
        }
    }
    let waited = started.elapsed();
    let fds = settled_fds(&host, fds0, 1).await;
    println!("faults/stalled: 4 stalled requests ended in {waited:?}; fds {fds0} -> {fds}");
    assert!(fds <= fds0 + 1, "fds {fds0} -> {fds}");
    assert!(!marker.exists(), "a command whose body never arrived ran");
    ping(&host).await;
}
