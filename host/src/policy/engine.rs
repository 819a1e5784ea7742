//! Compiling a policy once, and instantiating it cheaply per command.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtx};

use super::bindings::ResumePolicyPre;
use super::embedded;
use super::error::WIT_VERSION;
use super::instance::{Limiter, PolicyInstance, PolicyState};
use super::native::{NativeDisk, NativeRing};
use super::{LoadError, PolicyError};

/// How often the epoch ticks; CPU deadlines are whole ticks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The sandbox bounds of every policy instance.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Linear memory cap per instance, in MiB.
    pub memory_mb: u64,
    /// CPU time one call may take, in milliseconds.
    pub call_ms: u64,
}

/// Where a policy's code comes from.
#[derive(Clone, Debug)]
pub enum PolicySource {
    /// As `--policy` takes it: an embedded or native name, or a path.
    Named(String),
    /// A component file.
    Path(std::path::PathBuf),
    /// A component's bytes, and a name for them.
    Bytes(String, Vec<u8>),
}

/// What advances the wasmtime epoch that policy call deadlines count in
/// (a tick every 5 ms). Native policies need none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EpochTicker {
    /// A thread of its own, `policy-epoch`, which ends with the host:
    /// deadlines hold however busy the runtime is.
    #[default]
    Thread,
    /// A task on the host's tokio runtime: no thread, but a runtime
    /// whose workers are all busy delays the deadlines.
    Task,
    /// None: policy calls have no deadline.
    Off,
}

/// One compiled policy, ready to instantiate per command.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

struct Inner {
    code: Code,
    settings: Vec<(String, String)>,
    limits: Limits,
    origin: String,
    /// The policy asked for a scratch directory per command.
    needs_directory: bool,
}

/// What runs a command's log.
enum Code {
    Wasm(Compiled),
    NativeRing,
    NativeDisk,
}

struct Compiled {
    engine: Engine,
    pre: ResumePolicyPre<PolicyState>,
}

/// The name that picks the unsandboxed, compiled-in ring.
pub const NATIVE_RING: &str = "native-ring";
/// The name that picks the unsandboxed, compiled-in disk policy.
pub const NATIVE_DISK: &str = "native-disk";

