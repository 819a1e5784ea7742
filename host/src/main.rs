//! The `execd-host` daemon: flags -> [`HostBuilder`] -> serve -> signals.
//! Everything it does beyond that (the umask, the fd limit, heap trimming,
//! signals) is its own choice as a process, not the library's.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use execd_host::{
    DEFAULT_COMMAND_DISK_BUDGET, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_COMMANDS,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_READERS, DEFAULT_POLICY,
    DEFAULT_POLICY_CALL_TIMEOUT, DEFAULT_POLICY_MEMORY_MB, DEFAULT_REQUEST_TIMEOUT, Framing, Host,
    HostBuilder, KILL_GRACE, MAX_LINE_BYTES_RANGE, Probes, process,
};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// A command-execution daemon whose output streams survive disconnects.
///
/// Speaks the command API of OpenSandbox's execd, and adds resumption:
/// `GET /command/{id}/resume?after_eid=N` or `Last-Event-ID`.
#[derive(Parser, Debug, Clone)]
#[command(name = "execd-host", version = VERSION)]
struct Config {
    /// Address to listen on, `HOST:PORT` (a name such as `localhost` is
    /// looked up; the first address it resolves to is used). Port 0 picks a
    /// free port; the address actually bound is printed on stdout at start.
    #[arg(long, env = "EXECD_LISTEN", default_value = "127.0.0.1:44772", value_parser = parse_address)]
    listen: String,

    /// Address of a second listener for operators, `HOST:PORT`, with no
    /// token check: `/metrics` (Prometheus text, or OpenMetrics when asked),
    /// `/healthz` and `/readyz`. Default: none.
    #[arg(long, env = "EXECD_METRICS_LISTEN", value_name = "ADDR", value_parser = parse_address)]
    metrics_listen: Option<String>,

    /// Token every request must carry in `X-EXECD-ACCESS-TOKEN`. Unset: no
    /// check. A flag's value is visible to every local user in
    /// /proc/<pid>/cmdline: prefer the environment variable or
    /// --access-token-file. Never passed on to commands.
    #[arg(long, env = "EXECD_ACCESS_TOKEN", hide_env_values = true)]
    access_token: Option<String>,

    /// Read the access token from this file (one trailing newline is
    /// ignored). Keep it readable by the host's user only.
    #[arg(long, env = "EXECD_ACCESS_TOKEN_FILE", value_name = "PATH")]
    access_token_file: Option<PathBuf>,

    /// Log policy: an embedded name (`disk`, the lossless default; `ring`,
    /// memory only; `exclusive`; `spill`), a path to a `.wasm` component
    /// built against `wit/`, or `native-disk` / `native-ring` (the same
    /// policy compiled in, unsandboxed: for measuring the sandbox's cost).
    #[arg(long, env = "EXECD_POLICY", default_value = DEFAULT_POLICY)]
    policy: String,

    /// A setting handed to the policy, `KEY=VALUE`; repeatable. The policy
    /// rejects unknown keys and bad values, and the host then exits.
    /// `disk`: memory-bytes (4194304), segment-bytes (67108864),
    /// retention-secs (300). `ring`/`exclusive`: max-events (65536),
    /// max-bytes (67108864), retention-secs (300). `spill`: memory-bytes
    /// (1048576), retention-secs.
    #[arg(long = "policy-config", env = "EXECD_POLICY_CONFIG", value_delimiter = ',', value_name = "KEY=VALUE", value_parser = parse_setting)]
    policy_config: Vec<(String, String)>,

    /// Memory cap of each policy instance, in MiB.
    #[arg(long, env = "EXECD_POLICY_MEMORY_MB", default_value_t = DEFAULT_POLICY_MEMORY_MB)]
    policy_memory_mb: u64,

    /// Wall-clock deadline of one policy call, in milliseconds (epoch
    /// interruption, 5 ms ticks).
    #[arg(long, env = "EXECD_POLICY_CALL_MS", default_value_t = millis(DEFAULT_POLICY_CALL_TIMEOUT))]
    policy_call_ms: u64,

    /// Default event framing; a request may choose with `?framing=`.
    #[arg(long, env = "EXECD_SSE_FRAMING", default_value = "standard", value_parser = parse_framing)]
    sse_framing: Framing,

    /// Largest request body accepted, in bytes (413 beyond).
    #[arg(long, env = "EXECD_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,

    /// Time a client has to send a request's head, and again its body, in
    /// milliseconds. A head not complete in time closes the connection (so
    /// does a keep-alive connection idle this long); a body not complete in
    /// time is answered with 408 REQUEST_TIMEOUT.
    #[arg(long, env = "EXECD_REQUEST_TIMEOUT_MS", default_value_t = millis(DEFAULT_REQUEST_TIMEOUT), value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_ms: u64,

