//! The typed events of a command's stream, and how the host's JSON maps
//! onto them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One event of a command's output stream, as the consumer sees it: each
/// exactly once, in the host's order, whatever reconnections happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The host started the command and named it (`init`): only on the
    /// stream of a run, never on an attach.
    Started {
        /// The command's id, for status, attach, interrupt.
        command_id: String,
    },
    /// A line the command wrote on stdout.
    Stdout(Line),
    /// A line the command wrote on stderr.
    Stderr(Line),
    /// Events the host dropped before this client could read them.
    Gap(Gap),
    /// The command ended: always the last event of a foreground stream.
    Exit(Exit),
}

/// An output line, split at `\n` only: the `\n` is dropped by the host
/// (a `\r` stays in the text), and an empty line is the text `"\n"`. A
/// piece not followed by a `\n` (at the host's line limit, after an idle
/// time, or the pipe's last bytes) is `partial`, and the next line of the
/// same pipe continues it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Line {
    /// The line's event id: consecutive across both pipes.
    pub eid: u64,
    /// The text, with invalid UTF-8 replaced by U+FFFD.
    pub text: String,
    /// When the host read it, Unix milliseconds.
    pub timestamp: u64,
    /// No `\n` followed this piece: the next line of its pipe continues it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

impl Line {
    /// The bytes the command wrote for this event: the text and its `\n`,
    /// unless the piece is partial (the empty line's `"\n"` being one
    /// `\n`). Concatenated, a pipe's events give back its bytes exactly
    /// (invalid UTF-8 aside).
    pub fn as_written(&self) -> String {
        if self.partial {
            self.text.clone()
        } else if self.text == "\n" {
            "\n".to_string()
        } else {
            format!("{}\n", self.text)
        }
    }
}

/// Lost output: events `from_eid..=to_eid` will never arrive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The first missing eid.
    pub from_eid: u64,
    /// The last missing eid; the stream continues at `to_eid + 1`.
    pub to_eid: u64,
    /// The text bytes lost, when the host knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_bytes: Option<u64>,
    /// Why, in the policy's word (`evicted`, `budget`, ...), when the host
    /// says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the host noticed, Unix milliseconds.
    pub timestamp: u64,
}

impl Gap {
    /// How many events were lost.
    pub fn events(&self) -> u64 {
        (self.to_eid + 1).saturating_sub(self.from_eid)
    }
}

/// How the command ended: `execution_complete` or `error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exit {
    /// The terminal event's eid: the command's last.
    pub eid: u64,
    /// The exit code: 0 on success; `-1` when a signal ended the command
    /// or the host could not learn the code (see [`Exit::signal`]).
    pub code: i32,
    /// Why it ended, as the host says: `exit`, `signal`, `timeout`,
    /// `interrupted`, `host-shutdown`, `host-restarted` or `spawn-failed`
    /// (absent from hosts that do not say, such as execd itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The signal that ended it, whoever sent it (a timeout's SIGKILL is
    /// 9): the host's `signal`, or read from its text when it sends none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The host's error (absent on success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ExitError>,
    /// How long the command ran, in milliseconds, when the host says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_time: Option<u64>,
    /// When the command ended, Unix milliseconds.
    pub timestamp: u64,
}

/// execd's error object on a failed command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitError {
    /// `CommandExecError`, or `HostRestarted` when the host that ran the
    /// command died.
    pub ename: String,
    /// The exit code as decimal text; `-1` for a signal.
    pub evalue: String,
    /// Human text, like `exit status 2` or `signal: killed`.
    #[serde(default)]
    pub traceback: Vec<String>,
}

impl Exit {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.code == 0 && self.error.is_none()
    }

    /// The signal that ended the command: the host's `signal`, else read
    /// from its text (`signal: killed` is 9, `signal: terminated` 15,
    /// `signal 10` 10).
    pub fn signal(&self) -> Option<i32> {
        self.signal
    }

    /// Whether the command's `timeout` ended it.
    pub fn timed_out(&self) -> bool {
        self.reason.as_deref() == Some("timeout")
    }
}

