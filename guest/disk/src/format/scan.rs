//! Scanning a segment file with every record checked, as a reopen does,
//! and resynchronising after a damaged record.
//!
//! Damage costs the damaged records and no more. After a record that
//! fails (cut short, a checksum that does not match, fields that do not
//! decode, eids that do not follow on), the scan looks, byte by byte, for
//! the next offset where a whole record starts whose checksum holds and
//! whose first eid can follow what came before: at or above the eid the
//! damaged record starts at, by at most a line per 4 damaged bytes (a
//! line takes at least its 4-byte length). It goes on from there; the
//! eids in between are the damaged stretch (none, when the bad bytes held
//! no record of the log). A scan is bounded: it reads the file in pieces
//! of at most 512 KiB ([`WINDOW`]; a record of any size costs no more),
//! reads and checks at most 4 times the file's bytes
//! ([`WORK_LIMIT_TIMES`]) however the file looks, and skips at most 32 damaged stretches in a file
//! ([`MAX_STRETCHES`]), after which the rest of the file is not used.

use std::io::{self, Read};

use super::{
    Checksum, FILE_HEADER_LEN, FileHeader, FormatError, Kind, RECORD_HEADER_LEN, RUN_LEN,
    RecordHeader, decode_ending, u32_at,
};
use crate::events::Ending;

/// Bytes a scan reads from a file at once, at most: a scan's memory.
pub const WINDOW: usize = 512 << 10;
/// Bytes of a lines record checked at once, so that a record of any size
/// costs a scan this much more. A multiple of the sizes of a length and
/// of a run, so that every piece holds whole ones.
const SCAN_PIECE: usize = 64 << 10;
/// Largest ending body a scan accepts: a few numbers and a message.
const MAX_ENDING_BODY: u32 = 64 << 10;
/// Damaged stretches a scan skips over in one file; after as many, the
/// rest of the file is not used (each costs the index two entries).
pub const MAX_STRETCHES: usize = 32;
/// A scan reads, and checks, at most this many times the file's bytes
/// (plus a few windows), whatever the file holds: what looks like a
/// record header in damaged bytes costs a check of the record it claims.
pub const WORK_LIMIT_TIMES: u64 = 4;

/// A file read by offset.
pub trait ReadAt {
    /// Reads what there is of `buf.len()` bytes from `offset`: fewer
    /// only at the file's end, none past it.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - from);
        buf[..n].copy_from_slice(&self[from..from + n]);
        Ok(n)
    }
}

/// What a scan of a whole segment file found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    pub header: FileHeader,
    /// The checksum its records carry (by its version).
    pub checksum: Checksum,
    /// Bytes from the start of the file to the end of its last whole,
    /// checked record: where a recovery cuts the file.
    pub valid_len: u64,
    /// Eid after the last line of the whole records.
    pub end_eid: u64,
    /// Text offset after the last line of the whole records (counting
    /// nothing for a damaged stretch whose text is not known).
    pub text_end: u64,
    /// The terminal event, when an ending record is among them.
    pub ending: Option<(u64, Ending)>,
    /// The damaged stretches skipped over, in order.
    pub stretches: Vec<Stretch>,
    /// Why the file header could not be used, when its records were
    /// taken to follow on from the files before instead (see
    /// [`scan_following`]): `header` is then where those end.
    pub header_damage: Option<FormatError>,
    /// Why the file goes on past `valid_len`, if it does: a torn last
    /// write, damage no whole record follows, or anything after the
    /// ending.
    pub cut: Option<FormatError>,
}

/// Damaged records a scan skipped over: bytes `offset..end_offset` of
/// the file, which held eids `first_eid..end_eid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stretch {
    pub offset: u64,
    pub end_offset: u64,
    pub first_eid: u64,
    pub end_eid: u64,
    /// Text offset of `first_eid`.
    pub text_offset: u64,
    /// Text offset of `end_eid`, when the damaged records' own headers
    /// still add up to the record after them (the damage hit their
    /// bodies): then the stretch's text bytes are known.
    pub text_end: Option<u64>,
    /// What was wrong with its first record.
    pub why: FormatError,
}

