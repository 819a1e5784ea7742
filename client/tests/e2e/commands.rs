//! Every execdctl subcommand against the real host, and the mistakes a
//! person can make (no host, bad token, unknown id).

use std::time::Duration;

use execd_client::{Error, Run};

use crate::harness::{self, Host, ctl, eventually, execdctl, finish, first_line, rest};

/// Runs execdctl against `host` with these arguments.
async fn on(host: &Host, args: &[&str]) -> harness::Output {
    let url = host.url();
    let mut all = vec!["--url", url.as_str()];
    if let Some(token) = &host.token {
        all.extend(["--token", token.as_str()]);
    }
    all.extend_from_slice(args);
    ctl(&all).await
}

async fn wait_finished(host: &Host, id: &str) {
    let client = host.client();
    eventually("the command's end", || {
        let client = client.clone();
        let id = id.to_string();
        async move { client.status(&id).await.is_ok_and(|s| !s.running) }
    })
    .await;
}

#[tokio::test]
async fn run_separates_the_pipes_and_exits_with_the_command_status() {
    let host = Host::start(&[]).await;
    let out = on(
        &host,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; printf partial; exit 3",
        ],
    )
    .await;
    assert_eq!(out.code(), 3);
    assert_eq!(out.stdout, "out\npartial", "byte-exact: no newline added");
    assert_eq!(out.stderr, "err\n", "a plain exit gets no note");
    // Words are passed as an argv would be: no shell expansion of `$HOME`.
    let out = on(&host, &["run", "--", "echo", "$HOME", "a  b"]).await;
    assert_eq!((out.code(), out.stdout.as_str()), (0, "$HOME a  b\n"));
    // --shell: the words are shell text.
    let out = on(&host, &["run", "--shell", "--", "echo", "$((6*7))"]).await;
    assert_eq!((out.code(), out.stdout.as_str()), (0, "42\n"));
}

