//! Test harness: starts the real `execd-host` binary on a free loopback
//! port, and talks to it over raw TCP as an HTTP/1.1 client would, so tests
//! can read streams event by event and drop connections at any point.

// Helpers serve many test modules; not every one uses each of them.
#![allow(dead_code)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Upper bound for any single wait in a test; a hang fails, not blocks CI.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running host, sent SIGTERM (by its own pid) when dropped, so it stops
/// its commands and removes its state directory.
pub struct Host {
    pub addr: String,
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
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_execd-host"))
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
        let mut line = String::new();
        let read =
            tokio::time::timeout(PATIENCE, BufReader::new(stdout).read_line(&mut line)).await;
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

    /// Sends a request; `headers` are extra lines like `("Last-Event-ID", "3")`.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Stream {
        let mut stream = TcpStream::connect(&self.addr)
            .await
            .expect("connect to host");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(token) = &self.token
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("x-execd-access-token"))
        {
            head.push_str(&format!("X-EXECD-ACCESS-TOKEN: {token}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("write request");
        stream.write_all(body).await.expect("write body");
        Stream::open(stream).await
    }

    /// A whole request/response.
    pub async fn call(&self, method: &str, path: &str, body: &str) -> Response {
        self.send(method, path, &[], body.as_bytes())
            .await
            .finish()
            .await
    }

    /// `POST /command` with a JSON body, returning the open stream.
    pub async fn run(&self, body: Value) -> Stream {
        self.send("POST", "/command", &[], body.to_string().as_bytes())
            .await
    }

    /// Opens `GET /command/{id}/resume?after_eid=N`.
    pub async fn resume(&self, id: &str, after: u64) -> Stream {
        self.send(
            "GET",
            &format!("/command/{id}/resume?after_eid={after}"),
            &[],
            b"",
        )
        .await
    }

    /// Resumes `id` after `after`, by the `Last-Event-ID` header or by the
    /// `after_eid` query.
    pub async fn resume_by(&self, id: &str, after: u64, by_header: bool) -> Stream {
        if by_header {
            let after = after.to_string();
            let path = format!("/command/{id}/resume");
            self.send("GET", &path, &[("Last-Event-ID", &after)], b"")
                .await
        } else {
            self.resume(id, after).await
        }
    }

    pub async fn status(&self, id: &str) -> Value {
        self.call("GET", &format!("/command/status/{id}"), "")
            .await
            .json()
    }

    /// Waits until the command reports `running: false`.
    pub async fn wait_finished(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let status = self.status(id).await;
            if status["running"] == false {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "command {id} still running: {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
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
    pub async fn kill(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling the child we spawned, by its pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("host exits after SIGKILL")
            .expect("wait for host")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling the child we spawned, by its pid.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("host exits after SIGTERM")
            .expect("wait for host")
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the contract's error body with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let json = self.json();
        assert_eq!(json["code"], code, "{json}");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
    }
}

/// One SSE event as parsed from standard framing (or legacy: data only).
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Option<u64>,
    pub event: Option<String>,
    pub data: Value,
    /// Comment lines (keepalives) seen before this event.
    pub comments: usize,
}

impl Event {
    pub fn kind(&self) -> &str {
        self.data["type"].as_str().unwrap_or("")
    }
    pub fn eid(&self) -> Option<u64> {
        self.data["eid"].as_u64()
    }
    pub fn text(&self) -> &str {
        self.data["text"].as_str().unwrap_or("")
    }
    pub fn is_terminal(&self) -> bool {
        matches!(self.kind(), "execution_complete" | "error") && self.eid().is_some()
    }
}

/// An open response whose body is read incrementally (chunked or not).
pub struct Stream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    chunk_left: usize,
    content_left: Option<usize>,
    done: bool,
    pending: Vec<u8>,
    pub comments: usize,
}

/// A request to whatever host listens on `addr` now, for clients that
/// outlive a host: `None` when nothing listens there or the connection
/// broke before the answer's head.
pub async fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<Stream> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.ok()?;
    let stream = Stream::try_open(stream).await.ok()?;
    (stream.status != 0).then_some(stream)
}

impl Stream {
    async fn open(stream: TcpStream) -> Stream {
        Stream::try_open(stream)
            .await
            .expect("read the answer's head")
    }

