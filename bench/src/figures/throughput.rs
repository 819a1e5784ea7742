//! Figures 1, 2 and 5: one command's output streamed to one fast client.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;

use super::{Ctx, ROOMY, Row, Verdict, expect_all_lines, expect_complete, stream};
use crate::client::Pace;
use crate::cpu::Meter;
use crate::scripts;
use crate::stats::{list, median, thousands};

const TARGET_EVENTS_PER_S: f64 = 1_000_000.0;
const TARGET_SANDBOX_RATIO: f64 = 1.3;

fn seq(lines: u64) -> String {
    format!("seq 1 {lines}")
}

/// Warms the host up (first instance, allocator, page cache).
async fn warm_up(addr: SocketAddr) -> Result<()> {
    let s = stream(addr, &seq(1000), Pace::default()).await?;
    expect_complete(&s, 1001)
}

/// `seq 1 N` once: its duration, and how many lines the host cut in two.
async fn seq_run(addr: SocketAddr, lines: u64) -> Result<(Duration, u64)> {
    let s = stream(addr, &seq(lines), Pace::default()).await?;
    let split = expect_all_lines(&s, lines + 1)?;
    Ok((s.elapsed, split))
}

fn host_args(policy: &str) -> Vec<&str> {
    let mut args = vec!["--policy", policy];
    args.extend_from_slice(ROOMY);
    args
}

pub async fn short_lines(ctx: &Ctx) -> Result<Vec<Row>> {
    let lines = ctx.size(2_000_000, 200_000);
    let host = ctx.host(&host_args("ring")).await?;
    warm_up(host.addr).await?;
    let (mut rates, mut splits) = (Vec::new(), Vec::new());
    let meter = Meter::start(host.pid);
    for _ in 0..ctx.runs {
        let (elapsed, split) = seq_run(host.addr, lines).await?;
        rates.push(lines as f64 / elapsed.as_secs_f64());
        splits.push(split as f64);
    }
    let cpu = meter.report();
    // The same once with the ring's default bounds, for the note.
    let default = ctx.host(&["--policy", "ring"]).await?;
    warm_up(default.addr).await?;
    let d = stream(default.addr, &seq(lines), Pace::default()).await?;
    let rate = median(&rates);
    Ok(vec![Row {
        id: "1",
        what: format!("`seq 1 {lines}`, standard framing, one client: events/s"),
        target: format!(">= {}", thousands(TARGET_EVENTS_PER_S)),
        measured: format!("{} events/s", thousands(rate)),
        verdict: Verdict::of(rate >= TARGET_EVENTS_PER_S),
        note: format!(
            "runs: {} events/s; {cpu}; lines the host cut in two: {}; with the ring's default bounds (65536 events) the same client got {} of {} events and {} gap(s) in {:.2} s",
            list(&rates, thousands),
            list(&splits, thousands),
            thousands(d.count.logged as f64),
            thousands((lines + 1) as f64),
            d.count.gaps,
            d.elapsed.as_secs_f64()
        ),
    }])
}

/// Streams `command` `runs` times; MB/s of line text.
async fn large(
    ctx: &Ctx,
    id: &'static str,
    what: String,
    command: String,
    text_bytes: u64,
    logged: u64,
) -> Result<Vec<Row>> {
    let host = ctx.host(&host_args("ring")).await?;
    warm_up(host.addr).await?;
    let (mut rates, mut wire_rates, mut splits) = (Vec::new(), Vec::new(), Vec::new());
    let meter = Meter::start(host.pid);
    for _ in 0..ctx.runs {
        let s = stream(host.addr, &command, Pace::default()).await?;
        splits.push(expect_all_lines(&s, logged)? as f64);
        let secs = s.elapsed.as_secs_f64();
        rates.push(text_bytes as f64 / secs / 1e6);
        wire_rates.push(s.wire_bytes as f64 / secs / 1e6);
    }
    let mbps = |v: f64| format!("{v:.0}");
    Ok(vec![Row {
        id,
        what,
        target: "(none)".into(),
        measured: format!("{:.0} MB/s of text", median(&rates)),
        verdict: Verdict::Info,
        note: format!(
            "runs: {} MB/s of line text; SSE bytes on the wire: {} MB/s (1 MB = 10^6 B); {}; lines the host cut in two: {}",
            list(&rates, mbps),
            list(&wire_rates, mbps),
            meter.report(),
            list(&splits, thousands)
        ),
    }])
}

pub async fn lines_76(ctx: &Ctx) -> Result<Vec<Row>> {
    let lines: u64 = ctx.size(2_631_578, 263_157);
    let bytes = lines * 76;
    large(
        ctx,
        "2a",
        format!(
            "{} MB of 76-byte lines (`yes | head -c`)",
            bytes / 1_000_000
        ),
        scripts::lines_76(bytes),
        lines * 75,
        lines + 1,
    )
    .await
}

pub async fn lines_64k(ctx: &Ctx) -> Result<Vec<Row>> {
    let lines: u64 = ctx.size(4096, 400);
    let bytes = lines * 65536;
    large(
        ctx,
        "2b",
        format!(
            "{} MiB without newlines (`head -c | tr`), cut into 64 KiB lines",
            bytes >> 20
        ),
        scripts::no_newlines(bytes),
        bytes,
        lines + 1,
    )
    .await
}

/// Figure 1 on `ring` (wasm) and `native-ring`, one host each, runs
/// interleaved (ABBA) so drift in the machine's load hits both alike.
pub async fn sandbox_cost(ctx: &Ctx) -> Result<Vec<Row>> {
    let lines = ctx.size(2_000_000, 200_000);
    let wasm = ctx.host(&host_args("ring")).await?;
    let native = ctx.host(&host_args("native-ring")).await?;
    warm_up(wasm.addr).await?;
    warm_up(native.addr).await?;
    let (mut w, mut n, mut pairs) = (Vec::new(), Vec::new(), Vec::new());
    let runs = ctx.runs.max(2);
    let meter = Meter::start_all(&[wasm.pid, native.pid]);
    for round in 0..runs {
        let (tw, tn) = if round % 2 == 0 {
            let (tw, _) = seq_run(wasm.addr, lines).await?;
            (tw, seq_run(native.addr, lines).await?.0)
        } else {
            let (tn, _) = seq_run(native.addr, lines).await?;
            (seq_run(wasm.addr, lines).await?.0, tn)
        };
        let (tw, tn) = (tw.as_secs_f64(), tn.as_secs_f64());
        w.push(tw);
        n.push(tn);
        pairs.push(tw / tn);
    }
    let ratio = median(&w) / median(&n);
    let secs = |v: f64| format!("{v:.3}");
    let rate = |t: f64| thousands(lines as f64 / t);
    Ok(vec![Row {
        id: "5",
        what: format!("`seq 1 {lines}`: time on `ring` (wasm) / time on `native-ring`"),
        target: format!("<= {TARGET_SANDBOX_RATIO}"),
        measured: format!("{ratio:.2}"),
        verdict: Verdict::of(ratio <= TARGET_SANDBOX_RATIO),
        note: format!(
            "{runs} interleaved pairs; wasm: {} s (median {} events/s); native: {} s (median {} events/s); per-pair ratios: {}; {} (wasm + native)",
            list(&w, secs),
            rate(median(&w)),
            list(&n, secs),
            rate(median(&n)),
            list(&pairs, |r| format!("{r:.2}")),
            meter.report()
        ),
    }])
}
