//! Huge pages on Linux: which the kernel offers for shmem, and how a segment of a given size
//! gets them.

use std::path::Path;

use crate::detect::ThpMode;
use crate::linux::proc::{MemInfo, read_small, selected_choice};
use crate::options::{HUGE_PAGE, HugePages, SegmentInfo, ShmOptions};

/// The kernel's transparent huge page policy for the internal shmem mount (memfd).
pub(crate) fn thp_shmem_mode() -> ThpMode {
    const BASE: &str = "/sys/kernel/mm/transparent_hugepage";
    let global = read_mode(format!("{BASE}/shmem_enabled"));
    // Since Linux 6.11 each huge page size has its own setting, `inherit` meaning the global one.
    match read_small(format!("{BASE}/hugepages-2048kB/shmem_enabled")) {
        Ok(text) if selected_choice(&text) != Some("inherit") => {
            ThpMode::parse(selected_choice(&text).unwrap_or(""))
        }
        _ => global,
    }
}

fn read_mode(path: String) -> ThpMode {
    read_small(path)
        .ok()
        .and_then(|t| selected_choice(&t).map(ThpMode::parse))
        .unwrap_or(ThpMode::Unknown)
}

/// The transparent huge page policy of the tmpfs mounted at or above `dir`: its `huge=` mount
/// option, overridden by the global `force` and `deny` settings.
pub(crate) fn thp_tmpfs_mode(dir: &Path) -> ThpMode {
    match thp_shmem_mode() {
        ThpMode::Force => return ThpMode::Always,
        ThpMode::Deny => return ThpMode::Never,
        _ => {}
    }
    let Ok(dir) = dir.canonicalize() else {
        return ThpMode::Unknown;
    };
    let Ok(mounts) = read_small("/proc/self/mounts") else {
        return ThpMode::Unknown;
    };
    mount_huge_option(&mounts, &dir.to_string_lossy())
}

/// The `huge=` option of the tmpfs whose mount point is the longest prefix of `dir`.
pub(crate) fn mount_huge_option(mounts: &str, dir: &str) -> ThpMode {
    let mut best: Option<(usize, ThpMode)> = None;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, point, fstype, options, ..] = fields[..] else {
            continue;
        };
        let covers = dir == point
            || point == "/"
            || dir
                .strip_prefix(point)
                .is_some_and(|rest| rest.starts_with('/'));
        if !covers || best.is_some_and(|(len, _)| len > point.len()) {
            continue;
        }
        let mode = if fstype != "tmpfs" {
            ThpMode::Never
        } else {
            options
                .split(',')
                .find_map(|o| o.strip_prefix("huge="))
                .map_or(ThpMode::Never, ThpMode::parse)
        };
        best = Some((point.len(), mode));
    }
    best.map_or(ThpMode::Unknown, |(_, mode)| mode)
}

/// What huge pages a backend may use, read once when it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HugePageSupport {
    /// The transparent huge page policy for the backend's files.
    pub(crate) thp: ThpMode,
    /// Whether a 2 MiB hugetlb pool exists (its free pages are checked at each attempt).
    pub(crate) hugetlb: bool,
}

impl HugePageSupport {
    /// Huge pages for memfd segments, as the kernel offers them now.
    pub(crate) fn for_memfd(options: &ShmOptions) -> HugePageSupport {
        if options.huge_pages == HugePages::Off {
            return HugePageSupport::NONE;
        }
        let hugetlb = MemInfo::read()
            .is_ok_and(|m| m.huge_pages_total > 0 && m.huge_page_size == HUGE_PAGE as u64);
        HugePageSupport {
            thp: thp_shmem_mode(),
            hugetlb,
        }
    }

    /// Huge pages for named segments in `dir` (hugetlb needs a hugetlbfs, so only THP).
    pub(crate) fn for_tmpfs(options: &ShmOptions, dir: &Path) -> HugePageSupport {
        if options.huge_pages == HugePages::Off {
            return HugePageSupport::NONE;
        }
        HugePageSupport {
            thp: thp_tmpfs_mode(dir),
            hugetlb: false,
        }
    }

    /// No huge pages at all.
    pub(crate) const NONE: HugePageSupport = HugePageSupport {
        thp: ThpMode::Never,
        hugetlb: false,
    };

