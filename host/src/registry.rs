//! Every command the host knows: running ones, finished ones within their
//! retention, and tombstones that remember where expired logs ended.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::command::Command;
use crate::error::ApiError;
use crate::exec;
use crate::log::Log;
use crate::output::OutputFile;
use crate::policy::PolicyEngine;
use crate::request::RunRequest;
use crate::scratch::ScratchDir;
use hyper::StatusCode;

/// How many expired commands' terminal eids are remembered, so a resume at
/// the end still gets its 204.
const TOMBSTONES: usize = 100_000;
/// Retention when the policy cannot say (it failed).
const FALLBACK_RETENTION: Duration = Duration::from_secs(300);

/// Bounds on what requests may start.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Most commands running at once.
    pub max_commands: usize,
    /// Longest line sent as one event.
    pub max_line_bytes: usize,
}

pub struct Registry {
    commands: RwLock<HashMap<String, Arc<Command>>>,
    /// Commands whose pump has not finished.
    running: AtomicUsize,
    /// A log expired since the heap was last trimmed.
    freed: AtomicBool,
    /// The host is shutting down: no command may start. Set under the
    /// `commands` lock, so a start either lands before it (and is stopped
    /// with the rest) or sees it.
    closed: AtomicBool,
    bounds: Bounds,
    tombstones: Mutex<Tombstones>,
    policy: PolicyEngine,
    shell: PathBuf,
    state_dir: PathBuf,
}

/// Expired ids (as the 128-bit numbers they spell) and their terminal eids.
#[derive(Default)]
struct Tombstones {
    terminal: HashMap<u128, u64>,
    order: VecDeque<u128>,
}

/// What the registry knows of an id.
pub enum Lookup {
    Live(Arc<Command>),
    /// Expired; its log ended at this eid.
    Expired(u64),
    Unknown,
}

impl Registry {
    /// A registry; call from within the runtime (it starts the heap trimmer).
    pub fn new(policy: PolicyEngine, state_dir: PathBuf, bounds: Bounds) -> Arc<Registry> {
        let registry = Arc::new(Registry {
            commands: RwLock::default(),
            running: AtomicUsize::new(0),
            freed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            bounds,
            tombstones: Mutex::default(),
            policy,
            shell: exec::shell(),
            state_dir,
        });
        tokio::spawn(trim_heap(Arc::downgrade(&registry)));
        registry
    }

