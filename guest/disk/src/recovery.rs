//! Reopening the directory a previous log left (a host restart): which
//! files to trust, where their whole records end, and what is lost, as
//! the index of a log that serves what survives.
//!
//! Nothing in the directory is trusted. Segment files are taken in
//! sequence order, each scanned from its start with every checksum
//! verified (in pieces: a record of any size costs a bounded buffer), and
//! used only while their eids follow on:
//! - a bad record costs the damaged records and no more: the scan
//!   resynchronises on the next whole record that can be trusted (see
//!   `format::scan`), the eids in between are a gap with reason
//!   `damaged`, and the file is split there into two parts of the index,
//!   so that reads never walk over the damage;
//! - a file's whole records are kept up to a bad one that nothing trusted
//!   follows; the rest of it is not used, and the eids up to the next
//!   file's first are a gap with reason `damaged`;
//! - a file whose header is damaged is used when its records follow on
//!   from the files before (see `format::scan_following`), and sealed:
//!   the ending goes to a new file;
//! - a file with a bad header whose records do not follow on, or whose
//!   eids go back over the log's, is skipped (left as it is, counted on
//!   disk); so is anything after the ending, and any file not named like
//!   a segment;
//! - eids missing before the first file are a `budget` gap (the budget
//!   dropped those segments), between files an `io` one (their writes
//!   failed), unless something damaged lies between: then `damaged`;
//! - when the log has no ending, the last file is cut after its last
//!   whole record (a torn last write) and opened for the ending to follow;
//!   a last file too short for its header (torn as it was made) is removed;
//! - a segment's file left under a trim's temporary name (the host died
//!   in the middle of a trim, the segment's own file still whole) is
//!   removed.
//!
//! What was cut or skipped is said in words, for the host's log.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::events::{BUDGET, DAMAGED, Ending, IO};
use crate::file::SegmentFile;
use crate::format::{self, Checksum, FILE_HEADER_LEN, FileHeader, Kind, Scan, Stretch};
use crate::index::Index;
use crate::segment::Segment;

/// Largest eid, text offset and sequence number a file may claim: far
/// beyond any real log, and far enough below `u64::MAX` that no sum of
/// them overflows.
const MAX_NUMBER: u64 = 1 << 62;
/// Damage reports kept; beyond, they are counted.
const MAX_REPORTS: usize = 32;

/// The log a directory holds.
pub struct Recovered {
    pub index: Index,
    /// The terminal event and its eid, when the log has one.
    pub ending: Option<(u64, Ending)>,
    /// The sequence number after every segment file found.
    pub next_seq: u64,
    /// What was cut or skipped, in words.
    pub damage: Vec<String>,
}

