//! How a command ended, in the terms of its terminal event: the outcome
//! execd clients know, the `reason` that tells a timeout from any other
//! SIGKILL, and the signal; and [`Ending`], the same as one typed value
//! for programs that embed the host.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::policy::wit::{Ending as Wire, Failure, Outcome, Reason};

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

/// How a command ended: its terminal event's `reason`, with what that
/// reason carries, so that a program tells a signal from an exit status by
/// matching rather than by parsing `signal: killed`.
///
/// An ending the host caused (a timeout, an interrupt, its shutdown) names
/// the cause, not the way the process went: the signal is the one that
/// ended it, if one did (a timeout's SIGKILL is 9), and `None` when it
/// exited on the way (its status is then [`Status::exit_code`]).
///
/// [`Status::exit_code`]: crate::Status::exit_code
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// It exited by itself with this status (`exit`); 0 is success.
    Exited(i32),
    /// A signal the host did not send ended it (`signal`).
    Signaled(u8),
    /// Its timeout expired and the host killed it (`timeout`).
    TimedOut {
        /// The signal that ended it: 9 unless it exited first.
        signal: Option<u8>,
    },
    /// An interrupt ([`Execution::interrupt`], `DELETE`, its session's
    /// delete) ended it (`interrupted`).
    ///
    /// [`Execution::interrupt`]: crate::Execution::interrupt
    Interrupted {
        /// The signal that ended it (15, or 9 after the grace), if one did.
        signal: Option<u8>,
    },
    /// The host's own orderly shutdown ended it (`host-shutdown`).
    HostShutdown {
        /// The signal that ended it, if one did.
        signal: Option<u8>,
    },
    /// A host that died left it running; a later host on the same state
    /// directory ended its log (`host-restarted`).
    HostRestarted,
    /// It never ran (`spawn-failed`): why.
    SpawnFailed(String),
}

impl Ending {
    /// The ending a terminal event describes. The reason decides; the
    /// outcome gives the exit status or message it carries.
    pub(crate) fn of(ending: &Wire) -> Ending {
        let exit_code = match &ending.outcome {
            Outcome::Failed(f) => f.exit_code,
            _ => 0,
        };
        let signal = ending.signal;
        match ending.reason {
            Reason::Exit => Ending::Exited(exit_code),
            Reason::Signal => match signal {
                Some(signal) => Ending::Signaled(signal),
                // Never written so; a damaged record says what it can.
                None => Ending::Exited(exit_code),
            },
            Reason::Timeout => Ending::TimedOut { signal },
            Reason::Interrupted => Ending::Interrupted { signal },
            Reason::HostShutdown => Ending::HostShutdown { signal },
            Reason::HostRestarted => Ending::HostRestarted,
            Reason::SpawnFailed => Ending::SpawnFailed(match &ending.outcome {
                Outcome::Failed(f) => f.message.clone(),
                _ => String::new(),
            }),
        }
    }

    /// The wire's `reason`: `exit`, `signal`, `timeout`, `interrupted`,
    /// `host-shutdown`, `host-restarted` or `spawn-failed`.
    pub fn reason(&self) -> &'static str {
        reason_word(match self {
            Ending::Exited(_) => Reason::Exit,
            Ending::Signaled(_) => Reason::Signal,
            Ending::TimedOut { .. } => Reason::Timeout,
            Ending::Interrupted { .. } => Reason::Interrupted,
            Ending::HostShutdown { .. } => Reason::HostShutdown,
            Ending::HostRestarted => Reason::HostRestarted,
            Ending::SpawnFailed(_) => Reason::SpawnFailed,
        })
    }

    /// The signal that ended it, if one did: the wire's `signal`.
    pub fn signal(&self) -> Option<u8> {
        match self {
            Ending::Signaled(signal) => Some(*signal),
            Ending::TimedOut { signal }
            | Ending::Interrupted { signal }
            | Ending::HostShutdown { signal } => *signal,
            _ => None,
        }
    }

    /// It exited by itself with status 0.
    pub fn is_success(&self) -> bool {
        *self == Ending::Exited(0)
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Exited(code) => write!(f, "exit status {code}"),
            Ending::Signaled(signal) => write!(f, "signal: {}", signal_name(i32::from(*signal))),
            Ending::SpawnFailed(message) => write!(f, "spawn-failed: {message}"),
            other => match other.signal() {
                Some(signal) => write!(f, "{} (signal {signal})", other.reason()),
                None => f.write_str(other.reason()),
            },
        }
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

/// Every reason (the bindings' enum cannot list itself).
pub const REASONS: [Reason; 7] = [
    Reason::Exit,
    Reason::Signal,
    Reason::Timeout,
    Reason::Interrupted,
    Reason::HostShutdown,
    Reason::HostRestarted,
    Reason::SpawnFailed,
];

/// The reason a wire word names, as [`reason_word`] writes it.
pub fn reason_from_word(word: &str) -> Option<Reason> {
    REASONS
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

    fn ending_of(status: ExitStatus, cause: Option<Reason>) -> Ending {
        let (outcome, reason, signal) = describe(status, cause);
        Ending::of(&Wire {
            outcome,
            reason,
            signal,
            execution_ms: 0,
            timestamp_ms: 0,
        })
    }

    #[test]
    fn a_typed_ending_carries_the_reason_and_the_signal() {
        let killed = ExitStatus::from_raw(libc::SIGKILL);
        let exited_2 = ExitStatus::from_raw(2 << 8);
        let cases = [
            (ending_of(ExitStatus::from_raw(0), None), Ending::Exited(0)),
            (ending_of(exited_2, None), Ending::Exited(2)),
            (ending_of(killed, None), Ending::Signaled(9)),
            (
                ending_of(killed, Some(Reason::Timeout)),
                Ending::TimedOut { signal: Some(9) },
            ),
            (
                ending_of(exited_2, Some(Reason::Interrupted)),
                Ending::Interrupted { signal: None },
            ),
            (
                ending_of(
                    ExitStatus::from_raw(libc::SIGTERM),
                    Some(Reason::HostShutdown),
                ),
                Ending::HostShutdown { signal: Some(15) },
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        // The wire's words, the same as the SSE encoder writes.
        for reason in REASONS {
            let wire = Wire {
                outcome: Outcome::Failed(Failure {
                    exit_code: -1,
                    message: "m".into(),
                }),
                reason,
                signal: Some(9),
                execution_ms: 0,
                timestamp_ms: 0,
            };
            assert_eq!(Ending::of(&wire).reason(), reason_word(reason));
        }
        assert_eq!(Ending::Signaled(9).to_string(), "signal: killed");
        assert!(Ending::Exited(0).is_success() && !Ending::Exited(1).is_success());
    }
}
