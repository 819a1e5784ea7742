//! The host as a value: [`Host`], built by [`HostBuilder`](crate::HostBuilder),
//! serving HTTP, running commands for the program that embeds it, and
//! shutting down without leaving anything behind.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::command::{Command, Status};
use crate::config::HostBuilder;
use crate::ending::Ending;
use crate::error::{AttachError, LogsError, RunError, StartError};
use crate::http::App;
use crate::http::request::{self, RunRequest};
use crate::http::server::{Connections, Serve};
use crate::http::service::ApiService;
use crate::policy::PolicyEngine;
use crate::recovery::{self, Recovered};
use crate::registry::Registry;
use crate::state_dir::StateDir;
use crate::stream::events::Events;
use crate::stream::reader::Cursor;
use crate::tasks::Tasks;
use crate::telemetry::{Metrics, OtlpConfig};

pub mod session;

/// A running host: its policy compiled, its state directory in place, its
/// commands' registry. Cheap to clone; every clone is the same host.
///
/// Serve it with [`Host::serve`], mount it in another server with
/// [`Host::service`], run commands directly with [`Host::run`], and end it
/// with [`Host::shutdown`].
#[derive(Clone)]
pub struct Host {
    shared: Arc<Shared>,
}

struct Shared {
    app: Arc<App>,
    /// Turns true when the host shuts down: every stream ends.
    shutdown: watch::Sender<bool>,
    /// Connections accepted by [`Host::serve`], drained at shutdown.
    connections: Connections,
    /// Until shutdown: dropping it removes a fresh directory.
    state_dir: Mutex<Option<StateDir>>,
    state_path: PathBuf,
    kept: bool,
    request_timeout: Duration,
    drain_timeout: Duration,
    tasks: Tasks,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("policy", &self.policy())
            .field("state_dir", &self.shared.state_path)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// A builder with every setting at its default (see [`HostBuilder`]).
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    pub(crate) async fn start(builder: HostBuilder) -> Result<Host, StartError> {
        let settings = builder.check()?;
        let tasks = Tasks::default();
        let policy = PolicyEngine::load(
            &settings.policy,
            settings.policy_settings.clone(),
            settings.limits,
            settings.epoch_ticker,
            &tasks,
        )
        .await?;
        let state_dir = match &settings.state_dir {
            Some(dir) => StateDir::given(dir),
            None => StateDir::fresh(),
        }
        .map_err(StartError::StateDir)?;
        let bounds = settings
            .bounds(state_dir.path())
            .map_err(StartError::Setting)?;
        let metrics = Arc::new(Metrics::new());
        let registry = Registry::new(
            policy.clone(),
            state_dir.path().to_path_buf(),
            state_dir.kept(),
            bounds,
            crate::registry::Options {
                trim_heap: settings.trim_heap,
                cgroups: settings.cgroups,
            },
            tasks.clone(),
            metrics,
        );
        if state_dir.kept() {
            let started = Instant::now();
            let found = recovery::recover(&registry, state_dir.path())
                .await
                .map_err(|source| StartError::Recovery {
                    path: state_dir.path().to_path_buf(),
                    source,
                })?;
            if found != Recovered::default() {
                tracing::info!(
                    logs = found.logs,
                    interrupted = found.interrupted,
                    killed = found.killed,
                    dropped = found.dropped,
                    took_ms = started.elapsed().as_millis() as u64,
                    "recovered what the previous host left in the state directory"
                );
            }
        }
        match &settings.access_token {
            Some(token) => crate::exec::hide_token(token),
            None => tracing::warn!(
                "no access token set: any local process can use the API as the host's user, \
                 and requests with `uid`/`gid` are refused (403 TOKEN_REQUIRED)"
            ),
        }
        if let Err(e) = crate::exec::envfile::keep_private(state_dir.path()) {
            tracing::warn!(
                "cannot make the host's own EXECD_ENVS file in the state directory: {e}; \
                 the SDK's set_env will not work"
            );
        }
        let (end, streams) = watch::channel(false);
        let app = Arc::new(App {
            registry,
            access_token: settings.access_token,
            framing: settings.framing,
            max_body_bytes: settings.max_body_bytes,
            body_timeout: settings.request_timeout,
            max_readers: settings.max_readers,
            shutdown: streams,
            end,
            sessions: crate::session::Sessions::new(state_dir.path()),
            metrics: crate::http::metrics::Source::new(),
            upstream: settings.upstream,
            cors: settings.cors,
            tasks: tasks.clone(),
        });
        tracing::info!(
            policy = policy.origin(),
            state_dir = %state_dir.path().display(),
            disk_budget = bounds.disk_budget,
            command_disk_budget = bounds.command_disk_budget,
            "started"
        );
        Ok(Host {
            shared: Arc::new(Shared {
                app,
                shutdown: watch::channel(false).0,
                connections: Connections::new(settings.max_connections),
                state_path: state_dir.path().to_path_buf(),
                kept: state_dir.kept(),
                state_dir: Mutex::new(Some(state_dir)),
                request_timeout: settings.request_timeout,
                drain_timeout: settings.drain_timeout,
                tasks,
            }),
        })
    }

