//! The `execd-host` daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use execd_host::command::KILL_GRACE;
use execd_host::config::Config;
use execd_host::http::App;
use execd_host::policy::{Limits, PolicyEngine};
use execd_host::registry::{Bounds, Registry};
use execd_host::server;
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
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
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
    let limits = Limits {
        memory_mb: config.policy_memory_mb,
        call_ms: config.policy_call_ms,
    };
    let policy = PolicyEngine::load(&config.policy, config.policy_config.clone(), limits).await?;
    let (state_dir, owned) = state_dir(config.state_dir.clone())?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let bounds = Bounds {
        max_commands: config.max_commands,
        max_line_bytes: config.max_line_bytes as usize,
    };
    let registry = Registry::new(policy.clone(), state_dir.clone(), bounds);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let app = Arc::new(App {
        registry: Arc::clone(&registry),
        access_token: config.access_token.clone().filter(|t| !t.is_empty()),
        framing: config.sse_framing,
        max_body_bytes: config.max_body_bytes,
        body_timeout: Duration::from_millis(config.request_timeout_ms),
        max_readers: config.max_readers,
        shutdown: shutdown_rx,
    });
    tracing::info!(policy = policy.origin(), state_dir = %state_dir.display(), "started");
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
        app,
        Duration::from_millis(config.request_timeout_ms),
        stop,
    )
    .await;
    tracing::info!("shutting down: stopping commands");
    stop_commands(&registry).await;
    // Streams of finished commands have ended with their terminal event;
    // the rest (waiting on nothing now) end here.
    let _ = shutdown.send(true);
    draining.wait(Duration::from_secs(5)).await;
    for command in registry.all() {
        command.remove_files();
    }
    if owned {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    Ok(())
}

/// SIGTERM to every running command's process group, SIGKILL to those
/// still running after the grace, and a moment for the pumps to log their
/// terminal events, so connected readers get them.
async fn stop_commands(registry: &Registry) {
    registry.close();
    let commands = registry.all();
    for command in &commands {
        command.signal(libc::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + KILL_GRACE;
    while registry.running() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for command in &commands {
        command.signal(libc::SIGKILL);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while registry.running() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The given state directory, or a fresh one under the system temp dir
/// that the host owns and removes at exit.
fn state_dir(given: Option<PathBuf>) -> anyhow::Result<(PathBuf, bool)> {
    if let Some(dir) = given {
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create --state-dir {}: {e}", dir.display()))?;
        return Ok((dir, false));
    }
    let dir = std::env::temp_dir().join(format!("execd-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create the state dir {}: {e}", dir.display()))?;
    Ok((dir, true))
}
