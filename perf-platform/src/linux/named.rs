//! The named backend: segments under `/dev/shm` (or another tmpfs directory) that a worker in
//! any language opens with `shm_open(name)`.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use memmap2::{Mmap, MmapMut};
use perf_core::seams::{PlatformShm, SegmentId, ShmError, ShmSegment, ShmView};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::linux::memfd::check_open_len;
use crate::linux::pages::{HugePageSupport, PagePlan};
use crate::linux::sweep::OwnerTag;
use crate::linux::sys::{
    check_memory, check_opened, map_advised, map_read_only, map_shared_rw, os_error,
    populate_write, reserve,
};
use crate::names::{file_name, is_name_char, random_hex128, truncated};
use crate::options::{SegmentInfo, ShmOptions, touch_pages};

/// How many random names are tried before `create` gives up on collisions.
const NAME_ATTEMPTS: usize = 4;

/// The longest prefix accepted, in bytes.
const MAX_PREFIX_LEN: usize = 32;

/// Where named segments live and what they are called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedShmConfig {
    /// The directory of the segments: `/dev/shm`, where `shm_open` looks, unless a test or a
    /// deployment points it at another tmpfs.
    pub dir: PathBuf,
    /// The first part of every name: 1 to 32 letters, digits, `_` or `.` (no `-`).
    pub prefix: String,
    /// Size bound and huge pages.
    pub options: ShmOptions,
}

impl Default for NamedShmConfig {
    fn default() -> Self {
        NamedShmConfig {
            dir: PathBuf::from("/dev/shm"),
            prefix: "perfopt".to_owned(),
            options: ShmOptions::default(),
        }
    }
}

/// Named shared-memory segments (Linux): `/<prefix>-<pid ns>-<pid>-<start time>-<random>`.
///
/// A segment is created with mode 0000, sized with `fallocate`, then made 0600, so nobody opens
/// it half made. It outlives its creator until unlinked: [`NamedSegment`] unlinks its name when
/// dropped, and [`NamedShm::sweep_stale`] removes those of crashed owners.
#[derive(Debug, Clone)]
pub struct NamedShm {
    config: NamedShmConfig,
    dir: Arc<File>,
    huge: HugePageSupport,
    base_page: usize,
}

