//! The in-process backend: segments in heap memory and a registry, so that `open` works within
//! one process. For tests of the layers above; it works on every platform.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::HashMap;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use perf_core::seams::{PlatformShm, SegmentId, ShmError, ShmSegment, ShmView};

use crate::names::{hex, random_bytes};
use crate::options::{PageBacking, SMALL_PAGE, SegmentInfo, touch_pages};

/// Shared memory in the heap of this process, for tests.
///
/// Clones share one registry: a segment created through one clone opens through another, and
/// not through an `InProcessShm` made separately. A segment lives while its creator or a view
/// holds it; `unlink` removes its name earlier. The total size of live segments is bounded by a
/// capacity (1 GiB by default), so tests can run out of shared memory on purpose.
///
/// As with memory shared between processes, a view shows the segment's bytes in place: the
/// producer must not write a segment while a view of it is read (the transfer protocol writes,
/// then sends the reference, then reads).
#[derive(Clone)]
pub struct InProcessShm {
    registry: Arc<Registry>,
}

struct Registry {
    tag: String,
    capacity: usize,
    used: AtomicUsize,
    next: AtomicU64,
    names: Mutex<HashMap<String, Weak<Storage>>>,
}

impl Registry {
    fn names(&self) -> MutexGuard<'_, HashMap<String, Weak<Storage>>> {
        // A panic while the lock was held cannot leave the map inconsistent: every update is
        // a single insert or remove.
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl InProcessShm {
    /// The default capacity of live segments, in bytes.
    pub const DEFAULT_CAPACITY: usize = 1 << 30;

    /// A registry whose live segments may total at most `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> InProcessShm {
        let tag = random_bytes::<8>().map_or_else(|_| "0".repeat(16), |b| hex(&b));
        InProcessShm {
            registry: Arc::new(Registry {
                tag,
                capacity,
                used: AtomicUsize::new(0),
                next: AtomicU64::new(1),
                names: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Bytes held by live segments.
    pub fn used(&self) -> usize {
        self.registry.used.load(Ordering::Acquire)
    }

    /// Names currently registered (live and not unlinked).
    pub fn live_segments(&self) -> usize {
        self.registry
            .names()
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// Creates a zeroed segment of `len` bytes.
    pub fn create_segment(&self, len: usize) -> Result<InProcessSegment, ShmError> {
        if len == 0 {
            return Err(ShmError::Os(
                "invalid segment length: expected at least 1 byte, got 0".to_owned(),
            ));
        }
        let reg = &self.registry;
        let reserved = reg
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(len).filter(|&total| total <= reg.capacity)
            });
        if reserved.is_err() {
            return Err(ShmError::NoSpace(len as u64));
        }
        let Some(bytes) = HeapBytes::zeroed(len) else {
            reg.used.fetch_sub(len, Ordering::AcqRel);
            return Err(ShmError::NoSpace(len as u64));
        };
        let n = reg.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("/inproc-{}-{n}", reg.tag);
        let storage = Arc::new(Storage {
            bytes,
            inode: n,
            name: name.clone(),
            registry: Arc::downgrade(reg),
        });
        reg.names().insert(name.clone(), Arc::downgrade(&storage));
        Ok(InProcessSegment {
            id: SegmentId::Named(name),
            storage,
        })
    }

    /// Opens the first `len` bytes of segment `id` of this registry.
    pub fn open_view(&self, id: &SegmentId, len: usize) -> Result<InProcessView, ShmError> {
        let storage = self.lookup(id)?;
        let size = storage.bytes.len;
        if len == 0 || len > size {
            return Err(ShmError::Denied(
                id.to_string(),
                format!("holds {size} bytes, expected a length of 1 to {size}, got {len}"),
            ));
        }
        Ok(InProcessView {
            id: id.clone(),
            storage,
            len,
        })
    }

    fn lookup(&self, id: &SegmentId) -> Result<Arc<Storage>, ShmError> {
        let SegmentId::Named(name) = id else {
            return Err(ShmError::NotFound(id.to_string()));
        };
        self.registry
            .names()
            .get(name)
            .and_then(Weak::upgrade)
            .ok_or_else(|| ShmError::NotFound(id.to_string()))
    }
}

impl Default for InProcessShm {
    fn default() -> Self {
        InProcessShm::with_capacity(InProcessShm::DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for InProcessShm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessShm")
            .field("tag", &self.registry.tag)
            .field("capacity", &self.registry.capacity)
            .field("used", &self.used())
            .finish()
    }
}

impl PlatformShm for InProcessShm {
    fn name(&self) -> &'static str {
        "in_process"
    }

    fn create(&self, len: usize) -> Result<Box<dyn ShmSegment>, ShmError> {
        Ok(Box::new(self.create_segment(len)?))
    }

    fn open(&self, id: &SegmentId, len: usize) -> Result<Box<dyn ShmView>, ShmError> {
        Ok(Box::new(self.open_view(id, len)?))
    }

    /// Heap segments never change size; this checks that the segment belongs here.
    fn seal(&self, segment: &mut dyn ShmSegment) -> Result<(), ShmError> {
        let storage = self.lookup(segment.id())?;
        if storage.inode != segment.inode() {
            return Err(ShmError::Denied(
                segment.id().to_string(),
                format!(
                    "registered with identity {}, expected {}",
                    storage.inode,
                    segment.inode()
                ),
            ));
        }
        Ok(())
    }

    fn unlink(&self, id: &SegmentId) -> Result<(), ShmError> {
        let SegmentId::Named(name) = id else {
            return Err(ShmError::NotFound(id.to_string()));
        };
        match self.registry.names().remove(name) {
            Some(weak) if weak.strong_count() > 0 => Ok(()),
            _ => Err(ShmError::NotFound(id.to_string())),
        }
    }
}

/// Zeroed heap bytes, freed on drop.
struct HeapBytes {
    ptr: NonNull<u8>,
    len: usize,
}

impl HeapBytes {
    /// `len` zeroed bytes, or `None` if the allocator has none (instead of aborting).
    fn zeroed(len: usize) -> Option<HeapBytes> {
        let layout = Layout::array::<u8>(len).ok()?;
        // SAFETY: `layout` has a non-zero size (callers refuse `len == 0`).
        let ptr = unsafe { alloc_zeroed(layout) };
        NonNull::new(ptr).map(|ptr| HeapBytes { ptr, len })
    }
}

impl Drop for HeapBytes {
    fn drop(&mut self) {
        if let Ok(layout) = Layout::array::<u8>(self.len) {
            // SAFETY: `ptr` came from `alloc_zeroed` with this same layout and is freed once.
            unsafe { dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

// SAFETY: `HeapBytes` owns its allocation like a `Box<[u8]>`; access to the bytes follows the
// shared-memory protocol described on `InProcessShm`.
unsafe impl Send for HeapBytes {}
// SAFETY: as above; `&HeapBytes` hands out nothing but the pointer.
unsafe impl Sync for HeapBytes {}

/// The bytes of one segment, shared by its creator and its views.
struct Storage {
    bytes: HeapBytes,
    inode: u64,
    name: String,
    registry: Weak<Registry>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(reg) = self.registry.upgrade() {
            reg.used.fetch_sub(self.bytes.len, Ordering::AcqRel);
            let mut names = reg.names();
            if names.get(&self.name).is_some_and(|w| w.strong_count() == 0) {
                names.remove(&self.name);
            }
        }
    }
}

/// A heap segment this process created: writable.
pub struct InProcessSegment {
    id: SegmentId,
    storage: Arc<Storage>,
}

impl InProcessSegment {
    /// What the segment got: heap memory.
    pub fn info(&self) -> SegmentInfo {
        SegmentInfo {
            page_size: SMALL_PAGE,
            backing: PageBacking::Heap,
        }
    }
}

impl fmt::Debug for InProcessSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessSegment")
            .field("id", &self.id)
            .field("len", &self.storage.bytes.len)
            .finish()
    }
}

impl ShmSegment for InProcessSegment {
    fn id(&self) -> &SegmentId {
        &self.id
    }

    fn inode(&self) -> u64 {
        self.storage.inode
    }

    fn len(&self) -> usize {
        self.storage.bytes.len
    }

    fn as_slice(&self) -> &[u8] {
        let b = &self.storage.bytes;
        // SAFETY: `ptr` points to `len` initialised bytes that live as long as `storage`;
        // writers and readers take turns by the shared-memory protocol (see `InProcessShm`).
        unsafe { std::slice::from_raw_parts(b.ptr.as_ptr(), b.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        let b = &self.storage.bytes;
        // SAFETY: as in `as_slice`; only the one segment handle, borrowed mutably here, writes.
        unsafe { std::slice::from_raw_parts_mut(b.ptr.as_ptr(), b.len) }
    }

    /// Touches every page without changing the bytes.
    fn prefault(&mut self) -> Result<(), ShmError> {
        touch_pages(self.as_mut_slice(), SMALL_PAGE);
        Ok(())
    }
}

/// A view of a heap segment, read-only.
pub struct InProcessView {
    id: SegmentId,
    storage: Arc<Storage>,
    len: usize,
}

impl fmt::Debug for InProcessView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessView")
            .field("id", &self.id)
            .field("len", &self.len)
            .finish()
    }
}

impl ShmView for InProcessView {
    fn id(&self) -> &SegmentId {
        &self.id
    }

    fn inode(&self) -> u64 {
        self.storage.inode
    }

    fn len(&self) -> usize {
        self.len
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` is at most the storage's length, checked in `open_view`; the bytes live
        // as long as `storage`, and are not written while read (see `InProcessShm`).
        unsafe { std::slice::from_raw_parts(self.storage.bytes.ptr.as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_bounds_live_segments_and_is_given_back() {
        let shm = InProcessShm::with_capacity(10_000);
        let a = shm.create_segment(6_000).unwrap();
        assert_eq!(shm.used(), 6_000);
        assert_eq!(
            shm.create_segment(5_000).unwrap_err(),
            ShmError::NoSpace(5_000)
        );
        drop(a);
        assert_eq!(shm.used(), 0);
        assert_eq!(shm.live_segments(), 0);
        shm.create_segment(10_000).unwrap();
    }

    #[test]
    fn a_view_keeps_the_bytes_after_the_segment_is_dropped() {
        let shm = InProcessShm::default();
        let mut segment = shm.create_segment(16).unwrap();
        segment.as_mut_slice().copy_from_slice(&[7; 16]);
        let view = shm.open_view(segment.id(), 8).unwrap();
        let id = segment.id().clone();
        drop(segment);
        assert_eq!(view.as_slice(), &[7; 8]);
        // The name still resolves while a view lives, and is gone with the last holder.
        assert!(shm.open_view(&id, 1).is_ok());
        drop(view);
        assert_eq!(
            shm.open_view(&id, 1).unwrap_err(),
            ShmError::NotFound(id.to_string())
        );
    }

    #[test]
    fn separate_registries_do_not_see_each_other() {
        let a = InProcessShm::default();
        let b = InProcessShm::default();
        let segment = a.create_segment(1).unwrap();
        assert!(matches!(
            b.open_view(segment.id(), 1),
            Err(ShmError::NotFound(_))
        ));
        assert!(a.clone().open_view(segment.id(), 1).is_ok());
    }

    #[test]
    fn a_segment_of_another_registry_is_not_sealed() {
        let a = InProcessShm::default();
        let b = InProcessShm::default();
        let mut segment = a.create_segment(1).unwrap();
        assert!(b.seal(&mut segment).is_err());
        assert_eq!(a.seal(&mut segment), Ok(()));
    }
}
