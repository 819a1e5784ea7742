//! Through the cutting proxy: every line exactly once, in order, and the
//! command's status, in both framings, from the library and from execdctl.

use execd_client::{Event, Framing};

use crate::harness::{self, Host, both_pipes, client_for, ctl, numbered};
use crate::proxy::{Cutting, Proxy};

const LINES: usize = 3000;
const CODE: i32 = 7;

fn cutting() -> Option<Cutting> {
    Some(Cutting {
        events: (100, 400),
        refuse_after_cut: false,
        first_only: false,
    })
}

async fn library_stream_survives_cuts(framing: Framing) {
    let host = Host::start(&[]).await;
    let proxy = Proxy::start(&host.addr, cutting()).await;
    let client = client_for(&proxy.url, None, Some(framing));
    let mut events = client
        .run(execd_client::Run::shell(both_pipes(LINES, CODE)))
        .await
        .expect("run");
    let (mut out, mut err, mut eids) = (Vec::new(), Vec::new(), Vec::new());
    let mut exit = None;
    let mut started = 0;
    let read = async {
        while let Some(event) = events.next().await {
            let event = event.expect("no error through the cuts");
            eids.extend(event.eid());
            match event {
                Event::Started { .. } => started += 1,
                Event::Stdout(line) => out.push(line.text),
                Event::Stderr(line) => err.push(line.text),
                Event::Exit(e) => exit = Some(e),
                other => panic!("unexpected event {other:?}"),
            }
        }
    };
    tokio::time::timeout(harness::PATIENCE, read)
        .await
        .expect("stream ends in time");
    assert_eq!(started, 1);
    assert_eq!(out, numbered("out", LINES));
    assert_eq!(err, numbered("err", LINES));
    let total = 2 * LINES as u64 + 1;
    assert_eq!(
        eids,
        (1..=total).collect::<Vec<_>>(),
        "eids exactly once, in order"
    );
    let exit = exit.expect("an exit event");
    assert_eq!((exit.code, exit.eid), (CODE, total));
    // The proxy really cut, inside events too, and the stream resumed.
    assert!(proxy.cuts() >= 5, "only {} cuts", proxy.cuts());
    assert!(proxy.mid_event_cuts() >= 1, "no cut inside an event");
    assert!(
        events.reconnects() >= 5,
        "{} reconnects",
        events.reconnects()
    );
}

#[tokio::test]
async fn library_stream_survives_cuts_standard_framing() {
    library_stream_survives_cuts(Framing::Standard).await;
}

#[tokio::test]
async fn library_stream_survives_cuts_legacy_framing() {
    library_stream_survives_cuts(Framing::Legacy).await;
}

/// The host's default framing is legacy and the client does not ask: it
/// reads whatever arrives.
#[tokio::test]
async fn library_stream_reads_a_legacy_host_without_asking() {
    let host = Host::start(&["--sse-framing", "legacy"]).await;
    let proxy = Proxy::start(&host.addr, cutting()).await;
    let client = client_for(&proxy.url, None, None);
    let mut events = client
        .run(execd_client::Run::shell(both_pipes(1000, 0)))
        .await
        .expect("run");
    let mut lines = 0;
    let mut exit = None;
    while let Some(event) = tokio::time::timeout(harness::PATIENCE, events.next())
        .await
        .expect("in time")
    {
        match event.expect("no error") {
            Event::Stdout(_) | Event::Stderr(_) => lines += 1,
            Event::Exit(e) => exit = Some(e.code),
            _ => {}
        }
    }
    assert_eq!((lines, exit), (2000, Some(0)));
    assert!(proxy.cuts() >= 2, "only {} cuts", proxy.cuts());
}

async fn execdctl_run_survives_cuts(framing: &str, verbose: bool) {
    let host = Host::start(&[]).await;
    let proxy = Proxy::start(&host.addr, cutting()).await;
    let script = both_pipes(LINES, CODE);
    let mut args = vec!["--url", &proxy.url, "--framing", framing, "run"];
    if verbose {
        args.insert(0, "-v");
    }
    args.extend(["--", "bash", "-c", &script]);
    let out = ctl(&args).await;
    assert_eq!(out.code(), CODE, "stderr: {}", out.notes().join("\n"));
    assert_eq!(out.stdout_lines(), numbered("out", LINES));
    assert_eq!(out.command_stderr(), numbered("err", LINES));
    assert!(proxy.cuts() >= 5, "only {} cuts", proxy.cuts());
    let notes = out.notes();
    if verbose {
        assert!(
            notes.iter().any(|n| n.contains("connection lost")),
            "-v reports reconnections: {notes:?}"
        );
    } else {
        assert!(notes.is_empty(), "a cut resumes silently: {notes:?}");
    }
}

#[tokio::test]
async fn execdctl_run_survives_cuts_standard_framing_silently() {
    execdctl_run_survives_cuts("standard", false).await;
}

#[tokio::test]
async fn execdctl_run_survives_cuts_legacy_framing_verbose() {
    execdctl_run_survives_cuts("legacy", true).await;
}

