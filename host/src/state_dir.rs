//! The host's state directory: where background output and the policies'
//! per-command directories live. Private to the host's user, and never one
//! another user prepared.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How many fresh names are tried before giving up (each is 48 random bits;
/// a clash means someone is squatting names).
const FRESH_TRIES: usize = 16;

pub struct StateDir {
    path: PathBuf,
    /// Made by this host for itself: removed when dropped.
    owned: bool,
}

impl StateDir {
    /// A fresh private directory (0700) under the system temp dir, with an
    /// unpredictable name, removed when this value is dropped. An existing
    /// directory is never reused: one an attacker created in advance would
    /// let them read and forge the output the host serves.
    pub fn fresh() -> Result<StateDir, String> {
        let parent = std::env::temp_dir();
        let mut last = None;
        for _ in 0..FRESH_TRIES {
            let mut bytes = [0u8; 6];
            getrandom::fill(&mut bytes).map_err(|e| format!("no random numbers: {e}"))?;
            let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let path = parent.join(format!("execd-host-{name}"));
            match private_dir_builder(false).create(&path) {
                Ok(()) => return Ok(StateDir { path, owned: true }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(format!(
                        "cannot create a state directory in {}: {e}",
                        parent.display()
                    ));
                }
            }
        }
        Err(format!(
            "cannot create a fresh state directory in {}: {}",
            parent.display(),
            last.map_or_else(String::new, |e| e.to_string())
        ))
    }

    /// The operator's directory, created (0700) if missing, kept at exit.
    /// Refused if it is not a directory, belongs to another user, or other
    /// users may write to it.
    pub fn given(path: &Path) -> Result<StateDir, String> {
        let shown = path.display();
        if !path.exists() {
            private_dir_builder(true)
                .create(path)
                .map_err(|e| format!("cannot create --state-dir {shown}: {e}"))?;
        }
        let meta = std::fs::metadata(path).map_err(|e| format!("--state-dir {shown}: {e}"))?;
        if !meta.is_dir() {
            return Err(format!("--state-dir {shown} is not a directory"));
        }
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(format!(
                "--state-dir {shown} belongs to uid {}, not to the host's uid {me}: whoever owns it can read and replace the output the host serves",
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "--state-dir {shown} is writable by other users (mode {:o}): they could replace the output the host serves; chmod 700 it",
                meta.mode() & 0o777
            ));
        }
        Ok(StateDir {
            path: path.to_path_buf(),
            owned: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if self.owned
            && let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), "cannot remove the state directory: {e}");
        }
    }
}

/// A builder for directories only their owner may enter (0700).
pub fn private_dir_builder(recursive: bool) -> std::fs::DirBuilder {
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700).recursive(recursive);
    builder
}
