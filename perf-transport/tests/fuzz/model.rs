//! The model of the documented checks: what a worker must do with a reference.

use perf_transport::grpc::{self, Ack, checksum};
use perf_transport::reader::{DEFAULT_MAX_SEGMENT_BYTES as MAX_SEGMENT_BYTES, now_unix_ms};
use perf_transport::reference::{MAX_FORMAT_LEN, MAX_SEGMENT_NAME_LEN};
use perf_transport::{ReadError, ReferenceError};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tonic::{Code, Status};

use crate::fail;
use crate::fixture::{Fixture, SEGMENT_LEN};
use crate::grpc_support::wire::segment_reference::Segment;
use crate::grpc_support::wire::{SegmentReference, TransferAck};

/// A handler's answer as the worker sends it on the wire.
pub(crate) fn on_the_wire(answer: Result<Ack, grpc::Refusal>) -> Result<TransferAck, Status> {
    answer
        .map(|ack| TransferAck {
            reply: None,
            transfer_id: ack.transfer_id,
            length: ack.length,
            checksum: ack.checksum,
            worker_ns: ack.worker_ns,
            worker_cpu_ns: ack.worker_cpu_ns,
        })
        .map_err(|refusal| Status::new(wire_code(refusal.code), refusal.message))
}

/// The wire's status code for one of the crate's.
pub(crate) fn wire_code(code: grpc::Code) -> Code {
    Code::from_i32(code.number())
}

/// Why the model says a reference is refused before anything is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Refused on the wire (no segment, token of the wrong length) or by the service.
    Wire(Code),
    Malformed,
    Forged,
    Expired,
    OutOfBounds,
    ForeignOwner,
    TooLarge,
    /// A named segment whose name does not record the reader's peer as its owner.
    ForeignSegment,
}

impl Refusal {
    pub(crate) fn code(self) -> Code {
        match self {
            Refusal::Wire(code) => code,
            Refusal::Malformed => Code::InvalidArgument,
            Refusal::Forged => Code::Unauthenticated,
            Refusal::Expired => Code::Unauthenticated,
            Refusal::OutOfBounds => Code::OutOfRange,
            Refusal::ForeignOwner => Code::PermissionDenied,
            Refusal::TooLarge => Code::ResourceExhausted,
            Refusal::ForeignSegment => Code::PermissionDenied,
        }
    }
}

/// The refusal a reader's error is, if it is one of the checks made before opening.
pub(crate) fn refusal_of(error: &ReadError) -> Option<Refusal> {
    Some(match error {
        ReadError::Refused(ReferenceError::Malformed { .. }) => Refusal::Malformed,
        ReadError::Refused(ReferenceError::Forged(_)) => Refusal::Forged,
        ReadError::Refused(ReferenceError::Expired { .. }) => Refusal::Expired,
        ReadError::Refused(ReferenceError::OutOfBounds { .. }) => Refusal::OutOfBounds,
        ReadError::Refused(ReferenceError::ForeignOwner { .. }) => Refusal::ForeignOwner,
        ReadError::TooLarge { .. } => Refusal::TooLarge,
        ReadError::ForeignSegment { .. } => Refusal::ForeignSegment,
        _ => return None,
    })
}

/// What the model says a reader does with a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expected {
    /// Refused by its checks: nothing is opened.
    Refused(Refusal),
    /// Checked, but its segment cannot be opened or is not the one signed for.
    Unopenable,
    /// Read: the fixture's bytes `from..to`.
    Read { from: usize, to: usize },
}

/// Status codes of a segment that cannot be opened or is not the one signed for.
const UNOPENABLE: [Code; 4] = [
    Code::NotFound,
    Code::PermissionDenied,
    Code::Internal,
    Code::FailedPrecondition,
];

/// The reader's open mapping of the fixture segment, as the model tracks it: its length.
pub(crate) type Cached = Option<u64>;

/// What a reader (peer: this process) does with `wire`, given what it has mapped, which it
/// updates. `service` adds the service's own format check in front.
pub(crate) fn model(
    wire: &SegmentReference,
    signed: bool,
    fixture: &Fixture,
    cached: &mut Cached,
    service: bool,
) -> Expected {
    use Expected::Refused;
    if service && wire.format.len() > grpc::MAX_FORMAT_LEN {
        return Refused(Refusal::Wire(Code::InvalidArgument));
    }
    let Some(segment) = &wire.segment else {
        return Refused(Refusal::Wire(Code::InvalidArgument));
    };
    if wire.token.len() != 32 {
        return Refused(Refusal::Wire(Code::Unauthenticated));
    }
    if wire.format.len() > MAX_FORMAT_LEN {
        return Refused(Refusal::Malformed);
    }
    if matches!(segment, Segment::Named(name) if name.len() > MAX_SEGMENT_NAME_LEN) {
        return Refused(Refusal::Malformed);
    }
    if !signed {
        return Refused(Refusal::Forged);
    }
    if now_unix_ms() > wire.expires_unix_ms {
        return Refused(Refusal::Expired);
    }
    let end = wire.offset.checked_add(wire.length);
    if end.is_none_or(|end| end > wire.segment_len) {
        return Refused(Refusal::OutOfBounds);
    }
    if matches!(segment, Segment::Memfd(m) if m.pid != fixture.pid) {
        return Refused(Refusal::ForeignOwner);
    }
    if wire.segment_len > MAX_SEGMENT_BYTES {
        return Refused(Refusal::TooLarge);
    }
    // The reader knows its peer, and the fixture's backend records no owner in a name.
    if matches!(segment, Segment::Named(_)) {
        return Refused(Refusal::ForeignSegment);
    }
    let real = matches!(segment, Segment::Memfd(m) if m.fd == fixture.fd);
    if !real {
        return Expected::Unopenable;
    }
    let inode_right = wire.segment_inode == fixture.inode();
    if inode_right && cached.is_some_and(|len| len >= wire.segment_len) {
        return read_of(wire);
    }
    // A miss drops the mapping of the same id, then opens afresh.
    *cached = None;
    let opens = wire.segment_len > 0 && wire.segment_len <= SEGMENT_LEN as u64;
    if !opens || !inode_right {
        return Expected::Unopenable;
    }
    *cached = Some(wire.segment_len);
    read_of(wire)
}

fn read_of(wire: &SegmentReference) -> Expected {
    Expected::Read {
        from: wire.offset as usize,
        to: (wire.offset + wire.length) as usize,
    }
}

/// Checks a worker's answer to a reference against the model's expectation.
pub(crate) fn check_ack(
    answer: &Result<TransferAck, Status>,
    wire: &SegmentReference,
    expected: Expected,
    fixture: &Fixture,
) -> Result<(), TestCaseError> {
    match (expected, answer) {
        (Expected::Refused(refusal), Err(status)) => {
            prop_assert_eq!(status.code(), refusal.code(), "{}", status.message());
        }
        (Expected::Unopenable, Err(status)) => {
            prop_assert!(UNOPENABLE.contains(&status.code()), "{:?}", status);
        }
        (Expected::Read { from, to }, Ok(ack)) => {
            prop_assert_eq!(ack.transfer_id, wire.transfer_id);
            prop_assert_eq!(ack.length, (to - from) as u64);
            prop_assert_eq!(ack.checksum, checksum(&fixture.bytes()[from..to]));
        }
        (expected, answer) => {
            return Err(fail(format!(
                "the model expected {expected:?}, the worker answered {answer:?}"
            )));
        }
    }
    Ok(())
}
