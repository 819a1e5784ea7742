//! Byte-exact output (issue 21): lines split at `\n` only, `"partial":
//! true` on every piece no `\n` follows, so each pipe's bytes rebuild
//! exactly from the events, live and replayed, through every shipped
//! policy. The reference is the same command's bytes written to files.

use serde_json::json;

use crate::harness::*;

/// What the contract says a stream's events stand for: each event's text,
/// plus `\n` unless it is partial (the empty line's `"\n"` is one `\n`).
fn rebuild(events: &[Event], kind: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.kind() == kind) {
        let partial = match e.data.get("partial") {
            None => false,
            Some(p) => {
                assert_eq!(p, true, "partial is only ever true: {}", e.data);
                true
            }
        };
        let text = e.text();
        assert!(!text.is_empty(), "no event without text: {}", e.data);
        if text == "\n" && !partial {
            out.push(b'\n');
            continue;
        }
        assert!(!text.contains('\n'), "a text holds no newline: {}", e.data);
        out.extend_from_slice(text.as_bytes());
        if !partial {
            out.push(b'\n');
        }
    }
    out
}

/// The bytes `script` writes to stdout and stderr, run by bash as the
/// host runs it, to files.
fn reference(dir: &TempDir, script: &str) -> (Vec<u8>, Vec<u8>) {
    let (out, err) = (dir.0.join("out"), dir.0.join("err"));
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{{ {script}\n}} >{} 2>{}",
            out.display(),
            err.display()
        ))
        .status()
        .expect("bash runs");
    assert!(status.success(), "{script}: {status:?}");
    (
        std::fs::read(out).expect("stdout file"),
        std::fs::read(err).expect("stderr file"),
    )
}

/// Every case of the issue, each written to stdout and then, the same
/// bytes, to stderr, so each pipe is checked on its own.
const CASES: &[(&str, &str)] = &[
    ("idle flush mid-line", "printf abc; sleep 0.3; echo def"),
    (
        "a 70,000-byte line",
        "head -c 70000 /dev/zero | tr '\\0' x; echo",
    ),
    ("carriage returns", r"printf 'a\rb\rc\n'"),
    ("no final newline", r"printf 'one\ntwo'"),
    ("empty lines", r"printf '\n\nx\n\n\n'"),
    (
        "a fast 200,000-line awk",
        r#"awk 'BEGIN { for (i = 0; i < 200000; i++) print "line " i }'"#,
    ),
    (
        "CRLF and a long line without newline",
        r"printf 'x\r\ny\r\n'; head -c 140000 /dev/zero | tr '\0' y",
    ),
];

fn both_pipes(case: &str) -> String {
    format!("{case}; ( {case} ) 1>&2")
}

async fn check_policy(policy: &str) {
    let dir = TempDir::new(&format!("exact-{policy}"));
    // The ring with room for every case: what is checked is the bytes,
    // not eviction (a reader behind the default ring gets a gap).
    let mut args = vec!["--policy", policy];
    if policy == "ring" {
        args.extend(["--policy-config", "max-events=1048576"]);
    }
    let host = Host::start(&args).await;
    for (name, case) in CASES {
        let script = both_pipes(case);
        let (want_out, want_err) = reference(&dir, &script);
        let mut stream = host.run(json!({ "command": script })).await;
        let id = init_id(&mut stream).await;
        let live = logged(&stream.events().await, 0);
        assert_eq!(
            live.last().map(Event::kind),
            Some("execution_complete"),
            "{policy} {name}"
        );
        // Replayed from the policy, after the end, the same bytes.
        let mut replay = host.resume(&id, 0).await;
        let replayed = logged(&replay.events().await, 0);
        for (how, events) in [("live", &live), ("replayed", &replayed)] {
            let (out, err) = (rebuild(events, "stdout"), rebuild(events, "stderr"));
            assert!(
                out == want_out,
                "{policy} {name} {how} stdout: {} bytes, want {}: {:?}",
                out.len(),
                want_out.len(),
                String::from_utf8_lossy(&out[..out.len().min(200)])
            );
            assert!(
                err == want_err,
                "{policy} {name} {how} stderr: {} bytes, want {}",
                err.len(),
                want_err.len()
            );
        }
        assert_eq!(
            live.iter().map(|e| &e.data).collect::<Vec<_>>(),
            replayed.iter().map(|e| &e.data).collect::<Vec<_>>(),
            "{policy} {name}: a replay is the live stream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pipe_rebuilds_exactly_through_ring() {
    check_policy("ring").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pipe_rebuilds_exactly_through_spill() {
    check_policy("spill").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pipe_rebuilds_exactly_through_disk() {
    check_policy("disk").await;
}

/// The pieces say which they are: the idle flush's `abc` is partial and
/// `def` is the rest of its line; a 70,000-byte line is a 64 KiB partial
/// piece and the rest; `\r` stays in the text; output that ends without a
/// newline ends with a partial piece.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pieces_are_marked() {
    let host = Host::start(&[]).await;
    let run = |command: &'static str| {
        let host = &host;
        async move {
            let mut stream = host.run(json!({ "command": command })).await;
            init_id(&mut stream).await;
            logged(&stream.events().await, 0)
                .into_iter()
                .filter(|e| e.kind() == "stdout")
                .map(|e| (e.text().to_string(), e.data.get("partial").is_some()))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        run("printf abc; sleep 0.3; echo def").await,
        [("abc".into(), true), ("def".into(), false)]
    );
    let long = run("head -c 70000 /dev/zero | tr '\\0' x; echo").await;
    assert_eq!(
        long.len(),
        2,
        "{:?}",
        long.iter().map(|l| l.0.len()).collect::<Vec<_>>()
    );
    assert_eq!((long[0].0.len(), long[0].1), (64 * 1024, true));
    assert_eq!((long[1].0.len(), long[1].1), (70_000 - 64 * 1024, false));
    assert_eq!(
        run(r"printf 'a\rb\rc\n'").await,
        [("a\rb\rc".into(), false)]
    );
    assert_eq!(
        run(r"printf 'one\n\ntwo'").await,
        [
            ("one".into(), false),
            ("\n".into(), false),
            ("two".into(), true)
        ]
    );
}
