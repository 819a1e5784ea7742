//! The raw output of a background command, kept for `/logs`: the contract
//! promises the exact bytes, which the events (lossy UTF-8, split into
//! lines) do not keep.
//!
//! The bytes are bounded by the command's disk budget: they live in chunk
//! files named by the absolute offset of their first byte, in a private
//! directory of their own, and the oldest chunks go when the newest bytes
//! need the room. Offsets stay absolute and are never reused, so a client
//! holding a cursor learns, from the head cursor, exactly what it lost.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::budget::Share;
use crate::state_dir::private_dir_builder;

/// Smallest chunk file; a budget smaller than a few of these keeps less.
const MIN_CHUNK: u64 = 4096;
/// Chunks a budget is cut into: dropping one frees an eighth of it.
const CHUNKS_PER_BUDGET: u64 = 8;

pub struct OutputFile {
    dir: PathBuf,
    state: Mutex<State>,
    /// This store's bytes, against the host's budget.
    share: Share,
    /// Left in place when dropped: the host is stopping and keeps its
    /// state directory for the next one.
    keep: AtomicBool,
}

struct State {
    /// Kept chunks, oldest first; their bytes are contiguous, from
    /// `head()` to `tail`.
    chunks: VecDeque<Chunk>,
    /// The newest chunk, open for appending while the command runs.
    writer: Option<File>,
    /// Absolute offset of the next byte.
    tail: u64,
    /// Most bytes kept.
    limit: u64,
    closed: bool,
    /// A write failed (disk full): said once in the host's log.
    warned: bool,
}

struct Chunk {
    start: u64,
    len: u64,
}

/// What a `/logs` answer sends: the kept range, and open handles on the
/// chunks it covers (a chunk dropped meanwhile stays readable through its
/// handle).
pub struct ReadPlan {
    /// Absolute offset of the oldest byte kept.
    pub head: u64,
    /// Absolute offset of the end.
    pub tail: u64,
    /// `(file, offset in the file, bytes)` to send, in order.
    pub pieces: Vec<(File, u64, u64)>,
}

/// Chunk size when streaming a background command's output.
const SEND_CHUNK: usize = 256 * 1024;

impl ReadPlan {
    /// Sends the pieces' bytes down `tx` in chunks, blocking (run it on a
    /// blocking thread); stops early when the receiver is gone or a read
    /// fails.
    pub fn send(self, tx: &tokio::sync::mpsc::Sender<bytes::Bytes>) {
        use std::os::unix::fs::FileExt;
        for (file, mut offset, len) in self.pieces {
            let end = offset + len;
            while offset < end {
                let mut chunk = vec![0; SEND_CHUNK.min((end - offset) as usize)];
                match file.read_at(&mut chunk, offset) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        chunk.truncate(n);
                        offset += n as u64;
                        if tx.blocking_send(bytes::Bytes::from(chunk)).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

impl ReadPlan {
    /// The pieces' bytes in one buffer, blocking (run it on a blocking
    /// thread). A chunk cut short (the disk lost it) ends the bytes there:
    /// what comes back is contiguous from the plan's start.
    pub fn read_all(self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let total: u64 = self.pieces.iter().map(|(_, _, len)| len).sum();
        let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for (file, offset, len) in self.pieces {
            let start = out.len();
            out.resize(start + len as usize, 0);
            let mut read = 0;
            while read < len as usize {
                match file.read_at(&mut out[start + read..], offset + read as u64)? {
                    0 => {
                        out.truncate(start + read);
                        return Ok(out);
                    }
                    n => read += n,
                }
            }
        }
        Ok(out)
    }
}

impl OutputFile {
    /// A store at `dir` (created here, 0700) keeping at most `limit` bytes.
    pub fn create(dir: PathBuf, limit: u64, share: Share) -> std::io::Result<OutputFile> {
        private_dir_builder(false).create(&dir)?;
        Ok(OutputFile {
            dir,
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                writer: None,
                tail: 0,
                limit,
                closed: false,
                warned: false,
            }),
            share,
            keep: AtomicBool::new(false),
        })
    }

    /// The store a previous host left at `dir` (its command has ended):
    /// the chunk files there, named by offset. Only a contiguous run of
    /// them can be served, so the newest is kept: everything before a hole
    /// (or a file that is not a chunk) goes, and a chunk cut short (a crash
    /// mid-write) ends the run. Then trimmed to `limit`.
    pub fn reopen(dir: PathBuf, limit: u64, share: Share) -> std::io::Result<OutputFile> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let start = name
                .to_str()
                .filter(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u64>().ok());
            let meta = entry.metadata()?;
            match start {
                Some(start) if meta.is_file() => found.push(Chunk {
                    start,
                    len: meta.len(),
                }),
                _ => {
                    tracing::warn!(path = %entry.path().display(), "not an output chunk, left alone")
                }
            }
        }
        found.sort_by_key(|c| c.start);
        // The newest contiguous run: walk back from the last chunk.
        let mut first = found.len();
        while first > 0 {
            let chunk = &found[first - 1];
            let joins = found
                .get(first)
                .is_none_or(|next| chunk.start.checked_add(chunk.len) == Some(next.start));
            if !joins {
                break;
            }
            first -= 1;
        }
        for lost in found.drain(..first) {
            tracing::warn!(dir = %dir.display(), offset = lost.start, "output chunk before a hole dropped");
            let _ = std::fs::remove_file(chunk_path(&dir, lost.start));
        }
        let tail = found.last().map_or(0, |c| c.start + c.len);
        let output = OutputFile {
            dir,
            state: Mutex::new(State {
                chunks: found.into(),
                writer: None,
                tail,
                limit,
                closed: true,
                warned: false,
            }),
            share,
            keep: AtomicBool::new(false),
        };
        output.set_limit(limit);
        Ok(output)
    }

