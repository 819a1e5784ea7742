//! The shell commands the figures run (as `bash -c`, like every command).

use std::path::Path;

/// 76-byte lines: 75 characters and a newline.
pub const LINE_75: &str =
    "012345678901234567890123456789012345678901234567890123456789012345678901234";

/// `bytes` of output in 76-byte lines (the last one may be partial).
pub fn lines_76(bytes: u64) -> String {
    format!("yes {LINE_75} | head -c {bytes}")
}

/// `bytes` of `x` with no newline: the host cuts 64 KiB lines.
pub fn no_newlines(bytes: u64) -> String {
    format!("head -c {bytes} /dev/zero | tr '\\0' x")
}

/// The ticker: `execd-bench tick` (see `tick.rs`) from its private copy,
/// waiting for the `go` FIFO if given, then for its phase.
pub fn ticker(bench: &Path, lines: u32, period_us: u32, go: Option<(&Path, u32)>) -> String {
    let mut command = format!("'{}' tick {lines} {period_us}", bench.display());
    if let Some((go, phase_us)) = go {
        command.push_str(&format!(" '{}' {phase_us}", go.display()));
    }
    command
}
