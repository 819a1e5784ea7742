//! Every setting of a host, with its default: [`HostBuilder`]. The
//! daemon's flags map one to one onto its methods.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Host;
use crate::error::StartError;
use crate::http::cors::Cors;
use crate::http::upstream::Upstream;
use crate::policy::{EpochTicker, Limits, PolicySource};
use crate::registry::Bounds;
use crate::stream::sse::Framing;

/// The default policy: `disk`, lossless within the disk budgets.
pub const DEFAULT_POLICY: &str = "disk";
/// Default linear-memory cap of each policy instance, in MiB.
pub const DEFAULT_POLICY_MEMORY_MB: u64 = 256;
/// Default wall-clock deadline of one policy call.
pub const DEFAULT_POLICY_CALL_TIMEOUT: Duration = Duration::from_millis(1000);
/// Default framing of event streams.
pub const DEFAULT_FRAMING: Framing = Framing::Standard;
/// Default largest request body, in bytes (413 beyond).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default time a client has to send a request's head, and again its body.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default most commands running at once (503 beyond).
pub const DEFAULT_MAX_COMMANDS: usize = 1024;
/// Default most readers following one command at once (503 beyond).
pub const DEFAULT_MAX_READERS: usize = 64;
/// Default longest line sent as one event, in bytes.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
/// Default most bytes of disk one command may take.
pub const DEFAULT_COMMAND_DISK_BUDGET: u64 = 1 << 30;
/// Default most connections open at once on [`Host::serve`]'s listeners;
/// more are closed as soon as they are accepted.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default time open connections get to finish at shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest and longest `max_line_bytes` accepted.
pub const MAX_LINE_BYTES_RANGE: std::ops::RangeInclusive<usize> = 4..=16 * 1024 * 1024;

/// Builds a [`Host`]: every setting the `execd-host` daemon has a flag
/// for, each defaulting to the flag's default, plus the process-wide
/// effects an embedder may want off.
///
/// ```no_run
/// # async fn start() -> Result<(), execd_host::StartError> {
/// let host = execd_host::Host::builder()
///     .policy("ring")
///     .policy_setting("max-events", "10000")
///     .max_commands(16)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HostBuilder {
    policy: PolicySource,
    policy_settings: Vec<(String, String)>,
    policy_memory_mb: u64,
    policy_call_timeout: Duration,
    epoch_ticker: EpochTicker,
    framing: Framing,
    max_body_bytes: usize,
    request_timeout: Duration,
    max_commands: usize,
    max_readers: usize,
    max_connections: usize,
    max_line_bytes: usize,
    command_disk_budget: u64,
    disk_budget: Option<u64>,
    state_dir: Option<PathBuf>,
    access_token: Option<String>,
    access_token_file: Option<PathBuf>,
    upstream: Option<String>,
    cors_origins: Vec<String>,
    trim_heap: bool,
    cgroups: bool,
    drain_timeout: Duration,
}

