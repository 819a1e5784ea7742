//! Figure 4: a reader resuming from 0 on a finished 64 MiB log.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Ctx, Row, Verdict};
use crate::api;
use crate::client::Pace;
use crate::cpu::Meter;
use crate::scripts;
use crate::sinks::{Count, TextBytes};
use crate::stats::{list, median, thousands};

const TARGET_MB_S: f64 = 500.0;

pub async fn replay(ctx: &Ctx) -> Result<Vec<Row>> {
    let bytes: u64 = ctx.size(64 << 20, 8 << 20);
    // 76-byte lines, and a partial one at the end.
    let newlines = bytes / 76;
    let logged = newlines + u64::from(!bytes.is_multiple_of(76)) + 1;
    let text_bytes = bytes - newlines;
    // Room for all of it: the ring charges 32 bytes per event on top of
    // the text, so 128 MiB and 2M events hold 64 MiB of 76-byte lines.
    let host = ctx
        .host(&[
            "--policy",
            "ring",
            "--policy-config",
            "max-bytes=134217728",
            "--policy-config",
            "max-events=2000000",
        ])
        .await?;
    let id = api::start_background(host.addr, &scripts::lines_76(bytes)).await?;
    api::wait_finished(host.addr, &id, Duration::from_secs(60)).await?;

    // One untimed pass first, checking the whole log is there: no gap,
    // every byte of text (the host may have cut some lines in two).
    let mut check = TextBytes::default();
    api::resume(host.addr, &id, 0)
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
    let (mut rates, mut wire_rates) = (Vec::new(), Vec::new());
    let meter = Meter::start(host.pid);
    for _ in 0..ctx.runs {
        let start = Instant::now();
        let response = api::resume(host.addr, &id, 0).await?;
        let mut count = Count::default();
        let wire = response.events(&mut count, Pace::default()).await?;
        let secs = start.elapsed().as_secs_f64();
        if count.gaps > 0 || count.logged != check.count.logged {
            bail!(
                "replay: a timed pass got {} events, the first {}",
                count.logged,
                check.count.logged
            );
        }
        rates.push(text_bytes as f64 / secs / 1e6);
        wire_rates.push(wire as f64 / secs / 1e6);
    }
    let rate = median(&rates);
    let mbps = |v: f64| format!("{v:.0}");
    Ok(vec![Row {
        id: "4",
        what: format!(
            "resume from 0 on a finished {} MiB log of 76-byte lines: MB/s of text",
            bytes >> 20
        ),
        target: format!(">= {TARGET_MB_S:.0} MB/s"),
        measured: format!("{rate:.0} MB/s"),
        verdict: Verdict::of(rate >= TARGET_MB_S),
        note: format!(
            "runs: {} MB/s of line text; SSE bytes on the wire: {} MB/s; {}; checked: no gap, all {} bytes of text, in {} events ({} lines cut in two by the host)",
            list(&rates, mbps),
            list(&wire_rates, mbps),
            meter.report(),
            thousands(text_bytes as f64),
            thousands(check.count.logged as f64),
            check.count.logged - logged
        ),
    }])
}
