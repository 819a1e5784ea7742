//! Figure 6: the host's resident memory (`VmRSS` of its pid).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::task::JoinSet;

use super::{Ctx, Row, Verdict, expect_complete, stream};
use crate::api;
use crate::client::Pace;
use crate::cpu::Meter;
use crate::host::Host;
use crate::sinks::Count;
use crate::stats::thousands;

const TARGET_RETAINED_KIB: f64 = 256.0;
/// The slow reader's pace: 64 KiB every 10 ms.
const SLOW: Pace = Pace {
    read_bytes: 64 * 1024,
    pause: Some(Duration::from_millis(10)),
};
/// "Bounded" for the slow reader: growth within the ring's default byte cap.
const SLOW_BOUND_KIB: u64 = 64 * 1024;

/// Lets the host settle (freed memory, finished tasks) before a reading.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// `echo hi` `n` times, `parallel` at a time; their ids.
async fn echo_many(addr: SocketAddr, n: usize, parallel: usize) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    let mut tasks = JoinSet::new();
    let mut started = 0;
    while started < n || !tasks.is_empty() {
        while started < n && tasks.len() < parallel {
            tasks.spawn(async move { stream(addr, "echo hi", Pace::default()).await });
            started += 1;
        }
        if let Some(joined) = tasks.join_next().await {
            let s = joined??;
            expect_complete(&s, 2)?;
            ids.push(s.count.id.context("no init event")?);
        }
    }
    Ok(ids)
}

pub async fn retained(ctx: &Ctx) -> Result<Vec<Row>> {
    let n = ctx.size(1000, 200);
    let host = ctx.host(&[]).await?;
    echo_many(host.addr, 20, 4).await?;
    settle().await;
    let before = host.rss_kib()?;
    let ids = echo_many(host.addr, n, 4).await?;
    settle().await;
    let after = host.rss_kib()?;
    // All of them are still retained (default retention 300 s).
    for id in &ids {
        let status = api::status(host.addr, id).await?;
        if status["running"] != false {
            bail!("command {id} is not a finished, retained command: {status}");
        }
    }
    let per = after.saturating_sub(before) as f64 / n as f64;
    Ok(vec![Row {
        id: "6a",
        what: format!("host RSS per retained finished `echo hi`, over {n} commands"),
        target: format!("<= {TARGET_RETAINED_KIB:.0} KiB"),
        measured: format!("{per:.1} KiB"),
        verdict: Verdict::of(per <= TARGET_RETAINED_KIB),
        note: format!(
            "RSS {} KiB before, {} KiB after; all {n} still answer their status as finished",
            thousands(before as f64),
            thousands(after as f64)
        ),
    }])
}

pub async fn idle_readers(ctx: &Ctx) -> Result<Vec<Row>> {
    let n = ctx.size(500, 100);
    let host = ctx.host(&["--max-readers", "2000"]).await?;
    let id = api::start_background(host.addr, "sleep 60").await?;
    // Warm-up: a few readers come and go.
    for _ in 0..5 {
        drop(api::resume(host.addr, &id, 0).await?);
    }
    settle().await;
    let before = host.rss_kib()?;
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        readers.push(api::resume(host.addr, &id, 0).await?);
    }
    settle().await;
    let after = host.rss_kib()?;
    api::interrupt(host.addr, &id).await?;
    // Every reader then gets the terminal event and its stream ends.
    let mut tasks = JoinSet::new();
    for reader in readers {
        tasks.spawn(async move {
            let mut count = Count::default();
            reader.events(&mut count, Pace::default()).await?;
            Ok::<_, anyhow::Error>(count.logged)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if joined?? != 1 {
            bail!("an idle reader did not end with exactly the terminal event");
        }
    }
    let per = after.saturating_sub(before) as f64 / n as f64;
    Ok(vec![Row {
        id: "6b",
        what: format!("host RSS per idle reader, {n} readers resumed on `sleep 60`"),
        target: "(none)".into(),
        measured: format!("{per:.1} KiB"),
        verdict: Verdict::Info,
        note: format!(
            "RSS {} KiB before, {} KiB with the readers; all ended after DELETE",
            thousands(before as f64),
            thousands(after as f64)
        ),
    }])
}

/// Samples the host's RSS every 100 ms until stopped; the largest sample.
fn sample_rss(host: &Host, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, usize)> {
    let pid = host.pid;
    tokio::spawn(async move {
        let (mut peak, mut samples) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            if let Ok(kib) = crate::host::rss_of(pid) {
                peak = peak.max(kib);
                samples += 1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (peak, samples)
    })
}

pub async fn slow_reader(ctx: &Ctx) -> Result<Vec<Row>> {
    let lines: u64 = ctx.size(2_000_000, 200_000);
    let host = ctx.host(&[]).await?;
    let warm = stream(host.addr, "seq 1 10000", Pace::default()).await?;
    expect_complete(&warm, 10_001)?;
    settle().await;
    let before = host.rss_kib()?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(&host, Arc::clone(&stop));
    let start = Instant::now();
    let meter = Meter::start(host.pid);
    let s = stream(host.addr, &format!("seq 1 {lines}"), SLOW).await;
    stop.store(true, Ordering::Relaxed);
    let (peak, samples) = sampler.await?;
    let s = s?;
    let hwm = host.peak_rss_kib()?;
    let growth = peak.saturating_sub(before);
    Ok(vec![Row {
        id: "6c",
        what: format!(
            "host RSS while `seq 1 {lines}` streams to a client reading 64 KiB per 10 ms"
        ),
        target: format!("bounded (peak - before <= {} MiB)", SLOW_BOUND_KIB >> 10),
        measured: format!("+{:.1} MiB peak", growth as f64 / 1024.0),
        verdict: Verdict::of(growth <= SLOW_BOUND_KIB),
        note: format!(
            "RSS {} KiB before, peak {} KiB over {samples} samples (VmHWM {} KiB); the client got {} events and {} gap(s) in {:.1} s, {:.1} MB of SSE; {}",
            thousands(before as f64),
            thousands(peak as f64),
            thousands(hwm as f64),
            thousands(s.count.logged as f64),
            s.count.gaps,
            start.elapsed().as_secs_f64(),
            s.wire_bytes as f64 / 1e6,
            meter.report()
        ),
    }])
}
