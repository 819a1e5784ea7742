//! Command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::sse::Framing;

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

    /// Token every request must carry in `X-EXECD-ACCESS-TOKEN`. Unset: no check.
    #[arg(long, env = "EXECD_ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Option<String>,

    /// Log policy: an embedded name (`ring`, `exclusive`, `spill`), a path
    /// to a `.wasm` component built against `wit/`, or `native-ring` (the
    /// ring compiled in, unsandboxed: for measuring the sandbox's cost).
    #[arg(long, default_value = "ring")]
    pub policy: String,

    /// A setting handed to the policy, `KEY=VALUE`; repeatable. The policy
    /// rejects unknown keys and bad values, and the host then exits.
    /// `ring`/`exclusive`: max-events (65536), max-bytes (67108864),
    /// retention-secs (300). `spill`: memory-bytes (1048576), retention-secs.
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
    #[arg(long, default_value_t = 64)]
    pub max_readers: usize,

    /// Longest line sent as one event, in bytes; longer lines arrive in
    /// pieces of this size (cut at a UTF-8 character boundary).
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(4..=16 * 1024 * 1024))]
    pub max_line_bytes: u32,

    /// Directory for background commands' raw output and the policy's
    /// per-command directories. Default: a fresh temporary directory,
    /// removed when the host exits.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
