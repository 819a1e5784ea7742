//! Text a policy left in files of its directory (`text-in-files` in
//! `wit/`): the rules an answer's spans must keep, and the host reading
//! them.
//!
//! A policy that logs to disk answers a replay with where each batch's text
//! lies in its segment files instead of the text itself, so the bytes go
//! from the page cache to the host in one read rather than being copied
//! into the sandbox and out again. The policy is not trusted: a span names
//! its file by number, and the host builds the name, so nothing outside
//! the command's directory can be named; the file is opened without
//! following a symbolic link or blocking on a FIFO, and must be a regular
//! file; and an answer may ask for only so many spans and bytes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use execd_policy_core::TextSpan as Names;

use super::wit::{Events, TextSpan};
use crate::config::MAX_LINE_BYTES_RANGE;

/// Text one answer may leave in files beyond `max-bytes`: one line of the
/// longest kind a host can log, since a read always returns at least one
/// event.
const LONGEST_LINE: u64 = *MAX_LINE_BYTES_RANGE.end() as u64;

/// The bytes of `events`' text, inline and in files, if the spans keep the
/// rules of `wit/` for an answer to `read(.., max_bytes)`; why not if not.
pub fn text_len(events: &Events, has_directory: bool, max_bytes: u32) -> Result<u64, String> {
    let spans = &events.text_in_files;
    if spans.is_empty() {
        return Ok(events.batch.text.len() as u64);
    }
    if !has_directory {
        return Err("it left text in files, but it has no directory".into());
    }
    if spans.len() > events.batch.lens.len() {
        return Err(format!(
            "it left {} text spans for {} lines",
            spans.len(),
            events.batch.lens.len()
        ));
    }
    if spans.iter().any(|s| s.len == 0) {
        return Err("it left an empty text span".into());
    }
    let in_files: u64 = spans.iter().map(|s| u64::from(s.len)).sum();
    let most = u64::from(max_bytes) + LONGEST_LINE;
    if in_files > most {
        return Err(format!(
            "it left {in_files} bytes of text in files for one read, more than the {most} a read may return"
        ));
    }
    Ok(events.batch.text.len() as u64 + in_files)
}

/// Why the text of some span could not be read, and how many of the
/// answer's text bytes (inline and in files) came before that span.
#[derive(Debug)]
pub struct Unreadable {
    pub error: io::Error,
    pub text_before: u64,
}

/// Reads the spans' bytes, in order, onto the end of the batch's text and
/// empties `text_in_files`. The spans were checked by [`text_len`].
///
/// The reads run on the calling thread, as the policy's own file reads do
/// (see `allow_blocking_current_thread` in the engine): a page-cache read
/// of a few hundred KiB, under the same lock as the call that asked for it,
/// so that no append can drop the file in between.
pub fn read_into(dir: &Path, events: &mut Events) -> Result<(), Unreadable> {
    let spans = std::mem::take(&mut events.text_in_files);
    let text = &mut events.batch.text;
    text.reserve(spans.iter().map(|s| s.len as usize).sum());
    let mut open: Option<(u64, File)> = None;
    for span in &spans {
        let at = text.len();
        if let Err(error) = read_span(dir, span, &mut open, text) {
            text.truncate(at);
            return Err(Unreadable {
                error,
                text_before: at as u64,
            });
        }
    }
    Ok(())
}

/// Appends one span's bytes to `text`, through `open` when it holds the
/// span's file (spans of one answer mostly share a file), else opening it.
fn read_span(
    dir: &Path,
    span: &TextSpan,
    open: &mut Option<(u64, File)>,
    text: &mut Vec<u8>,
) -> io::Result<()> {
    let file = match open.take() {
        Some((number, file)) if number == span.file => file,
        _ => open_in(dir, span)?,
    };
    let at = text.len();
    text.resize(at + span.len as usize, 0);
    let read = file.read_exact_at(&mut text[at..], span.offset);
    *open = Some((span.file, file));
    read.map_err(|e| with_name(e, span))
}

