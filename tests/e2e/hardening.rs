//! Regression tests for the holes adversarial testing found (issue #9): an
//! access token a command could read and use to become root, output other
//! users could read, a state directory an attacker could prepare, process
//! groups that outlived DELETE and shutdown, a refused POST whose command
//! ran anyway, a resume that ended in silence, a leaked temp dir, a
//! pipelined malformed request without an error body, an array taken for
//! an object, and a gap that under-reported what it dropped.
//!
//! Commands that run "as another user" run as uid 65534 (nobody), which
//! needs the host to run as root; those tests say so and skip otherwise.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::probes::*;

/// The unprivileged user commands are switched to.
const NOBODY: u32 = 65534;

/// Whether the tests run as root, which switching a command's uid needs.
fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        println!("{test}: skipped: switching a command to uid {NOBODY} needs root");
    }
    root
}

/// Runs `command` to its end and returns its stdout lines and its exit code.
async fn run_lines(host: &Host, body: serde_json::Value) -> (Vec<String>, i64) {
    let mut stream = host.run(body).await;
    assert_eq!(stream.status, 200, "POST /command");
    let events = stream.events().await;
    let lines = events
        .iter()
        .filter(|e| e.kind() == "stdout" || e.kind() == "stderr")
        .map(|e| e.text().to_string())
        .collect();
    let end = events.last().expect("a terminal event");
    let code = match end.kind() {
        "execution_complete" => 0,
        _ => end.data["error"]["evalue"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1),
    };
    (lines, code)
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn path_arg(dir: &TempDir) -> String {
    dir.0.to_str().expect("utf-8 path").to_string()
}

/// The process group id a command prints as its first line (`echo $$`).
async fn group_of(stream: &mut Stream) -> u32 {
    stream
        .next_event()
        .await
        .expect("the pid line")
        .text()
        .parse()
        .expect("a pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_never_sees_the_access_token() {
    let token = "s3cret-token-for-the-host";
    let mut host = Host::try_start_env(&[], &[("EXECD_ACCESS_TOKEN", token)])
        .await
        .expect("host starts");
    host.token = Some(token.to_string());
    let (lines, _) = run_lines(
        &host,
        json!({"command": "echo \"[$EXECD_ACCESS_TOKEN]\"; env | grep -c EXECD_ACCESS_TOKEN"}),
    )
    .await;
    assert_eq!(lines, ["[]", "0"], "the token is not in a command's env");
    if !root_or_skip("a_command_never_sees_the_access_token (as nobody)") {
        return;
    }
    // Run as nobody, the command cannot find the token anywhere: not in its
    // env, not in the host's (whose /proc/PID/environ is root's only).
    let pid = host.pid().expect("host pid");
    let probe = format!(
        "echo \"[$EXECD_ACCESS_TOKEN]\"; cat /proc/{pid}/environ >/dev/null 2>&1 && echo read-environ || echo no-environ"
    );
    let (lines, _) = run_lines(&host, json!({"command": probe, "uid": NOBODY})).await;
    assert_eq!(lines, ["[]", "no-environ"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_file_works_and_bad_tokens_are_refused_at_start() {
    let dir = TempDir::new("hardening-token");
    let file = dir.0.join("token");
    std::fs::write(&file, "from-a-file\n").expect("write token file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let path = file.to_str().expect("utf-8 path");
    let mut host = Host::start(&["--access-token-file", path]).await;
    host.call("GET", "/ping", "")
        .await
        .assert_error(401, "UNAUTHORIZED");
    // One trailing newline is not part of the token.
    host.token = Some("from-a-file".into());
    assert_eq!(host.call("GET", "/ping", "").await.status, 200);
    if root_or_skip("the token file is private") {
        let probe = format!("cat {path} >/dev/null 2>&1 && echo read || echo denied");
        let (lines, _) = run_lines(&host, json!({"command": probe, "uid": NOBODY})).await;
        assert_eq!(lines, ["denied"], "nobody cannot read the token file");
    }
    drop(host);

    for (token, why) in [
        ("", "empty"),
        (" padded", "whitespace"),
        ("padded ", "whitespace"),
        ("line\nbreak", "control"),
    ] {
        let err = Host::try_start(&["--access-token", token])
            .await
            .err()
            .unwrap_or_else(|| panic!("token {token:?} was accepted"));
        assert!(err.contains(why), "token {token:?}: {err}");
        std::fs::write(&file, token).expect("write token file");
        let err = Host::try_start(&["--access-token-file", path])
            .await
            .err()
            .unwrap_or_else(|| panic!("token file {token:?} was accepted"));
        assert!(err.contains(why), "token file {token:?}: {err}");
    }
    let err = Host::try_start(&["--access-token-file", "/definitely/not/here"])
        .await
        .err()
        .expect("a missing token file is refused");
    assert!(err.contains("/definitely/not/here"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_files_and_policy_directories_are_private() {
    let state = TempDir::new("hardening-modes");
    // A token, so that `uid` below is honoured.
    let host = Host::start(&[
        "--state-dir",
        &path_arg(&state),
        "--policy",
        "spill",
        "--access-token",
        "t0ken-for-modes",
    ])
    .await;
    // Enough output that spill writes its chunk file.
    let id = background(
        &host,
        "echo SECRET-OF-ROOT; head -c 3000000 /dev/zero | tr '\\0' x | fold -w 100; sleep 30",
    )
    .await;
    let out = state.0.join(format!("{id}.out"));
    let first_chunk = out.join(format!("{:020}", 0));
    let log_dir = state.0.join(format!("{id}.log"));
    let spilled = log_dir.join("events.bin");
    assert!(
        eventually(PATIENCE, || spilled.exists() && first_chunk.exists()).await,
        "spill wrote its file"
    );
    assert_eq!(mode(&out), 0o700, "background output directory");
    assert_eq!(mode(&first_chunk), 0o600, "background output file");
    assert_eq!(mode(&log_dir), 0o700, "policy directory");
    assert_eq!(mode(&spilled), 0o600, "a file the policy created");
    // The host's own umask did not leak into commands.
    let (lines, _) = run_lines(&host, json!({"command": "umask"})).await;
    assert_ne!(lines, ["0077"], "commands keep the umask the host had");
    if !root_or_skip("output_files_and_policy_directories_are_private (as nobody)") {
        return;
    }
    let probe = format!(
        "grep -h SECRET {}/* {}/* 2>/dev/null; echo exit=$?",
        out.display(),
        log_dir.display()
    );
    let (lines, _) = run_lines(&host, json!({"command": probe, "uid": NOBODY})).await;
    assert_eq!(lines, ["exit=2"], "nobody reads none of it: {lines:?}");
}

/// The `execd-host-*` entries of a directory.
fn host_dirs(parent: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(parent)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("execd-host-"))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_state_directory_is_fresh_private_and_unpredictable() {
    let tmp = TempDir::new("hardening-tmpdir");
    let tmp_arg = path_arg(&tmp);
    // What an attacker would prepare: the old, predictable name for the
    // next few pids, world-writable, with a forged file in it.
    let next_pid = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .unwrap_or(0);
    for pid in next_pid..next_pid + 50 {
        let dir = tmp.0.join(format!("execd-host-{pid}"));
        std::fs::create_dir(&dir).expect("prepare a squatted dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let squatted = host_dirs(&tmp.0);
    let host = Host::try_start_env(&[], &[("TMPDIR", &tmp_arg)])
        .await
        .expect("host starts");
    let id = background(&host, "echo private").await;
    let fresh: Vec<_> = host_dirs(&tmp.0)
        .into_iter()
        .filter(|d| !squatted.contains(d))
        .collect();
    assert_eq!(fresh.len(), 1, "one fresh directory: {fresh:?}");
    let dir = &fresh[0];
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    assert!(
        dir.join(format!("{id}.out")).exists(),
        "it is the one in use"
    );
    for old in &squatted {
        assert_eq!(
            std::fs::read_dir(old).map(|d| d.count()).unwrap_or(0),
            0,
            "the host used a prepared directory {}",
            old.display()
        );
    }
    drop(host);
    assert!(
        eventually(PATIENCE, || !dir.exists()).await,
        "the fresh directory is removed at exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_dir_others_can_write_or_own_is_refused() {
    let dir = TempDir::new("hardening-open-state");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = Host::try_start(&["--state-dir", &path_arg(&dir)])
        .await
        .err()
        .expect("a world-writable state dir is refused");
    assert!(err.contains("writable by other users"), "{err}");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    assert!(
        Host::try_start(&["--state-dir", &path_arg(&dir)])
            .await
            .is_err()
    );
    if root_or_skip("a state dir owned by nobody") {
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::os::unix::fs::chown(&dir.0, Some(NOBODY), Some(NOBODY)).expect("chown");
        let err = Host::try_start(&["--state-dir", &path_arg(&dir)])
            .await
            .err()
            .expect("a state dir of another user is refused");
        assert!(err.contains("belongs to uid 65534"), "{err}");
    }
    // A missing one is created private.
    let fresh = dir.0.join("made-by-the-host");
    let host = Host::start(&["--state-dir", fresh.to_str().expect("utf-8")]).await;
    assert_eq!(mode(&fresh), 0o700);
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ends_the_whole_group_after_its_leader_exits() {
    let host = Host::start(&[]).await;
    // The shell dies of SIGTERM; the subshell ignores it and must get the
    // SIGKILL that follows, though its leader is gone by then.
    let mut stream = host
        .run(json!({"command": "echo $$; (trap '' TERM; exec sleep 61) & wait"}))
        .await;
    let id = init_id(&mut stream).await;
    let group = group_of(&mut stream).await;
    assert!(
        eventually(PATIENCE, || group_alive(group).len() >= 2).await,
        "the sleep runs"
    );
    host.call("DELETE", &format!("/command?id={id}"), "").await;
    assert!(
        eventually(Duration::from_secs(10), || group_alive(group).is_empty()).await,
        "group {group} survived DELETE: {:?}",
        group_alive(group)
    );
    // And a finished command's leftovers: DELETE reaches them too.
    let mut stream = host.run(json!({"command": "echo $$; sleep 63 &"})).await;
    let id = init_id(&mut stream).await;
    let group = group_of(&mut stream).await;
    let _ = stream.events().await;
    assert_eq!(host.wait_finished(&id).await["exit_code"], 0);
    assert_eq!(group_alive(group).len(), 1, "the sleep outlived its shell");
    host.call("DELETE", &format!("/command?id={id}"), "").await;
    assert!(
        eventually(Duration::from_secs(10), || group_alive(group).is_empty()).await,
        "the finished command's sleep survived DELETE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_ends_descendants_that_keep_the_pipes_busy() {
    let host = Host::start(&[]).await;
    let started = std::time::Instant::now();
    let mut stream = host
        .run(json!({
            "command": "echo $$; (trap '' TERM; while :; do echo tick; sleep 0.05; done) & exit 0",
            "timeout": 1000,
        }))
        .await;
    let _id = init_id(&mut stream).await;
    let group = group_of(&mut stream).await;
    let events = stream.events().await;
    assert!(events.last().is_some_and(Event::is_terminal));
    assert!(
        eventually(Duration::from_secs(5), || group_alive(group).is_empty()).await,
        "the ticking subshell survived the timeout"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the stream ended at the timeout, not at the drain cap: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_what_finished_commands_left_running() {
    let host = Host::start(&[]).await;
    let mut stream = host
        .run(json!({"command": "echo $$; sleep 71 & echo started"}))
        .await;
    let id = init_id(&mut stream).await;
    let group = group_of(&mut stream).await;
    let _ = stream.events().await;
    host.wait_finished(&id).await;
    assert_eq!(group_alive(group).len(), 1, "the sleep outlived its shell");
    let status = host.terminate().await;
    assert!(status.success(), "{status:?}");
    assert!(
        eventually(Duration::from_secs(5), || group_alive(group).is_empty()).await,
        "sleep 71 survived the host's SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_first_reader_runs_nothing() {
    let err = Host::try_start(&["--max-readers", "0"])
        .await
        .err()
        .expect("--max-readers 0 is refused");
    assert!(err.contains("max-readers"), "{err}");

    let policy = build_policy("execd-test-policies", Some("refuse-readers")).await;
    let host = Host::start(&["--policy", policy.to_str().expect("utf-8")]).await;
    let marker = TempDir::new("hardening-refused");
    let touched = marker.0.join("ran");
    let command = format!("touch {}", touched.display());
    let response = host
        .call("POST", "/command", &json!({"command": command}).to_string())
        .await;
    response.assert_error(409, "STREAM_CONFLICT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!touched.exists(), "the refused command ran");
    let list = host.call("GET", "/command", "").await.json();
    assert_eq!(list["commands"], json!([]), "nothing was registered");
    // A background command has no first reader: it runs.
    let background = json!({"command": command, "background": true});
    assert_eq!(host.run(background).await.status, 200);
    assert!(eventually(PATIENCE, || touched.exists()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_past_the_newest_eid_of_a_running_command_is_400() {
    let host = Host::start(&[]).await;
    let mut stream = host
        .run(json!({"command": "echo one; sleep 1; echo two"}))
        .await;
    let id = init_id(&mut stream).await;
    let first = stream.next_event().await.expect("eid 1");
    assert_eq!(first.eid(), Some(1));
    let response = host.resume(&id, 5).await.finish().await;
    response.assert_error(400, "INVALID_CURSOR");
    assert!(
        response.text().contains("past the newest"),
        "{}",
        response.text()
    );
    // At the newest eid it waits and follows to the end.
    let events = host.resume(&id, 1).await.events().await;
    assert_eq!(events.first().map(Event::text), Some("two"));
    assert!(events.last().is_some_and(Event::is_terminal));
    // Once finished, past the end is 204, as at the end.
    let _ = stream.events().await;
    assert_eq!(host.resume(&id, 9).await.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_failure_leaves_no_state_directory() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let tmp = TempDir::new("hardening-port-taken");
    let err = Host::try_start_env(&["--listen", &addr], &[("TMPDIR", &path_arg(&tmp))])
        .await
        .err()
        .expect("a port in use stops the host");
    assert!(err.contains("cannot listen"), "{err}");
    assert!(host_dirs(&tmp.0).is_empty(), "left {:?}", host_dirs(&tmp.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_after_a_valid_one_gets_the_error_body() {
    let host = Host::start(&[]).await;
    let id = background(
        &host,
        "printf 'HTTP/1.1 400 Bad Request\\r\\ncontent-length: 0\\r\\n\\r\\n'",
    )
    .await;
    host.wait_finished(&id).await;
    // Pipelined in one write: a ping, a /logs body that looks like hyper's
    // answer, then a request hyper cannot parse.
    let pipelined = format!(
        "GET /ping HTTP/1.1\r\nHost: x\r\n\r\nGET /command/{id}/logs HTTP/1.1\r\nHost: x\r\n\r\nGET  /ping HTTP/1.1\r\n\r\n"
    );
    let got = raw_exchange(&host, pipelined.as_bytes(), Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    let heads: Vec<&str> = text.matches("HTTP/1.1 ").collect();
    assert!(heads.len() >= 3, "three answers: {text:?}");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text:?}");
    let last = text.rfind("HTTP/1.1 400").expect("the 400 answer");
    let (head, body) = text[last..].split_once("\r\n\r\n").expect("a head");
    assert!(head.contains("application/json"), "{head}");
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(json["code"], "MALFORMED_REQUEST");
    // The /logs body that looks like an answer went out as it was.
    assert!(
        text.contains("\r\n\r\nHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            || text.contains("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n\r\n0"),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_array_is_not_a_request() {
    let host = Host::start(&[]).await;
    let marker = TempDir::new("hardening-array");
    let touched = marker.0.join("ran");
    let body = json!([
        format!("touch {}", touched.display()),
        null,
        false,
        null,
        null,
        null,
        {}
    ]);
    host.call("POST", "/command", &body.to_string())
        .await
        .assert_error(400, "INVALID_REQUEST_BODY");
    for other in ["\"echo ran\"", "7", "null", "true"] {
        host.call("POST", "/command", other)
            .await
            .assert_error(400, "INVALID_REQUEST_BODY");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!touched.exists(), "the array ran a command");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_never_under_reports_what_it_dropped() {
    let host = Host::start(&["--policy", "ring", "--policy-config", "max-events=10"]).await;
    let mut stream = host.run(json!({"command": "seq 1 100"})).await;
    let id = init_id(&mut stream).await;
    let _ = stream.events().await;
    // From the start the ring knows the size exactly.
    let events = host.resume(&id, 0).await.events().await;
    let gap = &events[0];
    assert_eq!(gap.kind(), "gap");
    assert_eq!(
        (gap.data["from_eid"].as_u64(), gap.data["to_eid"].as_u64()),
        (Some(1), Some(91))
    );
    let exact: usize = (1..=91).map(|i: u32| i.to_string().len()).sum();
    assert_eq!(gap.data["dropped_bytes"], exact as u64);
    assert_eq!(gap.data["reason"], "evicted");
    // From eid 5, the sizes of eids 6-81 are older than it remembers: it
    // says it does not know rather than a number too small.
    let events = host.resume(&id, 5).await.events().await;
    let gap = &events[0];
    assert_eq!(gap.kind(), "gap");
    assert_eq!(
        (gap.data["from_eid"].as_u64(), gap.data["to_eid"].as_u64()),
        (Some(6), Some(91))
    );
    assert!(gap.data.get("dropped_bytes").is_none(), "{}", gap.data);
    assert_eq!(gap.data["reason"], "evicted");
    assert_eq!(events[1].eid(), Some(92));
}
