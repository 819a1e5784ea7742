//! One command's policy instance: typed calls with the sandbox's errors
//! turned into [`PolicyError`].

use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimits, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::ResumePolicy;
use super::wit;
use super::{Limits, PolicyError};

/// The host state of one instance: an empty WASI context (no files, no
/// sockets, no env, no stdio) and its limits.
pub struct PolicyState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: StoreLimits,
}

impl WasiView for PolicyState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A live policy instance. Dropping it frees the whole log.
pub struct PolicyInstance {
    store: Store<PolicyState>,
    bindings: ResumePolicy,
    limits: Limits,
    deadline_ticks: u64,
}

impl PolicyInstance {
    pub(super) fn new(
        store: Store<PolicyState>,
        bindings: ResumePolicy,
        limits: Limits,
        deadline_ticks: u64,
    ) -> Self {
        PolicyInstance {
            store,
            bindings,
            limits,
            deadline_ticks,
        }
    }

    /// Resets the CPU deadline; every call gets the whole budget.
    fn arm(&mut self) {
        self.store.set_epoch_deadline(self.deadline_ticks);
    }

    fn explain(&self, error: wasmtime::Error, call: &'static str) -> PolicyError {
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PolicyError::Deadline(self.limits.call_ms, call),
            Some(Trap::OutOfFuel) => PolicyError::Deadline(self.limits.call_ms, call),
            _ if format!("{error:#}").contains("forcing trap when growing memory") => {
                PolicyError::Memory(self.limits.memory_mb, call)
            }
            _ => PolicyError::Trap(format!("{error:#}"), call),
        }
    }

    pub async fn configure(&mut self, settings: &[(String, String)]) -> Result<(), PolicyError> {
        self.arm();
        let log = self.bindings.execd_resume_log();
        match log.call_configure(&mut self.store, settings).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(PolicyError::Refused(reason, "configure")),
            Err(e) => Err(self.explain(e, "configure")),
        }
    }

    pub async fn append(&mut self, batch: &[wit::Line]) -> Result<u64, PolicyError> {
        self.arm();
        let log = self.bindings.execd_resume_log();
        match log.call_append(&mut self.store, batch).await {
            Ok(Ok(eid)) => Ok(eid),
            Ok(Err(reason)) => Err(PolicyError::Refused(reason, "append")),
            Err(e) => Err(self.explain(e, "append")),
        }
    }

    pub async fn finish(&mut self, ending: wit::Ending) -> Result<u64, PolicyError> {
        self.arm();
        let log = self.bindings.execd_resume_log();
        match log.call_finish(&mut self.store, &ending).await {
            Ok(Ok(eid)) => Ok(eid),
            Ok(Err(reason)) => Err(PolicyError::Refused(reason, "finish")),
            Err(e) => Err(self.explain(e, "finish")),
        }
    }

    pub async fn read(
        &mut self,
        after: u64,
        max_events: u32,
        max_bytes: u32,
    ) -> Result<wit::ReadResult, PolicyError> {
        self.arm();
        let log = self.bindings.execd_resume_log();
        log.call_read(&mut self.store, after, max_events, max_bytes)
            .await
            .map_err(|e| self.explain(e, "read"))
    }

    pub async fn attach(
        &mut self,
        reader: u64,
        live_readers: &[u64],
    ) -> Result<wit::Admission, PolicyError> {
        self.arm();
        let log = self.bindings.execd_resume_log();
        log.call_attach(&mut self.store, reader, live_readers)
            .await
            .map_err(|e| self.explain(e, "attach"))
    }

    pub async fn detach(&mut self, reader: u64) -> Result<(), PolicyError> {
        self.arm();
        let log = self.bindings.execd_resume_log();
        log.call_detach(&mut self.store, reader)
            .await
            .map_err(|e| self.explain(e, "detach"))
    }

    pub async fn retention_ms(&mut self) -> Result<u64, PolicyError> {
        self.arm();
        let log = self.bindings.execd_resume_log();
        log.call_retention_ms(&mut self.store)
            .await
            .map_err(|e| self.explain(e, "retention-ms"))
    }
}