    async fn try_open(stream: TcpStream) -> std::io::Result<Stream> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        tokio::time::timeout(PATIENCE, reader.read_line(&mut line))
            .await
            .expect("status line in time")?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let chunked = find("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let content_left = find("content-length").and_then(|v| v.parse().ok());
        let done = status == 204 || content_left == Some(0);
        Ok(Stream {
            reader,
            status,
            headers,
            chunked,
            chunk_left: 0,
            content_left,
            done,
            pending: Vec::new(),
            comments: 0,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next piece of body, or `None` at its end.
    async fn read_some(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        if self.chunked {
            if self.chunk_left == 0 {
                let mut line = String::new();
                self.reader.read_line(&mut line).await.ok()?;
                if line.trim().is_empty() {
                    line.clear();
                    self.reader.read_line(&mut line).await.ok()?;
                }
                let size = usize::from_str_radix(line.trim(), 16).ok()?;
                if size == 0 {
                    self.done = true;
                    return None;
                }
                self.chunk_left = size;
            }
            let mut buf = vec![0; self.chunk_left.min(64 * 1024)];
            let n = self.reader.read(&mut buf).await.ok()?;
            if n == 0 {
                self.done = true;
                return None;
            }
            self.chunk_left -= n;
            buf.truncate(n);
            Some(buf)
        } else {
            let want = self.content_left.unwrap_or(64 * 1024).min(64 * 1024);
            let mut buf = vec![0; want.max(1)];
            let n = self.reader.read(&mut buf).await.ok()?;
            if n == 0 {
                self.done = true;
                return None;
            }
            if let Some(left) = &mut self.content_left {
                *left -= n;
                if *left == 0 {
                    self.done = true;
                }
            }
            buf.truncate(n);
            Some(buf)
        }
    }

    /// Reads the rest of the body.
    pub async fn finish(mut self) -> Response {
        let mut body = std::mem::take(&mut self.pending);
        while let Some(piece) = tokio::time::timeout(PATIENCE, self.read_some())
            .await
            .expect("body in time")
        {
            body.extend_from_slice(&piece);
        }
        Response {
            status: self.status,
            headers: self.headers,
            body,
        }
    }

    /// The next SSE event, or `None` when the stream ends. Keepalive
    /// comments are counted, not returned.
    pub async fn next_event(&mut self) -> Option<Event> {
        let mut comments = 0;
        loop {
            if let Some(end) = find(&self.pending, b"\n\n") {
                let raw: Vec<u8> = self.pending.drain(..end + 2).collect();
                let text = String::from_utf8(raw).expect("SSE is UTF-8");
                let (mut id, mut event, mut data) = (None, None, None);
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().expect("numeric id"));
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(v.to_string());
                    } else if line.starts_with(':') {
                        comments += 1;
                        self.comments += 1;
                    } else if line.starts_with('{') {
                        data = Some(line.to_string());
                    } else if !line.is_empty() {
                        panic!("unexpected SSE line {line:?}");
                    }
                }
                let Some(data) = data else { continue };
                let data: Value = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("bad JSON {data:?}: {e}"));
                return Some(Event {
                    id,
                    event,
                    data,
                    comments,
                });
            }
            let piece = tokio::time::timeout(PATIENCE, self.read_some())
                .await
                .expect("event in time")?;
            self.pending.extend_from_slice(&piece);
        }
    }

    /// Every remaining event, to the end of the stream.
    pub async fn events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(e) = self.next_event().await {
            events.push(e);
        }
        events
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks the invariants every stream must hold and returns its logged
/// events (those with an eid): `id:` equals `eid`, eids consecutive from
/// `after + 1`, exactly one terminal event, last. Gaps are not allowed here.
pub fn logged(events: &[Event], after: u64) -> Vec<Event> {
    let logged: Vec<Event> = events
        .iter()
        .filter(|e| e.eid().is_some())
        .cloned()
        .collect();
    for (i, e) in logged.iter().enumerate() {
        assert_eq!(
            e.eid(),
            Some(after + 1 + i as u64),
            "eids consecutive: {:?}",
            e.data
        );
        assert_eq!(e.id, e.eid(), "SSE id equals eid");
    }
    let terminals = logged.iter().filter(|e| e.is_terminal()).count();
    assert_eq!(terminals, 1, "exactly one terminal event");
    assert!(
        logged.last().is_some_and(Event::is_terminal),
        "terminal event last"
    );
    logged
}

/// The command id from a stream's `init` event.
pub async fn init_id(stream: &mut Stream) -> String {
    assert_eq!(stream.status, 200, "POST /command status");
    let init = stream.next_event().await.expect("init event");
    assert_eq!(init.kind(), "init");
    assert_eq!(init.id, None, "init carries no id");
    init.text().to_string()
}

/// A per-test temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("execd-test-{}-{}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts a terminal `error` event as execd sends it: `CommandExecError`,
/// the exit code (or -1 for a signal) as `evalue`, and one traceback line.
pub fn assert_failed(end: &Event, evalue: &str, traceback: &str) {
    assert_eq!(end.kind(), "error", "{:?}", end.data);
    assert_eq!(
        end.data["error"]["ename"], "CommandExecError",
        "{:?}",
        end.data
    );
    assert_eq!(end.data["error"]["evalue"], evalue, "{:?}", end.data);
    assert_eq!(
        end.data["error"]["traceback"],
        serde_json::json!([traceback]),
        "{:?}",
        end.data
    );
}

/// Builds a policy crate of this workspace for wasm32-wasip2 (with
/// `feature`, if any) and returns the path of a copy of its component, named
/// after the feature. Builds are serialized: one cargo target dir, one output
/// name per package.
pub async fn build_policy(package: &str, feature: Option<&str>) -> std::path::PathBuf {
    static BUILDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _serial = BUILDS.lock().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = root.join("target").join("guest");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--package",
            package,
            "--profile",
            "guest",
        ])
        .args(["--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir);
    if let Some(feature) = feature {
        cmd.args(["--features", feature]);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = tokio::time::timeout(Duration::from_secs(600), cmd.status())
        .await
        .expect("policy build in time")
        .expect("run cargo");
    assert!(status.success(), "building {package} {feature:?} failed");
    let built = target_dir
        .join("wasm32-wasip2/guest")
        .join(format!("{}.wasm", package.replace('-', "_")));
    let copies = root.join("target").join("test-policies");
    std::fs::create_dir_all(&copies).expect("create test-policies dir");
    let copy = copies.join(format!("{package}-{}.wasm", feature.unwrap_or("default")));
    std::fs::copy(&built, &copy).expect("copy built policy");
    copy
}
