//! Test harness: the real execd-host binary on a free loopback port, the
//! real execdctl binary, and bounded waits.

// Helpers serve several test modules; not every one uses each of them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use execd_client::{Backoff, Client, Framing};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Upper bound for any single wait in a test; a hang fails, not blocks CI.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The host binary: `$EXECD_HOST`, else the workspace's release build
/// (which `cargo test --release --workspace` builds before any test runs).
fn host_binary() -> PathBuf {
    let path = std::env::var_os("EXECD_HOST")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/release/execd-host"
            ))
        });
    assert!(
        path.is_file(),
        "no execd-host binary at {}: build it with `cargo build --release -p execd-host`, or point EXECD_HOST at one",
        path.display()
    );
    path
}

/// A running host, sent SIGTERM (by its own pid) when dropped, so it stops
/// its commands and removes its state directory.
pub struct Host {
    pub addr: String,
    pub token: Option<String>,
    child: Child,
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling the child we spawned, by its pid.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
}

impl Host {
    /// Starts a host with these extra flags and waits for its address.
    pub async fn start(args: &[&str]) -> Host {
        Host::start_at("127.0.0.1:0", args).await
    }

    /// Starts a host listening on `listen`, with these extra flags.
    pub async fn start_at(listen: &str, args: &[&str]) -> Host {
        let mut child = Command::new(host_binary())
            .args(["--listen", listen])
            .args(args)
            .env_remove("EXECD_ACCESS_TOKEN")
            .env("EXECD_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn execd-host");
        let stdout = child.stdout.take().expect("host stdout");
        let mut line = String::new();
        let read =
            tokio::time::timeout(PATIENCE, BufReader::new(stdout).read_line(&mut line)).await;
        assert!(
            matches!(read, Ok(Ok(n)) if n > 0),
            "host did not print its address: {read:?}"
        );
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the host: {line:?}"))
            .to_string();
        let token = args
            .windows(2)
            .find(|w| w[0] == "--access-token")
            .map(|w| w[1].to_string());
        Host { addr, token, child }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client of this host (its token, fast test backoff).
    pub fn client(&self) -> Client {
        client_for(&self.url(), self.token.as_deref(), None)
    }
}

/// A client with short waits, so reconnecting tests run fast.
pub fn client_for(url: &str, token: Option<&str>, framing: Option<Framing>) -> Client {
    let mut builder = Client::builder(url).backoff(fast_backoff(Duration::from_secs(20)));
    if let Some(token) = token {
        builder = builder.token(token);
    }
    if let Some(framing) = framing {
        builder = builder.framing(framing);
    }
    builder.build().expect("client")
}

pub fn fast_backoff(bound: Duration) -> Backoff {
    Backoff::default()
        .initial(Duration::from_millis(10))
        .max_delay(Duration::from_millis(200))
        .max_elapsed(bound)
}

/// What an execdctl run printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("execdctl ended by a signal: {self:?}"))
    }

    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// stderr lines that execdctl itself wrote.
    pub fn notes(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("execdctl:"))
            .collect()
    }

    /// stderr lines that came from the command.
    pub fn command_stderr(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.starts_with("execdctl:"))
            .collect()
    }
}

/// An execdctl process, its environment cleared of the variables it reads.
pub fn execdctl(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_execdctl"));
    command
        .args(args)
        .env_remove("EXECD_URL")
        .env_remove("EXECD_ACCESS_TOKEN")
        .env_remove("EXECD_RETRY_FOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs execdctl to its end (within PATIENCE).
pub async fn ctl(args: &[&str]) -> Output {
    let child = execdctl(args).spawn().expect("spawn execdctl");
    finish(child).await
}

/// Waits for a spawned execdctl and collects what it printed.
pub async fn finish(child: Child) -> Output {
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("execdctl finished in time")
        .expect("wait for execdctl");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Reads one line of a child's stdout (within PATIENCE), returning it and
/// the reader for the rest.
pub async fn first_line(stdout: ChildStdout) -> (String, BufReader<ChildStdout>) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let read = tokio::time::timeout(PATIENCE, reader.read_line(&mut line)).await;
    assert!(
        matches!(read, Ok(Ok(n)) if n > 0),
        "no first line: {read:?}"
    );
    (line, reader)
}

/// Reads the rest of a child's stdout and waits for it.
pub async fn rest(mut child: Child, mut reader: BufReader<ChildStdout>) -> Output {
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut err = child.stderr.take().expect("stderr piped");
    let read = async {
        let (a, b) = tokio::join!(
            reader.read_to_string(&mut stdout),
            err.read_to_string(&mut stderr)
        );
        a.and(b)
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("execdctl output in time")
        .expect("read execdctl output");
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("execdctl exits in time")
        .expect("wait for execdctl");
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Sends a signal to a child we spawned, by its pid.
pub fn signal(child: &Child, signal: i32) {
    let pid = child.id().expect("child running");
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(pid as i32, signal) };
}

/// Polls `check` every 20 ms until it is true, for at most PATIENCE.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A shell loop writing `out I` on stdout and `err I` on stderr for I in
/// 1..=n, then exiting with `code`.
pub fn both_pipes(n: usize, code: i32) -> String {
    format!("for i in $(seq 1 {n}); do echo \"out $i\"; echo \"err $i\" >&2; done; exit {code}")
}

pub fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix} {i}")).collect()
}

/// A directory of the test's own, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "execd-client-{name}-{}-{unique}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
