//! The memfd backend: anonymous memory files that die with their last descriptor, sealed
//! against shrinking from birth, opened by other processes through `/proc/<pid>/fd/<fd>`.

use std::fs::File;
use std::os::fd::AsRawFd;

use memmap2::{Mmap, MmapMut};
use perf_core::seams::{PlatformShm, SegmentId, ShmError, ShmSegment, ShmView};
use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;

use crate::linux::pages::{HugePageSupport, PagePlan};
use crate::linux::sys::{
    check_memory, check_opened, map_advised, map_read_only, map_shared_rw, os_error,
    populate_write, reserve,
};
use crate::names::random_hex128;
use crate::options::{SegmentInfo, ShmOptions, touch_pages};

/// The seals `seal` adds: no resizing at all, and no further seals.
const RESIZE_SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// Shared memory from `memfd_create` (Linux): the default backend there.
///
/// A segment lives as long as its creator holds the descriptor (or anyone maps it), so a crash
/// leaves nothing behind. Its id is `/proc/<pid>/fd/<fd>`; another process of the same user
/// opens it read-only after checking owner, mode, size and the shrink seal.
#[derive(Debug, Clone)]
pub struct MemfdShm {
    options: ShmOptions,
    huge: HugePageSupport,
    base_page: usize,
}

impl MemfdShm {
    /// A backend with these options; the kernel's huge page offer is read now.
    pub fn new(options: ShmOptions) -> MemfdShm {
        MemfdShm {
            huge: HugePageSupport::for_memfd(&options),
            options,
            base_page: rustix::param::page_size(),
        }
    }

    /// The options it was made with.
    pub fn options(&self) -> &ShmOptions {
        &self.options
    }

    /// Creates a segment of `len` bytes, owner-only, with its memory reserved; huge pages when
    /// the kernel offers them and `len` is at least 2 MiB, else (or on any failure) base pages.
    pub fn create_segment(&self, len: usize) -> Result<MemfdSegment, ShmError> {
        self.options.check_len(len)?;
        check_memory(len)?;
        let plan = self.huge.plan(len);
        if plan == PagePlan::HugeTlb {
            if let Ok(segment) = self.create_planned(len, PagePlan::HugeTlb) {
                return Ok(segment);
            }
            let without_hugetlb = HugePageSupport {
                hugetlb: false,
                ..self.huge
            };
            return self.create_planned(len, without_hugetlb.plan(len));
        }
        self.create_planned(len, plan)
    }

    /// Creates a segment exactly as `plan` says, without falling back.
    pub(crate) fn create_planned(
        &self,
        len: usize,
        plan: PagePlan,
    ) -> Result<MemfdSegment, ShmError> {
        let name = format!("perfopt-{}", random_hex128()?);
        let mut flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        if plan == PagePlan::HugeTlb {
            flags |= MemfdFlags::HUGETLB | MemfdFlags::HUGE_2MB;
        }
        let file = File::from(
            rustix::fs::memfd_create(&name, flags).map_err(|e| os_error("memfd_create", e))?,
        );
        let (map, plan) = if plan == PagePlan::ThpAdvised {
            map_advised(&file, len)?
        } else {
            reserve(&file, len)?;
            (map_shared_rw(&file, len)?, plan)
        };
        // Nobody may ever shrink it, so a reader's mapping cannot fault past the end.
        rustix::fs::fcntl_add_seals(&file, SealFlags::SHRINK)
            .map_err(|e| os_error("fcntl(F_ADD_SEALS)", e))?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(0o600)).map_err(|e| os_error("fchmod", e))?;
        let inode = rustix::fs::fstat(&file)
            .map_err(|e| os_error("fstat", e))?
            .st_ino;
        Ok(MemfdSegment {
            id: SegmentId::Memfd {
                pid: std::process::id(),
                fd: file.as_raw_fd(),
            },
            inode,
            info: plan.info(self.base_page),
            base_page: self.base_page,
            file,
            map,
        })
    }

    /// Opens the segment `id` of another process (or this one) read-only, after its checks.
    pub fn open_view(&self, id: &SegmentId, len: usize) -> Result<MemfdView, ShmError> {
        let &SegmentId::Memfd { pid, fd } = id else {
            return Err(ShmError::Denied(
                id.to_string(),
                "expected a memfd segment id, got a named one".to_owned(),
            ));
        };
        check_open_len(id, len, self.options.max_segment_len)?;
        if fd < 0 || pid == 0 {
            return Err(ShmError::NotFound(id.to_string()));
        }
        let path = format!("/proc/{pid}/fd/{fd}");
        // Non-blocking so that a descriptor naming a pipe cannot hang us; no controlling tty.
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let file = match rustix::fs::open(&path, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(e) if e == Errno::NOENT || e == Errno::SRCH => {
                return Err(ShmError::NotFound(id.to_string()));
            }
            Err(e) if e == Errno::ACCESS || e == Errno::PERM => {
                return Err(ShmError::Denied(
                    id.to_string(),
                    format!("opening {path} was refused: {e}"),
                ));
            }
            Err(e) => return Err(os_error(&format!("opening {path}"), e)),
        };
        let stat = rustix::fs::fstat(&file).map_err(|e| os_error("fstat", e))?;
        check_opened(&stat, id, len)?;
        let seals = rustix::fs::fcntl_get_seals(&file).map_err(|_| {
            ShmError::Denied(
                id.to_string(),
                "expected a memfd, found a file that cannot be sealed".to_owned(),
            )
        })?;
        if !seals.contains(SealFlags::SHRINK) {
            return Err(ShmError::Denied(
                id.to_string(),
                "not sealed against shrinking, expected a segment made by MemfdShm".to_owned(),
            ));
        }
        Ok(MemfdView {
            id: id.clone(),
            inode: stat.st_ino,
            map: map_read_only(&file, len)?,
        })
    }
}

