//! A small HTTP/1.1 client over a tokio `TcpStream`: one request per
//! connection, the response body decoded (chunked, sized, or to EOF) and,
//! for event streams, split into SSE events as it arrives.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::{Chunked, EventSink, Events};

/// Default bytes per socket read.
const READ_BUF: usize = 256 * 1024;
/// Most header bytes accepted.
const MAX_HEAD: usize = 64 * 1024;

/// How a stream is read: bytes per read, and an optional pause after each
/// read (a slow client).
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub read_bytes: usize,
    pub pause: Option<Duration>,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            read_bytes: READ_BUF,
            pause: None,
        }
    }
}

enum Body {
    Chunked(Chunked),
    Length(usize),
    ToEof,
    Done,
}

impl Body {
    /// Feeds bytes read from the socket; true once the body is complete.
    fn feed(&mut self, bytes: &[u8], mut data: impl FnMut(&[u8])) -> Result<bool> {
        match self {
            Body::Chunked(dec) => {
                dec.feed(bytes, data)?;
                Ok(dec.done())
            }
            Body::Length(left) => {
                let n = (*left).min(bytes.len());
                data(&bytes[..n]);
                *left -= n;
                Ok(*left == 0)
            }
            Body::ToEof => {
                data(bytes);
                Ok(false)
            }
            Body::Done => Ok(true),
        }
    }
}

/// A response whose head has been read; its body is still on the wire.
pub struct Response {
    tcp: TcpStream,
    pub status: u16,
    body: Body,
    /// Body bytes that came in with the head.
    early: Vec<u8>,
}

/// Sends one request and reads the response head.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<Response> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    tcp.set_nodelay(true)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(json) = json {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            json.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(json.unwrap_or_default());
    tcp.write_all(head.as_bytes()).await?;

    let mut buf = Vec::with_capacity(4096);
    let end = loop {
        if let Some(p) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            bail!("response head over {MAX_HEAD} bytes");
        }
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the response head ({method} {path})");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    let mut body = Body::ToEof;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            body = Body::Chunked(Chunked::default());
        } else if name.eq_ignore_ascii_case("content-length") && !matches!(body, Body::Chunked(_)) {
            let n: usize = value.parse().context("bad content-length")?;
            body = if n == 0 { Body::Done } else { Body::Length(n) };
        }
    }
    if status == 204 || status == 304 {
        body = Body::Done;
    }
    Ok(Response {
        tcp,
        status,
        body,
        early: buf[end + 4..].to_vec(),
    })
}

impl Response {
    /// Reads the whole body.
    pub async fn bytes(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let early = std::mem::take(&mut self.early);
        let mut done = self.body.feed(&early, |d| out.extend_from_slice(d))?;
        let mut buf = vec![0u8; 64 * 1024];
        while !done {
            let n = self.tcp.read(&mut buf).await?;
            if n == 0 {
                if matches!(self.body, Body::ToEof) {
                    break;
                }
                bail!("connection closed mid-body");
            }
            done = self.body.feed(&buf[..n], |d| out.extend_from_slice(d))?;
        }
        Ok(out)
    }

    /// Reads the body as SSE events into `sink` until the response ends;
    /// returns the body bytes read.
    pub async fn events(mut self, sink: &mut impl EventSink, pace: Pace) -> Result<u64> {
        let mut events = Events::default();
        let mut total = 0u64;
        let early = std::mem::take(&mut self.early);
        sink.on_read();
        let mut done = self.body.feed(&early, |d| {
            total += d.len() as u64;
            events.feed(d, sink)
        })?;
        let mut buf = vec![0u8; pace.read_bytes];
        while !done {
            let n = self.tcp.read(&mut buf).await?;
            if n == 0 {
                if matches!(self.body, Body::ToEof) {
                    break;
                }
                bail!("connection closed mid-stream");
            }
            sink.on_read();
            done = self.body.feed(&buf[..n], |d| {
                total += d.len() as u64;
                events.feed(d, sink)
            })?;
            if let Some(pause) = pace.pause {
                tokio::time::sleep(pause).await;
            }
        }
        Ok(total)
    }
}
