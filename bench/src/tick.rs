//! `execd-bench tick LINES PERIOD_US [GO_FIFO [PHASE_US]]`: the child the latency
//! figures run. Prints `LINES` lines on a fixed schedule, one every
//! `PERIOD_US` microseconds, each the wall-clock time in microseconds at
//! which it is written: a native loop, so the children cost little CPU
//! next to the host.
//!
//! With `GO_FIFO`, it first prints `ready` and waits (at most
//! [`GO_LIMIT`]) for the FIFO's writer to close it, so that many tickers
//! spawned one after another start together; `PHASE_US` then delays its
//! first line, so that many tickers can spread their lines over the period.

use std::ffi::CString;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::sinks::now_us;

/// The line a ticker prints before waiting for the go.
pub const READY: &[u8] = b"ready";
/// The longest wait for the go.
const GO_LIMIT: Duration = Duration::from_secs(120);

pub fn main(args: &[String]) -> Result<()> {
    let (lines, period_us, go, phase_us) = match args {
        [lines, period] => (lines, period, None, None),
        [lines, period, go] => (lines, period, Some(go), None),
        [lines, period, go, phase] => (lines, period, Some(go), Some(phase)),
        _ => bail!("usage: execd-bench tick LINES PERIOD_US [GO_FIFO [PHASE_US]]"),
    };
    let phase = match phase_us {
        Some(p) => Duration::from_micros(p.parse().context("PHASE_US")?),
        None => Duration::ZERO,
    };
    let lines: u64 = lines.parse().context("LINES")?;
    let period = Duration::from_micros(period_us.parse().context("PERIOD_US")?);
    let mut out = std::io::stdout().lock();
    if let Some(go) = go {
        let fifo = open_fifo(go)?;
        out.write_all(b"ready\n")?;
        out.flush()?;
        wait_for_hangup(fifo)?;
        std::thread::sleep(phase);
    }
    let mut line = Vec::with_capacity(32);
    let start = Instant::now();
    for i in 1..=lines {
        line.clear();
        writeln!(line, "{}", now_us())?;
        // One write per line: a pipe write of under PIPE_BUF bytes is atomic.
        out.write_all(&line)?;
        out.flush()?;
        if i < lines {
            let due = start + period * (i as u32);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    Ok(())
}

/// Opens the FIFO for reading without waiting for a writer.
fn open_fifo(path: &str) -> Result<libc::c_int> {
    let c = CString::new(path)?;
    // SAFETY: a valid C string; the fd is closed by the process's exit.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
    if fd < 0 {
        bail!("open {path}: {}", std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Waits until the FIFO's writer has closed it (Linux reports POLLHUP once
/// a writer that was there is gone), or the time limit passes.
fn wait_for_hangup(fd: libc::c_int) -> Result<()> {
    let deadline = Instant::now() + GO_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no go within {GO_LIMIT:?}");
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n > 0 && pfd.revents & libc::POLLHUP != 0 {
            return Ok(());
        }
        if n > 0 && pfd.revents & libc::POLLIN != 0 {
            // Data is not part of the protocol: drain it and wait on.
            let mut buf = [0u8; 64];
            // SAFETY: reading into a local buffer.
            unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        }
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            bail!("poll: {}", std::io::Error::last_os_error());
        }
    }
}
