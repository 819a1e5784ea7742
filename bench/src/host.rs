//! The host under test: a private copy of the release binary, started per
//! figure on a free loopback port and stopped with SIGTERM (which makes it
//! kill the commands it started), SIGKILL if it does not exit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long a host may take to print its address.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long a host may take to exit after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// The host binary and this one (whose `tick` mode is the latency
/// figures' child), copied so a rebuild during the bench cannot swap them.
pub struct Binary {
    pub path: PathBuf,
    pub source: PathBuf,
    pub bench: PathBuf,
    dir: PathBuf,
}

impl Binary {
    /// Copies `given`, or `execd-host` beside this executable (both are in
    /// `target/release` under `cargo run --release`).
    pub fn prepare(given: Option<PathBuf>) -> Result<Binary> {
        let me = std::env::current_exe()?;
        let source = match given {
            Some(path) => path,
            None => me
                .parent()
                .context("the bench executable has no directory")?
                .join("execd-host"),
        };
        if !source.is_file() {
            bail!(
                "no host binary at {}: run `cargo build --release -p execd-host` first",
                source.display()
            );
        }
        let dir = std::env::temp_dir().join(format!("execd-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let copy = |from: &Path, name: &str| {
            let to = dir.join(name);
            std::fs::copy(from, &to)
                .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
            Ok::<_, anyhow::Error>(to)
        };
        Ok(Binary {
            path: copy(&source, "execd-host")?,
            bench: copy(&me, "execd-bench")?,
            source,
            dir,
        })
    }
}

impl Binary {
    /// A path in the bench's private directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running host.
pub struct Host {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    /// Kept open so the host's stdout never breaks.
    _stdout: BufReader<ChildStdout>,
}

impl Host {
    /// Starts the host with `args` after `--listen 127.0.0.1:0`.
    pub async fn start(binary: &Path, args: &[String]) -> Result<Host> {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("EXECD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let pid = child.id().context("the host exited at once")?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = String::new();
        let read = tokio::time::timeout(START_LIMIT, stdout.read_line(&mut line)).await;
        let addr = match read {
            Ok(Ok(n)) if n > 0 => line
                .trim()
                .strip_prefix("listening on ")
                .and_then(|a| a.parse().ok()),
            _ => None,
        };
        let mut host = Host {
            child,
            addr: "127.0.0.1:0".parse()?,
            pid,
            _stdout: stdout,
        };
        match addr {
            Some(addr) => host.addr = addr,
            None => {
                host.stop().await;
                bail!("host {args:?} did not start (first line {line:?})");
            }
        }
        Ok(host)
    }

    /// Resident memory, KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Result<u64> {
        rss_of(self.pid)
    }

    /// Peak resident memory since start, KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid, "VmHWM:")
    }

    /// SIGTERM, then SIGKILL if the host has not exited in time.
    pub async fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        signal(self.pid, libc::SIGTERM);
        if tokio::time::timeout(STOP_LIMIT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

impl Drop for Host {
    /// A figure cut short by its time limit drops its host here.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        signal(self.pid, libc::SIGTERM);
        let deadline = std::time::Instant::now() + STOP_LIMIT;
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.start_kill();
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on the pid of a child we started and have not reaped.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Resident memory of `pid`, KiB (`VmRSS`).
pub fn rss_of(pid: u32) -> Result<u64> {
    proc_status_kib(pid, "VmRSS:")
}

fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}
