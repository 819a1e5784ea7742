//! A cgroup per command (issue #20, item 12): a process that leaves its
//! command's process group with `setsid` is still ended by DELETE, a
//! timeout, the host's shutdown and a restart on the kept state dir. Runs
//! where the test itself may create a cgroup v2 (root, a writable cgroup2
//! mount); elsewhere each test says why it skips.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

/// The cgroup2 directory this test process is in, if it may create a
/// cgroup below it, as the host it starts will.
fn cgroups_here() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })?;
    let base = mount.join(own.trim_start_matches('/'));
    let probe = base.join(format!("execd-test-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    std::fs::remove_dir(&probe).ok()?;
    Some(mount)
}

macro_rules! need_cgroups {
    () => {
        match cgroups_here() {
            Some(mount) => mount,
            None => {
                eprintln!(
                    "skipped: this test process may not create a cgroup v2 (not root, or no writable cgroup2 mount), so neither may the host"
                );
                return;
            }
        }
    };
}

/// A command that leaves a `sleep 300` outside its process group (its pid
/// written to `pidfile`), then runs on for `then`.
fn escaping(pidfile: &Path, then: &str) -> String {
    format!(
        "setsid -f sh -c 'echo $$ > {}.tmp; mv {0}.tmp {0}; exec sleep 300'; {then}",
        pidfile.display()
    )
}

/// The escaped process's pid, once it has written it.
async fn escaped(pidfile: &Path) -> i32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "the command never escaped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `pid` is a live process (a zombie is dead: it only waits for
/// its parent, here init, to reap it).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The escaped process sits in the command's own cgroup (and left its
/// group): the directory of that cgroup.
fn command_cgroup(mount: &Path, pid: i32, id: &str) -> PathBuf {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("its cgroup");
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line");
    assert!(
        path.ends_with(&format!("/{id}")) && path.contains("/execd-host-"),
        "the escaped process is in {path}, not its command's cgroup"
    );
    let pgid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = &s[s.rfind(')')? + 1..];
            after.split_whitespace().nth(2)?.parse::<i32>().ok()
        });
    assert_eq!(pgid, Some(pid), "setsid made it a group of its own");
    mount.join(path.trim_start_matches('/'))
}

/// A command that left a process outside its process group, running.
struct Escaped {
    id: String,
    /// The escaped process.
    pid: i32,
    /// The command's cgroup, which holds it.
    cgroup: PathBuf,
    stream: Stream,
    _reap: Reap,
}

/// Starts [`escaping`] (its pid written to `pidfile`, then `then`) with
/// the request fields `more`, and waits for it to escape: it sits in its
/// command's cgroup, outside its group.
async fn escape(
    host: &Host,
    mount: &Path,
    pidfile: &Path,
    then: &str,
    mut more: serde_json::Value,
) -> Escaped {
    more["command"] = escaping(pidfile, then).into();
    let mut stream = host.run(more).await;
    let id = init_id(&mut stream).await;
    let pid = escaped(pidfile).await;
    let _reap = Reap(pid);
    let cgroup = command_cgroup(mount, pid, &id);
    Escaped {
        id,
        pid,
        cgroup,
        stream,
        _reap,
    }
}

/// Kills what a failed test leaves running.
struct Reap(i32);