impl Default for HostBuilder {
    fn default() -> HostBuilder {
        HostBuilder {
            policy: PolicySource::Named(DEFAULT_POLICY.into()),
            policy_settings: Vec::new(),
            policy_memory_mb: DEFAULT_POLICY_MEMORY_MB,
            policy_call_timeout: DEFAULT_POLICY_CALL_TIMEOUT,
            epoch_ticker: EpochTicker::Thread,
            framing: DEFAULT_FRAMING,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_commands: DEFAULT_MAX_COMMANDS,
            max_readers: DEFAULT_MAX_READERS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            command_disk_budget: DEFAULT_COMMAND_DISK_BUDGET,
            disk_budget: None,
            state_dir: None,
            access_token: None,
            access_token_file: None,
            upstream: None,
            cors_origins: Vec::new(),
            trim_heap: false,
            cgroups: true,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// A builder's settings, checked.
pub(crate) struct Settings {
    pub policy: PolicySource,
    pub policy_settings: Vec<(String, String)>,
    pub limits: Limits,
    pub epoch_ticker: EpochTicker,
    pub framing: Framing,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub max_readers: usize,
    pub max_connections: usize,
    pub state_dir: Option<PathBuf>,
    pub access_token: Option<String>,
    pub upstream: Option<Upstream>,
    pub cors: Option<Cors>,
    pub trim_heap: bool,
    pub cgroups: bool,
    pub drain_timeout: Duration,
    max_commands: usize,
    max_line_bytes: usize,
    command_disk_budget: u64,
    disk_budget: Option<u64>,
}

impl Settings {
    /// The bounds, the host's disk budget defaulting from the state
    /// directory (see [`crate::budget::default_host_budget`]); refused
    /// where that default is too small to keep a log.
    pub fn bounds(&self, state_dir: &Path) -> Result<Bounds, String> {
        let disk_budget = match self.disk_budget {
            Some(bytes) => bytes,
            None => crate::budget::default_host_budget(state_dir)?,
        };
        Ok(Bounds {
            max_commands: self.max_commands,
            max_line_bytes: self.max_line_bytes,
            command_disk_budget: self.command_disk_budget,
            disk_budget,
        })
    }
}

impl HostBuilder {
    /// The log policy, as the `--policy` flag takes it: an embedded name
    /// (`disk`, `ring`, `exclusive`, `spill`), `native-disk` /
    /// `native-ring` (compiled in, unsandboxed), or else (it holds a `/`
    /// or ends in `.wasm`) a path to a component. Default:
    /// [`DEFAULT_POLICY`].
    pub fn policy(mut self, name_or_path: impl Into<String>) -> Self {
        self.policy = PolicySource::Named(name_or_path.into());
        self
    }

    /// A policy component read from this file.
    pub fn policy_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.policy = PolicySource::Path(path.into());
        self
    }

    /// A policy component from these bytes (`origin` names it in logs and
    /// errors).
    pub fn policy_bytes(mut self, origin: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        self.policy = PolicySource::Bytes(origin.into(), bytes.into());
        self
    }

    /// A setting handed to the policy (`--policy-config KEY=VALUE`); the
    /// policy rejects unknown keys and bad values, and `build` fails.
    pub fn policy_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.policy_settings.push((key.into(), value.into()));
        self
    }

    /// Linear-memory cap of each policy instance, in MiB. Default:
    /// [`DEFAULT_POLICY_MEMORY_MB`].
    pub fn policy_memory_mb(mut self, mib: u64) -> Self {
        self.policy_memory_mb = mib;
        self
    }

    /// Wall-clock deadline of one policy call (5 ms resolution). Default:
    /// [`DEFAULT_POLICY_CALL_TIMEOUT`].
    pub fn policy_call_timeout(mut self, timeout: Duration) -> Self {
        self.policy_call_timeout = timeout;
        self
    }

    /// What advances the clock behind policy call deadlines. Default:
    /// [`EpochTicker::Thread`].
    pub fn epoch_ticker(mut self, ticker: EpochTicker) -> Self {
        self.epoch_ticker = ticker;
        self
    }

    /// Framing of event streams when a request does not ask
    /// (`?framing=`). Default: [`DEFAULT_FRAMING`].
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Largest request body accepted, in bytes. Default:
    /// [`DEFAULT_MAX_BODY_BYTES`].
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Time a client has to send a request's head (on connections
    /// [`Host::serve`] accepts), and again its body; at least 1 ms.
    /// Default: [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Most commands running at once. Default: [`DEFAULT_MAX_COMMANDS`].
    pub fn max_commands(mut self, max: usize) -> Self {
        self.max_commands = max;
        self
    }

    /// Most readers following one command at once, at least 1. Default:
    /// [`DEFAULT_MAX_READERS`].
    pub fn max_readers(mut self, max: usize) -> Self {
        self.max_readers = max;
        self
    }

    /// Whether each command runs in a cgroup (v2) of its own, where the
    /// host may create one under its own: then DELETE, a timeout and
    /// shutdown reach what a command moved out of its process group with
    /// `setsid`. It costs each start a cgroup migration (see the README's
    /// Security section for what that measured). Default: true; where the
    /// host may not, commands run in process groups only, and the log says
    /// why.
    pub fn cgroups(mut self, on: bool) -> Self {
        self.cgroups = on;
        self
    }

    /// Most connections open at once on the listeners [`Host::serve`]
    /// serves, at least 1: more are closed as soon as they are accepted
    /// (idle keep-alive connections cost memory). Default:
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Longest line sent as one event, in bytes, within
    /// [`MAX_LINE_BYTES_RANGE`]. Default: [`DEFAULT_MAX_LINE_BYTES`].
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes;
        self
    }

    /// Most bytes of disk one command may take. Default:
    /// [`DEFAULT_COMMAND_DISK_BUDGET`].
    pub fn command_disk_budget(mut self, bytes: u64) -> Self {
        self.command_disk_budget = bytes;
        self
    }

    /// Most bytes of disk all commands may take. Default: a quarter of the
    /// state directory's free space at start plus what the host already
    /// keeps there, capped at 4 GiB; a default under 1 MiB is refused
    /// when the host starts.
    pub fn disk_budget(mut self, bytes: u64) -> Self {
        self.disk_budget = Some(bytes);
        self
    }

    /// The state directory, created 0700 if missing. A given directory
    /// outlives the host: at shutdown each command's files stay in it,
    /// and the next host on it recovers them. Default: a fresh private
    /// directory, removed at shutdown.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// The token every request must carry in `X-EXECD-ACCESS-TOKEN`.
    /// Default: none, no check.
    pub fn access_token(mut self, token: impl Into<String>) -> Self {
        self.access_token = Some(token.into());
        self
    }

