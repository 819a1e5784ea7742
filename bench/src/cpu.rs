//! Where the CPU time of a measurement went: the host, the commands it ran
//! (its reaped children), this client, and everything else on the machine
//! (another build or test run disturbing the figures shows up there).

use std::time::Instant;

/// CPU seconds at one moment.
#[derive(Clone, Debug, Default)]
struct Sample {
    /// Per host.
    hosts: Vec<f64>,
    commands: f64,
    client: f64,
    machine: f64,
}

fn sample(pids: &[u32]) -> Sample {
    let mut s = Sample {
        client: client_cpu(),
        machine: crate::machine::busy_secs().unwrap_or_default(),
        ..Sample::default()
    };
    for &pid in pids {
        let (host, commands) = proc_stat_cpu(pid).unwrap_or_default();
        s.hosts.push(host);
        s.commands += commands;
    }
    s
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// Starts at creation; [`Meter::report`] says what was spent since.
pub struct Meter {
    pids: Vec<u32>,
    start: Sample,
    wall: Instant,
}

impl Meter {
    pub fn start(host_pid: u32) -> Meter {
        Meter::start_all(&[host_pid])
    }

    /// Meters several hosts at once.
    pub fn start_all(pids: &[u32]) -> Meter {
        Meter {
            pids: pids.to_vec(),
            start: sample(pids),
            wall: Instant::now(),
        }
    }

    /// CPU seconds the hosts have spent since the start.
    pub fn host_secs(&self) -> f64 {
        let now = sample(&self.pids);
        now.hosts.iter().sum::<f64>() - self.start.hosts.iter().sum::<f64>()
    }

    /// What each party spent, in seconds and in % of one core.
    pub fn report(&self) -> String {
        let now = sample(&self.pids);
        let wall = self.wall.elapsed().as_secs_f64();
        let pct = |cpu: f64| 100.0 * cpu / wall.max(1e-9);
        let hosts: Vec<f64> = now
            .hosts
            .iter()
            .zip(&self.start.hosts)
            .map(|(b, a)| b - a)
            .collect();
        let host: f64 = hosts.iter().sum();
        let commands = now.commands - self.start.commands;
        let client = now.client - self.start.client;
        let others = (now.machine - self.start.machine - host - commands - client).max(0.0);
        let hosts = hosts
            .iter()
            .map(|h| format!("{h:.2} s ({:.0}% of a core)", pct(*h)))
            .collect::<Vec<_>>()
            .join(" + ");
        format!(
            "CPU over {wall:.1} s: host {hosts}, commands {commands:.2} s ({:.0}%), client {client:.2} s ({:.0}%), rest of the machine {others:.2} s ({:.0}%)",
            pct(commands),
            pct(client),
            pct(others),
        )
    }
}

/// (own, reaped children's) CPU seconds of `pid`, from `/proc/PID/stat`.
fn proc_stat_cpu(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is
    // field 3, utime 14, stime 15, cutime 16, cstime 17.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse().ok())
        .collect();
    let [utime, stime, cutime, cstime] = fields[..] else {
        return None;
    };
    let hz = clock_ticks();
    Some(((utime + stime) / hz, (cutime + cstime) / hz))
}

/// This process's CPU seconds.
fn client_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
