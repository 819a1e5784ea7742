//! Figures 1, 2 and 5: one command's output streamed to one fast client.
//! Figures 1 and 5 are ratios of runs interleaved in the same invocation,
//! so that the machine's load hits both sides alike.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;

use super::{Ctx, ROOMY, Row, Verdict, expect_all_lines, expect_complete, stream};
use crate::client::Pace;
use crate::cpu::Meter;
use crate::scripts;
use crate::stats::{list, median, thousands};

const TARGET_EVENTS_PER_S: f64 = 1_000_000.0;
/// Figure 1 on the default configuration, against a roomy `ring`.
const TARGET_DEFAULT_RATIO: f64 = 1.25;
const TARGET_SANDBOX_RATIO: f64 = 1.15;

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

/// Figure 1 `runs` times on two hosts, interleaved (ABBA) so drift in the
/// machine's load hits both alike; every run must deliver every line.
struct Pairs {
    /// Seconds per run on `a` and on `b`.
    a: Vec<f64>,
    b: Vec<f64>,
    /// Lines the host cut in two, per run on `a`.
    splits: Vec<f64>,
}

impl Pairs {
    async fn seq(a: SocketAddr, b: SocketAddr, lines: u64, runs: usize) -> Result<Pairs> {
        let mut p = Pairs {
            a: Vec::new(),
            b: Vec::new(),
            splits: Vec::new(),
        };
        for round in 0..runs.max(2) {
            let ((ta, split), (tb, _)) = if round % 2 == 0 {
                let first = seq_run(a, lines).await?;
                (first, seq_run(b, lines).await?)
            } else {
                let second = seq_run(b, lines).await?;
                (seq_run(a, lines).await?, second)
            };
            p.a.push(ta.as_secs_f64());
            p.b.push(tb.as_secs_f64());
            p.splits.push(split as f64);
        }
        Ok(p)
    }

    /// Median time on `a` over median time on `b`.
    fn ratio(&self) -> f64 {
        median(&self.a) / median(&self.b)
    }

    /// The runs, for a note: "A: ... s; B: ... s; per-pair ratios: ...".
    fn describe(&self, a: &str, b: &str, lines: u64) -> String {
        let secs = |v: f64| format!("{v:.3}");
        let rate = |t: f64| thousands(lines as f64 / t);
        let pairs: Vec<f64> = self.a.iter().zip(&self.b).map(|(a, b)| a / b).collect();
        format!(
            "{} interleaved pairs; {a}: {} s (median {} events/s); {b}: {} s (median {} events/s); per-pair ratios: {}",
            self.a.len(),
            list(&self.a, secs),
            rate(median(&self.a)),
            list(&self.b, secs),
            rate(median(&self.b)),
            list(&pairs, |r| format!("{r:.2}"))
        )
    }
}

/// Figure 1 on the default configuration (no policy flags: `disk`), as a
/// ratio to `ring` with room for the whole output, in the same run; and
/// the roomy ring's own rate beside it.
pub async fn short_lines(ctx: &Ctx) -> Result<Vec<Row>> {
    let lines = ctx.size(2_000_000, 200_000);
    let default = ctx.host(&[]).await?;
    let roomy = ctx.host(&host_args("ring")).await?;
    warm_up(default.addr).await?;
    warm_up(roomy.addr).await?;
    let meter = Meter::start_all(&[default.pid, roomy.pid]);
    let runs = Pairs::seq(default.addr, roomy.addr, lines, ctx.runs).await?;
    let cpu = meter.report();
    drop(roomy);
    // The same once with the ring's default bounds, for the note.
    let bounded = ctx.host(&["--policy", "ring"]).await?;
    warm_up(bounded.addr).await?;
    let d = stream(bounded.addr, &seq(lines), Pace::default()).await?;
    let ratio = runs.ratio();
    let rate = |t: &[f64]| lines as f64 / median(t);
    let (rate_default, rate_ring) = (rate(&runs.a), rate(&runs.b));
    Ok(vec![
        Row {
            id: "1",
            what: format!(
                "`seq 1 {lines}` to one client on the default configuration (`disk`), every event and no gap: time / time on a roomy `ring`"
            ),
            target: format!("<= {TARGET_DEFAULT_RATIO}"),
            measured: format!("{ratio:.2} ({} events/s)", thousands(rate_default)),
            verdict: Verdict::of(ratio <= TARGET_DEFAULT_RATIO),
            note: format!(
                "{}; lines the host cut in two (default): {}; {cpu} (default + ring)",
                runs.describe("default", "roomy ring", lines),
                list(&runs.splits, thousands)
            ),
        },
        Row {
            id: "1 ring",
            what: format!(
                "`seq 1 {lines}` on `ring` with room for all of it (the pairs above): events/s"
            ),
            target: format!(">= {}", thousands(TARGET_EVENTS_PER_S)),
            measured: format!("{} events/s", thousands(rate_ring)),
            verdict: Verdict::of(rate_ring >= TARGET_EVENTS_PER_S),
            note: format!(
                "with the ring's default bounds (65536 events) the same client got {} of {} events and {} gap(s) in {:.2} s",
                thousands(d.count.logged as f64),
                thousands((lines + 1) as f64),
                d.count.gaps,
                d.elapsed.as_secs_f64()
            ),
        },
    ])
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

/// Figure 1 on the default policy as wasm (`disk`) and built into the
/// host (`native-disk`), one host each, runs interleaved; and the same for
/// `ring` / `native-ring` beside it.
pub async fn sandbox_cost(ctx: &Ctx) -> Result<Vec<Row>> {
    let lines = ctx.size(2_000_000, 200_000);
    let disk = ctx.host(&["--policy", "disk"]).await?;
    let native_disk = ctx.host(&["--policy", "native-disk"]).await?;
    let ring = ctx.host(&host_args("ring")).await?;
    let native_ring = ctx.host(&host_args("native-ring")).await?;
    for host in [&disk, &native_disk, &ring, &native_ring] {
        warm_up(host.addr).await?;
    }
    let meter = Meter::start_all(&[disk.pid, native_disk.pid]);
    let on_disk = Pairs::seq(disk.addr, native_disk.addr, lines, ctx.runs).await?;
    let disk_cpu = meter.report();
    let meter = Meter::start_all(&[ring.pid, native_ring.pid]);
    let on_ring = Pairs::seq(ring.addr, native_ring.addr, lines, ctx.runs).await?;
    let ring_cpu = meter.report();
    let (disk_ratio, ring_ratio) = (on_disk.ratio(), on_ring.ratio());
    Ok(vec![
        Row {
            id: "5",
            what: format!(
                "`seq 1 {lines}`: time on the default policy `disk` (wasm) / time on `native-disk`"
            ),
            target: format!("<= {TARGET_SANDBOX_RATIO}"),
            measured: format!("{disk_ratio:.2}"),
            verdict: Verdict::of(disk_ratio <= TARGET_SANDBOX_RATIO),
            note: format!(
                "{}; {disk_cpu} (wasm + native)",
                on_disk.describe("wasm", "native", lines)
            ),
        },
        Row {
            id: "5 ring",
            what: format!("`seq 1 {lines}`: time on a roomy `ring` (wasm) / time on `native-ring`"),
            target: "(for comparison)".into(),
            measured: format!("{ring_ratio:.2}"),
            verdict: Verdict::Info,
            note: format!(
                "{}, right after the disk pairs; {ring_cpu} (wasm + native)",
                on_ring.describe("wasm", "native", lines)
            ),
        },
    ])
}
