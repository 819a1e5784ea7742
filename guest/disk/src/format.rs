#![doc = include_str!("../FORMAT.md")]

use std::fmt;

use crate::events::{Channel, Ending, Outcome, Reason, Run};

mod scan;

pub use scan::{Found, ReadAt, Scan, Stretch, scan, scan_following, scan_records};

/// The first bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"EXECDSEG";
/// The format version this crate writes. It reads versions 1 and 2 too,
/// whose zero bytes read as "no partial pieces" and "no stored reason".
pub const VERSION: u32 = 3;
/// Bytes of a file header.
pub const FILE_HEADER_LEN: usize = 32;
/// Bytes of a record header.
pub const RECORD_HEADER_LEN: usize = 32;
/// Bytes of one encoded run.
const RUN_LEN: usize = 16;
/// Bytes of an ending body before its message.
const ENDING_FIXED_LEN: usize = 28;

const KIND_LINES: u8 = 1;
const KIND_ENDING: u8 = 2;

/// Why bytes are not a valid segment or record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer bytes than the structure needs.
    Short,
    /// Not a segment file of this version.
    NotASegment,
    /// A checksum does not match.
    Checksum,
    /// Fields that contradict each other or the format.
    Invalid(&'static str),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Short => f.write_str("cut short"),
            FormatError::NotASegment => f.write_str("not a segment file of version 1 or 2"),
            FormatError::Checksum => f.write_str("checksum mismatch"),
            FormatError::Invalid(why) => write!(f, "invalid: {why}"),
        }
    }
}

impl std::error::Error for FormatError {}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The checksum of a file's header and records, by its format version:
/// CRC-32 in version 1, the low 32 bits of XXH3-64 in version 2.
///
/// Version 2 changed it for speed in WebAssembly: CRC-32 without a
/// carry-less multiply instruction (wasm has none) ran at about 1 GB/s
/// and took 4% of the host's CPU time while `seq 1 2000000` streamed,
/// against under 1% for XXH3 (perf samples of the guest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// Version 1.
    Crc32,
    /// Versions 2 and 3, 3 being the one written.
    Xxh3Low32,
}

impl Checksum {
    /// The checksum of the files this crate writes: [`VERSION`]'s.
    pub const WRITTEN: Checksum = match Checksum::of_version(VERSION) {
        Some(checksum) => checksum,
        None => panic!("VERSION has no checksum"),
    };

    const fn of_version(version: u32) -> Option<Checksum> {
        match version {
            1 => Some(Checksum::Crc32),
            2 | 3 => Some(Checksum::Xxh3Low32),
            _ => None,
        }
    }

    /// The checksum of `bytes`.
    pub fn of(self, bytes: &[u8]) -> u32 {
        match self {
            Checksum::Crc32 => crc32fast::hash(bytes),
            // The low half, as zstd's frame checksum takes XXH64's.
            Checksum::Xxh3Low32 => xxhash_rust::xxh3::xxh3_64(bytes) as u32,
        }
    }

    fn hasher(self) -> Hasher {
        match self {
            Checksum::Crc32 => Hasher::Crc32(crc32fast::Hasher::new()),
            Checksum::Xxh3Low32 => Hasher::Xxh3(Box::default()),
        }
    }
}

/// A checksum over bytes that arrive in pieces.
enum Hasher {
    Crc32(crc32fast::Hasher),
    Xxh3(Box<xxhash_rust::xxh3::Xxh3Default>),
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(bytes),
            Hasher::Xxh3(h) => h.update(bytes),
        }
    }

    fn finish(self) -> u32 {
        match self {
            Hasher::Crc32(h) => h.finalize(),
            Hasher::Xxh3(h) => h.digest() as u32,
        }
    }
}

/// What a segment file's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Eid of the first line the file holds.
    pub first_eid: u64,
    /// Text bytes logged before that line.
    pub text_offset: u64,
}

