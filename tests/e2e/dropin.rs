//! Issue #13, what today's OpenSandbox SDK sends: `argv`, `cwd` as execd
//! expands it, the `EXECD_ENVS` file, and metrics.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::harness::*;

/// Runs a command to its end: stdout lines, stderr lines, terminal event.
async fn outcome(host: &Host, body: serde_json::Value) -> (Vec<String>, Vec<String>, Event) {
    let mut stream = host.run(body).await;
    init_id(&mut stream).await;
    let events = stream.events().await;
    let logged = logged(&events, 0);
    let lines = |kind: &str| {
        logged
            .iter()
            .filter(|e| e.kind() == kind)
            .map(|e| e.text().to_string())
            .collect()
    };
    let end = logged.last().cloned().expect("a terminal event");
    (lines("stdout"), lines("stderr"), end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argv_runs_without_a_shell_and_status_shows_it_quoted() {
    let host = Host::start(&[]).await;
    let mut stream = host
        .run(json!({"argv": ["printf", "%s|", "$HOME", "a b", "*"]}))
        .await;
    let id = init_id(&mut stream).await;
    let events = stream.events().await;
    let logged = logged(&events, 0);
    assert_eq!(
        logged[0].text(),
        "$HOME|a b|*|",
        "no expansion, no splitting"
    );
    assert_eq!(logged.last().map(Event::kind), Some("execution_complete"));
    let status = host.wait_finished(&id).await;
    assert_eq!(status["content"], "printf '%s|' '$HOME' 'a b' '*'");
    assert_eq!(status["exit_code"], 0);

    // Exit codes and stderr as for shell commands.
    let (_, err, end) = outcome(
        &host,
        json!({"argv": ["sh", "-c", "echo oops >&2; exit 4"]}),
    )
    .await;
    assert_eq!(err, vec!["oops"]);
    assert_failed(&end, "4", "exit status 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argv_searches_the_childs_path_and_relative_paths_use_cwd() {
    let dir = TempDir::new("argv-path");
    let tool = dir.0.join("only-here-tool");
    std::fs::write(&tool, "#!/bin/sh\necho tool ran in \"$PWD\"\n").expect("write tool");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let host = Host::start(&[]).await;
    let dir_s = dir.0.to_str().expect("utf-8");

    let path = format!("{dir_s}:/usr/bin:/bin");
    let (out, _, end) = outcome(
        &host,
        json!({"argv": ["only-here-tool"], "envs": {"PATH": path}, "cwd": "/"}),
    )
    .await;
    assert_eq!(end.kind(), "execution_complete");
    assert_eq!(out, vec!["tool ran in /"]);

    // The host's PATH does not have it: refused before anything runs.
    host.call(
        "POST",
        "/command",
        &json!({"argv": ["only-here-tool"]}).to_string(),
    )
    .await
    .assert_error(400, "INVALID_REQUEST_BODY");
    // A relative entry of PATH is not searched.
    host.call(
        "POST",
        "/command",
        &json!({"argv": ["only-here-tool"], "cwd": dir_s, "envs": {"PATH": "."}}).to_string(),
    )
    .await
    .assert_error(400, "INVALID_REQUEST_BODY");
    // A relative path is taken from the cwd.
    let (out, _, _) = outcome(&host, json!({"argv": ["./only-here-tool"], "cwd": dir_s})).await;
    assert_eq!(out, vec![format!("tool ran in {dir_s}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argv_resumes_like_a_shell_command() {
    let host = Host::start(&[]).await;
    let mut stream = host
        .run(json!({"argv": ["sh", "-c", "for i in $(seq 1 30); do echo $i; sleep 0.01; done"]}))
        .await;
    let id = init_id(&mut stream).await;
    let mut first = Vec::new();
    for _ in 0..5 {
        first.push(stream.next_event().await.expect("an event"));
    }
    drop(stream);
    let after = first.last().and_then(Event::eid).expect("an eid");
    let rest = host.resume(&id, after).await.events().await;
    let mut all = first;
    all.extend(rest);
    let logged = logged(&all, 0);
    let texts: Vec<String> = logged[..30].iter().map(|e| e.text().to_string()).collect();
    let want: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    assert_eq!(texts, want);
}

/// Clients that send every unset optional field as `null` (as many JSON
/// encoders do) get what leaving them out gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_optional_fields_are_as_if_absent() {
    let host = Host::start(&[]).await;
    let body = json!({
        "command": "echo \"$PWD\" here",
        "argv": null, "cwd": null, "background": null, "timeout": null,
        "uid": null, "gid": null, "envs": null,
    });
    let (out, err, end) = outcome(&host, body).await;
    assert_eq!(end.kind(), "execution_complete", "{err:?}");
    assert_eq!(out.len(), 1);
    assert!(out[0].ends_with(" here"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argv_and_command_errors() {
    let host = Host::start(&[]).await;
    for bad in [
        json!({"command": "echo", "argv": ["echo"]}),
        json!({}),
        json!({"argv": []}),
        json!({"argv": [""]}),
        json!({"argv": ["echo", "a\u{0}b"]}),
        json!({"argv": ["ec\u{0}ho"]}),
        json!({"argv": "echo hi"}),
        json!({"argv": ["echo", 1]}),
        json!({"argv": null, "command": null}),
        json!({"argv": ["/definitely/not/a/program"]}),
    ] {
        let response = host.call("POST", "/command", &bad.to_string()).await;
        response.assert_error(400, "INVALID_REQUEST_BODY");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cwd_expands_variables_home_and_refuses_undefined_ones() {
    let home = TempDir::new("cwd-home");
    std::fs::create_dir_all(home.0.join("sub")).expect("mkdir");
    let envs = TempDir::new("cwd-envs");
    let file = envs.0.join("envs");
    std::fs::write(&file, "FROMFILE=/usr\n").expect("write envs");
    let home_s = home.0.to_str().expect("utf-8");
    let host = Host::try_start_env(
        &[],
        &[
            ("HOME", home_s),
            ("EXECD_ENVS", file.to_str().expect("utf-8")),
        ],
    )
    .await
    .expect("host starts");
    for (cwd, want) in [
        ("~", home_s.to_string()),
        ("~/sub", format!("{home_s}/sub")),
        ("$D", "/tmp".to_string()),
        ("${D}/..", "/".to_string()),
        ("$FROMFILE", "/usr".to_string()),
        ("${HOME}/sub", format!("{home_s}/sub")),
    ] {
        let (out, _, end) = outcome(
            &host,
            json!({"command": "pwd -P", "cwd": cwd, "envs": {"D": "/tmp"}}),
        )
        .await;
        assert_eq!(end.kind(), "execution_complete", "{cwd}");
        let real = std::fs::canonicalize(&want).expect("canonical");
        assert_eq!(out, vec![real.to_string_lossy().into_owned()], "{cwd}");
    }
    for cwd in [
        "$UNDEFINED_IN_TEST",
        "${UNDEFINED_IN_TEST}/x",
        "~/not-there",
        "$EXECD_ACCESS_TOKEN",
    ] {
        host.call(
            "POST",
            "/command",
            &json!({"command": "pwd", "cwd": cwd}).to_string(),
        )
        .await
        .assert_error(400, "INVALID_REQUEST_BODY");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_execd_envs_file_is_read_at_every_spawn() {
    let dir = TempDir::new("envs-file");
    let file = dir.0.join("nested").join("envs");
    let host = Host::try_start_env(
        &[],
        &[
            ("EXECD_ENVS", file.to_str().expect("utf-8")),
            ("FROMHOST", "host"),
        ],
    )
    .await
    .expect("host starts");

    // Before any set_env: no file, commands run.
    let (out, _, _) = outcome(&host, json!({"command": "echo \"[${PERSISTED-unset}]\""})).await;
    assert_eq!(out, vec!["[unset]"]);

    // What the SDK's set_env runs, in the command's own environment.
    let append = r#"mkdir -p "$(dirname "$EXECD_ENVS")" && printf '%s\n' "PERSISTED='a b \$HOME'" 'OVER=file' 'FROMHOST=file' 'not a line' 'EXP="x-$FROMHOST-\"q\""' >> "$EXECD_ENVS""#;
    let (_, _, end) = outcome(&host, json!({"command": append})).await;
    assert_eq!(end.kind(), "execution_complete", "{:?}", end.data);

    let (out, _, _) = outcome(
        &host,
        json!({"command": "echo \"$PERSISTED|$OVER|$FROMHOST|$EXP\"", "envs": {"OVER": "request"}}),
    )
    .await;
    assert_eq!(out, vec!["a b $HOME|request|file|x-file-\"q\""]);
    // argv commands get the same environment.
    let (out, _, _) = outcome(&host, json!({"argv": ["printenv", "PERSISTED"]})).await;
    assert_eq!(out, vec!["a b $HOME"]);
    let logged = host.stderr();
    assert!(
        !logged.contains('\u{1b}'),
        "no colour codes in a log that is not a terminal"
    );
    assert!(
        logged.contains("EXECD_ENVS line skipped") && logged.contains("line=4"),
        "the malformed line is logged by number: {logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_as_the_sdk_reads_them() {
    let host = Host::start(&[]).await;
    let response = host.call("GET", "/metrics", "").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let m = response.json();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let count = m["cpu_count"].as_f64().expect("cpu_count");
    assert!(count > 0.0 && count <= cpus, "{m}");
    let pct = m["cpu_used_pct"].as_f64().expect("cpu_used_pct");
    assert!((0.0..=100.0).contains(&pct), "{m}");
    let total = m["mem_total_mib"].as_f64().expect("mem_total_mib");
    let used = m["mem_used_mib"].as_f64().expect("mem_used_mib");
    assert!(total > 0.0 && used > 0.0 && used <= total, "{m}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let ts = m["timestamp"].as_u64().expect("timestamp");
    assert!(ts.abs_diff(now) < 60_000, "{m}");

    for framing in ["standard", "legacy"] {
        let mut watch = host
            .send(
                "GET",
                &format!("/metrics/watch?framing={framing}"),
                &[],
                b"",
            )
            .await;
        assert_eq!(watch.status, 200);
        assert_eq!(watch.header("content-type"), Some("text/event-stream"));
        let a = watch.next_event().await.expect("a sample");
        let b = watch.next_event().await.expect("another sample");
        for e in [&a, &b] {
            assert!(e.id.is_none() && e.event.is_none(), "{framing}: {e:?}");
            assert!(e.data["mem_total_mib"].as_f64().is_some(), "{:?}", e.data);
        }
        let gap =
            b.data["timestamp"].as_u64().unwrap_or(0) - a.data["timestamp"].as_u64().unwrap_or(0);
        assert!((500..3000).contains(&gap), "about a second apart: {gap}");
    }
    host.call("POST", "/metrics", "")
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    host.call("DELETE", "/metrics/watch", "")
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    host.call("GET", "/metrics?framing=bogus", "").await;
    host.call("GET", "/metrics/watch?framing=bogus", "")
        .await
        .assert_error(400, "INVALID_QUERY");
}
