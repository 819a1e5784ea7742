//! Leaks: 10,000 short commands in a row with a retention of 1 s. Once
//! their retention has expired, the host's RSS and open fds are back within
//! 10% of where they were after a warm-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use crate::probes::*;

/// Runs `count` background `true` commands, `concurrency` at a time, and
/// returns the first id.
async fn run_many(host: &Arc<Host>, count: usize, concurrency: usize) -> String {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let host = Arc::clone(host);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut first = None;
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let mut stream = host
                        .run(json!({ "command": "true", "background": true }))
                        .await;
                    let id = init_id(&mut stream).await;
                    let rest = stream.events().await;
                    assert_eq!(rest.len(), 1, "background POST: init, execution_complete");
                    first.get_or_insert(id);
                }
                first
            })
        })
        .collect();
    let mut first = None;
    for worker in workers {
        if let Some(id) = worker.await.expect("worker") {
            first.get_or_insert(id);
        }
    }
    first.expect("at least one command")
}

/// Waits until no command runs or is retained: the last one started has
/// expired (404 on status).
async fn all_expired(host: &Host, last: &str) {
    let deadline = Instant::now() + PATIENCE;
    while host
        .call("GET", &format!("/command/status/{last}"), "")
        .await
        .status
        != 404
    {
        assert!(Instant::now() < deadline, "{last} never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `total` background commands, waits for every one to expire, and
/// returns the time they took, the fd and RSS peaks, and the first id.
async fn round(
    host: &Arc<Host>,
    total: usize,
    concurrency: usize,
) -> (Duration, usize, u64, String) {
    let started = Instant::now();
    let first = run_many(host, total, concurrency).await;
    let ran_in = started.elapsed();
    let (fds_peak, rss_peak) = (host_fds(host), host.rss_kib());
    let last = background(host, "true").await;
    host.wait_finished(&last).await;
    // Retention is 1 s: every one of them expires, and what they held goes.
    all_expired(host, &last).await;
    host.call("GET", &format!("/command/status/{first}"), "")
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
    (ran_in, fds_peak, rss_peak, first)
}

/// Two rounds of 5,000 commands. A leak grows with the work done, so the
/// second round must leave RSS where the first left it (the first may
/// leave some of its peak with the allocator: arenas of the threads that
/// ran policy calls keep freed pages), and fds where they started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_commands_leave_no_leak() {
    // Without cgroups: moving a process into one costs each start about
    // 10 ms of the kernel's time, which would be most of what this
    // measures; what cgroups leave behind is in cgroups.rs.
    let host =
        Arc::new(Host::start(&["--policy-config", "retention-secs=1", "--cgroups", "off"]).await);
    let concurrency = 8;

    // Warm-up: allocator arenas, runtime threads, the policy's instance pool.
    let warm = run_many(&host, 200, concurrency).await;
    let last = background(&host, "true").await;
    host.wait_finished(&last).await;
    all_expired(&host, &warm).await;
    all_expired(&host, &last).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds0, rss0) = (host_fds(&host), host.rss_kib());

    let total = 5_000;
    let (ran_1, fds_peak, rss_peak_1, _) = round(&host, total, concurrency).await;
    let fds_back = eventually(Duration::from_secs(10), || {
        host_fds(&host) <= fds0 + fds0 / 10
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = host.rss_kib();
    let (ran_2, _, rss_peak_2, _) = round(&host, total, concurrency).await;
    let within = |now: u64, base: u64| now <= base + base / 10;
    let settled = eventually(Duration::from_secs(10), || {
        within(host_fds(&host) as u64, fds0 as u64) && within(host.rss_kib(), rss1)
    })
    .await;
    let (fds, rss2) = (host_fds(&host), host.rss_kib());
    let ran_in = ran_1 + ran_2;
    println!(
        "leaks: {} commands ({concurrency} at a time) in {ran_in:?} ({:.0}/s); \
         fds {fds0} -> peak {fds_peak} -> {fds}; rss {rss0} -> peak {rss_peak_1} -> {rss1} after 5,000 \
         -> peak {rss_peak_2} -> {rss2} KiB after 10,000 ({:+.1}% over the second round)",
        2 * total,
        (2 * total) as f64 / ran_in.as_secs_f64(),
        (rss2 as f64 - rss1 as f64) * 100.0 / rss1 as f64
    );
    assert!(
        ran_in < Duration::from_secs(60),
        "10,000 commands took {ran_in:?}"
    );
    assert!(
        fds_back,
        "fds {fds0} -> {} after the first round",
        host_fds(&host)
    );
    assert!(
        rss1 <= rss0 + 32 * 1024,
        "the first round left {rss0} -> {rss1} KiB"
    );
    assert!(
        settled,
        "fds {fds0} -> {fds}, rss {rss1} -> {rss2} KiB over the second round"
    );
    ping(&host).await;
}

/// A finished background command keeps its output for `/logs`, but not an
/// open file descriptor for the whole retention (5 minutes by default):
/// with the host's fd limit lowered to 256, 300 background commands in a
/// row all start, and the fd count stays bounded. This holds for `ring`,
/// which keeps its log in memory; `disk`'s instance holds its directory
/// open while retained (see the next test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_background_commands_hold_no_fds() {
    let host = Host::start(&["--policy", "ring"]).await;
    let pid = host.pid().expect("host pid");
    let limit = libc::rlimit {
        rlim_cur: 256,
        rlim_max: 256,
    };
    // SAFETY: prlimit(2) on the host we started, with a valid rlimit.
    let set = unsafe {
        libc::prlimit(
            pid as i32,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    let fds0 = host_fds(&host);
    let mut refused = Vec::new();
    let mut last = String::new();
    for i in 0..300 {
        let mut stream = host
            .run(json!({ "command": "echo out", "background": true }))
            .await;
        if stream.status != 200 {
            refused.push((i, stream.status, stream.finish().await.text()));
            continue;
        }
        last = init_id(&mut stream).await;
        let _ = stream.events().await;
    }
    if !last.is_empty() {
        host.wait_finished(&last).await;
    }
    let fds = host_fds(&host);
    println!(
        "leaks/background fds: 300 retained background commands; fds {fds0} -> {fds}; refused {}",
        refused.len()
    );
    assert!(
        refused.is_empty(),
        "{} of 300 refused, first: {:?}",
        refused.len(),
        refused.first()
    );
    assert!(
        fds <= fds0 + 32,
        "fds {fds0} -> {fds} with 300 finished commands"
    );
    // Their output is still there.
    let logs = host.call("GET", &format!("/command/{last}/logs"), "").await;
    assert_eq!(logs.text(), "out\n");
}

/// Under the default `disk` policy a retained command holds one fd, its
/// log's directory (the policy's preopened `/log`), and nothing more: 300
/// retained background commands take about 300 fds, not 600 or 900.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_disk_log_holds_one_fd() {
    let host = Host::start(&[]).await;
    let fds0 = host_fds(&host);
    let mut last = String::new();
    for _ in 0..300 {
        last = background(&host, "echo out").await;
    }
    host.wait_finished(&last).await;
    // Wait for the process groups to be released (their pidfds close).
    let settled = eventually(Duration::from_secs(5), || {
        host_fds(&host) <= fds0 + 300 + 32
    })
    .await;
    let fds = host_fds(&host);
    println!("leaks/disk fds: 300 retained background commands; fds {fds0} -> {fds}");
    assert!(settled, "fds {fds0} -> {fds} with 300 retained commands");
    let logs = host.call("GET", &format!("/command/{last}/logs"), "").await;
    assert_eq!(logs.text(), "out\n");
}
