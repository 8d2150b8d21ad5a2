//! The contract of every [`PlatformShm`] backend that can be checked through the trait alone:
//! created bytes read back through `open`, a view maps the segment in place, segments are
//! distinct, missing and too-short opens are refused, unlink and drop end a segment, absurd
//! sizes fail cleanly; and a backend without shared memory refuses everything as unsupported.
//!
//! What needs the file system (modes, owners, seals, a second process) is checked by
//! perf-platform's own suite, which calls these functions too.

use super::pattern;
use crate::seams::{PlatformShm, SegmentId, ShmError, ShmSegment};

fn write(segment: &mut dyn ShmSegment, seed: u64) -> Vec<u8> {
    let bytes = pattern(segment.len(), seed);
    segment.as_mut_slice().copy_from_slice(&bytes);
    bytes
}

/// What a backend without a file system view can do, so the suite asks only what it promises.
#[derive(Debug, Clone, Copy)]
pub struct ShmCaps {
    /// Whether `unlink` removes a name that `open` then no longer finds.
    pub named: bool,
    /// An id this backend has certainly never made.
    pub missing: fn() -> SegmentId,
}

/// Segments of several sizes start zeroed and read back byte for byte through `open`, whole
/// and in part.
pub fn created_bytes_read_back_through_open(shm: &dyn PlatformShm) {
    for (i, len) in [1, 4095, 4096, 65_537, (3 << 20) + 5]
        .into_iter()
        .enumerate()
    {
        let mut segment = shm.create(len).unwrap();
        assert_eq!(segment.len(), len);
        assert!(segment.as_slice().iter().all(|&b| b == 0), "not zeroed");
        let bytes = write(&mut *segment, i as u64);
        let view = shm.open(segment.id(), len).unwrap();
        assert_eq!(view.len(), len);
        assert_eq!(view.id(), segment.id());
        assert_eq!(view.inode(), segment.inode());
        assert!(view.as_slice() == bytes.as_slice(), "bytes differ at {len}");
        let half = shm.open(segment.id(), len.div_ceil(2)).unwrap();
        assert_eq!(half.as_slice(), &bytes[..len.div_ceil(2)]);
    }
}

/// A segment written again shows the new bytes to a new view, and prefaulting keeps them.
pub fn a_reused_segment_shows_the_new_bytes(shm: &dyn PlatformShm) {
    let mut segment = shm.create(10_000).unwrap();
    write(&mut *segment, 1);
    drop(shm.open(segment.id(), 10_000).unwrap());
    let second = write(&mut *segment, 2);
    assert!(shm.open(segment.id(), 10_000).unwrap().as_slice() == second);
    segment.prefault().unwrap();
    assert!(segment.as_slice() == second, "prefault changed the bytes");
}

/// A view sees writes made after it was opened: it maps the segment, it is no copy.
pub fn a_view_maps_the_segment_in_place(shm: &dyn PlatformShm) {
    let mut segment = shm.create(8192).unwrap();
    let view = shm.open(segment.id(), 8192).unwrap();
    segment.as_mut_slice()[5000] = 0xab;
    assert_eq!(view.as_slice()[5000], 0xab, "the view is a copy");
}

/// Two segments have different ids and inodes.
pub fn segments_are_distinct(shm: &dyn PlatformShm) {
    let a = shm.create(4096).unwrap();
    let b = shm.create(4096).unwrap();
    assert_ne!(a.id(), b.id());
    assert_ne!(a.inode(), b.inode());
}

/// An id the backend never made is not found.
pub fn missing_segments_are_not_found(shm: &dyn PlatformShm, caps: ShmCaps) {
    let id = (caps.missing)();
    assert!(
        matches!(shm.open(&id, 1), Err(ShmError::NotFound(_))),
        "{id}"
    );
}

/// Opens longer than the segment, or of no bytes, are denied, saying what was expected.
pub fn short_or_empty_opens_are_refused(shm: &dyn PlatformShm) {
    let segment = shm.create(4096).unwrap();
    for len in [4097, 1 << 20, 0] {
        match shm.open(segment.id(), len) {
            Err(ShmError::Denied(id, why)) => {
                assert_eq!(id, segment.id().to_string());
                assert!(why.contains("expected"), "{why}");
            }
            other => panic!("open of {len} bytes gave {:?}", other.map(|v| v.len())),
        }
    }
}

