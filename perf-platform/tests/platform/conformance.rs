//! One conformance suite for every `PlatformShm` backend, stamped out per backend by
//! `conformance_suite!` with the capabilities that backend has: perf-core's suite of what the
//! trait alone can check (`perf_core::conformance::platform_shm`), and here what needs the file
//! system (modes, owners, seals, resizing, a second process).

use std::path::PathBuf;

use perf_core::conformance::platform_shm::ShmCaps;
use perf_core::seams::{PlatformShm, SegmentId, ShmError, ShmSegment};
#[cfg(target_os = "linux")]
use xxhash_rust::xxh3::xxh3_64;

#[cfg(target_os = "linux")]
use crate::child::{ReadOutcome, read_in_child};

/// Which backend a second process uses.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildBackend {
    Memfd,
    Named,
}

/// The variant name of an error.
pub(crate) fn kind(e: &ShmError) -> &'static str {
    match e {
        ShmError::Unsupported(_) => "unsupported",
        ShmError::NoSpace(_) => "no_space",
        ShmError::NotFound(_) => "not_found",
        ShmError::Denied(..) => "denied",
        ShmError::SealUnsupported(_) => "seal_unsupported",
        ShmError::Invalid(_) => "invalid",
        ShmError::Os(_) => "os",
        ShmError::Resized { .. } => "resized",
    }
}

/// What a backend can do, so the suite asks only what it promises.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    /// Where a segment's backing file is, for backends that have one.
    pub(crate) path: Option<fn(&SegmentId) -> PathBuf>,
    /// Whether `unlink` removes a name that `open` then no longer finds.
    pub(crate) named: bool,
    /// Whether `seal` forbids resizing (memfd); otherwise it must fail or be a no-op.
    pub(crate) sealable: bool,
    /// Which backend a second process opens segments with, if any.
    pub(crate) child: Option<ChildBackend>,
    /// The directory named segments live in (for the child).
    pub(crate) dir: &'static str,
    /// An id this backend has certainly never made.
    pub(crate) missing: fn() -> SegmentId,
    /// Whether the backend tells who made a segment and whether it still exists (the other
    /// side's upkeep needs both).
    pub(crate) knows_owners: bool,
}

impl Caps {
    /// What perf-core's suite asks of the backend.
    pub(crate) fn trait_caps(self) -> ShmCaps {
        ShmCaps {
            named: self.named,
            missing: self.missing,
        }
    }
}

pub(crate) use perf_core::conformance::pattern;

fn write(segment: &mut dyn ShmSegment, seed: u64) -> Vec<u8> {
    let bytes = pattern(segment.len(), seed);
    segment.as_mut_slice().copy_from_slice(&bytes);
    bytes
}

pub(crate) fn segments_are_owner_only(shm: &dyn PlatformShm, caps: Caps) {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = caps.path else {
        return;
    };
    let segment = shm.create(4096).unwrap();
    let meta = std::fs::metadata(path(segment.id())).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "mode {:o}", meta.mode());
    assert_eq!(meta.uid(), euid());
    assert_eq!(meta.ino(), segment.inode());
}

/// This process's effective uid, read from `/proc/self/status` (the tests use no libc).
pub(crate) fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

pub(crate) fn loose_or_foreign_segments_are_refused(shm: &dyn PlatformShm, caps: Caps) {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = caps.path else {
        return;
    };
    let segment = shm.create(4096).unwrap();
    let path = path(segment.id());
    let set_mode = |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
    for (mode, words) in [
        (0o666, "lets other users in"),
        (0o640, "lets other users in"),
        (0o000, "expected 0600"),
    ] {
        set_mode(mode).unwrap();
        match shm.open(segment.id(), 4096) {
            Err(ShmError::Denied(_, why)) => assert!(
                why.contains(words) || why.contains("refused"),
                "{mode:o}: {why}"
            ),
            other => panic!("mode {mode:o} gave {:?}", other.map(|v| v.len())),
        }
    }
    set_mode(0o600).unwrap();
    assert!(shm.open(segment.id(), 4096).is_ok());
    if euid() != 0 {
        eprintln!("not root: cannot give a segment to another user, foreign-owner case skipped");
        return;
    }
    std::os::unix::fs::chown(&path, Some(65_534), Some(65_534)).unwrap();
    match shm.open(segment.id(), 4096) {
        Err(ShmError::Denied(_, why)) => assert!(why.contains("owned by uid 65534"), "{why}"),
        other => panic!("a foreign segment gave {:?}", other.map(|v| v.len())),
    }
    std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
}