    pub fn get(&self, id: &str) -> Option<Arc<Command>> {
        self.commands
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn lookup(&self, id: &str) -> Lookup {
        if let Some(command) = self.get(id) {
            return Lookup::Live(command);
        }
        let tombstones = self.tombstones.lock().unwrap_or_else(|p| p.into_inner());
        let key = u128::from_str_radix(id, 16).ok().filter(|_| id.len() == 32);
        match key.and_then(|key| tombstones.terminal.get(&key)) {
            Some(eid) => Lookup::Expired(*eid),
            None => Lookup::Unknown,
        }
    }

    /// Starts a command: a policy instance for its log, the process, and
    /// the pump. The command is registered before this returns, so its id
    /// never answers 404 while it runs.
    pub async fn start(self: &Arc<Self>, request: RunRequest) -> Result<Arc<Command>, ApiError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SHUTTING_DOWN",
                "the host is shutting down",
            ));
        }
        let slot = RunningSlot::take(self)?;
        let id = new_id();
        let scratch = if self.policy.needs_directory() {
            let path = self.state_dir.join(format!("{id}.log"));
            Some(ScratchDir::create(path).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "RUNTIME_ERROR",
                    format!("cannot create the policy directory: {e}"),
                )
            })?)
        } else {
            None
        };
        let dir = scratch.as_ref().map(|s| s.path());
        let policy = self.policy.instantiate(dir).await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "POLICY_FAILED",
                e.to_string(),
            )
        })?;
        let output = if request.background {
            let path = self.state_dir.join(format!("{id}.out"));
            Some(OutputFile::create(path).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "RUNTIME_ERROR",
                    format!("cannot create the output file: {e}"),
                )
            })?)
        } else {
            None
        };
        let child = exec::spawn(&self.shell, &request).map_err(spawn_error)?;
        let command = Arc::new(Command::new(
            id.clone(),
            request.command,
            request.background,
            Log::new(id.clone(), policy),
            output,
            scratch,
        ));
        command.status().pgid = child.id().map(|pid| pid as i32);
        let closed = {
            let mut commands = self.commands.write().unwrap_or_else(|p| p.into_inner());
            commands.insert(id, Arc::clone(&command));
            self.closed.load(Ordering::SeqCst)
        };
        if closed {
            // Shutdown began while this one was being set up, after the
            // host had signalled the others: it must not outlive the host.
            command.signal(libc::SIGKILL);
        }
        let registry = Arc::clone(self);
        let pumped = Arc::clone(&command);
        let timeout = request.timeout;
        let max_line = self.bounds.max_line_bytes;
        tokio::spawn(async move {
            exec::pump(Arc::clone(&pumped), child, timeout, max_line).await;
            drop(slot);
            let retention = match pumped.log.retention_ms().await {
                Some(ms) => Duration::from_millis(ms),
                None => FALLBACK_RETENTION,
            };
            tokio::time::sleep(retention).await;
            registry.expire(&pumped).await;
        });
        Ok(command)
    }

    /// Refuses new commands from now on (at shutdown, before the running
    /// ones are stopped).
    pub fn close(&self) {
        let _commands = self.commands.write().unwrap_or_else(|p| p.into_inner());
        self.closed.store(true, Ordering::SeqCst);
    }

    async fn expire(&self, command: &Command) {
        let terminal = command.log.terminal().await.unwrap_or(0);
        self.commands
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&command.id);
        if let Ok(key) = u128::from_str_radix(&command.id, 16) {
            let mut tombstones = self.tombstones.lock().unwrap_or_else(|p| p.into_inner());
            tombstones.terminal.insert(key, terminal);
            tombstones.order.push_back(key);
            while tombstones.order.len() > TOMBSTONES {
                if let Some(old) = tombstones.order.pop_front() {
                    tombstones.terminal.remove(&old);
                }
            }
        }
        self.freed.store(true, Ordering::Release);
    }

    /// How many commands are running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Every command still known, for shutdown.
    pub fn all(&self) -> Vec<Arc<Command>> {
        self.commands
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// How often the heap is trimmed after logs expired.
const TRIM_EVERY: Duration = Duration::from_secs(2);

/// Hands memory freed by expired logs back to the OS, every
/// [`TRIM_EVERY`] while logs expire: glibc keeps freed heap pages
/// otherwise, and a host that ran thousands of commands would keep their
/// peak for good.
async fn trim_heap(registry: std::sync::Weak<Registry>) {
    loop {
        tokio::time::sleep(TRIM_EVERY).await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        if registry.freed.swap(false, Ordering::AcqRel) {
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only walks the allocator's own free lists.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}

/// A spawn failure is the request's fault (a uid the host may not take, a
/// bad path) unless the host ran out of something: then it is a 503.
fn spawn_error(e: std::io::Error) -> ApiError {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "RESOURCE_EXHAUSTED",
            format!("the host cannot start a process now: {e}"),
        ),
        _ => ApiError::bad_body(format!("cannot start the command: {e}")),
    }
}

/// One of the `max_commands` places, held until the command's pump ends.
struct RunningSlot(Arc<Registry>);

impl RunningSlot {
    fn take(registry: &Arc<Registry>) -> Result<RunningSlot, ApiError> {
        let max = registry.bounds.max_commands;
        registry
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "TOO_MANY_COMMANDS",
                    format!(
                        "{max} commands are running, the most this host allows (--max-commands)"
                    ),
                )
            })?;
        Ok(RunningSlot(Arc::clone(registry)))
    }
}

impl Drop for RunningSlot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A new command id: 128 random bits, hex.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: fall back to time and a counter, still unique.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[..8].copy_from_slice(&crate::command::now_ms().to_le_bytes());
        bytes[8..].copy_from_slice(&n.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