/// Refuses to open zero bytes or more than the configured maximum.
pub(crate) fn check_open_len(id: &SegmentId, len: usize, max: usize) -> Result<(), ShmError> {
    if len == 0 || len > max {
        return Err(ShmError::Denied(
            id.to_string(),
            format!("expected a length of 1 to {max} bytes, got {len}"),
        ));
    }
    Ok(())
}

impl Default for MemfdShm {
    fn default() -> Self {
        MemfdShm::new(ShmOptions::default())
    }
}

impl PlatformShm for MemfdShm {
    fn name(&self) -> &'static str {
        "memfd"
    }

    fn create(&self, len: usize) -> Result<Box<dyn ShmSegment>, ShmError> {
        Ok(Box::new(self.create_segment(len)?))
    }

    fn open(&self, id: &SegmentId, len: usize) -> Result<Box<dyn ShmView>, ShmError> {
        Ok(Box::new(self.open_view(id, len)?))
    }

    /// Seals a segment of this process against any resizing. The segment is reached through
    /// `/proc/self/fd/<fd>` and must have the inode it reports, so a descriptor reused for
    /// another file is never sealed.
    fn seal(&self, segment: &mut dyn ShmSegment) -> Result<(), ShmError> {
        let id = segment.id().clone();
        let SegmentId::Memfd { pid, fd } = id else {
            return Err(ShmError::Denied(
                id.to_string(),
                "expected a memfd segment id, got a named one".to_owned(),
            ));
        };
        if pid != std::process::id() {
            return Err(ShmError::Denied(
                id.to_string(),
                format!(
                    "owned by process {pid}, expected this process ({})",
                    std::process::id()
                ),
            ));
        }
        let flags = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let file = rustix::fs::open(format!("/proc/self/fd/{fd}"), flags, Mode::empty())
            .map(File::from)
            .map_err(|_| ShmError::NotFound(id.to_string()))?;
        let inode = rustix::fs::fstat(&file)
            .map_err(|e| os_error("fstat", e))?
            .st_ino;
        if inode != segment.inode() {
            return Err(ShmError::Denied(
                id.to_string(),
                format!(
                    "descriptor holds inode {inode}, expected the segment's inode {}",
                    segment.inode()
                ),
            ));
        }
        seal_file(&file, &id)
    }

    /// Whether `/proc/<pid>/fd/<fd>` still leads to the file with `inode`: the creator closes
    /// the descriptor when it releases the segment.
    fn still_exists(&self, id: &SegmentId, inode: u64) -> Option<bool> {
        let &SegmentId::Memfd { pid, fd } = id else {
            return Some(false);
        };
        match rustix::fs::stat(format!("/proc/{pid}/fd/{fd}")) {
            Ok(stat) => Some(stat.st_ino == inode),
            Err(e) if e == Errno::NOENT || e == Errno::SRCH => Some(false),
            Err(_) => None,
        }
    }

    /// Nothing to remove: a memfd segment has no name and dies with its last descriptor.
    fn unlink(&self, id: &SegmentId) -> Result<(), ShmError> {
        match id {
            SegmentId::Memfd { .. } => Ok(()),
            SegmentId::Named(_) => Err(ShmError::Denied(
                id.to_string(),
                "expected a memfd segment id, got a named one".to_owned(),
            )),
        }
    }
}