/// The signal named in a failed command's text, for hosts that send no
/// `signal` field.
fn signal_of_text(code: i32, error: Option<&ExitError>) -> Option<i32> {
    if code != -1 {
        return None;
    }
    error?.traceback.iter().find_map(|text| signal_number(text))
}

/// Go's signal names, as execd and execd-host write them.
fn signal_number(text: &str) -> Option<i32> {
    let name = text
        .trim()
        .strip_prefix("signal")?
        .trim_start_matches(':')
        .trim();
    let number = match name {
        "hangup" => libc::SIGHUP,
        "interrupt" => libc::SIGINT,
        "quit" => libc::SIGQUIT,
        "illegal instruction" => libc::SIGILL,
        "trace/breakpoint trap" => libc::SIGTRAP,
        "aborted" => libc::SIGABRT,
        "bus error" => libc::SIGBUS,
        "floating point exception" => libc::SIGFPE,
        "killed" => libc::SIGKILL,
        "user defined signal 1" => libc::SIGUSR1,
        "segmentation fault" => libc::SIGSEGV,
        "user defined signal 2" => libc::SIGUSR2,
        "broken pipe" => libc::SIGPIPE,
        "alarm clock" => libc::SIGALRM,
        "terminated" => libc::SIGTERM,
        other => other
            .strip_prefix("signal")
            .unwrap_or(other)
            .trim()
            .parse()
            .ok()?,
    };
    Some(number)
}

/// What one frame of the wire is, before the stream decides what to do
/// with it.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A command event for the consumer.
    Event(Event),
    /// A background run's `execution_complete` without eid: the POST
    /// stream ends, the command runs on.
    Spawned,
    /// Legacy framing's keepalive.
    Keepalive,
}

/// The host's JSON, every field optional: which ones matter depends on
/// `type`.
#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "type")]
    kind: String,
    eid: Option<u64>,
    text: Option<String>,
    timestamp: Option<u64>,
    execution_time: Option<u64>,
    error: Option<ExitError>,
    from_eid: Option<u64>,
    to_eid: Option<u64>,
    dropped_bytes: Option<u64>,
    reason: Option<String>,
    #[serde(default)]
    partial: bool,
    signal: Option<i32>,
}

/// Parses one event's JSON. An unknown `type` is `Ok(None)`: a newer host
/// may add kinds, and this client skips them rather than fail.
pub(crate) fn parse(data: &str) -> Result<Option<Frame>> {
    let wire: Wire = serde_json::from_str(data).map_err(|e| {
        Error::Protocol(format!("event is not the expected JSON ({e}): {data:.200}"))
    })?;
    let missing = |field: &str| {
        Error::Protocol(format!(
            "{} event without `{field}`: {data:.200}",
            wire.kind
        ))
    };
    let timestamp = wire.timestamp.unwrap_or(0);
    let frame = match wire.kind.as_str() {
        "init" => Frame::Event(Event::Started {
            command_id: wire.text.clone().ok_or_else(|| missing("text"))?,
        }),
        "stdout" | "stderr" => {
            let line = Line {
                eid: wire.eid.ok_or_else(|| missing("eid"))?,
                text: wire.text.clone().unwrap_or_default(),
                timestamp,
                partial: wire.partial,
            };
            Frame::Event(if wire.kind == "stdout" {
                Event::Stdout(line)
            } else {
                Event::Stderr(line)
            })
        }
        "gap" => Frame::Event(Event::Gap(Gap {
            from_eid: wire.from_eid.ok_or_else(|| missing("from_eid"))?,
            to_eid: wire.to_eid.ok_or_else(|| missing("to_eid"))?,
            dropped_bytes: wire.dropped_bytes,
            reason: wire.reason.clone(),
            timestamp,
        })),
        "execution_complete" | "error" => match wire.eid {
            None if wire.kind == "execution_complete" => Frame::Spawned,
            None => return Err(missing("eid")),
            Some(eid) => {
                let code = match &wire.error {
                    None => 0,
                    Some(error) => error.evalue.trim().parse().unwrap_or(-1),
                };
                Frame::Event(Event::Exit(Exit {
                    eid,
                    code,
                    reason: wire.reason.clone(),
                    signal: wire
                        .signal
                        .or_else(|| signal_of_text(code, wire.error.as_ref())),
                    error: wire.error.clone(),
                    execution_time: wire.execution_time,
                    timestamp,
                }))
            }
        },
        "ping" => Frame::Keepalive,
        _ => return Ok(None),
    };
    Ok(Some(frame))
}