/// Opens the span's file for reading: a regular file directly in `dir`,
/// never through a symbolic link, and without blocking on a FIFO.
fn open_in(dir: &Path, span: &TextSpan) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(Names::file_name(span.file)))
        .map_err(|e| with_name(e, span))?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            Names::file_name(span.file)
        )));
    }
    Ok(file)
}

fn with_name(error: io::Error, span: &TextSpan) -> io::Error {
    io::Error::new(
        error.kind(),
        format!(
            "{} bytes at {} of {}: {error}",
            span.len,
            span.offset,
            Names::file_name(span.file)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::wit::Batch;

    fn events(text: &[u8], lines: usize, spans: &[(u64, u64, u32)]) -> Events {
        Events {
            first_eid: 1,
            batch: Batch {
                lens: vec![0; lines],
                runs: Vec::new(),
                text: text.to_vec(),
            },
            text_in_files: spans
                .iter()
                .map(|&(file, offset, len)| TextSpan { file, offset, len })
                .collect(),
            ending: None,
        }
    }

    #[test]
    fn spans_need_a_directory_lines_and_a_bound() {
        assert_eq!(text_len(&events(b"ab", 1, &[(1, 0, 3)]), true, 100), Ok(5));
        let err = text_len(&events(b"", 1, &[(1, 0, 1)]), false, 100).unwrap_err();
        assert!(err.contains("no directory"), "{err}");
        let err = text_len(&events(b"", 1, &[(1, 0, 1), (1, 1, 1)]), true, 100).unwrap_err();
        assert!(err.contains("2 text spans for 1 lines"), "{err}");
        let err = text_len(&events(b"", 1, &[(1, 0, 0)]), true, 100).unwrap_err();
        assert!(err.contains("empty"), "{err}");
        // At most max-bytes plus the longest line, exactly.
        let most = 100 + LONGEST_LINE;
        let at_most = events(b"", 1, &[(1, 0, most as u32)]);
        assert_eq!(text_len(&at_most, true, 100), Ok(most));
        let over = events(b"", 2, &[(1, 0, most as u32), (1, 0, 1)]);
        let err = text_len(&over, true, 100).unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }

    #[test]
    fn reads_spans_in_order_after_the_inline_text() {
        let dir = tempdir();
        std::fs::write(dir.join("0000000001.seg"), b"0123456789").unwrap();
        std::fs::write(dir.join("0000000002.seg"), b"abcdef").unwrap();
        let mut e = events(b">", 4, &[(1, 2, 3), (1, 8, 2), (2, 0, 1), (1, 0, 1)]);
        read_into(&dir, &mut e).unwrap();
        assert_eq!(e.batch.text, b">23489a0");
        assert!(e.text_in_files.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_links_fifos_and_short_files_and_says_where() {
        let dir = tempdir();
        std::fs::write(dir.join("0000000001.seg"), b"abc").unwrap();
        // A link to a file that exists and has bytes: followed, it would read.
        std::fs::write(dir.join("target"), b"secret").unwrap();
        std::os::unix::fs::symlink(dir.join("target"), dir.join("0000000002.seg")).unwrap();
        let fifo = std::ffi::CString::new(dir.join("0000000003.seg").to_str().unwrap()).unwrap();
        // SAFETY: a valid, NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        for (file, len) in [(1, 4), (2, 1), (3, 1), (4, 1)] {
            let mut e = events(b"xy", 2, &[(1, 0, 1), (file, 0, len)]);
            let err = read_into(&dir, &mut e).unwrap_err();
            let name = Names::file_name(file);
            assert!(
                err.error.to_string().contains(&name),
                "{name}: {}",
                err.error
            );
            // The inline text and the first span were read: what failed
            // starts after them.
            assert_eq!(err.text_before, 3, "{name}");
            assert!(
                !e.batch.text.ends_with(b"s"),
                "nothing of the link's target"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempdir() -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("execd-spans-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