#[tokio::test]
async fn run_takes_cwd_env_and_timeout() {
    let host = Host::start(&[]).await;
    let out = on(
        &host,
        &[
            "run",
            "--cwd",
            "/tmp",
            "--env",
            "A=x=y",
            "--env",
            "B=2",
            "-c",
            "--",
            "pwd; echo $A $B",
        ],
    )
    .await;
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (0, "/tmp\nx=y 2\n"),
        "{out:?}"
    );
    let started = std::time::Instant::now();
    let out = on(&host, &["run", "--timeout", "300ms", "--", "sleep", "10"]).await;
    assert_eq!(
        out.code(),
        124,
        "a timeout exits as timeout(1) does: {out:?}"
    );
    assert_eq!(out.notes().len(), 1, "{out:?}");
    assert!(
        out.notes()[0].starts_with("execdctl: timed out after "),
        "{out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let out = on(&host, &["run", "--cwd", "/no/such/dir", "--", "true"]).await;
    assert_eq!(out.code(), 246, "{out:?}");
    assert!(
        out.stderr
            .starts_with("execdctl: the host refused the request"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn run_exits_128_plus_the_signal() {
    let host = Host::start(&[]).await;
    let out = on(&host, &["run", "--", "sh", "-c", "kill -TERM $$"]).await;
    assert_eq!(out.code(), 128 + 15);
    assert_eq!(out.notes(), ["execdctl: killed by SIGTERM"], "{out:?}");
}

/// What the command wrote is what execdctl writes: an idle flush's pieces
/// joined, `\r` kept, a 70,000-byte line whole, no newline added.
#[tokio::test]
async fn run_writes_the_commands_bytes_exactly() {
    let host = Host::start(&[]).await;
    for (script, want) in [
        ("printf abc; sleep 0.3; echo def", "abcdef\n".to_string()),
        (r"printf 'a\rb\rc\n'", "a\rb\rc\n".to_string()),
        ("printf 'x\n\ny'", "x\n\ny".to_string()),
        (
            "head -c 70000 /dev/zero | tr '\\0' x; echo",
            format!("{}\n", "x".repeat(70_000)),
        ),
    ] {
        let out = on(&host, &["run", "--", "sh", "-c", script]).await;
        assert_eq!(out.code(), 0, "{script}: {out:?}");
        assert!(
            out.stdout == want,
            "{script}: {} bytes {:?}, want {}",
            out.stdout.len(),
            &out.stdout[..out.stdout.len().min(80)],
            want.len()
        );
        // The same on stderr.
        let out = on(
            &host,
            &["run", "--", "sh", "-c", &format!("( {script} ) >&2")],
        )
        .await;
        assert!(
            out.stderr == want,
            "{script} on stderr: {:?}",
            &out.stderr[..out.stderr.len().min(80)]
        );
    }
}

#[tokio::test]
async fn run_json_prints_one_event_per_line() {
    let host = Host::start(&[]).await;
    let out = on(
        &host,
        &[
            "--json",
            "run",
            "--",
            "sh",
            "-c",
            "echo a; echo b >&2; exit 4",
        ],
    )
    .await;
    assert_eq!(out.code(), 4);
    let events: Vec<serde_json::Value> = out
        .stdout_lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["started", "stdout", "stderr", "exit"]);
    assert_eq!(
        (events[1]["text"].as_str(), events[1]["eid"].as_u64()),
        (Some("a"), Some(1))
    );
    assert_eq!(
        (events[3]["code"].as_i64(), events[3]["eid"].as_u64()),
        (Some(4), Some(3))
    );
    assert_eq!(events[3]["reason"], "exit", "{}", events[3]);
    assert!(events[3].get("signal").is_none(), "{}", events[3]);
    let out = on(&host, &["--json", "run", "--", "sh", "-c", "kill -KILL $$"]).await;
    let exit: serde_json::Value =
        serde_json::from_str(out.stdout_lines().last().expect("the exit line")).expect("JSON");
    assert_eq!(
        (
            exit["reason"].as_str(),
            exit["signal"].as_i64(),
            exit["code"].as_i64()
        ),
        (Some("signal"), Some(9), Some(-1)),
        "{exit}"
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[tokio::test]
async fn background_run_then_status_attach_logs_ps_and_kill() {
    let host = Host::start(&[]).await;
    // --bg prints the id at once.
    let out = on(
        &host,
        &[
            "run",
            "--bg",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo $i; done; echo e >&2",
        ],
    )
    .await;
    assert_eq!(out.code(), 0, "{out:?}");
    let id = out.stdout.trim().to_string();
    assert_eq!(id.len(), 32, "{id:?}");
    wait_finished(&host, &id).await;

    let status = on(&host, &["status", &id]).await;
    assert_eq!(status.code(), 0);
    assert!(
        status.stdout.contains(&format!("id:        {id}"))
            && status.stdout.contains("state:     exited 0"),
        "{}",
        status.stdout
    );
    let json = on(&host, &["--json", "status", &id]).await;
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("status JSON");
    assert_eq!(
        (value["running"].as_bool(), value["exit_code"].as_i64()),
        (Some(false), Some(0))
    );

    // attach --from 2: the events after eid 2.
    let attached = on(&host, &["attach", &id, "--from", "2"]).await;
    assert_eq!(attached.code(), 0);
    assert_eq!(
        (attached.stdout.as_str(), attached.stderr.as_str()),
        ("3\n4\n5\n", "e\n")
    );

    // logs: the raw combined output; from a cursor.
    let logs = on(&host, &["logs", &id]).await;
    assert_eq!(
        (logs.code(), logs.stdout.as_str()),
        (0, "1\n2\n3\n4\n5\ne\n")
    );
    let logs = on(&host, &["logs", &id, "--cursor", "6"]).await;
    assert_eq!(logs.stdout, "4\n5\ne\n");

    // A running one, for ps and kill.
    let out = on(&host, &["run", "--bg", "--", "sleep", "30"]).await;
    let sleeper = out.stdout.trim().to_string();
    let ps = on(&host, &["ps"]).await;
    assert_eq!(ps.code(), 0, "{ps:?}");
    let lines = ps.stdout_lines();
    assert!(
        lines[0].starts_with("ID ") && lines.len() == 3,
        "{}",
        ps.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&id) && l.contains("exited 0 (bg)")),
        "{}",
        ps.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&sleeper) && l.contains("running")),
        "{}",
        ps.stdout
    );
    let ps = on(&host, &["--json", "ps"]).await;
    let ids: Vec<String> = ps
        .stdout_lines()
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["id"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(ids, [id.clone(), sleeper.clone()], "oldest first");

    let kill = on(&host, &["kill", &sleeper]).await;
    assert_eq!(kill.code(), 0, "{kill:?}");
    wait_finished(&host, &sleeper).await;
    let status = host.client().status(&sleeper).await.expect("status");
    assert_eq!(
        (status.exit_code, status.error.as_deref()),
        (Some(-1), Some("signal: terminated"))
    );
}

#[tokio::test]
async fn logs_follow_prints_until_the_command_ends() {
    let host = Host::start(&[]).await;
    let id = host
        .client()
        .spawn(Run::shell(
            "for i in $(seq 1 10); do echo $i; sleep 0.1; done",
        ))
        .await
        .expect("spawn");
    let out = on(&host, &["logs", &id, "--follow"]).await;
    assert_eq!(out.code(), 0);
    let expect: String = (1..=10).map(|i| format!("{i}\n")).collect();
    assert_eq!(out.stdout, expect);
    // It exits with the command's status, as `run` does.
    let id = host
        .client()
        .spawn(Run::shell("echo last; sleep 0.2; exit 5"))
        .await
        .expect("spawn");
    let out = on(&host, &["logs", &id, "--follow"]).await;
    assert_eq!((out.code(), out.stdout.as_str()), (5, "last\n"), "{out:?}");
}

/// What a first user types: no `--` before the command, a short id, and a
/// line that says a ping or a kill worked.
#[tokio::test]
async fn run_without_dashes_short_ids_and_one_line_answers() {
    let host = Host::start(&[]).await;
    let out = on(&host, &["run", "echo", "hi", "-n"]).await;
    assert_eq!((out.code(), out.stdout.as_str()), (0, "hi -n\n"), "{out:?}");
    let out = on(&host, &["run", "--cwd", "/tmp", "pwd"]).await;
    assert_eq!((out.code(), out.stdout.as_str()), (0, "/tmp\n"), "{out:?}");

    let out = on(&host, &["ping"]).await;
    assert_eq!(out.code(), 0);
    assert_eq!(out.stdout_lines().len(), 1, "{out:?}");
    assert!(out.stdout.contains("is up"), "{out:?}");

    let id = host
        .client()
        .spawn(Run::shell("sleep 30"))
        .await
        .expect("spawn");
    // The shortest prefix that names only this command among those listed.
    let others: Vec<String> = host
        .client()
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.status.id)
        .filter(|other| *other != id)
        .collect();
    let short = (1..=id.len())
        .map(|n| &id[..n])
        .find(|p| !others.iter().any(|o| o.starts_with(p)))
        .expect("a unique prefix");
    let out = on(&host, &["status", short]).await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains(&id), "{out:?}");
    let out = on(&host, &["kill", short]).await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout_lines().len(), 1, "{out:?}");
    assert!(
        out.stdout.starts_with(&format!("interrupted {id}")),
        "{out:?}"
    );
    wait_finished(&host, &id).await;

    // A prefix of several ids is refused, naming them: among 17 ids two
    // share their first hex digit.
    let mut spawned = Vec::new();
    for _ in 0..17 {
        spawned.push(
            host.client()
                .spawn(Run::shell("true"))
                .await
                .expect("spawn"),
        );
    }
    let (a, b) = spawned
        .iter()
        .enumerate()
        .find_map(|(i, a)| {
            spawned[i + 1..]
                .iter()
                .find(|b| b[..1] == a[..1])
                .map(|b| (a, b))
        })
        .expect("two of 17 ids share a first digit");
    let out = on(&host, &["status", &a[..1]]).await;
    assert_eq!(out.code(), 240, "{out:?}");
    assert!(
        out.stderr.contains(a.as_str()) && out.stderr.contains(b.as_str()),
        "{out:?}"
    );
    let out = on(&host, &["status", ""]).await;
    assert_ne!(out.code(), 0, "{out:?}");
}