impl Drop for Reap {
    fn drop(&mut self) {
        if alive(self.0) {
            // SAFETY: kill(2); the pid is a test's own escaped sleep.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_timeout_reach_a_process_that_left_the_group() {
    let mount = need_cgroups!();
    let dir = TempDir::new("cgroup-delete");
    let host = Host::start(&[]).await;

    // DELETE of a running background command.
    let pidfile = dir.0.join("delete.pid");
    let Escaped {
        id,
        pid,
        cgroup,
        stream: _stream,
        _reap,
    } = escape(
        &host,
        &mount,
        &pidfile,
        "sleep 30",
        json!({"background": true}),
    )
    .await;
    let deleted = host.call("DELETE", &format!("/command?id={id}"), "").await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    until("DELETE to end the escaped process", || !alive(pid)).await;
    until("the command's cgroup to be removed", || !cgroup.exists()).await;

    // A timeout, after the command itself ended at once.
    let pidfile = dir.0.join("timeout.pid");
    let Escaped {
        id: _,
        pid,
        cgroup,
        mut stream,
        _reap,
    } = escape(&host, &mount, &pidfile, "true", json!({"timeout": 1500})).await;
    stream.events().await;
    until("the timeout to end the escaped process", || !alive(pid)).await;
    until("the command's cgroup to be removed", || !cgroup.exists()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_a_restart_reach_a_process_that_left_the_group() {
    let mount = need_cgroups!();
    let dir = TempDir::new("cgroup-restart");
    let state = dir.0.join("state");
    let state_s = state.to_str().expect("utf-8").to_string();

    // An orderly shutdown ends it, and leaves no cgroup behind.
    let host = Host::start(&["--state-dir", &state_s]).await;
    let pidfile = dir.0.join("shutdown.pid");
    let Escaped {
        id: _,
        pid,
        cgroup,
        stream: _stream,
        _reap,
    } = escape(&host, &mount, &pidfile, "true", json!({"background": true})).await;
    let hosts = cgroup.parent().expect("the host's cgroup").to_path_buf();
    host.stop().await;
    assert!(!alive(pid), "shutdown ended the escaped process");
    assert!(!hosts.exists(), "the host removed its cgroups at shutdown");

    // A host SIGKILLed leaves it running; the next one on the same state
    // dir ends it.
    let host = Host::start(&["--state-dir", &state_s]).await;
    let pidfile = dir.0.join("restart.pid");
    let Escaped {
        id: _,
        pid,
        cgroup,
        stream: _stream,
        _reap,
    } = escape(
        &host,
        &mount,
        &pidfile,
        "sleep 30",
        json!({"background": true}),
    )
    .await;
    host.kill().await;
    assert!(alive(pid), "nothing ended it with the host");
    let host = Host::start(&["--state-dir", &state_s]).await;
    until("the next host to end the escaped process", || !alive(pid)).await;
    assert!(!cgroup.exists(), "and removed its cgroup");
    host.stop().await;
}

/// Commands by the hundred, some leaving a process behind in their cgroup
/// until DELETE: once they are gone, so are their cgroups, and the host's
/// own directory is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_leave_no_cgroup_behind() {
    let mount = need_cgroups!();
    let host = Host::start(&[]).await;
    // Where this host puts its commands' cgroups: the parent of one's.
    let mut stream = host.run(json!({"command": "cat /proc/self/cgroup"})).await;
    init_id(&mut stream).await;
    let events = stream.events().await;
    let own = events
        .iter()
        .find_map(|e| e.text().strip_prefix("0::"))
        .expect("a cgroup v2 line")
        .to_string();
    let hosts = mount
        .join(own.trim_start_matches('/'))
        .parent()
        .expect("the host's directory")
        .to_path_buf();
    assert!(
        hosts.to_string_lossy().contains("/execd-host-"),
        "{}",
        hosts.display()
    );
    for round in 0..10 {
        let mut ids = Vec::new();
        for n in 0..20 {
            let command = if n % 5 == 0 {
                "setsid -f sleep 300; echo left".to_string()
            } else {
                format!("echo {round}-{n}")
            };
            let mut stream = host
                .run(json!({"command": command, "background": true}))
                .await;
            ids.push(init_id(&mut stream).await);
        }
        for id in &ids {
            host.wait_finished(id).await;
            let deleted = host.call("DELETE", &format!("/command?id={id}"), "").await;
            assert!(matches!(deleted.status, 200 | 404), "{}", deleted.text());
        }
    }
    until("every command's cgroup to go", || {
        std::fs::read_dir(&hosts).is_ok_and(|entries| {
            entries
                .flatten()
                .all(|e| !e.file_type().is_ok_and(|t| t.is_dir()))
        })
    })
    .await;
    host.stop().await;
    assert!(!hosts.exists(), "the host removed its own directory");
}

/// A host on a fresh temporary state dir, SIGKILLed: no host will open
/// that dir again, so the next host's sweep of dead hosts' dirs ends what
/// its commands left in their cgroups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_hosts_temporary_dir_is_swept_with_its_cgroups() {
    let mount = need_cgroups!();
    let dir = TempDir::new("cgroup-sweep");
    let tmp = dir.0.join("tmp");
    std::fs::create_dir(&tmp).expect("tmp");
    let tmp_s = tmp.to_str().expect("utf-8").to_string();
    let host = Host::try_start_env(&[], &[("TMPDIR", &tmp_s)])
        .await
        .expect("the first host");
    let pidfile = dir.0.join("sweep.pid");
    let Escaped {
        id: _,
        pid,
        cgroup,
        stream: _stream,
        _reap,
    } = escape(
        &host,
        &mount,
        &pidfile,
        "sleep 30",
        json!({"background": true}),
    )
    .await;
    host.kill().await;
    assert!(alive(pid), "nothing ended it with the host");
    let host = Host::try_start_env(&[], &[("TMPDIR", &tmp_s)])
        .await
        .expect("the second host");
    until("the sweep to end the escaped process", || !alive(pid)).await;
    until("and to remove its cgroups", || {
        !cgroup.parent().expect("the dead host's").exists()
    })
    .await;
    host.stop().await;
}
