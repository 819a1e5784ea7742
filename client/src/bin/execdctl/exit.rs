//! execdctl's exit statuses: the command's own, or one that says which
//! client-side failure happened. The table is printed by `--help`.

use execd_client::{Error, Exit};

/// The exit statuses, as `--help` shows them.
pub const TABLE: &str = "\
Exit status:
  0-255  run, attach: the command's own exit status
  124    run, attach: the command's --timeout expired and the host killed it
  128+N  run, attach: signal N ended the command (SIGKILL 137, SIGTERM 143)
  255    run, attach: the command ended without an exit code (its host shut down or restarted)
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
/// The command's timeout expired: as `timeout(1)` exits.
pub const TIMED_OUT: u8 = 124;

/// The status for a command's ending.
pub fn of_exit(exit: &Exit) -> u8 {
    if exit.timed_out() {
        return TIMED_OUT;
    }
    if let Some("host-shutdown" | "host-restarted" | "spawn-failed") = exit.reason.as_deref() {
        return NO_CODE;
    }
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

/// The status for a finished command's status report, as [`of_exit`]
/// gives it for its terminal event.
pub fn of_status(status: &execd_client::Status) -> u8 {
    if status.reason.as_deref() == Some("timeout") {
        return TIMED_OUT;
    }
    if let Some(signal) = status.signal {
        return (128 + signal).clamp(0, 255) as u8;
    }
    match status.exit_code {
        Some(code @ 0..=255) => code as u8,
        _ => NO_CODE,
    }
}

/// The line execdctl writes on stderr for an ending that is not the
/// command's own plain exit, so that a person learns why; none for an exit.
pub fn note(exit: &Exit) -> Option<String> {
    let secs = exit
        .execution_time
        .map(|ms| format!(" after {:.1} s", ms as f64 / 1000.0))
        .unwrap_or_default();
    let signal = exit.signal().map(signal_name);
    let note = match (exit.reason.as_deref(), signal) {
        (Some("timeout"), _) => format!("timed out{secs}: the host killed the command"),
        (Some("interrupted"), _) => "interrupted: the command was ended on request".to_string(),
        (Some("host-shutdown"), _) => "the host shut down before the command ended".to_string(),
        (Some("host-restarted"), _) => {
            "the host restarted before the command ended; its exit status is unknown".to_string()
        }
        (Some("spawn-failed"), _) => "the command could not be started".to_string(),
        (_, Some(signal)) => format!("killed by {signal}"),
        (None, None) if exit.code < 0 => match &exit.error {
            Some(error) if error.ename == "HostRestarted" => {
                "the host restarted before the command ended; its exit status is unknown"
                    .to_string()
            }
            Some(error) => format!("the command ended without an exit code ({})", error.ename),
            None => "the command ended without an exit code".to_string(),
        },
        _ => return None,
    };
    Some(format!("execdctl: {note}"))
}

/// `SIGKILL`, `SIGTERM`, ... for a signal number.
fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        other => return format!("signal {other}"),
    };
    name.to_string()
}
