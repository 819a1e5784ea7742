//! One segment file: creating it, appending records to it, its sparse index
//! of checkpoints, and deleting it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::events::TextSpan;
use crate::file::SegmentFile;
use crate::format::{Checksum, FILE_HEADER_LEN, FileHeader};

/// Most bytes of records between two checkpoints: a read from a point
/// between them walks at most this many bytes of record headers.
pub const CHECKPOINT_EVERY: u64 = 64 << 10;

/// A record boundary in a segment: where the record with `eid` starts,
/// and the text offset of that line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub eid: u64,
    pub offset: u64,
    pub text_offset: u64,
}

/// An append-only file of records.
#[derive(Debug)]
pub struct Segment {
    /// Its sequence number, which names the file.
    pub seq: u64,
    pub path: PathBuf,
    /// Offset of its first record: the file header's end, but in a part
    /// of a file after a damaged stretch (see [`Segment::split_at`]).
    pub records_from: u64,
    /// Offset after the last whole record written: reads stop here.
    pub data_end: u64,
    /// Bytes the file takes on disk (beyond `data_end` only when a failed
    /// write left part of a record that could not be cut off).
    pub file_bytes: u64,
    /// One per [`CHECKPOINT_EVERY`] bytes of records, the first at the
    /// first record; in eid order.
    checkpoints: Vec<Checkpoint>,
    /// Open while records may still be appended.
    writer: Option<SegmentFile>,
    /// The checksum its records carry (by the file's version).
    pub checksum: Checksum,
    /// Whether dropping it deletes the file: false for each part of a
    /// file that damaged stretches split (see [`Segment::split_at`]) but
    /// the last, which counts the file's bytes.
    owns_file: bool,
}

impl Segment {
    /// The file name of segment `seq`; names sort in sequence order. It
    /// is the name the host gives a text span's file number (`seq`).
    pub fn file_name(seq: u64) -> String {
        TextSpan::file_name(seq)
    }

    /// The name a trim writes the segment's new file under before it
    /// takes the segment's name (see [`crate::trim`]); a reopen removes
    /// one it finds, left by a host that died in the middle of a trim.
    pub fn trim_name(seq: u64) -> String {
        format!("{seq:010}.trim")
    }

