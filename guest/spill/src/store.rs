//! The log: a bounded in-memory tail, and chunks of older events in one
//! append-only file with an in-memory index (one entry per chunk).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

use crate::codec::{self, Body, Event};
use crate::wit::{self, Ending, ReadResult};

/// Bytes of encoded events gathered before a chunk is written.
const CHUNK_BYTES: usize = 256 * 1024;
/// Charge per event beyond its text, as in `ring`.
const EVENT_OVERHEAD: u64 = 32;
const SPILL_FILE: &str = "/log/events.bin";

pub struct Settings {
    memory_bytes: u64,
    retention_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            memory_bytes: 1 << 20,
            retention_ms: 300_000,
        }
    }
}

impl Settings {
    pub fn parse(pairs: &[(String, String)]) -> Result<Settings, String> {
        let mut settings = Settings::default();
        for (key, value) in pairs {
            let number = value
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("`{key}` must be a whole number, not `{value}`"));
            match key.as_str() {
                "memory-bytes" => match number? {
                    n if n >= 1024 => settings.memory_bytes = n,
                    _ => return Err("`memory-bytes` must be at least 1024".into()),
                },
                "retention-secs" => settings.retention_ms = number?.saturating_mul(1000),
                _ => {
                    return Err(format!(
                        "unknown setting `{key}` (known: memory-bytes, retention-secs)"
                    ));
                }
            }
        }
        Ok(settings)
    }
}

/// Where a written chunk lives in the spill file.
struct Chunk {
    first_eid: u64,
    last_eid: u64,
    offset: u64,
    len: u32,
}

pub struct Store {
    settings: Settings,
    /// Newest events, in memory.
    tail: VecDeque<Event>,
    tail_bytes: u64,
    /// Encoded events older than the tail, not yet written.
    pending: Vec<u8>,
    pending_first: u64,
    pending_last: u64,
    chunks: Vec<Chunk>,
    file: Option<File>,
    file_len: u64,
    /// The chunk read last, decoded: replay reads chunks in order.
    cache: Option<(usize, Vec<Event>)>,
    next_eid: u64,
    finished: bool,
}

impl Store {
    pub fn new(settings: Settings) -> Store {
        Store {
            settings,
            tail: VecDeque::new(),
            tail_bytes: 0,
            pending: Vec::new(),
            pending_first: 0,
            pending_last: 0,
            chunks: Vec::new(),
            file: None,
            file_len: 0,
            cache: None,
            next_eid: 1,
            finished: false,
        }
    }

    pub fn newest(&self) -> u64 {
        self.next_eid - 1
    }

    /// Where the log stands, for `append` and `finish` to report.
    pub fn stored(&self) -> wit::Stored {
        wit::Stored {
            last_eid: self.newest(),
            disk_bytes: self.file_len,
        }
    }

    /// Bytes of the spill file.
    pub fn disk_bytes(&self) -> u64 {
        self.file_len
    }

    pub fn retention_ms(&self) -> u64 {
        self.settings.retention_ms
    }

    pub fn push(&mut self, timestamp_ms: u64, body: Body, partial: bool) -> Result<(), String> {
        if self.finished {
            return Err("append after finish".into());
        }
        let event = Event {
            eid: self.next_eid,
            timestamp_ms,
            body,
            partial,
        };
        self.next_eid += 1;
        self.tail_bytes += charge(&event);
        self.tail.push_back(event);
        while self.tail_bytes > self.settings.memory_bytes && self.tail.len() > 1 {
            let Some(old) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= charge(&old);
            if self.pending.is_empty() {
                self.pending_first = old.eid;
            }
            self.pending_last = old.eid;
            codec::encode(&old, &mut self.pending);
            if self.pending.len() >= CHUNK_BYTES {
                self.write_chunk()?;
            }
        }
        Ok(())
    }

    pub fn finish(&mut self, ending: Ending) -> Result<wit::Stored, String> {
        let timestamp_ms = ending.timestamp_ms;
        self.push(timestamp_ms, Body::End(ending), false)?;
        self.finished = true;
        Ok(self.stored())
    }

