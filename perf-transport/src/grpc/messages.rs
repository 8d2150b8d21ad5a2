//! The protocol's answers and statuses as this crate's own types: what a worker acknowledges,
//! what it says it can do, and the status it refuses a call with. The generated messages and
//! tonic's statuses stay inside the gRPC edge, which converts them here.

use std::fmt;

use super::proto;

/// A gRPC status code a call can end with: those `docs/protocol.md` lists, and any other by its
/// number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// `CANCELLED`: the call was cancelled, or the worker's call limit ended it.
    Cancelled,
    /// `UNKNOWN`: the peer failed without saying how.
    Unknown,
    /// `INVALID_ARGUMENT`: a malformed message.
    InvalidArgument,
    /// `DEADLINE_EXCEEDED`: a stream went silent or a deadline passed.
    DeadlineExceeded,
    /// `NOT_FOUND`: the segment a reference names does not exist.
    NotFound,
    /// `PERMISSION_DENIED`: the segment belongs to another process or cannot be opened.
    PermissionDenied,
    /// `RESOURCE_EXHAUSTED`: a payload over the worker's limits.
    ResourceExhausted,
    /// `FAILED_PRECONDITION`: the worker cannot take this call (no zero-copy, another protocol
    /// version, a segment replaced).
    FailedPrecondition,
    /// `ABORTED`: a stalled transfer was preempted.
    Aborted,
    /// `OUT_OF_RANGE`: a reference or a message past its bounds.
    OutOfRange,
    /// `UNIMPLEMENTED`: the worker does not offer this call.
    Unimplemented,
    /// `INTERNAL`: the worker failed.
    Internal,
    /// `UNAVAILABLE`: the worker is unreachable or shutting down.
    Unavailable,
    /// `UNAUTHENTICATED`: a reference's token is forged or expired.
    Unauthenticated,
    /// Any other code, by its number; the protocol never sends one.
    Other(i32),
}

impl Code {
    /// The code with gRPC number `number`.
    pub fn from_number(number: i32) -> Code {
        match number {
            1 => Code::Cancelled,
            2 => Code::Unknown,
            3 => Code::InvalidArgument,
            4 => Code::DeadlineExceeded,
            5 => Code::NotFound,
            7 => Code::PermissionDenied,
            8 => Code::ResourceExhausted,
            9 => Code::FailedPrecondition,
            10 => Code::Aborted,
            11 => Code::OutOfRange,
            12 => Code::Unimplemented,
            13 => Code::Internal,
            14 => Code::Unavailable,
            16 => Code::Unauthenticated,
            other => Code::Other(other),
        }
    }

    /// Its gRPC number.
    pub fn number(self) -> i32 {
        match self {
            Code::Cancelled => 1,
            Code::Unknown => 2,
            Code::InvalidArgument => 3,
            Code::DeadlineExceeded => 4,
            Code::NotFound => 5,
            Code::PermissionDenied => 7,
            Code::ResourceExhausted => 8,
            Code::FailedPrecondition => 9,
            Code::Aborted => 10,
            Code::OutOfRange => 11,
            Code::Unimplemented => 12,
            Code::Internal => 13,
            Code::Unavailable => 14,
            Code::Unauthenticated => 16,
            Code::Other(number) => number,
        }
    }

    /// Its name as `docs/protocol.md` and the gRPC specification spell it: `OUT_OF_RANGE`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Other(_) => "OTHER",
        }
    }

    pub(crate) fn of_tonic(code: tonic::Code) -> Code {
        Code::from_number(code as i32)
    }

    pub(crate) fn to_tonic(self) -> tonic::Code {
        tonic::Code::from_i32(self.number())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Code::Other(number) => write!(f, "status {number}"),
            known => f.write_str(known.name()),
        }
    }
}

