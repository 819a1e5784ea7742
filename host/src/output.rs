//! The raw output of a background command, kept in a file for `/logs`:
//! the contract promises the exact bytes, which the events (lossy UTF-8,
//! split into lines) do not keep.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct OutputFile {
    path: PathBuf,
    file: Mutex<File>,
    len: AtomicU64,
}

impl OutputFile {
    pub fn create(path: PathBuf) -> std::io::Result<OutputFile> {
        let file = File::options()
            .create_new(true)
            .read(true)
            .append(true)
            .open(&path)?;
        Ok(OutputFile {
            path,
            file: Mutex::new(file),
            len: AtomicU64::new(0),
        })
    }

    /// Appends bytes as read from either pipe.
    pub fn append(&self, bytes: &[u8]) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Reads up to `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.read_at(buf, offset)
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
