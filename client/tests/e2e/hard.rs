//! The hard cases: expiry after a cut, the `exclusive` policy's 409 then
//! admission, a gap, and a host that goes away mid-stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use execd_client::{Client, Error, Event, Run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{
    self, Host, PATIENCE, ctl, eventually, execdctl, fast_backoff, first_line, rest,
};
use crate::proxy::{Cutting, Proxy};

/// Cut the first connection after 50 events, then refuse connections
/// until the command has expired on the host, then let them through.
async fn expire_behind_a_cut(host: &Host, proxy: &Proxy) {
    eventually("the proxy's cut", || async { proxy.cuts() >= 1 }).await;
    let direct = host.client();
    // The command ends at once; with retention-secs=1 its record goes
    // about a second later, and the host then answers 404.
    let id = direct
        .list()
        .await
        .ok()
        .and_then(|l| l.first().map(|c| c.status.id.clone()));
    eventually("the command's expiry", || {
        let direct = direct.clone();
        let id = id.clone();
        async move {
            match id {
                Some(id) => matches!(direct.status(&id).await, Err(Error::NotFound { .. })),
                None => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    true
                }
            }
        }
    })
    .await;
    assert!(
        proxy.refused() >= 1,
        "the client retried while the proxy refused"
    );
    proxy.pass();
}

fn cut_once_then_refuse() -> Option<Cutting> {
    Some(Cutting {
        events: (50, 50),
        refuse_after_cut: true,
        first_only: false,
    })
}

#[tokio::test]
async fn a_404_after_a_cut_is_the_typed_expired_error() {
    let host = Host::start(&["--policy-config", "retention-secs=1"]).await;
    let proxy = Proxy::start(&host.addr, cut_once_then_refuse()).await;
    let client = harness::client_for(&proxy.url, None, None);
    let mut events = client.run(Run::shell("seq 1 2000")).await.expect("run");
    let reader = async {
        let mut seen = Vec::new();
        loop {
            match events.next().await {
                Some(Ok(Event::Stdout(line))) => seen.push(line.eid),
                Some(Ok(_)) => {}
                Some(Err(error)) => return (seen, Some(error)),
                None => return (seen, None),
            }
        }
    };
    let ((seen, error), ()) = tokio::time::timeout(PATIENCE, async {
        tokio::join!(reader, expire_behind_a_cut(&host, &proxy))
    })
    .await
    .expect("in time");
    assert!(
        !seen.is_empty() && seen.len() < 2000,
        "{} lines before the cut",
        seen.len()
    );
    assert_eq!(seen, (1..=seen.len() as u64).collect::<Vec<_>>());
    match error {
        Some(Error::Expired { after_eid, .. }) => assert_eq!(after_eid, seen.len() as u64),
        other => panic!("expected Expired, got {other:?}"),
    }
}

#[tokio::test]
async fn execdctl_reports_expiry_with_its_own_status() {
    let host = Host::start(&["--policy-config", "retention-secs=1"]).await;
    let proxy = Proxy::start(&host.addr, cut_once_then_refuse()).await;
    let child = execdctl(&["--url", &proxy.url, "run", "--", "seq", "1", "2000"])
        .spawn()
        .expect("spawn execdctl");
    let (out, ()) = tokio::join!(harness::finish(child), expire_behind_a_cut(&host, &proxy));
    assert_eq!(out.code(), 244, "{out:?}");
    let notes = out.notes();
    assert!(
        notes.len() == 1 && notes[0].contains("expired"),
        "{notes:?}"
    );
    let lines = out.stdout_lines();
    assert!(!lines.is_empty() && lines.len() < 2000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, (i + 1).to_string());
    }
}

/// Holds the only reader slot of `id` under `exclusive`: a raw resume
/// read until its 200 head, kept open for `hold`, then dropped.
async fn hold_the_reader(addr: &str, id: &str, hold: Duration) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /command/{id}/resume?after_eid=0 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("head in time")
            .expect("read");
        assert!(n > 0, "host closed the holder's connection");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tokio::time::sleep(hold).await;
}

const SLOW_40: &str = "for i in $(seq 1 40); do echo $i; sleep 0.05; done";

