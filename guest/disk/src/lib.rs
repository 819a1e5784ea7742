//! `disk`: a lossless, disk-backed execd-host log policy.
//!
//! Every batch of a command's output is written, as it is appended and in
//! the columnar form it arrived in, to append-only segment files in the
//! command's directory (`/log`); the newest `memory-bytes` of it also stay
//! in memory for readers that keep up. Readers that lag read the files
//! sequentially. Nothing is lost while the output stays within the disk
//! budget the host sets; beyond it the oldest output is dropped (whole
//! segments, or the oldest records of a segment larger than the budget
//! now allows one to be, see [`mod@format`]) and reported as one `gap`
//! with reason `budget`; output that could not be
//! written (a full disk) is reported with reason `io` once it leaves
//! memory. The terminal event is never dropped. Any number of readers.
//!
//! Memory does not grow with the output: the tail is bounded, and the
//! index of the files holds one entry per segment plus a checkpoint per
//! 64 KiB of records.
//!
//! A host restarted on the same state directory reopens the log
//! ([`Log::reopen`]): the files are scanned with every checksum checked
//! and the index rebuilt from them, so reads serve what survives with its
//! eids and gaps; a torn last write is cut, damage costs the damaged
//! records and no more (the scan resynchronises on the next record it can
//! trust) and is reported as a `gap` with reason `damaged`, files that
//! cannot be trusted are skipped, and the ending the host then gives a log
//! that had none (outcome `HostRestarted`) is written after the last whole
//! record. See
//! "How the policy reopens a directory" in [`mod@format`].
//!
//! The logic is plain Rust ([`Log`]) that builds and is tested natively;
//! `component` wraps it as a WebAssembly component. The file format is in
//! [`mod@format`].
//!
//! Settings: `memory-bytes` (default 4 MiB), `segment-bytes` (64 MiB),
//! `retention-secs` (300).

mod config;
mod events;
mod file;
pub mod format;
mod index;
mod log;
mod recovery;
mod replay;
mod segment;
mod tail;
mod trim;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

pub use config::{Config, ConfigError};
pub use events::{
    BUDGET, Batch, Channel, DAMAGED, Ending, Events, Gap, IO, Outcome, ReadResult, Reason,
    Reopened, Run, Stored, TextSpan,
};
pub use log::Log;
