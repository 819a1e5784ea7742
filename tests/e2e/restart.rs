//! A host restarted on the state directory a previous one left (issue 11):
//! finished logs served again event for event, interrupted commands ended
//! with their terminal event, what they left running killed, one host per
//! directory, and clients that retry across the restart miss nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Event, Host, PATIENCE, Stream, TempDir, init_id, logged, try_request};
use crate::probes::{background, eventually, group_alive};

/// Every logged event of `id` from `after` on, as the JSON the host sent.
async fn events_after(host: &Host, id: &str, after: u64) -> Vec<Value> {
    let mut stream = host.resume(id, after).await;
    assert_eq!(stream.status, 200, "resume {id} after {after}");
    let events = stream.events().await;
    logged(&events, after).into_iter().map(|e| e.data).collect()
}

/// What a client can learn of a finished command: its status, every
/// event, and for a background one its `/logs` with the cursors.
#[derive(Debug, PartialEq)]
struct Seen {
    status: Value,
    events: Vec<Value>,
    logs: Option<(String, Option<String>, Option<String>)>,
}

async fn seen(host: &Host, id: &str, background: bool) -> Seen {
    let logs = if background {
        let r = host.call("GET", &format!("/command/{id}/logs"), "").await;
        assert_eq!(r.status, 200);
        Some((
            r.text(),
            r.header("EXECD-COMMANDS-TAIL-CURSOR").map(str::to_string),
            r.header("EXECD-COMMANDS-HEAD-CURSOR").map(str::to_string),
        ))
    } else {
        None
    };
    Seen {
        status: host.status(id).await,
        events: events_after(host, id, 0).await,
        logs,
    }
}

/// The pid a command printed first (`echo $$`): its process group.
async fn first_line_pid(stream: &mut Stream) -> u32 {
    let first = stream.next_event().await.expect("the pid line");
    first.text().parse().expect("a pid")
}

/// The state directory of a test, and the flags that put a host on it.
struct Kept {
    _dir: TempDir,
    path: String,
}

impl Kept {
    fn new(name: &str) -> Kept {
        let dir = TempDir::new(name);
        let path = dir.0.join("state").to_str().expect("utf-8").to_string();
        Kept { _dir: dir, path }
    }

    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--state-dir", self.path.as_str()];
        args.extend_from_slice(extra);
        args
    }
}