/// A whole, checked record that a scan found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// File offset of its header.
    pub offset: u64,
    pub header: RecordHeader,
    /// Text offset of its first line (for an ending: after the last line).
    pub text_offset: u64,
    /// The damaged stretch right before it, if any.
    pub after: Option<Stretch>,
}

/// Reads a segment file from its start to its end and says what it holds
/// and where its whole records end (see the module docs). Fails only when
/// the file header itself is unreadable or bad. The file is read into
/// memory first (for tools and tests; a reopen uses [`scan_records`]).
pub fn scan(mut file: impl Read) -> io::Result<Scan> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    scan_records(&bytes[..], bytes.len() as u64, |_| {})
}

/// [`scan`] of a file of `file_len` bytes, calling `found` with each
/// whole, checked record in order.
pub fn scan_records<F: ReadAt + ?Sized>(
    file: &F,
    file_len: u64,
    found: impl FnMut(&Found),
) -> io::Result<Scan> {
    scan_following(file, file_len, None, found)
}

/// [`scan_records`] of a file that should follow on from `follows`: the
/// eid and text offset where the files before it end. A file header is
/// not a record, and damage to it need not cost the file: when it does
/// not decode, the records are taken if they follow on from there (the
/// first at eid `follows`, or after damaged records whose own headers
/// still chain from that eid to the next good record), with whichever
/// checksum they hold with, and the scan says so in
/// [`Scan::header_damage`].
pub fn scan_following<F: ReadAt + ?Sized>(
    file: &F,
    file_len: u64,
    follows: Option<(u64, u64)>,
    mut found: impl FnMut(&Found),
) -> io::Result<Scan> {
    let mut w = Window::new(file, file_len);
    let mut head = [0; FILE_HEADER_LEN];
    head.copy_from_slice(
        w.get(0, FILE_HEADER_LEN)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?,
    );
    let damage = match FileHeader::decode_versioned(&head) {
        Ok((header, checksum)) => {
            return walk_records(&mut w, Scan::start(header, checksum, None), &mut found);
        }
        Err(e) => e,
    };
    let bad = || io::Error::new(io::ErrorKind::InvalidData, damage.clone());
    let (first_eid, text_offset) = follows.ok_or_else(bad)?;
    let header = FileHeader {
        first_eid,
        text_offset,
    };
    // The version may be what was damaged: the checksum it names first.
    let kinds = match Checksum::of_version(u32_at(&head, 8)) {
        Some(Checksum::Crc32) => [Checksum::Crc32, Checksum::Xxh3Low32],
        _ => [Checksum::Xxh3Low32, Checksum::Crc32],
    };
    for checksum in kinds {
        w.read = 0;
        w.checked = 0;
        let scan = Scan::start(header, checksum, Some(damage.clone()));
        // No record found, so `found` was not called: try the next.
        let scan = walk_records(&mut w, scan, &mut found)?;
        if scan.valid_len > FILE_HEADER_LEN as u64 {
            return Ok(scan);
        }
    }
    Err(bad())
}

impl Scan {
    fn start(header: FileHeader, checksum: Checksum, header_damage: Option<FormatError>) -> Scan {
        Scan {
            header,
            checksum,
            valid_len: FILE_HEADER_LEN as u64,
            end_eid: header.first_eid,
            text_end: header.text_offset,
            ending: None,
            stretches: Vec::new(),
            header_damage,
            cut: None,
        }
    }
}