    /// Most commands running at once (503 TOO_MANY_COMMANDS beyond).
    #[arg(long, env = "EXECD_MAX_COMMANDS", default_value_t = DEFAULT_MAX_COMMANDS)]
    max_commands: usize,

    /// Most readers following one command at once (503 TOO_MANY_READERS
    /// beyond), the first `POST /command` stream included.
    #[arg(long, env = "EXECD_MAX_READERS", default_value_t = DEFAULT_MAX_READERS as u32, value_parser = clap::value_parser!(u32).range(1..))]
    max_readers: u32,

    /// Each command in a cgroup (v2) of its own, where the host may create
    /// one: `auto` (the default) or `off`. `setsid` cannot leave a cgroup,
    /// so DELETE, timeouts and shutdown reach all a command started; each
    /// start costs a cgroup migration.
    #[arg(long, env = "EXECD_CGROUPS", value_enum, default_value_t = Cgroups::Auto)]
    cgroups: Cgroups,

    /// Most connections open at once; more are closed as soon as they are
    /// accepted (logged at most once a minute).
    #[arg(long, env = "EXECD_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,

    /// Longest line sent as one event, in bytes; longer lines arrive in
    /// pieces of this size (cut at a UTF-8 character boundary).
    #[arg(long, env = "EXECD_MAX_LINE_BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES as u32, value_parser = clap::value_parser!(u32).range(*MAX_LINE_BYTES_RANGE.start() as i64..=*MAX_LINE_BYTES_RANGE.end() as i64))]
    max_line_bytes: u32,

    /// Most bytes of disk one command may take: its event log and, for a
    /// background command, the raw output kept for /logs (half each). Over
    /// it, the oldest output goes (a `gap` with reason `budget`; /logs
    /// answers from its head cursor). Suffixes K, M, G, T (binary).
    #[arg(long, env = "EXECD_COMMAND_DISK_BUDGET", value_name = "BYTES", default_value_t = DEFAULT_COMMAND_DISK_BUDGET, value_parser = execd_host::parse_size)]
    command_disk_budget: u64,

    /// Most bytes of disk all commands may take under --state-dir; over it,
    /// finished logs are expired oldest first, then running commands'
    /// budgets shrink. Default: a quarter of the free space of the state
    /// directory's filesystem at start plus what the host already keeps
    /// there, capped at 4 GiB; a default under 1 MiB is refused at start.
    #[arg(long, env = "EXECD_DISK_BUDGET", value_name = "BYTES", value_parser = execd_host::parse_size)]
    disk_budget: Option<u64>,

    /// Directory for background commands' raw output and the policy's
    /// per-command directories; created 0700 if missing, refused if other
    /// users may write to it or it belongs to another user. Default: a
    /// fresh private temporary directory, removed when the host exits.
    #[arg(long, env = "EXECD_STATE_DIR")]
    state_dir: Option<PathBuf>,

    /// An execd to forward every route the host does not serve itself to
    /// (files, code contexts, PTY), after the host's own token check:
    /// `http://host:port`. https is not supported.
    #[arg(long, env = "EXECD_UPSTREAM", value_name = "URL")]
    upstream: Option<String>,

    /// Let web pages from this origin use the API from a browser
    /// (`https://app.example.com`, or `*` for any): CORS headers on every
    /// answer to a request from it, preflights answered. Repeatable.
    /// Default: none.
    #[arg(
        long = "cors-origin",
        env = "EXECD_CORS_ORIGIN",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    cors_origins: Vec<String>,
}

