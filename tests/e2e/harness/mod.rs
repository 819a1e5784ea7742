//! Test harness: starts the real `execd-host` binary on a free loopback
//! port, and talks to it over raw TCP as an HTTP/1.1 client would, so tests
//! can read streams event by event and drop connections at any point.
//!
//! - [`host`]: the host process ([`Host`]: start, signal, stop);
//! - [`client`]: requests ([`Host::send`] and friends, [`try_request`]),
//!   [`Response`], and the incrementally read [`Stream`];
//! - [`sse`]: events parsed from a stream ([`Event`], [`logged`]);
//! - [`policies`]: policy components built for a test ([`build_policy`]).

// Helpers serve many test modules; not every one uses each of them.
#![allow(dead_code)]

mod client;
mod host;
mod policies;
mod sse;

use std::time::Duration;

pub use client::{Response, Stream, try_request};
pub use host::{Host, host_binary};
pub use policies::build_policy;
pub use sse::{Event, assert_failed, assert_reason, init_id, logged};

/// Upper bound for any single wait in a test; a hang fails, not blocks CI.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A per-test temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("execd-test-{}-{}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
