//! `--upstream` (issue #13), against a small upstream of the tests' own:
//! a streamed download, an upload, a WebSocket echo, and an upstream that
//! is down. Raw TCP on both sides, so the tests see exactly what crosses.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::harness::*;

/// The test upstream: `GET /files/download` sends `FIRST`, waits for
/// `more` (so only a streaming proxy can deliver `FIRST` first), then
/// 1 MiB and `LAST`; `POST /files/upload` answers with the byte count and
/// the headers it saw; `GET /pty/ws` is a WebSocket echo.
struct Upstream {
    addr: String,
    more: Arc<Notify>,
}

async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let more = Arc::new(Notify::new());
    let notify = Arc::clone(&more);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, Arc::clone(&notify)));
        }
    });
    Upstream { addr, more }
}

async fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return (head, buf[end + 4..].to_vec());
        }
        let n = stream.read(&mut piece).await.expect("read head");
        assert!(n > 0, "head cut short");
        buf.extend_from_slice(&piece[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn chunk(stream: &mut TcpStream, data: &[u8]) {
    let mut frame = format!("{:x}\r\n", data.len()).into_bytes();
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\r\n");
    stream.write_all(&frame).await.expect("write chunk");
}

async fn serve(mut stream: TcpStream, more: Arc<Notify>) {
    let (head, mut rest) = read_head(&mut stream).await;
    let target = head.split(' ').nth(1).unwrap_or("").to_string();
    match target.as_str() {
        "/files/download?path=%2Fbig" => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                .await
                .expect("write head");
            chunk(&mut stream, b"FIRST").await;
            more.notified().await;
            for _ in 0..16 {
                chunk(&mut stream, &[b'x'; 64 * 1024]).await;
            }
            chunk(&mut stream, b"LAST").await;
            stream.write_all(b"0\r\n\r\n").await.expect("end");
        }
        "/files/upload" => {
            let length: usize = header(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .expect("a content-length");
            let mut sum: u64 = rest.iter().map(|&b| b as u64).sum();
            let mut got = rest.len();
            let mut piece = vec![0u8; 64 * 1024];
            while got < length {
                let n = stream.read(&mut piece).await.expect("read body");
                assert!(n > 0, "upload cut short");
                sum += piece[..n].iter().map(|&b| b as u64).sum::<u64>();
                got += n;
            }
            let body = serde_json::json!({
                "bytes": got,
                "sum": sum,
                "host": header(&head, "host"),
                "token": header(&head, "x-execd-access-token"),
                "hop": header(&head, "x-hop"),
            })
            .to_string();
            let answer = format!(
                "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Upstream: yes\r\nConnection: close, x-upstream-hop\r\nX-Upstream-Hop: 1\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await.expect("answer");
        }
        "/pty/ws" => {
            assert_eq!(header(&head, "upgrade"), Some("websocket"));
            // The accept key is the client's business; this echo does not check it.
            stream
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: test\r\n\r\n")
                .await
                .expect("101");
            loop {
                let Some((opcode, payload)) = read_frame(&mut stream, &mut rest).await else {
                    return;
                };
                if opcode == 8 {
                    let _ = stream.write_all(&frame(8, &payload, None)).await;
                    return;
                }
                stream
                    .write_all(&frame(opcode, &payload, None))
                    .await
                    .expect("echo");
            }
        }
        _ => {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno",
                )
                .await;
        }
    }
}

/// A WebSocket frame (FIN set), masked when `mask` is given (client side).
fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n < 65536 => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Reads one frame (`pending` holds bytes already read); unmasks it.
async fn read_frame(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    loop {
        if let Some((opcode, payload, used)) = parse_frame(pending) {
            pending.drain(..used);
            return Some((opcode, payload));
        }
        let mut piece = [0u8; 65536];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut piece))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&piece[..n]);
    }
}

fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let key: Option<[u8; 4]> = if masked {
        let key = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    } else {
        None
    };
    let data = buf.get(at..at + len)?;
    let payload = match key {
        Some(k) => data.iter().enumerate().map(|(i, b)| b ^ k[i % 4]).collect(),
        None => data.to_vec(),
    };
    Some((b0 & 0x0f, payload, at + len))
}

