//! A reopened log whose policy lost its end: the host wrote down the
//! terminal event and its eid when the command ended (`record`'s ending
//! slot), and the policy's files, damaged, cut short by a full disk or
//! shrunk, now end before it. The host then serves that end itself: what
//! the policy lost before the terminal event is one `gap`, and the
//! terminal event keeps its eid and says what it said. An ending, once
//! logged, never changes, and no eid is given twice.

use crate::policy::wit::{self, ReadResult};

/// The gap's reason when the policy reported damage when it reopened.
const DAMAGED: &str = "damaged";
/// Otherwise: the policy never stored those events (a full disk).
const NOT_STORED: &str = "io";

/// Where the policy's own log ends, and why the rest is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The newest eid the policy serves: reads after it are the host's.
    pub policy_newest: u64,
    reason: &'static str,
}

impl Restored {
    /// What `reopen` found, against the terminal event written down:
    /// `None` when the policy has it where it was, `Err` when the policy's
    /// log runs past it (files that are not this command's).
    /// `lost`: the reason a previous host gave the gap, if one did.
    pub fn check(
        reopened: &wit::Reopened,
        logged: Option<&(u64, wit::Ending)>,
        lost: Option<&str>,
    ) -> Result<Option<Restored>, String> {
        let Some(&(terminal, _)) = logged else {
            return Ok(None);
        };
        let last = reopened.last_eid;
        if reopened.ending.is_some() && last == terminal {
            return Ok(None);
        }
        if last >= terminal {
            return Err(format!(
                "its log runs to eid {last}, past the terminal event written down at eid {terminal}"
            ));
        }
        Ok(Some(Restored {
            // A terminal event of the policy's before the real one is not
            // believed: that eid is inside the gap.
            policy_newest: if reopened.ending.is_some() {
                last - 1
            } else {
                last
            },
            // Once said, said again: a reopen that cut a damaged tail
            // finds no damage the next time.
            reason: match lost {
                Some(DAMAGED) => DAMAGED,
                Some(NOT_STORED) => NOT_STORED,
                _ if reopened.damage.is_empty() => NOT_STORED,
                _ => DAMAGED,
            },
        }))
    }

    /// The reason of the gap it serves.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The answer to a read after `after` (at or past `policy_newest`).
    pub fn read(&self, after: u64, terminal: u64, ending: &wit::Ending) -> ReadResult {
        if after >= terminal {
            ReadResult::Finished
        } else if after + 1 < terminal {
            ReadResult::Gap(wit::Gap {
                from_eid: after + 1,
                to_eid: terminal - 1,
                dropped_bytes: None,
                reason: self.reason.to_string(),
            })
        } else {
            ReadResult::Events(wit::Events {
                first_eid: terminal,
                batch: wit::Batch::new(),
                text_in_files: Vec::new(),
                ending: Some(ending.clone()),
            })
        }
    }
}
