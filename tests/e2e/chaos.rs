//! Chaos: many commands at once, each mixing stdout and stderr, read by
//! clients that disconnect at random points and resume alternately by
//! `after_eid` and `Last-Event-ID`. Every command's output must arrive
//! exactly once, in order, ending in its right terminal event; a very slow
//! reader beside them gets everything and slows no one; a stopped and
//! late host still sends each line already in the pipe whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;

use crate::harness::*;

/// Lines per chaos command.
const LINES: usize = 300;

/// A command that writes `LINES` lines, every fifth to stderr, with small
/// random sleeps, and exits with `code`.
fn script(n: usize, code: i32) -> String {
    format!(
        "for i in $(seq 1 {LINES}); do \
           if [ $((i % 5)) = 0 ]; then echo e{n}-$i >&2; else echo o{n}-$i; fi; \
           if [ $((i % 25)) = 0 ]; then sleep 0.0$((RANDOM % 6)); fi; \
         done; exit {code}"
    )
}

fn want(n: usize, pipe: &str) -> Vec<String> {
    (1..=LINES)
        .filter(|i| (i % 5 == 0) == (pipe == "stderr"))
        .map(|i| format!("{}{n}-{i}", if pipe == "stderr" { 'e' } else { 'o' }))
        .collect()
}

fn texts(events: &[Event], pipe: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind() == pipe)
        .map(|e| e.text().to_string())
        .collect()
}

/// Checks one command's whole delivered sequence: eids 1.. consecutive
/// (so nothing lost, repeated or reordered), per-pipe texts, the terminal.
fn check(n: usize, code: i32, events: &[Event]) {
    let logged = logged(events, 0);
    assert_eq!(texts(&logged, "stdout"), want(n, "stdout"), "command {n}");
    assert_eq!(texts(&logged, "stderr"), want(n, "stderr"), "command {n}");
    let end = logged.last().expect("terminal");
    if code == 0 {
        assert_eq!(end.kind(), "execution_complete", "command {n}");
    } else {
        assert_eq!(end.kind(), "error", "command {n}");
        assert_eq!(end.data["error"]["evalue"], code.to_string(), "command {n}");
        assert_eq!(
            end.data["error"]["traceback"][0],
            format!("exit status {code}")
        );
    }
}

