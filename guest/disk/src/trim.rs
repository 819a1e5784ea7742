//! Dropping the oldest records of a segment rather than the whole of it,
//! for a segment larger than the budget allows one to be: one a reopen
//! found, written under a bigger budget (so with bigger segments), or one
//! that was open when the budget shrank. Dropped whole, it would take
//! most of the log, the newest output with it.
//!
//! The records kept, from a record boundary on, are copied as they are
//! (they carry their eids) to a new file with a header naming the first
//! of them (of a version whose checksum they carry), written under
//! [`Segment::trim_name`] and renamed over the segment's file, so the
//! segment keeps its sequence number and its place among the files: a
//! reopen sees a file whose first eid is past the log's start, which is
//! the `budget` gap. A host that dies before the rename leaves the old
//! file whole and the new one under its temporary name, which a reopen
//! removes.

use std::fs;
use std::io;

use crate::file::SegmentFile;
use crate::format::{FILE_HEADER_LEN, FileHeader, Kind, RECORD_HEADER_LEN, RecordHeader};
use crate::segment::{Checkpoint, Segment};

/// Bytes copied at once: a trim of any size costs this much memory.
const COPY_PIECE: usize = 1 << 20;

/// The first eid and text offset the segment's records start at.
#[derive(Clone, Copy, Debug)]
pub struct Start {
    pub eid: u64,
    pub text_offset: u64,
}

/// Drops at least `goal` bytes of the segment's oldest records (whose
/// first record holds `start`), keeping the rest in a file of the same
/// name. Returns the first record kept (its eid, text offset, and offset
/// now), or `None` when keeping any record frees too little (then the
/// segment is to be dropped whole). On an error the file is as it was.
pub fn trim(segment: &mut Segment, start: Start, goal: u64) -> io::Result<Option<Checkpoint>> {
    let file = SegmentFile::open(&segment.path)?;
    // Bytes past the whole records (a failed write's leftovers) go too.
    let leftover = segment.file_bytes.saturating_sub(segment.data_end);
    let cut_from = (FILE_HEADER_LEN as u64 + goal).saturating_sub(leftover);
    let Some((cut, kind)) = boundary_from(&file, segment, start, cut_from)? else {
        return Ok(None);
    };
    let header = FileHeader {
        first_eid: cut.eid,
        text_offset: cut.text_offset,
    }
    .encode_for(segment.checksum);
    let temporary = segment.path.with_file_name(Segment::trim_name(segment.seq));
    let copied = copy_from(&file, &header, cut.offset, segment.data_end, &temporary)
        .and_then(|()| fs::rename(&temporary, &segment.path));
    if let Err(e) = copied {
        let _ = fs::remove_file(&temporary);
        return Err(e);
    }
    segment.replaced_from(cut, kind == Kind::Lines);
    Ok(Some(Checkpoint {
        offset: FILE_HEADER_LEN as u64,
        ..cut
    }))
}

/// The first record boundary at or after `from` short of the segment's
/// end, found by walking record headers from the checkpoint before it,
/// and the kind of the record there.
fn boundary_from(
    file: &SegmentFile,
    segment: &Segment,
    start: Start,
    from: u64,
) -> io::Result<Option<(Checkpoint, Kind)>> {
    let first = Checkpoint {
        eid: start.eid,
        offset: segment.records_from,
        text_offset: start.text_offset,
    };
    let mut at = segment
        .checkpoints()
        .iter()
        .rev()
        .find(|c| c.offset <= from)
        .copied()
        .filter(|c| c.offset >= first.offset)
        .unwrap_or(first);
    let mut bytes = [0; RECORD_HEADER_LEN];
    loop {
        if at.offset + RECORD_HEADER_LEN as u64 > segment.data_end {
            return Ok(None);
        }
        file.read_exact_at(&mut bytes, at.offset)?;
        let header = RecordHeader::decode(&bytes)
            .ok()
            .filter(|h| h.first_eid == at.eid)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "record out of place"))?;
        if at.offset >= from && at.offset > FILE_HEADER_LEN as u64 {
            return Ok(Some((at, header.kind)));
        }
        at = Checkpoint {
            eid: at.eid + u64::from(header.lines),
            offset: at.offset + header.record_len(),
            text_offset: at.text_offset + u64::from(header.text_len),
        };
    }
}

/// Writes `header` and the bytes `from..to` of `file` to a new file at
/// `path`.
fn copy_from(
    file: &SegmentFile,
    header: &[u8],
    from: u64,
    to: u64,
    path: &std::path::Path,
) -> io::Result<()> {
    let out = SegmentFile::create(path)?;
    out.write_all_at(header, 0)?;
    let mut piece = Vec::new();
    let mut at = from;
    while at < to {
        let n = (to - at).min(COPY_PIECE as u64) as usize;
        file.read_vec_at(&mut piece, n, at)?;
        out.write_all_at(&piece, FILE_HEADER_LEN as u64 + (at - from))?;
        at += n as u64;
    }
    Ok(())
}
