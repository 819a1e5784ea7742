//! The host's state directory: where background output and the policies'
//! per-command directories live. Private to the host's user, and never one
//! another user prepared.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How many fresh names are tried before giving up (each is 48 random bits;
/// a clash means someone is squatting names).
const FRESH_TRIES: usize = 16;

pub struct StateDir {
    path: PathBuf,
    /// Made by this host for itself: removed when dropped.
    owned: bool,
    /// The operator's directory is this host's while it holds this lock.
    _lock: Option<std::fs::File>,
}

/// The lock file in an operator's state directory.
pub const LOCK_FILE: &str = "execd-host.lock";

impl StateDir {
    /// A fresh private directory (0700) under the system temp dir, with an
    /// unpredictable name, removed when this value is dropped. An existing
    /// directory is never reused: one an attacker created in advance would
    /// let them read and forge the output the host serves.
    ///
    /// Fresh directories are locked as given ones are, so that the dirs of
    /// hosts that died without cleaning up (SIGKILL, OOM) are told from
    /// live ones: those are removed here first (see [`sweep_stale`]).
    pub fn fresh() -> Result<StateDir, String> {
        let parent = std::env::temp_dir();
        sweep_stale(&parent);
        let mut last = None;
        for _ in 0..FRESH_TRIES {
            let mut bytes = [0u8; 6];
            getrandom::fill(&mut bytes).map_err(|e| format!("no random numbers: {e}"))?;
            let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let path = parent.join(format!("{FRESH_PREFIX}{name}"));
            match private_dir_builder(false).create(&path) {
                Ok(()) => {
                    let lock = match lock_fresh(&path) {
                        Ok(lock) => lock,
                        Err(e) => {
                            let _ = std::fs::remove_dir_all(&path);
                            return Err(e);
                        }
                    };
                    return Ok(StateDir {
                        path,
                        owned: true,
                        _lock: Some(lock),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(format!(
                        "cannot create a state directory in {}: {e}",
                        parent.display()
                    ));
                }
            }
        }
        Err(format!(
            "cannot create a fresh state directory in {}: {}",
            parent.display(),
            last.map_or_else(String::new, |e| e.to_string())
        ))
    }

    /// The operator's directory, created (0700) if missing, kept at exit.
    /// Refused if it is not a directory, belongs to another user, other
    /// users may write to it, or another live host holds it (a lock held
    /// for this host's life: two hosts would hand out each other's logs).
    pub fn given(path: &Path) -> Result<StateDir, String> {
        let shown = path.display();
        if !path.exists() {
            private_dir_builder(true)
                .create(path)
                .map_err(|e| format!("cannot create --state-dir {shown}: {e}"))?;
        }
        let meta = std::fs::metadata(path).map_err(|e| format!("--state-dir {shown}: {e}"))?;
        if !meta.is_dir() {
            return Err(format!("--state-dir {shown} is not a directory"));
        }
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(format!(
                "--state-dir {shown} belongs to uid {}, not to the host's uid {me}: whoever owns it can read and replace the output the host serves",
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "--state-dir {shown} is writable by other users (mode {:o}): they could replace the output the host serves; chmod 700 it",
                meta.mode() & 0o777
            ));
        }
        let lock = lock(path)?;
        Ok(StateDir {
            path: path.to_path_buf(),
            owned: false,
            _lock: Some(lock),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory outlives this host (the operator's own).
    pub fn kept(&self) -> bool {
        !self.owned
    }
}

/// Takes the directory's lock (`flock`, so it goes with the process, however
/// it dies), and writes this host's pid in the file for the next one's
/// message.
fn lock(dir: &Path) -> Result<std::fs::File, String> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(format!("cannot lock {}: {e}", path.display()));
        }
        let mut holder = String::new();
        let _ = file.take(32).read_to_string(&mut holder);
        let holder = holder.trim();
        let holder = if holder.is_empty() {
            String::new()
        } else {
            format!(" (pid {holder})")
        };
        return Err(format!(
            "another execd-host{holder} is using --state-dir {}: two hosts cannot share one",
            dir.display()
        ));
    }
    let pid = std::process::id().to_string();
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(pid.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), "cannot write the lock file: {e}");
    }
    Ok(file)
}

/// The prefix of a fresh directory's name; 12 hex digits follow.
const FRESH_PREFIX: &str = "execd-host-";

/// A fresh directory's lock file. Not [`LOCK_FILE`]: an operator's
/// directory that happens to have a fresh one's name is kept for the next
/// host, never swept.
const FRESH_LOCK_FILE: &str = "execd-host.fresh.lock";

/// Locks a fresh directory. The lock file is made and locked under another
/// name, then renamed into place: a sweep by another host never sees it
/// unlocked, so never takes a live host's directory for a dead one's.
fn lock_fresh(dir: &Path) -> Result<std::fs::File, String> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let making = dir.join(".execd-host.lock.new");
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&making)
        .map_err(|e| format!("cannot create the lock file {}: {e}", making.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("cannot lock {}: {e}", making.display()));
    }
    let _ = file.write_all(std::process::id().to_string().as_bytes());
    std::fs::rename(&making, dir.join(FRESH_LOCK_FILE))
        .map_err(|e| format!("cannot put the lock file in {}: {e}", dir.display()))?;
    Ok(file)
}

/// Removes fresh directories under `parent` that a host which died left
/// behind: named as [`StateDir::fresh`] names them, a real directory (not
/// a link) of this user, private, with a lock file no live host holds
/// (the lock goes with its process, however it dies). A directory without
/// a lock file (an older host's) is left alone: nothing tells whether its
/// host is alive. Errors only skip a directory.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(suffix) = name.to_str().and_then(|n| n.strip_prefix(FRESH_PREFIX)) else {
            continue;
        };
        if suffix.len() != 12 || !suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o077 != 0 {
            continue;
        }
        if let Some(_held) = take_abandoned_lock(&path) {
            crate::exec::cgroup::Cgroups::clear_abandoned(&path);
            // Held while removing, so no other host's sweep races this one.
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed the state directory of a host that is gone")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot remove a dead host's state directory: {e}")
                }
            }
        }
    }
}

/// The lock of `dir`'s lock file, if the file is there and no one holds it.
fn take_abandoned_lock(dir: &Path) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        // Never through a link, nor blocking on a FIFO put there.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(FRESH_LOCK_FILE))
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return None;
    }
    Some(file)
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if self.owned
            && let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), "cannot remove the state directory: {e}");
        }
    }
}

/// A builder for directories only their owner may enter (0700).
pub fn private_dir_builder(recursive: bool) -> std::fs::DirBuilder {
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700).recursive(recursive);
    builder
}
