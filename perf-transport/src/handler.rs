//! The worker's zero-copy handler: turns a reference into a checked, in-place read; and the
//! reference's wire form, converted at the gRPC edge.

use perf_core::{SegmentId, Verification};
use prost::Message;

use crate::grpc::proto::segment_reference::Segment;
use crate::grpc::proto::{MemfdSegment, SegmentReference};
use crate::grpc::{Ack, Code, ReferenceHandler, ReferenceRead, Refusal};
use crate::reader::{PartialRead, ProgressError, ReadError, ReadOutcome, ReferenceReader};
use crate::reference::{Reference, ReferenceError};

impl Reference {
    /// Its wire form: the protobuf encoding of a `SegmentReference` message, as
    /// `docs/protocol.md` describes it.
    pub fn encode(&self) -> Vec<u8> {
        to_wire(self).encode_to_vec()
    }

    /// The reference a `SegmentReference` message encodes. Bytes that are no such message, or
    /// one without a segment (`INVALID_ARGUMENT`) or with a token of the wrong length
    /// (`UNAUTHENTICATED`), are refused as a worker refuses them; nothing is verified yet.
    pub fn decode(bytes: &[u8]) -> Result<Reference, Refusal> {
        let wire = SegmentReference::decode(bytes).map_err(|e| {
            Refusal::new(
                Code::InvalidArgument,
                format!("expected a SegmentReference message: {e}"),
            )
        })?;
        from_wire(&wire)
    }
}

/// The wire form of a reference, made from a checked [`Reference`].
pub(crate) fn to_wire(r: &Reference) -> SegmentReference {
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
        verify: 0,
    }
}

/// The wire value of `verify` in a `SegmentReference`.
pub(crate) fn verification_to_wire(verify: Verification) -> i32 {
    use crate::grpc::proto::Verification as Wire;
    match verify {
        Verification::Checksum => Wire::Checksum as i32,
        Verification::Sampled => Wire::Sampled as i32,
        Verification::None => Wire::None as i32,
    }
}

/// The verification a `SegmentReference` asks for; a value this worker does not know is
/// refused (`INVALID_ARGUMENT`) before anything is mapped.
pub(crate) fn verification_of(w: &SegmentReference) -> Result<Verification, Refusal> {
    use crate::grpc::proto::Verification as Wire;
    match Wire::try_from(w.verify) {
        Ok(Wire::Checksum) => Ok(Verification::Checksum),
        Ok(Wire::Sampled) => Ok(Verification::Sampled),
        Ok(Wire::None) => Ok(Verification::None),
        Err(_) => Err(Refusal::new(
            Code::InvalidArgument,
            format!(
                "reference {} asks for verification {}, expected 0 (checksum), 1 (sampled) or \
                 2 (none)",
                w.transfer_id, w.verify
            ),
        )),
    }
}