pub(crate) fn sealing_forbids_resizing(shm: &dyn PlatformShm, caps: Caps) {
    let mut sealed = shm.create(8192).unwrap();
    let result = shm.seal(&mut *sealed);
    if !caps.sealable {
        if caps.path.is_some() {
            assert!(result.is_err(), "a backend without seals claimed to seal");
        } else {
            result.unwrap();
        }
        return;
    }
    result.unwrap();
    shm.seal(&mut *sealed).unwrap();
    let path = caps.path.unwrap();
    let open_rw = |s: &dyn ShmSegment| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path(s.id()))
            .unwrap()
    };
    // Unsealed: growing works (so the test can tell), shrinking never does.
    let loose = shm.create(8192).unwrap();
    let file = open_rw(&*loose);
    assert!(file.set_len(4096).is_err(), "shrinking was allowed");
    file.set_len(16_384).unwrap();
    let file = open_rw(&*sealed);
    assert!(
        file.set_len(16_384).is_err(),
        "growing a sealed segment was allowed"
    );
    assert!(
        file.set_len(4096).is_err(),
        "shrinking a sealed segment was allowed"
    );
    assert_eq!(shm.open(sealed.id(), 8192).unwrap().len(), 8192);
}

pub(crate) fn the_creator_and_the_life_of_a_segment_are_known(shm: &dyn PlatformShm, caps: Caps) {
    let segment = shm.create(4096).unwrap();
    let (id, inode) = (segment.id().clone(), segment.inode());
    if !caps.knows_owners {
        assert_eq!(shm.still_exists(&id, inode), None);
        return;
    }
    assert_eq!(shm.owner_pid(&id), Some(std::process::id()));
    assert_eq!(shm.still_exists(&id, inode), Some(true));
    assert_eq!(
        shm.still_exists(&id, inode.wrapping_add(1)),
        Some(false),
        "another file under the same id counts as the segment"
    );
    let view = shm.open(&id, 4096).unwrap();
    drop(segment);
    // A reader's own mapping does not keep the segment alive for its creator.
    assert_eq!(shm.still_exists(&id, inode), Some(false));
    assert_eq!(view.len(), 4096);
    assert_eq!(shm.still_exists(&(caps.missing)(), inode), Some(false));
}

pub(crate) fn a_resized_segment_is_detected_before_use(shm: &dyn PlatformShm, caps: Caps) {
    let segment = shm.create(16_384).unwrap();
    let view = shm.open(segment.id(), 16_384).unwrap();
    segment.check_intact().unwrap();
    view.check_intact().unwrap();
    let (Some(path), false) = (caps.path, caps.sealable) else {
        // Sealed memory files and heap memory cannot be resized by anyone else.
        return;
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path(segment.id()))
        .unwrap();
    file.set_len(4096).unwrap();
    for err in [segment.check_intact(), view.check_intact()] {
        match err {
            Err(ShmError::Resized { mapped, found, .. }) => {
                assert_eq!((mapped, found), (16_384, 4096));
            }
            other => panic!("a truncated segment gave {other:?}"),
        }
    }
    // Growing it back to the mapped length is harmless again.
    file.set_len(16_384).unwrap();
    view.check_intact().unwrap();
}

