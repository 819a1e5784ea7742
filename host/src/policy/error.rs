//! What can go wrong with a policy, at start and per command.

use std::path::PathBuf;

/// The version of the WIT package `execd:resume` this host speaks.
pub const WIT_VERSION: &str = "0.4.0";

/// Why the host could not load the policy it was told to use. Each is fatal
/// at start, and says which file or name and why.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unknown policy `{name}` (embedded policies: {known}; a path must name a .wasm file)")]
    UnknownName { name: String, known: String },
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy {origin} is not a WebAssembly component: {reason}")]
    NotComponent { origin: String, reason: String },
    #[error(
        "policy {origin} does not implement the WIT world execd:resume/resume-policy@{WIT_VERSION} this host speaks: {reason}"
    )]
    Incompatible { origin: String, reason: String },
    #[error(
        "policy {origin} was built against execd:resume@{built}, but this host speaks execd:resume@{WIT_VERSION}: rebuild it against this host's wit/ (README, \"Writing a policy\", says what changed)"
    )]
    OtherVersion { origin: String, built: String },
    #[error("policy {origin} rejected its configuration: {reason}")]
    Config { origin: String, reason: String },
    #[error("policy {origin} failed while starting: {source}")]
    Failed { origin: String, source: PolicyError },
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
}

/// Why one command's policy instance stopped serving. After any of these
/// the instance is dropped: wasmtime poisons a Store after a trap.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy exceeded its CPU deadline of {0} ms in `{1}`")]
    Deadline(u64, &'static str),
    #[error("the policy exceeded its memory cap of {0} MiB in `{1}`")]
    Memory(u64, &'static str),
    #[error("the policy trapped in `{1}`: {0}")]
    Trap(String, &'static str),
    #[error("the policy returned an error from `{1}`: {0}")]
    Refused(String, &'static str),
    #[error("the policy broke the log rules in `{1}`: {0}")]
    Nonsense(String, &'static str),
    #[error("the policy could not be instantiated: {0}")]
    Instantiate(String),
}
