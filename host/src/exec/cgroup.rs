//! A cgroup (v2) per command, where the host may create them under its
//! own: a process that calls `setsid` leaves the command's process group,
//! but not its cgroup, so DELETE, a timeout, shutdown and a restart still
//! reach it. Where the host may not (no cgroup2 mount, not root and not
//! delegated, a read-only `/sys/fs/cgroup`), commands run as before, in
//! their process group only, and the start-up log says so.
//!
//! Layout: `<the host's cgroup>/execd-host-<hash of the state dir>/<id>`.
//! Named after the state dir, so a host started again on a kept state dir
//! finds what the previous one left (after a SIGKILL) and kills it, and two
//! hosts with different state dirs never touch each other's commands.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a kill waits for a cgroup to empty before giving up on
/// removing its directory (the kernel kills asynchronously).
const EMPTY_WAIT: Duration = Duration::from_secs(2);

/// Where this host puts its commands' cgroups.
#[derive(Debug)]
pub struct Cgroups {
    root: PathBuf,
}

impl Cgroups {
    /// The host's cgroup directory for commands, created now; `Err` says
    /// why there is none. What a previous host on the same state dir left
    /// there is killed and removed.
    pub fn open(state_dir: &Path) -> Result<Cgroups, String> {
        let cgroups = Cgroups::of(state_dir)?;
        match std::fs::create_dir(&cgroups.root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => cgroups.clear_leftovers(),
            Err(e) => return Err(format!("cannot create {}: {e}", cgroups.root.display())),
        }
        if let Err(e) = cgroups.probe() {
            cgroups.close();
            return Err(format!("cannot move a new process into a cgroup: {e}"));
        }
        Ok(cgroups)
    }

    /// Where the commands' cgroups of a host on `state_dir` are.
    fn of(state_dir: &Path) -> Result<Cgroups, String> {
        let own = own_cgroup().ok_or("the host is not in a cgroup v2 hierarchy")?;
        let mount = cgroup2_mount().ok_or("no cgroup2 file system is mounted")?;
        let base = mount.join(own.trim_start_matches('/'));
        let root = base.join(format!("execd-host-{:016x}", fnv1a(state_dir)));
        Ok(Cgroups { root })
    }

    /// Kills and removes what a host that is gone left in the cgroups of
    /// `state_dir`, a fresh temporary directory no host will open again
    /// (see `state_dir`'s sweep): nothing else would ever end it.
    pub fn clear_abandoned(state_dir: &Path) {
        if let Ok(cgroups) = Cgroups::of(state_dir)
            && cgroups.root.is_dir()
        {
            cgroups.clear_leftovers();
            cgroups.close();
        }
    }

