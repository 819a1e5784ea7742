//! The policy's settings, parsed from `--policy-config KEY=VALUE` pairs.

use std::fmt;

/// Default size of the in-memory tail: 4 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 4 << 20;
/// Default size a segment file grows to before the next one starts: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default time a finished log stays resumable: 300 s.
pub const DEFAULT_RETENTION_SECS: u64 = 300;

/// Smallest tail accepted: below this every batch would go to disk and
/// straight out of memory, and readers that keep up would pay syscalls.
const MIN_MEMORY_BYTES: u64 = 64 << 10;
/// Smallest segment accepted: a file header and a few records.
const MIN_SEGMENT_BYTES: u64 = 4 << 10;

/// Bounds and retention of one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes of memory the tail of newest events may take.
    pub memory_bytes: u64,
    /// Bytes a segment file grows to before the next one starts (a disk
    /// budget may make segments smaller, see [`crate::Log::set_disk_budget`]).
    pub segment_bytes: u64,
    /// How long a finished log stays resumable, in milliseconds.
    pub retention_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            retention_ms: DEFAULT_RETENTION_SECS * 1000,
        }
    }
}

/// A setting the policy does not accept; the text names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Applies `KEY=VALUE` settings over the defaults. Known keys:
    /// `memory-bytes` (at least 65536), `segment-bytes` (at least 4096),
    /// `retention-secs`.
    ///
    /// ```
    /// use execd_policy_disk::Config;
    /// let config = Config::parse([("memory-bytes", "1048576")]).unwrap();
    /// assert_eq!(config.memory_bytes, 1 << 20);
    /// assert!(Config::parse([("colour", "red")]).is_err());
    /// ```
    pub fn parse<'a>(
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for (key, value) in settings {
            match key {
                "memory-bytes" => config.memory_bytes = at_least(key, value, MIN_MEMORY_BYTES)?,
                "segment-bytes" => {
                    config.segment_bytes = at_least(key, value, MIN_SEGMENT_BYTES)?;
                }
                "retention-secs" => config.retention_ms = number(key, value)?.saturating_mul(1000),
                _ => {
                    return Err(ConfigError(format!(
                        "unknown setting `{key}` (known: memory-bytes, segment-bytes, retention-secs)"
                    )));
                }
            }
        }
        Ok(config)
    }
}

fn number(key: &str, value: &str) -> Result<u64, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| ConfigError(format!("`{key}` must be a whole number, not `{value}`")))
}

fn at_least(key: &str, value: &str, min: u64) -> Result<u64, ConfigError> {
    match number(key, value)? {
        n if n < min => Err(ConfigError(format!(
            "`{key}` must be at least {min}, not {n}"
        ))),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(Config::parse([]), Ok(Config::default()));
        let c = Config::parse([
            ("memory-bytes", "65536"),
            ("segment-bytes", " 8192 "),
            ("retention-secs", "2"),
        ])
        .unwrap();
        assert_eq!(
            (c.memory_bytes, c.segment_bytes, c.retention_ms),
            (65536, 8192, 2000)
        );
    }

    #[test]
    fn rejects_bad_settings_naming_them() {
        let error = |pairs: &[(&str, &str)]| Config::parse(pairs.iter().copied()).unwrap_err().0;
        assert!(error(&[("memory-bytes", "1000")]).contains("`memory-bytes` must be at least"));
        assert!(
            error(&[("segment-bytes", "-1")]).contains("`segment-bytes` must be a whole number")
        );
        assert!(error(&[("retention-secs", "soon")]).contains("`retention-secs`"));
        assert!(error(&[("max-events", "10")]).contains("unknown setting `max-events`"));
    }
}