impl Event {
    /// The event's eid, for the kinds that have one (lines and the exit).
    pub fn eid(&self) -> Option<u64> {
        match self {
            Event::Stdout(line) | Event::Stderr(line) => Some(line.eid),
            Event::Exit(exit) => Some(exit.eid),
            Event::Started { .. } | Event::Gap(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> Event {
        match parse(data).unwrap() {
            Some(Frame::Event(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lines_exits_and_gaps() {
        assert_eq!(
            event(r#"{"eid":7,"type":"stdout","text":"tick7","timestamp":5}"#),
            Event::Stdout(Line {
                eid: 7,
                text: "tick7".into(),
                timestamp: 5,
                partial: false,
            })
        );
        let Event::Stdout(piece) =
            event(r#"{"eid":8,"type":"stdout","text":"abc","timestamp":5,"partial":true}"#)
        else {
            panic!()
        };
        assert_eq!((piece.partial, piece.as_written()), (true, "abc".into()));
        let Event::Exit(exit) = event(
            r#"{"eid":3,"type":"error","error":{"ename":"CommandExecError","evalue":"-1","traceback":["signal: killed"]},"timestamp":5,"execution_time":9,"reason":"timeout","signal":9}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            (exit.reason.as_deref(), exit.signal(), exit.timed_out()),
            (Some("timeout"), Some(9), true)
        );
        let Event::Exit(exit) = event(
            r#"{"eid":3,"type":"error","error":{"ename":"CommandExecError","evalue":"-1","traceback":["signal: killed"]},"timestamp":5,"execution_time":9}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            (exit.code, exit.signal(), exit.success()),
            (-1, Some(9), false)
        );
        let Event::Exit(exit) =
            event(r#"{"eid":3,"type":"execution_complete","timestamp":5,"execution_time":9}"#)
        else {
            panic!()
        };
        assert!(exit.success());
        assert_eq!(
            event(r#"{"type":"gap","from_eid":1,"to_eid":4,"timestamp":2}"#),
            Event::Gap(Gap {
                from_eid: 1,
                to_eid: 4,
                dropped_bytes: None,
                reason: None,
                timestamp: 2
            })
        );
    }

    #[test]
    fn spawned_pings_and_unknown_kinds() {
        assert!(matches!(
            parse(r#"{"type":"execution_complete","timestamp":1,"execution_time":0}"#),
            Ok(Some(Frame::Spawned))
        ));
        assert!(matches!(
            parse(r#"{"type":"ping","text":"pong","timestamp":1}"#),
            Ok(Some(Frame::Keepalive))
        ));
        assert!(matches!(
            parse(r#"{"type":"future","timestamp":1}"#),
            Ok(None)
        ));
        assert!(parse("{not json").is_err());
        assert!(parse(r#"{"type":"stdout","text":"x"}"#).is_err());
    }

    #[test]
    fn signal_names() {
        for (text, n) in [
            ("signal: terminated", 15),
            ("signal: hangup", 1),
            ("signal 10", 10),
            ("signal: signal 12", 12),
        ] {
            assert_eq!(signal_number(text), Some(n), "{text}");
        }
        assert_eq!(signal_number("exit status 2"), None);
    }
}