    /// Serves the API on `listener` until [`Serve::with_graceful_shutdown`]'s
    /// signal fires or [`Host::shutdown`] begins, in the manner of
    /// `axum::serve`. Connections still open then are drained by
    /// [`Host::shutdown`], after the commands' terminal events reached
    /// their readers.
    pub fn serve(&self, listener: tokio::net::TcpListener) -> Serve {
        Serve::new(
            listener,
            Arc::clone(&self.shared.app),
            self.shared.request_timeout,
            self.shared.shutdown.subscribe(),
            self.shared.connections.clone(),
        )
    }

    /// The whole API as a service, to mount inside another server beside
    /// routes of its own: a `tower::Service` (and a `hyper` one) from any
    /// `http::Request` whose body is an `http_body::Body`.
    pub fn service(&self) -> ApiService {
        ApiService::new(Arc::clone(&self.shared.app))
    }

    /// Starts a command, as `POST /command` does (with `background`
    /// telling whether it keeps raw output for `/logs`). Its events are
    /// read with [`Execution::events`].
    pub async fn run(&self, run: Run) -> Result<Execution, RunError> {
        let request = run.check()?;
        let (command, _) = self.shared.app.registry.start(request, None).await?;
        Ok(self.execution(command))
    }

    /// A command the host knows (started here or over HTTP), by id.
    pub fn command(&self, id: &str) -> Option<Execution> {
        self.shared.app.registry.get(id).map(|c| self.execution(c))
    }

    /// Every command the host knows, as `GET /command` lists them:
    /// running, and finished within their retention (those a previous
    /// host on the state directory ran included), oldest first.
    ///
    /// ```
    /// use execd_host::{Host, Run};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let host = Host::builder().policy("ring").build().await?;
    /// let first = host.run(Run::shell("true")).await?;
    /// let second = host.run(Run::shell("exec sleep 60")).await?;
    /// first.wait().await;
    ///
    /// let listed = host.commands();
    /// let ids: Vec<&str> = listed.iter().map(|c| c.id()).collect();
    /// assert_eq!(ids, [first.id(), second.id()]);
    /// assert!(!listed[0].status().running && listed[1].status().running);
    ///
    /// host.shutdown(std::time::Duration::from_secs(3)).await;
    /// # Ok(()) }
    /// ```
    pub fn commands(&self) -> Vec<Execution> {
        let registry = &self.shared.app.registry;
        registry
            .all()
            .into_iter()
            .map(|c| self.execution(c))
            .collect()
    }

    fn execution(&self, command: Arc<Command>) -> Execution {
        Execution {
            command,
            app: Arc::clone(&self.shared.app),
        }
    }