/// `logs --follow` polls `/logs`; a poll cut mid-answer is asked again
/// from the same byte cursor, so the raw output comes out whole, once.
/// Blank lines in the output are what the proxy counts as events: bursts
/// of 200 get most polls cut, some more than once.
#[tokio::test]
async fn execdctl_logs_follow_survives_cuts() {
    let host = Host::start(&[]).await;
    let (bursts, per_burst) = (20, 200);
    let script = format!(
        "for b in $(seq 1 {bursts}); do for i in $(seq 1 {per_burst}); do echo \"$b.$i\"; echo; done; sleep 0.3; done"
    );
    let url = host.url();
    let started = ctl(&["--url", &url, "run", "--bg", "--", "bash", "-c", &script]).await;
    let id = started.stdout.trim().to_string();
    assert_eq!(id.len(), 32, "an id: {:?}", started.stdout);
    let proxy = Proxy::start(&host.addr, cutting()).await;
    let out = ctl(&["--url", &proxy.url, "logs", &id, "--follow"]).await;
    assert_eq!(out.code(), 0, "stderr: {}", out.notes().join("\n"));
    let want: String = (1..=bursts)
        .flat_map(|b| (1..=per_burst).map(move |i| format!("{b}.{i}\n\n")))
        .collect();
    assert!(
        out.stdout == want,
        "every byte once, in order ({} bytes of {})",
        out.stdout.len(),
        want.len()
    );
    assert!(proxy.cuts() >= 2, "only {} cuts", proxy.cuts());
}

/// A proxy that cuts the first answer within its first 60 bytes (inside
/// the HTTP head, before `init`), then lets everything through.
async fn cut_before_init(host: &Host) -> Proxy {
    Proxy::start(
        &host.addr,
        Some(Cutting {
            events: (0, 0),
            refuse_after_cut: false,
            first_only: true,
        }),
    )
    .await
}

/// A command that leaves a line in `file` each time it runs.
fn counted(file: &std::path::Path) -> String {
    format!("echo ran >> '{}'; seq 1 100", file.display())
}

fn runs(file: &std::path::Path) -> usize {
    std::fs::read_to_string(file).map_or(0, |t| t.lines().count())
}

/// A cut before `init` used to lose the command (the client had no id);
/// now the client sends the start again with its `Idempotency-Key`, and the
/// host answers with the command it started: it runs once, every line
/// arrives once.
#[tokio::test]
async fn library_run_cut_before_init_runs_once() {
    let dir = harness::TempDir::new("cut-before-init");
    let file = dir.0.join("ran");
    let host = Host::start(&[]).await;
    let proxy = cut_before_init(&host).await;
    let client = client_for(&proxy.url, None, None);
    let mut events = client
        .run(execd_client::Run::shell(counted(&file)))
        .await
        .expect("run");
    let (mut started, mut out, mut exit) = (0, Vec::new(), None);
    let read = async {
        while let Some(event) = events.next().await {
            match event.expect("no error through the cut") {
                Event::Started { .. } => started += 1,
                Event::Stdout(line) => out.push(line.text),
                Event::Exit(e) => exit = Some(e.code),
                other => panic!("unexpected event {other:?}"),
            }
        }
    };
    tokio::time::timeout(harness::PATIENCE, read)
        .await
        .expect("stream ends in time");
    assert_eq!(proxy.cuts(), 1, "the proxy cut the first answer");
    assert_eq!(started, 1);
    assert_eq!(out, (1..=100).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(exit, Some(0));
    assert_eq!(runs(&file), 1, "the command ran once");
}

#[tokio::test]
async fn execdctl_run_cut_before_init_runs_once() {
    let dir = harness::TempDir::new("ctl-cut-before-init");
    let file = dir.0.join("ran");
    let host = Host::start(&[]).await;
    let proxy = cut_before_init(&host).await;
    let script = counted(&file);
    let out = ctl(&["--url", &proxy.url, "run", "--", "sh", "-c", &script]).await;
    assert_eq!(out.code(), 0, "stderr: {}", out.stderr);
    assert_eq!(
        out.stdout_lines(),
        (1..=100).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(runs(&file), 1, "the command ran once");
}

/// One HTTP/1.1 exchange over a fresh connection to `addr` (host:port):
/// the raw bytes of the answer until the peer closes or cuts it.
async fn raw_exchange(addr: &str, key: &str, body: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /command HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Idempotency-Key: {key}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(harness::PATIENCE, async {
        let mut buf = [0u8; 8192];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the answer ends in time");
    answer
}

/// The body of a chunked HTTP answer, whole; `None` if it is cut short.
fn dechunked(answer: &[u8]) -> Option<(String, Vec<u8>)> {
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&answer[..head_end]).to_string();
    let mut rest = &answer[head_end + 4..];
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some((head, body));
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// A raw HTTP client, no library: the first `POST /command` is cut inside
/// its answer's head, so it never learns the id; the same request again,
/// with the same `Idempotency-Key`, gets the command that first one
/// started, from `init` to its end, and the command ran once.
#[tokio::test]
async fn raw_http_cut_before_init_runs_once_with_a_key() {
    let dir = harness::TempDir::new("raw-cut-before-init");
    let file = dir.0.join("ran");
    let host = Host::start(&[]).await;
    let proxy = cut_before_init(&host).await;
    let addr = proxy.url.trim_start_matches("http://").to_string();
    let body = serde_json::json!({ "command": counted(&file) }).to_string();
    let key = "raw-cut-before-init-1";

    let first = raw_exchange(&addr, key, &body).await;
    assert_eq!(proxy.cuts(), 1, "the proxy cut the first answer");
    assert!(
        !String::from_utf8_lossy(&first).contains("\"init\""),
        "the cut came before init: {}",
        String::from_utf8_lossy(&first)
    );

    let second = raw_exchange(&addr, key, &body).await;
    let (head, body) = dechunked(&second).expect("a whole chunked answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&body)
        .lines()
        .map(|l| l.strip_prefix("data: ").unwrap_or(l))
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("an event"))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"init"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "init").count(), 1);
    let lines: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "stdout")
        .filter_map(|e| e["text"].as_str())
        .collect();
    let want: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    assert_eq!(lines, want, "every line once");
    assert_eq!(kinds.last(), Some(&"execution_complete"), "{kinds:?}");
    assert_eq!(runs(&file), 1, "the command ran once");
}