/// Reads what the files in `dir` hold (see the module docs). An absent
/// or empty directory is an empty log; one with segment files none of
/// which can be used is an error.
pub fn recover(dir: &Path) -> Result<Recovered, String> {
    let listing = list(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut damage = Damage::default();
    let mut unindexed = 0;
    for other in &listing.others {
        if other.regular && is_trim_leftover(&other.name) {
            // A trim the dead host did not finish: its segment is whole
            // under the segment's own name.
            match fs::remove_file(dir.join(&other.name)) {
                Ok(()) => {
                    damage.report(format!("{}: an unfinished trim: removed", other.name));
                    continue;
                }
                Err(e) => damage.report(format!(
                    "{}: an unfinished trim, cannot be removed: {e}",
                    other.name
                )),
            }
            unindexed += other.bytes;
            continue;
        }
        let what = if other.regular {
            "not named like a segment"
        } else {
            "not a regular file"
        };
        damage.report(format!("{}: {what}: left alone", other.name));
        unindexed += other.bytes;
    }
    let next_seq = listing
        .segments
        .last()
        .map_or(1, |s| s.seq.saturating_add(1));
    let mut walk = Walk::default();
    let count = listing.segments.len();
    for (i, file) in listing.segments.into_iter().enumerate() {
        if i + 1 == count && file.bytes < FILE_HEADER_LEN as u64 && walk.ending.is_none() {
            // Torn as it was made, before its header was whole: it holds
            // nothing, and would stand in the way of the next file.
            match fs::remove_file(&file.path) {
                Ok(()) => damage.report(format!(
                    "{}: {} bytes, less than a header (torn as it was made): removed",
                    file.name, file.bytes
                )),
                Err(e) => {
                    damage.report(format!(
                        "{}: less than a header, and cannot be removed: {e}",
                        file.name
                    ));
                    unindexed += file.bytes;
                    walk.skipped += 1;
                }
            }
            continue;
        }
        if let Err(bytes) = walk.take(file, &mut damage) {
            unindexed += bytes;
        }
    }
    if walk.used == 0 && walk.skipped > 0 {
        return Err(format!(
            "no usable segment among {} files: {}",
            walk.skipped,
            damage.into_reports().join("; ")
        ));
    }
    let ending = walk.ending.clone();
    let mut index = walk.into_index(&mut damage);
    index.count_unindexed(unindexed);
    Ok(Recovered {
        index,
        ending,
        next_seq,
        damage: damage.into_reports(),
    })
}

/// Opens the last file for the ending that `finish` will write, cutting
/// off what follows its last whole record; if that fails the ending goes
/// to a new file.
fn open_for_ending(segment: &mut Segment, name: &str, damage: &mut Damage) {
    let torn = segment.file_bytes != segment.data_end;
    match segment.reopen_for_append() {
        Ok(()) if torn => damage.report(format!(
            "{name}: truncated to its last whole record, at byte {}",
            segment.data_end
        )),
        Ok(()) => {}
        Err(e) => damage.report(format!(
            "{name}: cannot be opened to append the ending ({e}); it goes to a new file"
        )),
    }
}

/// A segment file in the directory.
struct SegmentName {
    seq: u64,
    name: String,
    path: PathBuf,
    bytes: u64,
}

/// Anything else in the directory.
struct Other {
    name: String,
    regular: bool,
    /// Bytes it takes, for a regular file (0 for anything else).
    bytes: u64,
}

#[derive(Default)]
struct Listing {
    /// In sequence order.
    segments: Vec<SegmentName>,
    others: Vec<Other>,
}

/// What `dir` holds; an absent directory holds nothing.
fn list(dir: &Path) -> io::Result<Listing> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Listing::default()),
        Err(e) => return Err(e),
    };
    let mut listing = Listing::default();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Symbolic links, directories and devices are never segments:
        // reading one could block or never end.
        let is_file = entry.file_type()?.is_file();
        let bytes = if is_file { entry.metadata()?.len() } else { 0 };
        match sequence_number(&name) {
            Some(seq) if is_file => listing.segments.push(SegmentName {
                seq,
                path: entry.path(),
                name,
                bytes,
            }),
            _ => listing.others.push(Other {
                name,
                regular: is_file,
                bytes,
            }),
        }
    }
    listing.segments.sort_unstable_by_key(|s| s.seq);
    listing.others.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

/// The sequence number of a file named exactly as the log names its
/// segments.
fn sequence_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seq = digits.parse::<u64>().ok()?;
    (seq <= MAX_NUMBER && Segment::file_name(seq) == name).then_some(seq)
}

/// Whether `name` is the temporary name a trim writes a segment under.
fn is_trim_leftover(name: &str) -> bool {
    name.strip_suffix(".trim")
        .and_then(|digits| digits.parse::<u64>().ok())
        .is_some_and(|seq| seq <= MAX_NUMBER && Segment::trim_name(seq) == name)
}

/// What the log is made of, oldest first.
enum Part {
    /// Eids from the previous part's end up to `end_eid`, lost.
    Missing {
        end_eid: u64,
        text_end: u64,
        reason: &'static str,
        /// Whether `text_end` is known to be where their text ends.
        known: bool,
    },
    /// A file's whole records, or those of a part of it that damaged
    /// stretches split.
    Stored {
        segment: Segment,
        text_start: u64,
        end_eid: u64,
        text_end: u64,
        /// Whether it is the newest segment file in the directory.
        newest: bool,
        /// Whether it is of the version written: a record never joins a
        /// file of another version's checksum.
        current: bool,
        name: String,
    },
}

