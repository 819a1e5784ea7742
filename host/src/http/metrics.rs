//! Resource metrics as execd serves them (`GET /metrics`, and
//! `GET /metrics/watch` as SSE, one sample a second), with the field names
//! OpenSandbox's SDK reads: `cpu_count`, `cpu_used_pct`, `mem_total_mib`,
//! `mem_used_mib`, `timestamp` (Unix ms).
//!
//! When the host's cgroup (v2) is limited, that is the sandbox and its
//! files are the source: the CPU quota (`cpu.max`) and usage
//! (`cpu.stat`), the memory limit (`memory.max`) and use
//! (`memory.current`). Otherwise the machine is: the CPUs the host may
//! run on, `/proc/stat`, and `/proc/meminfo` (total less available).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::http::{self, App};
use crate::stream::sse::Framing;
use crate::time::now_ms;

/// What `GET /metrics` answers.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Metrics {
    pub cpu_count: f64,
    pub cpu_used_pct: f64,
    pub mem_total_mib: f64,
    pub mem_used_mib: f64,
    pub timestamp: u64,
}

/// How long `GET /metrics` watches the CPU to say how busy it is.
pub const CPU_WINDOW: Duration = Duration::from_millis(100);
/// Time between two samples of `/metrics/watch`.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Where the numbers come from.
pub struct Source {
    /// The host's cgroup v2 directory, if it has one.
    cgroup: Option<PathBuf>,
}

/// A CPU time reading: busy time and the time it was taken.
#[derive(Clone, Copy)]
pub struct CpuReading {
    /// Busy CPU time in microseconds (cgroup), or busy jiffies with
    /// `total` the sum of all jiffies (`/proc/stat`).
    busy: u64,
    total: Option<u64>,
    at: Instant,
}

const MIB: f64 = 1024.0 * 1024.0;

impl Source {
    pub fn new() -> Source {
        Source {
            cgroup: own_cgroup(),
        }
    }

    fn cgroup_file(&self, name: &str) -> Option<String> {
        let dir = self.cgroup.as_ref()?;
        std::fs::read_to_string(dir.join(name)).ok()
    }

    /// CPUs the sandbox may use: the cgroup quota when there is one (it
    /// may be fractional), else the CPUs this process may run on.
    fn cpu_limit(&self) -> (f64, bool) {
        let online = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let quota = self.cgroup_file("cpu.max").and_then(|text| {
            let mut fields = text.split_whitespace();
            let quota: f64 = fields.next()?.parse().ok()?;
            let period: f64 = fields.next()?.parse().ok()?;
            (period > 0.0).then(|| quota / period)
        });
        match quota {
            Some(q) if q > 0.0 && q < online => (q, true),
            _ => (online, false),
        }
    }

    /// Reads the CPU counters now.
    pub fn cpu(&self) -> Option<CpuReading> {
        let at = Instant::now();
        if self.cpu_limit().1 {
            let stat = self.cgroup_file("cpu.stat")?;
            let usage = stat.lines().find_map(|l| {
                l.strip_prefix("usage_usec ")
                    .and_then(|v| v.trim().parse().ok())
            })?;
            return Some(CpuReading {
                busy: usage,
                total: None,
                at,
            });
        }
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest is in user).
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        Some(CpuReading {
            busy: total.saturating_sub(idle),
            total: Some(total),
            at,
        })
    }

    /// A sample, with the CPU use between `before` and now (0 without one).
    pub fn sample(&self, before: Option<CpuReading>) -> (Metrics, Option<CpuReading>) {
        let (cpu_count, _) = self.cpu_limit();
        let now = self.cpu();
        let cpu_used_pct = match (before, now) {
            (Some(a), Some(b)) => match (a.total, b.total) {
                (Some(ta), Some(tb)) if tb > ta => {
                    100.0 * b.busy.saturating_sub(a.busy) as f64 / (tb - ta) as f64
                }
                (None, None) => {
                    let wall = b.at.duration_since(a.at).as_micros() as f64 * cpu_count;
                    if wall > 0.0 {
                        100.0 * b.busy.saturating_sub(a.busy) as f64 / wall
                    } else {
                        0.0
                    }
                }
                _ => 0.0,
            },
            _ => 0.0,
        };
        let (mem_total, mem_used) = self.memory();
        let metrics = Metrics {
            cpu_count,
            cpu_used_pct: round2(cpu_used_pct.clamp(0.0, 100.0)),
            mem_total_mib: round2(mem_total / MIB),
            mem_used_mib: round2(mem_used / MIB),
            timestamp: now_ms(),
        };
        (metrics, now)
    }

    /// Total and used memory in bytes.
    fn memory(&self) -> (f64, f64) {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |name: &str| {
            meminfo.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                let kib: f64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
                Some(kib * 1024.0)
            })
        };
        let machine_total = field("MemTotal").unwrap_or(0.0);
        let limit = self
            .cgroup_file("memory.max")
            .and_then(|t| t.trim().parse::<f64>().ok())
            .filter(|&l| l > 0.0 && (machine_total == 0.0 || l < machine_total));
        let current = self
            .cgroup_file("memory.current")
            .and_then(|t| t.trim().parse::<f64>().ok());
        match (limit, current) {
            (Some(limit), Some(current)) => (limit, current.min(limit)),
            _ => {
                let available = field("MemAvailable").unwrap_or(machine_total);
                (machine_total, (machine_total - available).max(0.0))
            }
        }
    }
}

impl Default for Source {
    fn default() -> Self {
        Source::new()
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `/sys/fs/cgroup/<path>` from the `0::<path>` line of
/// `/proc/self/cgroup` (cgroup v2), if that directory exists.
fn own_cgroup() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    dir.join("cgroup.controllers").exists().then_some(dir)
}

/// One sample for `GET /metrics`: the CPU watched for [`CPU_WINDOW`].
pub async fn once(source: &Source) -> Metrics {
    let before = source.cpu();
    tokio::time::sleep(CPU_WINDOW).await;
    source.sample(before).0
}

// The HTTP side (routes in `http`).

type Answer =
    Result<hyper::Response<crate::http::body::ResponseBody>, crate::http::error::ApiError>;

/// `GET /metrics`.
pub async fn get(app: &App) -> Answer {
    http::json_response(&once(&app.metrics).await)
}

/// `GET /metrics/watch`: a sample every [`WATCH_EVERY`] as SSE `data:`
/// lines (bare JSON objects in legacy framing), until the client leaves
/// or the host stops.
pub fn watch(app: &Arc<App>, req: &hyper::Request<crate::http::RequestBody>) -> Answer {
    let framing = http::framing(app, req)?;
    let (tx, body) = crate::http::body::channel();
    let app = Arc::clone(app);
    app.tasks.clone().spawn(async move {
        let mut shutdown = app.shutdown.clone();
        let mut before = app.metrics.cpu();
        let mut ticks = tokio::time::interval(WATCH_EVERY);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = crate::http::server::stopped(&mut shutdown) => return,
            }
            let (metrics, now) = app.metrics.sample(before);
            before = now;
            let Ok(json) = serde_json::to_string(&metrics) else {
                return;
            };
            let frame = match framing {
                Framing::Standard => format!("data: {json}\n\n"),
                Framing::Legacy => format!("{json}\n\n"),
            };
            if tx.send(bytes::Bytes::from(frame)).await.is_err() {
                return;
            }
        }
    });
    Ok(http::event_stream(body))
}
