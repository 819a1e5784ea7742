//! Figure 8: how long a host takes to start on a state directory that a
//! previous host left with 1,000 retained logs (issue 11), against the
//! same start on an empty directory.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::task::JoinSet;

use super::{Ctx, Row, Verdict, expect_complete, stream};
use crate::api;
use crate::client::Pace;
use crate::host::Host;
use crate::stats::{list, median, thousands};

/// Lines each retained command printed.
const LINES: u64 = 100;

/// Starts a host on `dir`; the time to its `listening on` line, which it
/// prints once it has recovered the directory.
async fn timed_start(ctx: &Ctx, dir: &str) -> Result<(Host, Duration)> {
    let t = Instant::now();
    let host = ctx.host(&["--state-dir", dir]).await?;
    Ok((host, t.elapsed()))
}

pub async fn startup(ctx: &Ctx) -> Result<Vec<Row>> {
    let n = ctx.size(1000, 100);
    let full = ctx.binary.scratch("restart-state");
    let empty = ctx.binary.scratch("restart-empty");
    for dir in [&full, &empty] {
        let _ = std::fs::remove_dir_all(dir);
    }
    let (full, empty) = (
        full.to_string_lossy().into_owned(),
        empty.to_string_lossy().into_owned(),
    );

    // The directory to recover: `n` finished logs of `seq 1 100`.
    let (mut host, _) = timed_start(ctx, &full).await?;
    let addr = host.addr;
    let command = format!("seq 1 {LINES}");
    let mut ids = Vec::with_capacity(n);
    let mut tasks = JoinSet::new();
    let mut started = 0;
    while started < n || !tasks.is_empty() {
        while started < n && tasks.len() < 8 {
            let command = command.clone();
            tasks.spawn(async move { stream(addr, &command, Pace::default()).await });
            started += 1;
        }
        if let Some(joined) = tasks.join_next().await {
            let s = joined??;
            expect_complete(&s, LINES + 1)?;
            ids.push(s.count.id.clone().unwrap_or_default());
        }
    }
    host.stop().await;
    let on_disk = dir_bytes(std::path::Path::new(&full));

    let (mut recovered, mut fresh, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ctx.runs {
        let (mut host, took) = timed_start(ctx, &empty).await?;
        fresh.push(took.as_secs_f64() * 1000.0);
        host.stop().await;
        let (mut host, took) = timed_start(ctx, &full).await?;
        recovered.push(took.as_secs_f64() * 1000.0);
        rss.push(host.rss_kib()? as f64);
        // Every log is served again: a sample, resumed whole.
        for id in ids.iter().step_by((n / 10).max(1)) {
            let status = api::status(host.addr, id).await?;
            if status["running"] != false {
                bail!("{id} is not served as finished after the restart: {status}");
            }
            let mut count = crate::sinks::Count::default();
            api::resume(host.addr, id, 0)
                .await?
                .events(&mut count, Pace::default())
                .await?;
            if count.logged != LINES + 1 || count.gaps > 0 {
                bail!(
                    "{id} after the restart: {} events, {} gaps",
                    count.logged,
                    count.gaps
                );
            }
        }
        host.stop().await;
    }
    for dir in [&full, &empty] {
        let _ = std::fs::remove_dir_all(dir);
    }
    let (rec, empty_ms) = (median(&recovered), median(&fresh));
    Ok(vec![Row {
        id: "8",
        what: format!(
            "start-up on a `--state-dir` holding {n} finished logs of `seq 1 {LINES}` (default policy), to `listening on`"
        ),
        target: "(a figure)".into(),
        measured: format!(
            "{rec:.0} ms ({:.2} ms per log over an empty directory's {empty_ms:.0} ms)",
            (rec - empty_ms).max(0.0) / n as f64
        ),
        verdict: Verdict::Info,
        note: format!(
            "{} runs; with the logs: {} ms; empty directory: {} ms; host RSS after recovering: {} KiB (median); {} bytes on disk; a tenth of the logs resumed whole after each start",
            ctx.runs,
            list(&recovered, |v| format!("{v:.0}")),
            list(&fresh, |v| format!("{v:.0}")),
            thousands(median(&rss)),
            thousands(on_disk as f64),
        ),
    }])
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
