//! The worker side of zero-copy: check a reference, map its segment once, read the payload in place.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::checksum::{Checksum, checksum};
use perf_core::{PlatformShm, SegmentId, ShmError, ShmView};

use crate::reference::{Reference, ReferenceError, Secret};

/// Mappings kept open by a worker; the oldest goes first past this.
pub const MAPPING_CACHE: usize = 64;
/// The largest segment a worker maps, in bytes.
pub const MAX_SEGMENT_BYTES: u64 = 2 << 30;

/// Why a worker could not read a referenced payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The reference itself was refused; nothing was mapped.
    #[error(transparent)]
    Refused(#[from] ReferenceError),
    /// The segment is larger than a worker maps.
    #[error("segment of {0} bytes is larger than the {MAX_SEGMENT_BYTES} bytes a worker maps")]
    TooLarge(u64),
    /// The segment could not be opened or mapped.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The segment behind the id is not the one the reference was made for.
    #[error("segment {id} has inode {found}, the reference names inode {expected}")]
    Replaced {
        /// The segment.
        id: String,
        /// The inode found.
        found: u64,
        /// The inode in the reference.
        expected: u64,
    },
}

/// What a worker read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Bytes read.
    pub length: u64,
    /// XXH3-64 of those bytes.
    pub checksum: u64,
    /// Time spent checking, mapping and reading, in nanoseconds.
    pub worker_ns: u64,
    /// Whether the mapping was already open.
    pub cached: bool,
}

/// An open mapping: the segment, its inode, and the view.
type Mapping = (SegmentId, u64, Arc<dyn ShmView>);

/// Checks references and reads their payloads, keeping recent mappings open
/// so that a pooled segment is mapped once and read in place every time.
pub struct ReferenceReader {
    shm: Arc<dyn PlatformShm>,
    secret: Secret,
    peer_pid: Option<u32>,
    mappings: Mutex<Vec<Mapping>>,
}

impl std::fmt::Debug for ReferenceReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceReader")
            .field("backend", &self.shm.name())
            .field("peer_pid", &self.peer_pid)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ReferenceReader {
    /// A reader opening segments with `shm`, checking tokens with `secret`;
    /// memfd segments must belong to `peer_pid` when it is known.
    pub fn new(shm: Arc<dyn PlatformShm>, secret: Secret, peer_pid: Option<u32>) -> Self {
        ReferenceReader {
            shm,
            secret,
            peer_pid,
            mappings: Mutex::new(Vec::new()),
        }
    }

    /// The same reader for a connection from `pid`.
    pub fn set_peer(&mut self, pid: Option<u32>) {
        self.peer_pid = pid;
    }

    /// Checks `reference` and reads its payload in place.
    pub fn read(&self, reference: &Reference) -> Result<ReadOutcome, ReadError> {
        let start = Instant::now();
        reference.verify(&self.secret, now_unix_ms(), self.peer_pid)?;
        if reference.segment_len > MAX_SEGMENT_BYTES {
            return Err(ReadError::TooLarge(reference.segment_len));
        }
        let (view, cached) = self.view(reference)?;
        let start_byte = reference.offset as usize;
        let bytes = &view.as_slice()[start_byte..start_byte + reference.length as usize];
        let checksum = checksum(bytes);
        Ok(ReadOutcome {
            length: reference.length,
            checksum,
            worker_ns: start.elapsed().as_nanos() as u64,
            cached,
        })
    }

    fn view(&self, r: &Reference) -> Result<(Arc<dyn ShmView>, bool), ReadError> {
        let mut maps = self.mappings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = maps.iter().position(|(id, inode, v)| {
            *id == r.segment && *inode == r.segment_inode && v.len() as u64 >= r.segment_len
        }) {
            let entry = maps.remove(i);
            let view = entry.2.clone();
            maps.push(entry);
            return Ok((view, true));
        }
        // A stale mapping of the same id (a reused descriptor) is dropped.
        maps.retain(|(id, _, _)| *id != r.segment);
        drop(maps);
        let view: Arc<dyn ShmView> = Arc::from(self.shm.open(&r.segment, r.segment_len as usize)?);
        if view.inode() != r.segment_inode {
            return Err(ReadError::Replaced {
                id: r.segment.to_string(),
                found: view.inode(),
                expected: r.segment_inode,
            });
        }
        let mut maps = self.mappings.lock().unwrap_or_else(|e| e.into_inner());
        if maps.len() >= MAPPING_CACHE {
            maps.remove(0);
        }
        maps.push((r.segment.clone(), r.segment_inode, view.clone()));
        Ok((view, false))
    }

    /// Checks `reference` and maps its segment for a payload that is still
    /// being written: [`PartialRead::advance`] reads each part as the host
    /// announces it.
    pub fn begin(&self, reference: &Reference) -> Result<PartialRead, ReadError> {
        let started = Instant::now();
        reference.verify(&self.secret, now_unix_ms(), self.peer_pid)?;
        if reference.segment_len > MAX_SEGMENT_BYTES {
            return Err(ReadError::TooLarge(reference.segment_len));
        }
        let (view, cached) = self.view(reference)?;
        Ok(PartialRead {
            view,
            offset: reference.offset as usize,
            length: reference.length,
            done: 0,
            hasher: Checksum::new(),
            started,
            cached,
        })
    }

    /// How many mappings are open.
    pub fn open_mappings(&self) -> usize {
        self.mappings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// A payload read part by part while its host is still writing it.
pub struct PartialRead {
    view: Arc<dyn ShmView>,
    offset: usize,
    length: u64,
    done: u64,
    hasher: Checksum,
    started: Instant,
    cached: bool,
}

impl std::fmt::Debug for PartialRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialRead")
            .field("done", &self.done)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

/// Why a part-by-part read went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgressError {
    /// The host announced less than before, or more than the payload.
    #[error("progress {ready} is outside {done}..={length}")]
    OutOfOrder {
        /// Bytes announced.
        ready: u64,
        /// Bytes read before.
        done: u64,
        /// Payload length.
        length: u64,
    },
    /// The host stopped before announcing the whole payload.
    #[error("the payload ended at {done} of {length} bytes")]
    Incomplete {
        /// Bytes read.
        done: u64,
        /// Payload length.
        length: u64,
    },
}

impl PartialRead {
    /// Reads the bytes from the last announcement up to `ready`.
    pub fn advance(&mut self, ready: u64) -> Result<(), ProgressError> {
        if ready < self.done || ready > self.length {
            return Err(ProgressError::OutOfOrder {
                ready,
                done: self.done,
                length: self.length,
            });
        }
        let (from, to) = (
            self.offset + self.done as usize,
            self.offset + ready as usize,
        );
        self.hasher.update(&self.view.as_slice()[from..to]);
        self.done = ready;
        Ok(())
    }

    /// Ends the read; the whole payload must have been announced.
    pub fn finish(self) -> Result<ReadOutcome, ProgressError> {
        if self.done != self.length {
            return Err(ProgressError::Incomplete {
                done: self.done,
                length: self.length,
            });
        }
        Ok(ReadOutcome {
            length: self.length,
            checksum: self.hasher.digest(),
            worker_ns: self.started.elapsed().as_nanos() as u64,
            cached: self.cached,
        })
    }
}
