//! The worker's zero-copy handler: turns a wire reference into a checked, in-place read.

use perf_core::SegmentId;
use tonic::Status;

use crate::grpc::proto::segment_reference::Segment;
use crate::grpc::proto::{MemfdSegment, SegmentReference, TransferAck};
use crate::grpc::{ReferenceHandler, ReferenceRead};
use crate::reader::{PartialRead, ProgressError, ReadError, ReferenceReader};
use crate::reference::{Reference, ReferenceError};

/// The wire form of a reference, made from a checked [`Reference`].
pub fn to_wire(r: &Reference) -> SegmentReference {
    let segment = match &r.segment {
        SegmentId::Memfd { pid, fd } => Segment::Memfd(MemfdSegment { pid: *pid, fd: *fd }),
        SegmentId::Named(name) => Segment::Named(name.clone()),
    };
    SegmentReference {
        transfer_id: r.transfer_id,
        segment: Some(segment),
        segment_inode: r.segment_inode,
        segment_len: r.segment_len,
        offset: r.offset,
        length: r.length,
        format: r.format.clone(),
        expires_unix_ms: r.expires_unix_ms,
        token: r.token.to_vec(),
    }
}

/// The reference a wire message describes; a message without a segment or
/// with a token of the wrong length is refused before anything else.
pub fn from_wire(w: &SegmentReference) -> Result<Reference, Status> {
    let segment = match &w.segment {
        Some(Segment::Memfd(m)) => SegmentId::Memfd {
            pid: m.pid,
            fd: m.fd,
        },
        Some(Segment::Named(name)) => SegmentId::Named(name.clone()),
        None => {
            return Err(Status::invalid_argument(format!(
                "reference {} names no segment, expected a memfd or a named segment",
                w.transfer_id
            )));
        }
    };
    let token: [u8; 32] = w.token.as_slice().try_into().map_err(|_| {
        Status::unauthenticated(format!(
            "reference {} has a token of {} bytes, expected 32",
            w.transfer_id,
            w.token.len()
        ))
    })?;
    Ok(Reference {
        transfer_id: w.transfer_id,
        segment,
        segment_inode: w.segment_inode,
        segment_len: w.segment_len,
        offset: w.offset,
        length: w.length,
        format: w.format.clone(),
        expires_unix_ms: w.expires_unix_ms,
        token,
    })
}

/// The gRPC status for a refused or failed read.
pub fn status_of(e: &ReadError) -> Status {
    let message = e.to_string();
    match e {
        ReadError::Refused(ReferenceError::Forged(_)) => Status::unauthenticated(message),
        // An expired token is a credential that no longer holds, not a call out of time.
        ReadError::Refused(ReferenceError::Expired { .. }) => Status::unauthenticated(message),
        ReadError::Refused(ReferenceError::OutOfBounds { .. }) => Status::out_of_range(message),
        ReadError::Refused(ReferenceError::ForeignOwner { .. }) => {
            Status::permission_denied(message)
        }
        ReadError::Refused(ReferenceError::Malformed { .. }) => Status::invalid_argument(message),
        ReadError::TooLarge(_) => Status::resource_exhausted(message),
        ReadError::Replaced { .. } | ReadError::Shm(perf_core::ShmError::Resized { .. }) => {
            Status::failed_precondition(message)
        }
        ReadError::ForeignSegment { .. } => Status::permission_denied(message),
        ReadError::Shm(perf_core::ShmError::NotFound(_)) => Status::not_found(message),
        ReadError::Shm(perf_core::ShmError::Denied(..)) => Status::permission_denied(message),
        ReadError::Shm(_) => Status::internal(message),
    }
}

impl ReferenceHandler for ReferenceReader {
    fn handle(&self, reference: &SegmentReference) -> Result<TransferAck, Status> {
        let r = from_wire(reference)?;
        let out = self.read(&r).map_err(|e| status_of(&e))?;
        Ok(TransferAck {
            transfer_id: r.transfer_id,
            length: out.length,
            checksum: out.checksum,
            worker_ns: out.worker_ns,
            worker_cpu_ns: 0,
        })
    }

    fn maintain(&self) {
        self.release_unused();
    }

    /// Up to 256 KiB: a checksum at several GB/s, from a mapping kept open.
    fn reads_quickly(&self, length: u64) -> bool {
        length <= 256 << 10
    }

    fn begin(&self, reference: &SegmentReference) -> Result<Box<dyn ReferenceRead>, Status> {
        let r = from_wire(reference)?;
        let read = ReferenceReader::begin(self, &r).map_err(|e| status_of(&e))?;
        Ok(Box::new(Progress {
            transfer_id: r.transfer_id,
            read,
        }))
    }
}

/// A reference being read part by part.
struct Progress {
    transfer_id: u64,
    read: PartialRead,
}

impl ReferenceRead for Progress {
    fn advance(&mut self, ready: u64) -> Result<(), Status> {
        self.read.advance(ready).map_err(|e| {
            let message = format!("reference {}: {e}", self.transfer_id);
            match e {
                ProgressError::Shm(_) => Status::failed_precondition(message),
                ProgressError::OutOfOrder { .. } | ProgressError::Incomplete { .. } => {
                    Status::out_of_range(message)
                }
            }
        })
    }

    fn finish(self: Box<Self>) -> Result<TransferAck, Status> {
        let id = self.transfer_id;
        let out = self
            .read
            .finish()
            .map_err(|e| Status::invalid_argument(format!("reference {id}: {e}")))?;
        Ok(TransferAck {
            transfer_id: id,
            length: out.length,
            checksum: out.checksum,
            worker_ns: out.worker_ns,
            worker_cpu_ns: 0,
        })
    }
}