    /// How to back a segment of `len` bytes.
    pub(crate) fn plan(&self, len: usize) -> PagePlan {
        if len < HUGE_PAGE {
            return PagePlan::Small;
        }
        if self.hugetlb && len.is_multiple_of(HUGE_PAGE) {
            return PagePlan::HugeTlb;
        }
        match self.thp {
            ThpMode::Always | ThpMode::WithinSize | ThpMode::Force => PagePlan::ThpByKernel,
            ThpMode::Advise => PagePlan::ThpAdvised,
            ThpMode::Never | ThpMode::Deny | ThpMode::Unknown => PagePlan::Small,
        }
    }
}

/// How one segment is backed, decided before it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PagePlan {
    /// Base pages.
    Small,
    /// The kernel gives huge pages to every shmem file of this size: `fallocate` allocates them.
    ThpByKernel,
    /// The kernel gives huge pages only to mappings marked `MADV_HUGEPAGE`: map, advise, then
    /// populate (`fallocate` has no mapping and would allocate base pages).
    ThpAdvised,
    /// Try `MFD_HUGETLB` first, fall back to `Small` if the pool is short.
    HugeTlb,
}

impl PagePlan {
    /// What a segment made this way reports.
    pub(crate) fn info(self, base_page: usize) -> SegmentInfo {
        use crate::options::PageBacking;
        let backing = match self {
            PagePlan::Small => return SegmentInfo::small(base_page),
            PagePlan::ThpByKernel | PagePlan::ThpAdvised => PageBacking::TransparentHuge,
            PagePlan::HugeTlb => PageBacking::HugeTlb,
        };
        SegmentInfo {
            page_size: HUGE_PAGE,
            backing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "proc /proc proc rw 0 0\n\
        tmpfs /dev/shm tmpfs rw,relatime,size=24683656k 0 0\n\
        tmpfs /dev/shm/big tmpfs rw,huge=advise 0 0\n\
        /dev/vda / ext4 rw 0 0\n";

    #[test]
    fn mount_option_of_the_closest_mount_point_wins() {
        assert_eq!(mount_huge_option(MOUNTS, "/dev/shm"), ThpMode::Never);
        assert_eq!(mount_huge_option(MOUNTS, "/dev/shm/big"), ThpMode::Advise);
        assert_eq!(mount_huge_option(MOUNTS, "/dev/shm/big/x"), ThpMode::Advise);
        assert_eq!(mount_huge_option(MOUNTS, "/dev/shmother"), ThpMode::Never);
        assert_eq!(mount_huge_option("", "/dev/shm"), ThpMode::Unknown);
    }

    #[test]
    fn plans_follow_size_and_kernel_policy() {
        let advise = HugePageSupport {
            thp: ThpMode::Advise,
            hugetlb: false,
        };
        assert_eq!(advise.plan(HUGE_PAGE - 1), PagePlan::Small);
        assert_eq!(advise.plan(HUGE_PAGE + 1), PagePlan::ThpAdvised);
        let always = HugePageSupport {
            thp: ThpMode::Always,
            hugetlb: true,
        };
        assert_eq!(always.plan(4 * HUGE_PAGE), PagePlan::HugeTlb);
        assert_eq!(always.plan(4 * HUGE_PAGE + 4096), PagePlan::ThpByKernel);
        assert_eq!(HugePageSupport::NONE.plan(1 << 30), PagePlan::Small);
    }

    #[test]
    fn plans_report_what_the_segment_gets() {
        assert!(!PagePlan::Small.info(4096).huge_pages());
        assert_eq!(PagePlan::Small.info(4096).page_size, 4096);
        assert_eq!(PagePlan::HugeTlb.info(4096).page_size, HUGE_PAGE);
        assert!(PagePlan::ThpAdvised.info(4096).huge_pages());
    }

    #[test]
    fn switched_off_means_no_huge_pages() {
        let off = ShmOptions {
            huge_pages: HugePages::Off,
            ..ShmOptions::default()
        };
        assert_eq!(HugePageSupport::for_memfd(&off), HugePageSupport::NONE);
        assert_eq!(
            HugePageSupport::for_tmpfs(&off, Path::new("/dev/shm")),
            HugePageSupport::NONE
        );
    }
}