impl NamedShm {
    /// A backend on `config.dir`; fails if the prefix is invalid or the directory cannot be
    /// opened.
    pub fn new(config: NamedShmConfig) -> Result<NamedShm, ShmError> {
        check_prefix(&config.prefix)?;
        let dir = File::open(&config.dir)
            .map_err(|e| os_error(&format!("opening {}", config.dir.display()), e))?;
        let stat = rustix::fs::fstat(&dir).map_err(|e| os_error("fstat", e))?;
        if FileType::from_raw_mode(stat.st_mode as _) != FileType::Directory {
            return Err(ShmError::Os(format!(
                "invalid segment directory: expected a directory, got {}",
                config.dir.display()
            )));
        }
        Ok(NamedShm {
            huge: HugePageSupport::for_tmpfs(&config.options, &config.dir),
            dir: Arc::new(dir),
            config,
            base_page: rustix::param::page_size(),
        })
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &NamedShmConfig {
        &self.config
    }

    pub(crate) fn dir_fd(&self) -> &File {
        &self.dir
    }

    /// Creates a segment of `len` bytes under a fresh random name, owner-only, its space
    /// reserved; on any failure nothing is left in the directory.
    pub fn create_segment(&self, len: usize) -> Result<NamedSegment, ShmError> {
        self.config.options.check_len(len)?;
        check_memory(len)?;
        let owner = OwnerTag::current();
        let mut attempt = 0;
        let (file, name) = loop {
            let name = owner.file_name(&self.config.prefix, &random_hex128()?);
            // Mode 0000 until sized: an open before that is refused.
            let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
            match rustix::fs::openat(&*self.dir, &name, flags | OFlags::NOFOLLOW, Mode::empty()) {
                Ok(fd) => break (File::from(fd), name),
                Err(e) if e == Errno::EXIST && attempt + 1 < NAME_ATTEMPTS => attempt += 1,
                Err(e) if e == Errno::NOSPC => return Err(ShmError::NoSpace(len as u64)),
                Err(e) => return Err(os_error(&format!("creating /{name}"), e)),
            }
        };
        let mut guard = RemoveOnDrop {
            dir: Arc::clone(&self.dir),
            name: Some(name),
        };
        let plan = self.huge.plan(len);
        let (map, plan) = if plan == PagePlan::ThpAdvised {
            map_advised(&file, len)?
        } else {
            reserve(&file, len)?;
            (map_shared_rw(&file, len)?, plan)
        };
        rustix::fs::fchmod(&file, Mode::from_raw_mode(0o600)).map_err(|e| os_error("fchmod", e))?;
        let stat = rustix::fs::fstat(&file).map_err(|e| os_error("fstat", e))?;
        let name = guard.name.take().unwrap_or_default();
        Ok(NamedSegment {
            id: SegmentId::Named(format!("/{name}")),
            file,
            remove: RemoveOnDrop {
                dir: Arc::clone(&self.dir),
                name: Some(name),
            },
            inode: stat.st_ino,
            dev: stat.st_dev,
            info: plan.info(self.base_page),
            base_page: self.base_page,
            map,
        })
    }

    /// Opens the named segment `id` read-only, after its checks.
    pub fn open_view(&self, id: &SegmentId, len: usize) -> Result<NamedView, ShmError> {
        let SegmentId::Named(name) = id else {
            return Err(ShmError::Denied(
                id.to_string(),
                "expected a named segment id, got a memfd one".to_owned(),
            ));
        };
        let file =
            file_name(name).map_err(|why| ShmError::Denied(truncated(name).to_owned(), why))?;
        check_open_len(id, len, self.config.options.max_segment_len)?;
        let flags =
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
        let file = match rustix::fs::openat(&*self.dir, file, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(e) if e == Errno::NOENT => return Err(ShmError::NotFound(name.clone())),
            Err(e) if e == Errno::LOOP => {
                return Err(ShmError::Denied(
                    name.clone(),
                    "expected a segment, found a symbolic link".to_owned(),
                ));
            }
            Err(e) if e == Errno::ACCESS || e == Errno::PERM => {
                return Err(ShmError::Denied(
                    name.clone(),
                    format!("opening was refused ({e}): another user's, or not yet sized"),
                ));
            }
            Err(e) => return Err(os_error(&format!("opening {name}"), e)),
        };
        let stat = rustix::fs::fstat(&file).map_err(|e| os_error("fstat", e))?;
        check_opened(&stat, id, len)?;
        Ok(NamedView {
            id: id.clone(),
            inode: stat.st_ino,
            map: map_read_only(&file, len)?,
            file,
        })
    }

    /// The owner process recorded in the name of segment `id`, if it is a well-formed name of
    /// this backend's prefix.
    pub fn owner_of(&self, id: &SegmentId) -> Option<u32> {
        let SegmentId::Named(name) = id else {
            return None;
        };
        let file = file_name(name).ok()?;
        OwnerTag::parse(file, &self.config.prefix).map(|owner| owner.pid)
    }
}

/// Checks that `file` still holds the `mapped` bytes a mapping of segment `id` covers: a named
/// segment is a plain file that another process of the same user can truncate, and touching a
/// page past its end would raise SIGBUS.
fn check_length(file: &File, id: &SegmentId, mapped: usize) -> Result<(), ShmError> {
    let stat = rustix::fs::fstat(file).map_err(|e| os_error("fstat", e))?;
    let found = u64::try_from(stat.st_size).unwrap_or(0);
    if found < mapped as u64 {
        return Err(ShmError::Resized {
            id: id.to_string(),
            mapped: mapped as u64,
            found,
        });
    }
    Ok(())
}

/// Checks a configured prefix: 1 to 32 name characters, no `-` (it separates the name's parts).
fn check_prefix(prefix: &str) -> Result<(), ShmError> {
    let valid = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix.chars().all(|c| is_name_char(c) && c != '-');
    if valid {
        Ok(())
    } else {
        Err(ShmError::Os(format!(
            "invalid segment prefix: expected 1 to {MAX_PREFIX_LEN} letters, digits, '_' or '.', got {:?}",
            truncated(prefix)
        )))
    }
}

impl PlatformShm for NamedShm {
    fn name(&self) -> &'static str {
        "named"
    }

    fn create(&self, len: usize) -> Result<Box<dyn ShmSegment>, ShmError> {
        Ok(Box::new(self.create_segment(len)?))
    }

    fn open(&self, id: &SegmentId, len: usize) -> Result<Box<dyn ShmView>, ShmError> {
        Ok(Box::new(self.open_view(id, len)?))
    }

    /// Always fails: only memfd files take seals; a named segment on tmpfs cannot be kept from
    /// being resized by its owner.
    fn seal(&self, segment: &mut dyn ShmSegment) -> Result<(), ShmError> {
        Err(ShmError::SealUnsupported(segment.id().to_string()))
    }

    fn owner_pid(&self, id: &SegmentId) -> Option<u32> {
        self.owner_of(id)
    }

