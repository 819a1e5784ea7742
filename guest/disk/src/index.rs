//! Where every line older than the write frontier is: a list of spans of
//! consecutive eids, each either held by a segment file or missing (with
//! the reason). One entry per segment (or part of one that a damaged
//! stretch split, see `recovery`) or per stretch of missing lines, never
//! one per line or per batch.

use std::collections::VecDeque;

use crate::events::BUDGET;
use crate::segment::Segment;
use crate::trim::{self, Start};

/// What holds a span's lines.
#[derive(Debug)]
pub enum Place {
    /// A segment file (its records, from the span's first eid).
    Stored(Segment),
    /// Nothing: they were dropped or never written, for this reason.
    Missing(&'static str),
}

/// Lines `first_eid..end_eid`, whose texts take the text offsets
/// `text_start..text_end`.
#[derive(Debug)]
pub struct Span {
    pub first_eid: u64,
    pub end_eid: u64,
    pub text_start: u64,
    pub text_end: u64,
    /// Whether `text_end - text_start` is the bytes of its lines: not
    /// for a damaged stretch whose text a reopen could not tell, nor for
    /// spans merged across one.
    pub bytes_known: bool,
    pub place: Place,
}

/// Spans covering eids `1..end_eid` back to back, oldest first.
#[derive(Debug)]
pub struct Index {
    spans: VecDeque<Span>,
    end_eid: u64,
    end_text: u64,
    /// Bytes of the segment files kept, plus those of files that could not
    /// be deleted.
    disk_bytes: u64,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            spans: VecDeque::new(),
            end_eid: 1,
            end_text: 0,
            disk_bytes: 0,
        }
    }
}

impl Index {
    /// Eid after the last line the index covers: the write frontier.
    pub fn end_eid(&self) -> u64 {
        self.end_eid
    }

    /// Text offset at [`Index::end_eid`].
    pub fn end_text(&self) -> u64 {
        self.end_text
    }

    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// The span holding `eid`, if the index covers it.
    pub fn find(&self, eid: u64) -> Option<&Span> {
        let i = self.spans.partition_point(|s| s.end_eid <= eid);
        self.spans.get(i).filter(|s| s.first_eid <= eid)
    }

    /// Covers `end_eid()..end_eid` (texts up to `text_end`) as missing.
    pub fn push_missing(&mut self, end_eid: u64, text_end: u64, reason: &'static str) {
        self.push_lost(end_eid, text_end, reason, true);
    }

    /// [`Index::push_missing`], saying whether `text_end` is known to be
    /// where the lost lines' text ends (a reopen cannot always tell).
    pub fn push_lost(&mut self, end_eid: u64, text_end: u64, reason: &'static str, known: bool) {
        let (first_eid, text_start) = (self.end_eid, self.end_text);
        self.end_eid = end_eid;
        self.end_text = text_end;
        self.spans.push_back(Span {
            first_eid,
            end_eid,
            text_start,
            text_end,
            bytes_known: known,
            place: Place::Missing(reason),
        });
        self.merge_around(self.spans.len() - 1);
    }

    /// Adds a new, empty segment at the frontier; it becomes the one
    /// [`Index::open_segment`] returns.
    pub fn push_segment(&mut self, segment: Segment) {
        self.disk_bytes += segment.file_bytes;
        self.spans.push_back(Span {
            first_eid: self.end_eid,
            end_eid: self.end_eid,
            text_start: self.end_text,
            text_end: self.end_text,
            bytes_known: true,
            place: Place::Stored(segment),
        });
    }

    /// Adds a segment a reopen found at the frontier, holding lines from
    /// text offset `text_start` (the frontier's, unless a damaged stretch
    /// of unknown text came before) up to `end_eid` (texts up to
    /// `text_end`); the frontier moves there.
    pub fn push_recovered(&mut self, segment: Segment, text_start: u64, end: (u64, u64)) {
        let (end_eid, text_end) = end;
        self.push_segment(segment);
        if let Some(span) = self.spans.back_mut() {
            span.text_start = text_start;
            span.end_eid = end_eid;
            span.text_end = text_end;
        }
        self.end_eid = end_eid;
        self.end_text = text_end;
    }

    /// The newest segment, when it is still open for appends.
    pub fn open_segment(&self) -> Option<&Segment> {
        match self.spans.back().map(|s| &s.place) {
            Some(Place::Stored(segment)) if segment.is_open() => Some(segment),
            _ => None,
        }
    }

    /// Seals the open segment, if any.
    pub fn seal(&mut self) {
        if let Some(Span {
            place: Place::Stored(segment),
            ..
        }) = self.spans.back_mut()
        {
            segment.seal();
        }
    }

    /// Appends a record to the open segment. For a lines record, `lines`
    /// is the eid and text offset after its last line: the frontier moves
    /// there. Keeps the disk count true whether or not the write works.
    pub fn append(&mut self, record: &[u8], lines: Option<(u64, u64)>) -> std::io::Result<()> {
        let start = (self.end_eid, self.end_text);
        let Some(Span {
            place: Place::Stored(segment),
            end_eid,
            text_end,
            ..
        }) = self.spans.back_mut()
        else {
            return Err(std::io::Error::other("no open segment"));
        };
        let before = segment.file_bytes;
        let result = segment.append(record, lines.map(|_| start));
        self.disk_bytes = self.disk_bytes - before + segment.file_bytes;
        result?;
        if let Some((eid, text)) = lines {
            *end_eid = eid;
            *text_end = text;
            self.end_eid = eid;
            self.end_text = text;
        }
        Ok(())
    }