/// Takes the records after the file header, resynchronising after damage.
fn walk_records<F: ReadAt + ?Sized>(
    w: &mut Window<F>,
    mut scan: Scan,
    found: &mut impl FnMut(&Found),
) -> io::Result<Scan> {
    let checksum = scan.checksum;
    let file_len = w.len;
    let mut at = FILE_HEADER_LEN as u64;
    let mut after = None;
    while at < file_len {
        let why = match check_at(w, at, checksum)? {
            Checked::Good(_, _) if scan.ending.is_some() => {
                FormatError::Invalid("a record after the ending")
            }
            Checked::Good(rh, ending) if rh.first_eid == scan.end_eid => {
                let ends = (
                    scan.end_eid.checked_add(u64::from(rh.lines)),
                    scan.text_end.checked_add(u64::from(rh.text_len)),
                );
                if let (Some(end_eid), Some(text_end)) = ends {
                    found(&Found {
                        offset: at,
                        header: rh,
                        text_offset: scan.text_end,
                        after: after.take(),
                    });
                    if let Some(ending) = ending {
                        scan.ending = Some((rh.first_eid, ending));
                    }
                    scan.end_eid = end_eid;
                    scan.text_end = text_end;
                    at += rh.record_len();
                    scan.valid_len = at;
                    continue;
                }
                FormatError::Invalid("eids past the largest number")
            }
            Checked::Good(_, _) => FormatError::Invalid("eids do not follow on"),
            Checked::Bad(why) => why,
        };
        // Nothing follows an ending; and a file damaged all over is not
        // worth the index's memory.
        if scan.ending.is_some() || scan.stretches.len() >= MAX_STRETCHES {
            return Ok(cut(scan, why));
        }
        let Some((next, rh)) = resync(w, at, scan.end_eid, checksum)? else {
            return Ok(cut(scan, why));
        };
        let text_end = if rh.first_eid == scan.end_eid {
            // Bytes that held no record of this log (written over, or
            // put in): nothing is lost but them.
            Some(scan.text_end)
        } else {
            chained_text(w, at, next, scan.end_eid, scan.text_end, rh.first_eid)?
        };
        let first = scan.valid_len == FILE_HEADER_LEN as u64;
        if text_end.is_none() && scan.header_damage.is_some() && first {
            // Before the first record of a file whose header is damaged,
            // only the damaged records' own headers can say that they
            // follow on: eids missing there may never have been in it.
            return Ok(cut(scan, why));
        }
        let stretch = Stretch {
            offset: at,
            end_offset: next,
            first_eid: scan.end_eid,
            end_eid: rh.first_eid,
            text_offset: scan.text_end,
            text_end,
            why,
        };
        scan.end_eid = stretch.end_eid;
        scan.text_end = text_end.unwrap_or(scan.text_end);
        scan.stretches.push(stretch.clone());
        after = Some(stretch);
        at = next;
    }
    Ok(scan)
}

fn cut(scan: Scan, why: FormatError) -> Scan {
    Scan {
        cut: Some(why),
        ..scan
    }
}

/// The next offset after the damaged record at `from` (eid `eid`) where a
/// record starts that can be trusted: it decodes, fits the file, its
/// checksum holds and its columns agree, and its first eid is `eid` or
/// above it by at most a line per 4 bytes from `from`. `None` when there is
/// none, or the scan has read its limit.
fn resync<F: ReadAt + ?Sized>(
    w: &mut Window<F>,
    from: u64,
    eid: u64,
    checksum: Checksum,
) -> io::Result<Option<(u64, RecordHeader)>> {
    let mut at = from + 1;
    while at + RECORD_HEADER_LEN as u64 <= w.len {
        if w.spent() {
            return Ok(None);
        }
        let Some(head) = w.get(at, RECORD_HEADER_LEN)? else {
            return Ok(None);
        };
        // Most bytes are ruled out by the kind and the zero bytes after it.
        let maybe = matches!(head[8], 1 | 2) && head[9..12] == [0, 0, 0];
        if let Some(rh) = maybe.then(|| RecordHeader::decode(head).ok()).flatten() {
            let most = eid.saturating_add((at - from) / 4);
            let placed = rh.first_eid >= eid && rh.first_eid <= most;
            if placed
                && rh.record_len() <= w.len - at
                && matches!(check_at(w, at, checksum)?, Checked::Good(..))
            {
                return Ok(Some((at, rh)));
            }
        }
        at += 1;
    }
    Ok(None)
}

