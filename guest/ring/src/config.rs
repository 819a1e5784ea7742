//! The policy's settings, parsed from `--policy-config KEY=VALUE` pairs.

use std::fmt;

/// Bounds and retention of one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most events kept.
    pub max_events: u64,
    /// Most bytes kept (text plus a fixed per-event overhead).
    pub max_bytes: u64,
    /// How long a finished log stays resumable, in milliseconds.
    pub retention_ms: u64,
    /// Whether only one reader may follow a running command at a time.
    pub exclusive: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_events: 65_536,
            max_bytes: 64 << 20,
            retention_ms: 300_000,
            exclusive: false,
        }
    }
}

/// A setting the policy does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Config {
    /// Applies `KEY=VALUE` settings over the defaults. Known keys:
    /// `max-events`, `max-bytes` (both at least 1), `retention-secs`.
    pub fn parse<'a>(
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for (key, value) in settings {
            match key {
                "max-events" => config.max_events = positive(key, value)?,
                "max-bytes" => config.max_bytes = positive(key, value)?,
                "retention-secs" => config.retention_ms = number(key, value)?.saturating_mul(1000),
                _ => {
                    return Err(ConfigError(format!(
                        "unknown setting `{key}` (known: max-events, max-bytes, retention-secs)"
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

fn positive(key: &str, value: &str) -> Result<u64, ConfigError> {
    match number(key, value)? {
        0 => Err(ConfigError(format!("`{key}` must be at least 1"))),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(Config::parse([]).unwrap(), Config::default());
        let c = Config::parse([("max-events", "10"), ("retention-secs", "2")]).unwrap();
        assert_eq!((c.max_events, c.retention_ms), (10, 2000));
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(
            Config::parse([("max-events", "0")])
                .unwrap_err()
                .0
                .contains("at least 1")
        );
        assert!(
            Config::parse([("max-bytes", "x")])
                .unwrap_err()
                .0
                .contains("whole number")
        );
        assert!(
            Config::parse([("colour", "red")])
                .unwrap_err()
                .0
                .contains("unknown setting `colour`")
        );
    }
}
