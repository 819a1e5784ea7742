//! Error bodies for requests hyper cannot parse.
//!
//! Hyper answers a request it cannot parse (bad request line, header or
//! version, URI or head too long) by itself, with an empty body, and offers
//! no hook to change that. The contract wants every rejected request to get
//! an error body, so the connection's writer recognises those automatic
//! answers and sends the same status with the contract's body instead.
//!
//! Recognising them: they are a bare head with status 400, 414 or 431,
//! `content-length: 0` and nothing after it, written in one piece right
//! after request bytes came in (hyper answers as soon as a parse fails).
//! Every error this host produces itself carries a JSON body; and a body
//! that happens to look like such a head (a command's raw output sent by
//! `/logs`) follows the response's own head, not fresh request bytes.
//! (An HTTP/2 preface is not answered at all: hyper closes the connection.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ApiError;

/// A connection whose writer swaps hyper's empty parse-error answers for
/// ones with the contract's error body.
pub struct ParseErrorBodies<T> {
    inner: T,
    /// The replacement answer, and how much of it is written.
    pending: Vec<u8>,
    written: usize,
    /// Request bytes came in since the last write: only now can a write be
    /// hyper's answer to a request it could not parse.
    fresh_input: bool,
}

impl<T> ParseErrorBodies<T> {
    pub fn new(inner: T) -> Self {
        ParseErrorBodies {
            inner,
            pending: Vec::new(),
            written: 0,
            fresh_input: false,
        }
    }
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

    /// Takes `head` in place of hyper's answer when it is an automatic one:
    /// `Some(len)` is what hyper is told was written. Only for the first
    /// write after request bytes came in.
    fn replace(&mut self, cx: &mut Context<'_>, head: &[u8]) -> Option<Poll<io::Result<usize>>> {
        let (error, version) = automatic_answer(head)?;
        tracing::debug!(code = error.code, "unparseable request");
        self.pending = render(&error, version);
        self.written = 0;
        Some(match self.poll_pending(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // What is not written yet goes out on the next write or flush.
            _ => Poll::Ready(Ok(head.len())),
        })
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ParseErrorBodies<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if std::mem::take(&mut this.fresh_input)
            && let Some(done) = this.replace(cx, buf)
        {
            return done;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
        if std::mem::take(&mut this.fresh_input)
            && let (Some(head), None) = (nonempty.next(), nonempty.next())
            && let Some(done) = this.replace(cx, head)
        {
            return done;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
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
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.fresh_input = true;
        }
        result
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
}
