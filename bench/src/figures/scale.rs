//! Figure 7: many running commands, each streaming to its own client.
//!
//! Spawning a thousand commands takes seconds, so the commands are started
//! first and wait (printing `ready`) on a FIFO; when every client has seen
//! its `ready`, the bench closes the FIFO and all of them start printing,
//! their phases spread evenly over the period (independent commands, not a
//! thousand lines at the same instant). Start-up and streaming are
//! measured apart.

use std::ffi::CString;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::task::JoinSet;

use super::latency::{measure, read_timestamps};
use super::{Ctx, Row, Verdict};
use crate::api;
use crate::cpu::Meter;
use crate::scripts;
use crate::sinks::Ready;
use crate::stats::{self, list, median, percentile, thousands};

/// Runs at most: one takes 10 to 20 s.
const MAX_RUNS: usize = 3;
/// The longest wait for every command to be spawned and ready.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The FIFO the tickers wait on; dropping the writer is the go.
struct Go {
    writer: Option<File>,
}

impl Go {
    fn new(path: &Path) -> Result<Go> {
        let _ = std::fs::remove_file(path);
        let c = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: a valid C string.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            bail!(
                "mkfifo {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        // Read-write: opening does not wait for a reader, and the tickers
        // see a writer from the start.
        let writer = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        Ok(Go {
            writer: Some(writer),
        })
    }

    fn go(&mut self) {
        self.writer = None;
    }
}

/// What one run measured.
struct Run {
    /// From the first POST to every ticker ready.
    started: Duration,
    /// From the go to the last stream's end: every line.
    rate: f64,
    p50: u64,
    p99: u64,
    max: u64,
    /// Host CPU per line delivered, µs.
    host_us: f64,
    cpu: String,
}

async fn run_once(ctx: &Ctx, commands: usize, lines: u32, period_us: u32) -> Result<Run> {
    // A fresh host per run: the previous run's logs stay retained.
    let host = ctx.host(&["--max-commands", "4096"]).await?;
    let addr: SocketAddr = host.addr;
    measure(addr, &ctx.ticker(5, period_us), 5).await?;
    let fifo = ctx.binary.scratch("go");
    let mut go = Go::new(&fifo)?;
    let ready = Arc::new(Ready::default());
    let start = Instant::now();
    let mut clients = JoinSet::new();
    for i in 0..commands {
        let phase = (period_us as u64 * i as u64 / commands as u64) as u32;
        let ticker = scripts::ticker(&ctx.binary.bench, lines, period_us, Some((&fifo, phase)));
        let ready = Arc::clone(&ready);
        clients.spawn(async move {
            let response = api::run(addr, &ticker).await?;
            read_timestamps(response, lines, Some(ready)).await
        });
    }
    while ready.count.load(Ordering::Relaxed) < commands {
        if start.elapsed() > START_LIMIT {
            bail!(
                "only {} of {commands} commands ready after {START_LIMIT:?}",
                ready.count.load(Ordering::Relaxed)
            );
        }
        match clients.try_join_next() {
            Some(Ok(Err(e))) => return Err(e.context("a client failed before the go")),
            Some(Err(e)) => return Err(anyhow::Error::new(e).context("a client panicked")),
            Some(Ok(Ok(_))) => bail!("a stream ended before the go"),
            None => {}
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), ready.changed.notified()).await;
    }
    let started = start.elapsed();

    let meter = Meter::start(host.pid);
    let go_time = Instant::now();
    go.go();
    let mut all: Vec<u64> = Vec::with_capacity(commands * lines as usize);
    while let Some(joined) = clients.join_next().await {
        all.extend(joined??.into_iter().map(|(_, latency)| latency));
    }
    let secs = go_time.elapsed().as_secs_f64();
    all.sort_unstable();
    Ok(Run {
        started,
        rate: all.len() as f64 / secs,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        max: all.last().copied().unwrap_or(0),
        host_us: meter.host_secs() * 1e6 / all.len().max(1) as f64,
        cpu: meter.report(),
    })
}

/// 1000 commands at 100 lines/s each: the children alone keep most of
/// the two cores busy.
pub async fn fast(ctx: &Ctx) -> Result<Vec<Row>> {
    scale(ctx, "7a", ctx.size(500, 200), 10_000).await
}

/// 1000 commands at 10 lines/s each: the host's share of the machine.
pub async fn slow(ctx: &Ctx) -> Result<Vec<Row>> {
    scale(ctx, "7b", ctx.size(100, 30), 100_000).await
}

async fn scale(ctx: &Ctx, id: &'static str, lines: u32, period_us: u32) -> Result<Vec<Row>> {
    let commands: usize = ctx.size(1000, 200);
    let mut runs = Vec::new();
    for _ in 0..ctx.runs.min(MAX_RUNS) {
        runs.push(run_once(ctx, commands, lines, period_us).await?);
    }
    let col = |f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let (rates, p50s, p99s) = (
        col(|r| r.rate),
        col(|r| r.p50 as f64),
        col(|r| r.p99 as f64),
    );
    let started = col(|r| r.started.as_secs_f64());
    let host_us = col(|r| r.host_us);
    let max = runs.iter().map(|r| r.max).max().unwrap_or(0);
    let cpu = runs.last().map_or(String::new(), |r| r.cpu.clone());
    let ms = |v: f64| stats::ms(v as u64);
    let per_command = 1e6 / period_us as f64;
    let offered = commands as f64 * per_command;
    Ok(vec![Row {
        id,
        what: format!(
            "{commands} concurrent commands, {lines} lines each at {per_command:.0} lines/s, a client each: events/s in all, latency"
        ),
        target: "(none)".into(),
        measured: format!(
            "{} events/s, p50 {}, p99 {}",
            thousands(median(&rates)),
            ms(median(&p50s)),
            ms(median(&p99s))
        ),
        verdict: Verdict::Info,
        note: format!(
            "{} runs; offered {} lines/s; from the go to the last stream's end: {} events/s, p50 {}, p99 {}, max {}; \
             host CPU per line: {} µs; before that, spawning all {commands} (first POST to every one ready) took {}; last run's {cpu}",
            runs.len(),
            thousands(offered),
            list(&rates, thousands),
            list(&p50s, ms),
            list(&p99s, ms),
            stats::ms(max),
            list(&host_us, |v| format!("{v:.1}")),
            list(&started, |v| format!("{v:.1} s")),
        ),
    }])
}