#[tokio::test]
async fn logs_of_a_foreground_command_is_refused_clearly() {
    let host = Host::start(&[]).await;
    let mut events = host.client().run(Run::shell("true")).await.expect("run");
    let mut id = None;
    while let Some(event) = events.next().await {
        if let execd_client::Event::Started { command_id } = event.expect("event") {
            id = Some(command_id);
        }
    }
    let out = on(&host, &["logs", &id.expect("an id")]).await;
    assert_eq!(out.code(), 246, "{out:?}");
    assert!(out.stderr.contains("background"), "{}", out.stderr);
}

#[tokio::test]
async fn ping_and_the_token() {
    let host = Host::start(&["--access-token", "sesame"]).await;
    assert_eq!(on(&host, &["ping"]).await.code(), 0);
    for token in [None, Some("wrong")] {
        let url = host.url();
        let mut args = vec!["--url", url.as_str()];
        args.extend(token.map(|t| ["--token", t]).into_iter().flatten());
        args.push("ping");
        let out = ctl(&args).await;
        assert_eq!(out.code(), 242, "{out:?}");
        assert!(
            out.stderr.contains("refused the access token") && out.stderr.contains("--token"),
            "{}",
            out.stderr
        );
    }
    // The environment variable works as the flag does.
    let out = execdctl(&["ping"])
        .env("EXECD_URL", host.url())
        .env("EXECD_ACCESS_TOKEN", "sesame")
        .output()
        .await
        .expect("execdctl");
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn no_host_and_unknown_ids_get_plain_errors() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = ctl(&["--url", &url, "run", "--", "true"]).await;
    assert_eq!(out.code(), 241, "{out:?}");
    assert!(
        out.stderr.contains("cannot reach the host")
            && out.stderr.contains("Is execd-host running"),
        "{}",
        out.stderr
    );
    let out = ctl(&["--url", "https://127.0.0.1:1", "ps"]).await;
    assert_eq!(out.code(), 240);
    assert!(out.stderr.contains("https"), "{}", out.stderr);
    let out = ctl(&["run"]).await;
    assert_eq!(out.code(), 240, "a usage error");

    let host = Host::start(&[]).await;
    for args in [
        vec!["status", "nope"],
        vec!["attach", "nope"],
        vec!["kill", "nope"],
        vec!["logs", "nope"],
    ] {
        let out = on(&host, &args).await;
        assert_eq!(out.code(), 243, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("has no command \"nope\""),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    // The library's typed error for the same.
    assert!(matches!(
        host.client().status("nope").await,
        Err(Error::NotFound {
            what: "command",
            ..
        })
    ));
}

/// A loopback port nothing listens on: bound, then freed.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

#[tokio::test]
async fn retry_for_waits_for_a_host_that_is_starting_and_says_so() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = execdctl(&["--url", &url, "--retry-for", "30s", "run", "echo", "up"])
        .spawn()
        .expect("spawn execdctl");
    // It says it waits before the host exists; then the host comes up.
    let stderr = child.stderr.take().expect("stderr");
    let mut stderr = tokio::io::BufReader::new(stderr);
    let mut said = String::new();
    tokio::time::timeout(
        harness::PATIENCE,
        tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut said),
    )
    .await
    .expect("execdctl says it waits")
    .expect("read stderr");
    assert_eq!(
        said,
        format!("execdctl: the host at {url} is not up; trying again for up to 30s\n")
    );
    let _host = Host::start_at(&format!("127.0.0.1:{port}"), &[]).await;
    let out = finish(child).await;
    assert_eq!((out.code(), out.stdout.as_str()), (0, "up\n"), "{out:?}");

    // Bounded: a host that never comes gets the plain unreachable error.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = ctl(&["--url", &url, "--retry-for", "1s", "ps"]).await;
    assert_eq!(out.code(), 241, "{out:?}");
    let notes: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(notes.len(), 3, "{}", out.stderr);
    assert!(
        notes[1].starts_with("execdctl: still not up after 1s ("),
        "{}",
        out.stderr
    );
    assert!(notes[2].contains("cannot reach the host"), "{}", out.stderr);
}

