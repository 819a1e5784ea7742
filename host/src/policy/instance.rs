//! One command's policy instance: typed calls with the sandbox's errors
//! turned into [`PolicyError`].

use std::io;
use std::path::{Path, PathBuf};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, StoreLimits, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::ResumePolicy;
use super::native::{NativeDisk, NativeRing};
use super::spans::Unreadable;
use super::wit;
use super::{Limits, PolicyError};

/// The host state of one instance: an empty WASI context (no files, no
/// sockets, no env, no stdio) and its limits.
pub struct PolicyState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: Limiter,
}

/// The store's limiter: wasmtime's own, which also remembers whether the
/// memory cap was what stopped the guest, so that a trap can be told
/// apart from hitting the cap without reading wasmtime's error text.
pub struct Limiter {
    limits: StoreLimits,
    memory_cap_hit: bool,
}

impl Limiter {
    pub(super) fn new(limits: StoreLimits) -> Limiter {
        Limiter {
            limits,
            memory_cap_hit: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_cap_hit = true;
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_cap_hit = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl WasiView for PolicyState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The slowest a reopen is allowed to check its files: 20 MB/s, a tenth of
/// what the `disk` policy managed on a busy 2-core machine.
pub const REOPEN_BYTES_PER_SEC: u64 = 20_000_000;

/// A live policy instance. Dropping it frees the whole log.
pub struct PolicyInstance {
    kind: Kind,
    /// The command's directory, preopened at `/log`, when it has one.
    dir: Option<PathBuf>,
}

enum Kind {
    Wasm(Box<Wasm>),
    Native(NativeRing),
    // Boxed like `Wasm`: the log is a few hundred bytes.
    NativeDisk(Box<NativeDisk>),
}

/// A sandboxed component instance.
struct Wasm {
    store: Store<PolicyState>,
    bindings: ResumePolicy,
    limits: Limits,
    deadline_ticks: u64,
}

impl PolicyInstance {
    pub(super) fn wasm(
        store: Store<PolicyState>,
        bindings: ResumePolicy,
        limits: Limits,
        deadline_ticks: u64,
        dir: Option<&Path>,
    ) -> Self {
        let wasm = Wasm {
            store,
            bindings,
            limits,
            deadline_ticks,
        };
        PolicyInstance {
            kind: Kind::Wasm(Box::new(wasm)),
            dir: dir.map(Path::to_path_buf),
        }
    }

    pub(super) fn native(ring: NativeRing) -> Self {
        PolicyInstance {
            kind: Kind::Native(ring),
            dir: None,
        }
    }

    pub(super) fn native_disk(log: NativeDisk, dir: &Path) -> Self {
        PolicyInstance {
            kind: Kind::NativeDisk(Box::new(log)),
            dir: Some(dir.to_path_buf()),
        }
    }

    /// Whether the instance has a directory, where it may leave the text
    /// of what it reads (`text-in-files`).
    pub fn has_directory(&self) -> bool {
        self.dir.is_some()
    }

    /// Reads the text that an answer of this instance's `read` left in
    /// files of its directory onto the answer's batch (checked first by
    /// [`super::text_len`]).
    pub fn read_text(&self, events: &mut wit::Events) -> Result<(), Unreadable> {
        match &self.dir {
            Some(dir) => super::spans::read_into(dir, events),
            None if events.text_in_files.is_empty() => Ok(()),
            None => Err(Unreadable {
                error: io::Error::other("text in files, but no directory"),
                text_before: events.batch.text.len() as u64,
            }),
        }
    }

    /// Whether the policy wants a private `/log` directory.
    pub async fn needs_directory(&mut self) -> Result<bool, PolicyError> {
        let w = match &mut self.kind {
            Kind::Wasm(w) => w,
            Kind::Native(_) => return Ok(false),
            Kind::NativeDisk(_) => return Ok(true),
        };
        w.arm();
        let log = w.bindings.execd_resume_log();
        log.call_needs_directory(&mut w.store)
            .await
            .map_err(|e| w.explain(e, "needs-directory"))
    }

    /// Hands the operator's settings to the policy.
    pub async fn configure(&mut self, settings: &[(String, String)]) -> Result<(), PolicyError> {
        let Kind::Wasm(w) = &mut self.kind else {
            return Ok(());
        };
        w.arm();
        let log = w.bindings.execd_resume_log();
        match log.call_configure(&mut w.store, settings).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(PolicyError::Refused(reason, "configure")),
            Err(e) => Err(w.explain(e, "configure")),
        }
    }

    /// The most bytes of disk the log may take; returns what it takes.
    pub async fn set_disk_budget(&mut self, bytes: u64) -> Result<u64, PolicyError> {
        match &mut self.kind {
            Kind::Native(_) => Ok(0),
            Kind::NativeDisk(log) => Ok(log.set_disk_budget(bytes)),
            Kind::Wasm(w) => {
                w.arm();
                let log = w.bindings.execd_resume_log();
                log.call_set_disk_budget(&mut w.store, bytes)
                    .await
                    .map_err(|e| w.explain(e, "set-disk-budget"))
            }
        }
    }

    /// Reopens the log a previous host left in the instance's directory,
    /// which holds `dir_bytes`. The policy checks every byte of it, so the
    /// call gets its deadline plus a second per [`REOPEN_BYTES_PER_SEC`].
    pub async fn reopen(&mut self, dir_bytes: u64) -> Result<wit::Reopened, PolicyError> {
        let result = match &mut self.kind {
            Kind::Native(_) => Err(super::native::RING_KEEPS_NOTHING.to_string()),
            Kind::NativeDisk(log) => log.reopen(),
            Kind::Wasm(w) => {
                let extra_ms = dir_bytes.saturating_mul(1000) / REOPEN_BYTES_PER_SEC;
                w.arm_for(extra_ms);
                let log = w.bindings.execd_resume_log();
                log.call_reopen(&mut w.store)
                    .await
                    .map_err(|e| w.explain(e, "reopen"))?
            }
        };
        result.map_err(|reason| PolicyError::Refused(reason, "reopen"))
    }

    /// Stores a batch of lines.
    pub async fn append(&mut self, batch: &wit::Batch) -> Result<wit::Stored, PolicyError> {
        let result = match &mut self.kind {
            Kind::Native(ring) => ring.append(batch),
            Kind::NativeDisk(log) => log.append(batch),
            Kind::Wasm(w) => {
                w.arm();
                let log = w.bindings.execd_resume_log();
                log.call_append(&mut w.store, batch)
                    .await
                    .map_err(|e| w.explain(e, "append"))?
            }
        };
        result.map_err(|reason| PolicyError::Refused(reason, "append"))
    }

    /// Stores the terminal event.
    pub async fn finish(&mut self, ending: wit::Ending) -> Result<wit::Stored, PolicyError> {
        let result = match &mut self.kind {
            Kind::Native(ring) => ring.finish(ending),
            Kind::NativeDisk(log) => log.finish(ending),
            Kind::Wasm(w) => {
                w.arm();
                let log = w.bindings.execd_resume_log();
                log.call_finish(&mut w.store, &ending)
                    .await
                    .map_err(|e| w.explain(e, "finish"))?
            }
        };
        result.map_err(|reason| PolicyError::Refused(reason, "finish"))
    }

    /// Events after `after`, as the policy answers.
    pub async fn read(
        &mut self,
        after: u64,
        max_events: u32,
        max_bytes: u32,
    ) -> Result<wit::ReadResult, PolicyError> {
        match &mut self.kind {
            Kind::Native(ring) => Ok(ring.read(after, max_events, max_bytes)),
            Kind::NativeDisk(log) => Ok(log.read(after, max_events, max_bytes)),
            Kind::Wasm(w) => {
                w.arm();
                let log = w.bindings.execd_resume_log();
                log.call_read(&mut w.store, after, max_events, max_bytes)
                    .await
                    .map_err(|e| w.explain(e, "read"))
            }
        }
    }

    /// Whether a new reader may follow the log.
    pub async fn attach(
        &mut self,
        reader: u64,
        live_readers: &[u64],
    ) -> Result<wit::Admission, PolicyError> {
        match &mut self.kind {
            Kind::Native(ring) => Ok(ring.attach(live_readers)),
            // Readers are cursors: any number may follow.
            Kind::NativeDisk(_) => Ok(wit::Admission::Accept),
            Kind::Wasm(w) => {
                w.arm();
                let log = w.bindings.execd_resume_log();
                log.call_attach(&mut w.store, reader, live_readers)
                    .await
                    .map_err(|e| w.explain(e, "attach"))
            }
        }
    }

    /// A reader went away.
    pub async fn detach(&mut self, reader: u64) -> Result<(), PolicyError> {
        match &mut self.kind {
            Kind::Native(_) | Kind::NativeDisk(_) => Ok(()),
            Kind::Wasm(w) => {
                w.arm();
                let log = w.bindings.execd_resume_log();
                log.call_detach(&mut w.store, reader)
                    .await
                    .map_err(|e| w.explain(e, "detach"))
            }
        }
    }

    /// How long the finished log stays resumable.
    pub async fn retention_ms(&mut self) -> Result<u64, PolicyError> {
        match &mut self.kind {
            Kind::Native(ring) => Ok(ring.retention_ms()),
            Kind::NativeDisk(log) => Ok(log.retention_ms()),
            Kind::Wasm(w) => {
                w.arm();
                let log = w.bindings.execd_resume_log();
                log.call_retention_ms(&mut w.store)
                    .await
                    .map_err(|e| w.explain(e, "retention-ms"))
            }
        }
    }
}

impl Wasm {
    /// Resets the CPU deadline; every call gets the whole budget.
    fn arm(&mut self) {
        self.store.set_epoch_deadline(self.deadline_ticks);
    }

    /// Like [`Wasm::arm`], with `extra_ms` more for this call.
    fn arm_for(&mut self, extra_ms: u64) {
        let extra = extra_ms.div_ceil(super::engine::EPOCH_TICK.as_millis() as u64);
        self.store
            .set_epoch_deadline(self.deadline_ticks.saturating_add(extra));
    }

    fn explain(&self, error: wasmtime::Error, call: &'static str) -> PolicyError {
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PolicyError::Deadline(self.limits.call_ms, call),
            _ if self.store.data().limits.memory_cap_hit => {
                PolicyError::Memory(self.limits.memory_mb, call)
            }
            _ => PolicyError::Trap(format!("{error:#}"), call),
        }
    }
}