/// Unlink removes a name (a nameless segment lives while its creator holds it), and a mapping
/// made before lives on.
pub fn unlink_removes_the_name(shm: &dyn PlatformShm, caps: ShmCaps) {
    let segment = shm.create(4096).unwrap();
    let id = segment.id().clone();
    let early_view = shm.open(&id, 4096).unwrap();
    shm.unlink(&id).unwrap();
    if caps.named {
        assert!(matches!(shm.open(&id, 4096), Err(ShmError::NotFound(_))));
        assert!(matches!(shm.unlink(&id), Err(ShmError::NotFound(_))));
    } else {
        assert!(shm.open(&id, 4096).is_ok());
    }
    assert_eq!(early_view.as_slice().len(), 4096);
}

/// A dropped segment no longer opens (an id reused at once names another file).
pub fn a_dropped_segment_cannot_be_opened(shm: &dyn PlatformShm) {
    let segment = shm.create(4096).unwrap();
    let (id, inode) = (segment.id().clone(), segment.inode());
    drop(segment);
    match shm.open(&id, 4096) {
        Err(ShmError::NotFound(_)) => {}
        // A memfd descriptor number may be reused at once by another test's segment; the
        // inode then tells them apart.
        Ok(view) => assert_ne!(view.inode(), inode, "{id} still opens after drop"),
        Err(e) => panic!("open after drop gave {e}"),
    }
}

/// Sizes no machine has are [`ShmError::NoSpace`] naming the size, zero is an error, and the
/// backend works afterwards.
pub fn absurd_sizes_fail_cleanly(shm: &dyn PlatformShm) {
    for len in [1usize << 50, usize::MAX] {
        match shm.create(len) {
            Err(ShmError::NoSpace(n)) => assert_eq!(n, len as u64),
            other => panic!("create({len}) gave {:?}", other.map(|s| s.len())),
        }
    }
    assert!(shm.create(0).is_err());
    assert_eq!(shm.create(4096).unwrap().len(), 4096);
}

/// A backend without shared memory refuses every operation as unsupported, naming itself.
pub fn a_backend_without_shared_memory_refuses_everything(shm: &dyn PlatformShm) {
    let id = SegmentId::Named("/perfopt-none".into());
    let unsupported = |r: Result<(), ShmError>| {
        assert!(
            matches!(&r, Err(ShmError::Unsupported(name)) if *name == shm.name()),
            "{r:?}"
        );
    };
    unsupported(shm.create(4096).map(drop));
    unsupported(shm.open(&id, 4096).map(drop));
    unsupported(shm.unlink(&id));
    assert_eq!(shm.still_exists(&id, 1), None);
}

/// Stamps out the [`PlatformShm`] suite as tests in a module `$name`: `$make` is evaluated
/// once per test and gives the backend; `$caps` is its [`ShmCaps`].
#[macro_export]
macro_rules! platform_shm_conformance {
    ($name:ident, $make:expr, $caps:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance::platform_shm as suite;

            #[test]
            fn created_bytes_read_back_through_open() {
                suite::created_bytes_read_back_through_open(&$make);
            }
            #[test]
            fn a_reused_segment_shows_the_new_bytes() {
                suite::a_reused_segment_shows_the_new_bytes(&$make);
            }
            #[test]
            fn a_view_maps_the_segment_in_place() {
                suite::a_view_maps_the_segment_in_place(&$make);
            }
            #[test]
            fn segments_are_distinct() {
                suite::segments_are_distinct(&$make);
            }
            #[test]
            fn missing_segments_are_not_found() {
                suite::missing_segments_are_not_found(&$make, $caps);
            }
            #[test]
            fn short_or_empty_opens_are_refused() {
                suite::short_or_empty_opens_are_refused(&$make);
            }
            #[test]
            fn unlink_removes_the_name() {
                suite::unlink_removes_the_name(&$make, $caps);
            }
            #[test]
            fn a_dropped_segment_cannot_be_opened() {
                suite::a_dropped_segment_cannot_be_opened(&$make);
            }
            #[test]
            fn absurd_sizes_fail_cleanly() {
                suite::absurd_sizes_fail_cleanly(&$make);
            }
        }
    };
}
