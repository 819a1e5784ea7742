//! Figure 9: what a command's start costs, with a cgroup per command (the
//! default where the host may make one) and without (`--cgroups off`):
//! `true`, one after another, timed from the POST to the end of its
//! stream, and 8 at a time for starts per second. The two hosts take
//! turns, run by run, so that they see the same machine.

use std::time::Instant;

use anyhow::Result;
use tokio::task::JoinSet;

use super::{Ctx, Row, Verdict, expect_complete, stream};
use crate::client::Pace;
use crate::stats::{list, median};

/// One host's figures for one run: median ms of a start alone, and
/// starts per second 8 at a time.
async fn measure(ctx: &Ctx, args: &[&str], alone: usize, together: usize) -> Result<(f64, f64)> {
    let mut host = ctx.host(args).await?;
    let addr = host.addr;
    let mut times = Vec::with_capacity(alone);
    for _ in 0..alone {
        let s = stream(addr, "true", Pace::default()).await?;
        expect_complete(&s, 1)?;
        times.push(s.elapsed.as_secs_f64() * 1000.0);
    }
    let t = Instant::now();
    let mut tasks = JoinSet::new();
    let mut started = 0;
    while started < together || !tasks.is_empty() {
        while started < together && tasks.len() < 8 {
            tasks.spawn(async move { stream(addr, "true", Pace::default()).await });
            started += 1;
        }
        if let Some(joined) = tasks.join_next().await {
            expect_complete(&joined??, 1)?;
        }
    }
    let rate = together as f64 / t.elapsed().as_secs_f64();
    host.stop().await;
    Ok((median(&times), rate))
}

pub async fn starts(ctx: &Ctx) -> Result<Vec<Row>> {
    let (alone, together) = ctx.size((100, 400), (20, 80));
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..ctx.runs {
        on.push(measure(ctx, &[], alone, together).await?);
        off.push(measure(ctx, &["--cgroups", "off"], alone, together).await?);
    }
    let ms = |v: &[(f64, f64)]| v.iter().map(|r| r.0).collect::<Vec<_>>();
    let rate = |v: &[(f64, f64)]| v.iter().map(|r| r.1).collect::<Vec<_>>();
    let (on_ms, off_ms) = (median(&ms(&on)), median(&ms(&off)));
    let (on_rate, off_rate) = (median(&rate(&on)), median(&rate(&off)));
    Ok(vec![Row {
        id: "9",
        what: format!(
            "`true` started and streamed to its end: alone ({alone} in a row, median ms) and 8 at a time ({together}, starts/s), default (a cgroup per command where the host may) / `--cgroups off`"
        ),
        target: "(a figure)".into(),
        measured: format!("{on_ms:.2} / {off_ms:.2} ms, {on_rate:.0} / {off_rate:.0} starts/s"),
        verdict: Verdict::Info,
        note: format!(
            "{} runs, interleaved; default: {} ms, {} starts/s; --cgroups off: {} ms, {} starts/s (whether the default had cgroups is in the host's start-up log: where it may not make them, both are the same)",
            ctx.runs,
            list(&ms(&on), |v| format!("{v:.2}")),
            list(&rate(&on), |v| format!("{v:.0}")),
            list(&ms(&off), |v| format!("{v:.2}")),
            list(&rate(&off), |v| format!("{v:.0}")),
        ),
    }])
}