    /// Creates the file and writes its header.
    pub fn create(dir: &Path, seq: u64, header: FileHeader) -> io::Result<Segment> {
        let path = dir.join(Segment::file_name(seq));
        let file = SegmentFile::create(&path)?;
        if let Err(e) = file.write_all_at(&header.encode(), 0) {
            drop(file);
            // Best effort: a header-less file is useless to a recovery.
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(Segment {
            seq,
            path,
            records_from: FILE_HEADER_LEN as u64,
            data_end: FILE_HEADER_LEN as u64,
            file_bytes: FILE_HEADER_LEN as u64,
            checkpoints: Vec::new(),
            writer: Some(file),
            checksum: Checksum::WRITTEN,
            owns_file: true,
        })
    }

    /// A file a previous log left, of `file_bytes` bytes, sealed and
    /// with no record counted yet: a reopen counts the whole records it
    /// finds with [`Segment::found`], in order, and sets `checksum` to
    /// the one they carry.
    pub fn recovered(seq: u64, path: PathBuf, file_bytes: u64) -> Segment {
        Segment {
            seq,
            path,
            records_from: FILE_HEADER_LEN as u64,
            data_end: FILE_HEADER_LEN as u64,
            file_bytes,
            checkpoints: Vec::new(),
            writer: None,
            checksum: Checksum::WRITTEN,
            owns_file: true,
        }
    }

    /// Splits a file a reopen is counting at `offset`, where its records
    /// go on after a damaged stretch: the part returned counts the
    /// records from there (and the file's bytes, and deletes it when
    /// dropped), this one keeps those before, which reads never walk
    /// past.
    pub fn split_at(&mut self, offset: u64) -> Segment {
        let rest = Segment {
            seq: self.seq,
            path: self.path.clone(),
            records_from: offset,
            data_end: offset,
            file_bytes: self.file_bytes,
            checkpoints: Vec::new(),
            writer: None,
            checksum: self.checksum,
            owns_file: true,
        };
        self.file_bytes = 0;
        self.owns_file = false;
        rest
    }

    /// Counts the next whole record a reopen found in the file, as
    /// [`Segment::append`] counts one it wrote.
    pub fn found(&mut self, len: u64, line: Option<(u64, u64)>) {
        self.advance(len, line);
    }

    /// Opens a recovered file for appends after its last whole record,
    /// cutting off what follows it (a torn last write).
    pub fn reopen_for_append(&mut self) -> io::Result<()> {
        let file = SegmentFile::open_rw(&self.path)?;
        if file.len()? != self.data_end {
            file.set_len(self.data_end)?;
        }
        self.file_bytes = self.data_end;
        self.writer = Some(file);
        Ok(())
    }

    /// Whether records may still be appended.
    pub fn is_open(&self) -> bool {
        self.writer.is_some()
    }

    /// Whether it holds no record yet.
    pub fn is_empty(&self) -> bool {
        self.data_end == self.records_from
    }

    /// Appends one whole record in one write. `line` is the eid and text
    /// offset of its first line, for a lines record (checkpoints index
    /// lines only). On failure the segment is sealed, the partial record
    /// cut off when possible, and `file_bytes` says what is left on disk.
    pub fn append(&mut self, record: &[u8], line: Option<(u64, u64)>) -> io::Result<()> {
        let Some(writer) = self.writer.as_ref() else {
            return Err(io::Error::other("segment is sealed"));
        };
        // Records follow on at `data_end`: the file's end as far as whole
        // records go (a failed write seals the segment).
        if let Err(e) = writer.write_all_at(record, self.data_end) {
            self.file_bytes = match writer.set_len(self.data_end) {
                Ok(()) => self.data_end,
                Err(_) => writer.len().unwrap_or(self.data_end + record.len() as u64),
            };
            self.writer = None;
            return Err(e);
        }
        self.advance(record.len() as u64, line);
        Ok(())
    }

    /// Counts a whole record of `len` bytes at `data_end`, adding a
    /// checkpoint when one is due; `line` as for [`Segment::append`].
    fn advance(&mut self, len: u64, line: Option<(u64, u64)>) {
        if let Some((eid, text_offset)) = line {
            let due = self
                .checkpoints
                .last()
                .is_none_or(|last| self.data_end >= last.offset + CHECKPOINT_EVERY);
            if due {
                self.checkpoints.push(Checkpoint {
                    eid,
                    offset: self.data_end,
                    text_offset,
                });
            }
        }
        self.data_end += len;
        self.file_bytes = self.file_bytes.max(self.data_end);
    }

    /// The record boundaries kept, one per [`CHECKPOINT_EVERY`] bytes.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.checkpoints
    }

    /// Counts the segment's file as replaced by one (under the same name)
    /// that holds its records from `cut` on, `cut` now at the first
    /// record after the file header; `lines` says whether that record is
    /// a lines record. The new file is sealed: records that follow go to
    /// a new segment.
    pub fn replaced_from(&mut self, cut: Checkpoint, lines: bool) {
        let dropped = cut.offset - FILE_HEADER_LEN as u64;
        self.records_from = FILE_HEADER_LEN as u64;
        self.data_end -= dropped;
        self.file_bytes = self.data_end;
        self.checkpoints.retain(|c| c.offset >= cut.offset);
        for c in &mut self.checkpoints {
            c.offset -= dropped;
        }
        if lines && self.checkpoints.first().is_none_or(|c| c.eid != cut.eid) {
            self.checkpoints.insert(
                0,
                Checkpoint {
                    offset: FILE_HEADER_LEN as u64,
                    ..cut
                },
            );
        }
        self.writer = None;
    }

    /// Closes it for writing: later records go to a new segment.
    pub fn seal(&mut self) {
        self.writer = None;
    }

    /// The last checkpoint at or before `eid`.
    pub fn checkpoint_for(&self, eid: u64) -> Option<Checkpoint> {
        let after = self.checkpoints.partition_point(|c| c.eid <= eid);
        after.checked_sub(1).map(|i| self.checkpoints[i])
    }

    /// Forgets everything from the record at `offset` (holding `eid`) on,
    /// after a read found it unreadable; the file stays as it is.
    pub fn cut_at(&mut self, offset: u64, eid: u64) {
        self.data_end = self.data_end.min(offset);
        self.checkpoints
            .retain(|c| c.eid < eid && c.offset < offset);
        self.writer = None;
    }

    /// Deletes the file (unless a later part of it is still kept).
    pub fn remove(mut self) -> io::Result<()> {
        self.writer = None;
        if !self.owns_file {
            return Ok(());
        }
        fs::remove_file(&self.path)
    }
}