    /// Whether the name still holds the file with `inode`: a pool unlinks the name when it
    /// releases the segment.
    fn still_exists(&self, id: &SegmentId, inode: u64) -> Option<bool> {
        let SegmentId::Named(name) = id else {
            return Some(false);
        };
        let Ok(file) = file_name(name) else {
            return Some(false);
        };
        match rustix::fs::statat(&*self.dir, file, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Some(stat.st_ino == inode),
            Err(e) if e == Errno::NOENT => Some(false),
            Err(_) => None,
        }
    }

    /// Removes the name (a segment of another user is refused); mappings live on.
    fn unlink(&self, id: &SegmentId) -> Result<(), ShmError> {
        let SegmentId::Named(name) = id else {
            return Err(ShmError::Denied(
                id.to_string(),
                "expected a named segment id, got a memfd one".to_owned(),
            ));
        };
        let file =
            file_name(name).map_err(|why| ShmError::Denied(truncated(name).to_owned(), why))?;
        let stat = match rustix::fs::statat(&*self.dir, file, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(e) if e == Errno::NOENT => return Err(ShmError::NotFound(name.clone())),
            Err(e) => return Err(os_error(&format!("stat of {name}"), e)),
        };
        let euid = rustix::process::geteuid().as_raw();
        if stat.st_uid != euid {
            return Err(ShmError::Denied(
                name.clone(),
                format!(
                    "owned by uid {}, expected this user (uid {euid})",
                    stat.st_uid
                ),
            ));
        }
        match rustix::fs::unlinkat(&*self.dir, file, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(e) if e == Errno::NOENT => Err(ShmError::NotFound(name.clone())),
            Err(e) => Err(os_error(&format!("unlinking {name}"), e)),
        }
    }
}

/// Unlinks a segment's name when dropped, if the name still holds that segment.
#[derive(Debug)]
struct RemoveOnDrop {
    dir: Arc<File>,
    name: Option<String>,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = rustix::fs::unlinkat(&*self.dir, name.as_str(), AtFlags::empty());
        }
    }
}

/// A named segment this process created: writable, mapped shared. Dropping it unlinks its name
/// unless the name was unlinked (or reused) already; open views keep their mapping.
#[derive(Debug)]
pub struct NamedSegment {
    id: SegmentId,
    file: File,
    inode: u64,
    dev: u64,
    info: SegmentInfo,
    base_page: usize,
    map: MmapMut,
    remove: RemoveOnDrop,
}

impl NamedSegment {
    /// The page size and backing the segment got.
    pub fn info(&self) -> SegmentInfo {
        self.info
    }

    /// Whether the segment is (or was asked to be) backed by huge pages.
    pub fn huge_pages(&self) -> bool {
        self.info.huge_pages()
    }
}

impl Drop for NamedSegment {
    fn drop(&mut self) {
        // Only our own file is removed: the name may have been unlinked and taken by another.
        let ours = self.remove.name.as_deref().is_some_and(|name| {
            rustix::fs::statat(&*self.remove.dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|s| s.st_ino == self.inode && s.st_dev == self.dev)
        });
        if !ours {
            self.remove.name = None;
        }
    }
}

impl ShmSegment for NamedSegment {
    fn page_size(&self) -> usize {
        self.info().page_size
    }

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

    /// Fails with [`ShmError::Resized`] if another process truncated the file.
    fn check_intact(&self) -> Result<(), ShmError> {
        check_length(&self.file, &self.id, self.map.len())
    }

    /// Faults every page in without changing the bytes.
    fn prefault(&mut self) -> Result<(), ShmError> {
        if !populate_write(&self.map, self.map.len())? {
            touch_pages(&mut self.map, self.base_page);
        }
        Ok(())
    }
}

/// A named segment mapped read-only.
#[derive(Debug)]
pub struct NamedView {
    id: SegmentId,
    inode: u64,
    map: Mmap,
    /// Kept open to check the file's length before each read.
    file: File,
}

impl ShmView for NamedView {
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

    /// Fails with [`ShmError::Resized`] if another process truncated the file.
    fn check_intact(&self) -> Result<(), ShmError> {
        check_length(&self.file, &self.id, self.map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked() {
        for good in ["perfopt", "perfopt_test.1", "a"] {
            assert_eq!(check_prefix(good), Ok(()), "{good}");
        }
        for bad in ["", "per-fopt", "a/b", &"x".repeat(33)] {
            assert!(check_prefix(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let config = NamedShmConfig {
            dir: PathBuf::from("/nonexistent/perfopt"),
            ..NamedShmConfig::default()
        };
        let err = NamedShm::new(config).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/perfopt"), "{err}");
    }
}