/// The reference a wire message describes; a message without a segment or
/// with a token of the wrong length is refused before anything else.
pub(crate) fn from_wire(w: &SegmentReference) -> Result<Reference, Refusal> {
    let segment = match &w.segment {
        Some(Segment::Memfd(m)) => SegmentId::Memfd {
            pid: m.pid,
            fd: m.fd,
        },
        Some(Segment::Named(name)) => SegmentId::Named(name.clone()),
        None => {
            return Err(Refusal::new(
                Code::InvalidArgument,
                format!(
                    "reference {} names no segment, expected a memfd or a named segment",
                    w.transfer_id
                ),
            ));
        }
    };
    let token: [u8; 32] = w.token.as_slice().try_into().map_err(|_| {
        Refusal::new(
            Code::Unauthenticated,
            format!(
                "reference {} has a token of {} bytes, expected 32",
                w.transfer_id,
                w.token.len()
            ),
        )
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

/// The status a refused or failed read is answered with.
pub(crate) fn refusal_of(e: &ReadError) -> Refusal {
    let code = match e {
        ReadError::Refused(ReferenceError::Forged(_)) => Code::Unauthenticated,
        // An expired token is a credential that no longer holds, not a call out of time.
        ReadError::Refused(ReferenceError::Expired { .. }) => Code::Unauthenticated,
        ReadError::Refused(ReferenceError::OutOfBounds { .. }) => Code::OutOfRange,
        ReadError::Refused(ReferenceError::ForeignOwner { .. }) => Code::PermissionDenied,
        ReadError::Refused(ReferenceError::Malformed { .. }) => Code::InvalidArgument,
        ReadError::TooLarge { .. } => Code::ResourceExhausted,
        ReadError::Replaced { .. } | ReadError::Shm(perf_core::ShmError::Resized { .. }) => {
            Code::FailedPrecondition
        }
        ReadError::ForeignSegment { .. } => Code::PermissionDenied,
        ReadError::Shm(perf_core::ShmError::NotFound(_)) => Code::NotFound,
        ReadError::Shm(perf_core::ShmError::Denied(..)) => Code::PermissionDenied,
        ReadError::Shm(_) => Code::Internal,
    };
    Refusal::new(code, e.to_string())
}

/// The acknowledgement of transfer `transfer_id`, from what was read.
fn ack_of(transfer_id: u64, out: &ReadOutcome) -> Ack {
    Ack {
        transfer_id,
        length: out.length,
        checksum: out.checksum,
        worker_ns: out.worker_ns,
        worker_cpu_ns: 0,
    }
}

impl ReferenceHandler for ReferenceReader {
    fn handle(&self, r: &Reference, verify: Verification) -> Result<Ack, Refusal> {
        let out = self.read_verifying(r, verify).map_err(|e| refusal_of(&e))?;
        Ok(ack_of(r.transfer_id, &out))
    }

    fn maintain(&self) {
        self.release_unused();
    }

    fn handle_with(
        &self,
        r: &Reference,
        verify: Verification,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<Ack, Refusal> {
        let (payload, out) = self.map_verifying(r, verify).map_err(|e| refusal_of(&e))?;
        visit(payload.as_slice());
        Ok(ack_of(r.transfer_id, &out))
    }

    /// Up to 256 KiB: a checksum at several GB/s, from a mapping kept open.
    fn reads_quickly(&self, length: u64) -> bool {
        length <= 256 << 10
    }

    fn begin(
        &self,
        r: &Reference,
        verify: Verification,
    ) -> Result<Box<dyn ReferenceRead>, Refusal> {
        let read = self
            .begin_verifying(r, verify)
            .map_err(|e| refusal_of(&e))?;
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

impl Progress {
    /// Ends the read with `end`, acknowledged as this transfer.
    fn end(
        self,
        end: impl FnOnce(PartialRead) -> Result<ReadOutcome, ProgressError>,
    ) -> Result<Ack, Refusal> {
        let id = self.transfer_id;
        let out = end(self.read)
            .map_err(|e| Refusal::new(Code::InvalidArgument, format!("reference {id}: {e}")))?;
        Ok(ack_of(id, &out))
    }
}

impl ReferenceRead for Progress {
    fn advance(&mut self, ready: u64) -> Result<(), Refusal> {
        self.read.advance(ready).map_err(|e| {
            let code = match e {
                ProgressError::Shm(_) => Code::FailedPrecondition,
                ProgressError::OutOfOrder { .. } | ProgressError::Incomplete { .. } => {
                    Code::OutOfRange
                }
            };
            Refusal::new(code, format!("reference {}: {e}", self.transfer_id))
        })
    }

    fn finish_with(self: Box<Self>, visit: &mut dyn FnMut(&[u8])) -> Result<Ack, Refusal> {
        self.end(|read| read.finish_with(visit))
    }

    fn finish(self: Box<Self>) -> Result<Ack, Refusal> {
        self.end(PartialRead::finish)
    }
}