    /// The host's metrics in the OpenMetrics text format (what the
    /// metrics listener serves, see [`Probes`](crate::Probes)): commands,
    /// events, readers, gaps, policy calls, disk, HTTP requests.
    pub fn openmetrics(&self) -> String {
        let registry = &self.shared.app.registry;
        registry.metrics().openmetrics(registry.snapshot())
    }

    /// Pushes the metrics over OTLP/HTTP every `config.interval` until the
    /// future is dropped or the host is gone. The daemon runs it when the
    /// `OTEL_*` variables ask for it ([`OtlpConfig::from_env`]).
    pub fn push_otlp(&self, config: OtlpConfig) -> impl Future<Output = ()> + Send + 'static {
        let shared = Arc::downgrade(&self.shared);
        crate::telemetry::otlp::push_forever(config, move || {
            let shared = shared.upgrade()?;
            Some(Host { shared }.openmetrics())
        })
    }

    /// Whether the host accepts commands: false once [`Host::shutdown`]
    /// has begun.
    pub fn is_accepting(&self) -> bool {
        !*self.shared.shutdown.borrow()
    }

    /// Where the policy came from, e.g. `` `disk` (embedded) ``.
    pub fn policy(&self) -> &str {
        self.shared.app.registry.policy().origin()
    }

    /// The state directory: the one given, or the fresh one made at start
    /// (removed at shutdown).
    pub fn state_dir(&self) -> &Path {
        &self.shared.state_path
    }

    /// Stops the host: no command starts from now on; every process group
    /// it started gets SIGTERM, and SIGKILL after `grace`; readers receive
    /// the terminal events, then every stream ends; connections accepted
    /// by [`Host::serve`] are drained (at most the drain timeout, then
    /// closed); the
    /// commands' files are removed, or kept for the next host when the
    /// state directory was given (it recovers them); and every task and
    /// thread of the host ends. Later calls, from any clone, return at
    /// once.
    pub async fn shutdown(&self, grace: Duration) {
        let shared = &self.shared;
        if shared.shutdown.send_replace(true) {
            return;
        }
        // Accept loops stopped with the flag; commands stop next. Streams
        // must outlive the commands' terminal events, so they end after.
        let registry = &shared.app.registry;
        tracing::info!("shutting down: stopping commands");
        registry.stop_all(grace).await;
        shared.app.end_streams();
        shared.connections.drain(shared.drain_timeout).await;
        for command in registry.all() {
            if shared.kept {
                // For the next host on this directory (see `recovery`).
                command.keep_files();
            } else {
                command.remove_files();
            }
        }
        shared.app.sessions.remove_all();
        registry.end();
        shared.tasks.wait(shared.drain_timeout).await;
        registry.clear();
        let state_dir = shared
            .state_dir
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(state_dir);
    }
}

/// A command to run with [`Host::run`]: shell text, or a program and its
/// arguments, and how to run it.
///
/// ```
/// use std::time::Duration;
/// let run = execd_host::Run::shell("make test")
///     .cwd("/tmp")
///     .env("CI", "1")
///     .timeout(Duration::from_secs(60));
/// ```
#[derive(Clone, Debug)]
pub struct Run {
    command: Option<String>,
    argv: Option<Vec<String>>,
    cwd: Option<PathBuf>,
    background: bool,
    timeout: Option<Duration>,
    user: Option<(u32, Option<u32>)>,
    envs: Vec<(String, String)>,
}

impl Run {
    /// Shell text, run as `bash -c` (`sh -c` where there is no bash).
    pub fn shell(command: impl Into<String>) -> Run {
        Run::new(Some(command.into()), None)
    }

    /// A program and its arguments, run without a shell (`PATH` searched).
    pub fn argv<I, S>(argv: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Run::new(None, Some(argv.into_iter().map(Into::into).collect()))
    }

