//! The client: requests over raw TCP as an HTTP/1.1 client would write
//! them, whole responses, and streams read piece by piece so a test can
//! drop a connection at any point.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Host, PATIENCE};

impl Host {
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

/// An open response whose body is read incrementally (chunked or not).
pub struct Stream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    chunk_left: usize,
    content_left: Option<usize>,
    done: bool,
    pub(super) pending: Vec<u8>,
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
    pub(super) async fn read_some(&mut self) -> Option<Vec<u8>> {
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
}
