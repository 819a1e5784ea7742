//! Error bodies for requests hyper cannot parse.
//!
//! Hyper answers a request it cannot parse (bad request line, header or
//! version, URI or head too long) by itself, with an empty body, and offers
//! no hook to change that. The contract wants every rejected request to get
//! an error body, so the connection's writer recognises those automatic
//! answers and sends the same status with the contract's body instead.
//!
//! Recognising them: they are a bare head with status 400, 414 or 431 and
//! `content-length: 0`. Every error this host produces itself carries a
//! JSON body, so such a head can only be hyper's. What must never be taken
//! for one is a response *body* that happens to hold those bytes (a
//! command's raw output sent by `/logs`). So the writer follows the framing
//! of the responses it writes ([`Framing`]): each head's `content-length`
//! or chunked encoding says where its body ends and the next head begins,
//! and only a head at such a boundary is looked at, wherever it is on the
//! connection (after any number of pipelined requests). A write that runs
//! past a boundary is cut short there, so each head starts a write of its
//! own. (An HTTP/2 preface is not answered at all: hyper closes the
//! connection. A HEAD request's answer has a length but no body, so those
//! close the connection: see `http::handle`.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http::error::ApiError;

/// Longest response head looked at; the host's own are far smaller.
const MAX_HEAD: usize = 64 * 1024;

/// A connection whose writer swaps hyper's empty parse-error answers for
/// ones with the contract's error body.
pub struct ParseErrorBodies<T> {
    inner: T,
    /// The replacement answer, and how much of it is written.
    pending: Vec<u8>,
    written: usize,
    framing: Framing,
}

impl<T> ParseErrorBodies<T> {
    pub fn new(inner: T) -> Self {
        ParseErrorBodies {
            inner,
            pending: Vec::new(),
            written: 0,
            framing: Framing::AtHead,
        }
    }
}

/// Where the bytes written so far leave the response stream.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Framing {
    /// The next byte starts a response head.
    AtHead,
    /// Inside a head that was let through; its bytes so far.
    Head(Vec<u8>),
    /// Inside a body of known length: bytes left.
    Fixed(u64),
    /// Inside a chunk-size line of a chunked body; its bytes so far.
    ChunkSize(Vec<u8>),
    /// Inside a chunk: its data and the CRLF after it, bytes left.
    ChunkData(u64),
    /// After the last chunk, inside the trailer lines; the current one.
    Trailer(Vec<u8>),
    /// A body that ends with the connection (or an upgraded connection).
    UntilClose,
}

impl Framing {
    /// Follows `bytes` as written; returns how many it took, stopping early
    /// right at the start of a new head.
    fn advance(&mut self, bytes: &[u8]) -> usize {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            match self {
                Framing::AtHead => {
                    if at > 0 {
                        return at;
                    }
                    *self = Framing::Head(Vec::new());
                }
                Framing::Head(head) => {
                    let (taken, done) = take_until(head, rest, b"\r\n\r\n");
                    at += taken;
                    if done {
                        *self = after_head(head);
                    }
                }
                Framing::Fixed(left) => {
                    let n = (*left).min(rest.len() as u64);
                    at += n as usize;
                    *left -= n;
                    if *left == 0 {
                        *self = Framing::AtHead;
                    }
                }
                Framing::ChunkSize(line) => {
                    let (taken, done) = take_until(line, rest, b"\r\n");
                    at += taken;
                    if done {
                        *self = match chunk_size(line) {
                            Some(0) => Framing::Trailer(Vec::new()),
                            Some(n) => Framing::ChunkData(n.saturating_add(2)),
                            // Not a chunked body after all: stop looking.
                            None => Framing::UntilClose,
                        };
                    }
                }
                Framing::ChunkData(left) => {
                    let n = (*left).min(rest.len() as u64);
                    at += n as usize;
                    *left -= n;
                    if *left == 0 {
                        *self = Framing::ChunkSize(Vec::new());
                    }
                }
                Framing::Trailer(line) => {
                    let (taken, done) = take_until(line, rest, b"\r\n");
                    at += taken;
                    if done {
                        *self = if line.len() == 2 {
                            Framing::AtHead
                        } else {
                            Framing::Trailer(Vec::new())
                        };
                    }
                }
                Framing::UntilClose => return bytes.len(),
            }
        }
        at
    }
}

