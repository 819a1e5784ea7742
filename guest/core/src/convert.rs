//! The one conversion between this crate's types and generated bindings.

/// Implements `From` between this crate's types and the types a WIT
/// bindings generator made of the contract's `log` interface, in the
/// module `$wit` (an identifier in scope where the macro is called).
///
/// Both generators this project uses (`wit_bindgen::generate!` in a
/// policy, `wasmtime::component::bindgen!` in the host) name the types
/// and fields alike, so one macro serves both. Invoke it once, in the
/// crate that generated the bindings (the orphan rule wants one side of
/// each impl local).
///
/// What it converts, the direction data crosses in a policy:
///
/// - in: `Batch` (by value, moving the columns; or `&Batch`, copying
///   them, for a host that keeps its batch), `Ending`, `Run`, `Channel`;
/// - out: `Batch`, `Ending`, `Events`, `TextSpan`, `Gap`, `ReadResult`,
///   `Stored`, `Reopened`, `Run`, `Channel`.
///
/// The columns cross as they are; only the few runs are converted.
///
/// ```
/// # mod wit {
/// #     #[derive(Clone, Copy, Debug, PartialEq)] pub enum Channel { Stdout, Stderr }
/// #     #[derive(Clone, Copy, Debug, PartialEq)]
/// #     pub struct Run {
/// #         pub channel: Channel, pub timestamp_ms: u64, pub lines: u32, pub partial: bool,
/// #     }
/// #     #[derive(Clone, Debug, PartialEq)]
/// #     pub struct Batch { pub lens: Vec<u32>, pub runs: Vec<Run>, pub text: Vec<u8> }
/// #     #[derive(Clone, Debug, PartialEq)]
/// #     pub struct Failure { pub exit_code: i32, pub message: String }
/// #     #[derive(Clone, Debug, PartialEq)]
/// #     pub enum Outcome { Completed, Failed(Failure), HostRestarted, HostShutdown }
/// #     #[derive(Clone, Copy, Debug, PartialEq)]
/// #     pub enum Reason {
/// #         Exit, Signal, Timeout, Interrupted, HostShutdown, HostRestarted, SpawnFailed,
/// #     }
/// #     #[derive(Clone, Debug, PartialEq)]
/// #     pub struct Ending {
/// #         pub outcome: Outcome, pub reason: Reason, pub signal: Option<u8>,
/// #         pub execution_ms: u64, pub timestamp_ms: u64,
/// #     }
/// #     #[derive(Clone, Debug, PartialEq)]
/// #     pub struct TextSpan { pub file: u64, pub offset: u64, pub len: u32 }
/// #     #[derive(Clone, Debug, PartialEq)]
/// #     pub struct Events {
/// #         pub first_eid: u64, pub batch: Batch, pub text_in_files: Vec<TextSpan>,
/// #         pub ending: Option<Ending>,
/// #     }
/// #     #[derive(Clone, Debug, PartialEq)]
/// #     pub struct Gap {
/// #         pub from_eid: u64, pub to_eid: u64, pub dropped_bytes: Option<u64>, pub reason: String,
/// #     }
/// #     #[derive(Clone, Debug, PartialEq)]
/// #     pub enum ReadResult { Events(Events), Gap(Gap), Pending, Finished }
/// #     #[derive(Clone, Copy, Debug, PartialEq)]
/// #     pub struct Stored { pub last_eid: u64, pub disk_bytes: u64 }
/// #     #[derive(Clone, Debug, PartialEq)]
/// #     pub struct Reopened {
/// #         pub last_eid: u64, pub disk_bytes: u64, pub ending: Option<Ending>,
/// #         pub damage: Vec<String>,
/// #     }
/// # }
/// // In a policy: `use exports::execd::resume::log as wit;` after
/// // `wit_bindgen::generate!`; here, a module of the same shapes.
/// execd_policy_core::wit_conversions!(wit);
///
/// use execd_policy_core::{Batch, Channel, Stored};
///
/// let incoming = wit::Batch {
///     lens: vec![2],
///     runs: vec![wit::Run {
///         channel: wit::Channel::Stderr, timestamp_ms: 9, lines: 1, partial: true,
///     }],
///     text: b"hi".to_vec(),
/// };
/// let mut expected = Batch::default();
/// expected.push(Channel::Stderr, 9, b"hi", true);
/// assert_eq!(Batch::from(&incoming), expected); // the host's way: copies
/// assert_eq!(Batch::from(incoming), expected); // a policy's way: moves
///
/// let answer: wit::Stored = Stored::in_memory(3).into();
/// assert_eq!(answer, wit::Stored { last_eid: 3, disk_bytes: 0 });
/// ```
#[macro_export]
macro_rules! wit_conversions {
    ($wit:ident) => {
        impl ::core::convert::From<$wit::Channel> for $crate::Channel {
            fn from(channel: $wit::Channel) -> $crate::Channel {
                match channel {
                    $wit::Channel::Stdout => $crate::Channel::Stdout,
                    $wit::Channel::Stderr => $crate::Channel::Stderr,
                }
            }
        }

        impl ::core::convert::From<$crate::Channel> for $wit::Channel {
            fn from(channel: $crate::Channel) -> $wit::Channel {
                match channel {
                    $crate::Channel::Stdout => $wit::Channel::Stdout,
                    $crate::Channel::Stderr => $wit::Channel::Stderr,
                }
            }
        }

        impl ::core::convert::From<&$wit::Run> for $crate::Run {
            fn from(run: &$wit::Run) -> $crate::Run {
                $crate::Run {
                    channel: match run.channel {
                        $wit::Channel::Stdout => $crate::Channel::Stdout,
                        $wit::Channel::Stderr => $crate::Channel::Stderr,
                    },
                    timestamp_ms: run.timestamp_ms,
                    lines: run.lines,
                    partial: run.partial,
                }
            }
        }

        impl ::core::convert::From<&$crate::Run> for $wit::Run {
            fn from(run: &$crate::Run) -> $wit::Run {
                $wit::Run {
                    channel: run.channel.into(),
                    timestamp_ms: run.timestamp_ms,
                    lines: run.lines,
                    partial: run.partial,
                }
            }
        }

        impl ::core::convert::From<$wit::Batch> for $crate::Batch {
            fn from(batch: $wit::Batch) -> $crate::Batch {
                $crate::Batch {
                    runs: batch.runs.iter().map($crate::Run::from).collect(),
                    lens: batch.lens,
                    text: batch.text,
                }
            }
        }

        impl ::core::convert::From<&$wit::Batch> for $crate::Batch {
            fn from(batch: &$wit::Batch) -> $crate::Batch {
                $crate::Batch {
                    lens: batch.lens.clone(),
                    runs: batch.runs.iter().map($crate::Run::from).collect(),
                    text: batch.text.clone(),
                }
            }
        }

        impl ::core::convert::From<$crate::Batch> for $wit::Batch {
            fn from(batch: $crate::Batch) -> $wit::Batch {
                $wit::Batch {
                    runs: batch.runs.iter().map($wit::Run::from).collect(),
                    lens: batch.lens,
                    text: batch.text,
                }
            }
        }

        impl ::core::convert::From<$wit::Ending> for $crate::Ending {
            fn from(ending: $wit::Ending) -> $crate::Ending {
                $crate::Ending {
                    outcome: match ending.outcome {
                        $wit::Outcome::Completed => $crate::Outcome::Completed,
                        $wit::Outcome::Failed(f) => $crate::Outcome::Failed {
                            exit_code: f.exit_code,
                            message: f.message,
                        },
                        $wit::Outcome::HostRestarted => $crate::Outcome::HostRestarted,
                        $wit::Outcome::HostShutdown => $crate::Outcome::HostShutdown,
                    },
                    reason: match ending.reason {
                        $wit::Reason::Exit => $crate::Reason::Exit,
                        $wit::Reason::Signal => $crate::Reason::Signal,
                        $wit::Reason::Timeout => $crate::Reason::Timeout,
                        $wit::Reason::Interrupted => $crate::Reason::Interrupted,
                        $wit::Reason::HostShutdown => $crate::Reason::HostShutdown,
                        $wit::Reason::HostRestarted => $crate::Reason::HostRestarted,
                        $wit::Reason::SpawnFailed => $crate::Reason::SpawnFailed,
                    },
                    signal: ending.signal,
                    execution_ms: ending.execution_ms,
                    timestamp_ms: ending.timestamp_ms,
                }
            }
        }

        impl ::core::convert::From<$crate::Ending> for $wit::Ending {
            fn from(ending: $crate::Ending) -> $wit::Ending {
                $wit::Ending {
                    outcome: match ending.outcome {
                        $crate::Outcome::Completed => $wit::Outcome::Completed,
                        $crate::Outcome::Failed { exit_code, message } => {
                            $wit::Outcome::Failed($wit::Failure { exit_code, message })
                        }
                        $crate::Outcome::HostRestarted => $wit::Outcome::HostRestarted,
                        $crate::Outcome::HostShutdown => $wit::Outcome::HostShutdown,
                    },
                    reason: match ending.reason {
                        $crate::Reason::Exit => $wit::Reason::Exit,
                        $crate::Reason::Signal => $wit::Reason::Signal,
                        $crate::Reason::Timeout => $wit::Reason::Timeout,
                        $crate::Reason::Interrupted => $wit::Reason::Interrupted,
                        $crate::Reason::HostShutdown => $wit::Reason::HostShutdown,
                        $crate::Reason::HostRestarted => $wit::Reason::HostRestarted,
                        $crate::Reason::SpawnFailed => $wit::Reason::SpawnFailed,
                    },
                    signal: ending.signal,
                    execution_ms: ending.execution_ms,
                    timestamp_ms: ending.timestamp_ms,
                }
            }
        }

        impl ::core::convert::From<$crate::Events> for $wit::Events {
            fn from(events: $crate::Events) -> $wit::Events {
                $wit::Events {
                    first_eid: events.first_eid,
                    batch: events.batch.into(),
                    text_in_files: events
                        .text_in_files
                        .into_iter()
                        .map($wit::TextSpan::from)
                        .collect(),
                    ending: events.ending.map($wit::Ending::from),
                }
            }
        }

        impl ::core::convert::From<$crate::TextSpan> for $wit::TextSpan {
            fn from(span: $crate::TextSpan) -> $wit::TextSpan {
                $wit::TextSpan {
                    file: span.file,
                    offset: span.offset,
                    len: span.len,
                }
            }
        }

        impl ::core::convert::From<$crate::Gap> for $wit::Gap {
            fn from(gap: $crate::Gap) -> $wit::Gap {
                $wit::Gap {
                    from_eid: gap.from_eid,
                    to_eid: gap.to_eid,
                    dropped_bytes: gap.dropped_bytes,
                    reason: gap.reason.into(),
                }
            }
        }

        impl ::core::convert::From<$crate::ReadResult> for $wit::ReadResult {
            fn from(result: $crate::ReadResult) -> $wit::ReadResult {
                match result {
                    $crate::ReadResult::Events(events) => $wit::ReadResult::Events(events.into()),
                    $crate::ReadResult::Gap(gap) => $wit::ReadResult::Gap(gap.into()),
                    $crate::ReadResult::Pending => $wit::ReadResult::Pending,
                    $crate::ReadResult::Finished => $wit::ReadResult::Finished,
                }
            }
        }

        impl ::core::convert::From<$crate::Stored> for $wit::Stored {
            fn from(stored: $crate::Stored) -> $wit::Stored {
                $wit::Stored {
                    last_eid: stored.last_eid,
                    disk_bytes: stored.disk_bytes,
                }
            }
        }

        impl ::core::convert::From<$crate::Reopened> for $wit::Reopened {
            fn from(reopened: $crate::Reopened) -> $wit::Reopened {
                $wit::Reopened {
                    last_eid: reopened.last_eid,
                    disk_bytes: reopened.disk_bytes,
                    ending: reopened.ending.map($wit::Ending::from),
                    damage: reopened.damage,
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::{
        Batch, Channel, Ending, Events, Gap, Outcome, ReadResult, Reason, Reopened, Stored,
        TextSpan,
    };

    /// The shapes both generators make of `wit/policy.wit`.
    mod wit {
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum Channel {
            Stdout,
            Stderr,
        }
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct Run {
            pub channel: Channel,
            pub timestamp_ms: u64,
            pub lines: u32,
            pub partial: bool,
        }
        #[derive(Clone, Debug, PartialEq)]
        pub struct Batch {
            pub lens: Vec<u32>,
            pub runs: Vec<Run>,
            pub text: Vec<u8>,
        }
        #[derive(Clone, Debug, PartialEq)]
        pub struct Failure {
            pub exit_code: i32,
            pub message: String,
        }
        #[derive(Clone, Debug, PartialEq)]
        pub enum Outcome {
            Completed,
            Failed(Failure),
            HostRestarted,
            HostShutdown,
        }
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum Reason {
            Exit,
            Signal,
            Timeout,
            Interrupted,
            HostShutdown,
            HostRestarted,
            SpawnFailed,
        }
        #[derive(Clone, Debug, PartialEq)]
        pub struct Ending {
            pub outcome: Outcome,
            pub reason: Reason,
            pub signal: Option<u8>,
            pub execution_ms: u64,
            pub timestamp_ms: u64,
        }
        #[derive(Clone, Debug, PartialEq)]
        pub struct TextSpan {
            pub file: u64,
            pub offset: u64,
            pub len: u32,
        }
        #[derive(Clone, Debug, PartialEq)]
        pub struct Events {
            pub first_eid: u64,
            pub batch: Batch,
            pub text_in_files: Vec<TextSpan>,
            pub ending: Option<Ending>,
        }
        #[derive(Clone, Debug, PartialEq)]
        pub struct Gap {
            pub from_eid: u64,
            pub to_eid: u64,
            pub dropped_bytes: Option<u64>,
            pub reason: String,
        }
        #[derive(Clone, Debug, PartialEq)]
        pub enum ReadResult {
            Events(Events),
            Gap(Gap),
            Pending,
            Finished,
        }
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct Stored {
            pub last_eid: u64,
            pub disk_bytes: u64,
        }
        #[derive(Clone, Debug, PartialEq)]
        pub struct Reopened {
            pub last_eid: u64,
            pub disk_bytes: u64,
            pub ending: Option<Ending>,
            pub damage: Vec<String>,
        }
    }

    crate::wit_conversions!(wit);

    fn batch() -> Batch {
        let mut b = Batch::default();
        b.push(Channel::Stdout, 1, b"ab", false);
        b.push(Channel::Stdout, 1, b"", false);
        b.push(Channel::Stderr, 2, b"cde", true);
        b
    }

    fn endings() -> Vec<Ending> {
        [
            Outcome::Completed,
            Outcome::Failed {
                exit_code: -3,
                message: "boom".into(),
            },
            Outcome::HostRestarted,
            Outcome::HostShutdown,
        ]
        .into_iter()
        .zip(Reason::ALL)
        .map(|(outcome, reason)| Ending {
            outcome,
            reason,
            signal: (reason == Reason::Timeout).then_some(9),
            execution_ms: 40,
            timestamp_ms: 50,
        })
        .collect()
    }

    #[test]
    fn batches_cross_both_ways_unchanged() {
        let out = wit::Batch::from(batch());
        assert_eq!(out.lens, [2, 0, 3]);
        assert_eq!(out.text, b"abcde");
        assert_eq!(
            out.runs[1],
            wit::Run {
                channel: wit::Channel::Stderr,
                timestamp_ms: 2,
                lines: 1,
                partial: true,
            }
        );
        assert_eq!(Batch::from(&out), batch());
        assert_eq!(Batch::from(out), batch());
    }

    #[test]
    fn endings_cross_both_ways_unchanged() {
        for ending in endings() {
            assert_eq!(Ending::from(wit::Ending::from(ending.clone())), ending);
        }
        let failed = wit::Ending::from(endings().swap_remove(1));
        assert_eq!(
            failed.outcome,
            wit::Outcome::Failed(wit::Failure {
                exit_code: -3,
                message: "boom".into()
            })
        );
    }

    #[test]
    fn answers_cross_out() {
        let events = ReadResult::Events(Events {
            first_eid: 4,
            batch: batch(),
            text_in_files: vec![TextSpan {
                file: 1,
                offset: 96,
                len: 5,
            }],
            ending: Some(endings().remove(0)),
        });
        let wit::ReadResult::Events(e) = events.into() else {
            panic!("events")
        };
        assert_eq!((e.first_eid, e.batch.lens.len()), (4, 3));
        assert_eq!(
            e.text_in_files,
            [wit::TextSpan {
                file: 1,
                offset: 96,
                len: 5
            }]
        );
        assert_eq!(e.ending.map(|e| e.outcome), Some(wit::Outcome::Completed));
        let gap = Gap {
            from_eid: 1,
            to_eid: 3,
            dropped_bytes: None,
            reason: "evicted",
        };
        assert_eq!(
            wit::ReadResult::from(ReadResult::Gap(gap)),
            wit::ReadResult::Gap(wit::Gap {
                from_eid: 1,
                to_eid: 3,
                dropped_bytes: None,
                reason: "evicted".into()
            })
        );
        assert_eq!(
            wit::ReadResult::from(ReadResult::Pending),
            wit::ReadResult::Pending
        );
        assert_eq!(
            wit::ReadResult::from(ReadResult::Finished),
            wit::ReadResult::Finished
        );
        let stored = Stored {
            last_eid: 9,
            disk_bytes: 100,
        };
        assert_eq!(
            wit::Stored::from(stored),
            wit::Stored {
                last_eid: 9,
                disk_bytes: 100
            }
        );
        let reopened = Reopened {
            last_eid: 9,
            disk_bytes: 100,
            ending: Some(endings().remove(2)),
            damage: vec!["cut".into()],
        };
        let out = wit::Reopened::from(reopened);
        assert_eq!(out.damage, ["cut"]);
        assert_eq!(
            out.ending.map(|e| e.outcome),
            Some(wit::Outcome::HostRestarted)
        );
    }
}
