//! Compiling a policy once, and instantiating it cheaply per command.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::WasiCtx;

use super::bindings::ResumePolicyPre;
use super::embedded;
use super::instance::{PolicyInstance, PolicyState};
use super::{LoadError, PolicyError};

/// How often the epoch ticks; CPU deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The sandbox bounds of every policy instance.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Linear memory cap per instance, in MiB.
    pub memory_mb: u64,
    /// CPU time one call may take, in milliseconds.
    pub call_ms: u64,
}

/// One compiled policy, ready to instantiate per command.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    pre: ResumePolicyPre<PolicyState>,
    settings: Vec<(String, String)>,
    limits: Limits,
    origin: String,
}

impl PolicyEngine {
    /// Loads `policy` (an embedded name, or a path to a `.wasm` component),
    /// compiles it, and checks that it accepts `settings` by configuring one
    /// instance. Starts the epoch ticker that enforces CPU deadlines.
    pub async fn load(
        policy: &str,
        settings: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<PolicyEngine, LoadError> {
        let (origin, bytes) = read_source(policy)?;
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        let component = Component::new(&engine, &bytes).map_err(|e| LoadError::NotComponent {
            origin: origin.clone(),
            reason: format!("{e:#}"),
        })?;
        let mut linker = Linker::<PolicyState>::new(&engine);
        // The guest's std links against WASI; what it can reach is decided
        // by the (empty) context each instance gets, not by the linker.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(ResumePolicyPre::new)
            .map_err(|e| LoadError::Incompatible {
                origin: origin.clone(),
                reason: format!("{e:#}"),
            })?;
        start_epoch_ticker(&engine);
        let engine = PolicyEngine {
            inner: Arc::new(Inner {
                engine,
                pre,
                settings,
                limits,
                origin: origin.clone(),
            }),
        };
        // Configure one instance now, so a bad setting stops the host at
        // start rather than failing every command.
        match engine.instantiate().await {
            Ok(_) => Ok(engine),
            Err(PolicyError::Refused(reason, "configure")) => {
                Err(LoadError::Config { origin, reason })
            }
            Err(source) => Err(LoadError::Failed { origin, source }),
        }
    }

    /// Where the policy came from, for logs.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// A fresh, configured instance for one command.
    pub async fn instantiate(&self) -> Result<PolicyInstance, PolicyError> {
        let inner = &self.inner;
        let state = PolicyState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(mib_to_bytes(inner.limits.memory_mb))
                .trap_on_grow_failure(true)
                .instances(4)
                .build(),
        };
        let mut store = Store::new(&inner.engine, state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        let ticks = inner.limits.call_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1;
        store.set_epoch_deadline(ticks);
        let bindings = inner
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| PolicyError::Instantiate(format!("{e:#}")))?;
        let mut instance = PolicyInstance::new(store, bindings, inner.limits, ticks);
        instance.configure(&inner.settings).await?;
        Ok(instance)
    }
}

fn mib_to_bytes(mib: u64) -> usize {
    usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

fn read_source(policy: &str) -> Result<(String, Vec<u8>), LoadError> {
    let looks_like_path = policy.contains('/') || policy.ends_with(".wasm");
    if !looks_like_path {
        return match embedded::find(policy) {
            Some(bytes) => Ok((format!("`{policy}` (embedded)"), bytes.to_vec())),
            None => Err(LoadError::UnknownName {
                name: policy.to_string(),
                known: embedded::names(),
            }),
        };
    }
    let path = Path::new(policy);
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((path.display().to_string(), bytes))
}

/// Advances the engine's epoch forever; a call past its deadline traps.
fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the policy epoch ticker, CPU deadlines are off: {e}");
    }
}