    fn write_chunk(&mut self) -> Result<(), String> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(SPILL_FILE)
                .map_err(|e| format!("cannot create {SPILL_FILE}: {e}"))?;
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            unreachable!()
        };
        file.seek(SeekFrom::Start(self.file_len))
            .and_then(|_| file.write_all(&self.pending))
            .map_err(|e| format!("cannot write {SPILL_FILE}: {e}"))?;
        self.chunks.push(Chunk {
            first_eid: self.pending_first,
            last_eid: self.pending_last,
            offset: self.file_len,
            len: self.pending.len() as u32,
        });
        self.file_len += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    pub fn read(&mut self, after: u64, max_events: u32, max_bytes: u32) -> ReadResult {
        if after >= self.newest() {
            return if self.finished {
                ReadResult::Finished
            } else {
                ReadResult::Pending
            };
        }
        let want = after + 1;
        let limit = Limit {
            events: max_events.max(1) as usize,
            bytes: u64::from(max_bytes),
        };
        if self.tail.front().is_some_and(|e| e.eid <= want) {
            let start = self.tail.front().map_or(0, |e| (want - e.eid) as usize);
            return ReadResult::Events(limit.take(self.tail.range(start..)));
        }
        if !self.pending.is_empty() && want >= self.pending_first {
            // Decoding is cheap next to the file; the pending buffer is small.
            let events = codec::decode_all(&self.pending).unwrap_or_default();
            return ReadResult::Events(limit.take(events.iter().filter(|e| e.eid >= want)));
        }
        let index = self.chunks.partition_point(|c| c.last_eid < want);
        if self.cache.as_ref().is_none_or(|(i, _)| *i != index) {
            let events = self.load_chunk(index).unwrap_or_else(|e| panic!("{e}"));
            self.cache = Some((index, events));
        }
        let Some((_, events)) = &self.cache else {
            unreachable!()
        };
        ReadResult::Events(limit.take(events.iter().filter(|e| e.eid >= want)))
    }

    fn load_chunk(&mut self, index: usize) -> Result<Vec<Event>, String> {
        let chunk = self.chunks.get(index).ok_or("no chunk holds that eid")?;
        let file = self.file.as_mut().ok_or("no spill file")?;
        let mut bytes = vec![0; chunk.len as usize];
        file.seek(SeekFrom::Start(chunk.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| format!("cannot read {SPILL_FILE}: {e}"))?;
        let events = codec::decode_all(&bytes)?;
        match (events.first(), events.last()) {
            (Some(f), Some(l)) if f.eid == chunk.first_eid && l.eid == chunk.last_eid => Ok(events),
            _ => Err("spill chunk does not hold the events indexed for it".into()),
        }
    }
}

struct Limit {
    events: usize,
    bytes: u64,
}

impl Limit {
    /// The first events that fit: at most `events`, about `bytes`, at least
    /// one; consecutive from the first, as the WIT `events` record wants.
    fn take<'a>(&self, events: impl Iterator<Item = &'a Event>) -> wit::Events {
        let mut out = wit::Events {
            first_eid: 0,
            batch: wit::Batch {
                lens: Vec::new(),
                runs: Vec::new(),
                text: Vec::new(),
            },
            text_in_files: Vec::new(),
            ending: None,
        };
        let (mut count, mut bytes) = (0, 0);
        for event in events {
            if count >= self.events || (count > 0 && bytes >= self.bytes) {
                break;
            }
            if count == 0 {
                out.first_eid = event.eid;
            }
            count += 1;
            bytes += charge(event);
            let (channel, text) = match &event.body {
                Body::Stdout(t) => (wit::Channel::Stdout, t),
                Body::Stderr(t) => (wit::Channel::Stderr, t),
                Body::End(ending) => {
                    out.ending = Some(ending.clone());
                    break;
                }
            };
            out.batch.lens.push(text.len() as u32);
            out.batch.text.extend_from_slice(text.as_bytes());
            match out.batch.runs.last_mut() {
                // A partial piece ends its run.
                Some(run)
                    if run.channel == channel
                        && run.timestamp_ms == event.timestamp_ms
                        && !run.partial =>
                {
                    run.lines += 1;
                    run.partial = event.partial;
                }
                _ => out.batch.runs.push(wit::Run {
                    channel,
                    timestamp_ms: event.timestamp_ms,
                    lines: 1,
                    partial: event.partial,
                }),
            }
        }
        out
    }
}

fn charge(event: &Event) -> u64 {
    EVENT_OVERHEAD
        + match &event.body {
            Body::Stdout(t) | Body::Stderr(t) => t.len() as u64,
            Body::End(_) => 0,
        }
}
