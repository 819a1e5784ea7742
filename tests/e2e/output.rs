//! Output handling: interleaved pipes, long lines, odd bytes, many
//! commands at once, and pushing lines as soon as they are read.

use serde_json::json;

use crate::harness::*;

async fn run_to_end(host: &Host, command: &str) -> Vec<Event> {
    let mut stream = host.run(json!({ "command": command })).await;
    init_id(&mut stream).await;
    logged(&stream.events().await, 0)
}

fn texts<'a>(events: &'a [Event], kind: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e.kind() == kind)
        .map(Event::text)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_pipes_keep_consecutive_eids_and_per_pipe_order() {
    let host = Host::start(&[]).await;
    let events = run_to_end(
        &host,
        "for i in $(seq 1 5000); do echo out $i; echo err $i >&2; done",
    )
    .await;
    assert_eq!(events.len(), 10_001);
    let want_out: Vec<String> = (1..=5000).map(|i| format!("out {i}")).collect();
    let want_err: Vec<String> = (1..=5000).map(|i| format!("err {i}")).collect();
    assert_eq!(texts(&events, "stdout"), want_out);
    assert_eq!(texts(&events, "stderr"), want_err);
    assert_eq!(events.last().map(Event::kind), Some("execution_complete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200kb_line_without_newline_arrives_whole_in_64k_pieces() {
    let host = Host::start(&[]).await;
    let events = run_to_end(&host, "head -c 200000 /dev/zero | tr '\\0' x").await;
    let pieces = texts(&events, "stdout");
    assert!(
        pieces.iter().all(|p| p.len() <= 64 * 1024),
        "no piece over 64 KiB"
    );
    assert!(pieces.len() >= 4, "200 kB is at least 4 pieces");
    let whole: String = pieces.concat();
    assert_eq!(whole.len(), 200_000);
    assert!(whole.bytes().all(|b| b == b'x'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_terminators_and_empty_lines() {
    let host = Host::start(&[]).await;
    let events = run_to_end(&host, r"printf 'a\377b\n\nc\r\nd\re\n'; printf tail").await;
    assert_eq!(
        texts(&events, "stdout"),
        ["a\u{fffd}b", "\n", "c\r", "d\re", "tail"]
    );
    // JSON escapes keep control characters out of the SSE framing.
    let events = run_to_end(&host, r"printf 'x\033[1my\tz\000w\n'").await;
    assert_eq!(texts(&events, "stdout"), ["x\u{1b}[1my\tz\u{0}w"]);
}

/// A writer that pauses in the middle of a character (a throttled copy,
/// a progress display): the idle flush sends what came before it, and the
/// character arrives whole with the bytes after the pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_inside_a_character_splits_no_character() {
    let host = Host::start(&[]).await;
    let events = run_to_end(
        &host,
        r"printf 'price \342\202'; sleep 0.3; printf '\254 5\n'; printf '\360\237'; sleep 0.3; printf '\230\200\n'",
    )
    .await;
    let out = texts(&events, "stdout");
    assert_eq!(out.concat(), "price € 5😀", "{out:?}");
    assert!(
        out.iter().all(|t| !t.contains('\u{fffd}')),
        "no half character became U+FFFD: {out:?}"
    );
    assert!(
        out.len() >= 2,
        "the pause still sent the line's start on its own: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_commands() {
    let host = std::sync::Arc::new(Host::start(&[]).await);
    let mut tasks = Vec::new();
    for n in 0..100 {
        let host = std::sync::Arc::clone(&host);
        tasks.push(tokio::spawn(async move {
            let command = format!("for i in $(seq 1 50); do echo {n}-$i; done; exit $(({n} % 3))");
            let events = run_to_end(&host, &command).await;
            let want: Vec<String> = (1..=50).map(|i| format!("{n}-{i}")).collect();
            assert_eq!(texts(&events, "stdout"), want);
            let end = events.last().expect("terminal");
            if n % 3 == 0 {
                assert_eq!(end.kind(), "execution_complete");
            } else {
                assert_eq!(end.data["error"]["evalue"], (n % 3).to_string());
            }
        }));
    }
    for task in tasks {
        task.await.expect("command task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_are_pushed_while_the_command_runs() {
    let host = Host::start(&[]).await;
    let mut stream = host
        .run(json!({ "command": "echo first; sleep 3; echo second" }))
        .await;
    let id = init_id(&mut stream).await;
    let first = stream.next_event().await.expect("first line");
    assert_eq!(first.text(), "first");
    // Delivered while the command still sleeps, not at its end.
    assert_eq!(host.status(&id).await["running"], true);
    let rest = stream.events().await;
    assert_eq!(rest[0].text(), "second");
}
