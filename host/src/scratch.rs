//! A policy's private directory for one command, removed with the command.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub struct ScratchDir {
    path: PathBuf,
    /// Left in place when dropped: the host is stopping and keeps its
    /// state directory for the next one.
    keep: AtomicBool,
}

impl ScratchDir {
    pub fn create(path: PathBuf) -> std::io::Result<ScratchDir> {
        crate::state_dir::private_dir_builder(false).create(&path)?;
        Ok(ScratchDir::existing(path))
    }

    /// The directory a previous host left, now this host's.
    pub fn existing(path: PathBuf) -> ScratchDir {
        ScratchDir {
            path,
            keep: AtomicBool::new(false),
        }
    }

    /// Leave the directory when this value is dropped.
    pub fn keep(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and everything the policy put in it.
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), "cannot remove policy directory: {e}");
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.keep.load(Ordering::Relaxed) {
            return;
        }
        self.remove();
    }
}