/// Appends bytes of `rest` to `seen` up to and including the first
/// `end` (which may straddle the two); returns how many were taken and
/// whether `end` was reached. A line past [`MAX_HEAD`] counts as ended.
fn take_until(seen: &mut Vec<u8>, rest: &[u8], end: &[u8]) -> (usize, bool) {
    for (i, &b) in rest.iter().enumerate() {
        seen.push(b);
        if seen.ends_with(end) || seen.len() > MAX_HEAD {
            return (i + 1, true);
        }
    }
    (rest.len(), false)
}

/// What follows a complete response head.
fn after_head(head: &[u8]) -> Framing {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let status: u16 = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    if status == 101 {
        return Framing::UntilClose;
    }
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Framing::AtHead;
    }
    let header = |name: &str| {
        text.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        return Framing::ChunkSize(Vec::new());
    }
    match header("content-length").and_then(|v| v.parse::<u64>().ok()) {
        Some(0) => Framing::AtHead,
        Some(n) => Framing::Fixed(n),
        None => Framing::UntilClose,
    }
}

/// The size of a chunk-size line (`1a;ext\r\n`).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let size = text.trim_end().split(';').next()?.trim();
    u64::from_str_radix(size, 16).ok()
}

/// The error a head written by hyper on its own stands for, with the HTTP
/// version it answered in, if it is one.
fn automatic_answer(head: &[u8]) -> Option<(ApiError, &'static str)> {
    let version = match head.get(..9)? {
        b"HTTP/1.1 " => "HTTP/1.1",
        b"HTTP/1.0 " => "HTTP/1.0",
        _ => return None,
    };
    let status = head.get(9..12)?;
    if !head.ends_with(b"\r\n\r\n") || !contains(head, b"\r\ncontent-length: 0\r\n") {
        return None;
    }
    // Hyper's own answer has these headers and no other: an answer that
    // came through the host from elsewhere (a forwarded upstream's, which
    // carries `via`) is left as it is.
    let only_hypers = head
        .split(|&b| b == b'\n')
        .skip(1)
        .filter(|line| line.len() > 1)
        .all(|line| {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            [&b"content-length"[..], b"connection", b"date"]
                .iter()
                .any(|known| name.eq_ignore_ascii_case(known))
        });
    if !only_hypers {
        return None;
    }
    let (status, code, message) = match status {
        b"400" => (
            StatusCode::BAD_REQUEST,
            "MALFORMED_REQUEST",
            "the request is not valid HTTP/1.x (request line, header or version)",
        ),
        b"414" => (
            StatusCode::URI_TOO_LONG,
            "URI_TOO_LONG",
            "the request target is too long",
        ),
        b"431" => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "HEADERS_TOO_LARGE",
            "the request head is too large",
        ),
        _ => return None,
    };
    Some((ApiError::new(status, code, message), version))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn render(error: &ApiError, version: &str) -> Vec<u8> {
    let body = error.body_json();
    let mut out = format!(
        "{version} {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        error.status.as_u16(),
        error.status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// The whole head at the start of `bufs`, if they hold all of it.
fn leading_head(bufs: &[io::IoSlice<'_>]) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    for buf in bufs {
        let (_, done) = take_until(&mut head, buf, b"\r\n\r\n");
        if done {
            return Some(head);
        }
    }
    None
}

impl<T: AsyncWrite + Unpin> ParseErrorBodies<T> {
    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes `bufs`, or as much of them as reaches the next response head;
    /// a head that is hyper's automatic answer is replaced.
    fn write(&mut self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if self.framing == Framing::AtHead
            && let Some(head) = leading_head(bufs)
            && let Some((error, version)) = automatic_answer(&head)
        {
            tracing::debug!(code = error.code, "unparseable request");
            self.pending = render(&error, version);
            self.written = 0;
            // Hyper is told the head went out; the replacement follows on
            // this and the next writes or flushes.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(head.len()));
        }
        // Up to the next head, so that it starts a write of its own.
        let mut probe = self.framing.clone();
        let mut limit = 0;
        for buf in bufs {
            let taken = probe.advance(buf);
            limit += taken;
            if taken < buf.len() {
                break;
            }
        }
        let n = ready!(self.write_limited(cx, bufs, limit))?;
        let mut left = n;
        for buf in bufs {
            if left == 0 {
                break;
            }
            let part = &buf[..left.min(buf.len())];
            left -= part.len();
            self.framing.advance(part);
        }
        Poll::Ready(Ok(n))
    }

    /// Writes at most `limit` bytes of `bufs`, vectored.
    fn write_limited(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        let mut cut = Vec::with_capacity(bufs.len());
        let mut left = limit;
        for buf in bufs {
            if left == 0 {
                break;
            }
            let part = &buf[..left.min(buf.len())];
            left -= part.len();
            cut.push(io::IoSlice::new(part));
        }
        match cut.as_slice() {
            [] => Poll::Ready(Ok(0)),
            [one] => Pin::new(&mut self.inner).poll_write(cx, one),
            many => Pin::new(&mut self.inner).poll_write_vectored(cx, many),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ParseErrorBodies<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let nonempty: Vec<io::IoSlice<'_>> = bufs
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| io::IoSlice::new(b))
            .collect();
        self.get_mut().write(cx, &nonempty)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ParseErrorBodies<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 24 Nov 2026 14:04:35 GMT\r\n\r\n";

    #[test]
    fn recognises_hyper_automatic_answers() {
        let (error, version) = automatic_answer(HYPER_400).unwrap();
        assert_eq!((error.code, version), ("MALFORMED_REQUEST", "HTTP/1.1"));
        let uri = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(
            automatic_answer(uri).unwrap().0.status,
            StatusCode::URI_TOO_LONG
        );
        // Hyper answers in the version the client last spoke.
        let old = b"HTTP/1.0 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_answer(old).unwrap().1, "HTTP/1.0");
    }

    #[test]
    fn leaves_forwarded_answers_alone() {
        let forwarded = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nvia: 1.1 execd-host\r\ndate: x\r\n\r\n";
        assert!(automatic_answer(forwarded).is_none());
    }

    #[test]
    fn leaves_answers_with_a_body_alone() {
        let own = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 52\r\n\r\n";
        assert!(automatic_answer(own).is_none());
        let with_body = [HYPER_400, b"{}"].concat();
        assert!(automatic_answer(&with_body).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(automatic_answer(ok).is_none());
    }

    #[test]
    fn the_replacement_carries_the_error_body() {
        let (error, version) = automatic_answer(HYPER_400).unwrap();
        let out = render(&error, version);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "MALFORMED_REQUEST");
    }

    #[test]
    fn follows_heads_and_bodies_across_pipelined_responses() {
        // A fixed-length body and a chunked one, each holding bytes that
        // look like an automatic answer, then a real head.
        let fixed_head = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            HYPER_400.len()
        );
        let fixed = [fixed_head.as_bytes(), HYPER_400].concat();
        let chunk = format!("{:x}\r\n", HYPER_400.len());
        let chunked = [
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".as_slice(),
            chunk.as_bytes(),
            HYPER_400,
            b"\r\n0\r\n\r\n",
        ]
        .concat();
        let stream = [fixed.as_slice(), chunked.as_slice(), HYPER_400].concat();
        let mut framing = Framing::AtHead;
        // Byte by byte and whole, the boundaries are the same.
        let mut boundaries = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            if framing == Framing::AtHead {
                boundaries.push(at);
            }
            at += framing.advance(&stream[at..]);
        }
        assert_eq!(
            boundaries,
            vec![0, fixed.len(), fixed.len() + chunked.len()]
        );
        let mut framing = Framing::AtHead;
        let mut starts = Vec::new();
        for (i, b) in stream.iter().enumerate() {
            if framing == Framing::AtHead {
                starts.push(i);
            }
            assert_eq!(framing.advance(std::slice::from_ref(b)), 1);
        }
        assert_eq!(starts, boundaries);
    }

    #[test]
    fn bodies_without_length_and_upgrades_run_to_the_end() {
        let mut framing = Framing::AtHead;
        let head = b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
        assert_eq!(framing.advance(head), head.len());
        assert_eq!(framing, Framing::UntilClose);
        assert_eq!(framing.advance(HYPER_400), HYPER_400.len());
        let mut framing = Framing::AtHead;
        framing.advance(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n");
        assert_eq!(framing, Framing::UntilClose);
        // Interim and bodiless answers are followed by another head.
        let mut framing = Framing::AtHead;
        framing.advance(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(framing, Framing::AtHead);
        framing.advance(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(framing, Framing::AtHead);
    }
}
