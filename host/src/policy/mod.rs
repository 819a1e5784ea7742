//! The log policy: a WebAssembly component behind `wit/`, one sandboxed
//! instance per command.
//!
//! [`PolicyEngine`] compiles a component once at start and checks its
//! configuration; [`PolicyInstance`] is one command's instance, with a memory
//! cap and a CPU deadline per call.

mod bindings;
mod embedded;
mod engine;
mod error;
mod instance;
mod native;

pub use bindings::wit;
pub use engine::{Limits, PolicyEngine};
pub use error::{LoadError, PolicyError};
pub use instance::PolicyInstance;
