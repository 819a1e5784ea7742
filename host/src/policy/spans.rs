//! Text a policy left in files of its directory (`text-in-files` in
//! `wit/`): the rules a span must keep, and the host reading it.
//!
//! A policy that logs to disk answers a replay with where each batch's text
//! lies in its segment files instead of the text itself, so the bytes go
//! from the page cache to the host in one read rather than being copied
//! into the sandbox and out again. The policy is not trusted: a span names
//! a file directly in the command's directory and nothing else (no path,
//! no symbolic link, no device or FIFO), and an answer may ask for only so
//! many bytes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

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
    if let Some(bad) = spans.iter().find(|s| !plain_name(&s.file)) {
        return Err(format!(
            "text span file {:?} is not a plain file name in its directory",
            bad.file
        ));
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

/// Whether `name` names an entry of a directory and nothing else.
fn plain_name(name: &str) -> bool {
    (1..=255).contains(&name.len()) && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Reads the spans' bytes, in order, onto the end of the batch's text and
/// empties `text_in_files`. The spans were checked by [`text_len`].
///
/// The reads run on the calling thread, as the policy's own file reads do
/// (see `allow_blocking_current_thread` in the engine): a page-cache read
/// of a few hundred KiB, under the same lock as the call that asked for it,
/// so that no append can drop the file in between.
pub fn read_into(dir: &Path, events: &mut Events) -> io::Result<()> {
    let spans = std::mem::take(&mut events.text_in_files);
    let text = &mut events.batch.text;
    text.reserve(spans.iter().map(|s| s.len as usize).sum());
    let mut open: Option<(&str, File)> = None;
    for span in &spans {
        let file = match open.take() {
            Some((name, file)) if name == span.file => (name, file),
            _ => (span.file.as_str(), open_in(dir, span)?),
        };
        let at = text.len();
        text.resize(at + span.len as usize, 0);
        file.1
            .read_exact_at(&mut text[at..], span.offset)
            .map_err(|e| with_name(e, span))?;
        open = Some(file);
    }
    Ok(())
}

/// Opens the span's file for reading: a regular file directly in `dir`,
/// never through a symbolic link, and without blocking on a FIFO.
fn open_in(dir: &Path, span: &TextSpan) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(&span.file))
        .map_err(|e| with_name(e, span))?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            span.file
        )));
    }
    Ok(file)
}

fn with_name(error: io::Error, span: &TextSpan) -> io::Error {
    io::Error::new(
        error.kind(),
        format!(
            "{} bytes at {} of {}: {error}",
            span.len, span.offset, span.file
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::wit::Batch;

    fn events(text: &[u8], spans: &[(&str, u64, u32)]) -> Events {
        Events {
            first_eid: 1,
            batch: Batch {
                lens: Vec::new(),
                runs: Vec::new(),
                text: text.to_vec(),
            },
            text_in_files: spans
                .iter()
                .map(|&(file, offset, len)| TextSpan {
                    file: file.into(),
                    offset,
                    len,
                })
                .collect(),
            ending: None,
        }
    }

    #[test]
    fn names_must_be_plain() {
        for bad in ["", ".", "..", "a/b", "../x", "/etc/passwd", "a\0b"] {
            let err = text_len(&events(b"", &[(bad, 0, 1)]), true, 100).unwrap_err();
            assert!(err.contains("plain file name"), "{bad:?}: {err}");
        }
        assert_eq!(
            text_len(&events(b"ab", &[("0000000001.seg", 0, 3)]), true, 100),
            Ok(5)
        );
        let long = "x".repeat(256);
        assert!(text_len(&events(b"", &[(&long, 0, 1)]), true, 100).is_err());
    }

    #[test]
    fn spans_need_a_directory_and_a_bound() {
        let err = text_len(&events(b"", &[("f", 0, 1)]), false, 100).unwrap_err();
        assert!(err.contains("no directory"), "{err}");
        let huge = events(b"", &[("f", 0, u32::MAX), ("f", 0, u32::MAX)]);
        let err = text_len(&huge, true, 1 << 20).unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }

    #[test]
    fn reads_spans_in_order_after_the_inline_text() {
        let dir = tempdir();
        std::fs::write(dir.join("a"), b"0123456789").unwrap();
        std::fs::write(dir.join("b"), b"abcdef").unwrap();
        let mut e = events(b">", &[("a", 2, 3), ("a", 8, 2), ("b", 0, 1), ("a", 0, 1)]);
        read_into(&dir, &mut e).unwrap();
        assert_eq!(e.batch.text, b">23489a0");
        assert!(e.text_in_files.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_links_fifos_and_short_files() {
        let dir = tempdir();
        std::fs::write(dir.join("short"), b"abc").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link")).unwrap();
        let fifo = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a valid, NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        for (name, len) in [("short", 4), ("link", 1), ("fifo", 1), ("missing", 1)] {
            let mut e = events(b"", &[(name, 0, len)]);
            let err = read_into(&dir, &mut e).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
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