#[tokio::test]
async fn ctrl_c_interrupts_the_command() {
    let host = Host::start(&[]).await;
    let url = host.url();
    let mut child = execdctl(&["--url", &url, "run", "-c", "--", "echo ready; sleep 30"])
        .spawn()
        .expect("spawn");
    let (first, reader) = first_line(child.stdout.take().expect("stdout")).await;
    assert_eq!(first, "ready\n");
    harness::signal(&child, libc::SIGINT);
    let out = rest(child, reader).await;
    assert_eq!(
        out.code(),
        128 + 15,
        "the command's status after SIGTERM: {out:?}"
    );
    let list = host.client().list().await.expect("list");
    assert!(list.iter().all(|c| !c.status.running), "{list:?}");
}

#[tokio::test]
async fn ctrl_c_detaches_with_the_flag() {
    let host = Host::start(&[]).await;
    let url = host.url();
    let mut child = execdctl(&[
        "--url",
        &url,
        "run",
        "--detach-on-interrupt",
        "-c",
        "--",
        "echo ready; sleep 30",
    ])
    .spawn()
    .expect("spawn");
    let (_, reader) = first_line(child.stdout.take().expect("stdout")).await;
    harness::signal(&child, libc::SIGINT);
    let out = rest(child, reader).await;
    assert_eq!(out.code(), 130, "{out:?}");
    assert!(
        out.stderr.contains("detached") && out.stderr.contains("execdctl attach"),
        "{}",
        out.stderr
    );
    let list = host.client().list().await.expect("list");
    assert!(
        list.len() == 1 && list[0].status.running,
        "the command runs on: {list:?}"
    );
}

