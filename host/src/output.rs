//! The raw output of a background command, kept in a file for `/logs`:
//! the contract promises the exact bytes, which the events (lossy UTF-8,
//! split into lines) do not keep.

use std::fs::File;
use std::io::Write;
pub use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct OutputFile {
    path: PathBuf,
    /// Open while the command runs; closed when it ends, so a retained
    /// command holds no file descriptor.
    writer: Mutex<Option<File>>,
    len: AtomicU64,
}

impl OutputFile {
    pub fn create(path: PathBuf) -> std::io::Result<OutputFile> {
        // Only the host's user may read what a command printed.
        let file = File::options()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        Ok(OutputFile {
            path,
            writer: Mutex::new(Some(file)),
            len: AtomicU64::new(0),
        })
    }

    /// Appends bytes as read from either pipe.
    pub fn append(&self, bytes: &[u8]) {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(file) = writer.as_mut() else { return };
        match file.write_all(bytes) {
            Ok(()) => {
                self.len.fetch_add(bytes.len() as u64, Ordering::Release);
            }
            Err(e) => tracing::warn!(path = %self.path.display(), "cannot keep output: {e}"),
        }
    }

    /// Bytes written so far: the tail cursor.
    pub fn tail(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// The command ended: no more output comes.
    pub fn close(&self) {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// A handle to read the output with ([`FileExt::read_at`]).
    pub fn open_reader(&self) -> std::io::Result<File> {
        File::open(&self.path)
    }

    /// Removes the file; reads already under way keep their handle.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        self.remove();
    }
}