/// The files taken so far, in sequence order.
struct Walk {
    kept: Vec<Part>,
    /// Eid and text offset after what the kept parts hold.
    frontier: (u64, u64),
    ending: Option<(u64, Ending)>,
    /// Whether something lies between the frontier and the next file
    /// that was damaged (the rest of a cut file, a skipped file).
    damaged: bool,
    /// Whether the frontier's text offset is only a floor: a damaged
    /// stretch of unknown text came before it in its file (the next
    /// file's header says where the text really is).
    text_floor: bool,
    used: usize,
    skipped: usize,
}

impl Default for Walk {
    fn default() -> Self {
        Walk {
            kept: Vec::new(),
            frontier: (1, 0),
            ending: None,
            damaged: false,
            text_floor: false,
            used: 0,
            skipped: 0,
        }
    }
}

impl Walk {
    /// Takes the next file into the log if it can be trusted; `Err` with
    /// its bytes when it is skipped.
    fn take(&mut self, file: SegmentName, damage: &mut Damage) -> Result<(), u64> {
        if let Some((eid, _)) = self.ending {
            damage.report(format!(
                "{}: after the log's ending (eid {eid}): ignored",
                file.name
            ));
            return Err(file.bytes);
        }
        let (parts, scan) = match scan_file(&file, self.frontier) {
            Ok(scanned) => scanned,
            Err(e) => return Err(self.skip(&file, format!("unreadable ({e})"), damage)),
        };
        let FileHeader {
            first_eid,
            text_offset,
        } = scan.header;
        let (end_eid, end_text) = self.frontier;
        let follows = first_eid <= MAX_NUMBER
            && text_offset <= MAX_NUMBER
            && scan.end_eid <= MAX_NUMBER
            && scan.text_end <= MAX_NUMBER
            && if first_eid == end_eid && !self.text_floor {
                text_offset == end_text
            } else {
                first_eid >= end_eid && text_offset >= end_text
            };
        if !follows {
            let why = format!(
                "starts at eid {first_eid} (text offset {text_offset}) where the log is at \
                 eid {end_eid} (text offset {end_text})"
            );
            return Err(self.skip(&file, why, damage));
        }
        if first_eid > end_eid {
            let reason = if self.damaged {
                damage.report(format!(
                    "eids {end_eid} to {} are lost: a gap with reason `{DAMAGED}`",
                    first_eid - 1
                ));
                DAMAGED
            } else if self.used == 0 {
                BUDGET
            } else {
                IO
            };
            self.kept.push(Part::Missing {
                end_eid: first_eid,
                text_end: text_offset,
                reason,
                known: !self.text_floor,
            });
        }
        self.damaged = false;
        self.text_floor = false;
        if let Some(why) = &scan.header_damage {
            damage.report(format!(
                "{}: its header is damaged ({why}); its records follow on from eid {first_eid}: used",
                file.name
            ));
        }
        // A file whose header is damaged takes no more records: the
        // ending goes to a new file.
        let current = scan.checksum == Checksum::WRITTEN && scan.header_damage.is_none();
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            if let Some(stretch) = part.after.as_ref().filter(|s| s.first_eid == s.end_eid) {
                damage.report(format!(
                    "{}: bytes {} to {} are damaged ({}): they held no eid",
                    file.name, stretch.offset, stretch.end_offset, stretch.why
                ));
            } else if let Some(stretch) = &part.after {
                damage.report(format!(
                    "{}: bytes {} to {} are damaged ({}): eids {} to {} are a gap with reason `{DAMAGED}`",
                    file.name,
                    stretch.offset,
                    stretch.end_offset,
                    stretch.why,
                    stretch.first_eid,
                    stretch.end_eid - 1
                ));
                self.text_floor |= stretch.text_end.is_none();
                self.kept.push(Part::Missing {
                    end_eid: stretch.end_eid,
                    text_end: part.text_start,
                    reason: DAMAGED,
                    known: stretch.text_end.is_some(),
                });
            }
            self.kept.push(Part::Stored {
                segment: part.segment,
                text_start: part.text_start,
                end_eid: part.end.0,
                text_end: part.end.1,
                newest: i + 1 == count,
                current,
                name: file.name.clone(),
            });
        }
        if let Some(why) = &scan.cut {
            self.damaged = true;
            damage.report(format!(
                "{}: whole records end at byte {} of {} ({why}): the rest is not used",
                file.name, scan.valid_len, file.bytes
            ));
        }
        self.used += 1;
        self.frontier = (scan.end_eid, scan.text_end);
        self.ending = scan.ending;
        Ok(())
    }

    /// The index of what was taken; the last file is opened for the
    /// ending when the log has none.
    fn into_index(self, damage: &mut Damage) -> Index {
        let mut index = Index::default();
        let last = self.kept.len().checked_sub(1);
        for (i, part) in self.kept.into_iter().enumerate() {
            match part {
                Part::Missing {
                    end_eid,
                    text_end,
                    reason,
                    known,
                } => index.push_lost(end_eid, text_end, reason, known),
                Part::Stored {
                    mut segment,
                    text_start,
                    end_eid,
                    text_end,
                    newest,
                    current,
                    name,
                } => {
                    if Some(i) == last && newest && self.ending.is_none() {
                        open_for_ending(&mut segment, &name, damage);
                        if !current {
                            // Cut, but the ending goes to a new file.
                            segment.seal();
                        }
                    }
                    index.push_recovered(segment, text_start, (end_eid, text_end));
                }
            }
        }
        index
    }

    /// Skips a file that cannot be used; returns its bytes.
    fn skip(&mut self, file: &SegmentName, why: String, damage: &mut Damage) -> u64 {
        damage.report(format!("{}: {why}: skipped", file.name));
        self.damaged = true;
        self.skipped += 1;
        // The kept file before it is no longer the newest: the ending
        // will go to a new file after this one.
        if let Some(Part::Stored { newest, .. }) = self.kept.last_mut() {
            *newest = false;
        }
        file.bytes
    }
}