async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) {
    let mut piece = [0u8; 65536];
    while !buf.windows(needle.len()).any(|w| w == needle) {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut piece))
            .await
            .expect("bytes in time")
            .expect("read");
        assert!(n > 0, "ended before {:?}", String::from_utf8_lossy(needle));
        buf.extend_from_slice(&piece[..n]);
    }
}

const TOKEN: &str = "front-token";

async fn host_in_front(upstream: &str) -> Host {
    Host::start(&[
        "--upstream",
        &format!("http://{upstream}"),
        "--access-token",
        TOKEN,
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_streams_through() {
    let up = upstream().await;
    let host = host_in_front(&up.addr).await;
    let mut stream = TcpStream::connect(&host.addr).await.expect("connect");
    let request = format!(
        "GET /files/download?path=%2Fbig HTTP/1.1\r\nHost: x\r\nX-EXECD-ACCESS-TOKEN: {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut buf = Vec::new();
    // The upstream holds the rest until told: FIRST must arrive on its own.
    read_until(&mut stream, &mut buf, b"FIRST").await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/octet-stream")
    );
    up.more.notify_one();
    read_until(&mut stream, &mut buf, b"LAST").await;
    read_until(&mut stream, &mut buf, b"\r\n0\r\n\r\n").await;
    let body_at = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let xs = buf[body_at..].iter().filter(|&&b| b == b'x').count();
    assert_eq!(xs, 16 * 64 * 1024, "every byte of the download");
    let head = String::from_utf8_lossy(&buf[..body_at]).to_ascii_lowercase();
    assert!(
        head.contains("via: 1.1 execd-host"),
        "the proxy says so: {head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_goes_through_with_the_token_and_without_hop_headers() {
    let up = upstream().await;
    let host = host_in_front(&up.addr).await;
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = body.iter().map(|&b| b as u64).sum();
    let response = host
        .send(
            "POST",
            "/files/upload",
            &[("Connection", "x-hop"), ("X-Hop", "secret")],
            &body,
        )
        .await
        .finish()
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    let seen = response.json();
    assert_eq!(
        seen["bytes"],
        body.len(),
        "more than --max-body-bytes passes"
    );
    assert_eq!(seen["sum"], sum);
    assert_eq!(seen["token"], TOKEN, "the token header goes on to execd");
    assert_eq!(seen["host"], up.addr.as_str(), "Host is the upstream's");
    assert!(
        seen["hop"].is_null(),
        "a header Connection names stays: {seen}"
    );
    assert_eq!(response.header("x-upstream"), Some("yes"));
    assert_eq!(response.header("x-upstream-hop"), None);

    // The host's token check comes first: nothing reaches the upstream.
    let refused = host
        .send(
            "POST",
            "/files/upload",
            &[("X-EXECD-ACCESS-TOKEN", "wrong")],
            b"{}",
        )
        .await
        .finish()
        .await;
    refused.assert_error(401, "UNAUTHORIZED");
    // The host's own routes are still its own.
    let pinged = host.call("GET", "/ping", "").await;
    assert_eq!(pinged.status, 200);
    assert_eq!(
        host.call("GET", "/nothing/here", "").await.status,
        404,
        "the upstream's 404"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_passes_through() {
    let up = upstream().await;
    let host = host_in_front(&up.addr).await;
    let (mut stream, mut pending) = open_websocket(&host.addr).await;
    for (i, message) in [b"hello".to_vec(), vec![7u8; 70_000], b"ls -la\n".to_vec()]
        .iter()
        .enumerate()
    {
        stream
            .write_all(&frame(2, message, Some([1, 2, 3, i as u8])))
            .await
            .expect("send frame");
        let (opcode, echoed) = read_frame(&mut stream, &mut pending)
            .await
            .expect("an echo");
        assert_eq!((opcode, &echoed), (2, message));
    }
    stream
        .write_all(&frame(8, b"", Some([9, 9, 9, 9])))
        .await
        .expect("close");
    let (opcode, _) = read_frame(&mut stream, &mut pending)
        .await
        .expect("a close");
    assert_eq!(opcode, 8);
}

/// Opens the upstream's WebSocket echo through the host at `addr`: the
/// stream, switched, and the bytes read past the 101's head.
async fn open_websocket(addr: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /pty/ws HTTP/1.1\r\nHost: x\r\nX-EXECD-ACCESS-TOKEN: {TOKEN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let (head, pending) = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(header(&head, "upgrade"), Some("websocket"));
    (stream, pending)
}

/// A WebSocket tunnel has left hyper's server, so draining connections
/// does not end it: an embedded host's shutdown must, or the tunnel
/// outlives the host in the embedder's runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_host_ends_its_websocket_tunnels_when_it_shuts_down() {
    let up = upstream().await;
    let host = execd_host::Host::builder()
        .policy("ring")
        .access_token(TOKEN)
        .upstream(format!("http://{}", up.addr))
        .build()
        .await
        .expect("the host starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let serving = tokio::spawn(host.serve(listener).into_future());
    let (mut stream, mut pending) = open_websocket(&addr).await;
    stream
        .write_all(&frame(1, b"before", Some([4, 3, 2, 1])))
        .await
        .expect("send frame");
    let echoed = read_frame(&mut stream, &mut pending).await;
    assert_eq!(echoed, Some((1, b"before".to_vec())), "the tunnel is open");

    host.shutdown(Duration::from_secs(1)).await;
    let mut piece = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut piece)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the tunnel is closed once shutdown returns: {read:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve ends")
        .expect("serve's task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_down_is_a_502_and_no_upstream_is_a_404() {
    // A port nobody listens on: bound, then closed.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let host = Host::start(&["--upstream", &format!("http://{addr}")]).await;
    host.call("GET", "/files/info?path=/", "")
        .await
        .assert_error(502, "UPSTREAM_UNAVAILABLE");
    host.call("POST", "/code/context", "{}")
        .await
        .assert_error(502, "UPSTREAM_UNAVAILABLE");
    assert_eq!(host.call("GET", "/ping", "").await.status, 200);

    let alone = Host::start(&[]).await;
    for path in [
        "/files/info?path=/",
        "/directories",
        "/code/contexts",
        "/pty",
    ] {
        alone
            .call("GET", path, "")
            .await
            .assert_error(404, "NOT_FOUND");
    }

    for bad in ["https://127.0.0.1:1", "ftp://x", "127.0.0.1:1", "http://"] {
        let refused = Host::try_start(&["--upstream", bad]).await;
        assert!(refused.is_err(), "{bad} refused at start");
    }
    let https = Host::try_start(&["--upstream", "https://127.0.0.1:1"]).await;
    assert!(
        https
            .err()
            .is_some_and(|e| e.contains("https is not supported"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_dot_segments_and_encoded_slashes_are_never_forwarded() {
    let up = upstream().await;
    let host = host_in_front(&up.addr).await;
    // CONNECT would open a tunnel through the host (hyper sent it on as
    // `CONNECT /`).
    let connect = host.call("CONNECT", &up.addr, "").await;
    connect.assert_error(405, "METHOD_NOT_ALLOWED");
    // Paths an upstream would normalise into another route than the one
    // the host checked. The test upstream answers 404 "no" to anything it
    // gets, so a 400 with the contract's body shows nothing was forwarded.
    for path in [
        "/files/../command",
        "/files/./info",
        "/files/..",
        "/files/%2e%2e/command",
        "/files/.%2E/command",
        "/files%2F..%2Fcommand",
        "/files/a%2fb",
        "/files/a%5Cb",
    ] {
        host.call("GET", path, "")
            .await
            .assert_error(400, "INVALID_PATH");
    }
    // An encoded slash in the query, and dots inside a name, still go.
    let fine = host.call("GET", "/files/..info?path=%2Fetc", "").await;
    assert_eq!((fine.status, fine.text().as_str()), (404, "no"));
}
