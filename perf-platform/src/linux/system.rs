//! One backend for a worker that must open whatever a host sends: memfd and named segments alike.

use perf_core::seams::{PlatformShm, SegmentId, ShmError, ShmSegment, ShmView};

use super::{MemfdShm, NamedShm};

/// Opens memfd and named segments alike, and creates segments with the
/// backend chosen at construction (memfd unless named is asked for).
#[derive(Debug)]
pub struct SystemShm {
    memfd: MemfdShm,
    named: NamedShm,
    create_named: bool,
}

impl SystemShm {
    /// A backend that creates memfd segments (or named ones when
    /// `create_named`) and opens both kinds.
    pub fn new(memfd: MemfdShm, named: NamedShm, create_named: bool) -> SystemShm {
        SystemShm {
            memfd,
            named,
            create_named,
        }
    }

    /// The named backend, for sweeping segments of dead owners.
    pub fn named(&self) -> &NamedShm {
        &self.named
    }

    fn creator(&self) -> &dyn PlatformShm {
        if self.create_named {
            &self.named
        } else {
            &self.memfd
        }
    }

    fn backend_for(&self, id: &SegmentId) -> &dyn PlatformShm {
        match id {
            SegmentId::Memfd { .. } => &self.memfd,
            SegmentId::Named(_) => &self.named,
        }
    }
}

impl PlatformShm for SystemShm {
    fn name(&self) -> &'static str {
        self.creator().name()
    }
    fn create(&self, len: usize) -> Result<Box<dyn ShmSegment>, ShmError> {
        self.creator().create(len)
    }
    fn open(&self, id: &SegmentId, len: usize) -> Result<Box<dyn ShmView>, ShmError> {
        self.backend_for(id).open(id, len)
    }
    fn seal(&self, segment: &mut dyn ShmSegment) -> Result<(), ShmError> {
        let id = segment.id().clone();
        self.backend_for(&id).seal(segment)
    }
    fn unlink(&self, id: &SegmentId) -> Result<(), ShmError> {
        self.backend_for(id).unlink(id)
    }
    fn owner_pid(&self, id: &SegmentId) -> Option<u32> {
        self.backend_for(id).owner_pid(id)
    }
    fn still_exists(&self, id: &SegmentId, inode: u64) -> Option<bool> {
        self.backend_for(id).still_exists(id, inode)
    }
}