/// The text offset at `end_eid`, if the records from `from` (the first
/// with eid `eid`, text offset `text`) up to `to` still have headers that
/// decode, follow on in eids and end exactly at `to` with `end_eid`:
/// their text lengths are then taken to be what they held.
fn chained_text<F: ReadAt + ?Sized>(
    w: &mut Window<F>,
    from: u64,
    to: u64,
    eid: u64,
    text: u64,
    end_eid: u64,
) -> io::Result<Option<u64>> {
    let (mut at, mut eid, mut text) = (from, eid, text);
    while at < to {
        let Some(rh) = w
            .get(at, RECORD_HEADER_LEN)?
            .and_then(|head| RecordHeader::decode(head).ok())
        else {
            return Ok(None);
        };
        if rh.kind != Kind::Lines || rh.first_eid != eid {
            return Ok(None);
        }
        at = at.saturating_add(rh.record_len());
        eid = rh.end_eid();
        text = text.saturating_add(u64::from(rh.text_len));
    }
    Ok((at == to && eid == end_eid).then_some(text))
}

/// What checking a record found.
enum Checked {
    /// Whole, its checksum holds and its columns agree; the terminal
    /// event of an ending record.
    Good(RecordHeader, Option<Ending>),
    Bad(FormatError),
}

/// Checks the record at `at`, wherever it is in the log.
fn check_at<F: ReadAt + ?Sized>(
    w: &mut Window<F>,
    at: u64,
    checksum: Checksum,
) -> io::Result<Checked> {
    let Some(bytes) = w.get(at, RECORD_HEADER_LEN)? else {
        return Ok(Checked::Bad(FormatError::Short));
    };
    let mut head = [0; RECORD_HEADER_LEN];
    head.copy_from_slice(bytes);
    let rh = match RecordHeader::decode(&head) {
        Ok(rh) => rh,
        Err(e) => return Ok(Checked::Bad(e)),
    };
    // A length the file cannot hold is not read at all.
    if rh.record_len() > w.len - at {
        return Ok(Checked::Bad(FormatError::Short));
    }
    if rh.kind == Kind::Ending && rh.body_len > MAX_ENDING_BODY {
        return Ok(Checked::Bad(FormatError::Invalid("ending record too long")));
    }
    // Counted whether or not its bytes are in the window already.
    w.checked += rh.record_len();
    let mut crc = checksum.hasher();
    crc.update(&head[4..]);
    let body_at = at + RECORD_HEADER_LEN as u64;
    let content = match rh.kind {
        Kind::Ending => {
            let Some(body) = w.get(body_at, rh.body_len as usize)? else {
                return Ok(Checked::Bad(FormatError::Short));
            };
            crc.update(body);
            let mut record = head.to_vec();
            record.extend_from_slice(body);
            decode_ending(&rh, &record).map(Some)
        }
        Kind::Lines => match check_lines(w, &rh, body_at, &mut crc)? {
            Some(content) => content.map(|()| None),
            None => return Ok(Checked::Bad(FormatError::Short)),
        },
    };
    if crc.finish() != rh.crc {
        return Ok(Checked::Bad(FormatError::Checksum));
    }
    Ok(match content {
        Ok(ending) => Checked::Good(rh, ending),
        Err(e) => Checked::Bad(e),
    })
}

