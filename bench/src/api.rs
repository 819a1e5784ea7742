//! The host's API as the figures use it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::client::{self, Response};

fn command_json(command: &str, background: bool) -> String {
    serde_json::json!({ "command": command, "background": background }).to_string()
}

/// `POST /command` in the foreground: the open event stream.
pub async fn run(addr: SocketAddr, command: &str) -> Result<Response> {
    let response = client::send(
        addr,
        "POST",
        "/command",
        Some(&command_json(command, false)),
    )
    .await?;
    if response.status != 200 {
        let status = response.status;
        let body = response.bytes().await.unwrap_or_default();
        bail!("POST /command: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(response)
}

/// `POST /command` in the background: the command's id.
pub async fn start_background(addr: SocketAddr, command: &str) -> Result<String> {
    let response =
        client::send(addr, "POST", "/command", Some(&command_json(command, true))).await?;
    let status = response.status;
    let body = response.bytes().await?;
    if status != 200 {
        bail!(
            "POST /command (background): {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    init_id(&body).context("no init event in the background POST response")
}

/// The command id in a stream's `init` event.
pub fn init_id(stream: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"type\":\"init\",\"text\":\"";
    let start = memchr::memmem::find(stream, KEY)? + KEY.len();
    let len = memchr::memchr(b'"', &stream[start..])?;
    Some(String::from_utf8_lossy(&stream[start..start + len]).into_owned())
}

/// `GET /command/{id}/resume?after_eid=N`: the open event stream.
pub async fn resume(addr: SocketAddr, id: &str, after: u64) -> Result<Response> {
    let path = format!("/command/{id}/resume?after_eid={after}");
    let response = client::send(addr, "GET", &path, None).await?;
    if response.status != 200 {
        bail!("GET {path}: {}", response.status);
    }
    Ok(response)
}

/// `GET /command/status/{id}`.
pub async fn status(addr: SocketAddr, id: &str) -> Result<serde_json::Value> {
    let path = format!("/command/status/{id}");
    let response = client::send(addr, "GET", &path, None).await?;
    let code = response.status;
    let body = response.bytes().await?;
    if code != 200 {
        bail!("GET {path}: {code} {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// Polls the status until the command is no longer running.
pub async fn wait_finished(addr: SocketAddr, id: &str, limit: Duration) -> Result<()> {
    let start = Instant::now();
    while status(addr, id).await?["running"] != false {
        if start.elapsed() > limit {
            bail!("command {id} still running after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// `DELETE /command?id=`: interrupts the command.
pub async fn interrupt(addr: SocketAddr, id: &str) -> Result<()> {
    let path = format!("/command?id={id}");
    let response = client::send(addr, "DELETE", &path, None).await?;
    let code = response.status;
    response.bytes().await?;
    if code != 200 {
        bail!("DELETE {path}: {code}");
    }
    Ok(())
}
