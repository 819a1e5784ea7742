//! Events as spill keeps them, and their on-disk form: little-endian,
//! length-prefixed.

use crate::wit::{Ending, Failure, Outcome, Reason};

/// What an event holds.
#[derive(Clone)]
pub enum Body {
    Stdout(String),
    Stderr(String),
    End(Ending),
}

/// One logged event.
#[derive(Clone)]
pub struct Event {
    pub eid: u64,
    pub timestamp_ms: u64,
    pub body: Body,
    /// A line that is a piece not followed by `\n`.
    pub partial: bool,
}

pub fn encode(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(&event.eid.to_le_bytes());
    out.extend_from_slice(&event.timestamp_ms.to_le_bytes());
    match &event.body {
        Body::Stdout(text) | Body::Stderr(text) => {
            // 0/1 a whole stdout/stderr line, 3/4 a partial piece.
            let pipe = u8::from(!matches!(event.body, Body::Stdout(_)));
            out.push(if event.partial { pipe + 3 } else { pipe });
            put_str(out, text);
        }
        Body::End(end) => {
            out.push(2);
            match &end.outcome {
                Outcome::Completed => out.push(0),
                Outcome::Failed(f) => {
                    out.push(1);
                    out.extend_from_slice(&f.exit_code.to_le_bytes());
                    put_str(out, &f.message);
                }
                Outcome::HostRestarted => out.push(2),
                Outcome::HostShutdown => out.push(3),
            }
            out.push(reason_code(end.reason));
            out.push(end.signal.unwrap_or(0));
            out.extend_from_slice(&end.execution_ms.to_le_bytes());
            out.extend_from_slice(&end.timestamp_ms.to_le_bytes());
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Decodes every event of a chunk; `Err` if the bytes are damaged.
pub fn decode_all(mut bytes: &[u8]) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    while !bytes.is_empty() {
        events.push(decode(&mut bytes).ok_or("damaged spill chunk")?);
    }
    Ok(events)
}

fn decode(bytes: &mut &[u8]) -> Option<Event> {
    let eid = u64::from_le_bytes(take(bytes, 8)?.try_into().ok()?);
    let timestamp_ms = u64::from_le_bytes(take(bytes, 8)?.try_into().ok()?);
    let kind = take(bytes, 1)?[0];
    let partial = kind == 3 || kind == 4;
    let body = match kind {
        0 | 3 => Body::Stdout(get_str(bytes)?),
        1 | 4 => Body::Stderr(get_str(bytes)?),
        2 => {
            let outcome = match take(bytes, 1)?[0] {
                0 => Outcome::Completed,
                2 => Outcome::HostRestarted,
                3 => Outcome::HostShutdown,
                _ => {
                    let exit_code = i32::from_le_bytes(take(bytes, 4)?.try_into().ok()?);
                    Outcome::Failed(Failure {
                        exit_code,
                        message: get_str(bytes)?,
                    })
                }
            };
            let reason = reason_of(take(bytes, 1)?[0])?;
            let signal = take(bytes, 1)?[0];
            let execution_ms = u64::from_le_bytes(take(bytes, 8)?.try_into().ok()?);
            let timestamp_ms = u64::from_le_bytes(take(bytes, 8)?.try_into().ok()?);
            Body::End(Ending {
                outcome,
                reason,
                signal: (signal != 0).then_some(signal),
                execution_ms,
                timestamp_ms,
            })
        }
        _ => return None,
    };
    Some(Event {
        eid,
        timestamp_ms,
        body,
        partial,
    })
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if bytes.len() < n {
        return None;
    }
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Some(head)
}

fn get_str(bytes: &mut &[u8]) -> Option<String> {
    let len = u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize;
    String::from_utf8(take(bytes, len)?.to_vec()).ok()
}

/// The reasons in the order their stored bytes name them.
const REASONS: [Reason; 7] = [
    Reason::Exit,
    Reason::Signal,
    Reason::Timeout,
    Reason::Interrupted,
    Reason::HostShutdown,
    Reason::HostRestarted,
    Reason::SpawnFailed,
];

fn reason_code(reason: Reason) -> u8 {
    REASONS.iter().position(|&r| r == reason).unwrap_or(0) as u8
}

fn reason_of(code: u8) -> Option<Reason> {
    REASONS.get(usize::from(code)).copied()
}
