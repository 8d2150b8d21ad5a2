//! The worker side of zero-copy: check a reference, map its segment once, read the payload in place.
//!
//! Mappings stay open between transfers so that a pooled segment is mapped once, within two
//! bounds ([`MappingLimits`]; by default [`MAPPING_CACHE`] mappings and [`MAPPED_BYTES_CACHE`]
//! bytes), the least recently used going first. [`ReferenceReader::release_unused`] (which a serving worker calls
//! every [`MAINTENANCE_INTERVAL`]) drops the mappings of segments their host has released, and
//! those unused for [`IDLE_MAPPING`], so a worker never keeps a host's memory alive.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::checksum::Verifier;
use perf_core::{PlatformShm, SegmentId, ShmError, ShmView, Verification};

use crate::reference::{Reference, ReferenceError, Secret};

/// Mappings kept open by a worker; the least recently used goes first past this.
pub const MAPPING_CACHE: usize = 64;
/// Bytes of mappings kept open by a worker; the least recently used go first past this.
pub const MAPPED_BYTES_CACHE: u64 = 4 << 30;
/// The largest segment a worker may be configured to map, in bytes.
pub const MAX_SEGMENT_BYTES: u64 = 2 << 30;
/// The largest segment a worker maps unless configured otherwise, in bytes; it announces this
/// in `Negotiate` and refuses a larger `segment_len`.
pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// A mapping unused for this long is dropped even if its segment still exists.
pub const IDLE_MAPPING: Duration = Duration::from_secs(60);
/// How often a serving worker drops the mappings of released segments.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// Why a worker could not read a referenced payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The reference itself was refused; nothing was mapped.
    #[error(transparent)]
    Refused(#[from] ReferenceError),
    /// The segment is larger than this worker maps.
    #[error("segment of {len} bytes is larger than the {limit} bytes this worker maps")]
    TooLarge {
        /// The reference's `segment_len`.
        len: u64,
        /// The worker's `max_segment_bytes`.
        limit: u64,
    },
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
    /// The segment was made by another process than the peer that sent the reference.
    #[error("segment {id} belongs to {owner}, expected the peer process {peer}")]
    ForeignSegment {
        /// The segment.
        id: String,
        /// Its owner as its name records it, or why none is known.
        owner: String,
        /// The peer that sent the reference.
        peer: u32,
    },
}

/// What a worker read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Bytes read.
    pub length: u64,
    /// XXH3-64 of those bytes, or of the part the verification asked for (0 for none: see
    /// [`crate::checksum::digest`]).
    pub checksum: u64,
    /// Time spent checking, mapping and reading, in nanoseconds.
    pub worker_ns: u64,
    /// Whether the mapping was already open.
    pub cached: bool,
}

/// An open mapping, and when a transfer last used it.
struct Mapping {
    id: SegmentId,
    inode: u64,
    view: Arc<dyn ShmView>,
    used: Instant,
}

/// How many mappings a reader keeps open, and how many bytes they may cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingLimits {
    /// Most mappings kept open; at least 1.
    pub max_mappings: usize,
    /// Most bytes the kept mappings cover; a mapping larger than this is used once and not
    /// kept.
    pub max_bytes: u64,
    /// Largest `segment_len` mapped at all; a larger one is refused before anything is opened.
    /// At most [`MAX_SEGMENT_BYTES`] (a larger value counts as that).
    pub max_segment_bytes: u64,
}

impl Default for MappingLimits {
    fn default() -> MappingLimits {
        MappingLimits {
            max_mappings: MAPPING_CACHE,
            max_bytes: MAPPED_BYTES_CACHE,
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
        }
    }
}

/// The open mappings, least recently used first, and their total length.
struct Mappings {
    limits: MappingLimits,
    open: Vec<Mapping>,
    bytes: u64,
}

impl Mappings {
    fn remove(&mut self, index: usize) -> Mapping {
        let mapping = self.open.remove(index);
        self.bytes -= mapping.view.len() as u64;
        mapping
    }

    /// Adds `mapping` as the most recently used, first dropping the least recently used ones
    /// past the count and byte bounds; a mapping over the byte bound on its own is not kept.
    fn push(&mut self, mapping: Mapping) {
        let len = mapping.view.len() as u64;
        if len > self.limits.max_bytes {
            return;
        }
        while !self.open.is_empty()
            && (self.open.len() >= self.limits.max_mappings.max(1)
                || self.bytes + len > self.limits.max_bytes)
        {
            self.remove(0);
        }
        self.bytes += len;
        self.open.push(mapping);
    }
}

