//! The log of one command: eid assignment, the memory tail, writing each
//! batch to the newest segment as it is appended, the disk budget, and
//! answering reads from memory, from the files, or with a gap; or, after
//! a host restart, taking over the files a previous log left (their
//! index comes from `recovery`).
//!
//! Every line older than the write frontier ([`Index::end_eid`]) is in a
//! segment or in a missing span of the [`Index`]; the lines from the
//! frontier on are in the tail only (their write failed and waits for a
//! retry). When a line leaves the tail unwritten, the index records it
//! missing with reason `io`; when the budget drops a segment, its lines
//! become missing with reason `budget`. A read after the cursor is served
//! from the tail when it holds the eid, else from whatever the index says.

use std::io;
use std::path::PathBuf;

use crate::Config;
use crate::events::{
    BUDGET, Batch, Budget, Ending, Events, Gap, IO, ReadResult, Reopened, Stored, TextSpan,
};
use crate::file::SegmentFile;
use crate::format::{self, FILE_HEADER_LEN, FileHeader};
use crate::index::{Index, Place};
use crate::recovery;
use crate::replay::{Mark, Replay};
use crate::segment::Segment;
use crate::tail::{Chunk, Tail};

/// Reads served from memory in a row after which the file blocks are
/// freed: the readers that needed them have caught up.
const RELEASE_BLOCKS_AFTER: u32 = 64;
/// The write buffer is kept between appends up to this size.
const SCRATCH_KEPT: usize = 1 << 20;

/// How writing a record went.
enum Write {
    Done,
    /// It does not fit the disk budget even with every segment dropped.
    OverBudget,
    Failed(io::Error),
}

/// The log of one command.
pub struct Log {
    config: Config,
    /// The command's directory (`/log` in the component).
    dir: PathBuf,
    tail: Tail,
    index: Index,
    replay: Replay,
    /// Eid the next event gets.
    next_eid: u64,
    /// Text bytes of every line logged so far.
    logged_bytes: u64,
    /// The terminal event and its eid; kept in memory, never dropped.
    ending: Option<(u64, Ending)>,
    /// Most bytes the files may take.
    budget: u64,
    /// Size at which the next segment starts.
    segment_bytes: u64,
    next_seq: u64,
    /// While writes fail: retry once the tail's pushed bytes reach this.
    retry_at: Option<u64>,
    /// Whether the one message about disk trouble went to stderr.
    warned: bool,
    /// A record being encoded, kept between appends.
    scratch: Vec<u8>,
    /// Reads served from the tail since the last one from a file.
    tail_reads: u32,
}