/// Adds the resize seals unless they are there already.
fn seal_file(file: &File, id: &SegmentId) -> Result<(), ShmError> {
    let seals = rustix::fs::fcntl_get_seals(file).map_err(|e| os_error("fcntl(F_GET_SEALS)", e))?;
    if seals.contains(RESIZE_SEALS) {
        return Ok(());
    }
    rustix::fs::fcntl_add_seals(file, RESIZE_SEALS)
        .map_err(|e| os_error(&format!("sealing {id}"), e))
}

/// A memfd segment this process created: writable, mapped shared.
#[derive(Debug)]
pub struct MemfdSegment {
    id: SegmentId,
    inode: u64,
    info: SegmentInfo,
    base_page: usize,
    map: MmapMut,
    // The descriptor is the segment's identity (`/proc/<pid>/fd/<fd>`); dropped after `map`.
    file: File,
}

impl MemfdSegment {
    /// The page size and backing the segment got.
    pub fn info(&self) -> SegmentInfo {
        self.info
    }

    /// Whether the segment is (or was asked to be) backed by huge pages.
    pub fn huge_pages(&self) -> bool {
        self.info.huge_pages()
    }

    /// Seals the segment against any resizing.
    pub fn seal(&mut self) -> Result<(), ShmError> {
        seal_file(&self.file, &self.id)
    }
}

impl ShmSegment for MemfdSegment {
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

    /// Faults every page in without changing the bytes (`MADV_POPULATE_WRITE`, or a touch of
    /// each page on kernels before 5.14).
    fn prefault(&mut self) -> Result<(), ShmError> {
        if !populate_write(&self.map, self.map.len())? {
            touch_pages(&mut self.map, self.base_page);
        }
        Ok(())
    }
}

/// A memfd segment of another process (or this one), mapped read-only.
#[derive(Debug)]
pub struct MemfdView {
    id: SegmentId,
    inode: u64,
    map: Mmap,
}

impl ShmView for MemfdView {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::HUGE_PAGE;

    #[test]
    fn the_advised_path_maps_and_keeps_the_bytes() {
        let shm = MemfdShm::default();
        let mut segment = shm
            .create_planned(2 * HUGE_PAGE, PagePlan::ThpAdvised)
            .unwrap();
        segment.as_mut_slice()[HUGE_PAGE + 1] = 7;
        let view = shm.open_view(segment.id(), 2 * HUGE_PAGE).unwrap();
        assert_eq!(view.as_slice()[HUGE_PAGE + 1], 7);
    }

    #[test]
    fn a_hugetlb_attempt_fails_cleanly_without_free_pages() {
        let free = crate::linux::proc::MemInfo::read().unwrap().huge_pages_free;
        let shm = MemfdShm::default();
        match shm.create_planned(HUGE_PAGE, PagePlan::HugeTlb) {
            Ok(segment) => {
                assert!(free > 0, "hugetlb segment made with no free hugetlb pages");
                assert!(segment.huge_pages());
            }
            Err(e) => assert_eq!(free, 0, "hugetlb failed with {free} free pages: {e}"),
        }
        // The public path falls back to base pages whatever happened above.
        let segment = shm.create_segment(HUGE_PAGE).unwrap();
        assert_eq!(segment.len(), HUGE_PAGE);
    }

    #[test]
    fn sealing_twice_is_fine() {
        let mut segment = MemfdShm::default().create_segment(4096).unwrap();
        segment.seal().unwrap();
        segment.seal().unwrap();
    }
}