/// Checks references and reads their payloads, keeping recent mappings open
/// so that a pooled segment is mapped once and read in place every time.
pub struct ReferenceReader {
    shm: Arc<dyn PlatformShm>,
    secret: Secret,
    peer_pid: Option<u32>,
    max_segment_bytes: u64,
    mappings: Mutex<Mappings>,
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
    /// A reader opening segments with `shm`, checking tokens with `secret`; segments must
    /// belong to `peer_pid` when it is known (a memfd's pid, the owner a name records). It keeps
    /// mappings within [`MappingLimits::default`].
    pub fn new(shm: Arc<dyn PlatformShm>, secret: Secret, peer_pid: Option<u32>) -> Self {
        ReferenceReader::with_limits(shm, secret, peer_pid, MappingLimits::default())
    }

    /// The same as [`ReferenceReader::new`], keeping mappings within `limits`.
    pub fn with_limits(
        shm: Arc<dyn PlatformShm>,
        secret: Secret,
        peer_pid: Option<u32>,
        limits: MappingLimits,
    ) -> Self {
        ReferenceReader {
            shm,
            secret,
            peer_pid,
            max_segment_bytes: limits.max_segment_bytes.min(MAX_SEGMENT_BYTES),
            mappings: Mutex::new(Mappings {
                limits,
                open: Vec::new(),
                bytes: 0,
            }),
        }
    }

    /// The same reader for a connection from `pid`.
    pub fn set_peer(&mut self, pid: Option<u32>) {
        self.peer_pid = pid;
    }

    /// Checks `reference` and reads its payload in place, all of it.
    pub fn read(&self, reference: &Reference) -> Result<ReadOutcome, ReadError> {
        self.read_verifying(reference, Verification::Checksum)
    }

    /// Checks `reference` and reads in place what `verify` asks of its payload: every byte, the
    /// sample, or none (the checks still run, and the segment is still mapped).
    pub fn read_verifying(
        &self,
        reference: &Reference,
        verify: Verification,
    ) -> Result<ReadOutcome, ReadError> {
        let start = Instant::now();
        self.check(reference)?;
        let (view, cached) = self.view(reference)?;
        view.check_intact()?;
        let start_byte = reference.offset as usize;
        let bytes = &view.as_slice()[start_byte..start_byte + reference.length as usize];
        let checksum = crate::checksum::digest(bytes, verify);
        Ok(ReadOutcome {
            length: reference.length,
            checksum,
            worker_ns: start.elapsed().as_nanos() as u64,
            cached,
        })
    }

    /// Checks `reference` and maps its payload read-only, checksummed, for as long as the
    /// returned view lives: a reader of bytes in place, not a copy.
    pub fn map(&self, reference: &Reference) -> Result<(MappedPayload, ReadOutcome), ReadError> {
        self.map_verifying(reference, Verification::Checksum)
    }

    /// As [`ReferenceReader::map`], hashing what `verify` asks.
    pub fn map_verifying(
        &self,
        reference: &Reference,
        verify: Verification,
    ) -> Result<(MappedPayload, ReadOutcome), ReadError> {
        let start = Instant::now();
        self.check(reference)?;
        let (view, cached) = self.view(reference)?;
        view.check_intact()?;
        let payload = MappedPayload {
            view,
            offset: reference.offset as usize,
            len: reference.length as usize,
        };
        let checksum = crate::checksum::digest(payload.as_slice(), verify);
        Ok((
            payload,
            ReadOutcome {
                length: reference.length,
                checksum,
                worker_ns: start.elapsed().as_nanos() as u64,
                cached,
            },
        ))
    }

