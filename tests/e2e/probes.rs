//! Helpers for the reliability tests (chaos, faults, lifecycle, bounds,
//! security, leaks): looking at the host from /proc, raw connections, and
//! bounded polling.

// Helpers serve several modules; not every one uses each of them.
#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::harness::*;

/// Open file descriptors of a process, from /proc/PID/fd.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// What each open fd of a process points at, counted by kind.
pub fn fd_targets(pid: u32) -> std::collections::BTreeMap<String, usize> {
    let mut kinds = std::collections::BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten() {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            let kind = match target.split_once(':') {
                Some((kind, _)) if !target.starts_with('/') => kind.to_string(),
                _ => target,
            };
            *kinds.entry(kind).or_default() += 1;
        }
    }
    kinds
}

/// The host's open fds.
pub fn host_fds(host: &Host) -> usize {
    fd_count(host.pid().expect("host running"))
}

/// Threads of a process, from /proc/PID/status.
pub fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `(pid, ppid, pgrp, state)` of every process, from /proc/*/stat.
pub fn processes() -> Vec<(u32, u32, u32, char)> {
    let mut all = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return all;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(p) = stat(pid) {
            all.push(p);
        }
    }
    all
}

/// `(pid, ppid, pgrp, state)` of one process, if it exists.
pub fn stat(pid: u32) -> Option<(u32, u32, u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: skip past it.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((pid, ppid, pgrp, state))
}

/// Children of `pid`, with their state.
pub fn children(pid: u32) -> Vec<(u32, char)> {
    processes()
        .into_iter()
        .filter(|p| p.1 == pid)
        .map(|p| (p.0, p.3))
        .collect()
}

/// Whether `pid` is gone or a zombie.
pub fn is_dead(pid: u32) -> bool {
    stat(pid).is_none_or(|p| p.3 == 'Z' || p.3 == 'X')
}

/// Live (non-zombie) members of process group `pgrp`.
pub fn group_alive(pgrp: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| p.2 == pgrp && p.3 != 'Z' && p.3 != 'X')
        .map(|p| p.0)
        .collect()
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns
/// whether it held.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw connection to the host.
pub async fn connect(host: &Host) -> TcpStream {
    TcpStream::connect(&host.addr)
        .await
        .expect("connect to host")
}

/// An HTTP/1.1 request head (keep-alive unless `close`).
pub fn request(host: &Host, method: &str, path: &str, body: &[u8], close: bool) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", host.addr);
    if close {
        head.push_str("Connection: close\r\n");
    }
    if method == "POST" || !body.is_empty() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `GET /ping` on a fresh connection answers 200 within `PATIENCE`.
pub async fn ping(host: &Host) {
    let response = tokio::time::timeout(PATIENCE, host.call("GET", "/ping", ""))
        .await
        .expect("ping in time");
    assert_eq!(response.status, 200, "the host still serves");
}

/// Sends raw bytes on a fresh connection and returns whatever comes back
/// until the host closes it (or `limit` passes).
pub async fn raw_exchange(host: &Host, bytes: &[u8], limit: Duration) -> Vec<u8> {
    let mut conn = connect(host).await;
    // The host may answer and close before it has read everything (a head
    // over its limit): what it answered is what counts.
    let _ = conn.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, conn.read_to_end(&mut out)).await;
    out
}

/// Starts a background command and returns its id.
pub async fn background(host: &Host, command: &str) -> String {
    let mut stream = host
        .run(serde_json::json!({ "command": command, "background": true }))
        .await;
    let id = init_id(&mut stream).await;
    let rest = stream.events().await;
    assert!(
        rest.iter().any(|e| e.kind() == "execution_complete"),
        "background POST ends with execution_complete"
    );
    id
}