impl FileHeader {
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        self.encode_for(Checksum::WRITTEN)
    }

    /// The header of a file whose records carry `checksum`: of the
    /// version written, or version 1 for CRC-32 (a trim copies records
    /// as they are, under a new header).
    pub fn encode_for(&self, checksum: Checksum) -> [u8; FILE_HEADER_LEN] {
        let version = match checksum {
            Checksum::Crc32 => 1,
            Checksum::Xxh3Low32 => VERSION,
        };
        let mut out = [0; FILE_HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&version.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_eid.to_le_bytes());
        out[24..32].copy_from_slice(&self.text_offset.to_le_bytes());
        let sum = checksum.of(&out[16..]);
        out[12..16].copy_from_slice(&sum.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<FileHeader, FormatError> {
        FileHeader::decode_versioned(bytes).map(|(header, _)| header)
    }

    /// Decodes a header of any version this crate reads, with the
    /// checksum its file's records carry.
    pub fn decode_versioned(bytes: &[u8]) -> Result<(FileHeader, Checksum), FormatError> {
        let bytes = bytes.get(..FILE_HEADER_LEN).ok_or(FormatError::Short)?;
        let checksum = Checksum::of_version(u32_at(bytes, 8))
            .filter(|_| bytes[..8] == MAGIC)
            .ok_or(FormatError::NotASegment)?;
        if checksum.of(&bytes[16..]) != u32_at(bytes, 12) {
            return Err(FormatError::Checksum);
        }
        let header = FileHeader {
            first_eid: u64_at(bytes, 16),
            text_offset: u64_at(bytes, 24),
        };
        Ok((header, checksum))
    }
}

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Lines,
    Ending,
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: Kind,
    /// Eid of the first line, or of the terminal event.
    pub first_eid: u64,
    pub lines: u32,
    pub runs: u32,
    pub text_len: u32,
    pub body_len: u32,
    crc: u32,
}

impl RecordHeader {
    /// Decodes and checks a header's fields (not yet its checksum, which
    /// covers the whole record after the checksum's own 4 bytes, body
    /// included, and is checked as the body is read: see `read_body`).
    pub fn decode(bytes: &[u8]) -> Result<RecordHeader, FormatError> {
        let bytes = bytes.get(..RECORD_HEADER_LEN).ok_or(FormatError::Short)?;
        let kind = match bytes[8] {
            KIND_LINES => Kind::Lines,
            KIND_ENDING => Kind::Ending,
            _ => return Err(FormatError::Invalid("unknown record kind")),
        };
        if bytes[9..12] != [0, 0, 0] {
            return Err(FormatError::Invalid("reserved bytes are not zero"));
        }
        let header = RecordHeader {
            kind,
            first_eid: u64_at(bytes, 16),
            lines: u32_at(bytes, 12),
            runs: u32_at(bytes, 24),
            text_len: u32_at(bytes, 28),
            body_len: u32_at(bytes, 4),
            crc: u32_at(bytes, 0),
        };
        match kind {
            Kind::Lines => {
                let body = 4 * u64::from(header.lines)
                    + RUN_LEN as u64 * u64::from(header.runs)
                    + u64::from(header.text_len);
                if header.lines == 0 || header.runs == 0 || body != u64::from(header.body_len) {
                    return Err(FormatError::Invalid("lines record sizes do not add up"));
                }
            }
            Kind::Ending => {
                if header.lines != 0 || header.runs != 0 || header.text_len != 0 {
                    return Err(FormatError::Invalid("ending record with line counts"));
                }
                if (header.body_len as usize) < ENDING_FIXED_LEN {
                    return Err(FormatError::Invalid("ending record too short"));
                }
            }
        }
        Ok(header)
    }

    /// Bytes of the whole record, header included.
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.body_len)
    }

    /// Eid after the record's last event.
    pub fn end_eid(&self) -> u64 {
        // Saturating: the header may come from a damaged file.
        match self.kind {
            Kind::Lines => self.first_eid.saturating_add(u64::from(self.lines)),
            Kind::Ending => self.first_eid.saturating_add(1),
        }
    }
}

/// Appends a lines record holding a batch's columns to `out`.
pub fn encode_lines(out: &mut Vec<u8>, first_eid: u64, lens: &[u32], runs: &[Run], text: &[u8]) {
    let start = out.len();
    let body_len = 4 * lens.len() + RUN_LEN * runs.len() + text.len();
    out.reserve(RECORD_HEADER_LEN + body_len);
    push_header(
        out,
        KIND_LINES,
        first_eid,
        [lens.len(), runs.len(), text.len(), body_len],
    );
    push_lens(out, lens);
    for run in runs {
        out.extend_from_slice(&run.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&run.lines.to_le_bytes());
        out.extend_from_slice(&[channel_byte(run.channel), u8::from(run.partial), 0, 0]);
    }
    out.extend_from_slice(text);
    seal(out, start);
}