#[tokio::test]
async fn sessions_new_run_rm() {
    let host = Host::start(&[]).await;
    let out = on(&host, &["session", "new", "--cwd", "/tmp"]).await;
    assert_eq!(out.code(), 0, "{out:?}");
    let session = out.stdout.trim().to_string();
    let out = on(
        &host,
        &[
            "session",
            "run",
            &session,
            "-c",
            "--",
            "export A=1; cd /; pwd",
        ],
    )
    .await;
    assert_eq!((out.code(), out.stdout.as_str()), (0, "/\n"), "{out:?}");
    // Variables and the directory carry over; the run is a command like any other.
    let out = on(
        &host,
        &[
            "run",
            "--session",
            &session,
            "-c",
            "--",
            "echo $A; pwd; exit 5",
        ],
    )
    .await;
    assert_eq!((out.code(), out.stdout.as_str()), (5, "1\n/\n"), "{out:?}");
    // Listed, oldest first, as a table and as JSON.
    let second = on(&host, &["session", "new"])
        .await
        .stdout
        .trim()
        .to_string();
    let out = on(&host, &["session", "ls"]).await;
    assert_eq!(out.code(), 0, "{out:?}");
    let rows: Vec<Vec<&str>> = out
        .stdout_lines()
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    assert_eq!(rows[0], ["ID", "RUNNING", "CREATED", "CWD"]);
    assert_eq!(
        (rows[1][0], rows[1][1], rows[1][3]),
        (session.as_str(), "idle", "/tmp")
    );
    assert_eq!(
        (rows[2][0], rows[2][1], rows[2].len()),
        (second.as_str(), "idle", 3)
    );
    let out = on(&host, &["--json", "session", "ls"]).await;
    let listed: Vec<serde_json::Value> = out
        .stdout_lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(listed.len(), 2, "{}", out.stdout);
    assert_eq!(listed[0]["session_id"], session.as_str());
    assert_eq!(listed[0]["cwd"], "/tmp");
    assert_eq!(listed[1]["session_id"], second.as_str());
    assert_eq!(on(&host, &["session", "rm", &session]).await.code(), 0);
    let out = on(&host, &["session", "rm", &session]).await;
    assert_eq!(out.code(), 243, "{out:?}");
    assert!(out.stderr.contains("has no session"), "{}", out.stderr);
}

/// The library's argv run: no shell between the words and the program, and
/// the same events and exit code as shell text.
#[tokio::test]
async fn the_library_runs_an_argv_without_a_shell() {
    let host = Host::start(&[]).await;
    let client = host.client();
    let run = Run::argv([
        "sh",
        "-c",
        "echo \"$0\" \"$1\"; echo e >&2; exit 4",
        "$HOME",
        "a  b",
    ]);
    let mut events = client.run(run).await.expect("run");
    let (mut stdout, mut stderr, mut code) = (Vec::new(), Vec::new(), None);
    while let Some(event) = events.next().await {
        match event.expect("event") {
            execd_client::Event::Stdout(line) => stdout.push(line.text),
            execd_client::Event::Stderr(line) => stderr.push(line.text),
            execd_client::Event::Exit(exit) => code = Some(exit.code),
            _ => {}
        }
    }
    assert_eq!(
        stdout,
        ["$HOME a  b"],
        "the words reach the program as they are"
    );
    assert_eq!(stderr, ["e"]);
    assert_eq!(code, Some(4));
}