    fn new(command: Option<String>, argv: Option<Vec<String>>) -> Run {
        Run {
            command,
            argv,
            cwd: None,
            background: false,
            timeout: None,
            user: None,
            envs: Vec::new(),
        }
    }

    /// The working directory (taken as it is: no `~` or `$NAME`
    /// expansion). Default: the host's.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Run {
        self.cwd = Some(dir.into());
        self
    }

    /// Keeps the raw combined output for `GET /command/{id}/logs`, as a
    /// background `POST /command` does. Default: false.
    pub fn background(mut self, background: bool) -> Run {
        self.background = background;
        self
    }

    /// SIGKILL to the command's process group after this long (its
    /// ending: [`Ending::TimedOut`]). Default: none.
    pub fn timeout(mut self, timeout: Duration) -> Run {
        self.timeout = Some(timeout).filter(|t| !t.is_zero());
        self
    }

    /// Runs as this user (and group; default: the user's primary group).
    pub fn user(mut self, uid: u32, gid: Option<u32>) -> Run {
        self.user = Some((uid, gid));
        self
    }

    /// Sets an environment variable, over the host's environment and the
    /// `EXECD_ENVS` file's entries.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Run {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The same checks as a `POST /command` body gets.
    fn check(self) -> Result<RunRequest, RunError> {
        let (command, argv) = match (self.command, self.argv) {
            (Some(command), _) => (request::check_command(command)?, None),
            (None, Some(argv)) => {
                request::check_argv(&argv)?;
                (request::quote_argv(&argv), Some(argv))
            }
            (None, None) => {
                return Err(RunError::Invalid("`command` or `argv` is required".into()));
            }
        };
        let envs = request::check_envs(self.envs.into_iter().collect())?;
        if let Some(cwd) = &self.cwd
            && !cwd.is_dir()
        {
            return Err(RunError::Invalid(format!(
                "`cwd` {cwd:?} is not an existing directory"
            )));
        }
        Ok(RunRequest {
            command,
            argv,
            cwd: self.cwd,
            background: self.background,
            timeout: self.timeout,
            uid: self.user.map(|(uid, _)| uid),
            gid: self.user.and_then(|(_, gid)| gid),
            envs: request::command_env(envs),
        })
    }
}

/// Raw output read by [`Execution::logs`]: the body and the cursor
/// headers of `GET /command/{id}/logs`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Logs {
    /// The bytes from the cursor (or from `head_cursor`, if the cursor is
    /// older than that) to the end of what the command has written.
    pub bytes: Vec<u8>,
    /// Where the next call starts to get only what came since
    /// (`EXECD-COMMANDS-TAIL-CURSOR`).
    pub next_cursor: u64,
    /// The oldest byte still kept (`EXECD-COMMANDS-HEAD-CURSOR`): a cursor
    /// before it lost the bytes in between to the disk budget.
    pub head_cursor: u64,
}

/// A command the host knows: started by [`Host::run`] or in a session,
/// or found by [`Host::command`] and [`Host::commands`].
pub struct Execution {
    command: Arc<Command>,
    app: Arc<App>,
}

impl std::fmt::Debug for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("id", &self.command.id)
            .finish_non_exhaustive()
    }
}

impl Execution {
    /// Its id: 32 hex digits, the same as over HTTP.
    pub fn id(&self) -> &str {
        &self.command.id
    }

    /// Running or not, and how it ended (what `GET /command/status/{id}`
    /// reports).
    pub fn status(&self) -> Status {
        self.command.status().clone()
    }

    /// When it started.
    pub fn started_at(&self) -> std::time::SystemTime {
        self.command.started_at
    }

