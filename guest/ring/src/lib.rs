//! `ring`: the default execd-host log policy.
//!
//! Keeps the newest events of a command in a ring bounded by `max-events`
//! and `max-bytes`; what falls out is reported to late readers as a gap.
//! Any number of readers may follow the log at once.
//!
//! The logic is plain Rust ([`Ring`]) so it also builds natively (as an
//! rlib) for benchmarks; `component` wraps it as a WebAssembly component.
//! The types it takes and answers are the contract's, from
//! `execd-policy-core`, re-exported here.

mod config;
mod ring;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

pub use config::{Config, ConfigError};
pub use execd_policy_core::{
    Batch, Channel, Ending, Events, Gap, Outcome, ReadResult, Run, Stored,
};
pub use ring::{EVICTED, Ring};
