//! `execd-bench`: runs the real `execd-host`, real child processes and a
//! real client over loopback, and prints the figures of issue 4 as a
//! Markdown table.
//!
//! ```text
//! cargo build --release -p execd-host
//! cargo run --release -p execd-bench -- [--quick] [--runs N] [--only FIGURE] [--limit SECS] [--wait-idle SECS] [--host PATH]
//! ```

mod api;
mod client;
mod cpu;
mod figures;
mod host;
mod machine;
mod scripts;
mod sinks;
mod stats;
mod tick;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use figures::{Ctx, Row, Verdict};

const USAGE: &str = "usage: execd-bench [--quick] [--runs N] [--only FIGURE[,FIGURE...]] [--limit SECS] [--wait-idle SECS] [--host PATH]
  --quick        smaller sizes, one run: a smoke check
  --runs N       runs per figure (default 5; 1 with --quick); medians are quoted
  --only F       figures to run: 1, 2, 2a, 2b, 3, 3a, 3b, 4, 5, 6, 6a, 6b, 6c, 7, 7a, 7b, 8, 9
  --limit SECS   time limit of each figure (default 120)
  --wait-idle S  before each figure, wait up to S seconds for the machine to be idle (default 60; 0: don't)
  --host PATH    the execd-host binary (default: beside this executable)";

struct Args {
    quick: bool,
    runs: Option<usize>,
    only: Vec<String>,
    limit: Duration,
    wait_idle: Duration,
    host: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        quick: false,
        runs: None,
        only: Vec::new(),
        limit: Duration::from_secs(120),
        wait_idle: Duration::from_secs(60),
        host: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--runs" => {
                let n: usize = value("--runs")?.parse().context("--runs: a number")?;
                if n == 0 {
                    bail!("--runs must be at least 1");
                }
                args.runs = Some(n);
            }
            "--only" => args
                .only
                .extend(value("--only")?.split(',').map(|s| s.trim().to_string())),
            "--limit" => {
                let secs: u64 = value("--limit")?.parse().context("--limit: seconds")?;
                args.limit = Duration::from_secs(secs);
            }
            "--wait-idle" => {
                let secs: u64 = value("--wait-idle")?
                    .parse()
                    .context("--wait-idle: seconds")?;
                args.wait_idle = Duration::from_secs(secs);
            }
            "--host" => args.host = Some(PathBuf::from(value("--host")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("tick") {
        return match tick::main(&argv[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("execd-bench tick: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("execd-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("execd-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the selected figures and prints the report; false if a figure
/// failed to run.
async fn run(args: Args) -> Result<bool> {
    machine::raise_fd_limit();
    let entries: Vec<_> = figures::all()
        .into_iter()
        .filter(|e| {
            args.only.is_empty()
                || args
                    .only
                    .iter()
                    .any(|o| e.id == o || e.id.strip_prefix(o.as_str()).is_some_and(is_part))
        })
        .collect();
    if entries.is_empty() {
        bail!("--only {:?} matches no figure\n{USAGE}", args.only);
    }
    let ctx = Ctx {
        binary: host::Binary::prepare(args.host.clone())?,
        quick: args.quick,
        runs: args.runs.unwrap_or(if args.quick { 1 } else { 5 }),
    };
    let started = Instant::now();
    let load_before = machine::load();
    let mut rows: Vec<(Row, String)> = Vec::new();
    for entry in &entries {
        let mut waited = String::new();
        if !args.wait_idle.is_zero() {
            let t = Instant::now();
            let busy = machine::wait_idle(args.wait_idle).await;
            if busy >= 0.1 {
                waited = format!(
                    "; the machine was busy before it started ({busy:.1} cores after waiting {:.0} s)",
                    t.elapsed().as_secs_f64()
                );
            }
        }
        eprintln!("execd-bench: figure {} ({})...", entry.id, entry.title);
        let t = Instant::now();
        let result = tokio::time::timeout(args.limit, (entry.run)(&ctx)).await;
        let outcome = match result {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => vec![error_row(entry, format!("{e:#}"))],
            Err(_) => vec![error_row(
                entry,
                format!("aborted after the {} s limit", args.limit.as_secs()),
            )],
        };
        let context = format!("took {:.0} s{waited}", t.elapsed().as_secs_f64());
        for row in outcome {
            eprintln!(
                "execd-bench:   {} {}: {} [{}]",
                row.id,
                row.what,
                row.measured,
                row.verdict.label()
            );
            rows.push((row, context.clone()));
        }
    }
    print_report(&args, &ctx, &rows, &load_before, started.elapsed());
    Ok(rows.iter().all(|(r, _)| r.verdict != Verdict::Error))
}

/// True for a sub-figure suffix: `--only 3` selects `3a` and `3b`.
fn is_part(suffix: &str) -> bool {
    suffix.len() == 1 && suffix.chars().all(|c| c.is_ascii_lowercase())
}

fn error_row(entry: &figures::Entry, message: String) -> Row {
    Row {
        id: entry.id,
        what: entry.title.to_string(),
        target: String::new(),
        measured: "did not complete".into(),
        verdict: Verdict::Error,
        note: message,
    }
}

fn print_report(args: &Args, ctx: &Ctx, rows: &[(Row, String)], load_before: &str, took: Duration) {
    let mut command = String::from("cargo run --release -p execd-bench --");
    if args.quick {
        command.push_str(" --quick");
    }
    if let Some(n) = args.runs {
        command.push_str(&format!(" --runs {n}"));
    }
    if !args.only.is_empty() {
        command.push_str(&format!(" --only {}", args.only.join(",")));
    }
    println!("## execd-host benchmarks");
    println!();
    println!("- machine: {}", machine::describe());
    println!(
        "- load average: {load_before} at the start, {} at the end (the bench's own processes count); took {:.0} s",
        machine::load(),
        took.as_secs_f64()
    );
    println!(
        "- host: {} (work tree at {})",
        ctx.binary.source.display(),
        machine::tree()
    );
    println!(
        "- command: `{command}`; {} run(s) per figure, medians quoted",
        ctx.runs
    );
    println!();
    println!("| # | figure | target | measured | result |");
    println!("|---|---|---|---|---|");
    // A `|` inside a cell, even in backticks, would end the cell.
    let cell = |s: &str| s.replace('|', "\\|");
    for (row, _) in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            row.id,
            cell(&row.what),
            cell(&row.target),
            cell(&row.measured),
            row.verdict.label()
        );
    }
    println!();
    for (row, context) in rows {
        println!("- **{}**: {}; {context}.", row.id, row.note);
    }
}
