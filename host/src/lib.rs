//! execd-host: runs shell commands for a sandbox and streams their output
//! as Server-Sent Events that survive disconnects.
//!
//! - [`exec`] spawns processes and pumps their pipes, split by [`lines`],
//!   into a command's [`log`].
//! - The log's content is kept by a [`policy`], a sandboxed WebAssembly
//!   component: it assigns eids, bounds, evicts and admits readers.
//! - [`reader`] streams a log from a cursor; [`http`] serves the API over
//!   [`sse`] framing; [`registry`] knows every command by id.

pub mod budget;
pub mod command;
pub mod config;
pub mod exec;
pub mod http;
pub mod log;
pub mod policy;
pub mod record;
pub mod recovery;
pub mod registry;
pub mod scratch;
pub mod session;
pub mod state_dir;
pub mod stream;