/// Why a worker refuses a call, or fails it: a status code and a message, sent back to the host
/// as a gRPC status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    /// The status code.
    pub code: Code,
    /// What was expected and what came.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn into_tonic(self) -> tonic::Status {
        tonic::Status::new(self.code.to_tonic(), self.message)
    }
}

/// A worker's acknowledgement of one transfer: what it read, and what reading cost it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ack {
    /// The transfer's id as the host sent it.
    pub transfer_id: u64,
    /// Bytes the worker read.
    pub length: u64,
    /// XXH3-64 of the bytes the worker read (see [`checksum`](super::checksum)).
    pub checksum: u64,
    /// Wall time the worker spent on the call, in nanoseconds.
    pub worker_ns: u64,
    /// CPU time the worker's threads spent on it, in nanoseconds (0 where unknown).
    pub worker_cpu_ns: u64,
}

// Conversions at the edge are crate functions, not `From` impls, so that no generated type shows
// in the public API, not even in an impl.
impl Ack {
    pub(crate) fn from_wire(it: proto::TransferAck) -> Ack {
        Ack {
            transfer_id: it.transfer_id,
            length: it.length,
            checksum: it.checksum,
            worker_ns: it.worker_ns,
            worker_cpu_ns: it.worker_cpu_ns,
        }
    }

    pub(crate) fn to_wire(self) -> proto::TransferAck {
        proto::TransferAck {
            transfer_id: self.transfer_id,
            length: self.length,
            checksum: self.checksum,
            worker_ns: self.worker_ns,
            worker_cpu_ns: self.worker_cpu_ns,
            reply: None,
        }
    }
}

/// What a peer announced in negotiation: its identity and what it can take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCapabilities {
    /// Protocol version spoken; this crate speaks [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).
    pub protocol_version: u32,
    /// The peer's process id.
    pub pid: u32,
    /// The peer's host identity (boot id), empty where it has none.
    pub host_id: String,
    /// Whether the peer maps shared-memory references.
    pub zero_copy: bool,
    /// Largest inline payload the peer accepts, in bytes.
    pub max_inline_bytes: u64,
    /// Largest segment the peer maps, in bytes; 0 without zero-copy.
    pub max_segment_bytes: u64,
    /// Operating system and kernel, for reports.
    pub platform: String,
    /// Protocol extensions the peer speaks (`reply`).
    pub features: Vec<String>,
}

impl PeerCapabilities {
    /// Whether the peer named extension `feature` in negotiation.
    pub fn speaks(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }

    /// Whether the peer runs on this host (see [`same_host`](super::same_host)).
    pub fn same_host(&self) -> bool {
        super::same_host(self)
    }

    pub(crate) fn from_wire(it: proto::Capabilities) -> PeerCapabilities {
        PeerCapabilities {
            protocol_version: it.protocol_version,
            pid: it.pid,
            host_id: it.host_id,
            zero_copy: it.zero_copy,
            max_inline_bytes: it.max_inline_bytes,
            max_segment_bytes: it.max_segment_bytes,
            platform: it.platform,
            features: it.features,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_keeps_its_grpc_number_both_ways() {
        for number in -1..=20 {
            let code = Code::from_number(number);
            assert_eq!(code.number(), number);
            assert_eq!(
                Code::of_tonic(code.to_tonic()).number(),
                match number {
                    // tonic folds numbers it does not know into UNKNOWN.
                    0..=16 => number,
                    _ => 2,
                }
            );
        }
        assert_eq!(Code::from_number(11), Code::OutOfRange);
        assert_eq!(
            Code::of_tonic(tonic::Code::Unauthenticated),
            Code::Unauthenticated
        );
        assert_eq!(Code::OutOfRange.to_string(), "OUT_OF_RANGE");
        assert_eq!(Code::Other(6).to_string(), "status 6");
    }

    #[test]
    fn a_refusal_travels_as_the_status_it_names() {
        let status = Refusal::new(Code::PermissionDenied, "not yours").into_tonic();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(status.message(), "not yours");
    }
}
