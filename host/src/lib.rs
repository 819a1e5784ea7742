//! execd-host: runs shell commands for a sandbox and streams their output
//! as Server-Sent Events that survive disconnects. This crate is the
//! daemon as a library, for programs that would rather link the host than
//! run a second process.
//!
//! - [`Host::builder`] takes every setting the daemon has a flag for
//!   ([`HostBuilder`], with its `DEFAULT_*`s); [`HostBuilder::build`]
//!   compiles the policy and makes the state directory.
//! - [`Host::serve`] serves the HTTP API on a listener, in the manner of
//!   `axum::serve`; [`Host::service`] is the same API as a
//!   `tower::Service`, to mount in a server of your own beside your routes.
//! - [`Host::run`] starts a command directly; its [`Execution`] gives the
//!   id, the status, interrupt, and [`Execution::events`]: a `Stream` of
//!   typed [`Event`]s read by the same cursor as `/resume`;
//!   [`Execution::wait`], how it ended as an [`Ending`] (the terminal
//!   event's `reason` and `signal`, typed); and [`Execution::logs`], a
//!   background command's raw output from a byte cursor, as `/logs`.
//! - [`Host::commands`] lists the commands the host knows, oldest first,
//!   as `GET /command`; [`Host::session`] makes a bash [`Session`] that
//!   runs commands as the `/session` routes do.
//! - [`Host::shutdown`] stops the commands (SIGTERM, then SIGKILL), lets
//!   readers get their terminal events, removes the host's files, and
//!   leaves no task or thread behind.
//!
//! Process-wide choices (the umask, the fd limit, signals) are the
//! program's: see [`process`], and `src/main.rs` for how the daemon makes
//! them.
//!
//! ```
//! use futures_util::StreamExt;
//! use execd_host::{Event, Host, Run};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = Host::builder().policy("ring").build().await?;
//!
//! // Over HTTP: port 0 picks a free port.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let serving = tokio::spawn(host.serve(listener).into_future());
//!
//! // Or directly, with typed events.
//! let command = host.run(Run::shell("echo hello; echo world")).await?;
//! let mut events = command.events(0).await?;
//! let mut lines = Vec::new();
//! while let Some(event) = events.next().await {
//!     match event {
//!         Event::Lines(batch) => lines.extend(batch.into_iter().map(|l| l.text)),
//!         Event::Gap(gap) => println!("missed eids {}..={}", gap.from_eid, gap.to_eid),
//!         Event::End(end) => println!("ended: {}", end.ending),
//!     }
//! }
//! assert_eq!(lines, ["hello", "world"]);
//!
//! host.shutdown(std::time::Duration::from_secs(3)).await;
//! serving.await?;
//! # Ok(()) }
//! ```
//!
//! Inside the crate, each concern has its folder: `http/` (serving,
//! routes, the error mapping), `stream/` (the reader cursor, SSE framing),
//! `exec/` (spawning, the pump, lines, raw output), `log/` (the log: eids,
//! its rule checks, the fallback after a policy failure), `policy/` (the
//! wasmtime sandbox), and beside them `registry`, `command`, `config` and
//! the restart pieces `record`, `recovery`, `state_dir`.

#![deny(missing_docs)]

mod budget;
mod command;
mod config;
mod ending;
mod error;
mod exec;
mod host;
mod http;
mod keys;
mod log;
mod policy;
pub mod process;
mod record;
mod recovery;
mod registry;
mod scratch;
mod session;
mod state_dir;
mod stream;
mod tasks;
mod telemetry;
mod time;

pub use budget::parse_size;
pub use command::{KILL_GRACE, Status};
pub use config::*;
pub use ending::Ending;
pub use error::{
    AttachError, LoadError, LogsError, PolicyError, RunError, SessionError, StartError,
};
pub use host::session::Session;
pub use host::{Execution, Host, Logs, Run};
pub use http::probes::Probes;
pub use http::server::Serve;
pub use http::service::{ApiBody, ApiFuture, ApiService};
pub use policy::EpochTicker;
pub use session::{NewSession, SessionRun};
pub use stream::events::{Channel, End, Event, Events, Gap, Line, Outcome};
pub use stream::sse::Framing;
pub use telemetry::OtlpConfig;

/// Internals the crate's own property tests and measurements reach into
/// (`tests/e2e/props.rs`, `examples/instantiate.rs`): not API, no
/// stability promised.
#[doc(hidden)]
pub mod internal {
    pub use crate::exec::lines;
    pub use crate::http::request;
    pub use crate::log::batch;
    /// The policy engine, for measuring it.
    pub mod policy {
        pub use crate::policy::{
            EpochTicker, Limits, PolicyEngine, PolicyInstance, PolicySource, wit,
        };
    }
    pub use crate::stream::sse;
    pub use crate::tasks::Tasks;
}
