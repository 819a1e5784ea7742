//! What can go wrong with a policy, at start and per command.

use std::path::PathBuf;

/// The version of the WIT package `execd:resume` this host speaks.
pub const WIT_VERSION: &str = "0.6.0";

/// Why the host could not load the policy it was told to use. Each is fatal
/// at start, and says which file or name and why.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unknown policy `{name}` (embedded policies: {known}; a path must name a .wasm file)")]
    /// No embedded policy has this name.
    UnknownName {
        /// The name given.
        name: String,
        /// The embedded names.
        known: String,
    },
    #[error("cannot read policy file {path}: {source}")]
    /// The component file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    #[error("policy {origin} is not a WebAssembly component: {reason}")]
    /// The bytes are not a WebAssembly component.
    NotComponent {
        /// Where it came from.
        origin: String,
        /// What wasmtime said.
        reason: String,
    },
    #[error(
        "policy {origin} does not implement the WIT world execd:resume/resume-policy@{WIT_VERSION} this host speaks: {reason}"
    )]
    /// The component does not implement the world this host speaks.
    Incompatible {
        /// Where it came from.
        origin: String,
        /// What wasmtime said.
        reason: String,
    },
    #[error(
        "policy {origin} was built against execd:resume@{built}, but this host speaks execd:resume@{WIT_VERSION}: rebuild it against this host's wit/ (README, \"Writing a policy\", says what changed)"
    )]
    /// The component was built against another version of the WIT package.
    OtherVersion {
        /// Where it came from.
        origin: String,
        /// The version it was built against.
        built: String,
    },
    #[error("policy {origin} rejected its configuration: {reason}")]
    /// The policy refused its settings.
    Config {
        /// Where it came from.
        origin: String,
        /// What the policy said.
        reason: String,
    },
    #[error("policy {origin} failed while starting: {source}")]
    /// The policy failed in its first instance.
    Failed {
        /// Where it came from.
        origin: String,
        /// What failed.
        source: PolicyError,
    },
    #[error("cannot set up the WebAssembly engine: {0}")]
    /// wasmtime could not be set up.
    Engine(String),
}

/// Why one command's policy instance stopped serving. After any of these
/// the instance is dropped: wasmtime poisons a Store after a trap.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy exceeded its CPU deadline of {0} ms in `{1}`")]
    /// A call ran past its CPU deadline (ms, call).
    Deadline(u64, &'static str),
    #[error("the policy exceeded its memory cap of {0} MiB in `{1}`")]
    /// The instance hit its memory cap (MiB, call).
    Memory(u64, &'static str),
    #[error("the policy trapped in `{1}`: {0}")]
    /// The instance trapped (why, call).
    Trap(String, &'static str),
    #[error("the policy returned an error from `{1}`: {0}")]
    /// A call returned an error (why, call).
    Refused(String, &'static str),
    #[error("the policy broke the log rules in `{1}`: {0}")]
    /// A call broke the log rules (why, call).
    Nonsense(String, &'static str),
    #[error("the policy could not be instantiated: {0}")]
    /// The instance could not be made.
    Instantiate(String),
}
