//! Segment files as the log reads and writes them: whole buffers at an
//! offset (the scan of a reopen reads them so too, see `format::ReadAt`).
//!
//! Natively this is `std::fs`. In the component, std's files go through
//! the WASI preview 1 adapter, which cuts a write into 4 KiB stream writes
//! and a read into 64 KiB ones, each a trip through the host; the
//! `wasi:filesystem` descriptor itself reads or writes a whole buffer at an
//! offset in one call, so the component calls it directly.

use std::io;
use std::path::Path;

pub struct SegmentFile {
    inner: Inner,
}

#[cfg(not(target_arch = "wasm32"))]
type Inner = std::fs::File;

#[cfg(target_arch = "wasm32")]
type Inner = wasip2::filesystem::types::Descriptor;

impl std::fmt::Debug for SegmentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SegmentFile")
    }
}

impl crate::format::ReadAt for SegmentFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        SegmentFile::read_at(self, buf, offset)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl SegmentFile {
    /// Creates `path` (emptying it if it exists), for writing and reading.
    pub fn create(path: &Path) -> io::Result<SegmentFile> {
        let inner = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(SegmentFile { inner })
    }

    /// Opens `path` for reading.
    pub fn open(path: &Path) -> io::Result<SegmentFile> {
        Ok(SegmentFile {
            inner: std::fs::File::open(path)?,
        })
    }

    /// Opens an existing `path` for writing and reading, as it is.
    pub fn open_rw(path: &Path) -> io::Result<SegmentFile> {
        let inner = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Ok(SegmentFile { inner })
    }

    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.inner, buf, offset)
    }

    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.inner, buf, offset)
    }

    /// Reads what is there of `buf.len()` bytes from `offset`: 0 at the end.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.inner, buf, offset)
    }

    /// Replaces `buf` with the `len` bytes at `offset`.
    pub fn read_vec_at(&self, buf: &mut Vec<u8>, len: usize, offset: u64) -> io::Result<()> {
        buf.resize(len, 0);
        self.read_exact_at(buf, offset)
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    pub fn len(&self) -> io::Result<u64> {
        Ok(self.inner.metadata()?.len())
    }
}

#[cfg(target_arch = "wasm32")]
impl SegmentFile {
    /// Creates `path` (emptying it if it exists), for writing and reading.
    pub fn create(path: &Path) -> io::Result<SegmentFile> {
        use wasip2::filesystem::types::{DescriptorFlags, OpenFlags};
        let open = OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let flags = DescriptorFlags::READ | DescriptorFlags::WRITE;
        wasi::open(path, open, flags).map(|inner| SegmentFile { inner })
    }

    /// Opens `path` for reading.
    pub fn open(path: &Path) -> io::Result<SegmentFile> {
        use wasip2::filesystem::types::{DescriptorFlags, OpenFlags};
        wasi::open(path, OpenFlags::empty(), DescriptorFlags::READ)
            .map(|inner| SegmentFile { inner })
    }

    /// Opens an existing `path` for writing and reading, as it is.
    pub fn open_rw(path: &Path) -> io::Result<SegmentFile> {
        use wasip2::filesystem::types::{DescriptorFlags, OpenFlags};
        let flags = DescriptorFlags::READ | DescriptorFlags::WRITE;
        wasi::open(path, OpenFlags::empty(), flags).map(|inner| SegmentFile { inner })
    }

    pub fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.inner.write(buf, offset).map_err(wasi::error)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let n = (n as usize).min(buf.len());
            buf = &buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut at = 0;
        while at < buf.len() {
            let want = (buf.len() - at) as u64;
            let (data, end) = self
                .inner
                .read(want, offset + at as u64)
                .map_err(wasi::error)?;
            let n = data.len().min(buf.len() - at);
            buf[at..at + n].copy_from_slice(&data[..n]);
            at += n;
            if n == 0 || (end && at < buf.len()) {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// Reads what is there of `buf.len()` bytes from `offset`: 0 at the end.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let (data, _) = self
            .inner
            .read(buf.len() as u64, offset)
            .map_err(wasi::error)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    /// Replaces `buf` with the `len` bytes at `offset`. The descriptor's
    /// `read` hands back a fresh buffer; when it holds them all (a regular
    /// file short of its end always does) that buffer becomes `buf`, so
    /// the bytes are not copied once more.
    pub fn read_vec_at(&self, buf: &mut Vec<u8>, len: usize, offset: u64) -> io::Result<()> {
        let (data, end) = self.inner.read(len as u64, offset).map_err(wasi::error)?;
        if data.len() == len {
            *buf = data;
            return Ok(());
        }
        if data.len() > len || data.is_empty() || end {
            buf.clear();
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let got = data.len();
        *buf = data;
        buf.resize(len, 0);
        self.read_exact_at(&mut buf[got..], offset + got as u64)
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_size(len).map_err(wasi::error)
    }

    pub fn len(&self) -> io::Result<u64> {
        Ok(self.inner.stat().map_err(wasi::error)?.size)
    }
}

/// The component's access to its directory, the preopened `/log`.
#[cfg(target_arch = "wasm32")]
mod wasi {
    use std::cell::OnceCell;
    use std::io;
    use std::path::Path;

    use wasip2::filesystem::preopens;
    use wasip2::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

    /// Where the host preopens the command's directory.
    const DIR: &str = "/log";

    thread_local! {
        static LOG_DIR: OnceCell<Option<Descriptor>> = const { OnceCell::new() };
    }

    pub fn open(path: &Path, open: OpenFlags, flags: DescriptorFlags) -> io::Result<Descriptor> {
        let relative = path
            .to_str()
            .and_then(|p| p.strip_prefix(DIR))
            .map(|p| p.trim_start_matches('/'))
            .filter(|p| !p.is_empty())
            .ok_or_else(|| io::Error::other(format!("{} is not in {DIR}", path.display())))?;
        LOG_DIR.with(|dir| {
            let dir = dir.get_or_init(|| {
                preopens::get_directories()
                    .into_iter()
                    .find(|(_, name)| name == DIR)
                    .map(|(dir, _)| dir)
            });
            let dir = dir
                .as_ref()
                .ok_or_else(|| io::Error::other(format!("{DIR} is not preopened")))?;
            dir.open_at(PathFlags::empty(), relative, open, flags)
                .map_err(error)
        })
    }

    pub fn error(code: ErrorCode) -> io::Error {
        let kind = match code {
            ErrorCode::NoEntry => io::ErrorKind::NotFound,
            ErrorCode::Access | ErrorCode::NotPermitted => io::ErrorKind::PermissionDenied,
            ErrorCode::Exist => io::ErrorKind::AlreadyExists,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, format!("{code:?}"))
    }
}