    /// Checks token, expiry, bounds and owner, and the size a worker maps: nothing is mapped
    /// unless this passes.
    fn check(&self, reference: &Reference) -> Result<(), ReadError> {
        reference.verify(&self.secret, now_unix_ms(), self.peer_pid)?;
        if reference.segment_len > self.max_segment_bytes {
            return Err(ReadError::TooLarge {
                len: reference.segment_len,
                limit: self.max_segment_bytes,
            });
        }
        // A memfd reference's owner is its pid, which `verify` compared; a name records its
        // owner in a backend's own way.
        if let (SegmentId::Named(_), Some(peer)) = (&reference.segment, self.peer_pid) {
            match self.shm.owner_pid(&reference.segment) {
                Some(owner) if owner == peer => {}
                owner => {
                    return Err(ReadError::ForeignSegment {
                        id: reference.segment.to_string(),
                        owner: owner.map_or_else(
                            || "no process its name records".to_owned(),
                            |pid| format!("process {pid}"),
                        ),
                        peer,
                    });
                }
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mappings> {
        // Every change keeps the list and its byte count in step, even if a holder panicked.
        self.mappings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn view(&self, r: &Reference) -> Result<(Arc<dyn ShmView>, bool), ReadError> {
        let mut maps = self.lock();
        if let Some(i) = maps.open.iter().position(|m| {
            m.id == r.segment && m.inode == r.segment_inode && m.view.len() as u64 >= r.segment_len
        }) {
            let mut mapping = maps.remove(i);
            let view = mapping.view.clone();
            mapping.used = Instant::now();
            maps.push(mapping);
            return Ok((view, true));
        }
        // A stale mapping of the same id (a reused descriptor) is dropped.
        while let Some(i) = maps.open.iter().position(|m| m.id == r.segment) {
            maps.remove(i);
        }
        drop(maps);
        let view: Arc<dyn ShmView> = Arc::from(self.shm.open(&r.segment, r.segment_len as usize)?);
        if view.inode() != r.segment_inode {
            return Err(ReadError::Replaced {
                id: r.segment.to_string(),
                found: view.inode(),
                expected: r.segment_inode,
            });
        }
        self.lock().push(Mapping {
            id: r.segment.clone(),
            inode: r.segment_inode,
            view: view.clone(),
            used: Instant::now(),
        });
        Ok((view, false))
    }

    /// Drops the mappings whose segment its host has released (or that the backend cannot
    /// check and that were unused for [`IDLE_MAPPING`]); returns how many. A read in progress
    /// keeps its own mapping until it ends.
    pub fn release_unused(&self) -> usize {
        let now = Instant::now();
        let open: Vec<(SegmentId, u64, Instant)> = self
            .lock()
            .open
            .iter()
            .map(|m| (m.id.clone(), m.inode, m.used))
            .collect();
        // The checks are system calls; they run without the lock.
        let released: Vec<(SegmentId, u64)> = open
            .into_iter()
            .filter(|(id, inode, used)| {
                let idle = now.saturating_duration_since(*used) >= IDLE_MAPPING;
                idle || self.shm.still_exists(id, *inode) == Some(false)
            })
            .map(|(id, inode, _)| (id, inode))
            .collect();
        let mut maps = self.lock();
        let mut dropped = 0;
        for (id, inode) in released {
            if let Some(i) = maps
                .open
                .iter()
                .position(|m| m.id == id && m.inode == inode)
            {
                maps.remove(i);
                dropped += 1;
            }
        }
        dropped
    }

    /// Checks `reference` and maps its segment for a payload that is still
    /// being written: [`PartialRead::advance`] reads each part as the host
    /// announces it.
    pub fn begin(&self, reference: &Reference) -> Result<PartialRead, ReadError> {
        self.begin_verifying(reference, Verification::Checksum)
    }

    /// As [`ReferenceReader::begin`], hashing what `verify` asks: a part outside the sample, or
    /// any part under [`Verification::None`], is checked for bounds only and not read.
    pub fn begin_verifying(
        &self,
        reference: &Reference,
        verify: Verification,
    ) -> Result<PartialRead, ReadError> {
        let started = Instant::now();
        self.check(reference)?;
        let (view, cached) = self.view(reference)?;
        Ok(PartialRead {
            view,
            offset: reference.offset as usize,
            length: reference.length,
            done: 0,
            verifier: Verifier::new(verify, reference.length),
            started,
            cached,
        })
    }

    /// How many mappings are open.
    pub fn open_mappings(&self) -> usize {
        self.lock().open.len()
    }

    /// How many bytes the open mappings cover.
    pub fn mapped_bytes(&self) -> u64 {
        self.lock().bytes
    }
}

/// A checked payload, mapped read-only where it lies.
#[derive(Clone)]
pub struct MappedPayload {
    view: Arc<dyn ShmView>,
    offset: usize,
    len: usize,
}

impl std::fmt::Debug for MappedPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedPayload")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl MappedPayload {
    /// The payload's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.view.as_slice()[self.offset..self.offset + self.len]
    }
}

/// A payload read part by part while its host is still writing it.
pub struct PartialRead {
    view: Arc<dyn ShmView>,
    offset: usize,
    length: u64,
    done: u64,
    verifier: Verifier,
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
    /// The segment was resized under the mapping.
    #[error(transparent)]
    Shm(#[from] ShmError),
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
        self.view.check_intact()?;
        if self.verifier.reads(self.done, ready) {
            let (from, to) = (
                self.offset + self.done as usize,
                self.offset + ready as usize,
            );
            self.verifier
                .update(self.done, &self.view.as_slice()[from..to]);
        }
        self.done = ready;
        Ok(())
    }

    /// Ends the read as [`PartialRead::finish`] and shows the whole payload to `visit` first.
    pub fn finish_with(self, visit: &mut dyn FnMut(&[u8])) -> Result<ReadOutcome, ProgressError> {
        if self.done == self.length {
            self.view.check_intact()?;
            visit(&self.view.as_slice()[self.offset..self.offset + self.length as usize]);
        }
        self.finish()
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
            checksum: self.verifier.digest(),
            worker_ns: self.started.elapsed().as_nanos() as u64,
            cached: self.cached,
        })
    }
}