    /// Reads the access token from this file at `build` (one trailing
    /// newline ignored). An [`access_token`](Self::access_token) wins.
    pub fn access_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.access_token_file = Some(path.into());
        self
    }

    /// An execd (`http://host:port`) to forward every route the host does
    /// not serve itself to. Default: none (404).
    pub fn upstream(mut self, url: impl Into<String>) -> Self {
        self.upstream = Some(url.into());
        self
    }

    /// Lets web pages from `origin` (`https://app.example.com`, or `*`
    /// for any) use the API from a browser: CORS headers on every answer
    /// to a request from it, and preflights answered. Repeatable. Default:
    /// none, no CORS headers at all.
    pub fn cors_origin(mut self, origin: impl Into<String>) -> Self {
        self.cors_origins.push(origin.into());
        self
    }

    /// Hands memory freed by expired logs back to the OS every 2 s
    /// (`malloc_trim`, glibc only), a process-wide effect. Default: off;
    /// the daemon turns it on.
    pub fn trim_heap(mut self, trim: bool) -> Self {
        self.trim_heap = trim;
        self
    }

    /// Time connections accepted by [`Host::serve`] get to finish at
    /// shutdown. Default: [`DEFAULT_DRAIN_TIMEOUT`].
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Compiles the policy and checks its settings, makes the state
    /// directory (recovering what a previous host left in a given one),
    /// and starts the registry. Call within a tokio runtime.
    pub async fn build(self) -> Result<Host, StartError> {
        Host::start(self).await
    }

    pub(crate) fn check(self) -> Result<Settings, StartError> {
        let setting = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(StartError::Setting(what.to_string()))
            }
        };
        setting(self.max_readers >= 1, "max_readers must be at least 1")?;
        setting(
            self.max_connections >= 1,
            "max_connections must be at least 1",
        )?;
        setting(
            MAX_LINE_BYTES_RANGE.contains(&self.max_line_bytes),
            &format!(
                "max_line_bytes must be between {} and {}",
                MAX_LINE_BYTES_RANGE.start(),
                MAX_LINE_BYTES_RANGE.end()
            ),
        )?;
        setting(
            self.request_timeout >= Duration::from_millis(1),
            "request_timeout must be at least 1 ms",
        )?;
        // Zero would interrupt every call at the next epoch tick, or not,
        // as the ticker happens to run: never a useful deadline.
        setting(
            self.policy_call_timeout >= Duration::from_millis(1),
            "policy_call_timeout (--policy-call-ms) must be at least 1 ms",
        )?;
        let access_token = match (self.access_token, &self.access_token_file) {
            (Some(token), _) => Some(token),
            (None, Some(path)) => Some(read_token_file(path).map_err(StartError::Token)?),
            (None, None) => None,
        };
        if let Some(token) = &access_token {
            check_token(token).map_err(StartError::Token)?;
        }
        let upstream = match &self.upstream {
            Some(url) => Some(Upstream::parse(url).map_err(StartError::Setting)?),
            None => None,
        };
        let cors = Cors::parse(&self.cors_origins).map_err(StartError::Setting)?;
        Ok(Settings {
            policy: self.policy,
            policy_settings: self.policy_settings,
            limits: Limits {
                memory_mb: self.policy_memory_mb,
                call_ms: u64::try_from(self.policy_call_timeout.as_millis()).unwrap_or(u64::MAX),
            },
            epoch_ticker: self.epoch_ticker,
            framing: self.framing,
            max_body_bytes: self.max_body_bytes,
            request_timeout: self.request_timeout,
            max_readers: self.max_readers,
            max_connections: self.max_connections,
            state_dir: self.state_dir,
            access_token,
            upstream,
            cors,
            trim_heap: self.trim_heap,
            cgroups: self.cgroups,
            drain_timeout: self.drain_timeout,
            max_commands: self.max_commands,
            max_line_bytes: self.max_line_bytes,
            command_disk_budget: self.command_disk_budget,
            disk_budget: self.disk_budget,
        })
    }
}

/// Why an access token is unusable. HTTP trims header values, so a token
/// with surrounding whitespace could never match; an empty one would turn
/// auth off without saying so.
fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the access token is empty; leave it unset to run without a token".into());
    }
    if token.trim() != token {
        return Err(
            "the access token starts or ends with whitespace, which HTTP trims from headers: no request could match it"
                .into(),
        );
    }
    if token.chars().any(char::is_control) {
        return Err("the access token holds control characters, which no header can carry".into());
    }
    Ok(())
}

/// Reads a token file: its content less one trailing newline.
fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --access-token-file {}: {e}", path.display()))?;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the access token file is readable by other users; chmod 600 it"
        );
    }
    let token = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(token.to_string())
}
