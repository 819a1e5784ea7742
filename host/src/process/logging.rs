//! The daemon's log: where `EXECD_LOG` and `EXECD_LOG_FORMAT` are read.
//!
//! A bare level (`EXECD_LOG=debug`) raises the host's own targets only:
//! wasmtime and cranelift log every compiled function at debug, which
//! would bury the host's lines (29,493 of 29,500 lines in a second, seen
//! here). They, and the HTTP and runtime crates, stay at `warn` unless the
//! filter names them.

use tracing_subscriber::EnvFilter;

/// The targets that are the host's own: a bare level applies to them.
const OWN_TARGETS: &[&str] = &["execd_host", "execd_policy"];

/// Targets kept at `warn` unless the filter names them.
const QUIET_TARGETS: &[&str] = &[
    "wasmtime",
    "cranelift",
    "regalloc2",
    "wasmparser",
    "hyper",
    "hyper_util",
    "h2",
    "mio",
    "tokio",
    "runtime",
];

/// The level used when `EXECD_LOG` is unset, or invalid.
const DEFAULT_LEVEL: &str = "info";

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human text, one line per event (the default).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the process's log subscriber on stderr, from the values of
/// `EXECD_LOG` (a filter: a level, or `target=level,...` directives) and
/// `EXECD_LOG_FORMAT` (`text` or `json`). A value that cannot be used is
/// not silently replaced: a warning naming it is logged once the
/// subscriber is up, and the default is used instead.
pub fn init_logging(filter: Option<&str>, format: Option<&str>) {
    let mut warnings = Vec::new();
    let format = match format.map(str::trim) {
        None | Some("") | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            warnings.push(format!(
                "EXECD_LOG_FORMAT={other:?} is not `text` or `json`: writing text"
            ));
            LogFormat::Text
        }
    };
    let filter = match filter.map(str::trim).filter(|f| !f.is_empty()) {
        None => build_filter(DEFAULT_LEVEL).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LEVEL)),
        Some(given) => build_filter(given).unwrap_or_else(|reason| {
            warnings.push(format!(
                "EXECD_LOG={given:?} is not a valid filter ({reason}): logging at {DEFAULT_LEVEL}"
            ));
            build_filter(DEFAULT_LEVEL).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LEVEL))
        }),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        // Colour codes only for a person at a terminal, not in a log file.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    for warning in warnings {
        tracing::warn!("{warning}");
    }
}

/// The filter for `given`: its directives, with a bare level applied to the
/// host's own targets only, and the noisy crates kept at `warn` unless named.
fn build_filter(given: &str) -> Result<EnvFilter, String> {
    let directives = expand(given);
    EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| e.to_string())
}

/// `given` as the directives [`build_filter`] parses.
fn expand(given: &str) -> String {
    let parts: Vec<&str> = given
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut named = Vec::new();
    for part in &parts {
        // A bare level (no `=`, no span filter): the host's own targets.
        if !part.contains('=') && !part.contains('[') && !part.contains(':') {
            out.push("warn".to_string());
            out.extend(OWN_TARGETS.iter().map(|t| format!("{t}={part}")));
        } else {
            named.push(part.split(['=', '[']).next().unwrap_or("").to_string());
            out.push((*part).to_string());
        }
    }
    for quiet in QUIET_TARGETS {
        if !named.iter().any(|n| n.starts_with(quiet)) {
            out.push(format!("{quiet}=warn"));
        }
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_raises_only_the_hosts_targets() {
        let d = expand("debug");
        assert!(
            d.starts_with("warn,execd_host=debug,execd_policy=debug"),
            "{d}"
        );
        assert!(d.contains("cranelift=warn"), "{d}");
        assert!(d.contains("wasmtime=warn"), "{d}");
    }

    #[test]
    fn a_named_crate_keeps_its_level() {
        let d = expand("info,cranelift_codegen=debug");
        assert!(d.contains("cranelift_codegen=debug"), "{d}");
        assert!(!d.contains("cranelift=warn"), "{d}");
        assert!(d.contains("wasmtime=warn"), "{d}");
    }

    #[test]
    fn an_invalid_filter_is_an_error() {
        assert!(build_filter("execd_host=loud").is_err());
        assert!(build_filter("debug").is_ok());
        assert!(build_filter("execd_host=trace").is_ok());
    }
}
