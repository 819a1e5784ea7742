//! Property tests (proptest) on the host library's parsers and encoders:
//! the line splitter, the SSE encoder (both framings), and request parsing.
//! Each property is checked against a small independent reference. Cases
//! are bounded so the whole module runs in a few seconds; failures found
//! once are kept below as plain regression tests.

use execd_host::internal::batch::Head;
use execd_host::internal::lines::{LineSplitter, append_text, text_of};
use execd_host::internal::policy::wit::{
    Batch, Channel, Ending, Events, Failure, Gap, Outcome, Reason, Run,
};
use execd_host::internal::request::RunRequest;
use execd_host::internal::sse::{self, Framing};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------
// The line splitter

/// The contract's rule on whole input: only `\n` ends a line, and is
/// dropped (`\r` stays); a trailing unterminated line counts when
/// non-empty. Each line comes with whether a `\n` ended it.
fn reference_lines(input: &[u8]) -> Vec<(Vec<u8>, bool)> {
    let mut lines: Vec<(Vec<u8>, bool)> = input
        .split(|&b| b == b'\n')
        .map(|l| (l.to_vec(), true))
        .collect();
    // What follows the last `\n` is unterminated (and nothing if empty).
    if let Some(last) = lines.pop()
        && !last.0.is_empty()
    {
        lines.push((last.0, false));
    }
    lines
}

/// Where a reference cut of a too-long line goes: the last UTF-8 character
/// boundary at or before `max` when the line is valid UTF-8; for other bytes
/// the cut only has to make progress and stay within `max`.
fn reference_pieces(line: &[u8], max: usize) -> Option<Vec<Vec<u8>>> {
    let text = std::str::from_utf8(line).ok()?;
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(rest.as_bytes()[..cut].to_vec());
        rest = &rest[cut..];
    }
    pieces.push(rest.as_bytes().to_vec());
    Some(pieces)
}

/// Feeds `input` to a splitter in the given chunk sizes, then flushes:
/// the pieces, each with its partial flag.
fn split_in_chunks(input: &[u8], cuts: &[usize], max: usize) -> Vec<(Vec<u8>, bool)> {
    let mut splitter = LineSplitter::new(max);
    let mut out = Vec::new();
    let mut rest = input;
    for &cut in cuts {
        let (chunk, tail) = rest.split_at(cut.min(rest.len()));
        splitter.push(chunk, |l, p| out.push((l.to_vec(), p)));
        rest = tail;
    }
    splitter.push(rest, |l, p| out.push((l.to_vec(), p)));
    splitter.flush(|l, p| out.push((l.to_vec(), p)));
    out
}

/// Checks the splitter's output for `input` against the reference: the
/// pieces rebuild the input exactly (each, plus `\n` unless partial); each
/// reference line is its pieces in order, all but a terminated line's last
/// partial, each within `max`, and exactly the reference cuts when the
/// line is UTF-8.
fn check_split(input: &[u8], cuts: &[usize], max: usize) -> Result<(), TestCaseError> {
    let got = split_in_chunks(input, cuts, max);
    let whole = split_in_chunks(input, &[], max);
    prop_assert_eq!(&got, &whole, "independent of how the input is chunked");
    let mut rebuilt = Vec::new();
    for (piece, partial) in &got {
        rebuilt.extend_from_slice(piece);
        if !partial {
            rebuilt.push(b'\n');
        }
    }
    prop_assert_eq!(&rebuilt, &input.to_vec(), "the pieces rebuild the bytes");
    let mut got = got.iter();
    for (line, terminated) in reference_lines(input) {
        let mut joined = Vec::new();
        let mut pieces = Vec::new();
        loop {
            let piece = got.next();
            prop_assert!(
                piece.is_some(),
                "line {:?} missing or cut short",
                String::from_utf8_lossy(&line)
            );
            let (piece, partial) = piece.unwrap();
            prop_assert!(piece.len() <= max, "piece of {} > {max}", piece.len());
            joined.extend_from_slice(piece);
            pieces.push(piece.clone());
            prop_assert!(line.starts_with(&joined), "pieces rejoin to the line");
            if !partial {
                prop_assert!(terminated, "a whole piece ends a terminated line");
                break;
            }
            prop_assert!(!piece.is_empty(), "an empty partial piece");
            if !terminated && joined.len() == line.len() {
                break;
            }
        }
        prop_assert_eq!(joined.len(), line.len(), "the line is all there");
        if let Some(want) = reference_pieces(&line, max) {
            prop_assert_eq!(&pieces, &want, "UTF-8 cuts at the last char boundary");
            for piece in &pieces {
                prop_assert!(std::str::from_utf8(piece).is_ok(), "cut splits a char");
            }
        }
    }
    prop_assert!(got.next().is_none(), "no extra lines");
    Ok(())
}

