//! Platform detection: what the machine offers for shared memory, reported without
//! configuration.

use serde::Serialize;

/// The kernel's transparent huge page policy for shared memory (`shmem_enabled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThpMode {
    /// Huge pages wherever they fit.
    Always,
    /// Huge pages where they fit inside the file's size.
    WithinSize,
    /// Huge pages for mappings marked with `MADV_HUGEPAGE`.
    Advise,
    /// No huge pages.
    Never,
    /// Forbidden for everything, also tmpfs mounts with `huge=`.
    Deny,
    /// Forced on for everything, also tmpfs mounts without `huge=`.
    Force,
    /// Not known: not Linux, no transparent huge page support, or an unknown word.
    Unknown,
}

impl ThpMode {
    /// Reads a `shmem_enabled` word or a tmpfs `huge=` option.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn parse(word: &str) -> ThpMode {
        match word {
            "always" => ThpMode::Always,
            "within_size" => ThpMode::WithinSize,
            "advise" => ThpMode::Advise,
            "never" => ThpMode::Never,
            "deny" => ThpMode::Deny,
            "force" => ThpMode::Force,
            _ => ThpMode::Unknown,
        }
    }
}

/// Whether io_uring can be used (detected only; nothing here uses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IoUringStatus {
    /// `io_uring_setup` made a ring.
    Available,
    /// The kernel has io_uring but refuses it to this process (`io_uring_disabled`, seccomp).
    Disabled,
    /// The kernel has no io_uring (or the platform is not Linux).
    Unsupported,
    /// The probe failed for another reason.
    Unknown,
}

/// What the platform offers, as found by [`detect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlatformInfo {
    /// The operating system (`linux`, `macos`, `windows`, ...).
    pub os: &'static str,
    /// The CPU architecture.
    pub arch: &'static str,
    /// The kernel release (`uname -r`), empty where unknown.
    pub kernel_release: String,
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// The base page size in bytes.
    pub page_size: usize,
    /// The transparent huge page size in bytes, if the kernel has them.
    pub thp_page_size: Option<u64>,
    /// The transparent huge page policy for shmem (memfd).
    pub thp_shmem: ThpMode,
    /// The default hugetlb page size in bytes, if the kernel has hugetlb.
    pub hugetlb_page_size: Option<u64>,
    /// Pages in the hugetlb pool.
    pub hugetlb_pages_total: u64,
    /// Free pages in the hugetlb pool.
    pub hugetlb_pages_free: u64,
    /// Whether io_uring can be used.
    pub io_uring: IoUringStatus,
    /// Whether `memfd_create` works.
    pub memfd: bool,
    /// The backend [`crate::default_shm`] returns.
    pub default_shm: &'static str,
}

/// Detects the platform. It reads a few `/proc` and `/sys` files and makes one probe each of
/// `memfd_create` and `io_uring_setup`, so call it at start-up, not per transfer.
pub fn detect() -> PlatformInfo {
    #[cfg_attr(not(any(target_os = "linux", target_os = "macos")), allow(unused_mut))]
    let mut info = PlatformInfo {
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
        kernel_release: String::new(),
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        page_size: crate::options::SMALL_PAGE,
        thp_page_size: None,
        thp_shmem: ThpMode::Unknown,
        hugetlb_page_size: None,
        hugetlb_pages_total: 0,
        hugetlb_pages_free: 0,
        io_uring: IoUringStatus::Unsupported,
        memfd: false,
        default_shm: crate::default_shm().name(),
    };
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    {
        info.kernel_release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        info.page_size = rustix::param::page_size();
    }
    #[cfg(target_os = "linux")]
    crate::linux::detect_into(&mut info);
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_word_parses_and_others_are_unknown() {
        for (word, mode) in [
            ("always", ThpMode::Always),
            ("within_size", ThpMode::WithinSize),
            ("advise", ThpMode::Advise),
            ("never", ThpMode::Never),
            ("deny", ThpMode::Deny),
            ("force", ThpMode::Force),
            ("sometimes", ThpMode::Unknown),
        ] {
            assert_eq!(ThpMode::parse(word), mode);
        }
    }

    #[test]
    fn detection_reports_this_machine() {
        let info = detect();
        assert_eq!(info.os, std::env::consts::OS);
        assert!(info.cpus >= 1);
        assert!(info.page_size.is_power_of_two(), "{info:?}");
        #[cfg(target_os = "linux")]
        {
            assert!(!info.kernel_release.is_empty());
            assert!(info.memfd, "memfd_create failed on Linux: {info:?}");
            assert_eq!(info.default_shm, "memfd");
            assert!(info.hugetlb_pages_free <= info.hugetlb_pages_total);
        }
    }
}
