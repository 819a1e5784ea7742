//! A command's process group, and how the host signals it safely.
//!
//! A group outlives its leader: `sleep 60 &` leaves a member behind when
//! the shell exits. To signal such a group by its id (the leader's pid)
//! without ever hitting an unrelated group that reused the number, the host
//! does not reap the leader when it exits: it only notes the exit status
//! (`waitid` with `WNOWAIT`). While the leader is an unreaped zombie, the
//! kernel cannot hand its pid, and so the group id, to another process.
//! The leader is reaped ("released") only when no live member is left (a
//! scan of `/proc`), or at host shutdown after the group was killed. Every
//! signal is sent under the same lock as the release, so no signal can
//! follow it.
//!
//! Where the host may create cgroups, a group also has the command's
//! cgroup (see `cgroup`): SIGKILL reaches what left the group with
//! `setsid` through it, and the group is not done until the cgroup is
//! empty.

use std::collections::HashSet;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::Child;

use super::cgroup::Cgroup;

/// How often the exit of a leader is polled for where `pidfd_open` is not
/// available (Linux before 5.3, or a seccomp filter that refuses it).
const EXIT_POLL: Duration = Duration::from_millis(10);

pub struct ProcessGroup {
    /// The group id: the leader's pid.
    pgid: i32,
    /// The leader, unreaped until released; `None` once released.
    leader: Mutex<Option<Child>>,
    /// The leader has exited (and is a zombie until released).
    leader_exited: AtomicBool,
    /// The command's cgroup, if it has one; `None` once removed.
    cgroup: Mutex<Option<Cgroup>>,
}

impl ProcessGroup {
    /// Takes charge of a child spawned as the leader of its own group, in
    /// `cgroup` if it has one. `None` if the child has no pid (it was
    /// already reaped).
    pub fn new(leader: Child, cgroup: Option<Cgroup>) -> Option<ProcessGroup> {
        let pgid = i32::try_from(leader.id()?).ok()?;
        Some(ProcessGroup {
            pgid,
            leader: Mutex::new(Some(leader)),
            leader_exited: AtomicBool::new(false),
            cgroup: Mutex::new(cgroup),
        })
    }

    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// Sends `signal` to every process of the group; false if the group was
    /// released (nothing of it is left to signal).
    /// With a cgroup, its processes get the signal too (SIGKILL through
    /// `cgroup.kill`), also after the group itself was released.
    pub fn signal(&self, signal: i32) -> bool {
        let leader = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: kill(2) with a negative pid signals a process group; it
        // has no memory-safety preconditions. The group id cannot have been
        // reused: its leader is unreaped (see the module docs).
        let to_group = leader.is_some() && unsafe { libc::kill(-self.pgid, signal) == 0 };
        let to_cgroup = self.cgroup().as_ref().is_some_and(|cgroup| {
            if signal == libc::SIGKILL {
                cgroup.kill()
            } else {
                cgroup.signal_each(signal, to_group.then_some(self.pgid))
            }
        });
        to_group || to_cgroup
    }

    fn cgroup(&self) -> std::sync::MutexGuard<'_, Option<Cgroup>> {
        self.cgroup.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes the cgroup if it is empty; true if there is none left.
    /// `wait`: how long to wait for a killed one to empty.
    pub fn remove_cgroup(&self, wait: Duration) -> bool {
        let mut cgroup = self.cgroup();
        let removed = cgroup.as_ref().is_none_or(|c| {
            if wait.is_zero() {
                c.remove()
            } else {
                c.remove_when_empty(wait)
            }
        });
        if removed {
            *cgroup = None;
        }
        removed
    }

    /// Waits for the leader to exit, and returns its status, without
    /// reaping it.
    pub async fn leader_exit(&self) -> ExitStatus {
        let status = match pidfd(self.pgid) {
            Some(fd) => {
                // A pidfd turns readable when its process exits.
                // SAFETY: the OwnedFd stays open, unchanged, inside the
                // AsyncFd for the AsyncFd's whole life.
                if let Ok(fd) = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                    let _ = fd.readable().await;
                }
                poll_exit(self.pgid).await
            }
            None => poll_exit(self.pgid).await,
        };
        self.leader_exited.store(true, Ordering::Release);
        status
    }

    /// Whether the leader has exited: from then on the group may empty out.
    pub fn leader_exited(&self) -> bool {
        self.leader_exited.load(Ordering::Acquire)
    }

    /// Whether the group has been released and its cgroup (if any)
    /// removed: nothing of the command is left to signal.
    pub fn released(&self) -> bool {
        self.leader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
            && self.cgroup().is_none()
    }

    /// Reaps the leader: from now on the group is never signalled again.
    /// Only for a leader that has exited.
    /// The cgroup goes too if it is empty; one that still holds a process
    /// keeps the group listed (see `released`) until it empties.
    pub fn release(&self) {
        self.remove_cgroup(Duration::ZERO);
        let mut leader = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut child) = leader.take()
            && !matches!(child.try_wait(), Ok(Some(_)))
        {
            // Not reaped yet (it cannot be running: the caller saw it
            // exit): tokio's orphan queue reaps a dropped child.
            tracing::debug!(pgid = self.pgid, "leader not reaped at release");
        }
    }
}

/// A pidfd for `pid`, where the kernel has them.
fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the fd was just opened and is owned by nothing else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The exit status of the exited (or exiting) child `pid`, left unreaped.
async fn poll_exit(pid: i32) -> ExitStatus {
    loop {
        match peek_exit(pid) {
            Ok(Some(status)) => return status,
            Ok(None) => tokio::time::sleep(EXIT_POLL).await,
            Err(e) => {
                // ECHILD: it is not our child any more (reaped elsewhere).
                tracing::error!(pid, "cannot wait for the command: {e}");
                return ExitStatus::from_raw(libc::SIGKILL);
            }
        }
    }
}