/// Bytes rich in terminators, multi-byte characters and invalid UTF-8.
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    let atom = prop_oneof![
        4 => Just(b"a".to_vec()),
        2 => Just(b"xyz".to_vec()),
        2 => Just(b"\n".to_vec()),
        2 => Just(b"\r".to_vec()),
        2 => Just(b"\r\n".to_vec()),
        1 => Just("é".as_bytes().to_vec()),
        1 => Just("€".as_bytes().to_vec()),
        1 => Just("😀".as_bytes().to_vec()),
        1 => Just(vec![0xff]),
        1 => Just(vec![0xe2, 0x82]),
        1 => Just(vec![0]),
        1 => proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(atom, 0..60).prop_map(|v| v.concat())
}

/// Valid UTF-8 only, to check the cut points exactly.
fn utf8_bytes() -> impl Strategy<Value = Vec<u8>> {
    let atom = prop_oneof![
        4 => "[a-z]{1,9}".prop_map(String::from),
        2 => Just("\n".to_string()),
        1 => Just("\r".to_string()),
        1 => Just("\r\n".to_string()),
        3 => "[é€😀ß中]{1,6}".prop_map(String::from),
        1 => any::<String>(),
    ];
    proptest::collection::vec(atom, 0..40).prop_map(|v| v.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn splitter_matches_the_reference_on_any_bytes(
        input in line_bytes(),
        cuts in proptest::collection::vec(0usize..24, 0..12),
        max in 4usize..16,
    ) {
        check_split(&input, &cuts, max)?;
    }

    #[test]
    fn splitter_cuts_utf8_at_char_boundaries(
        input in utf8_bytes(),
        cuts in proptest::collection::vec(0usize..24, 0..12),
        max in 4usize..20,
    ) {
        check_split(&input, &cuts, max)?;
    }

    #[test]
    fn splitter_with_the_default_limit_never_cuts_short_lines(
        input in line_bytes(),
        cuts in proptest::collection::vec(0usize..64, 0..8),
    ) {
        let got = split_in_chunks(&input, &cuts, execd_host::internal::lines::MAX_LINE);
        let want: Vec<(Vec<u8>, bool)> =
            reference_lines(&input).into_iter().map(|(l, t)| (l, !t)).collect();
        prop_assert_eq!(got, want);
    }
}

// ---------------------------------------------------------------------------
// The SSE encoder

/// One event as a WHATWG `text/event-stream` parser dispatches it.
#[derive(Debug, PartialEq)]
struct Parsed {
    id: Option<String>,
    event: String,
    data: String,
}

/// The WHATWG event-stream interpretation (§9.2.6): lines end at CRLF, LF
/// or CR; a blank line dispatches; `:` starts a comment; `field: value`
/// with one optional space stripped; `data` lines join with LF. Returns the
/// events and whether the input ended exactly at a dispatch.
fn parse_sse(bytes: &[u8]) -> (Vec<Parsed>, bool) {
    let text = std::str::from_utf8(bytes).expect("the stream is UTF-8");
    let mut events = Vec::new();
    let (mut id, mut event, mut data) = (None::<String>, String::new(), String::new());
    let mut last_id = None::<String>;
    let mut pending = false;
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => lines.push(std::mem::take(&mut line)),
            '\r' => {
                lines.push(std::mem::take(&mut line));
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
            }
            c => line.push(c),
        }
    }
    let complete = line.is_empty();
    for line in lines {
        if line.is_empty() {
            if pending {
                last_id = id.clone().or(last_id);
                if !data.is_empty() {
                    data.pop();
                    events.push(Parsed {
                        id: id.take(),
                        event: if event.is_empty() {
                            "message".into()
                        } else {
                            std::mem::take(&mut event)
                        },
                        data: std::mem::take(&mut data),
                    });
                }
                id = None;
                event.clear();
                data.clear();
                pending = false;
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        pending = true;
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "event" => event = value.to_string(),
            "id" if !value.contains('\0') => id = Some(value.to_string()),
            _ => {}
        }
    }
    let _ = last_id;
    (events, complete && !pending)
}

