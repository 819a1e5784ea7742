//! The `embed` example (an axum app that mounts the host's API at its
//! root) against the same API tests as the daemon: `api` runs again, in
//! a child run of this test binary, with `EXECD_E2E_HOST_BIN` naming the
//! example; plus the example's own route.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Host, try_request};

/// The example's binary beside this test binary's profile directory
/// (`cargo test` builds examples), built here when missing (a focused
/// `cargo test --test e2e` builds none). Not rebuilt when present: a
/// nested `cargo build` here rebuilds the host crate every time, so a
/// focused run after editing the example needs `cargo build --release
/// -p execd-host --example embed` first.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in <target>/<profile>/deps");
    let bin = profile_dir.join("examples").join("embed");
    if !bin.exists() {
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("release");
        let profile = if profile == "debug" { "dev" } else { profile };
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "-p",
                "execd-host",
                "--example",
                "embed",
                "--profile",
                profile,
            ])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the embed example failed");
    }
    bin
}

#[test]
fn the_embed_example_passes_the_api_tests() {
    let bin = example();
    let exe = std::env::current_exe().expect("the test binary has a path");
    let out = Command::new(exe)
        .args(["api::", "--test-threads", "4"])
        .env("EXECD_E2E_HOST_BIN", &bin)
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the api tests failed against the embed example:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split(" ").next()?.parse::<usize>().ok())
        .sum();
    assert!(passed >= 10, "too few api tests ran: {stdout}");
}

#[tokio::test]
async fn the_embed_example_answers_its_own_route_beside_the_api() {
    let host = Host::try_start_bin(&example(), &[], &[])
        .await
        .expect("the example starts");
    let health = try_request(&host.addr, "GET", "/healthz", &[])
        .await
        .expect("an answer");
    assert_eq!(health.status, 200);
    let body = health.finish().await;
    assert_eq!(body.text(), "ok");
    let ping = host.call("GET", "/ping", "").await;
    assert_eq!(ping.status, 200);
    let status = host.terminate().await;
    assert!(
        status.success(),
        "the example exits 0 on SIGTERM: {status:?}"
    );
}
