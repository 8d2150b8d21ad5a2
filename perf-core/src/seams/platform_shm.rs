//! The `PlatformShm` seam: create, open, seal and unlink shared-memory segments, the segment
//! and view a backend hands out, and a backend without shared memory.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Names a shared-memory segment across processes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentId {
    /// An anonymous memory file, reachable as `/proc/<pid>/fd/<fd>`.
    Memfd {
        /// The owning process.
        pid: u32,
        /// The descriptor in that process.
        fd: i32,
    },
    /// A named segment (e.g. under /dev/shm).
    Named(String),
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentId::Memfd { pid, fd } => write!(f, "/proc/{pid}/fd/{fd}"),
            SegmentId::Named(name) => f.write_str(name),
        }
    }
}

/// Why a shared-memory operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShmError {
    /// This backend cannot provide shared memory here.
    #[error("shared memory is not supported by backend {0}")]
    Unsupported(&'static str),
    /// No space is left for a segment of this size.
    #[error("no space for a segment of {0} bytes")]
    NoSpace(u64),
    /// The segment does not exist.
    #[error("segment {0} not found")]
    NotFound(String),
    /// The segment exists but may not be used by this process.
    #[error("segment {0} is not accessible: {1}")]
    Denied(String, String),
    /// The backend cannot seal segments (only memory files take seals).
    #[error("segment {0} cannot be sealed: only memfd segments take seals")]
    SealUnsupported(String),
    /// The request itself is invalid (a zero length, a bad name).
    #[error("invalid shared-memory request: {0}")]
    Invalid(String),
    /// The operating system refused.
    #[error("shared memory operation failed: {0}")]
    Os(String),
    /// The segment's file no longer has the length it was mapped with: another process of the
    /// same user resized it, and touching the missing pages would fault.
    #[error("segment {id} was resized to {found} bytes after it was mapped with {mapped}")]
    Resized {
        /// The segment.
        id: String,
        /// The length it was mapped with.
        mapped: u64,
        /// The length its file has now.
        found: u64,
    },
}

/// A shared-memory segment this process created and may write.
pub trait ShmSegment: Send + Sync {
    /// Its identity, to be sent to another process.
    fn id(&self) -> &SegmentId;
    /// The identity of its backing file (inode), so that a reused descriptor
    /// or name is never taken for this segment.
    fn inode(&self) -> u64;
    /// Mapped length in bytes.
    fn len(&self) -> usize;
    /// Whether the segment is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The mapped bytes.
    fn as_slice(&self) -> &[u8];
    /// The mapped bytes, writable.
    fn as_mut_slice(&mut self) -> &mut [u8];
    /// The size of the pages backing the segment (4 KiB, or 2 MiB when huge
    /// pages back it).
    fn page_size(&self) -> usize {
        4096
    }
    /// Checks, just before the segment is written, that its file still has the mapped length;
    /// backends whose segments nobody else can resize (sealed memory files, heap memory)
    /// always pass.
    fn check_intact(&self) -> Result<(), ShmError> {
        Ok(())
    }
    /// Faults every page in now, keeping its contents, so that later writes
    /// pay no page faults.
    fn prefault(&mut self) -> Result<(), ShmError> {
        let page = self.page_size().max(1);
        let bytes = self.as_mut_slice();
        let mut i = 0;
        while i < bytes.len() {
            bytes[i] = std::hint::black_box(bytes[i]);
            i += page;
        }
        Ok(())
    }
}

/// A segment another process created, mapped read-only after its checks.
pub trait ShmView: Send + Sync {
    /// Its identity.
    fn id(&self) -> &SegmentId;
    /// The identity of its backing file (inode).
    fn inode(&self) -> u64;
    /// Mapped length in bytes.
    fn len(&self) -> usize;
    /// Whether the view is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The mapped bytes.
    fn as_slice(&self) -> &[u8];
    /// Checks, just before the view is read, that the segment's file still has the mapped
    /// length; backends whose segments nobody else can resize always pass.
    fn check_intact(&self) -> Result<(), ShmError> {
        Ok(())
    }
}

/// Creates, opens, seals and removes shared-memory segments.
pub trait PlatformShm: Send + Sync {
    /// The backend's name.
    fn name(&self) -> &'static str;
    /// Creates a segment of `len` bytes, owner-only (0600), under an
    /// unguessable name, with its space reserved (a full device is an error
    /// here, never a fault later).
    fn create(&self, len: usize) -> Result<Box<dyn ShmSegment>, ShmError>;
    /// Maps an existing segment read-only after checking that it belongs to
    /// this user, is owner-only and holds at least `len` bytes.
    fn open(&self, id: &SegmentId, len: usize) -> Result<Box<dyn ShmView>, ShmError>;
    /// Forbids further resizing of the segment; backends without seals
    /// return [`ShmError::SealUnsupported`].
    fn seal(&self, segment: &mut dyn ShmSegment) -> Result<(), ShmError>;
    /// Removes the segment's name; it dies with its last mapping.
    fn unlink(&self, id: &SegmentId) -> Result<(), ShmError>;
    /// The process that created the segment `id`, as far as the id tells: the pid of a memory
    /// file, the owner recorded in a name by backends that record one; `None` when unknown.
    fn owner_pid(&self, id: &SegmentId) -> Option<u32> {
        match id {
            SegmentId::Memfd { pid, .. } => Some(*pid),
            SegmentId::Named(_) => None,
        }
    }
    /// Whether the segment `id` with file `inode` still exists where its creator keeps it (the
    /// creator's descriptor, or the name), so that a reader may drop a mapping whose segment
    /// was released; `None` when this backend cannot tell.
    fn still_exists(&self, id: &SegmentId, inode: u64) -> Option<bool> {
        let _ = (id, inode);
        None
    }
}

/// A backend without shared memory: every transfer goes by gRPC.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoShm;

impl PlatformShm for NoShm {
    fn name(&self) -> &'static str {
        "none"
    }
    fn create(&self, _len: usize) -> Result<Box<dyn ShmSegment>, ShmError> {
        Err(ShmError::Unsupported("none"))
    }
    fn open(&self, _id: &SegmentId, _len: usize) -> Result<Box<dyn ShmView>, ShmError> {
        Err(ShmError::Unsupported("none"))
    }
    fn seal(&self, _segment: &mut dyn ShmSegment) -> Result<(), ShmError> {
        Err(ShmError::Unsupported("none"))
    }
    fn unlink(&self, _id: &SegmentId) -> Result<(), ShmError> {
        Err(ShmError::Unsupported("none"))
    }
}