/// Legacy framing: bare JSON objects, each followed by a blank line.
fn parse_legacy(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let Some(body) = text.strip_suffix("\n\n") else {
        return Err(format!("does not end in a blank line: {text:?}"));
    };
    body.split("\n\n")
        .map(|part| {
            if part.contains(['\n', '\r']) {
                return Err(format!("a raw line break inside an event: {part:?}"));
            }
            serde_json::from_str(part).map_err(|e| format!("{e}: {part:?}"))
        })
        .collect()
}

/// A logged line as the test builds it: pipe, text, timestamp.
#[derive(Debug, Clone)]
struct TestLine {
    stdout: bool,
    text: String,
    ts: u64,
    partial: bool,
}

/// The policy's answer the encoder gets: the lines as one batch (texts
/// concatenated, lengths and runs beside), and the terminal event if any.
fn to_events(first_eid: u64, lines: &[TestLine], ending: Option<Ending>) -> Events {
    let mut batch = Batch::new();
    for l in lines {
        batch.text.extend_from_slice(l.text.as_bytes());
        batch.push_head(Head {
            channel: if l.stdout {
                Channel::Stdout
            } else {
                Channel::Stderr
            },
            timestamp_ms: l.ts,
            len: l.text.len() as u32,
            partial: l.partial,
        });
    }
    Events {
        first_eid,
        batch,
        text_in_files: Vec::new(),
        ending,
    }
}

/// What each event must read as on the wire: (SSE `event`, eid, JSON `data`).
fn expected(
    first_eid: u64,
    lines: &[TestLine],
    ending: &Option<Ending>,
) -> Vec<(&'static str, u64, Value)> {
    let mut want = Vec::new();
    let mut eid = first_eid;
    for l in lines {
        let kind = if l.stdout { "stdout" } else { "stderr" };
        let mut data = json!({"eid": eid, "type": kind, "text": l.text, "timestamp": l.ts});
        if l.partial {
            data["partial"] = json!(true);
        }
        want.push((kind, eid, data));
        eid += 1;
    }
    if let Some(ending) = ending {
        let (ts, ms) = (ending.timestamp_ms, ending.execution_ms);
        let mut end = match &ending.outcome {
            Outcome::Completed => (
                "execution_complete",
                eid,
                json!({"eid": eid, "type": "execution_complete", "timestamp": ts,
                       "execution_time": ms}),
            ),
            Outcome::Failed(f) => (
                "error",
                eid,
                json!({"eid": eid, "type": "error", "timestamp": ts, "execution_time": ms,
                       "error": {"ename": "CommandExecError",
                                 "evalue": f.exit_code.to_string(),
                                 "traceback": [f.message]}}),
            ),
            Outcome::HostRestarted => (
                "error",
                eid,
                json!({"eid": eid, "type": "error", "timestamp": ts, "execution_time": ms,
                       "error": {"ename": "HostRestarted", "evalue": "-1",
                                 "traceback": [execd_host::internal::sse::HOST_RESTARTED]}}),
            ),
            Outcome::HostShutdown => (
                "error",
                eid,
                json!({"eid": eid, "type": "error", "timestamp": ts, "execution_time": ms,
                       "error": {"ename": "HostShutdown", "evalue": "-1",
                                 "traceback": [execd_host::internal::sse::HOST_SHUTDOWN]}}),
            ),
        };
        end.2["reason"] = json!(reason_word(ending.reason));
        if let Some(signal) = ending.signal {
            end.2["signal"] = json!(signal);
        }
        want.push(end);
    }
    want
}