#[tokio::test]
async fn exclusive_409_waits_then_is_admitted() {
    let host = Host::start(&["--policy", "exclusive"]).await;
    let id = host
        .client()
        .spawn(Run::shell(SLOW_40))
        .await
        .expect("spawn");
    let conflicts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&conflicts);
    let client = Client::builder(host.url())
        .backoff(fast_backoff(Duration::from_secs(20)))
        .on_reconnect(move |r| {
            if matches!(r.cause, Error::Api { status: 409, .. }) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .expect("client");
    let holder = hold_the_reader(&host.addr, &id, Duration::from_millis(800));
    let follower = async {
        // Attach once the holder is in: the first answer is a 409.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut events = client.attach(&id, 0).await.expect("admitted in the end");
        let mut lines = Vec::new();
        let mut exit = None;
        while let Some(event) = events.next().await {
            match event.expect("no error") {
                Event::Stdout(line) => lines.push(line.text),
                Event::Exit(e) => exit = Some(e.code),
                other => panic!("{other:?}"),
            }
        }
        (lines, exit)
    };
    let ((), (lines, exit)) =
        tokio::time::timeout(PATIENCE, async { tokio::join!(holder, follower) })
            .await
            .expect("in time");
    assert!(
        conflicts.load(Ordering::SeqCst) >= 1,
        "the attach never met a 409"
    );
    assert_eq!(lines, (1..=40).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(exit, Some(0));
}

#[tokio::test]
async fn execdctl_attach_waits_out_a_409() {
    let host = Host::start(&["--policy", "exclusive"]).await;
    let id = host
        .client()
        .spawn(Run::shell(SLOW_40))
        .await
        .expect("spawn");
    let url = host.url();
    let holder = hold_the_reader(&host.addr, &id, Duration::from_millis(800));
    let follower = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ctl(&["-v", "--url", &url, "attach", &id]).await
    };
    let ((), out) = tokio::join!(holder, follower);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(
        out.stdout_lines(),
        (1..=40).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert!(
        out.notes()
            .iter()
            .any(|n| n.contains("another reader holds")),
        "{:?}",
        out.notes()
    );
}

/// A finished command of 100 lines under a 10-event ring: its first
/// events are gone.
async fn evicted(host: &Host) -> String {
    let client = host.client();
    let id = client.spawn(Run::shell("seq 1 100")).await.expect("spawn");
    eventually("the command's end", || {
        let client = client.clone();
        let id = id.clone();
        async move { client.status(&id).await.is_ok_and(|s| !s.running) }
    })
    .await;
    id
}

#[tokio::test]
async fn a_gap_reaches_the_library_with_its_range() {
    let host = Host::start(&["--policy", "ring", "--policy-config", "max-events=10"]).await;
    let id = evicted(&host).await;
    let mut events = host.client().attach(&id, 0).await.expect("attach");
    let Some(Ok(Event::Gap(gap))) = events.next().await else {
        panic!("the first event is the gap");
    };
    assert_eq!(gap.from_eid, 1);
    assert!(gap.to_eid >= 90 && gap.to_eid < 100, "{gap:?}");
    let mut next = gap.to_eid + 1;
    while let Some(event) = events.next().await {
        match event.expect("no error") {
            Event::Stdout(line) => {
                assert_eq!((line.eid, line.text), (next, next.to_string()));
                next += 1;
            }
            Event::Exit(exit) => assert_eq!((exit.eid, exit.code), (101, 0)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(next, 101);
}

#[tokio::test]
async fn a_gap_is_one_clear_stderr_line() {
    let host = Host::start(&["--policy", "ring", "--policy-config", "max-events=10"]).await;
    let id = evicted(&host).await;
    let out = ctl(&["--url", &host.url(), "attach", &id]).await;
    assert_eq!(out.code(), 0, "{out:?}");
    let notes = out.notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let gap = notes[0];
    assert!(gap.starts_with("execdctl: output lost: events 1-"), "{gap}");
    assert!(gap.contains("reason: "), "{gap}");
    // stdout resumes right after the gap's range, to the end.
    let to: u64 = gap
        .trim_start_matches("execdctl: output lost: events 1-")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("the range's end");
    let expect: Vec<String> = (to + 1..=100).map(|i| i.to_string()).collect();
    assert_eq!(out.stdout_lines(), expect);
}

const SLOW_200: &str = "for i in $(seq 1 200); do echo $i; sleep 0.05; done";
const BOUND: Duration = Duration::from_secs(2);

#[tokio::test]
async fn host_going_away_ends_in_gave_up_within_the_bound() {
    let host = Host::start(&[]).await;
    let proxy = Proxy::start(&host.addr, None).await;
    let client = Client::builder(&proxy.url)
        .backoff(fast_backoff(BOUND))
        .build()
        .expect("client");
    let mut events = client.run(Run::shell(SLOW_200)).await.expect("run");
    let mut seen = Vec::new();
    let gone_at;
    loop {
        match tokio::time::timeout(PATIENCE, events.next())
            .await
            .expect("in time")
        {
            Some(Ok(Event::Stdout(line))) => {
                seen.push(line.text);
                if seen.len() == 3 {
                    proxy.go_away();
                    gone_at = Instant::now();
                    break;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    let error = loop {
        match tokio::time::timeout(PATIENCE, events.next())
            .await
            .expect("in time")
        {
            Some(Ok(Event::Stdout(line))) => seen.push(line.text),
            Some(Ok(_)) => {}
            Some(Err(error)) => break error,
            None => panic!("the stream ended without an error"),
        }
    };
    let waited = gone_at.elapsed();
    assert!(matches!(error, Error::GaveUp { .. }), "{error:?}");
    assert!(
        matches!(error.root(), Error::Unreachable { .. }),
        "{error:?}"
    );
    assert!(
        waited >= BOUND / 2 && waited < BOUND + Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(
        seen,
        (1..=seen.len()).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert!(events.next().await.is_none(), "an error ends the stream");
}

#[tokio::test]
async fn execdctl_gives_up_with_a_clear_error_and_its_own_status() {
    let host = Host::start(&[]).await;
    let proxy = Proxy::start(&host.addr, None).await;
    let mut child = execdctl(&[
        "--url",
        &proxy.url,
        "--retry-for",
        "2s",
        "run",
        "-c",
        "--",
        SLOW_200,
    ])
    .spawn()
    .expect("spawn execdctl");
    let stdout = child.stdout.take().expect("stdout");
    let (first, reader) = first_line(stdout).await;
    proxy.go_away();
    let gone_at = Instant::now();
    let out = rest(child, reader).await;
    let waited = gone_at.elapsed();
    assert_eq!(out.code(), 245, "{out:?}");
    assert!(waited < BOUND + Duration::from_secs(3), "{waited:?}");
    let notes = out.notes();
    assert!(
        notes.len() == 1
            && notes[0].contains("could not get it back within")
            && notes[0].contains("cannot reach the host"),
        "{notes:?}"
    );
    let mut lines = vec![first.trim_end().to_string()];
    lines.extend(out.stdout_lines().iter().map(|l| l.to_string()));
    assert_eq!(
        lines,
        (1..=lines.len()).map(|i| i.to_string()).collect::<Vec<_>>()
    );
}

/// A policy that failed (here: the default policy over a 2 MiB memory cap)
/// is the typed `PolicyFailed`, from `attach` or the stream's first event,
/// not a retry loop.
#[tokio::test]
async fn a_failed_policy_is_the_typed_policy_failed_error() {
    let host = Host::start(&["--policy-memory-mb", "2"]).await;
    let client = host.client();
    let id = client
        .spawn(Run::shell("seq 1 600000"))
        .await
        .expect("spawn");
    eventually("the command to finish", || {
        let client = client.clone();
        let id = id.clone();
        async move { client.status(&id).await.is_ok_and(|s| !s.running) }
    })
    .await;
    let result = match client.attach(&id, 0).await {
        Ok(mut events) => events.next().await.and_then(|e| e.err()),
        Err(e) => Some(e),
    };
    assert!(
        matches!(result, Some(Error::PolicyFailed { .. })),
        "{result:?}"
    );
}
