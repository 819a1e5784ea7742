//! A policy's private directory for one command, removed with the command.

use std::path::{Path, PathBuf};

pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn create(path: PathBuf) -> std::io::Result<ScratchDir> {
        crate::state_dir::private_dir_builder(false).create(&path)?;
        Ok(ScratchDir { path })
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
        self.remove();
    }
}
