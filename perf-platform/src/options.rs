//! Backend options and what a segment got: its page size and how its pages are backed.

use perf_core::seams::ShmError;
use serde::Serialize;

/// The size of a huge page on x86-64 and aarch64 with 4 KiB base pages.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// The base page size assumed where the platform is not asked.
pub(crate) const SMALL_PAGE: usize = 4096;

/// Whether a backend uses huge pages where the kernel offers them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HugePages {
    /// Use them for segments of 2 MiB and more when the kernel offers them, else 4 KiB pages.
    #[default]
    Auto,
    /// Always use base pages.
    Off,
}

/// Options shared by the shared-memory backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShmOptions {
    /// The largest segment `create` makes and `open` maps, in bytes.
    pub max_segment_len: usize,
    /// Whether to use huge pages.
    pub huge_pages: HugePages,
}

impl ShmOptions {
    /// The default bound on one segment: 64 GiB (on 64-bit targets).
    pub const DEFAULT_MAX_SEGMENT_LEN: usize = if usize::BITS >= 64 { 64 << 30 } else { 1 << 30 };

    /// Checks a requested length against this bound: at least one byte, at most the maximum.
    pub(crate) fn check_len(&self, len: usize) -> Result<(), ShmError> {
        if len == 0 {
            return Err(ShmError::Os(
                "invalid segment length: expected at least 1 byte, got 0".to_owned(),
            ));
        }
        if len > self.max_segment_len {
            return Err(ShmError::NoSpace(len as u64));
        }
        Ok(())
    }
}

impl Default for ShmOptions {
    fn default() -> Self {
        ShmOptions {
            max_segment_len: ShmOptions::DEFAULT_MAX_SEGMENT_LEN,
            huge_pages: HugePages::Auto,
        }
    }
}

/// How a segment's pages are backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageBacking {
    /// Base pages (4 KiB on x86-64).
    Small,
    /// Transparent huge pages were requested for shmem (`MADV_HUGEPAGE`, or the kernel's
    /// `shmem_enabled` is `always`/`within_size`); the kernel uses them where it can.
    TransparentHuge,
    /// Reserved hugetlb pages (`MFD_HUGETLB`), guaranteed huge.
    HugeTlb,
    /// Heap memory of this process (the in-process backend).
    Heap,
}

/// What a segment got from the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SegmentInfo {
    /// The page size the segment is mapped with, in bytes (for transparent huge pages, the
    /// huge page size the kernel may use).
    pub page_size: usize,
    /// How its pages are backed.
    pub backing: PageBacking,
}

impl SegmentInfo {
    /// Base pages of `page_size` bytes.
    pub(crate) const fn small(page_size: usize) -> SegmentInfo {
        SegmentInfo {
            page_size,
            backing: PageBacking::Small,
        }
    }

    /// Whether the segment is (or was asked to be) backed by huge pages.
    pub fn huge_pages(&self) -> bool {
        matches!(
            self.backing,
            PageBacking::TransparentHuge | PageBacking::HugeTlb
        )
    }
}

/// Touches every page of `bytes` without changing it, so that later writes pay no page faults.
pub(crate) fn touch_pages(bytes: &mut [u8], page: usize) {
    let mut i = 0;
    while i < bytes.len() {
        bytes[i] = std::hint::black_box(bytes[i]);
        i += page;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_touched_without_change() {
        let mut bytes: Vec<u8> = (0..=255).cycle().take(3 * 4096 + 7).collect();
        let before = bytes.clone();
        touch_pages(&mut bytes, 4096);
        assert_eq!(bytes, before);
    }

    #[test]
    fn zero_and_oversized_lengths_are_refused() {
        let options = ShmOptions {
            max_segment_len: 1 << 20,
            huge_pages: HugePages::Off,
        };
        assert!(matches!(options.check_len(0), Err(ShmError::Os(m)) if m.contains("got 0")));
        assert_eq!(
            options.check_len((1 << 20) + 1),
            Err(ShmError::NoSpace((1 << 20) + 1))
        );
        assert_eq!(options.check_len(1 << 20), Ok(()));
    }

    #[test]
    fn huge_pages_reports_only_huge_backings() {
        assert!(!SegmentInfo::small(4096).huge_pages());
        let thp = SegmentInfo {
            page_size: HUGE_PAGE,
            backing: PageBacking::TransparentHuge,
        };
        assert!(thp.huge_pages());
    }
}
