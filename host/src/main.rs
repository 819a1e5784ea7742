//! The `execd-host` daemon.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use execd_host::budget;
use execd_host::command::KILL_GRACE;
use execd_host::config::{self, Config};
use execd_host::exec;
use execd_host::http::App;
use execd_host::metrics;
use execd_host::policy::{Limits, PolicyEngine};
use execd_host::recovery::{self, Recovered};
use execd_host::registry::{Bounds, Registry};
use execd_host::server;
use execd_host::session::Sessions;
use execd_host::state_dir::StateDir;
use execd_host::upstream::Upstream;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EXECD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Every file the host and its policies create is private; commands
    // keep the umask the host was started with.
    if let Err(e) = exec::private_umask() {
        eprintln!("execd-host: cannot start the command spawner: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(exec::private_thread_umask)
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
            eprintln!("execd-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the open-file limit to its hard maximum: every running command
/// holds pipes, and every stream a socket.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    raise_fd_limit();
    let access_token = access_token(&config)?;
    let upstream = match &config.upstream {
        Some(url) => Some(Upstream::parse(url).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let limits = Limits {
        memory_mb: config.policy_memory_mb,
        call_ms: config.policy_call_ms,
    };
    let policy = PolicyEngine::load(&config.policy, config.policy_config.clone(), limits).await?;
    // Bound before the state directory exists, so a port in use leaves
    // nothing behind.
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let state_dir = match &config.state_dir {
        Some(dir) => StateDir::given(dir),
        None => StateDir::fresh(),
    }
    .map_err(anyhow::Error::msg)?;
    let bounds = Bounds {
        max_commands: config.max_commands,
        max_line_bytes: config.max_line_bytes as usize,
        command_disk_budget: config.command_disk_budget,
        disk_budget: config
            .disk_budget
            .unwrap_or_else(|| budget::default_host_budget(state_dir.path())),
    };
    let registry = Registry::new(
        policy.clone(),
        state_dir.path().to_path_buf(),
        state_dir.kept(),
        bounds,
    );
    if state_dir.kept() {
        let started = std::time::Instant::now();
        let found = recovery::recover(&registry, state_dir.path())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot read --state-dir {}: {e}",
                    state_dir.path().display()
                )
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
    let (shutdown, shutdown_rx) = watch::channel(false);
    let app = Arc::new(App {
        registry: Arc::clone(&registry),
        access_token,
        framing: config.sse_framing,
        max_body_bytes: config.max_body_bytes,
        body_timeout: Duration::from_millis(config.request_timeout_ms),
        max_readers: config.max_readers as usize,
        shutdown: shutdown_rx,
        sessions: Sessions::new(state_dir.path()),
        metrics: metrics::Source::new(),
        upstream,
    });
    tracing::info!(
        policy = policy.origin(),
        state_dir = %state_dir.path().display(),
        disk_budget = bounds.disk_budget,
        command_disk_budget = bounds.command_disk_budget,
        "started"
    );
    // The one line on stdout: where to connect (port 0 picks one).
    println!("listening on {addr}");

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    };
    let draining = server::serve(
        listener,
        Arc::clone(&app),
        Duration::from_millis(config.request_timeout_ms),
        stop,
    )
    .await;
    tracing::info!("shutting down: stopping commands");
    registry.stop_all(KILL_GRACE).await;
    // Streams of finished commands have ended with their terminal event;
    // the rest (waiting on nothing now) end here.
    let _ = shutdown.send(true);
    draining.wait(Duration::from_secs(5)).await;
    for command in registry.all() {
        if state_dir.kept() {
            // For the next host on this directory (see `recovery`).
            command.keep_files();
        } else {
            command.remove_files();
        }
    }
    app.sessions.remove_all();
    drop(state_dir);
    Ok(())
}

/// The access token, from the flag, the environment or a file; refused if
/// no request could match it or it would silently turn auth off.
fn access_token(config: &Config) -> anyhow::Result<Option<String>> {
    let token = match (&config.access_token, &config.access_token_file) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(path)) => Some(config::read_token_file(path).map_err(anyhow::Error::msg)?),
        (None, None) => None,
    };
    if let Some(token) = &token {
        config::check_token(token).map_err(anyhow::Error::msg)?;
    }
    Ok(token)
}
