//! Every command the host knows: running ones, finished ones within their
//! retention, and tombstones that remember where expired logs ended.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::budget::{DiskUsage, Share};
use crate::command::{Command, Files};
use crate::error::RunError;
use crate::exec;
use crate::exec::cgroup::Cgroups;
use crate::exec::group::{self, Leader, ProcessGroup};
use crate::exec::output::OutputFile;
use crate::http::request::RunRequest;
use crate::keys::{KeyUse, Keys};
use crate::log::Log;
use crate::policy::PolicyEngine;
use crate::policy::wit::Reason;
use crate::record::{CommandRecord, RecordFile};
use crate::scratch::ScratchDir;
use crate::tasks::Tasks;
use crate::telemetry::{Metrics, Snapshot};

/// How many expired commands' terminal eids are remembered, so a resume at
/// the end still gets its 204.
const TOMBSTONES: usize = 100_000;
/// Retention when the policy cannot say (it failed).
const FALLBACK_RETENTION: Duration = Duration::from_secs(300);

/// How the registry runs its commands and itself.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Trim the process's heap after logs expire.
    pub trim_heap: bool,
    /// Put each command in a cgroup of its own where the host may.
    pub cgroups: bool,
}

/// Bounds on what requests may start.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Most commands running at once.
    pub max_commands: usize,
    /// Longest line sent as one event.
    pub max_line_bytes: usize,
    /// Most bytes of disk one command may take: its log, and a background
    /// command's raw output, half each (see `budget`).
    pub command_disk_budget: u64,
    /// Most bytes of disk all commands may take.
    pub disk_budget: u64,
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
    /// Idempotency keys, each kept until its command's tombstone goes.
    pub keys: Keys,
    /// Process groups of commands, until they are released (see `group`).
    groups: Mutex<Vec<Arc<ProcessGroup>>>,
    /// Where commands get a cgroup each, if the host may make them.
    cgroups: Option<Cgroups>,
    /// A command's pump ended: its group may be empty now.
    group_ended: Arc<tokio::sync::Notify>,
    /// What all commands store on disk, against `--disk-budget`.
    disk: Arc<DiskUsage>,
    policy: PolicyEngine,
    shell: PathBuf,
    state_dir: PathBuf,
    /// The state directory outlives this host (`--state-dir`): each
    /// command gets a record there, for a later host to recover.
    kept: bool,
    /// Every task the registry starts; they stop at [`Registry::end`].
    tasks: Tasks,
    metrics: Arc<Metrics>,
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
    /// A registry; call from within the runtime (it starts its tasks on
    /// `tasks`). `kept`: the state directory outlives this host (see
    /// `recovery`).
    pub fn new(
        policy: PolicyEngine,
        state_dir: PathBuf,
        kept: bool,
        bounds: Bounds,
        options: Options,
        tasks: Tasks,
        metrics: Arc<Metrics>,
    ) -> Arc<Registry> {
        let registry = Arc::new(Registry {
            commands: RwLock::default(),
            running: AtomicUsize::new(0),
            freed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            bounds,
            tombstones: Mutex::default(),
            keys: Keys::default(),
            groups: Mutex::default(),
            cgroups: if options.cgroups {
                open_cgroups(&state_dir)
            } else {
                tracing::info!(
                    "commands run in process groups only (cgroups off): a process that calls setsid leaves its command's group"
                );
                None
            },
            group_ended: Arc::default(),
            disk: DiskUsage::new(bounds.disk_budget),
            policy,
            shell: exec::shell(),
            state_dir,
            kept,
            tasks: tasks.clone(),
            metrics,
        });
        if options.trim_heap {
            tasks.spawn(until_end(
                self::trim_heap(Arc::downgrade(&registry)),
                tasks.ended(),
            ));
        }
        tasks.spawn(until_end(
            reap_groups(Arc::downgrade(&registry)),
            tasks.ended(),
        ));
        tasks.spawn(until_end(
            Registry::enforce_disk_budget(Arc::downgrade(&registry), Arc::clone(&registry.disk)),
            tasks.ended(),
        ));
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
        let key = u128::from_str_radix(id, 16).ok().filter(|_| is_id(id));
        match key.and_then(|key| tombstones.terminal.get(&key)) {
            Some(eid) => Lookup::Expired(*eid),
            None => Lookup::Unknown,
        }
    }

    /// Starts a command: a policy instance for its log, the first reader
    /// (when `first_reader` gives the most readers a command may have),
    /// the process, and the pump. The reader is admitted before the
    /// process is spawned, so a refused request never runs anything. The
    /// command is registered before this returns, so its id never answers
    /// 404 while it runs.
    pub async fn start(
        self: &Arc<Self>,
        request: RunRequest,
        first_reader: Option<usize>,
    ) -> Result<(Arc<Command>, Option<u64>), RunError> {
        self.start_keyed(request, first_reader, None).await
    }

    /// [`Registry::start`], writing the idempotency key it was started
    /// with into its record, so a restarted host still knows it.
    pub async fn start_keyed(
        self: &Arc<Self>,
        request: RunRequest,
        first_reader: Option<usize>,
        key: Option<&KeyUse>,
    ) -> Result<(Arc<Command>, Option<u64>), RunError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(RunError::ShuttingDown);
        }
        let slot = RunningSlot::take(self)?;
        let id = new_id();
        let scratch = if self.policy.needs_directory() {
            let path = self.state_dir.join(format!("{id}.log"));
            Some(
                ScratchDir::create(path).map_err(|source| RunError::Storage {
                    what: "policy directory",
                    source,
                })?,
            )
        } else {
            None
        };
        let dir = scratch.as_ref().map(|s| s.path());
        let policy = self
            .policy
            .instantiate(dir)
            .await
            .map_err(RunError::Policy)?;
        let (log_budget, output_budget) =
            split_budget(self.bounds.command_disk_budget, request.background);
        let log = Log::new(
            id.clone(),
            policy,
            Share::new(&self.disk),
            Arc::clone(&self.metrics),
        );
        log.set_disk_budget(log_budget).await;
        let reader = match first_reader {
            Some(max_readers) => Some(log.attach(max_readers).await?),
            None => None,
        };
        let output = if request.background {
            let path = self.state_dir.join(format!("{id}.out"));
            let share = Share::new(&self.disk);
            Some(
                OutputFile::create(path, output_budget, share).map_err(|source| {
                    RunError::Storage {
                        what: "output file",
                        source,
                    }
                })?,
            )
        } else {
            None
        };
        let cgroup = self.cgroups.as_ref().and_then(|c| c.create(&id));
        let mut child = match exec::spawn(&self.shell, &request, cgroup.as_ref()).await {
            Ok(child) => child,
            Err(e) => {
                if let Some(cgroup) = &cgroup {
                    cgroup.remove();
                }
                return Err(spawn_error(e));
            }
        };
        let pipes = (child.stdout.take(), child.stderr.take());
        let group = ProcessGroup::new(child, cgroup)
            .map(Arc::new)
            .ok_or(RunError::NoProcessId)?;
        let started_at = std::time::SystemTime::now();
        self.metrics.command_started();
        tracing::info!(
            id = %id,
            pid = group.pgid(),
            uid = request.uid,
            gid = request.gid,
            background = request.background,
            command = %log_excerpt(&request.command),
            "command started"
        );
        let record = if self.kept {
            let mut record = CommandRecord::new(
                &id,
                &request.command,
                request.background,
                crate::time::unix_ms(started_at),
                Leader::of(group.pgid()),
                self.policy.origin(),
            );
            record.idempotency = key.cloned();
            match RecordFile::write(&self.state_dir, &record) {
                Ok(file) => {
                    match file.high_water() {
                        Ok(mark) => log.keep_high_water(mark),
                        Err(e) => {
                            tracing::warn!(id = %id, "cannot open the command's high-water mark: {e}")
                        }
                    }
                    Some(file)
                }
                Err(e) => {
                    // The command runs, and is served; only a restart
                    // would lose it.
                    tracing::warn!(id = %id, "cannot write the command's record, a restarted host will not serve it: {e}");
                    None
                }
            }
        } else {
            None
        };
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&group));
        let command = Arc::new(Command::new(
            id.clone(),
            request.command,
            request.background,
            started_at,
            log,
            Files {
                output,
                scratch,
                record,
            },
            group,
        ));
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
        self.tasks.spawn(async move {
            let leftover = exec::pump(Arc::clone(&pumped), pipes, timeout, max_line).await;
            log_end(&pumped).await;
            if let (Some(timeout), Some(group)) = (timeout, pumped.group()) {
                registry.timeout_leftovers(Arc::clone(group), pumped.started + timeout);
            }
            if !leftover.is_empty() {
                // Until what the command left running closes them, or the
                // host ends (and has signalled the group).
                let host_ended = registry.tasks.ended();
                registry.tasks.spawn(async move {
                    tokio::select! {
                        () = leftover.discard() => {}
                        () = host_ended => {}
                    }
                });
            }
            drop(slot);
            registry.group_ended.notify_one();
            let retention = match pumped.log.retention_ms().await {
                Some(ms) => Duration::from_millis(ms),
                None => FALLBACK_RETENTION,
            };
            let ended = Instant::now();
            registry.retain(pumped, ended, retention).await;
        });
        Ok((command, reader))
    }

    /// Serves a command a previous host ran (see `recovery`) for `left`
    /// more, then expires it.
    pub fn adopt(self: &Arc<Self>, command: Arc<Command>, left: Duration) {
        self.commands
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(command.id.clone(), Arc::clone(&command));
        let registry = Arc::clone(self);
        self.tasks.spawn(async move {
            let retention = match command.log.retention_ms().await {
                Some(ms) => Duration::from_millis(ms),
                None => FALLBACK_RETENTION,
            };
            // As if it had ended `retention - left` ago.
            let ended = Instant::now() + left;
            let ended = ended.checked_sub(retention).unwrap_or_else(Instant::now);
            registry.retain(command, ended, retention).await;
        });
    }

    /// Expires `command` once no reader has followed its log for
    /// `retention`, counted from `ended` or from the last reader's detach,
    /// whichever is later: a log expired under a reader would lose its
    /// files mid-read (the reader holds the log, not the command, and the
    /// command's drop removes the policy's directory). The host's end
    /// ends retention too: a task asleep here would keep the log, and
    /// with it the compiled policy, alive.
    async fn retain(self: Arc<Self>, command: Arc<Command>, ended: Instant, retention: Duration) {
        let host_ended = self.tasks.ended();
        tokio::pin!(host_ended);
        let mut until = ended + retention;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = &mut host_ended => return,
            }
            let now = Instant::now();
            match command.log.unread_since(ended).await {
                Some(since) if since + retention <= now => break,
                Some(since) => until = since + retention,
                // Followed now: it cannot go before a retention from now.
                None => until = now + retention,
            }
        }
        self.expire(&command).await;
    }

    /// SIGTERM to the command's group now, SIGKILL after [`KILL_GRACE`]
    /// to whatever of it is still there (`DELETE /command`).
    ///
    /// [`KILL_GRACE`]: crate::command::KILL_GRACE
    pub fn interrupt(&self, command: &Arc<Command>) {
        if command.status().running {
            command.note_cause(Reason::Interrupted);
        }
        if !command.signal(libc::SIGTERM) {
            return;
        }
        let command = Arc::clone(command);
        let ended = self.tasks.ended();
        self.tasks.spawn(async move {
            // At the host's end, `stop_all` has SIGKILLed it already.
            tokio::select! {
                _ = tokio::time::sleep(crate::command::KILL_GRACE) => {}
                _ = ended => return,
            }
            if command.signal(libc::SIGKILL) {
                tracing::info!(id = %command.id, "SIGKILL after interrupt grace");
            }
        });
    }

    /// A command's timeout covers its whole group until it expires, as
    /// DELETE does: what the command left running when it ended
    /// (`sleep 600 & echo started`) is SIGKILLed at `deadline`. Holds the
    /// group only, not the command, whose log may expire first; a group
    /// already released (empty) is not signalled.
    fn timeout_leftovers(&self, group: Arc<ProcessGroup>, deadline: std::time::Instant) {
        if group.released() || std::time::Instant::now() >= deadline {
            return;
        }
        let ended = self.tasks.ended();
        self.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
                () = ended => return,
            }
            if group.signal(libc::SIGKILL) {
                tracing::info!(
                    pgid = group.pgid(),
                    "timeout: SIGKILL to what the command left running"
                );
            }
        });
    }

    /// The host is gone: every task the registry started stops.
    pub fn end(&self) {
        self.tasks.end();
    }

    /// Forgets every command (after [`Registry::end`]): their logs, and
    /// the policy instances in them, are dropped now rather than with the
    /// last handle on the registry.
    pub fn clear(&self) {
        let commands =
            std::mem::take(&mut *self.commands.write().unwrap_or_else(|p| p.into_inner()));
        drop(commands);
    }

    /// The policy every command's log runs.
    pub fn policy(&self) -> &PolicyEngine {
        &self.policy
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// What all commands store on disk.
    /// What the host counts.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The values of the metrics that are read rather than counted.
    pub fn snapshot(&self) -> Snapshot {
        let running = self.running() as u64;
        let known = self
            .commands
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len() as u64;
        Snapshot {
            running,
            retained: known.saturating_sub(running),
            disk_used: self.disk.used(),
            disk_budget: self.disk.budget(),
        }
    }

    pub fn disk(&self) -> &Arc<DiskUsage> {
        &self.disk
    }

    /// Stops every process the host started: SIGTERM to each process group
    /// still there (running commands, and what finished ones left behind),
    /// SIGKILL to those still there after `grace`, and a moment for the
    /// pumps to log their terminal events, so connected readers get them.
    /// Closes the registry first: no command starts after this.
    pub async fn stop_all(&self, grace: Duration) {
        self.close();
        // Noted before the signals: their endings say the host ended them.
        for command in self.all() {
            if command.status().running {
                command.note_cause(Reason::HostShutdown);
            }
        }
        for group in self.groups() {
            group.signal(libc::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for group in self.groups() {
            group.signal(libc::SIGKILL);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Everything was killed: the leaders are zombies now, reap them.
        for group in self.groups() {
            if group.leader_exited() {
                group.release();
            }
        }
        // The kernel empties a killed cgroup on its own time.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !self
            .groups()
            .iter()
            .all(|g| g.remove_cgroup(Duration::ZERO))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(cgroups) = &self.cgroups {
            cgroups.close();
        }
    }

    /// The process groups not yet released.
    fn groups(&self) -> Vec<Arc<ProcessGroup>> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Refuses new commands from now on (at shutdown, before the running
    /// ones are stopped).
    pub fn close(&self) {
        let _commands = self.commands.write().unwrap_or_else(|p| p.into_inner());
        self.closed.store(true, Ordering::SeqCst);
    }

    async fn expire(&self, command: &Command) {
        let terminal = command.log.terminal().await.unwrap_or(0);
        let removed = self
            .commands
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&command.id);
        if removed.is_none() {
            // Expired already, early, to make room on disk.
            return;
        }
        self.remember_expired(&command.id, terminal);
        self.freed.store(true, Ordering::Release);
    }

    /// Remembers where an expired log ended, so a resume at its end still
    /// gets 204.
    pub fn remember_expired(&self, id: &str, terminal: u64) {
        if let Ok(key) = u128::from_str_radix(id, 16) {
            let mut tombstones = self.tombstones.lock().unwrap_or_else(|p| p.into_inner());
            tombstones.terminal.insert(key, terminal);
            tombstones.order.push_back(key);
            while tombstones.order.len() > TOMBSTONES {
                if let Some(old) = tombstones.order.pop_front() {
                    tombstones.terminal.remove(&old);
                    self.keys.forget(&format!("{old:032x}"));
                }
            }
        }
    }

    /// Keeps the host within its disk budget, for as long as the registry
    /// lives: when the commands' stores add up to more, finished logs are
    /// expired oldest first; only when none is left do running commands'
    /// budgets shrink, in proportion, so that every one keeps its newest
    /// output. With nothing running, the newest finished log is not
    /// expired but shrinks as a running one would: it is the one in use
    /// (a command that finished before the host got to shrink it, or one
    /// a restarted host found over a smaller budget), and it keeps its
    /// newest output and its terminal event.
    async fn enforce_disk_budget(registry: std::sync::Weak<Registry>, disk: Arc<DiskUsage>) {
        // A pass that freed nothing waits for more output before the next:
        // stores shrink in whole pieces, and may not go lower.
        let mut stuck = false;
        loop {
            if stuck {
                disk.grew_over().await;
            } else {
                disk.went_over().await;
            }
            let Some(registry) = registry.upgrade() else {
                return;
            };
            let before = disk.used();
            let (mut live, mut finished): (Vec<Arc<Command>>, Vec<Arc<Command>>) =
                registry.all().into_iter().partition(|c| c.status().running);
            finished.sort_by_key(|c| c.status().finished_at);
            if live.is_empty() {
                live.extend(finished.pop());
            }
            for command in finished {
                if disk.used() <= disk.budget() {
                    break;
                }
                tracing::info!(id = %command.id, used = disk.used(), budget = disk.budget(), "expiring a finished log early: the host's disk budget is full (--disk-budget)");
                registry.expire(&command).await;
                command.remove_files();
            }
            if disk.used() > disk.budget() {
                Registry::shrink_live(&disk, live).await;
            }
            stuck = disk.used() > disk.budget() && disk.used() >= before;
            drop(registry);
            // What was freed is counted at once; give new output a moment
            // before looking again, rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Lowers the budget of each of `live` (the running commands or, with
    /// none, the newest finished one) to its share of what the host can
    /// still hold.
    async fn shrink_live(disk: &DiskUsage, live: Vec<Arc<Command>>) {
        let used = disk.used().max(1);
        tracing::warn!(
            used,
            budget = disk.budget(),
            commands = live.len(),
            "the host's disk budget is full with no finished log left to expire: the oldest output of the newest commands goes (--disk-budget)"
        );
        for command in live {
            let scale = |bytes: u64| (bytes as u128 * disk.budget() as u128 / used as u128) as u64;
            command
                .log
                .set_disk_budget(scale(command.log.disk_bytes()))
                .await;
            if let Some(output) = &command.output {
                output.set_limit(scale(output.disk_bytes()));
            }
        }
    }

    /// How many commands are running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Every command still known (running, or finished within its
    /// retention), oldest first; two started at the same instant by id,
    /// so that a listing does not follow the map's order.
    pub fn all(&self) -> Vec<Arc<Command>> {
        let mut all: Vec<Arc<Command>> = self
            .commands
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        all
    }
}

/// Runs `task` until the host's end.
async fn until_end(task: impl Future<Output = ()>, ended: impl Future<Output = ()>) {
    tokio::select! {
        _ = task => {}
        _ = ended => {}
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

/// A command's budget as `(log, raw output)`: a background command keeps
/// both, half each; a foreground one only its log.
pub(crate) fn split_budget(budget: u64, background: bool) -> (u64, u64) {
    if background {
        (budget / 2, budget - budget / 2)
    } else {
        (budget, 0)
    }
}

/// How often process groups whose leader exited are checked for members,
/// while any is held.
const REAP_EVERY: Duration = Duration::from_millis(500);
/// After a command ends, how long the check waits for others to end too:
/// one scan of `/proc` then serves all of them, however many end a second.
const REAP_GATHER: Duration = Duration::from_millis(20);

/// Releases the process groups that have emptied out: their leaders
/// exited, and no live member is left. Until then each leader stays an
/// unreaped zombie, so its group id cannot be reused and DELETE or
/// shutdown can still reach what the command left running.
async fn reap_groups(registry: std::sync::Weak<Registry>) {
    let mut warned = false;
    loop {
        let Some(ended) = registry.upgrade().map(|r| Arc::clone(&r.group_ended)) else {
            return;
        };
        tokio::select! {
            _ = ended.notified() => tokio::time::sleep(REAP_GATHER).await,
            _ = tokio::time::sleep(REAP_EVERY) => {}
        }
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let exited: Vec<Arc<ProcessGroup>> = registry
            .groups()
            .into_iter()
            .filter(|g| g.leader_exited())
            .collect();
        if exited.is_empty() {
            continue;
        }
        let pgids: HashSet<i32> = exited.iter().map(|g| g.pgid()).collect();
        let alive = registry
            .tasks
            .spawn_blocking(move || group::with_members(&pgids))
            .await
            .ok()
            .flatten();
        if alive.is_none() && !warned {
            warned = true;
            tracing::warn!(
                "cannot read /proc: process groups are released when their leader exits, \
                 so DELETE and shutdown cannot reach what a finished command left running"
            );
        }
        for group in &exited {
            if alive.as_ref().is_none_or(|a| !a.contains(&group.pgid())) {
                group.release();
            }
        }
        registry
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|g| !g.released());
    }
}

/// The commands' cgroups under the host's own, or `None`, said once.
fn open_cgroups(state_dir: &std::path::Path) -> Option<Cgroups> {
    match Cgroups::open(state_dir) {
        Ok(cgroups) => {
            tracing::info!(
                "each command runs in a cgroup of its own: setsid cannot escape DELETE, timeouts or shutdown"
            );
            Some(cgroups)
        }
        Err(why) => {
            tracing::info!(
                "commands run in process groups only ({why}): a process that calls setsid leaves its command's group"
            );
            None
        }
    }
}

/// A spawn failure is the request's fault (a uid the host may not take, a
/// bad path) unless the host ran out of something: then it is a 503.
fn spawn_error(e: std::io::Error) -> RunError {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM) => RunError::Exhausted(e),
        _ => RunError::Spawn(e),
    }
}

/// One of the `max_commands` places, held until the command's pump ends.
struct RunningSlot(Arc<Registry>);

impl RunningSlot {
    fn take(registry: &Arc<Registry>) -> Result<RunningSlot, RunError> {
        let max = registry.bounds.max_commands;
        registry
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| RunError::TooManyCommands(max))?;
        Ok(RunningSlot(Arc::clone(registry)))
    }
}

impl Drop for RunningSlot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether `id` is what [`new_id`] makes: 32 lowercase hex digits
/// (`u128::from_str_radix` alone would take `+` and upper case).
/// The most of a command's text the host's log shows.
const LOG_EXCERPT_CHARS: usize = 200;

/// A command's text for the host's log: cut to [`LOG_EXCERPT_CHARS`].
fn log_excerpt(command: &str) -> String {
    match command.char_indices().nth(LOG_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}...", &command[..cut]),
        None => command.to_string(),
    }
}

/// The line the host logs when a command has ended.
async fn log_end(command: &Command) {
    let Some(ending) = command.log.ending().await else {
        return;
    };
    let tally = command.log.tally();
    let (exit_code, error) = crate::command::status_of(&ending.outcome);
    tracing::info!(
        id = %command.id,
        reason = crate::log::end_reason(&ending),
        exit_code,
        error = error.as_deref().unwrap_or(""),
        duration_ms = ending.execution_ms,
        events = tally.events,
        bytes = tally.bytes,
        gaps = tally.gaps,
        "command ended"
    );
}

pub(crate) fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new command id: 128 random bits, hex.
pub(crate) fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: fall back to time and a counter, still unique.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[..8].copy_from_slice(&crate::time::now_ms().to_le_bytes());
        bytes[8..].copy_from_slice(&n.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
