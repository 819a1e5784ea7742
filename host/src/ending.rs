//! How a command ended, in the terms of its terminal event: the outcome
//! execd clients know, the `reason` that tells a timeout from any other
//! SIGKILL, and the signal.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::policy::wit::{Failure, Outcome, Reason};

/// The terminal event's outcome, reason and signal for an exit status.
/// `cause` is what the host itself did to end the command (a timeout, a
/// DELETE, its own shutdown), if it did anything: a command that exited 0
/// regardless ended by itself.
pub fn describe(status: ExitStatus, cause: Option<Reason>) -> (Outcome, Reason, Option<u8>) {
    let signal = status.signal().and_then(|s| u8::try_from(s).ok());
    match (status.code(), cause) {
        (Some(0), _) => (Outcome::Completed, Reason::Exit, None),
        (_, Some(Reason::HostShutdown)) => (Outcome::HostShutdown, Reason::HostShutdown, signal),
        (Some(code), cause) => (
            Outcome::Failed(Failure {
                exit_code: code,
                message: format!("exit status {code}"),
            }),
            cause.unwrap_or(Reason::Exit),
            None,
        ),
        (None, cause) => (
            Outcome::Failed(Failure {
                exit_code: -1,
                message: format!("signal: {}", signal_name(status.signal().unwrap_or(0))),
            }),
            cause.unwrap_or(Reason::Signal),
            signal,
        ),
    }
}

/// The wire's word for a reason.
pub fn reason_word(reason: Reason) -> &'static str {
    match reason {
        Reason::Exit => "exit",
        Reason::Signal => "signal",
        Reason::Timeout => "timeout",
        Reason::Interrupted => "interrupted",
        Reason::HostShutdown => "host-shutdown",
        Reason::HostRestarted => "host-restarted",
        Reason::SpawnFailed => "spawn-failed",
    }
}

/// The reason a wire word names, as [`reason_word`] writes it.
pub fn reason_from_word(word: &str) -> Option<Reason> {
    [
        Reason::Exit,
        Reason::Signal,
        Reason::Timeout,
        Reason::Interrupted,
        Reason::HostShutdown,
        Reason::HostRestarted,
        Reason::SpawnFailed,
    ]
    .into_iter()
    .find(|&reason| reason_word(reason) == word)
}

/// Go's names for signals, as execd reports them.
fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGHUP => "hangup".into(),
        libc::SIGINT => "interrupt".into(),
        libc::SIGQUIT => "quit".into(),
        libc::SIGABRT => "aborted".into(),
        libc::SIGKILL => "killed".into(),
        libc::SIGSEGV => "segmentation fault".into(),
        libc::SIGPIPE => "broken pipe".into(),
        libc::SIGTERM => "terminated".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_told_from_any_other_kill() {
        let killed = ExitStatus::from_raw(libc::SIGKILL);
        let (_, reason, signal) = describe(killed, None);
        assert_eq!((reason, signal), (Reason::Signal, Some(9)));
        let (_, reason, signal) = describe(killed, Some(Reason::Timeout));
        assert_eq!((reason, signal), (Reason::Timeout, Some(9)));
    }

    #[test]
    fn a_shutdown_ends_as_host_shutdown_unless_it_exited_0() {
        let termed = ExitStatus::from_raw(libc::SIGTERM);
        let (outcome, reason, signal) = describe(termed, Some(Reason::HostShutdown));
        assert!(matches!(outcome, Outcome::HostShutdown));
        assert_eq!((reason, signal), (Reason::HostShutdown, Some(15)));
        let clean = ExitStatus::from_raw(0);
        let (outcome, reason, _) = describe(clean, Some(Reason::HostShutdown));
        assert!(matches!(outcome, Outcome::Completed));
        assert_eq!(reason, Reason::Exit);
    }
}
