//! The macOS backend: POSIX shared memory objects (`shm_open`).
//!
//! Compiled only on macOS; type-checked from Linux with `cargo check --target
//! x86_64-apple-darwin`, never run. macOS differs from Linux in ways that shape it: names are at
//! most 31 characters, so they are `/po<pid>-<80 random bits>`; an object can be sized once, with
//! `ftruncate`, and has no `fallocate` (its memory is committed lazily, and the kernel swaps or
//! compresses rather than faulting when memory is short); `fchmod` is not supported, so objects
//! are created 0600 at once; `fstat` reports the owner, mode bits and size but no file type;
//! objects cannot be listed, so there is no sweep of dead owners' segments; nothing takes seals.

use std::fs::File;

use memmap2::{Mmap, MmapMut, MmapOptions};
use perf_core::seams::{PlatformShm, SegmentId, ShmError, ShmSegment, ShmView};
use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::shm;

use crate::names::{file_name, hex, random_bytes, truncated};
use crate::options::{SegmentInfo, ShmOptions, touch_pages};

/// macOS's `PSHMNAMLEN`: the longest shared memory object name.
const MAX_NAME: usize = 31;

/// How many random names are tried before `create` gives up on collisions.
const NAME_ATTEMPTS: usize = 4;

/// POSIX shared memory (macOS): the default backend there.
#[derive(Debug, Clone, Default)]
pub struct PosixShm {
    options: ShmOptions,
}

fn os_error(what: &str, err: impl std::fmt::Display) -> ShmError {
    ShmError::Os(format!("{what} failed: {err}"))
}

impl PosixShm {
    /// A backend with these options.
    pub fn new(options: ShmOptions) -> PosixShm {
        PosixShm { options }
    }

    /// Creates an owner-only object of `len` bytes under a fresh random name.
    pub fn create_segment(&self, len: usize) -> Result<PosixSegment, ShmError> {
        self.options.check_len(len)?;
        let mut attempt = 0;
        let (file, name) = loop {
            let name = format!("/po{}-{}", std::process::id(), hex(&random_bytes::<10>()?));
            let name = name[..name.len().min(MAX_NAME)].to_owned();
            let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
            match shm::open(name.as_str(), flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => break (File::from(fd), name),
                Err(e) if e == Errno::EXIST && attempt + 1 < NAME_ATTEMPTS => attempt += 1,
                Err(e) => return Err(os_error(&format!("shm_open({name})"), e)),
            }
        };
        let remove = Unlink(Some(name.clone()));
        rustix::fs::ftruncate(&file, len as u64).map_err(|e| {
            if e == Errno::NOMEM || e == Errno::NOSPC || e == Errno::INVAL {
                ShmError::NoSpace(len as u64)
            } else {
                os_error("ftruncate", e)
            }
        })?;
        // SAFETY: the object was created by this process and sized to at least `len` bytes;
        // the mapping is owned by the returned `MmapMut`.
        let map = unsafe { MmapOptions::new().len(len).map_mut(&file) }
            .map_err(|e| os_error("mmap", e))?;
        let inode = rustix::fs::fstat(&file)
            .map_err(|e| os_error("fstat", e))?
            .st_ino as u64;
        Ok(PosixSegment {
            id: SegmentId::Named(name),
            inode,
            map,
            _remove: remove,
        })
    }

