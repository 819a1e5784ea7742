//! Measures what a new command costs in policy set-up: instantiating the
//! compiled component and configuring it (`PolicyEngine::instantiate`),
//! for each embedded policy.
//!
//! `cargo run --release -p execd-host --example instantiate [N]`

use std::time::Instant;

use execd_host::internal::Tasks;
use execd_host::internal::policy::{EpochTicker, Limits, PolicyEngine, PolicySource};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let limits = Limits {
        memory_mb: 256,
        call_ms: 1000,
    };
    println!("| policy | compile at start | instantiate + configure, per command |");
    println!("|---|---|---|");
    for name in ["ring", "exclusive", "spill", "native-ring"] {
        let started = Instant::now();
        let engine = PolicyEngine::load(
            &PolicySource::Named(name.into()),
            Vec::new(),
            limits,
            EpochTicker::Thread,
            &Tasks::default(),
        )
        .await?;
        let compile = started.elapsed();
        let dir = std::env::temp_dir().join(format!("execd-instantiate-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let scratch = engine.needs_directory().then_some(dir.as_path());
        // Warm up, then time N instances, each dropped before the next.
        for _ in 0..50 {
            drop(engine.instantiate(scratch).await?);
        }
        let started = Instant::now();
        for _ in 0..n {
            drop(engine.instantiate(scratch).await?);
        }
        let per = started.elapsed() / n;
        std::fs::remove_dir_all(&dir)?;
        println!(
            "| {name} | {:.1} ms | {:.1} µs |",
            compile.as_secs_f64() * 1e3,
            per.as_secs_f64() * 1e6
        );
    }
    Ok(())
}