    /// Waits until it has ended and says how. Cheap: it reads none of
    /// the log, only waits for the terminal event to be logged, and
    /// returns at once for a command that has ended.
    ///
    /// Should the host shut down without ending the command's log (a
    /// process that even SIGKILL did not end), it returns
    /// [`Ending::HostShutdown`] with no signal rather than wait forever.
    ///
    /// ```
    /// use execd_host::{Ending, Host, Run};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let host = Host::builder().policy("ring").build().await?;
    /// let failed = host.run(Run::shell("exit 3")).await?;
    /// assert_eq!(failed.wait().await, Ending::Exited(3));
    ///
    /// let killed = host.run(Run::shell("kill -KILL $$")).await?;
    /// assert_eq!(killed.wait().await, Ending::Signaled(9));
    ///
    /// let slow = host.run(Run::shell("exec sleep 60").timeout(Duration::from_millis(100))).await?;
    /// assert_eq!(slow.wait().await, Ending::TimedOut { signal: Some(9) });
    ///
    /// host.shutdown(Duration::from_secs(3)).await;
    /// # Ok(()) }
    /// ```
    pub async fn wait(&self) -> Ending {
        let mut progress = self.command.log.subscribe();
        let mut streams_ended = self.app.shutdown.clone();
        // Neither sender can go first: the log is ours, the app too.
        tokio::select! {
            _ = progress.wait_for(|p| p.finished) => {}
            _ = streams_ended.wait_for(|ended| *ended) => {}
        }
        // The pump sets the status before it logs the terminal event.
        let ending = self.command.status().ending.clone();
        ending.unwrap_or(Ending::HostShutdown { signal: None })
    }

    /// Its raw combined output (both pipes, as the bytes came) from byte
    /// `cursor` to now, as `GET /command/{id}/logs?cursor=` gives it:
    /// kept for a [background](Run::background) command only, within its
    /// disk budget. All of it is read into memory; pass the
    /// [`Logs::next_cursor`] of one call to the next for only what came
    /// since.
    ///
    /// ```
    /// use execd_host::{Host, Run};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let host = Host::builder().policy("ring").build().await?;
    /// let command = host.run(Run::shell("printf 'a\rb\n'; printf 'no newline'").background(true)).await?;
    /// command.wait().await;
    ///
    /// let logs = command.logs(0).await?;
    /// assert_eq!(logs.bytes, b"a\rb\nno newline");
    /// assert_eq!(logs.next_cursor, 14);
    /// let rest = command.logs(logs.next_cursor).await?;
    /// assert!(rest.bytes.is_empty());
    ///
    /// host.shutdown(std::time::Duration::from_secs(3)).await;
    /// # Ok(()) }
    /// ```
    pub async fn logs(&self, cursor: u64) -> Result<Logs, LogsError> {
        // The chunks are opened now: what is dropped meanwhile stays readable.
        let plan = self.command.output_plan(cursor)?;
        let head_cursor = plan.head;
        let start = cursor.max(head_cursor);
        let bytes = self
            .app
            .tasks
            .spawn_blocking(move || plan.read_all())
            .await
            .map_err(|e| LogsError::Io(std::io::Error::other(e)))?
            .map_err(LogsError::Io)?;
        Ok(Logs {
            next_cursor: start + bytes.len() as u64,
            head_cursor,
            bytes,
        })
    }

    /// SIGTERM to its process group now, SIGKILL after 3 s, as
    /// `DELETE /command?id=` does.
    pub fn interrupt(&self) {
        self.app.registry.interrupt(&self.command);
    }

    /// Its events after eid `after_eid` (0: from the start), live to the
    /// terminal event: the same cursor as `GET /command/{id}/resume` reads
    /// through, and admitted by the policy the same way.
    pub async fn events(&self, after_eid: u64) -> Result<Events, AttachError> {
        let log = &self.command.log;
        let reader = log.attach(self.app.max_readers).await?;
        let cursor = Cursor::new(
            Arc::clone(log),
            reader,
            after_eid,
            self.app.shutdown.clone(),
        );
        Ok(Events::new(cursor))
    }
}
