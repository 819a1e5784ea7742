//! Figure 4: a reader resuming from 0 on a finished log: 1 GiB kept by the
//! default policy's segment files (page cache warm), against 64 MiB in a
//! roomy `ring`, passes interleaved in the same run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Ctx, Row, Verdict, expect_all_lines, stream};
use crate::api;
use crate::client::Pace;
use crate::cpu::Meter;
use crate::scripts;
use crate::sinks::{Count, TextBytes};
use crate::stats::{list, median, thousands};

const TARGET_MB_S: f64 = 500.0;
/// The default policy's replay against the roomy ring's: at least as fast.
const TARGET_RATIO: f64 = 1.0;

/// A finished log of 76-byte lines on one host, checked complete.
struct Finished {
    addr: SocketAddr,
    id: String,
    bytes: u64,
    text_bytes: u64,
    events: u64,
    /// Lines the host cut in two.
    split: u64,
}

impl Finished {
    /// `bytes` of 76-byte lines (and a partial one at the end), run in the
    /// foreground and read to the end, so the log is finished when this
    /// returns. One untimed pass then checks the whole log is there and
    /// warms the page cache.
    async fn make(addr: SocketAddr, bytes: u64) -> Result<Finished> {
        let newlines = bytes / 76;
        let logged = newlines + u64::from(!bytes.is_multiple_of(76)) + 1;
        let text_bytes = bytes - newlines;
        let s = stream(addr, &scripts::lines_76(bytes), Pace::default()).await?;
        expect_all_lines(&s, logged)?;
        let id = s.count.id.context("no init event")?;
        api::wait_finished(addr, &id, Duration::from_secs(60)).await?;
        let mut check = TextBytes::default();
        api::resume(addr, &id, 0)
            .await?
            .events(&mut check, Pace::default())
            .await?;
        if check.count.gaps > 0 || check.text != text_bytes || check.count.logged < logged {
            bail!(
                "replay: expected {text_bytes} bytes of text in at least {logged} events and no gap; got {} bytes in {} events and {} gap(s)",
                check.text,
                check.count.logged,
                check.count.gaps
            );
        }
        Ok(Finished {
            addr,
            id,
            bytes,
            text_bytes,
            events: check.count.logged,
            split: check.count.logged - logged,
        })
    }

    /// One timed pass from 0 to the end: MB/s of text and of SSE.
    async fn replay(&self) -> Result<(f64, f64)> {
        let start = Instant::now();
        let response = api::resume(self.addr, &self.id, 0).await?;
        let mut count = Count::default();
        let wire = response.events(&mut count, Pace::default()).await?;
        let secs = start.elapsed().as_secs_f64();
        if count.gaps > 0 || count.logged != self.events {
            bail!(
                "replay: a timed pass got {} events and {} gap(s), the check {}",
                count.logged,
                count.gaps,
                self.events
            );
        }
        Ok((
            self.text_bytes as f64 / secs / 1e6,
            wire as f64 / secs / 1e6,
        ))
    }

    fn checked(&self) -> String {
        format!(
            "checked: no gap, all {} bytes of text, in {} events ({} lines cut in two by the host)",
            thousands(self.text_bytes as f64),
            thousands(self.events as f64),
            self.split
        )
    }
}

pub async fn replay(ctx: &Ctx) -> Result<Vec<Row>> {
    let ring_bytes: u64 = ctx.size(64 << 20, 8 << 20);
    let default_bytes: u64 = ctx.size(1 << 30, 64 << 20);
    // Room for all of it: the ring charges 32 bytes per event on top of
    // the text, so 128 MiB and 2M events hold 64 MiB of 76-byte lines.
    let ring = ctx
        .host(&[
            "--policy",
            "ring",
            "--policy-config",
            "max-bytes=134217728",
            "--policy-config",
            "max-events=2000000",
        ])
        .await?;
    // The default policy; only the command's disk budget is raised, as
    // its default (1 GiB) cannot hold 1 GiB of text and its columns.
    let default = ctx.host(&["--command-disk-budget", "2G"]).await?;
    let on_ring = Finished::make(ring.addr, ring_bytes).await?;
    let on_default = Finished::make(default.addr, default_bytes).await?;
    let (mut r, mut r_wire, mut d, mut d_wire, mut pairs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let meter = Meter::start_all(&[ring.pid, default.pid]);
    for round in 0..ctx.runs.max(2) {
        let ((rr, rw), (dr, dw)) = if round % 2 == 0 {
            let first = on_ring.replay().await?;
            (first, on_default.replay().await?)
        } else {
            let second = on_default.replay().await?;
            (on_ring.replay().await?, second)
        };
        r.push(rr);
        r_wire.push(rw);
        d.push(dr);
        d_wire.push(dw);
        pairs.push(dr / rr);
    }
    let cpu = meter.report();
    let (ring_rate, default_rate) = (median(&r), median(&d));
    let ratio = default_rate / ring_rate;
    let mbps = |v: f64| format!("{v:.0}");
    Ok(vec![
        Row {
            id: "4",
            what: format!(
                "resume from 0 on a finished {} MiB log of 76-byte lines on the default configuration (`disk`, its segment files, page cache warm): MB/s of text / a roomy `ring`'s (below)",
                on_default.bytes >> 20
            ),
            target: format!(">= {TARGET_RATIO:.1}"),
            measured: format!("{ratio:.2} ({default_rate:.0} MB/s)"),
            verdict: Verdict::of(ratio >= TARGET_RATIO),
            note: format!(
                "{} interleaved pairs with the ring's; runs: {} MB/s of line text; SSE bytes on the wire: {} MB/s; per-pair ratios: {}; {} (ring + default); {}; the host ran with `--command-disk-budget 2G`",
                d.len(),
                list(&d, mbps),
                list(&d_wire, mbps),
                list(&pairs, |v| format!("{v:.2}")),
                cpu,
                on_default.checked()
            ),
        },
        Row {
            id: "4 ring",
            what: format!(
                "resume from 0 on a finished {} MiB log of 76-byte lines on a roomy `ring`: MB/s of text",
                on_ring.bytes >> 20
            ),
            target: format!(">= {TARGET_MB_S:.0} MB/s"),
            measured: format!("{ring_rate:.0} MB/s"),
            verdict: Verdict::of(ring_rate >= TARGET_MB_S),
            note: format!(
                "runs: {} MB/s of line text; SSE bytes on the wire: {} MB/s; {}",
                list(&r, mbps),
                list(&r_wire, mbps),
                on_ring.checked()
            ),
        },
    ])
}
