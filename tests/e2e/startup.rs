//! Start-up: flags, policy loading and configuration errors exit the host
//! with a clear message; good configurations start and serve.

use crate::harness::*;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

/// Starts a host that must refuse to start; returns its stderr text.
async fn refused(args: &[&str]) -> String {
    match Host::try_start(args).await {
        Ok(host) => panic!("host started with {args:?} at {}", host.addr),
        Err(stderr) => stderr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policy_config_value_is_refused() {
    let err = refused(&["--policy", "ring", "--policy-config", "max-events=0"]).await;
    assert!(err.contains("max-events"), "stderr: {err}");
    let err = refused(&["--policy", "ring", "--policy-config", "max-events=lots"]).await;
    assert!(err.contains("max-events"), "stderr: {err}");
    // The default policy's own settings, too.
    let err = refused(&["--policy-config", "memory-bytes=lots"]).await;
    assert!(err.contains("memory-bytes"), "stderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_policy_config_key_is_refused() {
    let err = refused(&["--policy-config", "colour=red"]).await;
    assert!(err.contains("colour"), "stderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_config_without_equals_is_refused() {
    let err = refused(&["--policy-config", "noequals"]).await;
    assert!(err.contains("KEY=VALUE"), "stderr: {err}");
    assert!(err.contains("noequals"), "stderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_policy_name_is_refused() {
    let err = refused(&["--policy", "nosuch"]).await;
    assert!(err.contains("unknown policy"), "stderr: {err}");
    assert!(err.contains("nosuch"), "stderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_policy_file_is_refused() {
    let err = refused(&["--policy", "/no/such/file.wasm"]).await;
    assert!(err.contains("/no/such/file.wasm"), "stderr: {err}");
    // The cause once, not once per level of the error.
    assert_eq!(err.matches("os error 2").count(), 1, "stderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_policy_call_deadline_is_refused() {
    let err = refused(&["--policy-call-ms", "0"]).await;
    assert!(err.contains("--policy-call-ms"), "stderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_file_that_is_not_wasm_is_refused() {
    let dir = TempDir::new("junk-wasm");
    let path = dir.0.join("junk.wasm");
    std::fs::write(&path, b"this is not a WebAssembly module at all\n").unwrap();
    let err = refused(&["--policy", path.to_str().unwrap()]).await;
    assert!(err.contains("not a WebAssembly component"), "stderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_policy_starts_and_serves() {
    let host = Host::start(&["--policy", "exclusive"]).await;
    assert_eq!(host.call("GET", "/ping", "").await.status, 200);
    let mut stream = host.run(json!({"command": "echo hi"})).await;
    init_id(&mut stream).await;
    let events = tokio::time::timeout(Duration::from_secs(5), stream.events())
        .await
        .expect("stream ends");
    let logged = logged(&events, 0);
    assert_eq!(logged[0].text(), "hi");
    assert_eq!(logged.last().unwrap().kind(), "execution_complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_policy_config_starts() {
    let host = Host::start(&[
        "--policy",
        "ring",
        "--policy-config",
        "max-events=10",
        "--policy-config",
        "retention-secs=5",
    ])
    .await;
    assert_eq!(host.call("GET", "/ping", "").await.status, 200);
    let host = Host::start(&[
        "--policy-config",
        "memory-bytes=65536",
        "--policy-config",
        "segment-bytes=1048576",
        "--policy-config",
        "retention-secs=5",
    ])
    .await;
    assert_eq!(host.call("GET", "/ping", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_zero_prints_the_bound_address() {
    let host = Host::start(&[]).await;
    let addr: SocketAddr = host
        .addr
        .parse()
        .unwrap_or_else(|e| panic!("printed address {:?}: {e}", host.addr));
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_ne!(addr.port(), 0, "the actual port, not 0");
    assert_eq!(host.call("GET", "/ping", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_exits_on_sigterm() {
    let host = Host::start(&[]).await;
    assert_eq!(host.call("GET", "/ping", "").await.status, 200);
    let addr = host.addr.clone();
    // `terminate` fails the test unless the host exits in time.
    host.terminate().await;
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "{addr} still accepts connections after the host exited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_mentions_every_flag() {
    let out = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_execd-host"))
            .arg("--help")
            .env_remove("EXECD_ACCESS_TOKEN")
            .output(),
    )
    .await
    .expect("--help in time")
    .expect("run execd-host --help");
    assert!(out.status.success(), "exit: {:?}", out.status);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--access-token",
        "--policy",
        "--policy-config",
        "--sse-framing",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}: {help}");
    }
}

/// A default `--disk-budget` too small to keep a log is refused with a
/// message, never a silent budget of almost nothing (issue 19, item 2);
/// given explicitly, the same filesystem serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_disk_budget_too_small_to_keep_a_log_is_refused() {
    let Some(fs) = crate::lossless::SmallFs::mount("startup-tiny-budget", "2m") else {
        return;
    };
    let state = fs.0.join("state");
    let state = state.to_str().expect("utf-8");
    // A quarter of 2 MiB free is under the 1 MiB least.
    let err = refused(&["--state-dir", state]).await;
    assert!(err.contains("default disk budget"), "stderr: {err}");
    assert!(err.contains("--disk-budget"), "stderr: {err}");
    let host = Host::start(&["--state-dir", state, "--disk-budget", "1M"]).await;
    let mut stream = host.run(json!({ "command": "echo ok" })).await;
    init_id(&mut stream).await;
    let events = logged(&stream.events().await, 0);
    assert_eq!(events[0].text(), "ok");
    host.terminate().await;
}
