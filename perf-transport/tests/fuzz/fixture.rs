//! The real segment references point into, and a backend that counts what it opens.

use std::sync::atomic::{AtomicUsize, Ordering};

use perf_core::{PlatformShm, SegmentId, ShmError, ShmSegment, ShmView};
use perf_platform::{MemfdSegment, MemfdShm};

use crate::grpc_support::payload;

/// The secret every signed case uses.
pub(crate) const SECRET: [u8; 32] = [0x5a; 32];
/// Length of the real segment references may point into.
pub(crate) const SEGMENT_LEN: usize = 64 << 10;

/// The memfd backend, counting every `open`: a segment is mapped only through one.
#[derive(Debug, Default)]
pub(crate) struct CountingShm {
    inner: MemfdShm,
    opens: AtomicUsize,
}

impl CountingShm {
    pub(crate) fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

impl PlatformShm for CountingShm {
    fn name(&self) -> &'static str {
        "counting-memfd"
    }
    fn create(&self, len: usize) -> Result<Box<dyn ShmSegment>, ShmError> {
        self.inner.create(len)
    }
    fn open(&self, id: &SegmentId, len: usize) -> Result<Box<dyn ShmView>, ShmError> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        self.inner.open(id, len)
    }
    fn seal(&self, segment: &mut dyn ShmSegment) -> Result<(), ShmError> {
        self.inner.seal(segment)
    }
    fn unlink(&self, id: &SegmentId) -> Result<(), ShmError> {
        self.inner.unlink(id)
    }
}

/// A real memfd segment of this process, filled with bytes that do not repeat.
pub(crate) struct Fixture {
    segment: MemfdSegment,
    pub(crate) pid: u32,
    pub(crate) fd: i32,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let mut segment = MemfdShm::default()
            .create_segment(SEGMENT_LEN)
            .expect("a memfd segment for the fuzzed references");
        segment.as_mut_slice()[..SEGMENT_LEN].copy_from_slice(&payload(SEGMENT_LEN, 99));
        let SegmentId::Memfd { pid, fd } = *segment.id() else {
            panic!("a memfd segment has a memfd id, got {}", segment.id());
        };
        Fixture { segment, pid, fd }
    }

    pub(crate) fn inode(&self) -> u64 {
        self.segment.inode()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.segment.as_slice()[..SEGMENT_LEN]
    }
}