/// `waitid(WNOWAIT)`: the status of `pid` if it has exited, leaving it a
/// zombie so that its pid stays taken.
fn peek_exit(pid: i32) -> std::io::Result<Option<ExitStatus>> {
    // SAFETY: siginfo_t is plain data; zeroed is a valid value, and it is
    // how waitid reports "not exited yet" with WNOHANG.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOWAIT | libc::WNOHANG;
    // SAFETY: waitid writes into the siginfo_t we own.
    let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(None);
        }
        return Err(e);
    }
    // SAFETY: after a successful waitid these fields are set (si_pid 0
    // means nothing has exited yet).
    let (exited_pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if exited_pid == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED => ExitStatus::from_raw((status & 0xff) << 8),
        // Killed or dumped core: the raw wait status is the signal number.
        _ => ExitStatus::from_raw(status & 0x7f),
    }))
}

/// The group ids that still have a live (not zombie) member other than
/// their leader, among `pgids`. `None` if `/proc` cannot be read.
pub fn with_members(pgids: &HashSet<i32>) -> Option<HashSet<i32>> {
    let mut alive = HashSet::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pgids.contains(&pid) {
            // A leader: an unreaped zombie, or still running.
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // exited meanwhile
        };
        if let Some((state, pgrp)) = state_and_pgrp(&stat)
            && state != 'Z'
            && pgids.contains(&pgrp)
        {
            alive.insert(pgrp);
        }
    }
    Some(alive)
}

/// When a process started, in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`): with the boot id, what tells a pid from a later
/// process that reused the number.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    start_ticks_of(&stat)
}

fn start_ticks_of(stat: &str) -> Option<u64> {
    // Fields from the state (field 3) on: the start time is field 22.
    fields_after_name(stat)?.nth(22 - 3)?.parse().ok()
}

/// This boot of the machine: start times count from it. Read once: it
/// cannot change while the host runs, and every command start and every
/// recovered record asks.
pub fn boot_id() -> Option<String> {
    static BOOT_ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            Some(id.trim().to_string())
        })
        .clone()
}

/// Who led a process group, so that a later host can find the group again
/// without hitting another that reused the number.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Leader {
    pub pgid: i32,
    pub start_ticks: u64,
    pub boot_id: String,
}

impl Leader {
    /// The leader `pid` as it is now; `None` if `/proc` cannot tell.
    pub fn of(pid: i32) -> Option<Leader> {
        Some(Leader {
            pgid: pid,
            start_ticks: start_ticks(pid)?,
            boot_id: boot_id()?,
        })
    }

    /// SIGKILLs what is left of this group, which a host that died left
    /// behind (its pipes' reader is gone). Only the same group: after a
    /// reboot nothing of it can be left; a live process with the leader's
    /// pid but another start time means the number was reused, and its
    /// group is not this one. With the leader gone, members still in the
    /// group id are this group's: the kernel does not hand out a number
    /// that is still some group's id. True if a signal was sent.
    pub fn kill_leftovers(&self) -> bool {
        if boot_id().as_deref() != Some(self.boot_id.as_str()) || self.pgid <= 1 {
            return false;
        }
        let ours = match start_ticks(self.pgid) {
            Some(ticks) => ticks == self.start_ticks,
            None => with_members(&HashSet::from([self.pgid]))
                .is_some_and(|alive| alive.contains(&self.pgid)),
        };
        // SAFETY: kill(2) has no memory-safety preconditions; the group
        // was checked to be the recorded one just above.
        ours && unsafe { libc::kill(-self.pgid, libc::SIGKILL) == 0 }
    }
}

/// The fields of a `/proc/<pid>/stat` line after the command name, which
/// is in parentheses and may hold anything: counted from the last `)`.
fn fields_after_name(stat: &str) -> Option<std::str::SplitAsciiWhitespace<'_>> {
    Some(stat[stat.rfind(')')? + 1..].split_ascii_whitespace())
}

/// The state and process group fields of a `/proc/<pid>/stat` line.
fn state_and_pgrp(stat: &str) -> Option<(char, i32)> {
    let mut fields = fields_after_name(stat)?;
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_odd_command_name() {
        let stat = "4242 (a) b (c)) S 1 4240 4240 0 -1 4194560 99 0 0 0";
        assert_eq!(state_and_pgrp(stat), Some(('S', 4240)));
        assert_eq!(state_and_pgrp("garbage"), None);
        assert_eq!(state_and_pgrp("1 (x) Z"), None);
    }

    #[test]
    fn start_time_of_this_process() {
        let stat = "4242 (a) b (c)) S 1 4240 4240 0 -1 4194560 99 0 0 0 0 0 0 0 20 0 1 0 123456 0";
        assert_eq!(start_ticks_of(stat), Some(123456));
        assert_eq!(start_ticks_of("4242 (x) S 1"), None);
        let me = std::process::id() as i32;
        assert!(start_ticks(me).is_some());
        assert_eq!(start_ticks(me), start_ticks(me));
        assert!(boot_id().is_some_and(|id| !id.is_empty()));
    }

    #[test]
    fn a_leader_from_another_boot_is_never_signalled() {
        let me = std::process::id() as i32;
        let mut leader = Leader::of(me).unwrap();
        leader.boot_id = "another boot".into();
        assert!(!leader.kill_leftovers());
        let mut reused = Leader::of(me).unwrap();
        reused.start_ticks += 1;
        assert!(
            !reused.kill_leftovers(),
            "same pid, other start time: not ours"
        );
    }
}
