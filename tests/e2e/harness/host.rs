//! The host process: starting the real binary, reading its address and
//! stderr, signalling and stopping it.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use super::PATIENCE;

/// A running host, sent SIGTERM (by its own pid) when dropped, so it stops
/// its commands and removes its state directory.
pub struct Host {
    pub addr: String,
    /// The metrics listener's address, with `--metrics-listen`.
    pub metrics_addr: Option<String>,
    child: Child,
    pub token: Option<String>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling the child we spawned, by its pid.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
}

/// The binary `Host::start` runs: the daemon, or the one
/// `EXECD_E2E_HOST_BIN` names (the `embed` example: see `embedding`).
pub fn host_binary() -> std::path::PathBuf {
    std::env::var_os("EXECD_E2E_HOST_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_execd-host").into())
}

impl Host {
    pub async fn start(args: &[&str]) -> Host {
        Host::try_start(args)
            .await
            .unwrap_or_else(|e| panic!("host did not start: {e}"))
    }

    /// Starts a host; `Err` carries its stderr when it exits instead.
    pub async fn try_start(args: &[&str]) -> Result<Host, String> {
        Host::try_start_env(args, &[]).await
    }

    /// Starts a host with extra environment variables. It listens on a
    /// free loopback port unless `args` say `--listen`.
    pub async fn try_start_env(args: &[&str], env: &[(&str, &str)]) -> Result<Host, String> {
        Host::try_start_bin(&host_binary(), args, env).await
    }

    /// Starts `bin` (the daemon, or a program that embeds the host) as
    /// [`Host::try_start_env`] does.
    pub async fn try_start_bin(
        bin: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Host, String> {
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(bin)
            .args(listen)
            .args(args)
            .env_remove("EXECD_ACCESS_TOKEN")
            .env("EXECD_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let mut metrics_addr = None;
        let read = loop {
            line.clear();
            let read = tokio::time::timeout(PATIENCE, stdout.read_line(&mut line)).await;
            // `metrics on ADDR` comes first, with `--metrics-listen`.
            match line.strip_prefix("metrics on ") {
                Some(addr) if matches!(read, Ok(Ok(n)) if n > 0) => {
                    metrics_addr = Some(addr.trim().to_string());
                }
                _ => break read,
            }
        };
        match line.strip_prefix("listening on ") {
            Some(addr) if matches!(read, Ok(Ok(_))) => {
                let token = args
                    .windows(2)
                    .find(|w| w[0] == "--access-token")
                    .map(|w| w[1].to_string());
                // Drain stderr as it comes, so the host never blocks on it.
                let stderr = Arc::new(Mutex::new(String::new()));
                if let Some(pipe) = child.stderr.take() {
                    let sink = Arc::clone(&stderr);
                    tokio::spawn(async move {
                        let mut lines = BufReader::new(pipe).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
                            text.push_str(&line);
                            text.push('\n');
                        }
                    });
                }
                Ok(Host {
                    addr: addr.trim().to_string(),
                    metrics_addr,
                    child,
                    token,
                    stderr,
                })
            }
            _ => {
                let status = tokio::time::timeout(PATIENCE, child.wait()).await;
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr).await;
                }
                Err(format!("exited {status:?}: {stderr}"))
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// What the host has logged so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The host's resident memory, from /proc, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid().expect("host running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("host status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Sends SIGKILL and waits: the host gets no chance to clean up (a
    /// crash, the OOM killer).
    pub async fn kill(self) -> std::process::ExitStatus {
        self.signal_and_wait(libc::SIGKILL, "SIGKILL").await
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(self) -> std::process::ExitStatus {
        self.signal_and_wait(libc::SIGTERM, "SIGTERM").await
    }

    /// Sends SIGTERM and checks that the host exits 0, with its log in the
    /// message if not.
    pub async fn stop(self) {
        let log = Arc::clone(&self.stderr);
        let status = self.terminate().await;
        // Give the drain task the last lines.
        tokio::task::yield_now().await;
        let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(
            status.success(),
            "the host exited {status:?} on SIGTERM:\n{log}"
        );
    }

    async fn signal_and_wait(mut self, signal: i32, name: &str) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling the child we spawned, by its pid.
            unsafe { libc::kill(pid as i32, signal) };
        }
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("host exits after {name}"))
            .expect("wait for host")
    }
}
