//! System-call helpers shared by the Linux backends: reserving space, mapping, and the checks a
//! segment passes before it is mapped.

use std::fs::File;
use std::io;

use memmap2::{Advice, Mmap, MmapMut, MmapOptions};
use perf_core::seams::{SegmentId, ShmError};
use rustix::fs::{FallocateFlags, FileType, Stat};
use rustix::io::Errno;

use crate::linux::pages::PagePlan;
use crate::linux::proc::MemInfo;

/// Segments from this size on are checked against `MemAvailable` before space is reserved, so
/// that a large segment is refused instead of pushing the machine into the OOM killer.
const MEMORY_CHECK_FROM: usize = 16 << 20;

/// How many times an interrupted `fallocate` is retried.
const FALLOCATE_RETRIES: usize = 8;

/// An operating-system failure of `what`.
pub(crate) fn os_error(what: &str, err: impl std::fmt::Display) -> ShmError {
    ShmError::Os(format!("{what} failed: {err}"))
}

/// Whether `err` means that memory or space ran out.
fn is_out_of_space(err: Errno) -> bool {
    err == Errno::NOSPC || err == Errno::NOMEM || err == Errno::FBIG || err == Errno::DQUOT
}

/// Refuses a segment of `len` bytes when it is larger than the memory available now (checked
/// only for large segments; small ones cost a `/proc/meminfo` read more than they risk).
pub(crate) fn check_memory(len: usize) -> Result<(), ShmError> {
    if len < MEMORY_CHECK_FROM {
        return Ok(());
    }
    match MemInfo::read() {
        Ok(info) if len as u64 > info.available => Err(ShmError::NoSpace(len as u64)),
        _ => Ok(()),
    }
}

/// Sets the file's size to `len` and reserves every byte of it (`fallocate`), so that running
/// out of space is an error now rather than a SIGBUS when a page is first touched.
pub(crate) fn reserve(file: &File, len: usize) -> Result<(), ShmError> {
    set_size(file, len)?;
    allocate(file, len)
}

/// Sets the file's size to `len` without reserving space.
pub(crate) fn set_size(file: &File, len: usize) -> Result<(), ShmError> {
    rustix::fs::ftruncate(file, len as u64).map_err(|e| {
        if is_out_of_space(e) || e == Errno::INVAL {
            ShmError::NoSpace(len as u64)
        } else {
            os_error("ftruncate", e)
        }
    })
}

/// Reserves the first `len` bytes of the file (`fallocate`, which is what `posix_fallocate`
/// calls on Linux), retrying a few times when interrupted by a signal.
pub(crate) fn allocate(file: &File, len: usize) -> Result<(), ShmError> {
    let mut attempts = 0;
    loop {
        match rustix::fs::fallocate(file, FallocateFlags::empty(), 0, len as u64) {
            Ok(()) => return Ok(()),
            Err(e) if e == Errno::INTR && attempts < FALLOCATE_RETRIES => attempts += 1,
            Err(e) if is_out_of_space(e) => return Err(ShmError::NoSpace(len as u64)),
            Err(e) => return Err(os_error("fallocate", e)),
        }
    }
}

/// Faults every page of `map` in for writing (`MADV_POPULATE_WRITE`, Linux 5.14): memory that
/// cannot be had is an error here, not a fault later. `Ok(false)` if the kernel is too old.
pub(crate) fn populate_write(map: &MmapMut, len: usize) -> Result<bool, ShmError> {
    match map.advise(Advice::PopulateWrite) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => Ok(false),
        Err(e)
            if is_out_of_space_io(&e) || e.raw_os_error() == Some(Errno::FAULT.raw_os_error()) =>
        {
            Err(ShmError::NoSpace(len as u64))
        }
        Err(e) => Err(os_error("madvise(MADV_POPULATE_WRITE)", e)),
    }
}

fn is_out_of_space_io(err: &io::Error) -> bool {
    err.raw_os_error()
        .is_some_and(|code| is_out_of_space(Errno::from_raw_os_error(code)))
}

/// Maps the first `len` bytes of `file` shared and writable.
pub(crate) fn map_shared_rw(file: &File, len: usize) -> Result<MmapMut, ShmError> {
    // SAFETY: `file` is a shared-memory file this process created, reserved to at least `len`
    // bytes (so no page of the mapping lies past its end), opened by other processes read-only;
    // the mapping is owned by the returned `MmapMut`, which unmaps it on drop.
    let map = unsafe { MmapOptions::new().len(len).map_mut(file) };
    map.map_err(|e| map_error(e, len))
}

