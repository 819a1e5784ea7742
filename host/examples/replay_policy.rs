//! Measures a policy's share of a replay and of a live stream, without the
//! network: appends a log through `PolicyInstance`, then reads it back from
//! eid 0 the way a reader does (1024 events or 256 KiB a call), encoding
//! each answer as SSE into a reused buffer. The minimum over the passes is
//! quoted, which a busy machine disturbs least.
//!
//! `cargo run --release -p execd-host --example replay_policy [PASSES]`

use std::time::{Duration, Instant};

use execd_host::Framing;
use execd_host::internal::Tasks;
use execd_host::internal::policy::wit::{Batch, Channel, ReadResult};
use execd_host::internal::policy::{
    EpochTicker, Limits, PolicyEngine, PolicyInstance, PolicySource,
};
use execd_host::internal::sse;

const LINE: &[u8] = b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// Batches as the pump cuts them from 64 KiB pipe reads of `line`s.
fn batches(total: usize, line: &dyn Fn(usize) -> Vec<u8>) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut b = Batch::new();
    let mut bytes = 0;
    for i in 0..total {
        let l = line(i);
        bytes += l.len() + 1;
        b.push_line(
            Channel::Stdout,
            1_700_000_000_000 + (i / 100_000) as u64,
            &l,
            false,
        );
        if bytes >= 65536 {
            out.push(std::mem::take(&mut b));
            bytes = 0;
        }
    }
    if !b.is_empty() {
        out.push(b);
    }
    out
}

