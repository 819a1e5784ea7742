//! Reads from segment files for readers that fell behind the memory tail:
//! from the nearest checkpoint (or where the same reader's last read
//! stopped), walking record headers. Only each record's header and its
//! columns before the text (lengths, runs) are read; the text stays in the
//! file, and the answer says where (`text-in-files`), for the host to read
//! it straight from the page cache rather than through this policy's
//! memory.

use crate::file::SegmentFile;
use std::io;

use crate::events::{Batch, Budget, TextSpan};
use crate::format::{Kind, LinesBody, RECORD_HEADER_LEN, RecordHeader};
use crate::index::Span;
use crate::segment::Segment;

/// Bytes read past a record's header in the same call, in the hope that
/// they hold its columns: the size of the last record's columns, within
/// this bound. Records are one pipe read each, so they tend to be alike.
const MAX_GUESS: usize = 64 << 10;
/// Files kept open: one per reader replaying at the same time, for a
/// couple of them, without reopening when they take turns.
const BLOCKS: usize = 2;
/// Read positions remembered.
const MARKS: usize = 32;

/// A record boundary in a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordAt {
    pub seq: u64,
    pub offset: u64,
    /// Eid of the record's first line.
    pub first_eid: u64,
    /// Text offset of the record's first line.
    pub text_offset: u64,
}

/// Where a read stopped: the next eid, its text offset, and when it came
/// from a file, the record that holds it. The next read of the same reader
/// starts there, and a gap over it reports exact bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub eid: u64,
    pub text_offset: u64,
    pub record: Option<RecordAt>,
}

/// A record a read could not use: the lines from `eid` on (text offset
/// `text_offset`, file offset `offset`) of the segment are lost.
#[derive(Debug)]
pub struct Broken {
    pub eid: u64,
    pub text_offset: u64,
    pub offset: u64,
    pub why: String,
}

struct Block {
    seq: u64,
    file: SegmentFile,
    /// File offset of `data[0]`.
    start: u64,
    data: Vec<u8>,
    /// When it was last used, for replacing the least recent.
    used: u64,
}

/// Open files, the columns last read and remembered read positions.
#[derive(Default)]
pub struct Replay {
    blocks: Vec<Block>,
    marks: Vec<Mark>,
    next_mark: usize,
    clock: u64,
    /// Bytes to read past the next record header: see [`MAX_GUESS`].
    guess: usize,
}

impl Replay {
    /// Remembers where a read stopped.
    pub fn mark(&mut self, mark: Mark) {
        if let Some(m) = self.marks.iter_mut().find(|m| m.eid == mark.eid) {
            *m = mark;
        } else if self.marks.len() < MARKS {
            self.marks.push(mark);
        } else {
            self.marks[self.next_mark] = mark;
            self.next_mark = (self.next_mark + 1) % MARKS;
        }
    }

    /// Where a read stopped at `eid`, if remembered.
    pub fn mark_at(&self, eid: u64) -> Option<Mark> {
        self.marks.iter().find(|m| m.eid == eid).copied()
    }

    /// Closes the files of segment `seq` (it is being deleted or trimmed:
    /// an open handle would keep its bytes on disk) and forgets where
    /// records were in it (a trim moves them); where reads stopped, by
    /// eid and text offset, stays true.
    pub fn forget(&mut self, seq: u64) {
        self.blocks.retain(|b| b.seq != seq);
        for mark in &mut self.marks {
            if mark.record.is_some_and(|r| r.seq == seq) {
                mark.record = None;
            }
        }
    }

    /// Frees every block (readers caught up with the memory tail).
    pub fn release(&mut self) {
        self.blocks.clear();
    }

    /// Whether any block is held.
    pub fn holds_blocks(&self) -> bool {
        !self.blocks.is_empty()
    }

