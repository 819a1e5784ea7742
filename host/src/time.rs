//! Wall-clock time as the contract writes it: Unix milliseconds in events,
//! RFC 3339 in status bodies.

use std::time::SystemTime;

/// `t` as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `t` as Unix milliseconds (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Now, as Unix milliseconds.
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}
