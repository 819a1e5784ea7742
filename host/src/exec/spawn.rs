//! Spawning a command: in a process group of its own, stdin from
//! `/dev/null`, its program found on its own `PATH`, from a thread that
//! keeps the umask the host was started with.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

use tokio::process::Child;

use super::cgroup::{self, Cgroup};
use crate::http::request::RunRequest;

/// The shell commands run under: `bash -c`, or `sh -c` where there is no bash.
pub fn shell() -> PathBuf {
    ["/bin/bash", "/usr/bin/bash"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

/// Environment variables the host reads secrets from, never passed on to
/// a command: a command run as another uid could use the token to run
/// one as root.
pub const SECRET_ENV: &[&str] = &["EXECD_ACCESS_TOKEN"];

/// The host's environment variables that hold the access token under
/// another name (orchestrators pass it twice), found at start by
/// [`hide_token`]: never passed on either.
static TOKEN_COPIES: OnceLock<Vec<std::ffi::OsString>> = OnceLock::new();

/// Keeps every variable of the host's environment whose value is `token`
/// from commands, whatever its name. Called once, when the host starts
/// with a token; a second call is ignored (one host per process).
pub fn hide_token(token: &str) {
    let copies = std::env::vars_os()
        .filter(|(_, value)| value.as_encoded_bytes() == token.as_bytes())
        .map(|(name, _)| name)
        .collect();
    let _ = TOKEN_COPIES.set(copies);
}

/// Whether a variable of the host's environment must not reach a command.
pub fn is_secret(name: &str) -> bool {
    SECRET_ENV.contains(&name)
        || TOKEN_COPIES
            .get()
            .is_some_and(|copies| copies.iter().any(|c| c == name))
}

/// Work for the spawner thread (see [`private_umask`]).
type SpawnJob = Box<dyn FnOnce() + Send>;

/// The thread commands are spawned from once [`private_umask`] is in
/// force: it keeps the umask the host was started with.
static SPAWNER: OnceLock<std::sync::mpsc::Sender<SpawnJob>> = OnceLock::new();

/// Makes every file and directory the runtime's threads create private
/// (umask 077), policies' files included (their WASI writes run on those
/// threads), while commands keep the umask the host was started with.
///
/// Call once, before the runtime starts, and run
/// [`private_thread_umask`] on each of its threads (`on_thread_start`).
/// The umask is per process unless a thread unshares it, and a command
/// inherits the umask of the thread that spawned it; restoring it in the
/// child instead (a `pre_exec` hook) would make every spawn a full
/// `fork` of the host, several milliseconds with many policy instances
/// mapped, where `posix_spawn` costs a fraction of that. So commands are
/// spawned from one thread started here, which keeps the process's umask.
pub fn private_umask() -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    // Several: a spawn waits for the child's exec, and a child that joins
    // its cgroup first waits on the kernel's migration lock for some
    // milliseconds; migrations that overlap share that wait.
    for n in 0..SPAWNERS {
        let rx = std::sync::Arc::clone(&rx);
        std::thread::Builder::new()
            .name(format!("command-spawner-{n}"))
            .spawn(move || {
                loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })?;
    }
    let _ = SPAWNER.set(tx);
    Ok(())
}

/// Threads that spawn commands (see [`private_umask`]).
const SPAWNERS: usize = 4;

/// Gives the calling thread a umask of its own, 077 (see [`private_umask`]).
pub fn private_thread_umask() {
    // SAFETY: unshare(CLONE_FS) gives this thread its own copy of the
    // process's cwd, root and umask; umask(2) then changes only that copy.
    unsafe {
        if libc::unshare(libc::CLONE_FS) == 0 {
            libc::umask(0o077);
        } else {
            tracing::warn!(
                "cannot give a runtime thread its own umask: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Starts the command in a new process group, stdin from `/dev/null`:
/// its `argv` as it is, or else its `command` under `shell -c`. With a
/// `cgroup`, the child joins it before its exec; that costs a `fork`
/// where the spawn could otherwise use `posix_spawn`.
pub async fn spawn(
    shell: &PathBuf,
    request: &RunRequest,
    cgroup: Option<&Cgroup>,
) -> std::io::Result<Child> {
    let mut cmd = match &request.argv {
        Some(argv) => {
            let (first, rest) = argv
                .split_first()
                .ok_or_else(|| std::io::Error::other("an empty argv"))?;
            let mut cmd = tokio::process::Command::new(program(first, request)?);
            // The program sees its name as given, not the path found.
            cmd.arg0(first).args(rest);
            cmd
        }
        None => {
            let mut cmd = tokio::process::Command::new(shell);
            cmd.arg("-c").arg(&request.command);
            cmd
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for name in SECRET_ENV {
        cmd.env_remove(name);
    }
    for name in TOKEN_COPIES.get().into_iter().flatten() {
        cmd.env_remove(name);
    }
    cmd.envs(&request.envs);
    if let Some(cwd) = &request.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(uid) = request.uid {
        cmd.uid(uid);
        cmd.gid(run_gid(uid, request.gid));
    }
    // Open until the spawn has returned (it moves with the spawn job,
    // should this future be dropped): the child writes to it.
    let entry = cgroup.map(Cgroup::entry).transpose()?;
    if let Some(fd) = entry.as_ref().map(AsRawFd::as_raw_fd) {
        // SAFETY: the hook calls only write(2) (async-signal-safe), on a
        // descriptor that stays open until the spawn has returned.
        unsafe {
            cmd.pre_exec(move || cgroup::join(fd));
        }
    }
    let Some(spawner) = SPAWNER.get() else {
        return cmd.spawn();
    };
    let runtime = tokio::runtime::Handle::current();
    let (done, spawned) = tokio::sync::oneshot::channel();
    let job: SpawnJob = Box::new(move || {
        // Tokio registers the child with the runtime's process driver.
        let _runtime = runtime.enter();
        let _ = done.send(cmd.spawn());
        drop(entry);
    });
    let gone = || std::io::Error::other("the command spawner thread is gone");
    spawner.send(job).map_err(|_| gone())?;
    spawned.await.map_err(|_| gone())?
}

/// The file an argv's program names: a path (relative ones from the
/// command's cwd), or a bare name searched in the absolute entries of the
/// child's `PATH`. Resolved here rather than by the spawn: std falls back
/// from `posix_spawn` to a full `fork` when a command's own `PATH` must be
/// searched, and a name found nowhere can be answered with a clear 400.
fn program(name: &str, request: &RunRequest) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        let path = PathBuf::from(name);
        return Ok(match &request.cwd {
            Some(cwd) if path.is_relative() => cwd.join(path),
            _ => path,
        });
    }
    let path = match request.envs.get("PATH") {
        Some(path) => Some(path.clone()),
        None => std::env::var("PATH").ok(),
    }
    .unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "`{name}` is not an executable file in any directory of the command's PATH"
                ),
            )
        })
}

/// The group a command run as `uid` runs as: `gid` when given, else the
/// user's primary group, else the number `uid` itself.
pub fn run_gid(uid: u32, gid: Option<u32>) -> u32 {
    gid.or_else(|| primary_gid(uid)).unwrap_or(uid)
}

/// The primary group of `uid` from the passwd database.
fn primary_gid(uid: u32) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2)?.parse::<u32>().ok()? == uid).then(|| fields.get(3)?.parse().ok())?
    })
}
