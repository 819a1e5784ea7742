//! The figures of issue 4. Each entry starts its own host, runs within a
//! time limit, and returns rows for the table.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::api;
use crate::client::Pace;
use crate::host::{Binary, Host};
use crate::scripts;
use crate::sinks::Count;

mod latency;
mod memory;
mod replay;
mod restart;
mod scale;
mod starts;
mod throughput;

/// What every figure gets.
pub struct Ctx {
    pub binary: Binary,
    pub quick: bool,
    pub runs: usize,
}

impl Ctx {
    /// `full` normally, `quick` under `--quick`.
    pub fn size<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }

    pub async fn host(&self, args: &[&str]) -> Result<Host> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Host::start(&self.binary.path, &args).await
    }

    /// The command printing `lines` timestamps, one per `period_us`.
    pub fn ticker(&self, lines: u32, period_us: u32) -> String {
        scripts::ticker(&self.binary.bench, lines, period_us, None)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// No target: a number to report.
    Info,
    /// The figure did not complete.
    Error,
}

impl Verdict {
    pub fn of(pass: bool) -> Verdict {
        if pass { Verdict::Pass } else { Verdict::Fail }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "**FAIL**",
            Verdict::Info => "-",
            Verdict::Error => "**ERROR**",
        }
    }
}

/// One line of the table, and its note (the runs, what was checked).
pub struct Row {
    pub id: &'static str,
    pub what: String,
    pub target: String,
    pub measured: String,
    pub verdict: Verdict,
    pub note: String,
}

type Run<'a> = Pin<Box<dyn Future<Output = Result<Vec<Row>>> + 'a>>;

/// A figure (or one part of one): its id, title, and how to run it.
pub struct Entry {
    pub id: &'static str,
    pub title: &'static str,
    pub run: for<'a> fn(&'a Ctx) -> Run<'a>,
}

/// Every figure, in the order they run.
pub fn all() -> Vec<Entry> {
    vec![
        Entry {
            id: "1",
            title: "short lines to one client",
            run: |c| Box::pin(throughput::short_lines(c)),
        },
        Entry {
            id: "2a",
            title: "large output, 76-byte lines",
            run: |c| Box::pin(throughput::lines_76(c)),
        },
        Entry {
            id: "2b",
            title: "large output, 64 KiB lines",
            run: |c| Box::pin(throughput::lines_64k(c)),
        },
        Entry {
            id: "3a",
            title: "latency at 200 lines/s",
            run: |c| Box::pin(latency::idle(c)),
        },
        Entry {
            id: "3b",
            title: "latency at 200 lines/s, 50 other streams",
            run: |c| Box::pin(latency::loaded(c)),
        },
        Entry {
            id: "4",
            title: "replay of a finished 1 GiB log (default) and 64 MiB (ring)",
            run: |c| Box::pin(replay::replay(c)),
        },
        Entry {
            id: "5",
            title: "cost of the sandbox",
            run: |c| Box::pin(throughput::sandbox_cost(c)),
        },
        Entry {
            id: "6a",
            title: "RSS per retained finished command",
            run: |c| Box::pin(memory::retained(c)),
        },
        Entry {
            id: "6b",
            title: "RSS per idle connected reader",
            run: |c| Box::pin(memory::idle_readers(c)),
        },
        Entry {
            id: "6c",
            title: "RSS with a slow reader",
            run: |c| Box::pin(memory::slow_reader(c)),
        },
        Entry {
            id: "7a",
            title: "1000 concurrent commands at 100 lines/s",
            run: |c| Box::pin(scale::fast(c)),
        },
        Entry {
            id: "7b",
            title: "1000 concurrent commands at 10 lines/s",
            run: |c| Box::pin(scale::slow(c)),
        },
        Entry {
            id: "8",
            title: "start-up with 1,000 retained logs",
            run: |c| Box::pin(restart::startup(c)),
        },
        Entry {
            id: "9",
            title: "command starts, with and without cgroups",
            run: |c| Box::pin(starts::starts(c)),
        },
    ]
}

/// One foreground command streamed to the end.
pub struct Streamed {
    pub elapsed: Duration,
    pub count: Count,
    /// SSE bytes received (the body, without chunk framing).
    pub wire_bytes: u64,
}

/// Runs `command` in the foreground and counts its events; the clock runs
/// from just before the POST to the end of the response.
pub async fn stream(addr: SocketAddr, command: &str, pace: Pace) -> Result<Streamed> {
    let start = Instant::now();
    let response = api::run(addr, command).await?;
    let mut count = Count::default();
    let wire_bytes = response.events(&mut count, pace).await?;
    Ok(Streamed {
        elapsed: start.elapsed(),
        count,
        wire_bytes,
    })
}

/// Fails unless the stream carried exactly `logged` logged events (output
/// lines and the terminal event) and no gap.
pub fn expect_complete(s: &Streamed, logged: u64) -> Result<()> {
    if s.count.gaps > 0 || s.count.logged != logged {
        bail!(
            "expected {logged} logged events and no gap, got {} and {} gap(s), the last {}",
            s.count.logged,
            s.count.gaps,
            s.count.terminal.as_deref().unwrap_or("not terminal")
        );
    }
    Ok(())
}

/// Like [`expect_complete`] for output written in one fast burst, where the
/// host may cut a line in two (see BENCHMARKS.md): at least `logged`
/// events and no gap; returns how many extra events came.
pub fn expect_all_lines(s: &Streamed, logged: u64) -> Result<u64> {
    if s.count.gaps > 0 || s.count.logged < logged {
        bail!(
            "expected at least {logged} logged events and no gap, got {} and {} gap(s)",
            s.count.logged,
            s.count.gaps
        );
    }
    Ok(s.count.logged - logged)
}

/// Host flags giving the ring room for a figure's whole output, so a
/// reader that falls behind gets every event rather than a gap: what is
/// measured is delivery, not eviction.
pub const ROOMY: &[&str] = &[
    "--policy-config",
    "max-events=8388608",
    "--policy-config",
    "max-bytes=1073741824",
    "--policy-memory-mb",
    "2048",
];
