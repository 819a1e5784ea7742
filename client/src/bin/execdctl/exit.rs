//! execdctl's exit statuses: the command's own, or one that says which
//! client-side failure happened. The table is printed by `--help`.

use execd_client::{Error, Exit};

/// The exit statuses, as `--help` shows them.
pub const TABLE: &str = "\
Exit status:
  0-255  run, attach: the command's own exit status
  128+N  run, attach: signal N ended the command (SIGKILL 137, SIGTERM 143)
  255    run, attach: the command ended without an exit code (e.g. its host restarted)
  130    run, attach: detached by Ctrl-C; the command may still be running
  141    run, attach: stdout was closed (e.g. piped into head)
  240    usage error: a bad flag, argument or URL
  241    the host is unreachable (not running, or a wrong --url)
  242    the host refused the access token (--token, EXECD_ACCESS_TOKEN)
  243    no such command or session id on the host
  244    the command expired on the host while reconnecting: the rest of its output is gone
  245    gave up reconnecting: the host went away mid-stream and stayed away (--retry-for)
  246    the host refused the request (bad cwd, busy session, failed policy, ...)
  247    other failure: the connection dropped before the command had an id, or the host's answer was unreadable";

pub const DETACHED: u8 = 130;
pub const USAGE: u8 = 240;
pub const UNREACHABLE: u8 = 241;
pub const UNAUTHORIZED: u8 = 242;
pub const NOT_FOUND: u8 = 243;
pub const EXPIRED: u8 = 244;
pub const GAVE_UP: u8 = 245;
pub const REFUSED: u8 = 246;
pub const OTHER: u8 = 247;
/// stdout closed under us (e.g. `execdctl run ... | head`): as a program
/// killed by SIGPIPE.
pub const STDOUT_CLOSED: u8 = 141;
/// A command that ended without a code and without a known signal.
pub const NO_CODE: u8 = 255;

/// The status for a command's ending.
pub fn of_exit(exit: &Exit) -> u8 {
    if let Some(signal) = exit.signal() {
        return (128 + signal).clamp(0, 255) as u8;
    }
    match exit.code {
        0..=255 => exit.code as u8,
        _ => NO_CODE,
    }
}

/// The status for a client-side failure.
pub fn of_error(error: &Error) -> u8 {
    match error {
        Error::InvalidUrl { .. } | Error::HttpsUnsupported { .. } => USAGE,
        Error::Unreachable { .. } => UNREACHABLE,
        Error::Unauthorized { .. } => UNAUTHORIZED,
        Error::NotFound { .. } => NOT_FOUND,
        Error::Expired { .. } => EXPIRED,
        Error::GaveUp { .. } => GAVE_UP,
        Error::PolicyFailed { .. } | Error::Api { .. } => REFUSED,
        _ => OTHER,
    }
}