    /// Leave the files when this value is dropped.
    pub fn keep(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn chunk_path(&self, start: u64) -> PathBuf {
        chunk_path(&self.dir, start)
    }

    /// Appends bytes as read from either pipe, dropping the oldest chunks
    /// when the limit needs the room.
    pub fn append(&self, mut bytes: &[u8]) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        let chunk_size = (state.limit / CHUNKS_PER_BUDGET).max(MIN_CHUNK);
        while !bytes.is_empty() {
            let full = state.chunks.back().is_none_or(|c| c.len >= chunk_size);
            if state.writer.is_none() || full {
                let start = state.tail;
                let opened = File::options()
                    .create_new(true)
                    .append(true)
                    .mode(0o600)
                    .open(self.chunk_path(start));
                match opened {
                    Ok(file) => {
                        state.writer = Some(file);
                        state.chunks.push_back(Chunk { start, len: 0 });
                    }
                    Err(e) => {
                        self.lose(&mut state, bytes.len() as u64, &e);
                        return;
                    }
                }
            }
            let room = chunk_size - state.chunks.back().map_or(0, |c| c.len);
            let (now, later) = bytes.split_at((room as usize).min(bytes.len()));
            let written = match state.writer.as_mut() {
                Some(file) => file.write_all(now),
                None => Ok(()),
            };
            if let Err(e) = written {
                self.lose(&mut state, bytes.len() as u64, &e);
                return;
            }
            if let Some(chunk) = state.chunks.back_mut() {
                chunk.len += now.len() as u64;
            }
            state.tail += now.len() as u64;
            bytes = later;
            self.trim(&mut state);
        }
        self.share.set(state.kept());
    }

    /// Bytes could not be written (a full disk): only a contiguous range
    /// can be served, so everything before them goes, and the next bytes
    /// start a fresh chunk at the offset after them.
    fn lose(&self, state: &mut State, lost: u64, e: &std::io::Error) {
        if !state.warned {
            state.warned = true;
            tracing::warn!(dir = %self.dir.display(), "cannot keep a background command's output, dropping what it kept: {e}");
        }
        state.writer = None;
        while let Some(old) = state.chunks.pop_front() {
            let _ = std::fs::remove_file(self.chunk_path(old.start));
        }
        state.tail += lost;
        self.share.set(0);
    }

    /// Drops the oldest chunks while more than `limit` bytes are kept (the
    /// chunk being written always stays).
    fn trim(&self, state: &mut State) {
        while state.kept() > state.limit && state.chunks.len() > 1 {
            if let Some(old) = state.chunks.pop_front() {
                let _ = std::fs::remove_file(self.chunk_path(old.start));
            }
        }
    }

    /// Keeps at most `limit` bytes from now on (the host's budget ran short).
    pub fn set_limit(&self, limit: u64) {
        let mut state = self.state();
        state.limit = limit;
        self.trim(&mut state);
        self.share.set(state.kept());
    }

    /// Bytes written so far: the tail cursor.
    #[cfg(test)]
    pub fn tail(&self) -> u64 {
        self.state().tail
    }

    /// Bytes on disk now.
    pub fn disk_bytes(&self) -> u64 {
        self.share.get()
    }

    /// The command ended: no more output comes.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.writer = None;
    }

    /// What to send for a read from `from`: the kept bytes from there (or
    /// from the head, if `from` is before it) to the tail.
    pub fn plan(&self, from: u64) -> std::io::Result<ReadPlan> {
        let state = self.state();
        let head = state.head();
        let from = from.max(head);
        let mut pieces = Vec::new();
        for chunk in &state.chunks {
            let end = chunk.start + chunk.len;
            if end <= from {
                continue;
            }
            let skip = from.saturating_sub(chunk.start);
            let file = File::open(self.chunk_path(chunk.start))?;
            pieces.push((file, skip, chunk.len - skip));
        }
        Ok(ReadPlan {
            head,
            tail: state.tail,
            pieces,
        })
    }

    /// Removes the chunks; reads already under way keep their handles.
    pub fn remove(&self) {
        let mut state = self.state();
        state.writer = None;
        state.closed = true;
        state.chunks.clear();
        drop(state);
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), "cannot remove output: {e}");
        }
        self.share.set(0);
    }
}