    /// Opens object `id` read-only after checking owner, mode and size.
    pub fn open_view(&self, id: &SegmentId, len: usize) -> Result<PosixView, ShmError> {
        let SegmentId::Named(name) = id else {
            return Err(ShmError::Denied(
                id.to_string(),
                "expected a named segment id, got a memfd one".to_owned(),
            ));
        };
        file_name(name).map_err(|why| ShmError::Denied(truncated(name).to_owned(), why))?;
        if len == 0 || len > self.options.max_segment_len {
            return Err(ShmError::Denied(
                name.clone(),
                format!(
                    "expected a length of 1 to {} bytes, got {len}",
                    self.options.max_segment_len
                ),
            ));
        }
        let file = match shm::open(name.as_str(), shm::OFlags::RDONLY, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(e) if e == Errno::NOENT => return Err(ShmError::NotFound(name.clone())),
            Err(e) if e == Errno::ACCESS => {
                return Err(ShmError::Denied(
                    name.clone(),
                    "opening was refused: another user's object".to_owned(),
                ));
            }
            Err(e) => return Err(os_error(&format!("shm_open({name})"), e)),
        };
        let stat = rustix::fs::fstat(&file).map_err(|e| os_error("fstat", e))?;
        let euid = rustix::process::geteuid().as_raw();
        let perms = u32::from(stat.st_mode) & 0o777;
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        let why = if stat.st_uid != euid {
            Some(format!(
                "owned by uid {}, expected this user (uid {euid})",
                stat.st_uid
            ))
        } else if perms & 0o077 != 0 {
            Some(format!(
                "mode {perms:04o} lets other users in, expected 0600"
            ))
        } else if size < len as u64 {
            Some(format!("holds {size} bytes, expected at least {len}"))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(ShmError::Denied(name.clone(), why));
        }
        // SAFETY: the object belongs to this user and holds at least `len` bytes; the mapping
        // is owned by the returned view.
        let map =
            unsafe { MmapOptions::new().len(len).map(&file) }.map_err(|e| os_error("mmap", e))?;
        Ok(PosixView {
            id: id.clone(),
            inode: stat.st_ino as u64,
            map,
        })
    }
}

impl PlatformShm for PosixShm {
    fn name(&self) -> &'static str {
        "posix"
    }

    fn create(&self, len: usize) -> Result<Box<dyn ShmSegment>, ShmError> {
        Ok(Box::new(self.create_segment(len)?))
    }

    fn open(&self, id: &SegmentId, len: usize) -> Result<Box<dyn ShmView>, ShmError> {
        Ok(Box::new(self.open_view(id, len)?))
    }

    fn seal(&self, segment: &mut dyn ShmSegment) -> Result<(), ShmError> {
        Err(ShmError::Os(format!(
            "sealing {} is not possible: macOS shared memory takes no seals (it can be sized only once)",
            segment.id()
        )))
    }

    fn unlink(&self, id: &SegmentId) -> Result<(), ShmError> {
        let SegmentId::Named(name) = id else {
            return Err(ShmError::Denied(
                id.to_string(),
                "expected a named segment id, got a memfd one".to_owned(),
            ));
        };
        file_name(name).map_err(|why| ShmError::Denied(truncated(name).to_owned(), why))?;
        match shm::unlink(name.as_str()) {
            Ok(()) => Ok(()),
            Err(e) if e == Errno::NOENT => Err(ShmError::NotFound(name.clone())),
            Err(e) => Err(os_error(&format!("shm_unlink({name})"), e)),
        }
    }
}

/// Unlinks a name when dropped.
#[derive(Debug)]
struct Unlink(Option<String>);

impl Drop for Unlink {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            let _ = shm::unlink(name.as_str());
        }
    }
}

/// An object this process created: writable. Dropping it unlinks its name.
#[derive(Debug)]
pub struct PosixSegment {
    id: SegmentId,
    inode: u64,
    map: MmapMut,
    _remove: Unlink,
}

impl PosixSegment {
    /// What the segment got: base pages.
    pub fn info(&self) -> SegmentInfo {
        SegmentInfo::small(rustix::param::page_size())
    }
}

impl ShmSegment for PosixSegment {
    fn id(&self) -> &SegmentId {
        &self.id
    }

    fn inode(&self) -> u64 {
        self.inode
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn as_slice(&self) -> &[u8] {
        &self.map
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// Touches every page without changing the bytes.
    fn prefault(&mut self) -> Result<(), ShmError> {
        touch_pages(&mut self.map, rustix::param::page_size());
        Ok(())
    }
}

/// An object of another process, mapped read-only.
#[derive(Debug)]
pub struct PosixView {
    id: SegmentId,
    inode: u64,
    map: Mmap,
}

impl ShmView for PosixView {
    fn id(&self) -> &SegmentId {
        &self.id
    }

    fn inode(&self) -> u64 {
        self.inode
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn as_slice(&self) -> &[u8] {
        &self.map
    }
}