/// Texts as a pipe can produce them: lossy-decoded arbitrary bytes (the
/// host's own decoding), any unicode string, or the characters that break
/// framings, in runs long enough for the encoder's 8-byte scanning.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| text_of(&b)),
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just("\r"),
                Just("\n"),
                Just("\r\n"),
                Just("\0"),
                Just("\u{1f}"),
                Just("\u{7f}"),
                Just("\u{8}\u{c}\t"),
                Just(":"),
                Just(" "),
                Just("data: x"),
                Just("\"\\"),
                Just("\u{2028}"),
                Just("\u{fffd}"),
                Just("é😀"),
                Just("id: 9"),
                Just("abcdefgh"),
                Just("0123456"),
            ],
            0..16
        )
        .prop_map(|v| v.concat()),
    ]
}

fn any_line() -> impl Strategy<Value = TestLine> {
    (any::<bool>(), any_text(), any::<u64>(), any::<bool>()).prop_map(
        |(stdout, text, ts, partial)| TestLine {
            stdout,
            text,
            ts,
            partial,
        },
    )
}

/// Every reason, and its wire word (the contract's list).
const REASONS: [Reason; 7] = [
    Reason::Exit,
    Reason::Signal,
    Reason::Timeout,
    Reason::Interrupted,
    Reason::HostShutdown,
    Reason::HostRestarted,
    Reason::SpawnFailed,
];

fn reason_word(reason: Reason) -> &'static str {
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

fn any_ending() -> impl Strategy<Value = Option<Ending>> {
    let outcome = prop_oneof![
        Just(Outcome::Completed),
        (any::<i32>(), any_text())
            .prop_map(|(exit_code, message)| Outcome::Failed(Failure { exit_code, message })),
        Just(Outcome::HostRestarted),
        Just(Outcome::HostShutdown),
    ];
    let reason = proptest::sample::select(REASONS.to_vec());
    let signal = proptest::option::of(any::<u8>());
    proptest::option::of(
        (outcome, reason, signal, any::<u64>(), any::<u64>()).prop_map(
            |(outcome, reason, signal, execution_ms, timestamp_ms)| Ending {
                outcome,
                reason,
                signal,
                execution_ms,
                timestamp_ms,
            },
        ),
    )
}