impl PolicyEngine {
    /// Loads `policy` (an embedded name, or a path to a `.wasm` component),
    /// compiles it, and checks that it accepts `settings` by configuring one
    /// instance. Starts the epoch ticker that enforces CPU deadlines.
    pub async fn load(
        source: &PolicySource,
        settings: Vec<(String, String)>,
        limits: Limits,
        ticker: EpochTicker,
        tasks: &crate::tasks::Tasks,
    ) -> Result<PolicyEngine, LoadError> {
        let named = match source {
            PolicySource::Named(name) => name.as_str(),
            _ => "",
        };
        let native = match named {
            NATIVE_RING => Some((Code::NativeRing, NativeRing::new(&settings).map(drop))),
            NATIVE_DISK => Some((Code::NativeDisk, NativeDisk::check(&settings))),
            _ => None,
        };
        if let Some((code, checked)) = native {
            let origin = format!("`{named}` (compiled in, not sandboxed)");
            if let Err(reason) = checked {
                return Err(LoadError::Config { origin, reason });
            }
            let needs_directory = matches!(code, Code::NativeDisk);
            return Ok(PolicyEngine {
                inner: Arc::new(Inner {
                    code,
                    settings,
                    limits,
                    origin,
                    needs_directory,
                }),
            });
        }
        let (origin, bytes) = read_source(source)?;
        if let Some(reason) = not_a_component(&bytes) {
            return Err(LoadError::NotComponent { origin, reason });
        }
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
            .map_err(|e| match built_version(&engine, &component) {
                Some(built) if built != WIT_VERSION => LoadError::OtherVersion {
                    origin: origin.clone(),
                    built,
                },
                _ => LoadError::Incompatible {
                    origin: origin.clone(),
                    reason: format!("{e:#}"),
                },
            })?;
        start_epoch_ticker(&engine, ticker, tasks);
        let mut engine = PolicyEngine {
            inner: Arc::new(Inner {
                code: Code::Wasm(Compiled { engine, pre }),
                settings,
                limits,
                origin: origin.clone(),
                needs_directory: false,
            }),
        };
        // One probe instance: does it want a directory, and does it accept
        // its settings? A bad setting stops the host here rather than
        // failing every command.
        let checked = async {
            let mut probe = engine.instantiate_bare(None).await?;
            let needs_directory = probe.needs_directory().await?;
            probe.configure(&engine.inner.settings).await?;
            Ok::<_, PolicyError>(needs_directory)
        };
        match checked.await {
            Ok(needs_directory) => {
                if let Some(inner) = Arc::get_mut(&mut engine.inner) {
                    inner.needs_directory = needs_directory;
                }
                Ok(engine)
            }
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

    /// Whether each command's instance gets a scratch directory.
    pub fn needs_directory(&self) -> bool {
        self.inner.needs_directory
    }

    /// A fresh, configured instance for one command; `dir` is its scratch
    /// directory when [`PolicyEngine::needs_directory`].
    pub async fn instantiate(&self, dir: Option<&Path>) -> Result<PolicyInstance, PolicyError> {
        let mut instance = self.instantiate_bare(dir).await?;
        instance.configure(&self.inner.settings).await?;
        Ok(instance)
    }

    async fn instantiate_bare(&self, dir: Option<&Path>) -> Result<PolicyInstance, PolicyError> {
        let inner = &self.inner;
        let refused = |reason| PolicyError::Refused(reason, "configure");
        let compiled = match &inner.code {
            Code::Wasm(compiled) => compiled,
            Code::NativeRing => {
                let ring = NativeRing::new(&inner.settings).map_err(refused)?;
                return Ok(PolicyInstance::native(ring));
            }
            Code::NativeDisk => {
                let dir = dir.ok_or_else(|| {
                    PolicyError::Instantiate("`native-disk` needs a directory".into())
                })?;
                let log = NativeDisk::new(&inner.settings, dir).map_err(refused)?;
                return Ok(PolicyInstance::native_disk(log, dir));
            }
        };
        // No env, args, stdin or preopens, stdout/stderr discarded, and no
        // sockets at all: what is left is clocks and random numbers.
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // File reads and writes run inline on the calling runtime
            // worker instead of each hopping through `spawn_blocking`
            // (wasmtime-wasi caps one call at 64 KiB, so a 1 GiB replay
            // is 16,000 hops, a thread hand-off and wake-up each). The
            // trade-off: a call that waits on a slow disk occupies a
            // worker meanwhile (as it did a blocking-pool thread before);
            // the per-call deadline still bounds the call, trapping it
            // once it is back in wasm past its deadline. Measured: `seq 1
            // 2000000` on `disk` went from 1.38x to 1.05x a roomy ring's
            // time, and a 1 GiB replay from 184 to 280 MB/s.
            // Files made inline stay private: every runtime thread runs
            // under umask 077 (`exec::private_umask`).
            .allow_blocking_current_thread(true);
        if let Some(dir) = dir {
            wasi.preopened_dir(dir, "/log", FsPerms::ReadWrite)
                .map_err(|e| {
                    PolicyError::Instantiate(format!("cannot open {}: {e:#}", dir.display()))
                })?;
        }
        let state = PolicyState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: Limiter::new(
                StoreLimitsBuilder::new()
                    .memory_size(mib_to_bytes(inner.limits.memory_mb))
                    .trap_on_grow_failure(true)
                    .instances(4)
                    .build(),
            ),
        };
        let mut store = Store::new(&compiled.engine, state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        let ticks = inner.limits.call_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1;
        store.set_epoch_deadline(ticks);
        let bindings = compiled
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| PolicyError::Instantiate(format!("{e:#}")))?;
        Ok(PolicyInstance::wasm(
            store,
            bindings,
            inner.limits,
            ticks,
            dir,
        ))
    }
}

/// The `execd:resume` version a component's `log` export was built
/// against, read from its export name (`execd:resume/log@X.Y.Z`).
fn built_version(engine: &Engine, component: &Component) -> Option<String> {
    const EXPORT: &str = "execd:resume/log@";
    let ty = component.component_type();
    ty.exports(engine)
        .find_map(|(name, _)| name.strip_prefix(EXPORT).map(str::to_string))
}

fn mib_to_bytes(mib: u64) -> usize {
    usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

fn read_source(source: &PolicySource) -> Result<(String, Vec<u8>), LoadError> {
    let policy = match source {
        PolicySource::Named(name) => name.as_str(),
        PolicySource::Path(path) => return read_file(path),
        PolicySource::Bytes(origin, bytes) => return Ok((origin.clone(), bytes.clone())),
    };
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
    read_file(Path::new(policy))
}

/// The largest policy file read: components are kilobytes to a few
/// megabytes; a device or a runaway file must not fill the host's memory.
const MAX_POLICY_BYTES: u64 = 256 << 20;

fn read_file(path: &Path) -> Result<(String, Vec<u8>), LoadError> {
    use std::io::Read;
    let read_error = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    // A FIFO or a device would block or never end: only a regular file
    // (after links) is opened.
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if !meta.is_file() {
        return Err(read_error(std::io::Error::other("not a regular file")));
    }
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(read_error(std::io::Error::other(format!(
            "larger than {} MiB",
            MAX_POLICY_BYTES >> 20
        ))));
    }
    Ok((path.display().to_string(), bytes))
}

/// Why `bytes` cannot be a component, in one line, when its header says
/// so: wasmtime's own error on a text file is a dump of expected bytes.
fn not_a_component(bytes: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\0asm";
    // A component's layer field (bytes 6..8) is 1; a core module's is 0.
    match bytes {
        [m0, m1, m2, m3, _, _, 1, 0, ..] if [*m0, *m1, *m2, *m3] == *MAGIC => None,
        [m0, m1, m2, m3, _, _, 0, 0, ..] if [*m0, *m1, *m2, *m3] == *MAGIC => Some(
            "it is a core module; build it for wasm32-wasip2, or wrap it with \
             `wasm-tools component new`"
                .into(),
        ),
        _ => Some("the file does not start with the wasm header (\\0asm)".into()),
    }
}

/// Advances the engine's epoch until the engine is dropped (the host and
/// its last command gone); a call past its deadline traps.
fn start_epoch_ticker(engine: &Engine, ticker: EpochTicker, tasks: &crate::tasks::Tasks) {
    let engine = engine.weak();
    match ticker {
        EpochTicker::Thread => {}
        EpochTicker::Off => return,
        EpochTicker::Task => {
            let ended = tasks.ended();
            tasks.spawn(async move {
                let ticking = async {
                    let mut ticks = tokio::time::interval(EPOCH_TICK);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        ticks.tick().await;
                        let Some(engine) = engine.upgrade() else {
                            return;
                        };
                        engine.increment_epoch();
                    }
                };
                tokio::select! {
                    _ = ticking => {}
                    _ = ended => {}
                }
            });
            return;
        }
    }
    let tasks = tasks.clone();
    let spawned = std::thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || {
            // Ends at the host's end even if something still holds the
            // engine (a caller's handle on a finished command).
            while !tasks.is_ended()
                && let Some(engine) = engine.upgrade()
            {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the policy epoch ticker, CPU deadlines are off: {e}");
    }
}
