//! The tests' own TCP proxy between a client and the host. It can cut
//! every connection after a few hundred events at a random byte offset
//! (mid-event included, by FIN or by RST), refuse connections, or go away.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// What the proxy does with connections.
#[derive(Clone, Copy, Debug)]
pub struct Cutting {
    /// Events (blank-line-terminated frames) let through per connection,
    /// drawn from this range; then a cut within the next event.
    pub events: (usize, usize),
    /// After the first cut, refuse every new connection until
    /// [`Proxy::pass`].
    pub refuse_after_cut: bool,
    /// Cut one connection only: after it, connections pass whole.
    pub first_only: bool,
}

#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    cuts: AtomicUsize,
    mid_event_cuts: AtomicUsize,
    refused: AtomicUsize,
    refusing: AtomicBool,
    /// No more cutting (connections pass whole).
    passing: AtomicBool,
}

pub struct Proxy {
    pub url: String,
    counters: Arc<Counters>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.go_away();
    }
}

impl Proxy {
    /// A proxy to `upstream` (host:port); `cutting: None` passes all.
    pub async fn start(upstream: &str, cutting: Option<Cutting>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let counters = Arc::new(Counters::default());
        counters.passing.store(cutting.is_none(), Ordering::SeqCst);
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let upstream = upstream.to_string();
        let accept = {
            let counters = Arc::clone(&counters);
            let tasks = Arc::clone(&tasks);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    counters.connections.fetch_add(1, Ordering::SeqCst);
                    if counters.refusing.load(Ordering::SeqCst) {
                        counters.refused.fetch_add(1, Ordering::SeqCst);
                        reset(client);
                        continue;
                    }
                    let cutting = cutting.filter(|_| !counters.passing.load(Ordering::SeqCst));
                    let task = tokio::spawn(relay(
                        client,
                        upstream.clone(),
                        cutting,
                        Arc::clone(&counters),
                    ));
                    tasks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(task.abort_handle());
                }
            })
        };
        tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(accept.abort_handle());
        Proxy {
            url,
            counters,
            tasks,
        }
    }

    pub fn cuts(&self) -> usize {
        self.counters.cuts.load(Ordering::SeqCst)
    }

    pub fn mid_event_cuts(&self) -> usize {
        self.counters.mid_event_cuts.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> usize {
        self.counters.refused.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// From now on, connections pass whole, and none is refused.
    pub fn pass(&self) {
        self.counters.passing.store(true, Ordering::SeqCst);
        self.counters.refusing.store(false, Ordering::SeqCst);
    }

    /// The host "goes away": every open connection is cut and the port
    /// stops accepting (new connections are refused by the OS).
    pub fn go_away(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// Closes with RST rather than FIN.
fn reset(stream: TcpStream) {
    reset_on_close(std::os::fd::AsRawFd::as_raw_fd(&stream));
    drop(stream);
}

/// A zero linger: closing the socket sends RST and discards what is
/// unsent. (Tokio deprecates `set_linger` because a non-zero linger
/// blocks on drop; zero does not.)
fn reset_on_close(fd: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is an open socket owned by the caller; setsockopt only
    // reads `linger`.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

async fn relay(
    client: TcpStream,
    upstream: String,
    cutting: Option<Cutting>,
    counters: Arc<Counters>,
) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&client);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upward = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    });
    // Where to cut: after `budget` event terminators, plus a few bytes.
    let mut budget = cutting.map(|c| {
        let mut rng = rand::rng();
        (
            rng.random_range(c.events.0..=c.events.1),
            rng.random_range(0..=60usize),
        )
    });
    let mut buf = vec![0u8; 16 * 1024];
    // The last two bytes let through: `\n\n` ends an event in both framings
    // (HTTP's head ends in `\r\n\r\n`, which never matches).
    let mut last = [0u8; 2];
    let mut cut = false;
    'relay: loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut end = n;
        if let Some((events, extra)) = budget.as_mut() {
            for (i, &b) in buf[..n].iter().enumerate() {
                if *events == 0 {
                    if *extra == 0 {
                        end = i;
                        cut = true;
                        if last != [b'\n', b'\n'] {
                            counters.mid_event_cuts.fetch_add(1, Ordering::SeqCst);
                        }
                        break;
                    }
                    *extra -= 1;
                }
                last = [last[1], b];
                if *events > 0 && last == [b'\n', b'\n'] {
                    *events -= 1;
                }
            }
        }
        if client_write.write_all(&buf[..end]).await.is_err() {
            break 'relay;
        }
        if cut {
            break;
        }
    }
    if cut {
        counters.cuts.fetch_add(1, Ordering::SeqCst);
        if cutting.is_some_and(|c| c.refuse_after_cut) {
            counters.refusing.store(true, Ordering::SeqCst);
        }
        if cutting.is_some_and(|c| c.first_only) {
            counters.passing.store(true, Ordering::SeqCst);
        }
        // Half the cuts by RST, half by FIN; `fd` is still open, as this
        // task holds the client's write half.
        if rand::rng().random_bool(0.5) {
            reset_on_close(fd);
        }
    }
    upward.abort();
    drop(client_write);
}