/// Encodes `events` and checks that it parses back, in both framings, to
/// exactly `want`.
fn check_round_trip(
    events: &Events,
    want: &[(&'static str, u64, Value)],
) -> Result<(), TestCaseError> {
    let mut buf = Vec::new();
    let ended = sse::events(&mut buf, Framing::Standard, events);
    prop_assert_eq!(ended, events.ending.is_some());
    let (parsed, complete) = parse_sse(&buf);
    prop_assert!(complete, "the batch ends at an event boundary");
    prop_assert_eq!(parsed.len(), want.len());
    for (p, (kind, eid, data)) in parsed.iter().zip(want) {
        let eid = eid.to_string();
        prop_assert_eq!(p.id.as_deref(), Some(eid.as_str()), "id is the eid");
        prop_assert_eq!(&p.event, kind, "event is the type");
        let got: Value = serde_json::from_str(&p.data)
            .map_err(|err| TestCaseError::fail(format!("{err}: {:?}", p.data)))?;
        prop_assert_eq!(&got, data);
    }
    let mut buf = Vec::new();
    sse::events(&mut buf, Framing::Legacy, events);
    let parsed = parse_legacy(&buf).map_err(TestCaseError::fail)?;
    prop_assert_eq!(parsed.len(), want.len());
    for (p, (_, _, data)) in parsed.iter().zip(want) {
        prop_assert_eq!(p, data);
    }
    // A WHATWG parser sees legacy framing as no events at all (no `data:`
    // field), never as garbage.
    prop_assert!(parse_sse(&buf).0.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// A run of events (lines of both pipes, then maybe the terminal event)
    /// parses back event by event: `id` the eid, `event` the type, `data`
    /// the JSON with the same text.
    #[test]
    fn event_runs_round_trip_in_both_framings(
        first_eid in prop_oneof![1u64..1000, any::<u64>().prop_map(|e| e / 2)],
        lines in proptest::collection::vec(any_line(), 0..6),
        ending in any_ending(),
    ) {
        prop_assume!(!lines.is_empty() || ending.is_some());
        let events = to_events(first_eid, &lines, ending.clone());
        check_round_trip(&events, &expected(first_eid, &lines, &ending))?;
    }

    /// A policy's answer whose text is not valid UTF-8 or whose lengths do
    /// not add up never breaks the stream: each line's text is the lossy
    /// decoding of its bytes (nothing where they are missing).
    #[test]
    fn lying_batches_still_encode_valid_events(
        text in proptest::collection::vec(any::<u8>(), 0..64),
        lens in proptest::collection::vec(0u32..24, 1..6),
        ending in any_ending(),
    ) {
        let events = Events {
            first_eid: 1,
            batch: Batch {
                lens: lens.clone(),
                runs: vec![Run {
                    channel: Channel::Stdout,
                    timestamp_ms: 7,
                    lines: lens.len() as u32,
                    partial: false,
                }],
                text: text.clone(),
            },
            text_in_files: Vec::new(),
            ending: ending.clone(),
        };
        let whole = std::str::from_utf8(&text).ok();
        let mut at = 0usize;
        let mut lines = Vec::new();
        for &len in &lens {
            let end = at + len as usize;
            let line = match whole.and_then(|w| w.get(at..end)) {
                Some(t) => t.to_string(),
                None => String::from_utf8_lossy(text.get(at..end).unwrap_or_default()).into_owned(),
            };
            lines.push(TestLine { stdout: true, text: line, ts: 7, partial: false });
            at = end;
        }
        check_round_trip(&events, &expected(1, &lines, &ending))?;
    }

    /// `init`, `gap`, the background `execution_complete` and keepalives
    /// carry no `id:` and parse back in both framings.
    #[test]
    fn unlogged_events_round_trip(
        id in any_text(),
        from in any::<u64>(),
        to in any::<u64>(),
        dropped in proptest::option::of(any::<u64>()),
        reason in "[a-z0-9-]{1,32}",
        ts in any::<u64>(),
    ) {
        for framing in [Framing::Standard, Framing::Legacy] {
            let mut buf = Vec::new();
            sse::init(&mut buf, framing, &id, ts);
            sse::keepalive(&mut buf, framing, ts);
            let gap = Gap { from_eid: from, to_eid: to, dropped_bytes: dropped, reason: reason.clone() };
            sse::gap(&mut buf, framing, &gap, ts);
            let mut gap_json = json!({"type": "gap", "from_eid": from, "to_eid": to,
                                      "reason": reason, "timestamp": ts});
            if let Some(bytes) = dropped {
                gap_json["dropped_bytes"] = json!(bytes);
            }
            sse::spawned(&mut buf, framing, ts);
            let want = [
                ("init", json!({"type": "init", "text": id, "timestamp": ts})),
                ("gap", gap_json),
                ("execution_complete", json!({"type": "execution_complete",
                                              "timestamp": ts, "execution_time": 0})),
            ];
            match framing {
                Framing::Standard => {
                    let (parsed, complete) = parse_sse(&buf);
                    prop_assert!(complete);
                    prop_assert_eq!(parsed.len(), 3, "the keepalive is a comment");
                    for (p, (kind, data)) in parsed.iter().zip(&want) {
                        prop_assert_eq!(&p.id, &None);
                        prop_assert_eq!(&p.event, kind);
                        let got: Value = serde_json::from_str(&p.data).unwrap();
                        prop_assert_eq!(&got, data);
                    }
                }
                Framing::Legacy => {
                    let parsed = parse_legacy(&buf).map_err(TestCaseError::fail)?;
                    prop_assert_eq!(parsed.len(), 4);
                    prop_assert_eq!(&parsed[0], &want[0].1);
                    prop_assert_eq!(&parsed[1]["type"], "ping");
                    prop_assert_eq!(&parsed[2], &want[1].1);
                    prop_assert_eq!(&parsed[3], &want[2].1);
                }
            }
        }
    }

    /// The host's decoding of a line: lossy UTF-8 (one U+FFFD per maximal
    /// invalid sequence, as `String::from_utf8_lossy`), `"\n"` when empty;
    /// `append_text` appends exactly `text_of`.
    #[test]
    fn line_text_is_lossy_utf8(
        line in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            line_bytes(),
        ],
        prefix in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let text = text_of(&line);
        let want = if line.is_empty() {
            "\n".to_string()
        } else {
            String::from_utf8_lossy(&line).into_owned()
        };
        prop_assert_eq!(&text, &want);
        let mut out = prefix.clone();
        append_text(&mut out, &line);
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&out[prefix.len()..], text.as_bytes());
    }
}

// ---------------------------------------------------------------------------
// Request parsing

/// A JSON value of any shape, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        Just(json!("")),
        Just(json!("~")),
        Just(json!("/")),
        Just(json!("$HOME")),
        Just(json!("${")),
        Just(json!("${X}/..")),
        Just(json!("~/$")),
        Just(json!("a\u{0}b")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z_=\u{0}]{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with the request's fields, each present or not, of the right
/// type or not.
fn any_body() -> impl Strategy<Value = Value> {
    let field = |name: &'static str, good: BoxedStrategy<Value>| {
        proptest::option::of(prop_oneof![good, any_json()]).prop_map(move |v| (name, v))
    };
    (
        field(
            "command",
            prop_oneof![Just(json!("true")), any::<String>().prop_map(Value::String)].boxed(),
        ),
        field("cwd", any::<String>().prop_map(Value::String).boxed()),
        field("background", any::<bool>().prop_map(Value::Bool).boxed()),
        field("timeout", any::<i64>().prop_map(|n| json!(n)).boxed()),
        field("uid", any::<u32>().prop_map(|n| json!(n)).boxed()),
        field("gid", any::<u32>().prop_map(|n| json!(n)).boxed()),
        field(
            "envs",
            proptest::collection::btree_map(any::<String>(), any::<String>(), 0..3)
                .prop_map(|m| json!(m))
                .boxed(),
        ),
        proptest::collection::btree_map("[a-z]{1,6}", any_json(), 0..2),
    )
        .prop_map(|(a, b, c, d, e, f, g, extra)| {
            let mut object: Map<String, Value> = extra.into_iter().collect();
            for (name, value) in [a, b, c, d, e, f, g] {
                if let Some(value) = value {
                    object.insert(name.to_string(), value);
                }
            }
            Value::Object(object)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn request_parse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = RunRequest::parse(&bytes) {
            prop_assert_eq!(e.code, "INVALID_REQUEST_BODY");
            prop_assert_eq!(e.status.as_u16(), 400);
        }
    }

    #[test]
    fn request_parse_on_any_json_is_ok_or_invalid_body(body in prop_oneof![1 => any_json(), 4 => any_body()]) {
        let bytes = serde_json::to_vec(&body).unwrap();
        match RunRequest::parse(&bytes) {
            Ok(request) => {
                // What was accepted is what was asked.
                let command = body["command"].as_str();
                prop_assert_eq!(Some(request.command.as_str()), command);
                prop_assert!(!request.command.trim().is_empty());
                prop_assert!(!request.command.contains('\0'));
                if let Some(t) = body.get("timeout").and_then(Value::as_i64) {
                    prop_assert!(t >= 0);
                    prop_assert_eq!(request.timeout.map(|d| d.as_millis() as i64), (t > 0).then_some(t));
                }
                if request.gid.is_some() {
                    prop_assert!(request.uid.is_some());
                }
                if let Some(cwd) = &request.cwd {
                    prop_assert!(cwd.is_dir());
                }
                for (k, v) in &request.envs {
                    prop_assert!(!k.is_empty() && !k.contains(['=', '\0']) && !v.contains('\0'));
                }
            }
            Err(e) => {
                prop_assert_eq!(e.code, "INVALID_REQUEST_BODY", "{}", e.message);
                prop_assert_eq!(e.status.as_u16(), 400);
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Regressions: cases the properties above found, kept as plain tests.

/// A line of exactly the limit, whose terminator arrives in the next read,
/// must be one line: not the line and then an empty line.
#[test]
fn regression_line_of_exactly_max_then_terminator_in_next_chunk() {
    let whole = split_in_chunks(b"abcd\nef\n", &[], 4);
    let chunked = split_in_chunks(b"abcd\nef\n", &[4], 4);
    assert_eq!(
        whole,
        vec![(b"abcd".to_vec(), false), (b"ef".to_vec(), false)]
    );
    assert_eq!(chunked, whole, "a chunk boundary before the terminator");
    // The `\r` stays: the line is 9 bytes, two partial pieces and the rest.
    let chunked = split_in_chunks(b"abcdabcd\r\n", &[8], 4);
    let want = vec![
        (b"abcd".to_vec(), true),
        (b"abcd".to_vec(), true),
        (b"\r".to_vec(), false),
    ];
    assert_eq!(chunked, want);
}
