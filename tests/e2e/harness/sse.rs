//! SSE parsing: events as a stream's body frames them, and the checks
//! every stream of logged events must pass.

use serde_json::Value;

use super::{PATIENCE, Stream};

/// One SSE event as parsed from standard framing (or legacy: data only).
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Option<u64>,
    pub event: Option<String>,
    pub data: Value,
    /// Comment lines (keepalives) seen before this event.
    pub comments: usize,
}

impl Event {
    pub fn kind(&self) -> &str {
        self.data["type"].as_str().unwrap_or("")
    }
    pub fn eid(&self) -> Option<u64> {
        self.data["eid"].as_u64()
    }
    pub fn text(&self) -> &str {
        self.data["text"].as_str().unwrap_or("")
    }
    pub fn is_terminal(&self) -> bool {
        matches!(self.kind(), "execution_complete" | "error") && self.eid().is_some()
    }
}

impl Stream {
    /// The next SSE event, or `None` when the stream ends. Keepalive
    /// comments are counted, not returned.
    pub async fn next_event(&mut self) -> Option<Event> {
        let mut comments = 0;
        loop {
            if let Some(end) = find(&self.pending, b"\n\n") {
                let raw: Vec<u8> = self.pending.drain(..end + 2).collect();
                let text = String::from_utf8(raw).expect("SSE is UTF-8");
                let (mut id, mut event, mut data) = (None, None, None);
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().expect("numeric id"));
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(v.to_string());
                    } else if line.starts_with(':') {
                        comments += 1;
                        self.comments += 1;
                    } else if line.starts_with('{') {
                        data = Some(line.to_string());
                    } else if !line.is_empty() {
                        panic!("unexpected SSE line {line:?}");
                    }
                }
                let Some(data) = data else { continue };
                let data: Value = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("bad JSON {data:?}: {e}"));
                return Some(Event {
                    id,
                    event,
                    data,
                    comments,
                });
            }
            let piece = tokio::time::timeout(PATIENCE, self.read_some())
                .await
                .expect("event in time")?;
            self.pending.extend_from_slice(&piece);
        }
    }

    /// Every remaining event, to the end of the stream.
    pub async fn events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(e) = self.next_event().await {
            events.push(e);
        }
        events
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks the invariants every stream must hold and returns its logged
/// events (those with an eid): `id:` equals `eid`, eids consecutive from
/// `after + 1`, exactly one terminal event, last. Gaps are not allowed here.
pub fn logged(events: &[Event], after: u64) -> Vec<Event> {
    let logged: Vec<Event> = events
        .iter()
        .filter(|e| e.eid().is_some())
        .cloned()
        .collect();
    for (i, e) in logged.iter().enumerate() {
        assert_eq!(
            e.eid(),
            Some(after + 1 + i as u64),
            "eids consecutive: {:?}",
            e.data
        );
        assert_eq!(e.id, e.eid(), "SSE id equals eid");
    }
    let terminals = logged.iter().filter(|e| e.is_terminal()).count();
    assert_eq!(terminals, 1, "exactly one terminal event");
    assert!(
        logged.last().is_some_and(Event::is_terminal),
        "terminal event last"
    );
    logged
}

/// The command id from a stream's `init` event.
pub async fn init_id(stream: &mut Stream) -> String {
    assert_eq!(stream.status, 200, "POST /command status");
    let init = stream.next_event().await.expect("init event");
    assert_eq!(init.kind(), "init");
    assert_eq!(init.id, None, "init carries no id");
    init.text().to_string()
}

/// Asserts why a command ended: the terminal event's `reason` and
/// `signal` (absent when `None`), as the status body says them too.
pub fn assert_reason(end: &Event, status: &Value, reason: &str, signal: Option<i32>) {
    for (what, v) in [("terminal event", &end.data), ("status", status)] {
        assert_eq!(v["reason"], reason, "{what}: {v}");
        match signal {
            Some(n) => assert_eq!(v["signal"], n, "{what}: {v}"),
            None => assert!(v.get("signal").is_none(), "{what}: {v}"),
        }
    }
}

/// Asserts a terminal `error` event as execd sends it: `CommandExecError`,
/// the exit code (or -1 for a signal) as `evalue`, and one traceback line.
pub fn assert_failed(end: &Event, evalue: &str, traceback: &str) {
    assert_eq!(end.kind(), "error", "{:?}", end.data);
    assert_eq!(
        end.data["error"]["ename"], "CommandExecError",
        "{:?}",
        end.data
    );
    assert_eq!(end.data["error"]["evalue"], evalue, "{:?}", end.data);
    assert_eq!(
        end.data["error"]["traceback"],
        serde_json::json!([traceback]),
        "{:?}",
        end.data
    );
}