/// Reads a lines record's body from `at` piece by piece into `crc`,
/// checking that its runs cover its lines and its lengths its text;
/// `None` when the file ends first.
fn check_lines<F: ReadAt + ?Sized>(
    w: &mut Window<F>,
    rh: &RecordHeader,
    at: u64,
    crc: &mut super::Hasher,
) -> io::Result<Option<Result<(), FormatError>>> {
    let mut text = 0u64;
    let mut covered = 0u64;
    let mut bad_run = false;
    let columns = [
        (4 * u64::from(rh.lines), Column::Lens),
        (RUN_LEN as u64 * u64::from(rh.runs), Column::Runs),
        (u64::from(rh.text_len), Column::Text),
    ];
    let mut offset = at;
    for (len, column) in columns {
        let mut left = len;
        while left > 0 {
            let n = left.min(SCAN_PIECE as u64) as usize;
            let Some(piece) = w.get(offset, n)? else {
                return Ok(None);
            };
            crc.update(piece);
            match column {
                Column::Lens => {
                    text += piece
                        .chunks_exact(4)
                        .map(|l| u64::from(u32_at(l, 0)))
                        .sum::<u64>();
                }
                Column::Runs => {
                    for run in piece.chunks_exact(RUN_LEN) {
                        bad_run |= run[12] > 1 || run[13] > 1 || u32_at(run, 8) == 0;
                        covered += u64::from(u32_at(run, 8));
                    }
                }
                Column::Text => {}
            }
            offset += n as u64;
            left -= n as u64;
        }
    }
    Ok(Some(if bad_run {
        Err(FormatError::Invalid("bad run"))
    } else if covered != u64::from(rh.lines) {
        Err(FormatError::Invalid("runs do not cover the lines"))
    } else if text != u64::from(rh.text_len) {
        Err(FormatError::Invalid(
            "line lengths do not add up to the text",
        ))
    } else {
        Ok(())
    }))
}

/// The columns of a lines record's body, in order.
#[derive(Clone, Copy)]
enum Column {
    Lens,
    Runs,
    Text,
}

/// The bytes of a file a scan last read, and how much it has read.
struct Window<'a, F: ReadAt + ?Sized> {
    file: &'a F,
    /// Bytes the file is said to have.
    len: u64,
    /// File offset of `data[0]`.
    start: u64,
    data: Vec<u8>,
    /// Bytes read at once: no more than the file, for a small one.
    size: usize,
    /// Bytes read so far, and bytes of records checked: each at most
    /// `limit`.
    read: u64,
    checked: u64,
    limit: u64,
}

impl<'a, F: ReadAt + ?Sized> Window<'a, F> {
    fn new(file: &'a F, len: u64) -> Self {
        let size = usize::try_from(len).map_or(WINDOW, |len| len.clamp(4096, WINDOW));
        Window {
            file,
            len,
            start: 0,
            data: Vec::new(),
            size,
            read: 0,
            checked: 0,
            limit: len
                .saturating_mul(WORK_LIMIT_TIMES)
                .saturating_add(4 * WINDOW as u64),
        }
    }

    /// Whether the scan has read, or checked, as much as it may.
    fn spent(&self) -> bool {
        self.read > self.limit || self.checked > self.limit
    }

    /// The `n` bytes at `offset` (`n` at most a window or a piece);
    /// `None` when the file ends first.
    fn get(&mut self, offset: u64, n: usize) -> io::Result<Option<&[u8]>> {
        let Some(end) = offset.checked_add(n as u64).filter(|&end| end <= self.len) else {
            return Ok(None);
        };
        let held = offset >= self.start && end <= self.start + self.data.len() as u64;
        if !held {
            let want = (self.size.max(n) as u64).min(self.len - offset) as usize;
            self.data.resize(want, 0);
            let got = read_full_at(self.file, &mut self.data, offset)?;
            self.data.truncate(got);
            self.start = offset;
            self.read += got as u64;
            if got < n {
                // The file is shorter than it was said to be.
                return Ok(None);
            }
        }
        let at = (offset - self.start) as usize;
        Ok(Some(&self.data[at..at + n]))
    }
}

/// Fills `buf` from `offset` as far as the file goes.
fn read_full_at<F: ReadAt + ?Sized>(file: &F, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match file.read_at(&mut buf[at..], offset + at as u64) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}
