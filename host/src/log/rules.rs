//! The rules of `wit/` that every answer of a policy's `read` must keep,
//! checked before any reader sees it: a policy that breaks one has failed.

use execd_policy_core::check_columns;

use super::Standing;
use crate::policy::PolicyError;
use crate::policy::wit::ReadResult;

/// Holds a policy's answer to `read(after, .., max_bytes)` to the rules
/// of `wit/`, given where the log stands and whether the policy has a
/// directory to leave text in.
pub fn check_read(
    after: u64,
    result: ReadResult,
    max_bytes: u32,
    log: Standing<'_>,
    has_directory: bool,
) -> Result<ReadResult, PolicyError> {
    let nonsense = |what: String| Err(PolicyError::Nonsense(what, "read"));
    match &result {
        ReadResult::Events(events) => {
            let text_len = match crate::policy::text_len(events, has_directory, max_bytes) {
                Ok(len) => len,
                Err(why) => return nonsense(why),
            };
            let count = events.batch.len() as u64 + u64::from(events.ending.is_some());
            if count == 0 {
                return nonsense("it returned no events".into());
            }
            if events.first_eid != after + 1 {
                return nonsense(format!(
                    "asked for events after {after}, it began at eid {}",
                    events.first_eid
                ));
            }
            let last = events.first_eid + count - 1;
            if last > log.newest {
                return nonsense(format!(
                    "eid {last} was never logged (newest is {})",
                    log.newest
                ));
            }
            if events.ending.is_some() != (Some(last) == log.terminal) {
                return nonsense(format!("eid {last} is not the terminal event it was given"));
            }
            let runs = events.batch.runs.iter().map(|r| r.lines);
            let text_len = usize::try_from(text_len).unwrap_or(usize::MAX);
            if let Err(why) = check_columns(&events.batch.lens, runs, text_len) {
                return nonsense(why);
            }
        }
        ReadResult::Gap(gap) => {
            // A policy keeps the newest event, so a gap never reaches it;
            // unless the host serves the log's end itself (`restored`).
            let past_newest =
                gap.to_eid > log.newest || (gap.to_eid == log.newest && log.keeps_newest);
            if gap.from_eid != after + 1 || gap.to_eid < gap.from_eid || past_newest {
                return nonsense(format!(
                    "gap {}..={} does not start after the cursor {after} or covers the newest event",
                    gap.from_eid, gap.to_eid
                ));
            }
            if !valid_reason(&gap.reason) {
                return nonsense(format!(
                    "gap reason {:?} is not 1 to 32 characters of a-z, 0-9 and -",
                    gap.reason
                ));
            }
        }
        ReadResult::Pending => {
            if after < log.newest || log.terminal.is_some() {
                return nonsense(format!(
                    "nothing after {after}, yet eid {} is logged",
                    log.newest
                ));
            }
        }
        ReadResult::Finished => {
            if log.terminal.is_none_or(|t| after < t) {
                return nonsense(format!(
                    "finished at cursor {after}, before the terminal event"
                ));
            }
        }
    }
    Ok(result)
}

/// A gap's reason as `wit/` allows it: a short word, safe to send as is.
fn valid_reason(reason: &str) -> bool {
    (1..=32).contains(&reason.len())
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