#[cfg(target_os = "linux")]
pub(crate) fn another_process_reads_the_same_bytes(shm: &dyn PlatformShm, caps: Caps) {
    let Some(backend) = caps.child else {
        return;
    };
    let dir = std::path::Path::new(caps.dir);
    let len = (1 << 20) + 3;
    let mut segment = shm.create(len).unwrap();
    let bytes = write(&mut *segment, 77);
    match read_in_child(backend, dir, segment.id(), len) {
        ReadOutcome::Read { len: n, hash, maps } => {
            assert_eq!(n, len);
            assert_eq!(hash, xxh3_64(&bytes), "the child read other bytes");
            assert!(maps >= 1, "the child's mapping was not visible in its maps");
        }
        refused => panic!("the child could not read: {refused:?}"),
    }
    // Too long: refused in the child, and nothing of the segment is mapped there.
    match read_in_child(backend, dir, segment.id(), len + 1) {
        ReadOutcome::Refused { kind, maps } => {
            assert_eq!(kind, "denied");
            assert_eq!(maps, 0, "a refused open left a mapping");
        }
        read => panic!("the child read past the end: {read:?}"),
    }
}

/// Stamps out the suite for one backend: `$make` builds it, `$caps` says what it can do.
macro_rules! conformance_suite {
    ($name:ident, $make:expr, $caps:expr) => {
        mod $name {
            use super::*;
            use perf_core::conformance::platform_shm as trait_suite;
            use $crate::conformance as suite;

            fn shm() -> Box<dyn perf_core::seams::PlatformShm> {
                Box::new($make)
            }

            #[test]
            fn created_bytes_read_back_through_open() {
                trait_suite::created_bytes_read_back_through_open(&*shm());
            }
            #[test]
            fn a_reused_segment_shows_the_new_bytes() {
                trait_suite::a_reused_segment_shows_the_new_bytes(&*shm());
            }
            #[test]
            fn a_view_maps_the_segment_in_place() {
                trait_suite::a_view_maps_the_segment_in_place(&*shm());
            }
            #[test]
            fn segments_are_distinct() {
                trait_suite::segments_are_distinct(&*shm());
            }
            #[test]
            fn segments_are_owner_only() {
                suite::segments_are_owner_only(&*shm(), $caps);
            }
            #[test]
            fn missing_segments_are_not_found() {
                trait_suite::missing_segments_are_not_found(&*shm(), $caps.trait_caps());
            }
            #[test]
            fn short_or_empty_opens_are_refused() {
                trait_suite::short_or_empty_opens_are_refused(&*shm());
            }
            #[test]
            fn loose_or_foreign_segments_are_refused() {
                suite::loose_or_foreign_segments_are_refused(&*shm(), $caps);
            }
            #[test]
            fn unlink_removes_the_name() {
                trait_suite::unlink_removes_the_name(&*shm(), $caps.trait_caps());
            }
            #[test]
            fn a_dropped_segment_cannot_be_opened() {
                trait_suite::a_dropped_segment_cannot_be_opened(&*shm());
            }
            #[test]
            fn sealing_forbids_resizing() {
                suite::sealing_forbids_resizing(&*shm(), $caps);
            }
            #[test]
            fn the_creator_and_the_life_of_a_segment_are_known() {
                suite::the_creator_and_the_life_of_a_segment_are_known(&*shm(), $caps);
            }
            #[test]
            fn a_resized_segment_is_detected_before_use() {
                suite::a_resized_segment_is_detected_before_use(&*shm(), $caps);
            }
            #[test]
            fn absurd_sizes_fail_cleanly() {
                trait_suite::absurd_sizes_fail_cleanly(&*shm());
            }
            #[cfg(target_os = "linux")]
            #[test]
            fn another_process_reads_the_same_bytes() {
                suite::another_process_reads_the_same_bytes(&*shm(), $caps);
            }
        }
    };
}

pub(crate) use conformance_suite;