    /// Turns the oldest segment's span into a `budget` gap and hands the
    /// segment back for its file to be deleted; `None` when none is left.
    pub fn drop_oldest(&mut self) -> Option<Segment> {
        let i = self
            .spans
            .iter()
            .position(|s| matches!(s.place, Place::Stored(_)))?;
        let span = &mut self.spans[i];
        let Place::Stored(segment) = std::mem::replace(&mut span.place, Place::Missing(BUDGET))
        else {
            return None;
        };
        self.disk_bytes -= segment.file_bytes;
        if span.first_eid == span.end_eid {
            // A segment that held no line leaves no gap behind.
            self.spans.remove(i);
            if i > 0 && i < self.spans.len() {
                self.merge_around(i);
            }
        } else {
            self.merge_around(i);
        }
        Some(segment)
    }

    /// The oldest segment still held.
    pub fn oldest_segment(&self) -> Option<&Segment> {
        self.spans.iter().find_map(|s| match &s.place {
            Place::Stored(segment) => Some(segment),
            Place::Missing(_) => None,
        })
    }

    /// Drops at least `goal` bytes of the oldest segment's oldest records
    /// (see [`crate::trim`]): their lines become a `budget` gap, the rest
    /// stay where they are. Returns the segment's sequence number, or
    /// `None` when no record could be kept (the segment is to be dropped
    /// whole); on an error nothing changed.
    pub fn trim_oldest(&mut self, goal: u64) -> std::io::Result<Option<u64>> {
        let Some(i) = self
            .spans
            .iter()
            .position(|s| matches!(s.place, Place::Stored(_)))
        else {
            return Ok(None);
        };
        let span = &mut self.spans[i];
        let Place::Stored(segment) = &mut span.place else {
            return Ok(None);
        };
        let start = Start {
            eid: span.first_eid,
            text_offset: span.text_start,
        };
        let before = segment.file_bytes;
        let Some(cut) = trim::trim(segment, start, goal)? else {
            return Ok(None);
        };
        let seq = segment.seq;
        self.disk_bytes = self.disk_bytes - before + segment.file_bytes;
        let dropped = Span {
            first_eid: span.first_eid,
            end_eid: cut.eid,
            text_start: span.text_start,
            text_end: cut.text_offset,
            bytes_known: true,
            place: Place::Missing(BUDGET),
        };
        span.first_eid = cut.eid;
        span.text_start = cut.text_offset;
        if dropped.first_eid < dropped.end_eid {
            self.spans.insert(i, dropped);
            self.merge_around(i);
        }
        Ok(Some(seq))
    }

    /// Counts bytes on disk that no span holds: a file that could not be
    /// deleted, or one a reopen found and did not trust.
    pub fn count_unindexed(&mut self, bytes: u64) {
        self.disk_bytes += bytes;
    }

    /// Cuts the span holding `eid` short at `eid` (text offset
    /// `text_offset`, file offset `offset`), after a read found the record
    /// there unreadable: the rest of its lines become an `io` gap.
    pub fn cut(&mut self, eid: u64, text_offset: u64, offset: u64, reason: &'static str) {
        let i = self.spans.partition_point(|s| s.end_eid <= eid);
        let Some(span) = self.spans.get_mut(i) else {
            return;
        };
        let Place::Stored(segment) = &mut span.place else {
            return;
        };
        if eid < span.first_eid {
            return;
        }
        segment.cut_at(offset, eid);
        let lost = Span {
            first_eid: eid,
            end_eid: span.end_eid,
            text_start: text_offset,
            text_end: span.text_end,
            bytes_known: true,
            place: Place::Missing(reason),
        };
        span.end_eid = eid;
        span.text_end = text_offset;
        if lost.first_eid < lost.end_eid {
            self.spans.insert(i + 1, lost);
            self.merge_around(i + 1);
        }
    }

    /// Merges the missing span at `i` with equal neighbours.
    fn merge_around(&mut self, i: usize) {
        let mut i = i;
        if i > 0 && self.merge_pair(i - 1) {
            i -= 1;
        }
        if i + 1 < self.spans.len() {
            self.merge_pair(i);
        }
    }

    /// Merges spans `i` and `i + 1` when both are missing for the same
    /// reason; their bytes stay known only if both were and their texts
    /// meet.
    fn merge_pair(&mut self, i: usize) -> bool {
        let same = match (&self.spans[i].place, &self.spans[i + 1].place) {
            (Place::Missing(x), Place::Missing(y)) => x == y,
            _ => false,
        };
        if !same {
            return false;
        }
        let Some(later) = self.spans.remove(i + 1) else {
            return false;
        };
        let span = &mut self.spans[i];
        span.bytes_known &= later.bytes_known && span.text_end == later.text_start;
        span.end_eid = later.end_eid;
        span.text_end = later.text_end;
        true
    }
}