/// Maps the first `len` bytes of `file` shared and read-only; the caller checked its size.
pub(crate) fn map_read_only(file: &File, len: usize) -> Result<Mmap, ShmError> {
    // SAFETY: the caller checked that `file` is a regular file of this user holding at least
    // `len` bytes, so every page of the mapping is backed; the mapping is owned by the returned
    // `Mmap`. The bytes may change under it only if the owner breaks the transfer protocol (see
    // the crate docs).
    let map = unsafe { MmapOptions::new().len(len).map(file) };
    map.map_err(|e| map_error(e, len))
}

fn map_error(err: io::Error, len: usize) -> ShmError {
    if is_out_of_space_io(&err) {
        ShmError::NoSpace(len as u64)
    } else {
        os_error("mmap", err)
    }
}

/// Sizes, maps and advises huge pages, then faults the pages in: with `shmem_enabled=advise`
/// only a marked mapping gets huge pages, and `fallocate` has no mapping. Faulting in with
/// `MADV_POPULATE_WRITE` reports a lack of memory as an error, as `fallocate` would.
pub(crate) fn map_advised(file: &File, len: usize) -> Result<(MmapMut, PagePlan), ShmError> {
    set_size(file, len)?;
    let map = map_shared_rw(file, len)?;
    let plan = match map.advise(Advice::HugePage) {
        Ok(()) => PagePlan::ThpAdvised,
        Err(_) => PagePlan::Small,
    };
    if !populate_write(&map, len)? {
        allocate(file, len)?;
    }
    Ok((map, plan))
}

/// Checks an opened segment before it is mapped: a regular file of this user, mode exactly
/// 0600 (0000 means its creator has not finished it), holding at least `len` bytes.
pub(crate) fn check_opened(stat: &Stat, id: &SegmentId, len: usize) -> Result<(), ShmError> {
    let denied = |why: String| ShmError::Denied(id.to_string(), why);
    let mode = stat.st_mode;
    if FileType::from_raw_mode(mode) != FileType::RegularFile {
        return Err(denied(format!(
            "expected a regular file, found file type {:#o}",
            mode & 0o170_000
        )));
    }
    let euid = rustix::process::geteuid().as_raw();
    if stat.st_uid != euid {
        return Err(denied(format!(
            "owned by uid {}, expected this user (uid {euid})",
            stat.st_uid
        )));
    }
    let perms = mode & 0o777;
    if perms & 0o077 != 0 {
        return Err(denied(format!(
            "mode {perms:04o} lets other users in, expected 0600"
        )));
    }
    if perms != 0o600 {
        return Err(denied(format!(
            "mode {perms:04o}, expected 0600 (a segment is 0000 until its creator has sized it)"
        )));
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size < len as u64 {
        return Err(denied(format!(
            "holds {size} bytes, expected at least {len}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn stat_of(file: &File) -> Stat {
        rustix::fs::fstat(file).unwrap()
    }

    #[test]
    fn a_private_file_of_the_right_size_passes_and_others_do_not() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(8192).unwrap();
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let id = SegmentId::Named("/t".to_owned());
        assert_eq!(check_opened(&stat_of(&file), &id, 8192), Ok(()));
        let short = check_opened(&stat_of(&file), &id, 8193).unwrap_err();
        assert!(
            short
                .to_string()
                .contains("holds 8192 bytes, expected at least 8193")
        );
        for (mode, words) in [(0o644, "lets other users in"), (0o000, "0000 until")] {
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .unwrap();
            let err = check_opened(&stat_of(&file), &id, 1).unwrap_err();
            assert!(
                matches!(&err, ShmError::Denied(_, why) if why.contains(words)),
                "{err}"
            );
        }
    }

    #[test]
    fn a_directory_is_not_a_segment() {
        let dir = File::open(std::env::temp_dir()).unwrap();
        let id = SegmentId::Named("/d".to_owned());
        let err = check_opened(&stat_of(&dir), &id, 1).unwrap_err();
        assert!(err.to_string().contains("expected a regular file"), "{err}");
    }

    #[test]
    fn small_segments_skip_the_memory_check_and_huge_ones_fail_it() {
        assert_eq!(check_memory(4096), Ok(()));
        assert_eq!(check_memory(1 << 50), Err(ShmError::NoSpace(1 << 50)));
    }
}