fn main() -> ExitCode {
    let matches = <Config as clap::CommandFactory>::command().get_matches();
    let config = match <Config as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(config) => config,
        Err(e) => e.exit(),
    };
    if let Some(both) = two_token_sources(&matches) {
        eprintln!("execd-host: {both}");
        return ExitCode::FAILURE;
    }
    process::init_logging(
        std::env::var("EXECD_LOG").ok().as_deref(),
        std::env::var("EXECD_LOG_FORMAT").ok().as_deref(),
    );
    // Every file the host and its policies create is private; commands
    // keep the umask the host was started with.
    if let Err(e) = process::private_umask() {
        eprintln!("execd-host: cannot start the command spawner: {e}");
        return ExitCode::FAILURE;
    }
    // This thread drives `run` (`block_on`), the host's start included:
    // recovery writes the endings of commands a previous host left
    // running from here, and this is not one of the runtime's threads.
    process::private_thread_umask();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(process::private_thread_umask)
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("execd-host: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each error's message already includes its cause: `{e:#}`
            // would print the cause a second time.
            eprintln!("execd-host: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Both a token and a token file, named as they were given (a flag or its
/// environment variable): clap's own conflict message names the flags even
/// when the value came from the environment.
fn two_token_sources(matches: &clap::ArgMatches) -> Option<String> {
    let source = |id: &str, flag: &str, env: &str| match matches.value_source(id) {
        Some(clap::parser::ValueSource::EnvVariable) => Some(env.to_string()),
        Some(clap::parser::ValueSource::CommandLine) => Some(flag.to_string()),
        _ => None,
    };
    let token = source("access_token", "--access-token", "EXECD_ACCESS_TOKEN")?;
    let file = source(
        "access_token_file",
        "--access-token-file",
        "EXECD_ACCESS_TOKEN_FILE",
    )?;
    Some(format!(
        "the access token is given twice, by {token} and by {file}: give one of them"
    ))
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Every running command holds pipes, and every stream a socket.
    process::raise_fd_limit();
    // Before anything else: a SIGTERM while the host starts (a recovery
    // can take seconds) or right after `listening on` must stop it in
    // order, never by the signal's default action, which would leave its
    // commands running and its files behind.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    // Bound before the host starts, so a port in use leaves nothing behind.
    let listener = bind(&config.listen).await?;
    let addr = listener.local_addr()?;
    // The probes answer during recovery (alive, not ready).
    let probes = Probes::new();
    if let Some(metrics_addr) = &config.metrics_listen {
        let metrics = bind(metrics_addr).await?;
        let bound = metrics.local_addr()?;
        tokio::spawn(probes.clone().serve(metrics));
        // Before the main address: a reader of stdout that waits for
        // `listening on` has both by then.
        println!("metrics on {bound}");
    }
    let otlp = execd_host::OtlpConfig::from_env(|name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let host = builder(config).build().await?;
    probes.ready(&host);
    if let Some(otlp) = otlp {
        tracing::info!(endpoint = %otlp.endpoint, interval_ms = otlp.interval.as_millis() as u64, "pushing metrics over OTLP");
        tokio::spawn(host.push_otlp(otlp));
    }
    // The one line on stdout: where to connect (port 0 picks one).
    println!("listening on {addr}");

    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    };
    host.serve(listener).with_graceful_shutdown(stop).await;
    host.shutdown(KILL_GRACE).await;
    Ok(())
}

/// A default duration as a flag's milliseconds.
const fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

/// `--cgroups`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Cgroups {
    /// A cgroup per command where the host may create one.
    Auto,
    /// Process groups only.
    Off,
}

/// The flags, as builder settings.
fn builder(config: Config) -> HostBuilder {
    let mut builder = Host::builder()
        .policy(config.policy)
        .policy_memory_mb(config.policy_memory_mb)
        .policy_call_timeout(Duration::from_millis(config.policy_call_ms))
        .framing(config.sse_framing)
        .max_body_bytes(config.max_body_bytes)
        .request_timeout(Duration::from_millis(config.request_timeout_ms))
        .max_commands(config.max_commands)
        .max_readers(config.max_readers as usize)
        .max_connections(config.max_connections as usize)
        .cgroups(config.cgroups == Cgroups::Auto)
        .max_line_bytes(config.max_line_bytes as usize)
        .command_disk_budget(config.command_disk_budget)
        // A daemon that runs thousands of commands would otherwise keep
        // their peak heap for good.
        .trim_heap(true);
    for (key, value) in config.policy_config {
        builder = builder.policy_setting(key, value);
    }
    if let Some(bytes) = config.disk_budget {
        builder = builder.disk_budget(bytes);
    }
    if let Some(dir) = config.state_dir {
        builder = builder.state_dir(dir);
    }
    if let Some(token) = config.access_token {
        builder = builder.access_token(token);
    }
    if let Some(path) = config.access_token_file {
        builder = builder.access_token_file(path);
    }
    if let Some(url) = config.upstream {
        builder = builder.upstream(url);
    }
    for origin in config.cors_origins {
        builder = builder.cors_origin(origin);
    }
    builder
}

/// The crate version, the commit it was built from and the policy
/// interface it loads.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("EXECD_GIT_COMMIT"),
    ", WIT execd:resume@",
    env!("EXECD_WIT_VERSION"),
    ")"
);

/// Binds `addr` (`HOST:PORT`, the host a name or an address), the first
/// address it resolves to.
async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let mut resolved = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let Some(first) = resolved.next() else {
        anyhow::bail!("cannot listen on {addr}: the name resolves to no address");
    };
    TcpListener::bind(first)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({first}): {e}"))
}

/// `HOST:PORT`, checked for its shape; the name is looked up at bind.
fn parse_address(s: &str) -> Result<String, String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("expected HOST:PORT, got {s:?}"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("expected HOST:PORT with a port 0-65535, got {s:?}"));
    }
    Ok(s.to_string())
}

fn parse_framing(s: &str) -> Result<Framing, String> {
    Framing::parse(s).ok_or_else(|| format!("expected `standard` or `legacy`, got {s:?}"))
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