impl Log {
    /// An empty log keeping its files in `dir`, which need not exist
    /// until the first append.
    ///
    /// ```
    /// use execd_policy_disk::{Batch, Channel, Config, Log, ReadResult};
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut log = Log::new(Config::default(), dir.path());
    /// let mut batch = Batch::default();
    /// batch.push(Channel::Stdout, 1, b"hello", false);
    /// assert_eq!(log.append(batch).unwrap().last_eid, 1);
    /// let ReadResult::Events(events) = log.read(0, 10, 1024) else { panic!() };
    /// assert_eq!(events.batch.text, b"hello");
    /// ```
    pub fn new(config: Config, dir: impl Into<PathBuf>) -> Log {
        Log {
            tail: Tail::new(config.memory_bytes),
            segment_bytes: config.segment_bytes,
            config,
            dir: dir.into(),
            index: Index::default(),
            replay: Replay::default(),
            next_eid: 1,
            logged_bytes: 0,
            ending: None,
            budget: u64::MAX,
            next_seq: 1,
            retry_at: None,
            warned: false,
            scratch: Vec::new(),
            tail_reads: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn retention_ms(&self) -> u64 {
        self.config.retention_ms
    }

    /// Bytes the log's files take on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.index.disk_bytes()
    }

    /// Bytes of memory the tail holds.
    pub fn tail_bytes(&self) -> u64 {
        self.tail.bytes()
    }

    /// Where the log stands.
    pub fn stored(&self) -> Stored {
        Stored {
            last_eid: self.next_eid - 1,
            disk_bytes: self.disk_bytes(),
        }
    }

    /// Reopens the log a previous instance left in the directory (a host
    /// restart), instead of a first append: afterwards reads serve what
    /// the files hold, with the eids and gaps they had, and what was
    /// damaged as a gap with reason `damaged`. If the log has no ending,
    /// `finish` writes one after the last whole record. Fails when there
    /// are segment files but none can be used. What is cut and what becomes a
    /// gap: "How the policy reopens a directory" in [`crate::format`].
    ///
    /// ```
    /// use execd_policy_disk::{Batch, Channel, Config, Log, Outcome, ReadResult};
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut log = Log::new(Config::default(), dir.path());
    /// let mut batch = Batch::default();
    /// batch.push(Channel::Stdout, 1, b"hello", false);
    /// log.append(batch).unwrap();
    /// drop(log); // the host died
    /// let mut log = Log::new(Config::default(), dir.path());
    /// let reopened = log.reopen().unwrap();
    /// assert_eq!((reopened.last_eid, reopened.ending), (1, None));
    /// // From the file now: the text stays there, for the host to read.
    /// let ReadResult::Events(events) = log.read(0, 10, 1024) else { panic!() };
    /// assert_eq!((events.batch.text.len(), events.text_in_files[0].len), (0, 5));
    /// let ReadResult::Events(events) = log.read_inline(0, 10, 1024) else { panic!() };
    /// assert_eq!(events.batch.text, b"hello");
    /// ```
    pub fn reopen(&mut self) -> Result<Reopened, String> {
        if self.next_eid != 1 || self.index.disk_bytes() != 0 {
            return Err("reopen of a log that already began".into());
        }
        let recovered = recovery::recover(&self.dir)?;
        self.index = recovered.index;
        self.ending = recovered.ending;
        self.next_eid = match &self.ending {
            Some((eid, _)) => eid + 1,
            None => self.index.end_eid(),
        };
        self.logged_bytes = self.index.end_text();
        self.next_seq = recovered.next_seq;
        Ok(Reopened {
            last_eid: self.next_eid - 1,
            disk_bytes: self.disk_bytes(),
            ending: self.ending.as_ref().map(|(_, ending)| ending.clone()),
            damage: recovered.damage,
        })
    }

    /// Bounds the bytes the files take from now on, dropping the oldest
    /// output now if they take more. Segments are made at most an eighth
    /// of it, so a drop frees a small share; a segment larger than that
    /// (one a reopen found, or one open when the budget shrank) loses its
    /// oldest records instead of all of them (see `drop_oldest`). Returns
    /// the bytes on disk.
    pub fn set_disk_budget(&mut self, bytes: u64) -> u64 {
        self.budget = bytes;
        self.segment_bytes = self.config.segment_bytes.min((bytes / 8).max(1));
        while let Some(excess) = self.index.disk_bytes().checked_sub(self.budget)
            && excess > 0
            && self.drop_oldest(excess)
        {}
        self.disk_bytes()
    }

    /// Logs a batch of lines, giving them the next eids, and writes it to
    /// the newest segment. A failed write is not an error: the lines stay
    /// in memory (see the module docs).
    pub fn append(&mut self, batch: Batch) -> Result<Stored, String> {
        if self.ending.is_some() {
            return Err("append after finish".into());
        }
        batch.check()?;
        if batch.is_empty() {
            return Ok(self.stored());
        }
        let chunk = Chunk {
            first_eid: self.next_eid,
            text_offset: self.logged_bytes,
            batch,
        };
        self.next_eid = chunk.end_eid();
        self.logged_bytes = chunk.text_end();
        self.tail.push(chunk);
        self.persist(false);
        self.evict();
        Ok(self.stored())
    }

    /// Logs the terminal event and writes it after the lines.
    pub fn finish(&mut self, ending: Ending) -> Result<Stored, String> {
        if self.ending.is_some() {
            return Err("finish called twice".into());
        }
        let eid = self.next_eid;
        self.next_eid += 1;
        self.persist(true);
        // After a hole nothing on disk would follow on; the ending is kept
        // in memory in any case.
        if self.index.end_eid() == eid {
            let mut record = std::mem::take(&mut self.scratch);
            record.clear();
            format::encode_ending(&mut record, eid, &ending);
            if let Write::Failed(e) = self.write(eid, &record, None) {
                self.fail(e);
            }
            self.scratch = record;
        }
        self.index.seal();
        self.ending = Some((eid, ending));
        Ok(self.stored())
    }

    /// Writes the batches from the frontier on, unless writes are failing
    /// and the retry is not due (`force` makes it due).
    fn persist(&mut self, force: bool) {
        if let Some(at) = self.retry_at
            && !force
            && self.tail.pushed_bytes() < at
        {
            return;
        }
        let mut record = std::mem::take(&mut self.scratch);
        loop {
            let frontier = self.index.end_eid();
            let Some(chunk) = self.tail.chunks_from(frontier).next() else {
                self.retry_at = None;
                break;
            };
            if chunk.first_eid != frontier {
                break;
            }
            let lines = (chunk.end_eid(), chunk.text_end());
            record.clear();
            let b = &chunk.batch;
            format::encode_lines(&mut record, chunk.first_eid, &b.lens, &b.runs, &b.text);
            match self.write(frontier, &record, Some(lines)) {
                Write::Done => {}
                Write::OverBudget => self.index.push_missing(lines.0, lines.1, BUDGET),
                Write::Failed(e) => {
                    self.fail(e);
                    break;
                }
            }
        }
        if record.capacity() > SCRATCH_KEPT {
            record = Vec::new();
        }
        self.scratch = record;
    }

    /// Writes one record (its first event `eid`) to the open segment, or a
    /// new one, first dropping the oldest segments as the budget needs.
    fn write(&mut self, eid: u64, record: &[u8], lines: Option<(u64, u64)>) -> Write {
        let need = record.len() as u64;
        let fits_open = loop {
            let fits_open = self
                .index
                .open_segment()
                .is_some_and(|s| s.is_empty() || s.data_end + need <= self.segment_bytes);
            let total = need + if fits_open { 0 } else { FILE_HEADER_LEN as u64 };
            let excess = self.index.disk_bytes().saturating_add(total);
            let Some(excess) = excess.checked_sub(self.budget).filter(|&e| e > 0) else {
                break fits_open;
            };
            if !self.drop_oldest(excess) {
                return Write::OverBudget;
            }
        };
        if !fits_open {
            self.index.seal();
            let header = FileHeader {
                first_eid: eid,
                text_offset: self.index.end_text(),
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            match Segment::create(&self.dir, seq, header) {
                Ok(segment) => self.index.push_segment(segment),
                Err(e) => return Write::Failed(e),
            }
        }
        match self.index.append(record, lines) {
            Ok(()) => Write::Done,
            Err(e) => Write::Failed(e),
        }
    }

    /// Drops the oldest output, `excess` bytes of it or more; false if no
    /// segment is left. That is the oldest segment, its file deleted, or,
    /// when that segment is larger than segments are now made, only its
    /// oldest records: at least the excess and a segment's worth (so
    /// that the trims a segment takes before it is small enough to drop
    /// whole are few, each copying at most the budget), or all of them
    /// when that leaves none.
    fn drop_oldest(&mut self, excess: u64) -> bool {
        let oversized = self
            .index
            .oldest_segment()
            .is_some_and(|s| s.file_bytes > self.segment_bytes);
        if oversized {
            match self.index.trim_oldest(excess.max(self.segment_bytes)) {
                Ok(Some(seq)) => {
                    self.replay.forget(seq);
                    return true;
                }
                Ok(None) => {}
                Err(e) => self.warn(format!("cannot drop the oldest records alone: {e}")),
            }
        }
        let Some(segment) = self.index.drop_oldest() else {
            return false;
        };
        self.replay.forget(segment.seq);
        let (bytes, path) = (segment.file_bytes, segment.path.clone());
        if let Err(e) = segment.remove()
            && e.kind() != io::ErrorKind::NotFound
        {
            self.index.count_unindexed(bytes);
            self.warn(format!("cannot delete {}: {e}", path.display()));
        }
        true
    }

    /// Writes are failing: keep the lines in memory and retry after a
    /// quarter of the tail's worth of output, well before they leave it
    /// (the tail has to take in its whole size for that).
    fn fail(&mut self, e: io::Error) {
        self.index.seal();
        self.retry_at = Some(self.tail.pushed_bytes() + self.config.memory_bytes / 4);
        self.warn(format!(
            "cannot write the log in {}: {e}; keeping the newest {} bytes in memory, \
             older unwritten output will be reported as a gap",
            self.dir.display(),
            self.config.memory_bytes
        ));
    }

    /// Says what went wrong, once per log (the host may discard it).
    fn warn(&mut self, message: String) {
        if !self.warned {
            self.warned = true;
            eprintln!("execd-policy-disk: {message}");
        }
    }

    /// Drops the oldest batches the tail has no room for; those never
    /// written become an `io` gap.
    fn evict(&mut self) {
        while let Some(chunk) = self.tail.pop_excess() {
            if chunk.first_eid >= self.index.end_eid() {
                self.index
                    .push_missing(chunk.end_eid(), chunk.text_end(), IO);
            }
        }
    }

    /// Eid after the last line.
    fn lines_end(&self) -> u64 {
        self.ending.as_ref().map_or(self.next_eid, |(eid, _)| *eid)
    }

    /// Like [`Log::read`], with the text that the answer left in files
    /// read back into its batch, as the host does (a span it cannot read
    /// makes the lines a gap with reason `io`): for tests and tools that
    /// run the log natively and want the lines.
    pub fn read_inline(&mut self, after: u64, max_events: u32, max_bytes: u32) -> ReadResult {
        let mut result = self.read(after, max_events, max_bytes);
        if let ReadResult::Events(events) = &mut result
            && let Err(e) = self.read_text(events)
        {
            self.warn(format!("reading text back: {e}"));
            return ReadResult::Gap(Gap {
                from_eid: events.first_eid,
                to_eid: events.first_eid + events.batch.len().max(1) as u64 - 1,
                dropped_bytes: None,
                reason: IO,
            });
        }
        result
    }

    /// Appends the bytes of `events`' text spans to its batch's text.
    fn read_text(&self, events: &mut Events) -> io::Result<()> {
        let text = &mut events.batch.text;
        for span in std::mem::take(&mut events.text_in_files) {
            let file = SegmentFile::open(&self.dir.join(TextSpan::file_name(span.file)))?;
            let at = text.len();
            text.resize(at + span.len as usize, 0);
            file.read_exact_at(&mut text[at..], span.offset)?;
        }
        Ok(())
    }

    /// Events with eid greater than `after`: at most `max_events`, and
    /// about `max_bytes` of text (text plus 32 bytes an event, as `ring`
    /// counts), always at least one when any is there; or the gap after
    /// `after`. The text of lines read from files is not in the answer's
    /// batch but in its `text_in_files`, for the host to read.
    pub fn read(&mut self, after: u64, max_events: u32, max_bytes: u32) -> ReadResult {
        if after >= self.next_eid - 1 {
            return if self.ending.is_some() {
                ReadResult::Finished
            } else {
                ReadResult::Pending
            };
        }
        let want = after + 1;
        let mut budget = Budget::new(max_events, max_bytes);
        let mut out = Batch::default();
        if want >= self.lines_end() {
            return self.events(want, out, Vec::new(), want, &budget);
        }
        if let Some(tail_first) = self.tail.first_eid()
            && want >= tail_first
        {
            self.tail_reads = self.tail_reads.saturating_add(1);
            if self.tail_reads > RELEASE_BLOCKS_AFTER && self.replay.holds_blocks() {
                self.replay.release();
            }
            let known = self.replay.mark_at(want).map(|m| m.text_offset);
            let (next, text_offset) = self.tail.read(want, known, &mut budget, &mut out);
            self.replay.mark(Mark {
                eid: next,
                text_offset,
                record: None,
            });
            return self.events(want, out, Vec::new(), next, &budget);
        }
        self.tail_reads = 0;
        self.read_index(want, budget, out)
    }

    /// A read of lines older than the tail.
    fn read_index(&mut self, want: u64, mut budget: Budget, mut out: Batch) -> ReadResult {
        let (tail_first, tail_text) = match (self.tail.first_eid(), self.tail.first_text_offset()) {
            (Some(eid), Some(text)) => (eid, text),
            _ => (self.index.end_eid(), self.index.end_text()),
        };
        let mut text = Vec::new();
        // A broken record turns its rest of the segment into a gap; the
        // next try answers with that gap (or with the lines before it).
        for _ in 0..2 {
            let Some(span) = self.index.find(want) else {
                break;
            };
            let (to, end_text) = if span.end_eid <= tail_first {
                (span.end_eid - 1, span.text_end)
            } else {
                (tail_first - 1, tail_text)
            };
            let segment = match &span.place {
                Place::Missing(reason) => {
                    let from_text = if want == span.first_eid {
                        Some(span.text_start)
                    } else {
                        self.replay.mark_at(want).map(|m| m.text_offset)
                    };
                    return ReadResult::Gap(Gap {
                        from_eid: want,
                        to_eid: to,
                        dropped_bytes: from_text
                            .and_then(|from| end_text.checked_sub(from))
                            .filter(|_| span.bytes_known),
                        reason,
                    });
                }
                Place::Stored(segment) => segment,
            };
            match self
                .replay
                .read(span, segment, want, &mut budget, &mut out, &mut text)
            {
                Ok((next, _)) if next > want => {
                    return self.events(want, out, text, next, &budget);
                }
                Ok(_) => break,
                Err(broken) => {
                    self.warn(format!("dropping unreadable log data: {}", broken.why));
                    self.index
                        .cut(broken.eid, broken.text_offset, broken.offset, IO);
                    if broken.eid > want {
                        return self.events(want, out, text, broken.eid, &budget);
                    }
                    out = Batch::default();
                    text.clear();
                }
            }
        }
        // The index does not account for `want`: never expected, but a
        // gap up to the tail is an honest answer.
        ReadResult::Gap(Gap {
            from_eid: want,
            to_eid: tail_first.max(want + 1) - 1,
            dropped_bytes: None,
            reason: IO,
        })
    }

    /// The answer for lines `want..next` in `out`, with the terminal event
    /// when it comes next and the read has room for it.
    fn events(
        &self,
        want: u64,
        batch: Batch,
        text_in_files: Vec<TextSpan>,
        next: u64,
        budget: &Budget,
    ) -> ReadResult {
        let ending = match &self.ending {
            Some((eid, ending)) if next == *eid && budget.has_room() => Some(ending.clone()),
            _ => None,
        };
        ReadResult::Events(Events {
            first_eid: want,
            batch,
            text_in_files,
            ending,
        })
    }
}