async fn read_all(p: &mut PolicyInstance, encode: bool, buf: &mut Vec<u8>) -> (u64, Duration) {
    let start = Instant::now();
    let mut cursor = 0;
    let mut events = 0;
    loop {
        match p.read(cursor, 1024, 256 * 1024).await.expect("read") {
            ReadResult::Events(mut e) => {
                // The text a disk policy left in its files, read as the
                // host's reader does.
                p.read_text(&mut e).expect("text in files");
                let n = e.batch.len() as u64 + u64::from(e.ending.is_some());
                if encode {
                    buf.clear();
                    sse::events(buf, Framing::Standard, &e);
                }
                events += n;
                cursor = e.first_eid + n - 1;
                if e.ending.is_some() {
                    break;
                }
            }
            ReadResult::Finished => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    (events, start.elapsed())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let passes: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let only = std::env::args().nth(2).unwrap_or_default();
    let limits = Limits {
        memory_mb: 2048,
        call_ms: 10_000,
    };
    let replay_lines = (1usize << 30) / 76;
    let ring_lines = (64usize << 20) / 76;
    let seq_lines = 2_000_000;
    // `EXECD_POLICIES`: the policies to measure, comma-separated; a path to
    // a `.wasm` is measured like `disk`.
    let names = std::env::var("EXECD_POLICIES").unwrap_or_else(|_| "disk,ring,native-disk".into());
    let mut cases: Vec<(&str, String, Vec<String>, usize, bool)> = Vec::new();
    for name in names.split(',') {
        if name == "ring" {
            let roomy = vec!["max-bytes=134217728".into(), "max-events=2000000".into()];
            cases.push(("replay", name.into(), roomy, ring_lines, false));
        } else {
            // `NAME@KEY=VALUE@...`: settings for the policy.
            let mut parts = name.split('@');
            let name = parts.next().unwrap_or_default();
            let settings: Vec<String> = parts.map(String::from).collect();
            cases.push(("replay", name.into(), settings.clone(), replay_lines, false));
            cases.push(("seq", name.into(), settings, seq_lines, true));
        }
    }
    let mut buf = Vec::with_capacity(1 << 20);
    for (what, name, settings, lines, seq) in cases {
        if !only.is_empty() && !only.split(',').any(|o| o == what || o == name.as_str()) {
            continue;
        }
        let settings = settings
            .iter()
            .map(|s| {
                let (k, v) = s.split_once('=').expect("k=v");
                (k.to_string(), v.to_string())
            })
            .collect();
        let engine = PolicyEngine::load(
            &PolicySource::Named(name.clone()),
            settings,
            limits,
            EpochTicker::Thread,
            &Tasks::default(),
        )
        .await?;
        let line = |i: usize| {
            if seq {
                (i + 1).to_string().into_bytes()
            } else {
                LINE.to_vec()
            }
        };
        let all = batches(lines, &line);
        let text: usize = all.iter().map(|b| b.text.len()).sum();
        let mut appends = Vec::new();
        let mut reads = Vec::new();
        let mut encoded = Vec::new();
        for pass in 0..passes.max(1) {
            let dir = std::env::temp_dir().join(format!(
                "execd-replay-policy-{}-{name}-{pass}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir)?;
            let scratch = engine.needs_directory().then_some(dir.as_path());
            let mut p = engine.instantiate(scratch).await?;
            p.set_disk_budget(4 << 30).await?;
            let start = Instant::now();
            if seq {
                // Live: a reader reads after every append, as it keeps up.
                let mut cursor = 0;
                let mut last = 0;
                // `EXECD_LAG`: reads per append while the command runs (a
                // reader slower than the command falls behind); the rest is
                // read after it.
                let lag: usize = std::env::var("EXECD_LAG")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(usize::MAX);
                for b in &all {
                    last = p.append(b).await?.last_eid;
                    let mut reads = 0;
                    while cursor < last && reads < lag {
                        reads += 1;
                        if let ReadResult::Events(e) = p.read(cursor, 1024, 256 * 1024).await? {
                            buf.clear();
                            sse::events(&mut buf, Framing::Standard, &e);
                            cursor = e.first_eid + e.batch.len() as u64 - 1;
                        }
                    }
                }
                {
                    while cursor < last {
                        if let ReadResult::Events(e) = p.read(cursor, 1024, 256 * 1024).await? {
                            buf.clear();
                            sse::events(&mut buf, Framing::Standard, &e);
                            cursor = e.first_eid + e.batch.len() as u64 - 1;
                        }
                    }
                }
                assert_eq!(last as usize, lines);
                appends.push(start.elapsed());
            } else {
                for b in &all {
                    p.append(b).await?;
                }
                appends.push(start.elapsed());
            }
            p.finish(execd_host::internal::policy::wit::Ending {
                outcome: execd_host::internal::policy::wit::Outcome::Completed,
                reason: execd_host::internal::policy::wit::Reason::Exit,
                signal: None,
                execution_ms: 1,
                timestamp_ms: 1,
            })
            .await?;
            if !seq {
                let (n, t) = read_all(&mut p, false, &mut buf).await;
                assert_eq!(n as usize, lines + 1);
                reads.push(t);
                let (_, t) = read_all(&mut p, true, &mut buf).await;
                encoded.push(t);
            }
            drop(p);
            std::fs::remove_dir_all(&dir)?;
        }
        let min = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
        let rate = |d: Duration| text as f64 / d.as_secs_f64() / 1e6;
        if seq {
            println!(
                "{what} {name}: {lines} lines appended and read live: min {:.3} s ({:?})",
                min(&appends).as_secs_f64(),
                appends
                    .iter()
                    .map(|d| (d.as_secs_f64() * 1000.0).round())
                    .collect::<Vec<_>>()
            );
        } else {
            println!(
                "{what} {name}: {} MiB: append min {:.0} MB/s; read min {:.0} MB/s ({:?}); read+SSE min {:.0} MB/s ({:?})",
                text >> 20,
                rate(min(&appends)),
                rate(min(&reads)),
                reads.iter().map(|d| rate(*d).round()).collect::<Vec<_>>(),
                rate(min(&encoded)),
                encoded.iter().map(|d| rate(*d).round()).collect::<Vec<_>>(),
            );
        }
    }
    Ok(())
}
