//! Security: no part of a request but `cwd` reaches the filesystem (ids
//! with path traversal, file names of the host's own state, odd fields),
//! cursors of any size never yield a 5xx, arbitrary query strings and
//! headers are answered with a 4xx error body at worst, and a policy's
//! directory holds only its own files and goes when the command expires.
//! (The token check on every route is tested in errors.rs, and `uid`/`gid`
//! in api.rs.)

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;

use crate::harness::*;
use crate::probes::*;

/// A temp dir's path as a flag value.
fn arg(dir: &TempDir) -> String {
    dir.0.to_str().expect("utf-8 path").to_string()
}

/// The names in a directory, sorted.
/// Names in the order [`entries`] gives them: ids are random, so where one
/// sorts against a fixed name (the lock) is chance.
fn sorted<const N: usize>(names: [String; N]) -> Vec<String> {
    let mut names = Vec::from(names);
    names.sort();
    names
}

fn entries(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A rejection: 4xx with the contract's JSON error body.
fn assert_rejected(what: &str, response: &Response) {
    assert!(
        (400..500).contains(&response.status),
        "{what}: status {} body {}",
        response.status,
        response.text()
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let json = response.json();
    assert!(json["code"].is_string(), "{what}: {json}");
    assert!(json["message"].is_string(), "{what}: {json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_never_reach_the_filesystem() {
    let state = TempDir::new("security-ids");
    let host = Host::start(&["--state-dir", &arg(&state)]).await;
    // A background command, so the state dir holds `<id>.out` with a
    // recognisable secret in it.
    let id = background(&host, "echo SECRET-OUTPUT; sleep 3").await;
    assert!(
        eventually(PATIENCE, || {
            std::fs::read_to_string(state.0.join(format!("{id}.out")).join(format!("{:020}", 0)))
                .is_ok_and(|t| t.contains("SECRET"))
        })
        .await
    );
    let out = format!("{id}.out");
    let abs = state.0.join(&out);
    let abs = abs.to_str().unwrap().replace('/', "%2F");
    let paths = [
        "/command/..%2F..%2F..%2F..%2Fetc%2Fpasswd/logs".to_string(),
        "/command/..%2F..%2F..%2F..%2Fetc%2Fpasswd/logs?cursor=0".to_string(),
        "/command/%2e%2e%2f%2e%2e%2fetc%2fpasswd/resume".to_string(),
        "/command/%2Fetc%2Fpasswd/logs".to_string(),
        "/command/status/..%2F..%2Fetc%2Fpasswd".to_string(),
        "/command/status/../../etc".to_string(),
        "/command/../../../../etc/passwd/logs".to_string(),
        "/command/status/%2Fetc%2Fpasswd".to_string(),
        format!("/command/{out}/logs"),
        format!("/command/{abs}/logs"),
        format!("/command/..%2F{out}/logs"),
        format!("/command/status/{out}"),
        format!("/command/{out}/resume?after_eid=0"),
        format!("/command/{id}%2F..%2F{out}/logs"),
    ];
    for path in &paths {
        let response = host.call("GET", path, "").await;
        assert_rejected(path, &response);
        let text = response.text();
        assert!(
            !text.contains("root:") && !text.contains("SECRET"),
            "{path}: {text}"
        );
    }
    for id in ["../../etc/passwd", "%2Fetc%2Fpasswd", &out, &abs] {
        let path = format!("/command?id={id}");
        let response = host.call("DELETE", &path, "").await;
        assert_rejected(&path, &response);
    }
    // The real id still works, and its output file is untouched.
    let logs = host.call("GET", &format!("/command/{id}/logs"), "").await;
    assert_eq!(logs.text(), "SECRET-OUTPUT\n");
    // The default policy keeps its log in `<id>.log`, the host its record
    // in `<id>.json` and its ending in `<id>.end` (see restart.rs), and
    // its lock.
    assert_eq!(
        entries(&state),
        sorted([
            format!("{id}.json"),
            format!("{id}.end"),
            format!("{id}.log"),
            out,
            LOCK.into(),
            ENV_FILE.into()
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_fields_other_than_cwd_create_no_files() {
    let state = TempDir::new("security-fields");
    let elsewhere = TempDir::new("security-elsewhere");
    let host = Host::start(&["--state-dir", &arg(&state)]).await;
    let target = elsewhere.0.join("evil");
    let t = target.to_str().unwrap();
    let mut want: Vec<String> = vec![LOCK.into(), ENV_FILE.into()];
    for background in [false, true, false, true] {
        let body = json!({
            "command": "echo ok",
            "background": background,
            "id": format!("../{}/evil", elsewhere.0.file_name().unwrap().to_string_lossy()),
            "log": t, "output": t, "state_dir": t, "path": t, "file": t,
            "envs": {"EXECD_STATE_DIR": t, "TMPDIR": t},
        });
        let mut stream = host.run(body).await;
        let id = init_id(&mut stream).await;
        let _ = stream.events().await;
        host.wait_finished(&id).await;
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "ids are the host's own: {id}"
        );
        // The default policy's directory, the record and its ending slot,
        // and background output.
        want.push(format!("{id}.log"));
        want.push(format!("{id}.json"));
        want.push(format!("{id}.end"));
        if background {
            want.push(format!("{id}.out"));
        }
        want.sort();
        assert_eq!(
            entries(&state),
            want,
            "the state dir holds only its own files"
        );
    }
    assert!(entries(&elsewhere).is_empty(), "{:?}", entries(&elsewhere));
    assert!(!target.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_odd_cursors_never_5xx() {
    let host = Host::start(&[]).await;
    let finished = background(&host, "echo one; echo two").await;
    host.wait_finished(&finished).await;
    let running = background(&host, "sleep 1; echo late").await;
    let max = u64::MAX.to_string();

    // Logs: past the end is an empty body with the cursor echoed.
    let r = host
        .call("GET", &format!("/command/{finished}/logs?cursor={max}"), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(r.header("EXECD-COMMANDS-TAIL-CURSOR"), Some(max.as_str()));
    for bad in [
        "18446744073709551616",
        "99999999999999999999999999999999",
        "-1",
        "1e9",
        "0x10",
        "%00",
        "",
    ] {
        let r = host
            .call("GET", &format!("/command/{finished}/logs?cursor={bad}"), "")
            .await;
        if r.status != 200 {
            assert_rejected(&format!("cursor={bad}"), &r);
        }
    }
    // Resume: at or past the terminal event of a finished command is 204.
    let r = host
        .call(
            "GET",
            &format!("/command/{finished}/resume?after_eid={max}"),
            "",
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    // Past the end of a running command: no client can have seen that
    // eid, so it is refused at once rather than left to end in silence.
    let r = host
        .send(
            "GET",
            &format!("/command/{running}/resume"),
            &[("Last-Event-ID", &max)],
            b"",
        )
        .await
        .finish()
        .await;
    r.assert_error(400, "INVALID_CURSOR");
    for bad in ["18446744073709551616", "-5", "1.0", "NaN", "%207x", "7%00"] {
        let r = host
            .call(
                "GET",
                &format!("/command/{finished}/resume?after_eid={bad}"),
                "",
            )
            .await;
        assert_rejected(&format!("after_eid={bad}"), &r);
    }
    ping(&host).await;
}

/// Characters a request target may hold as they are (RFC 3986 pchar, less
/// `%`, which comes in its own cases below).
/// The lock a host holds on an operator's state directory.
const LOCK: &str = "execd-host.lock";
/// The host's own `EXECD_ENVS` file, there when the host's environment
/// names none (see `hardening2`).
const ENV_FILE: &str = "execd.env";

const PCHARS: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$'()*+,;:@";

/// Random bytes, percent-encoded or not, for paths and queries: anything a
/// valid request target can carry, including broken percent-escapes.
fn junk(rng: &mut impl Rng, max: usize) -> String {
    let n = rng.random_range(0..=max);
    (0..n)
        .map(|_| match rng.random_range(0..6) {
            0 => format!("%{:02X}", rng.random::<u8>()),
            1 => [
                "%", "+", "=", "&", "..", "%2F", "%00", "%%", "%zz", "%F0%9F", "%C3",
            ][rng.random_range(0..11)]
            .to_string(),
            _ => (PCHARS[rng.random_range(0..PCHARS.len())] as char).to_string(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_paths_queries_and_headers_never_5xx() {
    let host = Host::start(&[]).await;
    let id = background(&host, "echo a; echo b >&2").await;
    host.wait_finished(&id).await;
    let mut rng = rand::rng();
    let keys = [
        "after_eid",
        "cursor",
        "id",
        "framing",
        "after_eid%00",
        "",
        "cursor&cursor",
    ];
    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    let requests = 600;
    for i in 0..requests {
        let key = keys[rng.random_range(0..keys.len())];
        let value = junk(&mut rng, 12);
        let query = if rng.random_bool(0.2) {
            junk(&mut rng, 20)
        } else {
            format!("{key}={value}")
        };
        let target = if rng.random_bool(0.5) {
            id.clone()
        } else {
            junk(&mut rng, 40)
        };
        let (method, path) = match i % 6 {
            0 => ("GET", format!("/command/{target}/resume?{query}")),
            1 => ("GET", format!("/command/{target}/logs?{query}")),
            2 => ("GET", format!("/command/status/{target}?{query}")),
            3 => ("DELETE", format!("/command?{query}")),
            4 => ("GET", format!("/{}?{query}", junk(&mut rng, 30))),
            _ => ("GET", format!("/command/{target}/resume")),
        };
        let header_value: String = (0..rng.random_range(0..24))
            .map(|_| rng.random_range(b' '..=b'~') as char)
            .collect();
        let header_value = header_value.trim().to_string();
        let headers = [("Last-Event-ID", header_value.as_str())];
        let response = host.send(method, &path, &headers, b"").await.finish().await;
        *counts.entry(response.status).or_default() += 1;
        assert!(
            response.status < 500 && response.status >= 200,
            "{method} {path} (Last-Event-ID {header_value:?}): {} {}",
            response.status,
            response.text()
        );
        if response.status >= 400 {
            assert_rejected(&format!("{method} {path}"), &response);
        }
    }
    println!("security/random requests: {requests} sent, statuses {counts:?}");
    ping(&host).await;
}

/// Requests that are not valid HTTP, most of which hyper rejects before
/// any handler runs: each is answered with a 4xx and the contract's error
/// body, never a 5xx, and the host keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_gets_4xx_with_error_body() {
    let host = Host::start(&[]).await;
    let long_uri = format!("GET /command/{} HTTP/1.1\r\n\r\n", "a".repeat(70_000));
    let huge_head = format!(
        "GET /ping HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "b".repeat(500_000)
    );
    let cases: [(&[u8], &str); 11] = [
        (
            b"GET /ping HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            "MALFORMED_REQUEST",
        ),
        (b"GET /ping HTTP/9.9\r\n\r\n", "MALFORMED_REQUEST"),
        (b"\x00\x01\x02\r\n\r\n", "MALFORMED_REQUEST"),
        (b"GET  /ping HTTP/1.1\r\n\r\n", "MALFORMED_REQUEST"),
        (
            b"POST /command HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}",
            "MALFORMED_REQUEST",
        ),
        (
            b"POST /command HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "INVALID_REQUEST_BODY",
        ),
        (
            b"GET /command/status/\xff HTTP/1.1\r\n\r\n",
            "MALFORMED_REQUEST",
        ),
        (
            b"GET /command/x<y>/logs HTTP/1.1\r\n\r\n",
            "MALFORMED_REQUEST",
        ),
        (
            b"GET /command/a b/logs HTTP/1.1\r\n\r\n",
            "MALFORMED_REQUEST",
        ),
        (long_uri.as_bytes(), "URI_TOO_LONG"),
        (huge_head.as_bytes(), "HEADERS_TOO_LARGE"),
    ];
    let mut answers = Vec::new();
    for (case, code) in cases {
        let got = raw_exchange(&host, case, Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&got);
        let shown = String::from_utf8_lossy(&case[..case.len().min(60)]);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{shown:?}: no answer: {text:?}"));
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!((400..500).contains(&status), "{shown:?}: {text}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{shown:?}: {head}"
        );
        let error: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{shown:?}: body is not JSON ({e}): {body:?}"));
        assert_eq!(error["code"], code, "{shown:?}: {body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        answers.push(format!("{status} {code}"));
    }
    println!("security/malformed HTTP: {answers:?}");
    ping(&host).await;
}

/// A command's output that looks just like hyper's answer to a request it
/// cannot parse is sent by `/logs` as it is, never taken for that answer
/// (HTTP/1.0 sends a body unframed, as written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_that_looks_like_an_error_answer_is_sent_as_it_is() {
    let host = Host::start(&[]).await;
    let fake = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
    let id = background(
        &host,
        r"printf 'HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n'",
    )
    .await;
    host.wait_finished(&id).await;
    for version in ["HTTP/1.0", "HTTP/1.1"] {
        let request = format!(
            "GET /command/{id}/logs?cursor=0 {version}\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let got = raw_exchange(&host, request.as_bytes(), Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with(&format!("{version} 200")), "{text:?}");
        assert!(text.contains(fake), "{version}: {text:?}");
        assert!(!text.contains("MALFORMED_REQUEST"), "{version}: {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spill_policy_directory_holds_only_its_files_and_goes_on_expiry() {
    let state = TempDir::new("security-spill");
    let host = Host::start(&[
        "--policy",
        "spill",
        "--policy-config",
        "retention-secs=1",
        "--policy-config",
        "memory-bytes=65536",
        "--state-dir",
        &arg(&state),
    ])
    .await;
    let mut stream = host.run(json!({ "command": "seq 1 50000" })).await;
    let id = init_id(&mut stream).await;
    let dir = state.0.join(format!("{id}.log"));
    let events = logged(&stream.events().await, 0);
    assert_eq!(events.len(), 50_001);
    // While retained: only `<id>.log` in the state dir, holding only plain
    // files (no links out, no subdirectories).
    assert_eq!(
        entries(&state),
        sorted([
            format!("{id}.json"),
            format!("{id}.end"),
            format!("{id}.log"),
            LOCK.into(),
            ENV_FILE.into()
        ])
    );
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("spill dir")
        .flatten()
        .collect();
    assert!(!files.is_empty(), "spilled something");
    for f in &files {
        let meta = std::fs::symlink_metadata(f.path()).expect("metadata");
        assert!(meta.file_type().is_file(), "{:?} is a plain file", f.path());
    }
    // Retention of 1 s: the directory goes soon after the end. The deadline
    // is generous on purpose: how soon depends on the machine's load, and
    // a test that fails on a busy machine says nothing about the host.
    let ended = Instant::now();
    let gone = eventually(Duration::from_secs(30), || !dir.exists()).await;
    let after = ended.elapsed();
    println!(
        "security/spill: {} files in {id}.log; removed {after:?} after the end",
        files.len()
    );
    assert!(gone, "{id}.log still there 30 s after a retention of 1 s");
    assert_eq!(
        entries(&state),
        [LOCK, ENV_FILE],
        "only the lock and the env file are left"
    );
    host.call("GET", &format!("/command/status/{id}"), "")
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
}