/// Appends the lengths column: on a little-endian machine (wasm32, x86,
/// most ARM) the column's memory is its encoding, so it is one copy rather
/// than one push per line.
#[cfg(target_endian = "little")]
fn push_lens(out: &mut Vec<u8>, lens: &[u32]) {
    out.extend_from_slice(bytemuck::cast_slice(lens));
}

#[cfg(not(target_endian = "little"))]
fn push_lens(out: &mut Vec<u8>, lens: &[u32]) {
    for len in lens {
        out.extend_from_slice(&len.to_le_bytes());
    }
}

/// Appends an ending record for the terminal event `eid` to `out`.
pub fn encode_ending(out: &mut Vec<u8>, eid: u64, ending: &Ending) {
    let start = out.len();
    let (outcome, exit_code, message) = match &ending.outcome {
        Outcome::Completed => (0u8, 0i32, ""),
        Outcome::Failed { exit_code, message } => (1, *exit_code, message.as_str()),
        Outcome::HostRestarted => (2, -1, ""),
        Outcome::HostShutdown => (3, -1, ""),
    };
    push_header(
        out,
        KIND_ENDING,
        eid,
        [0, 0, 0, ENDING_FIXED_LEN + message.len()],
    );
    // Reason and signal sit in bytes that older writers left zero, so a
    // zero reason reads as the one the outcome implies.
    out.extend_from_slice(&[outcome, ending.reason.code(), ending.signal.unwrap_or(0), 0]);
    out.extend_from_slice(&exit_code.to_le_bytes());
    out.extend_from_slice(&ending.execution_ms.to_le_bytes());
    out.extend_from_slice(&ending.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message.as_bytes());
    seal(out, start);
}

/// Writes a record header with a zero checksum; `[lines, runs, text, body]`.
fn push_header(out: &mut Vec<u8>, kind: u8, first_eid: u64, sizes: [usize; 4]) {
    let [lines, runs, text, body] = sizes.map(|n| n as u32);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&body.to_le_bytes());
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&lines.to_le_bytes());
    out.extend_from_slice(&first_eid.to_le_bytes());
    out.extend_from_slice(&runs.to_le_bytes());
    out.extend_from_slice(&text.to_le_bytes());
}

/// Fills in the checksum of the record that starts at `start` of `out`.
fn seal(out: &mut [u8], start: usize) {
    let sum = Checksum::WRITTEN.of(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&sum.to_le_bytes());
}

fn channel_byte(channel: Channel) -> u8 {
    match channel {
        Channel::Stdout => 0,
        Channel::Stderr => 1,
    }
}

/// Checks that a record's runs are well formed and cover its lines.
fn check_runs(header: &RecordHeader, runs: &[u8]) -> Result<(), FormatError> {
    let mut covered = 0u64;
    for run in runs.chunks_exact(RUN_LEN) {
        if run[12] > 1 || run[13] > 1 || u32_at(run, 8) == 0 {
            return Err(FormatError::Invalid("bad run"));
        }
        covered += u64::from(u32_at(run, 8));
    }
    if covered != u64::from(header.lines) {
        return Err(FormatError::Invalid("runs do not cover the lines"));
    }
    Ok(())
}

/// The columns of a lines record, borrowed from its bytes.
pub struct LinesBody<'a> {
    lens: &'a [u8],
    runs: &'a [u8],
    /// The lines' texts, one after another.
    pub text: &'a [u8],
}

