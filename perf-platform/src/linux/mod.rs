//! The Linux backends (memfd and named segments), run directories, the owner sweeps, and Linux
//! detection.

mod memfd;
mod named;
pub(crate) mod pages;
pub(crate) mod proc;
mod rundir;
mod sweep;
mod sys;
mod system;

pub use memfd::{MemfdSegment, MemfdShm, MemfdView};
pub use named::{NamedSegment, NamedShm, NamedShmConfig, NamedView};
pub use rundir::{RunDir, sweep_stale_run_dirs};
pub use sweep::SweepReport;
pub use system::SystemShm;

use rustix::fs::MemfdFlags;
use rustix::io::Errno;

use crate::detect::{IoUringStatus, PlatformInfo};
use proc::{MemInfo, read_small};

/// Fills in what only Linux can tell.
pub(crate) fn detect_into(info: &mut PlatformInfo) {
    info.thp_shmem = pages::thp_shmem_mode();
    info.thp_page_size = read_small("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    if let Ok(mem) = MemInfo::read() {
        info.hugetlb_page_size = (mem.huge_page_size > 0).then_some(mem.huge_page_size);
        info.hugetlb_pages_total = mem.huge_pages_total;
        info.hugetlb_pages_free = mem.huge_pages_free;
    }
    info.memfd = rustix::fs::memfd_create("perfopt-probe", MemfdFlags::CLOEXEC).is_ok();
    info.io_uring = io_uring_status();
}

/// Probes io_uring: `/proc/sys/kernel/io_uring_disabled` (Linux 6.6) first, then a one-entry
/// `io_uring_setup`, whose ring is closed at once.
fn io_uring_status() -> IoUringStatus {
    if read_small("/proc/sys/kernel/io_uring_disabled").is_ok_and(|t| t.trim() == "2") {
        return IoUringStatus::Disabled;
    }
    let mut params = rustix::io_uring::io_uring_params::default();
    // SAFETY: the parameters are all zero, so no flag (in particular not `ATTACH_WQ`, which
    // would require `wq_fd` to be an open descriptor) asks the kernel to use a descriptor or
    // memory of ours; the returned ring descriptor is owned and closed on drop.
    let ring = unsafe { rustix::io_uring::io_uring_setup(1, &mut params) };
    match ring {
        Ok(_) => IoUringStatus::Available,
        Err(e) if e == Errno::NOSYS => IoUringStatus::Unsupported,
        Err(e) if e == Errno::PERM || e == Errno::ACCESS => IoUringStatus::Disabled,
        Err(_) => IoUringStatus::Unknown,
    }
}
