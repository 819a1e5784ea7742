//! Command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::stream::sse::Framing;

/// A command-execution daemon whose output streams survive disconnects.
///
/// Speaks the command API of OpenSandbox's execd, and adds resumption:
/// `GET /command/{id}/resume?after_eid=N` or `Last-Event-ID`.
#[derive(Parser, Debug, Clone)]
#[command(name = "execd-host", version)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port; the address actually
    /// bound is printed on stdout at start.
    #[arg(long, default_value = "127.0.0.1:44772")]
    pub listen: SocketAddr,

    /// Token every request must carry in `X-EXECD-ACCESS-TOKEN`. Unset: no
    /// check. A flag's value is visible to every local user in
    /// /proc/<pid>/cmdline: prefer the environment variable or
    /// --access-token-file. Never passed on to commands.
    #[arg(long, env = "EXECD_ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Option<String>,

    /// Read the access token from this file (one trailing newline is
    /// ignored). Keep it readable by the host's user only.
    #[arg(long, value_name = "PATH", conflicts_with = "access_token")]
    pub access_token_file: Option<PathBuf>,

    /// Log policy: an embedded name (`disk`, the lossless default; `ring`,
    /// memory only; `exclusive`; `spill`), a path to a `.wasm` component
    /// built against `wit/`, or `native-ring` (the ring compiled in,
    /// unsandboxed: for measuring the sandbox's cost).
    #[arg(long, default_value = "disk")]
    pub policy: String,

    /// A setting handed to the policy, `KEY=VALUE`; repeatable. The policy
    /// rejects unknown keys and bad values, and the host then exits.
    /// `disk`: memory-bytes (4194304), segment-bytes (67108864),
    /// retention-secs (300). `ring`/`exclusive`: max-events (65536),
    /// max-bytes (67108864), retention-secs (300). `spill`: memory-bytes
    /// (1048576), retention-secs.
    #[arg(long = "policy-config", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub policy_config: Vec<(String, String)>,

    /// Memory cap of each policy instance, in MiB.
    #[arg(long, default_value_t = 256)]
    pub policy_memory_mb: u64,

    /// CPU time one policy call may take, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub policy_call_ms: u64,

    /// Default event framing; a request may choose with `?framing=`.
    #[arg(long, value_enum, default_value = "standard")]
    pub sse_framing: Framing,

    /// Largest request body accepted, in bytes (413 beyond).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// Time a client has to send a request's head, and again its body, in
    /// milliseconds. A head not complete in time closes the connection (so
    /// does a keep-alive connection idle this long); a body not complete in
    /// time is answered with 408 REQUEST_TIMEOUT.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,

    /// Most commands running at once (503 TOO_MANY_COMMANDS beyond).
    #[arg(long, default_value_t = 1024)]
    pub max_commands: usize,

    /// Most readers following one command at once (503 TOO_MANY_READERS
    /// beyond), the first `POST /command` stream included.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_readers: u32,

    /// Longest line sent as one event, in bytes; longer lines arrive in
    /// pieces of this size (cut at a UTF-8 character boundary).
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(4..=16 * 1024 * 1024))]
    pub max_line_bytes: u32,

    /// Most bytes of disk one command may take: its event log and, for a
    /// background command, the raw output kept for /logs (half each). Over
    /// it, the oldest output goes (a `gap` with reason `budget`; /logs
    /// answers from its head cursor). Suffixes K, M, G, T (binary).
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = crate::budget::parse_size)]
    pub command_disk_budget: u64,

    /// Most bytes of disk all commands may take under --state-dir; over it,
    /// finished logs are expired oldest first, then running commands'
    /// budgets shrink. Default: 4 GiB, or a quarter of the free space of
    /// the state directory's filesystem at start, whichever is smaller.
    #[arg(long, value_name = "BYTES", value_parser = crate::budget::parse_size)]
    pub disk_budget: Option<u64>,

    /// Directory for background commands' raw output and the policy's
    /// per-command directories; created 0700 if missing, refused if other
    /// users may write to it or it belongs to another user. Default: a
    /// fresh private temporary directory, removed when the host exits.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,

    /// An execd to forward every route the host does not serve itself to
    /// (files, code contexts, PTY), after the host's own token check:
    /// `http://host:port`. https is not supported.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
}

/// Why an access token is unusable. HTTP trims header values, so a token
/// with surrounding whitespace could never match; an empty one would turn
/// auth off without saying so.
pub fn check_token(token: &str) -> Result<(), String> {
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
pub fn read_token_file(path: &std::path::Path) -> Result<String, String> {
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

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