impl<'a> LinesBody<'a> {
    /// Splits a record (header and body, its checksum already checked)
    /// into its columns and checks the runs.
    pub fn parse(header: &RecordHeader, record: &'a [u8]) -> Result<LinesBody<'a>, FormatError> {
        let body = record
            .get(RECORD_HEADER_LEN..header.record_len() as usize)
            .ok_or(FormatError::Short)?;
        let lens_len = 4 * header.lines as usize;
        let runs_len = RUN_LEN * header.runs as usize;
        let (lens, rest) = body.split_at_checked(lens_len).ok_or(FormatError::Short)?;
        let (runs, text) = rest.split_at_checked(runs_len).ok_or(FormatError::Short)?;
        check_runs(header, runs)?;
        Ok(LinesBody { lens, runs, text })
    }

    /// Splits the columns of a lines record that come before its text
    /// (`columns`: the [`LinesBody::columns_len`] bytes after the record
    /// header), checking the runs and that the lengths add up to the
    /// header's text length. The text stays where it is: the result's
    /// `text` is empty, and line text starts [`LinesBody::text_start`]
    /// bytes into the record.
    pub fn parse_columns(
        header: &RecordHeader,
        columns: &'a [u8],
    ) -> Result<LinesBody<'a>, FormatError> {
        let lens_len = 4 * header.lines as usize;
        let columns = columns
            .get(..LinesBody::columns_len(header))
            .ok_or(FormatError::Short)?;
        let (lens, runs) = columns.split_at(lens_len);
        check_runs(header, runs)?;
        let body = LinesBody {
            lens,
            runs,
            text: &[],
        };
        let text: u64 = body.lens_from(0).map(u64::from).sum();
        if text != u64::from(header.text_len) {
            return Err(FormatError::Invalid(
                "line lengths do not add up to the text",
            ));
        }
        Ok(body)
    }

    /// Bytes of a lines record's columns before its text.
    pub fn columns_len(header: &RecordHeader) -> usize {
        4 * header.lines as usize + RUN_LEN * header.runs as usize
    }

    /// Where a lines record's text starts, in bytes from the record's start.
    pub fn text_start(header: &RecordHeader) -> u64 {
        (RECORD_HEADER_LEN + LinesBody::columns_len(header)) as u64
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.lens.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// The lengths of lines `from..`, in order.
    pub fn lens_from(&self, from: usize) -> impl Iterator<Item = u32> + 'a {
        self.lens_of(from, self.len())
    }

    /// The lengths of lines `from..to` (clamped to the record), in order.
    /// The iterator knows its length, so `Vec::extend` copies it in one
    /// pass without a capacity check per line.
    pub fn lens_of(&self, from: usize, to: usize) -> impl ExactSizeIterator<Item = u32> + 'a {
        let to = to.min(self.len());
        let lens: &'a [u8] = self.lens.get(from * 4..to * 4).unwrap_or_default();
        lens.chunks_exact(4)
            .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]))
    }

    /// The runs, in order (checked by [`LinesBody::parse`]).
    pub fn runs(&self) -> impl Iterator<Item = Run> + 'a {
        self.runs.chunks_exact(RUN_LEN).map(|run| Run {
            channel: if run[12] == 0 {
                Channel::Stdout
            } else {
                Channel::Stderr
            },
            timestamp_ms: u64_at(run, 0),
            lines: u32_at(run, 8),
            partial: run[13] == 1,
        })
    }
}

/// Decodes the terminal event of a checked ending record.
pub fn decode_ending(header: &RecordHeader, record: &[u8]) -> Result<Ending, FormatError> {
    let body = record
        .get(RECORD_HEADER_LEN..header.record_len() as usize)
        .ok_or(FormatError::Short)?;
    let message_len = u32_at(body, 24) as usize;
    let message = body
        .get(ENDING_FIXED_LEN..)
        .filter(|m| m.len() == message_len)
        .and_then(|m| std::str::from_utf8(m).ok())
        .ok_or(FormatError::Invalid("ending message"))?;
    let outcome = match body[0] {
        0 => Outcome::Completed,
        1 => Outcome::Failed {
            exit_code: i32::from_le_bytes([body[4], body[5], body[6], body[7]]),
            message: message.to_string(),
        },
        2 => Outcome::HostRestarted,
        3 => Outcome::HostShutdown,
        _ => return Err(FormatError::Invalid("unknown outcome")),
    };
    let reason = match body[1] {
        0 => Reason::implied_by(&outcome),
        code => Reason::from_code(code).ok_or(FormatError::Invalid("unknown reason"))?,
    };
    Ok(Ending {
        outcome,
        reason,
        signal: (body[2] != 0).then_some(body[2]),
        execution_ms: u64_at(body, 8),
        timestamp_ms: u64_at(body, 16),
    })
}