/// A file's whole records from its start or from the end of a damaged
/// stretch up to the next, counted in a segment (with its checkpoints).
struct FilePart {
    segment: Segment,
    /// The damaged stretch before it, if any.
    after: Option<Stretch>,
    /// Text offset of its first line.
    text_start: u64,
    /// Eid and text offset after its last line.
    end: (u64, u64),
}

/// Scans a segment file: what it holds, and its whole records counted
/// in one segment per stretch of them between damaged ones; only the
/// last counts the file's bytes.
fn scan_file(file: &SegmentName, follows: (u64, u64)) -> io::Result<(Vec<FilePart>, Scan)> {
    let opened = SegmentFile::open(&file.path)?;
    let len = opened.len()?;
    let mut parts = vec![FilePart {
        segment: Segment::recovered(file.seq, file.path.clone(), len),
        after: None,
        text_start: 0,
        end: (0, 0),
    }];
    let mut records = 0usize;
    let scan = format::scan_following(&opened, len, Some(follows), |found| {
        if let (Some(stretch), Some(last)) = (&found.after, parts.last_mut()) {
            let rest = last.segment.split_at(found.offset);
            parts.push(FilePart {
                segment: rest,
                after: Some(stretch.clone()),
                text_start: found.text_offset,
                end: (stretch.end_eid, found.text_offset),
            });
        }
        let Some(part) = parts.last_mut() else {
            return;
        };
        let rh = &found.header;
        let line = (rh.kind == Kind::Lines).then_some((rh.first_eid, found.text_offset));
        part.segment.found(rh.record_len(), line);
        part.end = (
            rh.first_eid + u64::from(rh.lines),
            found.text_offset + u64::from(rh.text_len),
        );
        if parts.len() == 1 {
            records += 1;
        }
    })?;
    for part in &mut parts {
        part.segment.checksum = scan.checksum;
    }
    let first = &mut parts[0];
    first.text_start = scan.header.text_offset;
    if records == 0 {
        first.end = (scan.header.first_eid, scan.header.text_offset);
        if parts.len() > 1 {
            // Damaged from its first record: nothing before the damage.
            parts.remove(0);
        }
    }
    Ok((parts, scan))
}

/// The reports of a reopen, a bounded number of them.
#[derive(Default)]
struct Damage {
    reports: Vec<String>,
    more: usize,
}

impl Damage {
    fn report(&mut self, what: String) {
        if self.reports.len() < MAX_REPORTS {
            self.reports.push(what);
        } else {
            self.more += 1;
        }
    }

    fn into_reports(mut self) -> Vec<String> {
        if self.more > 0 {
            self.reports.push(format!("and {} more", self.more));
        }
        self.reports
    }
}
