//! The command line, as clap reads it.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use execd_client::{DEFAULT_URL, Framing};

/// execdctl: run commands on an execd-host and follow their output, riding
/// out dropped connections without losing or repeating a line.
#[derive(Parser, Debug)]
#[command(name = "execdctl", version, after_help = crate::exit::TABLE)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Args, Debug)]
pub struct Global {
    /// The host's base URL (http:// only).
    #[arg(long, env = "EXECD_URL", default_value = DEFAULT_URL, global = true)]
    pub url: String,
    /// The host's access token, sent as X-EXECD-ACCESS-TOKEN.
    #[arg(
        long,
        env = "EXECD_ACCESS_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print one JSON object per line (events, statuses, list entries).
    #[arg(long, global = true)]
    pub json: bool,
    /// Report reconnections and waits on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Ask the host for this stream framing (both are read either way).
    #[arg(long, global = true, value_parser = parse_framing)]
    pub framing: Option<Framing>,
    /// How long to keep reconnecting after a cut before giving up (default
    /// 60s). Given explicitly, it is also how long to wait for a host that
    /// is not up yet.
    #[arg(long, env = "EXECD_RETRY_FOR", value_parser = parse_duration, global = true)]
    pub retry_for: Option<Duration>,
}

/// How long a streak of failed reconnections may last without
/// `--retry-for`.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(60);

impl Global {
    /// The bound on a streak of reconnections.
    pub fn retry_for(&self) -> Duration {
        self.retry_for.unwrap_or(DEFAULT_RETRY_FOR)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command and stream its stdout and stderr; exit with its status.
    Run(RunArgs),
    /// Follow a command's output from an event id to its end; exit with its status.
    Attach(AttachArgs),
    /// Show a command's status.
    Status {
        /// The command's id, or a prefix of it that names one command.
        id: String,
    },
    /// Print a background command's raw output.
    Logs {
        /// The command's id, or a prefix of it that names one command.
        id: String,
        /// Start at this byte offset of the combined output.
        #[arg(long, default_value_t = 0)]
        cursor: u64,
        /// Keep printing new output until the command ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Interrupt a command: SIGTERM to its process group, SIGKILL 3 s later.
    Kill {
        /// The command's id, or a prefix of it that names one command.
        id: String,
    },
    /// List the commands the host knows: running, and finished but retained.
    Ps,
    /// Manage bash sessions, whose variables and directory carry over between runs.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Check that the host is up and accepts the token.
    Ping,
}

#[derive(Subcommand, Debug)]
pub enum SessionCommand {
    /// Create a session and print its id.
    New {
        /// The session's starting directory.
        #[arg(long)]
        cwd: Option<String>,
    },
    /// Run a command in a session (as `run --session ID`).
    Run {
        /// The session's id.
        id: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// List the host's sessions, oldest first, with the run going on in each.
    Ls,
    /// End a session and its running command.
    Rm {
        /// The session's id.
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Start it in the background, print its id and exit.
    #[arg(long)]
    pub bg: bool,
    /// Working directory on the host (~ and $VARS are expanded there).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// An environment variable for the command; repeatable.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub envs: Vec<(String, String)>,
    /// Kill the command after this long (e.g. 10s, 1m30s, 500ms).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Run as this user id.
    #[arg(long)]
    pub uid: Option<u32>,
    /// Run with this group id (needs --uid).
    #[arg(long, requires = "uid")]
    pub gid: Option<u32>,
    /// Run in this session (its variables and directory carry over).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Treat the arguments as shell text, joined by spaces (as ssh does),
    /// instead of a program and its arguments.
    #[arg(short = 'c', long)]
    pub shell: bool,
    #[command(flatten)]
    pub interrupt: InterruptArgs,
    /// The command and its arguments: everything after the options (a
    /// `--` before them is optional; it is needed only for a command whose
    /// name starts with `-`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "CMD"
    )]
    pub argv: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// The command's id, or a prefix of it that names one command.
    pub id: String,
    /// Start after this event id (0: everything the host retains).
    #[arg(long, value_name = "EID", default_value_t = 0)]
    pub from: u64,
    #[command(flatten)]
    pub interrupt: InterruptArgs,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct InterruptArgs {
    /// On Ctrl-C, detach and leave the command running, instead of
    /// interrupting it.
    #[arg(long)]
    pub detach_on_interrupt: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (try 10s, 1m30s, 500ms)"))
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

fn parse_framing(text: &str) -> Result<Framing, String> {
    text.parse()
}