/// Reads a command to its terminal event, disconnecting after a random
/// number of events (sometimes none) each time. Returns every event read
/// and the number of disconnects.
async fn read_with_disconnects(
    host: &Host,
    mut stream: Stream,
    id: &str,
    max_per_conn: usize,
    disconnects: &AtomicUsize,
) -> Vec<Event> {
    let mut all: Vec<Event> = Vec::new();
    let mut round = 0usize;
    loop {
        let take = rand::rng().random_range(0..=max_per_conn);
        for _ in 0..take {
            let Some(e) = stream.next_event().await else {
                break;
            };
            assert_ne!(e.kind(), "gap", "no gap with the default bounds");
            let terminal = e.is_terminal();
            all.push(e);
            if terminal {
                return all;
            }
        }
        drop(stream);
        disconnects.fetch_add(1, Ordering::Relaxed);
        round += 1;
        let pause = rand::rng().random_range(0..150u64);
        if pause < 30 {
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let after = all.iter().filter_map(Event::eid).next_back().unwrap_or(0);
        stream = host.resume_by(id, after, round.is_multiple_of(2)).await;
        assert_eq!(stream.status, 200, "resume {id} after {after}");
    }
}

/// Starts command `n` and reads it through disconnects.
async fn chaos_client(host: Arc<Host>, n: usize, disconnects: Arc<AtomicUsize>) -> Instant {
    let code = (n % 7) as i32;
    let mut stream = host.run(json!({ "command": script(n, code) })).await;
    let id = init_id(&mut stream).await;
    let events = read_with_disconnects(&host, stream, &id, 40, &disconnects).await;
    check(n, code, &events);
    Instant::now()
}

/// [`chaos_client`], counting itself in `done` when it has checked all.
async fn counted_client(
    host: Arc<Host>,
    n: usize,
    disconnects: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
) -> Instant {
    let at = chaos_client(host, n, disconnects).await;
    done.fetch_add(1, Ordering::SeqCst);
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_commands_random_disconnects_exactly_once() {
    let started = Instant::now();
    let host = Arc::new(Host::start(&[]).await);
    let disconnects = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|n| tokio::spawn(chaos_client(Arc::clone(&host), n, Arc::clone(&disconnects))))
        .collect();
    for task in tasks {
        task.await.expect("chaos client");
    }
    let disconnects = disconnects.load(Ordering::Relaxed);
    println!(
        "chaos: 50 commands x {LINES} lines, {disconnects} disconnects/resumes, all exactly once, in {:?}",
        started.elapsed()
    );
    assert!(disconnects >= 300, "hundreds of disconnects: {disconnects}");
    assert!(
        !host.stderr().contains("ERROR"),
        "host logged errors: {}",
        host.stderr()
    );
}

/// Lines of the command the slow reader follows: more than socket buffers
/// and the host's per-stream buffering hold, fewer than the ring keeps.
const SLOW_LINES: usize = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_very_slow_reader_gets_everything_and_slows_no_one() {
    let started = Instant::now();
    let host = Arc::new(Host::start(&[]).await);
    let disconnects = Arc::new(AtomicUsize::new(0));

    // The big command: ~7 MB, every tenth line on stderr, exit 3.
    let command = format!(
        "seq 1 {SLOW_LINES} | awk '{{ if ($1 % 10 == 0) {{ print \"e\" $1 > \"/dev/stderr\" }} \
         else {{ printf \"o%d-%0100d\\n\", $1, 0 }} }}'; exit 3"
    );
    let mut primary = host.run(json!({ "command": command })).await;
    let big = init_id(&mut primary).await;

    // The slow reader: one event per 100 ms, from the start, for 2 s and
    // until the fast readers are done (a bound of 20 s, should they wait on
    // it), then as fast as it can.
    let min_slow = Duration::from_secs(2);
    let max_slow = Duration::from_secs(20);
    let fast_finished = Arc::new(AtomicUsize::new(0));
    let mut slow = host.resume(&big, 0).await;
    assert_eq!(slow.status, 200);
    let slow_host = Arc::clone(&host);
    let slow_big = big.clone();
    let finished = Arc::clone(&fast_finished);
    let slow_task = tokio::spawn(async move {
        let began = Instant::now();
        let mut events = Vec::new();
        while began.elapsed() < min_slow
            || (finished.load(Ordering::SeqCst) < 21 && began.elapsed() < max_slow)
        {
            events.push(slow.next_event().await.expect("slow reader event"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Where everything stood when the slow phase ended.
        let slow_phase = began.elapsed();
        let slow_count = events.len();
        let fast_then = finished.load(Ordering::SeqCst);
        let big_running = slow_host.status(&slow_big).await["running"] == true;
        events.extend(slow.events().await);
        (
            events,
            slow_count,
            slow_phase,
            fast_then,
            big_running,
            Instant::now(),
        )
    });

    // Beside it: the big command's own fast reader, and 20 chaos commands
    // read through disconnects.
    let finished = Arc::clone(&fast_finished);
    let fast_primary = tokio::spawn(async move {
        let events = primary.events().await;
        finished.fetch_add(1, Ordering::SeqCst);
        (events, Instant::now())
    });
    let fast: Vec<_> = (0..20)
        .map(|n| {
            tokio::spawn(counted_client(
                Arc::clone(&host),
                n,
                Arc::clone(&disconnects),
                Arc::clone(&fast_finished),
            ))
        })
        .collect();
    let mut fast_done = started;
    for task in fast {
        fast_done = fast_done.max(task.await.expect("fast client"));
    }
    let (primary_events, primary_done) = fast_primary.await.expect("primary reader");
    fast_done = fast_done.max(primary_done);
    let (slow_events, slow_count, slow_phase, fast_then, big_running, slow_done) =
        slow_task.await.expect("slow reader");

    // Both readers of the big command got all of it, no gap, in order. A
    // line may arrive in two pieces when the pipe went quiet mid-line for
    // the host's partial-line delay (awk writes in blocks, and the machine
    // is busy), so the texts are compared per pipe, joined.
    let want_out: String = (1..=SLOW_LINES)
        .filter(|i| i % 10 != 0)
        .map(|i| format!("o{i}-{:0100}", 0))
        .collect();
    let want_err: String = (1..=SLOW_LINES)
        .filter(|i| i % 10 == 0)
        .map(|i| format!("e{i}"))
        .collect();
    let mut split = 0;
    for events in [&primary_events, &slow_events] {
        assert!(events.iter().all(|e| e.kind() != "gap"), "no gap");
        let logged = logged(events, 0);
        assert!(logged.len() > SLOW_LINES, "{} events", logged.len());
        split = split.max(logged.len() - SLOW_LINES - 1);
        assert!(
            logged
                .iter()
                .all(|e| e.is_terminal() || !e.text().is_empty()),
            "no empty pieces"
        );
        assert!(
            texts(&logged, "stdout").concat() == want_out,
            "stdout is every line once, in order"
        );
        assert!(
            texts(&logged, "stderr").concat() == want_err,
            "stderr is every line once, in order"
        );
        assert_eq!(logged.last().unwrap().data["error"]["evalue"], "3");
    }
    assert_eq!(
        primary_events.len(),
        slow_events.len(),
        "both readers got the same events"
    );
    // The fast readers and the big command were done while the slow reader
    // was still at one event per 100 ms.
    println!(
        "chaos with a slow reader: 21 fast commands done at {:?}, {} disconnects; \
         slow reader read {slow_count} events in its slow phase of {slow_phase:?}, all {} by {:?} \
         ({split} lines arrived in two pieces)",
        fast_done - started,
        disconnects.load(Ordering::Relaxed),
        slow_events.len(),
        slow_done - started,
    );
    assert!(
        !big_running,
        "the big command finished while its slow reader lagged"
    );
    assert_eq!(
        fast_then,
        21,
        "all 21 fast readers were done before the slow reader's slow phase \
         ({slow_phase:?}) ended; they finished at {:?}",
        fast_done - started
    );
    // It really was slow: one event per 100 ms at most, a small part of all.
    assert!(
        slow_count as u128 <= slow_phase.as_millis() / 100 + 1 && slow_count < 1000,
        "the slow reader read {slow_count} events in {slow_phase:?}"
    );
}

/// A host that wakes late, its partial-line timer long expired, while the
/// rest of the line is already in the pipe: output already there wins over
/// the timer, so no line is sent in pieces (the partial-line delay is for a
/// quiet pipe, not a slow host), and every byte arrives exactly once.
///
/// The host is stopped (SIGSTOP) for longer than the delay, again and
/// again, while it reads. The whole output is in the pipe (enlarged to
/// 1 MiB) before the host reads any of it, in one write, so the pipe is
/// never quiet while a line is unfinished, however busy the machine is
/// (the test this replaces wrote from a busy loop and failed whenever CI
/// descheduled that writer for 50 ms: the pipe really had gone quiet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_host_splits_no_line_already_in_the_pipe() {
    if !std::path::Path::new("/usr/bin/perl").exists() {
        println!("chaos/late: skipped (no /usr/bin/perl to enlarge the pipe)");
        return;
    }
    let started = Instant::now();
    let host = Host::start(&[]).await;
    let pid = host.pid().expect("host pid") as libc::pid_t;
    let lines = 15_000;
    let dir = TempDir::new("late-host");
    let go = dir.0.join("go");
    // F_SETPIPE_SZ (1031) to 1 MiB; every line in one write once the host
    // is first stopped (the file `go` says so), then wait (FIONREAD,
    // 0x541B, polled) until the host has read it all, so the drain after
    // the exit plays no part.
    let writer = format!(
        r#"my $size = fcntl(STDOUT, 1031, 1 << 20) or die "F_SETPIPE_SZ: $!";
for (1..3000) {{ last if -e $ENV{{GO}}; select(undef, undef, undef, 0.01); }}
-e $ENV{{GO}} or die "no go";
my $out = join "", map {{ sprintf("o%d-%050d\n", $_, 0) }} 1..{lines};
die "a pipe of $size bytes is too small" if $size < length $out;
syswrite(STDOUT, $out) == length $out or die "short write";
for (1..6000) {{
    my $queued = pack("L", 0);
    ioctl(STDOUT, 0x541B, $queued) or die "FIONREAD: $!";
    last if unpack("L", $queued) == 0;
    select(undef, undef, undef, 0.01);
}}"#
    );
    let mut stream = host
        .run(json!({
            "command": "exec perl -e \"$WRITER\"",
            "envs": { "WRITER": writer, "GO": go },
        }))
        .await;
    init_id(&mut stream).await;
    let done = Arc::new(AtomicBool::new(false));
    let stopper = std::thread::spawn({
        let done = Arc::clone(&done);
        move || {
            let mut stops = 0;
            while stops < 200 && !done.load(Ordering::Relaxed) {
                // SAFETY: signals to the host this test started.
                unsafe { libc::kill(pid, libc::SIGSTOP) };
                if stops == 0 {
                    std::fs::write(&go, "").expect("the go file");
                }
                std::thread::sleep(Duration::from_millis(80));
                unsafe { libc::kill(pid, libc::SIGCONT) };
                // Long enough for a read or two.
                std::thread::sleep(Duration::from_micros(500));
                stops += 1;
            }
            stops
        }
    });
    let events = stream.events().await;
    done.store(true, Ordering::Relaxed);
    let stops = stopper.join().expect("the stopper");
    let out = texts(&logged(&events, 0), "stdout");
    let want: Vec<String> = (1..=lines).map(|i| format!("o{i}-{:050}", 0)).collect();
    println!(
        "chaos/late: {lines} lines already in the pipe of a host stopped {stops} times: {} events, {:?}",
        out.len(),
        started.elapsed()
    );
    assert_eq!(
        texts(&logged(&events, 0), "stderr"),
        Vec::<String>::new(),
        "the writer complained"
    );
    assert!(
        out.concat() == want.concat(),
        "every byte exactly once, in order"
    );
    assert_eq!(
        out.len(),
        lines,
        "{} lines were sent in pieces though the rest was in the pipe",
        out.len().saturating_sub(lines)
    );
}