impl State {
    fn head(&self) -> u64 {
        self.chunks.front().map_or(self.tail, |c| c.start)
    }

    fn kept(&self) -> u64 {
        self.tail - self.head()
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if self.keep.load(Ordering::Relaxed) {
            return;
        }
        self.remove();
    }
}

fn chunk_path(dir: &Path, start: u64) -> PathBuf {
    // Zero-padded, so a listing sorts by offset.
    dir.join(format!("{start:020}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::DiskUsage;
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;

    fn read_all(plan: &ReadPlan) -> Vec<u8> {
        let mut out = Vec::new();
        for (file, at, len) in &plan.pieces {
            let mut buf = vec![0; *len as usize];
            file.read_exact_at(&mut buf, *at).unwrap();
            out.extend_from_slice(&buf);
        }
        out
    }

    /// A store at `dir` keeping 64 KiB, after 20,000 lines of output
    /// (about 190 KB), and all the bytes it was given.
    fn filled(dir: &Path, usage: &Arc<DiskUsage>) -> (OutputFile, Vec<u8>) {
        let out = OutputFile::create(dir.to_path_buf(), 64 * 1024, Share::new(usage)).unwrap();
        let mut all = Vec::new();
        for i in 0..20_000u32 {
            let line = format!("line {i}\n");
            out.append(line.as_bytes());
            all.extend_from_slice(line.as_bytes());
        }
        (out, all)
    }

    #[test]
    fn keeps_the_newest_bytes_with_absolute_offsets() {
        let dir = std::env::temp_dir().join(format!("execd-output-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let usage = DiskUsage::new(u64::MAX);
        let (out, all) = filled(&dir, &usage);
        let plan = out.plan(0).unwrap();
        assert_eq!(plan.tail, all.len() as u64);
        assert!(plan.head > 0, "the oldest bytes went");
        assert!(plan.tail - plan.head <= 64 * 1024, "within the limit");
        assert!(usage.used() <= 64 * 1024);
        assert_eq!(read_all(&plan), all[plan.head as usize..]);
        // From inside the kept range, and past the end.
        let mid = plan.head + 100;
        assert_eq!(read_all(&out.plan(mid).unwrap()), all[mid as usize..]);
        assert!(out.plan(plan.tail + 5).unwrap().pieces.is_empty());
        // A lower limit drops more.
        out.set_limit(8 * 1024);
        let plan = out.plan(0).unwrap();
        assert!(plan.tail - plan.head <= 8 * 1024 + 8 * 1024);
        assert_eq!(read_all(&plan), all[plan.head as usize..]);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert!(!names.is_empty());
        drop(out);
        assert!(!dir.exists());
        assert_eq!(usage.used(), 0);
    }

    #[test]
    fn read_all_gives_what_the_plan_covers() {
        let dir = std::env::temp_dir().join(format!("execd-output-all-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let usage = DiskUsage::new(u64::MAX);
        let (out, all) = filled(&dir, &usage);
        let plan = out.plan(0).unwrap();
        let head = plan.head as usize;
        assert_eq!(plan.read_all().unwrap(), all[head..]);
        let from = head as u64 + 7;
        assert_eq!(out.plan(from).unwrap().read_all().unwrap(), all[head + 7..]);
        drop(out);
    }

    #[test]
    fn reopens_what_a_previous_host_kept() {
        let dir = std::env::temp_dir().join(format!("execd-output-reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let usage = DiskUsage::new(u64::MAX);
        let (out, all) = filled(&dir, &usage);
        let before = out.plan(0).unwrap();
        out.keep();
        drop(out);
        assert_eq!(usage.used(), 0, "a kept store still gives its share back");

        let again = OutputFile::reopen(dir.clone(), 64 * 1024, Share::new(&usage)).unwrap();
        let plan = again.plan(0).unwrap();
        assert_eq!((plan.head, plan.tail), (before.head, before.tail));
        assert_eq!(read_all(&plan), all[plan.head as usize..]);
        assert_eq!(usage.used(), plan.tail - plan.head);
        again.append(b"more");
        assert_eq!(
            again.tail(),
            before.tail,
            "an ended command gets no more output"
        );
        again.keep();
        drop(again);

        // A hole: only the newest run is served; junk is left alone.
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        std::fs::remove_file(dir.join(&names[1])).unwrap();
        std::fs::write(dir.join("junk"), b"x").unwrap();
        let holed = OutputFile::reopen(dir.clone(), 64 * 1024, Share::new(&usage)).unwrap();
        let plan = holed.plan(0).unwrap();
        assert_eq!(plan.tail, before.tail);
        assert!(plan.head > before.head);
        assert_eq!(read_all(&plan), all[plan.head as usize..]);
        drop(holed);
        assert!(!dir.exists());
    }
}
