//! What an operator sees: the metrics listener (its values after a known
//! workload, its probes without the token), the log's formats and levels,
//! and the small start-up niceties.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// A plain GET on the metrics listener: `(status, content type, body)`.
async fn probe(addr: &str, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let url = format!("http://{addr}{path}");
    let mut headers = Vec::new();
    if let Some(accept) = accept {
        headers.push(("Accept", accept));
    }
    let response = try_request(addr, "GET", path, &headers)
        .await
        .unwrap_or_else(|| panic!("GET {url}: no answer"))
        .finish()
        .await;
    let kind = response.header("content-type").unwrap_or("").to_string();
    (
        response.status,
        kind,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

/// The samples of a Prometheus text answer: `name{labels}` -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(host: &Host) -> BTreeMap<String, f64> {
    let addr = host.metrics_addr.as_deref().expect("--metrics-listen");
    let (status, kind, body) = probe(addr, "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    samples(&body)
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_workload_exactly() {
    let host = Host::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--policy",
        "ring",
        "--policy-config",
        "max-events=10",
    ])
    .await;
    // Two foreground commands, one of them `exit 3`, and a background one
    // that outgrows the ring.
    let events = host
        .run(json!({ "command": "echo a; echo b >&2" }))
        .await
        .events()
        .await;
    assert!(events.last().is_some_and(|e| e.is_terminal()));
    let events = host
        .run(json!({ "command": "exit 3" }))
        .await
        .events()
        .await;
    assert_failed(events.last().expect("an ending"), "3", "exit status 3");
    let mut stream = host
        .run(json!({ "command": "seq 1 100", "background": true }))
        .await;
    let id = init_id(&mut stream).await;
    drop(stream);
    host.wait_finished(&id).await;
    // One resume, which meets one gap.
    let events = host.resume(&id, 0).await.events().await;
    assert_eq!(events[0].kind(), "gap");
    let gap_events = events[0].data["to_eid"].as_u64().expect("to_eid") + 1
        - events[0].data["from_eid"].as_u64().expect("from_eid");
    // Readers detach as their streams end: wait for that, bounded.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let now = loop {
        let now = scrape(&host).await;
        if value(&now, "execd_readers") == 0.0 {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readers never went to 0"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seq_bytes: usize = (1..=100).map(|i: u32| i.to_string().len()).sum();
    let expected = [
        ("execd_commands_started_total", 3.0),
        ("execd_commands_running", 0.0),
        ("execd_commands_retained", 3.0),
        ("execd_commands_ended_total{reason=\"exit\"}", 3.0),
        ("execd_events_logged_total{stream=\"stdout\"}", 101.0),
        ("execd_events_logged_total{stream=\"stderr\"}", 1.0),
        (
            "execd_output_bytes_total{stream=\"stdout\"}",
            1.0 + seq_bytes as f64,
        ),
        ("execd_output_bytes_total{stream=\"stderr\"}", 1.0),
        ("execd_resumes_total", 1.0),
        ("execd_gaps_total{reason=\"evicted\"}", 1.0),
        (
            "execd_gap_events_total{reason=\"evicted\"}",
            gap_events as f64,
        ),
        ("execd_policy_failures_total", 0.0),
        (
            "execd_http_requests_total{route=\"/command\",status=\"200\"}",
            3.0,
        ),
        (
            "execd_http_requests_total{route=\"/command/{id}/resume\",status=\"200\"}",
            1.0,
        ),
        (
            "execd_policy_call_duration_seconds_count{call=\"finish\"}",
            3.0,
        ),
        // The ring keeps nothing on disk; the background command's raw
        // output for /logs is on disk: its 100 lines and their newlines.
        ("execd_disk_used_bytes", (seq_bytes + 100) as f64),
    ];
    for (key, want) in expected {
        assert_eq!(value(&now, key), want, "{key}");
    }
    assert!(value(&now, "execd_disk_budget_bytes") > 0.0);
    assert!(
        value(
            &now,
            "execd_policy_call_duration_seconds_count{call=\"append\"}"
        ) >= 3.0
    );
    // Routes are templates: no command id names a series.
    let (_, _, text) = probe(host.metrics_addr.as_deref().unwrap(), "/metrics", None).await;
    assert!(!text.contains(&id), "a raw id in the metrics:\n{text}");
    for line in text.lines().filter(|l| l.starts_with("execd_http")) {
        assert!(
            !line
                .split(['"', '/'])
                .any(|part| part.len() == 32 && part.bytes().all(|b| b.is_ascii_hexdigit())),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_when_asked_and_probes_without_the_token() {
    let host = Host::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--access-token",
        "s3cret-token",
        "--policy",
        "ring",
    ])
    .await;
    let addr = host.metrics_addr.clone().expect("metrics address");
    // The main listener still wants the token.
    let ping = try_request(&host.addr, "GET", "/ping", &[])
        .await
        .expect("ping")
        .finish()
        .await;
    assert_eq!(ping.status, 401);
    let (status, _, body) = probe(&addr, "/healthz", None).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = probe(&addr, "/readyz", None).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, kind, body) = probe(
        &addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE execd_commands_started counter\n"),
        "{body}"
    );
    let (_, _, text) = probe(&addr, "/metrics", None).await;
    assert!(
        text.contains("# TYPE execd_commands_started_total counter\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    let (status, _, _) = probe(&addr, "/command", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_once_shutdown_begins() {
    let host = Host::start(&["--metrics-listen", "127.0.0.1:0", "--policy", "ring"]).await;
    let addr = host.metrics_addr.clone().expect("metrics address");
    // A command that ignores SIGTERM keeps the host in its shutdown for
    // the kill grace: long enough to ask.
    let mut stream = host
        .run(json!({ "command": "trap '' TERM; echo up; sleep 30" }))
        .await;
    init_id(&mut stream).await;
    let up = stream.next_event().await.expect("first line");
    assert_eq!(up.text(), "up");
    let pid = host.pid().expect("pid") as i32;
    // SAFETY: signalling the host this test started, by its pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, _, body) = probe(&addr, "/readyz", None).await;
        if status == 503 {
            assert_eq!(body, "shutting down\n");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _, _) = probe(&addr, "/healthz", None).await;
    assert_eq!(status, 200, "alive while shutting down");
    drop(stream);
}

/// Every stderr line as JSON, and the one that says `message`.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_hold_a_line_per_command_start_and_end() {
    let host = Host::try_start_env(
        &["--policy", "ring"],
        &[("EXECD_LOG", "info"), ("EXECD_LOG_FORMAT", "json")],
    )
    .await
    .expect("host starts");
    let mut stream = host
        .run(json!({ "command": "echo one; echo two >&2; exit 4" }))
        .await;
    let id = init_id(&mut stream).await;
    stream.events().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (started, ended) = loop {
        let lines = json_lines(&host.stderr());
        let find = |message: &str| {
            lines
                .iter()
                .find(|l| l["message"] == message && l["id"] == id.as_str())
                .cloned()
        };
        if let (Some(s), Some(e)) = (find("command started"), find("command ended")) {
            break (s, e);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no start/end lines:\n{}",
            host.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["command"], "echo one; echo two >&2; exit 4");
    assert_eq!(started["background"], false);
    assert!(started["pid"].as_i64().is_some_and(|p| p > 0), "{started}");
    assert_eq!(ended["reason"], "exit");
    assert_eq!(ended["exit_code"], 4);
    assert_eq!(ended["events"], 3);
    assert_eq!(ended["bytes"], 6);
    assert_eq!(ended["gaps"], 0);
    assert!(ended["duration_ms"].as_u64().is_some(), "{ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_command_is_cut_in_the_start_line() {
    let host = Host::try_start_env(
        &["--policy", "ring"],
        &[("EXECD_LOG", "info"), ("EXECD_LOG_FORMAT", "json")],
    )
    .await
    .expect("host starts");
    let long = format!("true {}", "x".repeat(1000));
    let mut stream = host.run(json!({ "command": long })).await;
    let id = init_id(&mut stream).await;
    stream.events().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let started = json_lines(&host.stderr())
            .into_iter()
            .find(|l| l["message"] == "command started" && l["id"] == id.as_str());
        if let Some(started) = started {
            let shown = started["command"].as_str().expect("command");
            assert_eq!(shown.chars().count(), 203, "{shown}");
            assert!(shown.ends_with("..."));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", host.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_raises_the_hosts_own_lines_only() {
    let host = Host::try_start_env(&["--policy", "ring"], &[("EXECD_LOG", "debug")])
        .await
        .expect("host starts");
    for i in 0..3 {
        host.run(json!({ "command": format!("echo {i}") }))
            .await
            .events()
            .await;
    }
    // The debug line of the last request is logged once its answer is
    // made; poll for it rather than sleep.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while host.stderr().matches(" request ").count() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "{}", host.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = host.stderr();
    let lines = log.lines().count();
    assert!(lines < 500, "{lines} lines at debug:\n{log}");
    assert!(!log.contains("cranelift"), "cranelift at debug:\n{log}");
    assert!(log.contains("route=\"/command\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_log_filter_is_named_at_start() {
    let host = Host::try_start_env(&["--policy", "ring"], &[("EXECD_LOG", "execd_host=loud")])
        .await
        .expect("host starts");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !host
        .stderr()
        .contains("EXECD_LOG=\"execd_host=loud\" is not a valid filter")
    {
        assert!(tokio::time::Instant::now() < deadline, "{}", host.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_takes_a_host_name() {
    let host = Host::start(&["--listen", "localhost:0", "--policy", "ring"]).await;
    let ping = try_request(&host.addr, "GET", "/ping", &[])
        .await
        .expect("ping")
        .finish()
        .await;
    assert_eq!(ping.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_read_their_environment_variables() {
    let host = Host::try_start_env(
        &[],
        &[
            ("EXECD_POLICY", "ring"),
            ("EXECD_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    )
    .await
    .expect("host starts");
    assert!(
        host.metrics_addr.is_some(),
        "EXECD_METRICS_LISTEN was not read"
    );
    let help = std::process::Command::new(crate::harness::host_binary())
        .arg("--help")
        .output()
        .expect("--help");
    let help = String::from_utf8_lossy(&help.stdout);
    for var in [
        "EXECD_POLICY",
        "EXECD_LISTEN",
        "EXECD_METRICS_LISTEN",
        "EXECD_STATE_DIR",
        "EXECD_DISK_BUDGET",
    ] {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} not in --help:\n{help}"
        );
    }
}

#[test]
fn a_file_that_is_not_a_component_gets_one_line() {
    let out = std::process::Command::new(crate::harness::host_binary())
        .args(["--listen", "127.0.0.1:0", "--policy", "/etc/passwd"])
        .output()
        .expect("run host");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("execd-host:"))
        .collect();
    assert_eq!(ours.len(), 1, "{stderr}");
    assert!(
        ours[0].contains("is not a WebAssembly component"),
        "{stderr}"
    );
    assert!(stderr.lines().count() <= 3, "{stderr}");
}

#[test]
fn version_names_the_commit_and_the_wit_package() {
    let out = std::process::Command::new(crate::harness::host_binary())
        .arg("--version")
        .output()
        .expect("run host");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("execd-host 0."), "{text}");
    assert!(text.contains("(commit "), "{text}");
    assert!(text.contains("WIT execd:resume@0."), "{text}");
}