    /// Whether a child can join a cgroup between its fork and its exec, as
    /// every command will: a fork that joins a probe cgroup and exits.
    fn probe(&self) -> std::io::Result<()> {
        let cgroup = self.create_dir("probe")?;
        let entry = cgroup.entry();
        let joined = entry.and_then(|entry| {
            // SAFETY: the child calls only async-signal-safe functions
            // (write, _exit) before it exits; the parent waits for it.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let code = i32::from(join(entry.as_raw_fd()).is_err());
                unsafe { libc::_exit(code) };
            }
            if pid < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut status = 0;
            // SAFETY: waits for the child forked above.
            let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
            if waited == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::other("the kernel refused the move"))
            }
        });
        cgroup.remove_when_empty(EMPTY_WAIT);
        joined
    }

    /// A new cgroup for the command `id`; `None` (logged) if the kernel
    /// refuses it, and the command runs in its process group only.
    pub fn create(&self, id: &str) -> Option<Cgroup> {
        self.create_dir(id)
            .inspect_err(|e| tracing::warn!(id, "cannot create the command's cgroup: {e}"))
            .ok()
    }

    fn create_dir(&self, name: &str) -> std::io::Result<Cgroup> {
        let dir = self.root.join(name);
        std::fs::create_dir(&dir)?;
        Ok(Cgroup { dir })
    }

    /// Kills and removes every command cgroup a previous host left.
    fn clear_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let cgroup = Cgroup { dir: entry.path() };
                if cgroup.populated() {
                    tracing::info!(dir = %cgroup.dir.display(), "killing what a previous host's command left running");
                    cgroup.kill();
                }
                cgroup.remove_when_empty(EMPTY_WAIT);
            }
        }
    }

    /// Removes the host's directory, once its commands' are gone.
    pub fn close(&self) {
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// One command's cgroup.
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// The way in: its `cgroup.procs`, opened by the host (so the kernel
    /// checks the host's rights, not those of a command that switched its
    /// uid), for a child to [`join`] between its fork and its exec. A
    /// command is thus in its cgroup before its first instruction, and
    /// nothing it forks can be outside.
    pub fn entry(&self) -> std::io::Result<OwnedFd> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.dir.join("cgroup.procs"))?;
        Ok(file.into())
    }

    /// Whether any process is in it.
    pub fn populated(&self) -> bool {
        std::fs::read_to_string(self.dir.join("cgroup.events")).is_ok_and(|events| {
            events
                .lines()
                .any(|l| l.split_whitespace().eq(["populated", "1"]))
        })
    }

    /// SIGKILLs every process in it, escaped process groups included. True
    /// if it held any.
    pub fn kill(&self) -> bool {
        if !self.populated() {
            return false;
        }
        // `cgroup.kill` (Linux 5.14) kills atomically, forks in flight too.
        let killed = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.kill"))
            .and_then(|mut f| f.write_all(b"1"));
        if killed.is_err() {
            self.signal_each(libc::SIGKILL, None);
        }
        true
    }

    /// Sends `signal` to each process in it (as systemd does for a unit's
    /// SIGTERM), except those in the process group `signalled` (which just
    /// got it as a group: a second SIGTERM makes some programs skip their
    /// orderly exit). True if it held any.
    pub fn signal_each(&self, signal: i32, signalled: Option<i32>) -> bool {
        let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) else {
            return false;
        };
        let mut any = false;
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: getpgid(2) and kill(2) have no memory-safety
            // preconditions; the pid was a member of this cgroup just now.
            if pid > 1 && signalled.is_none_or(|g| unsafe { libc::getpgid(pid) } != g) {
                any |= unsafe { libc::kill(pid, signal) } == 0;
            }
        }
        any
    }

    /// Removes the directory if no process is left in it. True if it is
    /// gone.
    pub fn remove(&self) -> bool {
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    /// Waits (blocking, at most `wait`) for a killed cgroup to empty, then
    /// removes it.
    pub fn remove_when_empty(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.remove() {
                return true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(dir = %self.dir.display(), "a command's cgroup did not empty");
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is
/// `entry` ("0" names the writer). Async-signal-safe: for a child between
/// fork and exec.
pub fn join(entry: RawFd) -> std::io::Result<()> {
    // SAFETY: write(2) of a static one-byte buffer to a descriptor the
    // caller keeps open.
    if unsafe { libc::write(entry, b"0".as_ptr().cast(), 1) } == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The host's own cgroup v2 path, from `/proc/self/cgroup` (`0::/path`).
fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Where the cgroup2 file system is mounted, from `/proc/self/mountinfo`.
fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        // "<id> <parent> <maj:min> <root> <mount point> <options> ... - <fstype> ..."
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(unescape))?
    })
}

/// A mountinfo path: spaces and the like are written as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// FNV-1a of a path's bytes: a stable name for a state dir's cgroup.
fn fnv1a(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape(r"/sys/fs/cgroup"), PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(unescape(r"/a\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape(r"/a\04"), PathBuf::from(r"/a\04"));
        assert_eq!(unescape(r"\"), PathBuf::from(r"\"));
    }

    #[test]
    fn a_state_dir_always_gets_the_same_name() {
        assert_eq!(
            fnv1a(Path::new("/var/lib/x")),
            fnv1a(Path::new("/var/lib/x"))
        );
        assert_ne!(
            fnv1a(Path::new("/var/lib/x")),
            fnv1a(Path::new("/var/lib/y"))
        );
        assert_eq!(fnv1a(Path::new("")), 0xcbf2_9ce4_8422_2325);
    }
}
