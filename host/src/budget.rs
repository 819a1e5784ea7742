//! Disk budgets: what each command may store, and what the host may store
//! in all under `--state-dir`.
//!
//! A command's budget covers everything kept for it: its event log (which
//! the policy bounds, told by `set-disk-budget`) and, for a background
//! command, the raw bytes kept for `/logs` (bounded by [`crate::exec::output`]).
//! A background command's budget is split in two halves, one for each.
//!
//! The host's budget is the sum over all commands. Every store reports
//! what it adds and frees to one [`DiskUsage`]; when the sum goes over,
//! the registry expires finished logs, oldest first, before any running
//! command loses output; with nothing running, the newest finished log
//! shrinks instead of going (see `Registry::enforce_disk_budget`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Upper bound of the default host budget: 4 GiB.
pub const DEFAULT_HOST_BUDGET_CAP: u64 = 4 << 30;

/// Bytes stored under the state directory, against the host's budget.
#[derive(Debug)]
pub struct DiskUsage {
    used: AtomicU64,
    budget: u64,
    /// Wakes the enforcer when `used` goes over `budget`.
    over: Notify,
}

impl DiskUsage {
    pub fn new(budget: u64) -> Arc<DiskUsage> {
        Arc::new(DiskUsage {
            used: AtomicU64::new(0),
            budget,
            over: Notify::new(),
        })
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Records a store going from `before` to `after` bytes.
    pub fn change(&self, before: u64, after: u64) {
        if after >= before {
            let now = self.used.fetch_add(after - before, Ordering::Relaxed) + (after - before);
            if now > self.budget {
                self.over.notify_one();
            }
        } else {
            let freed = before - after;
            let _ = self
                .used
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                    Some(u.saturating_sub(freed))
                });
        }
    }

    /// Waits until usage went over the budget (at once if it is over).
    pub async fn went_over(&self) {
        if self.used() > self.budget {
            return;
        }
        self.over.notified().await;
    }

    /// Waits until usage grows while over the budget (or goes over again).
    pub async fn grew_over(&self) {
        self.over.notified().await;
    }
}

/// One store's share of a [`DiskUsage`]: it reports its size as it
/// changes, and gives it all back when dropped.
#[derive(Debug)]
pub struct Share {
    usage: Arc<DiskUsage>,
    bytes: AtomicU64,
}

impl Share {
    pub fn new(usage: &Arc<DiskUsage>) -> Share {
        Share {
            usage: Arc::clone(usage),
            bytes: AtomicU64::new(0),
        }
    }

    /// The store now takes `bytes` on disk.
    pub fn set(&self, bytes: u64) {
        let before = self.bytes.swap(bytes, Ordering::Relaxed);
        self.usage.change(before, bytes);
    }

    pub fn get(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// The least default host budget: below it the filesystem is too full to
/// keep even one command's log with its terminal event, and a host that
/// starts anyway loses output without saying why.
pub const MIN_DEFAULT_HOST_BUDGET: u64 = 1 << 20;

/// The default host budget: a quarter of the free space of the filesystem
/// holding `dir` at start plus what the host already keeps in `dir` (a
/// previous host's logs are this host's own, not someone else's use of
/// the disk), capped at 4 GiB. Refused, with why, below
/// [`MIN_DEFAULT_HOST_BUDGET`]: `--disk-budget` says what to do then.
pub fn default_host_budget(dir: &std::path::Path) -> Result<u64, String> {
    let Some(free) = free_bytes(dir) else {
        return Ok(DEFAULT_HOST_BUDGET_CAP);
    };
    let kept = kept_bytes(dir);
    let budget = (free / 4).saturating_add(kept).min(DEFAULT_HOST_BUDGET_CAP);
    if budget < MIN_DEFAULT_HOST_BUDGET {
        return Err(format!(
            "the default disk budget would be {budget} bytes (a quarter of the {free} bytes \
             free where {} is, plus the {kept} bytes kept there), less than the least a \
             host needs ({MIN_DEFAULT_HOST_BUDGET}); free some space or give --disk-budget",
            dir.display()
        ));
    }
    Ok(budget)
}

/// Bytes of the regular files in `dir` and in its subdirectories (one
/// level down, as the state directory holds `<id>.log/` directories).
/// Symbolic links are not followed, and what cannot be read counts 0:
/// this only sizes a default.
fn kept_bytes(dir: &std::path::Path) -> u64 {
    fn walk(dir: &std::path::Path, depth: u32) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut bytes = 0u64;
        for entry in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_file() {
                bytes = bytes.saturating_add(meta.len());
            } else if meta.is_dir() && depth > 0 {
                bytes = bytes.saturating_add(walk(&entry.path(), depth - 1));
            }
        }
        bytes
    }
    walk(dir, 1)
}

/// Free bytes (for unprivileged users) of the filesystem holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data, written by statvfs(3) on success.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a struct we own.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Parses a size: a whole number of bytes, or one with a binary suffix
/// (`K`, `M`, `G`, `T`, optionally followed by `iB` or `B`): `1G` and
/// `1GiB` are 1073741824.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a size like 1073741824, 512M or 4GiB, not {text:?}"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("unknown size unit in {text:?} (use K, M, G or T)")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("64KB"), Ok(64 << 10));
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("3X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn shares_add_up_and_give_back() {
        let usage = DiskUsage::new(100);
        let a = Share::new(&usage);
        let b = Share::new(&usage);
        a.set(30);
        b.set(50);
        a.set(20);
        assert_eq!(usage.used(), 70);
        drop(b);
        assert_eq!(usage.used(), 20);
    }

    #[test]
    fn kept_bytes_count_files_one_level_down_and_no_links() {
        let dir = std::env::temp_dir().join(format!("execd-kept-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a.log/deeper")).unwrap();
        std::fs::write(dir.join("a.json"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("a.log/0000000001.seg"), [0u8; 100]).unwrap();
        // Two levels down, and a link to a big file: neither is the host's.
        std::fs::write(dir.join("a.log/deeper/x"), [0u8; 1000]).unwrap();
        std::os::unix::fs::symlink("/proc/kcore", dir.join("link")).unwrap();
        assert_eq!(kept_bytes(&dir), 110);
        assert_eq!(kept_bytes(&dir.join("absent")), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