    /// Appends lines from `want` (which `span`, held by `segment`, holds)
    /// to `out`, within `budget`, up to the end of the segment: their
    /// lengths and runs to `out`, and where their text lies in the file to
    /// `text`. Returns the eid and text offset after the last line taken.
    pub fn read(
        &mut self,
        span: &Span,
        segment: &Segment,
        want: u64,
        budget: &mut Budget,
        out: &mut Batch,
        text: &mut Vec<TextSpan>,
    ) -> Result<(u64, u64), Broken> {
        let mark = self.mark_at(want);
        let mut want_text = mark.map(|m| m.text_offset);
        let mut at = mark
            .and_then(|m| m.record)
            .filter(|r| {
                // The same file may hold parts that damage split: a mark
                // at the end of one is not in the next.
                r.seq == segment.seq
                    && (segment.records_from..segment.data_end).contains(&r.offset)
                    && r.first_eid <= want
            })
            .or_else(|| {
                segment.checkpoint_for(want).map(|c| RecordAt {
                    seq: segment.seq,
                    offset: c.offset,
                    first_eid: c.eid,
                    text_offset: c.text_offset,
                })
            })
            .unwrap_or(RecordAt {
                seq: segment.seq,
                offset: segment.records_from,
                first_eid: span.first_eid,
                text_offset: span.text_start,
            });
        let mut want = want;
        while at.first_eid < span.end_eid && at.offset < segment.data_end {
            let broken = move |why: String| Broken {
                eid: at.first_eid,
                text_offset: at.text_offset,
                offset: at.offset,
                why,
            };
            let reading = |e: io::Error| broken(format!("reading {}: {e}", segment.path.display()));
            let guess = RECORD_HEADER_LEN + self.guess;
            let header = self
                .bytes(segment, at.offset, RECORD_HEADER_LEN, guess)
                .map_err(reading)
                .and_then(|b| {
                    RecordHeader::decode(b).map_err(|e| broken(format!("record header {e}")))
                })?;
            if header.kind != Kind::Lines || header.first_eid != at.first_eid {
                return Err(broken("record out of place".into()));
            }
            if at.offset + header.record_len() > segment.data_end {
                return Err(broken("record runs past the written data".into()));
            }
            let next = RecordAt {
                offset: at.offset + header.record_len(),
                first_eid: header.end_eid(),
                text_offset: at.text_offset + u64::from(header.text_len),
                ..at
            };
            if header.end_eid() <= want {
                at = next;
                continue;
            }
            if !budget.has_room() {
                break;
            }
            // The checksum is not checked: these are the bytes this log
            // wrote (see FORMAT.md); the structure is, so bad bytes cannot
            // make a read go wrong, only deliver what they say.
            let columns_len = LinesBody::columns_len(&header);
            self.guess = columns_len.min(MAX_GUESS);
            let columns_at = at.offset + RECORD_HEADER_LEN as u64;
            let columns = self
                .bytes(segment, columns_at, columns_len, columns_len)
                .map_err(reading)?;
            let body =
                LinesBody::parse_columns(&header, columns).map_err(|e| broken(e.to_string()))?;
            let from = (want - header.first_eid) as usize;
            let start = want_text
                .and_then(|t| t.checked_sub(at.text_offset))
                .unwrap_or_else(|| body.lens_from(0).take(from).map(u64::from).sum());
            let (taken, text_len) = budget.take_lines(body.lens_from(from));
            if start + text_len > u64::from(header.text_len) {
                return Err(broken("line lengths do not match the text".into()));
            }
            out.lens.extend(body.lens_of(from, from + taken));
            out.extend_runs_of(body.runs(), from, from + taken);
            if text_len > 0 {
                text.push(TextSpan {
                    file: segment.seq,
                    offset: at.offset + LinesBody::text_start(&header) + start,
                    // Within the record's text, whose length is a u32.
                    len: text_len as u32,
                });
            }
            want += taken as u64;
            want_text = Some(at.text_offset + start + text_len);
            if from + taken < body.len() {
                break;
            }
            at = next;
        }
        let text_offset = want_text.unwrap_or(at.text_offset);
        self.mark(Mark {
            eid: want,
            text_offset,
            record: Some(at),
        });
        Ok((want, text_offset))
    }

    /// `len` bytes of `segment` from `offset`; when they must be read,
    /// `read_len` bytes are (within the written data), for what the caller
    /// wants next.
    fn bytes(
        &mut self,
        segment: &Segment,
        offset: u64,
        len: usize,
        read_len: usize,
    ) -> io::Result<&[u8]> {
        let i = self.fill(segment, offset, len, read_len)?;
        let block = &self.blocks[i];
        let at = (offset - block.start) as usize;
        Ok(&block.data[at..at + len])
    }

    /// The index of a block holding `len` bytes of `segment` from
    /// `offset`, reading `read_len` (at least `len`) in if none does.
    fn fill(
        &mut self,
        segment: &Segment,
        offset: u64,
        len: usize,
        read_len: usize,
    ) -> io::Result<usize> {
        self.clock += 1;
        let holds = |b: &Block| {
            b.seq == segment.seq
                && b.start <= offset
                && offset + len as u64 <= b.start + b.data.len() as u64
        };
        if let Some(i) = self.blocks.iter().position(holds) {
            self.blocks[i].used = self.clock;
            return Ok(i);
        }
        let available = segment.data_end.saturating_sub(offset);
        if (len as u64) > available {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "past the written data",
            ));
        }
        let read_len = (read_len.max(len) as u64).min(available) as usize;
        let i = self.block_for(segment)?;
        let block = &mut self.blocks[i];
        block.used = self.clock;
        // Drop a buffer grown for one huge record rather than keep it.
        if block.data.capacity() > 2 * MAX_GUESS && read_len <= MAX_GUESS {
            block.data = Vec::new();
        }
        block.start = offset;
        let read = block.file.read_vec_at(&mut block.data, read_len, offset);
        if let Err(e) = read {
            block.data.clear();
            return Err(e);
        }
        Ok(i)
    }

    /// A block to read `segment` into: a new one while there is room,
    /// else the least recently used (reopened on this file if needed).
    fn block_for(&mut self, segment: &Segment) -> io::Result<usize> {
        if self.blocks.len() < BLOCKS {
            self.blocks.push(Block {
                seq: segment.seq,
                file: SegmentFile::open(&segment.path)?,
                start: 0,
                data: Vec::new(),
                used: self.clock,
            });
            return Ok(self.blocks.len() - 1);
        }
        let i = (0..self.blocks.len())
            .min_by_key(|&i| self.blocks[i].used)
            .unwrap_or(0);
        let block = &mut self.blocks[i];
        if block.seq != segment.seq {
            block.data.clear();
            block.file = SegmentFile::open(&segment.path)?;
            block.seq = segment.seq;
        }
        Ok(i)
    }
}
