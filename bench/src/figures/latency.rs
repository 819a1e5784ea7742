//! Figure 3: from the child writing a line to the client receiving it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::task::JoinSet;

use super::{Ctx, Row, Verdict, stream};
use crate::api;
use crate::client::{Pace, Response};
use crate::cpu::Meter;
use crate::sinks::{Latency, Ready};
use crate::stats::{self, list, median, percentile, thousands};

const TARGET_P50_US: u64 = 1_000;
const TARGET_P99_US: u64 = 5_000;
/// 200 lines/s.
const PERIOD_US: u32 = 5_000;
/// Other streams in the loaded variant, and their line period (1 ms).
const OTHERS: usize = 50;
const OTHER_PERIOD_US: u32 = 1_000;

/// Reads a stream of `lines` timestamps to its end: (sent, latency) µs
/// per line, checked complete. `ready` counts a leading `ready` line.
pub async fn read_timestamps(
    response: Response,
    lines: u32,
    ready: Option<Arc<Ready>>,
) -> Result<Vec<(u64, u64)>> {
    let mut sink = Latency::new(ready);
    response.events(&mut sink, Pace::default()).await?;
    if sink.count.gaps > 0 || sink.samples.len() != lines as usize || sink.unparsed > 0 {
        bail!(
            "expected {lines} timestamps and no gap; got {} ({} unparsed, {} gaps), then {}",
            sink.samples.len(),
            sink.unparsed,
            sink.count.gaps,
            sink.count
                .terminal
                .as_deref()
                .unwrap_or("no terminal event")
        );
    }
    Ok(sink.samples)
}

/// One measured stream of `lines` timestamps printed by `ticker`: sorted
/// latencies, µs.
pub async fn measure(addr: SocketAddr, ticker: &str, lines: u32) -> Result<Vec<u64>> {
    let response = api::run(addr, ticker).await?;
    let mut samples: Vec<u64> = read_timestamps(response, lines, None)
        .await?
        .into_iter()
        .map(|(_, latency)| latency)
        .collect();
    samples.sort_unstable();
    Ok(samples)
}

/// Runs the measurement `runs` times; medians of the per-run p50 and p99.
async fn runs(ctx: &Ctx, addr: SocketAddr, lines: u32) -> Result<(Vec<f64>, Vec<f64>, u64)> {
    let (mut p50s, mut p99s, mut max) = (Vec::new(), Vec::new(), 0);
    let ticker = ctx.ticker(lines, PERIOD_US);
    for _ in 0..ctx.runs {
        let samples = measure(addr, &ticker, lines).await?;
        p50s.push(percentile(&samples, 0.50) as f64);
        p99s.push(percentile(&samples, 0.99) as f64);
        max = max.max(*samples.last().unwrap_or(&0));
    }
    Ok((p50s, p99s, max))
}

fn row(
    id: &'static str,
    what: String,
    (p50s, p99s, max): (Vec<f64>, Vec<f64>, u64),
    extra: String,
) -> Row {
    let (p50, p99) = (median(&p50s) as u64, median(&p99s) as u64);
    let fmt = |v: f64| stats::ms(v as u64);
    Row {
        id,
        what,
        target: format!(
            "p50 <= {}, p99 <= {}",
            stats::ms(TARGET_P50_US),
            stats::ms(TARGET_P99_US)
        ),
        measured: format!("p50 {}, p99 {}", stats::ms(p50), stats::ms(p99)),
        verdict: Verdict::of(p50 <= TARGET_P50_US && p99 <= TARGET_P99_US),
        note: format!(
            "runs: p50 {}; p99 {}; max over all runs {}{extra}",
            list(&p50s, fmt),
            list(&p99s, fmt),
            stats::ms(max)
        ),
    }
}

pub async fn idle(ctx: &Ctx) -> Result<Vec<Row>> {
    let lines = ctx.size(1000, 200);
    let host = ctx.host(&[]).await?;
    measure(host.addr, &ctx.ticker(20, PERIOD_US), 20).await?;
    let meter = Meter::start(host.pid);
    let result = runs(ctx, host.addr, lines).await?;
    Ok(vec![row(
        "3a",
        format!("{lines} lines at 200 lines/s, nothing else running"),
        result,
        format!("; {}", meter.report()),
    )])
}

pub async fn loaded(ctx: &Ctx) -> Result<Vec<Row>> {
    let lines = ctx.size(1000, 200);
    let host = ctx.host(&[]).await?;
    let addr = host.addr;
    measure(addr, &ctx.ticker(20, PERIOD_US), 20).await?;
    let meter = Meter::start(host.pid);
    // The others stream for as long as all the measured runs, and a little.
    let span_ms = (lines as u64 * PERIOD_US as u64 / 1000 + 300) * ctx.runs as u64 + 1000;
    let other_lines = (span_ms * 1000 / OTHER_PERIOD_US as u64) as u32;
    let started = Instant::now();
    let mut others = JoinSet::new();
    for _ in 0..OTHERS {
        let command = ctx.ticker(other_lines, OTHER_PERIOD_US);
        others.spawn(async move { stream(addr, &command, Pace::default()).await });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = runs(ctx, addr, lines).await;
    let mut other_events = 0;
    while let Some(joined) = others.join_next().await {
        let s = joined??;
        other_events += s.count.logged;
    }
    let other_rate = other_events as f64 / started.elapsed().as_secs_f64();
    let measured_lines = (lines as usize * ctx.runs) as f64;
    let host_us = meter.host_secs() * 1e6 / (other_events as f64 + measured_lines);
    Ok(vec![row(
        "3b",
        format!(
            "the same, while {OTHERS} other commands each stream a line per ms to their own client"
        ),
        result?,
        format!(
            "; the {OTHERS} others delivered {} events/s in all; host CPU per line: {host_us:.1} µs; {}",
            thousands(other_rate),
            meter.report()
        ),
    )])
}