/// Many commands in every state, the host stopped by `signal`, a new host
/// on the same directory and port: what it serves.
async fn restart_after(signal: i32) {
    let kept = Kept::new(&format!("restart-{signal}"));
    let host = Host::start(&kept.args(&[])).await;
    let addr = host.addr.clone();

    // Finished: a failing foreground command with both pipes, a
    // background one whose output ends mid-line, and a long one.
    let mut stream = host
        .run(json!({"command": "seq 1 5000; echo oops >&2; exit 3"}))
        .await;
    let failed = init_id(&mut stream).await;
    stream.events().await;
    let bg = background(&host, "seq 1 3000; printf 'no newline'").await;
    host.wait_finished(&bg).await;
    let mut stream = host.run(json!({"command": "seq 1 200000"})).await;
    let long = init_id(&mut stream).await;
    stream.events().await;
    let mut before = HashMap::new();
    for (id, background) in [(&failed, false), (&bg, true), (&long, false)] {
        before.insert(id.clone(), seen(&host, id, background).await);
    }

    // Running: a foreground command with its reader connected, and a
    // background one that printed 100 lines.
    let mut live = host
        .run(json!({"command": "echo $$; echo started; sleep 60"}))
        .await;
    let running_fg = init_id(&mut live).await;
    let fg_group = first_line_pid(&mut live).await;
    assert_eq!(live.next_event().await.expect("started").text(), "started");
    let running_bg = background(&host, "echo $$; seq 1 100; sleep 60").await;
    let bg_group: u32 = loop {
        let status = host.status(&running_bg).await;
        assert_eq!(status["running"], true);
        let logs = host
            .call("GET", &format!("/command/{running_bg}/logs"), "")
            .await;
        if logs.text().lines().count() > 100 {
            break logs.text().lines().next().unwrap().parse().expect("a pid");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // A reader half-way through the long replay when the host goes.
    let mut midway = host.resume(&long, 0).await;
    let mut read = Vec::new();
    while read.len() < 50_000 {
        read.push(midway.next_event().await.expect("replay"));
    }

    let status = if signal == libc::SIGKILL {
        host.kill().await
    } else {
        host.terminate().await
    };
    println!("restart: first host ended with {status:?}");
    if signal == libc::SIGKILL {
        // Nothing stopped them: the new host must.
        assert!(!group_alive(fg_group).is_empty() && !group_alive(bg_group).is_empty());
    }

    let started = Instant::now();
    // At info, for its line about what it recovered.
    let host = Host::try_start_env(&kept.args(&["--listen", &addr]), &[("EXECD_LOG", "info")])
        .await
        .expect("the second host starts");
    println!("restart: second host up in {:?}", started.elapsed());

    // The reader continues where it was, by Last-Event-ID.
    read.extend(midway.events().await);
    let last = read.iter().filter_map(Event::eid).next_back().unwrap_or(0);
    let mut rest = host.resume_by(&long, last, true).await;
    let mut whole: Vec<Value> = read
        .into_iter()
        .filter(|e| e.eid().is_some())
        .map(|e| e.data)
        .collect();
    whole.extend(rest.events().await.into_iter().map(|e| e.data));
    assert_eq!(
        whole, before[&long].events,
        "the mid-replay reader got every event once"
    );

    // Finished logs: event for event, status and /logs as they were.
    for (id, background) in [(&failed, false), (&bg, true), (&long, false)] {
        let now = seen(&host, id, background).await;
        assert_eq!(now.status, before[id].status, "status of {id}");
        assert_eq!(now.logs, before[id].logs, "/logs of {id}");
        assert!(
            now.events == before[id].events,
            "events of {id} differ after the restart"
        );
        // From any cursor: the same suffix.
        for after in [1, 2500, before[id].events.len() as u64 - 1] {
            let suffix = events_after(&host, id, after).await;
            assert_eq!(
                suffix[..],
                before[id].events[after as usize..],
                "{id} after {after}"
            );
        }
        let end = host.resume(id, before[id].events.len() as u64).await;
        assert_eq!(end.status, 204, "a resume at the end of {id}");
    }

    // Interrupted commands: what they logged, then their terminal event.
    for (id, lines) in [(&running_fg, 2), (&running_bg, 101)] {
        let events = events_after(&host, id, 0).await;
        assert_eq!(events.len(), lines + 1, "{id}: {events:?}");
        let end = &events[lines];
        let status = host.status(id).await;
        assert_eq!(status["running"], false, "{status}");
        assert_eq!(status["exit_code"], -1, "{status}");
        assert_eq!(end["type"], "error");
        assert_eq!(end["error"]["evalue"], "-1");
        if signal == libc::SIGKILL {
            assert_eq!(end["error"]["ename"], "HostRestarted", "{end}");
            assert_eq!(end["reason"], "host-restarted", "{end}");
            assert!(end.get("signal").is_none(), "{end}");
        } else {
            // The stopping host ended them itself, and says so.
            assert_eq!(end["error"]["ename"], "HostShutdown", "{end}");
            assert_eq!(end["reason"], "host-shutdown", "{end}");
            assert_eq!(end["signal"], libc::SIGTERM, "{end}");
        }
        assert_eq!(status["reason"], end["reason"], "{status}");
        assert_eq!(status.get("signal"), end.get("signal"), "{status}");
    }
    // The connected foreground reader of the first host ended cleanly or
    // was cut; either way a resume ends it.
    drop(live);
    assert!(
        eventually(PATIENCE, || group_alive(fg_group).is_empty()
            && group_alive(bg_group).is_empty())
        .await,
        "the groups the first host left are gone"
    );
    let logs = host
        .call("GET", &format!("/command/{running_bg}/logs"), "")
        .await;
    assert_eq!(
        logs.text().lines().count(),
        101,
        "the interrupted command's /logs"
    );
    let log = host.stderr();
    let summary = log
        .lines()
        .find(|l| l.contains("recovered"))
        .unwrap_or_default();
    assert!(summary.contains("logs=5"), "{log}");
    let interrupted = if signal == libc::SIGKILL { 2 } else { 0 };
    assert!(
        summary.contains(&format!("interrupted={interrupted}")),
        "{log}"
    );

    // New commands run beside the recovered ones.
    let mut stream = host.run(json!({"command": "echo new"})).await;
    init_id(&mut stream).await;
    assert_eq!(stream.events().await[0].text(), "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_survive_a_sigkilled_host() {
    restart_after(libc::SIGKILL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_survive_a_sigtermed_host() {
    restart_after(libc::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_on_the_same_directory_is_refused() {
    let kept = Kept::new("restart-lock");
    let first = Host::start(&kept.args(&[])).await;
    let pid = first.pid().expect("pid");
    let err = Host::try_start(&kept.args(&[]))
        .await
        .err()
        .expect("a second host on the directory is refused");
    assert!(err.contains("another execd-host"), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    // The first one is unharmed, and once it is gone another may start.
    let mut stream = first.run(json!({"command": "echo still"})).await;
    init_id(&mut stream).await;
    first.kill().await;
    let second = Host::start(&kept.args(&[])).await;
    second.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_policies_recover_nothing_but_still_end_what_was_left() {
    let kept = Kept::new("restart-ring");
    let host = Host::start(&kept.args(&["--policy", "ring"])).await;
    let mut stream = host.run(json!({"command": "echo done"})).await;
    let finished = init_id(&mut stream).await;
    stream.events().await;
    let mut live = host.run(json!({"command": "echo $$; sleep 60"})).await;
    let running = init_id(&mut live).await;
    let group = first_line_pid(&mut live).await;
    host.kill().await;
    assert!(!group_alive(group).is_empty());

    let host = Host::start(&kept.args(&["--policy", "ring"])).await;
    for id in [&finished, &running] {
        host.call("GET", &format!("/command/status/{id}"), "")
            .await
            .assert_error(404, "COMMAND_NOT_FOUND");
    }
    assert!(
        eventually(PATIENCE, || group_alive(group).is_empty()).await,
        "the running command's group was killed"
    );
    let left: Vec<_> = std::fs::read_dir(&kept.path)
        .expect("state dir")
        .flatten()
        .map(|e| e.file_name().into_string().unwrap_or_default())
        .filter(|n| n.contains(&finished) || n.contains(&running))
        .collect();
    assert!(left.is_empty(), "their files went: {left:?}");
}

/// Clients that keep retrying through a SIGKILL and restart of the host
/// on the same port: each reads its command to the end, every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_clients_get_every_event_once_across_a_restart() {
    let kept = Kept::new("restart-chaos");
    let host = Host::start(&kept.args(&[])).await;
    let addr = host.addr.clone();
    // Some finished, some still printing when the host dies.
    let mut ids = Vec::new();
    for n in 0..6 {
        let command = if n % 2 == 0 {
            format!("seq 1 {}", 20_000 * (n + 1))
        } else {
            "for i in $(seq 1 400); do echo $i; sleep 0.01; done".to_string()
        };
        let mut stream = host.run(json!({ "command": command })).await;
        ids.push(init_id(&mut stream).await);
    }
    let addr = Arc::new(addr);
    let clients: Vec<_> = ids
        .iter()
        .map(|id| tokio::spawn(read_through_restarts(Arc::clone(&addr), id.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    host.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let host = Host::start(&kept.args(&["--listen", &addr])).await;
    for (n, client) in clients.into_iter().enumerate() {
        let events = tokio::time::timeout(PATIENCE * 2, client)
            .await
            .expect("client done in time")
            .expect("client");
        let (lines, end) = events.split_at(events.len() - 1);
        for (i, e) in lines.iter().enumerate() {
            assert_eq!(e["eid"], i as u64 + 1, "eids once, in order");
            assert_eq!(e["text"], (i + 1).to_string(), "line {i} of command {n}");
        }
        if n % 2 == 0 {
            assert_eq!(lines.len(), 20_000 * (n + 1), "command {n} whole");
            assert_eq!(end[0]["type"], "execution_complete");
        } else {
            // Cut by the host's death, at a whole line.
            assert!(lines.len() < 400, "command {n}");
            assert_eq!(end[0]["error"]["ename"], "HostRestarted", "{}", end[0]);
        }
    }
    drop(host);
}

/// Reads `id` to its terminal event from whatever host listens on `addr`,
/// reconnecting from the last eid read whenever the connection ends or no
/// host answers, and dropping it now and then on its own.
async fn read_through_restarts(addr: Arc<String>, id: String) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE * 2;
    let mut all: Vec<Value> = Vec::new();
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let after = all
            .last()
            .map_or(0, |e| e["eid"].as_u64().unwrap_or(0))
            .to_string();
        let path = format!("/command/{id}/resume");
        let Some(mut stream) = try_request(&addr, "GET", &path, &[("Last-Event-ID", &after)]).await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        assert_eq!(stream.status, 200, "resume {id} after {after}");
        let mut taken = 0;
        while let Some(event) = stream.next_event().await {
            assert_ne!(event.kind(), "gap", "{:?}", event.data);
            let terminal = event.is_terminal();
            all.push(event.data);
            if terminal {
                return all;
            }
            taken += 1;
            if taken == 3_000 + round * 1_000 {
                break; // a disconnect of its own
            }
        }
    }
    panic!("{id}: no terminal event after {} events", all.len());
}

/// Segment files torn, truncated, overwritten and joined by garbage while
/// no host runs: the next host starts, serves what is whole, says what is
/// missing with a `damaged` gap, and never an event that was not logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_logs_serve_what_is_whole() {
    let kept = Kept::new("restart-damage");
    // Small segments, so that each log has several files to damage.
    let small = ["--policy-config", "segment-bytes=65536"];
    let host = Host::start(&kept.args(&small)).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        let mut stream = host
            .run(json!({"command": format!("seq {} {}", n * 100_000 + 1, n * 100_000 + 40_000)}))
            .await;
        ids.push(init_id(&mut stream).await);
        stream.events().await;
    }
    let mut before = HashMap::new();
    for id in &ids {
        before.insert(id.clone(), events_after(&host, id, 0).await);
    }
    host.kill().await;

    let mut rng_state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |bound: u64| {
        // xorshift: reproducible damage, no dependency.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state % bound.max(1)
    };
    for (n, id) in ids.iter().enumerate() {
        let dir = std::path::Path::new(&kept.path).join(format!("{id}.log"));
        let mut segments: Vec<_> = std::fs::read_dir(&dir)
            .expect("log dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segments.sort();
        assert!(segments.len() > 2, "{id}: {segments:?}");
        let victim = &segments[rand(segments.len() as u64) as usize];
        let mut bytes = std::fs::read(victim).expect("segment");
        match n {
            // A torn tail of the last file.
            0 => {
                let last = segments.last().unwrap();
                let mut tail = std::fs::read(last).unwrap();
                tail.truncate(tail.len() - 1 - rand(tail.len() as u64 / 2) as usize);
                std::fs::write(last, tail).unwrap();
                continue;
            }
            // Bits flipped anywhere in a file, header included.
            1 | 2 => {
                for _ in 0..8 {
                    let at = rand(bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << rand(8);
                }
            }
            // A file cut short in the middle of the log.
            3 => bytes.truncate(rand(bytes.len() as u64) as usize),
            // A run of garbage over a stretch of a file.
            4 => {
                let at = rand(bytes.len() as u64) as usize;
                for b in bytes.iter_mut().skip(at).take(4096) {
                    *b = rand(256) as u8;
                }
            }
            // Garbage files beside the segments, and an empty segment.
            _ => {
                std::fs::write(dir.join("0000000999.seg"), b"EXECDSEG garbage").unwrap();
                std::fs::write(dir.join("notes.txt"), b"not a segment").unwrap();
                std::fs::write(dir.join("0000000998.seg"), b"").unwrap();
                continue;
            }
        }
        std::fs::write(victim, bytes).unwrap();
    }

    let host = Host::start(&kept.args(&small)).await;
    for id in &ids {
        let want = &before[id];
        let response = host.resume(id, 0).await;
        if response.status == 404 {
            // Nothing of it could be trusted: dropped, and said so.
            assert!(host.stderr().contains(id.as_str()), "{}", host.stderr());
            continue;
        }
        let mut response = response;
        assert_eq!(response.status, 200, "{id}");
        let events = response.events().await;
        let mut next = 1u64;
        for e in &events {
            if e.kind() == "gap" {
                assert_eq!(e.data["from_eid"], next, "{id}: {:?}", e.data);
                assert_eq!(e.data["reason"], "damaged", "{id}: {:?}", e.data);
                next = e.data["to_eid"].as_u64().expect("to_eid") + 1;
                continue;
            }
            let Some(eid) = e.eid() else { continue };
            assert_eq!(eid, next, "{id}: eids in order");
            next += 1;
            // Its terminal event too: the host wrote it down beside the
            // log, so damage to the log's files cannot change it.
            assert_eq!(
                &e.data,
                &want[eid as usize - 1],
                "{id}: eid {eid} is what was logged"
            );
        }
        assert!(events.last().is_some_and(Event::is_terminal), "{id} ends");
        assert_eq!(next as usize, want.len() + 1, "{id}: up to its own end");
    }
    // The host is unharmed.
    let mut stream = host.run(json!({"command": "echo fine"})).await;
    init_id(&mut stream).await;
    assert_eq!(stream.events().await[0].text(), "fine");
}

/// Retention counts from when a command ended, not from the restart: a log
/// whose retention ran out while no host served it is gone at once (a
/// resume at its end still gets 204), one with time left stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_counts_from_the_original_end() {
    let kept = Kept::new("restart-retention");
    let short = ["--policy-config", "retention-secs=2"];
    let host = Host::start(&kept.args(&short)).await;
    let mut stream = host.run(json!({"command": "echo old"})).await;
    let old = init_id(&mut stream).await;
    stream.events().await;
    host.kill().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let host = Host::start(&kept.args(&short)).await;
    host.call("GET", &format!("/command/status/{old}"), "")
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
    assert_eq!(
        host.resume(&old, 2).await.status,
        204,
        "its end is remembered"
    );
    assert!(
        eventually(PATIENCE, || !std::path::Path::new(&kept.path)
            .join(format!("{old}.log"))
            .exists())
        .await,
        "its files went"
    );
}

/// A log is reopened only by the policy that wrote it: another policy
/// (even one that reads the same files) is not handed files it did not
/// write, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_policy_does_not_reopen_a_log() {
    let kept = Kept::new("restart-other-policy");
    let host = Host::start(&kept.args(&[])).await;
    let mut stream = host.run(json!({"command": "echo mine"})).await;
    let id = init_id(&mut stream).await;
    stream.events().await;
    host.kill().await;
    let host = Host::start(&kept.args(&["--policy", "native-disk"])).await;
    host.call("GET", &format!("/command/status/{id}"), "")
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
    assert!(host.stderr().contains("written by"), "{}", host.stderr());
}

/// Every file and directory under `dir` whose mode lets anyone but the
/// owner in, with that mode.
fn not_private(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut open = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                open.push((entry.path(), mode));
            }
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    open
}

/// Recovery ends a command the previous host left running by writing its
/// terminal event, into a new segment where the log has none: that file
/// is as private as every other the host makes (issue 19, item 6).
/// Recovery runs before the host serves, on the thread that drives its
/// start, which is not one of the runtime's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_recovery_creates_are_private() {
    let kept = Kept::new("restart-private");
    let host = Host::start(&kept.args(&[])).await;
    let id = background(&host, "sleep 60").await;
    assert_eq!(host.status(&id).await["running"], true);
    host.kill().await;
    // The log as a host killed before the command's first write leaves it:
    // a directory with no segment in it, so the ending needs a new one.
    let log = std::path::Path::new(&kept.path).join(format!("{id}.log"));
    for entry in std::fs::read_dir(&log).expect("log dir").flatten() {
        std::fs::remove_file(entry.path()).expect("remove segment");
    }

    let host = Host::start(&kept.args(&[])).await;
    let status = host.wait_finished(&id).await;
    assert_eq!(status["exit_code"], -1, "{status}");
    let segments = std::fs::read_dir(&log).expect("log dir").count();
    assert!(segments > 0, "recovery wrote the ending to a new segment");
    let open = not_private(std::path::Path::new(&kept.path));
    assert!(open.is_empty(), "not 0600/0700: {open:?}");
}

/// The default `--disk-budget` counts the logs a previous host kept as the
/// host's own (issue 19, item 2): on a filesystem where they take most of
/// a quarter of the free space, a restart with the default keeps them
/// whole, where a budget of a quarter of what is left free would cut them
/// down to their oldest part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_budget_keeps_what_the_previous_host_kept() {
    let Some(fs) = crate::lossless::SmallFs::mount("restart-default-budget", "44m") else {
        return;
    };
    let state = fs.0.join("state");
    let state = state.to_str().expect("utf-8");
    let args = ["--state-dir", state];
    // About 9.9 MB on disk: under the first host's 11 MiB default, over
    // a quarter of what it leaves free.
    let lines = 1_000_000u64;
    let host = Host::start(&args).await;
    let mut stream = host
        .run(json!({ "command": format!("seq 1 {lines}") }))
        .await;
    let id = init_id(&mut stream).await;
    let events = logged(&stream.events().await, 0);
    assert_eq!(events.len() as u64, lines + 1, "the first host kept it all");
    host.terminate().await;

    let host = Host::start(&args).await;
    for after in [0, 1000] {
        let events = host.resume(&id, after).await.events().await;
        let gap = events.iter().find(|e| e.kind() == "gap");
        assert!(gap.is_none(), "after {after}: {:?}", gap.map(|g| &g.data));
        let events = logged(&events, after);
        assert_eq!(events.len() as u64, lines + 1 - after, "after {after}");
        let end = events.last().expect("terminal");
        assert_eq!(end.kind(), "execution_complete", "{:?}", end.data);
        assert_eq!(end.eid(), Some(lines + 1));
    }
    let status = host.status(&id).await;
    assert_eq!(status["exit_code"], 0, "{status}");
    host.terminate().await;
}
