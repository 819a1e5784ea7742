//! The reference client of execd-host: run commands over HTTP and read
//! their output as typed events, over streams that resume by themselves.
//!
//! A [`Client`] talks to one host. [`Client::run`] and [`Client::attach`]
//! return an [`EventStream`]: each [`Event`] (a stdout or stderr line, a
//! [`Gap`] of lost output with its range and reason, and the terminal
//! [`Exit`] with its code) arrives exactly once, in order, however often
//! the connection drops; the stream reconnects after the last eid it
//! delivered, with exponential backoff and jitter, for at most a bounded
//! time ([`Backoff`]). An expired command, a failed policy or a host that
//! stays away ends the stream with a typed [`Error`].
//!
//! ```no_run
//! # async fn example() -> Result<(), execd_client::Error> {
//! use execd_client::{Client, Event, Run};
//!
//! let client = Client::new("http://127.0.0.1:44772")?;
//! let mut events = client.run(Run::shell("for i in 1 2 3; do echo $i; done")).await?;
//! while let Some(event) = events.next().await {
//!     match event? {
//!         Event::Stdout(line) => println!("{}", line.text),
//!         Event::Exit(exit) => println!("exit code {}", exit.code),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Plain `http://` only: this crate carries no TLS stack.

#![deny(missing_docs)]

mod backoff;
mod client;
mod endpoint;
mod error;
mod event;
mod framing;
mod run;
mod status;
mod stream;
mod transport;

pub use backoff::Backoff;
pub use client::{Client, ClientBuilder};
pub use endpoint::DEFAULT_URL;
pub use error::{Error, Result};
pub use event::{Event, Exit, ExitError, Gap, Line};
pub use framing::Framing;
pub use run::{Run, shell_quote};
pub use status::{CommandInfo, Logs, SessionInfo, Status};
pub use stream::{EventStream, Reconnect};
