//! Transport layer of perfopt: carries out a decided transfer, by zero-copy through a pool of
//! shared-memory segments or by gRPC, and measures it.
//!
//! - [`SegmentPool`]: pre-faulted segments in power-of-two size classes, reused across
//!   transfers within a byte budget; a payload above the largest class gets a one-off segment.
//!   Its [`SegmentPool::availability`] tells the decision whether zero-copy is possible now.
//!   [`SegmentPool::acquire`] is also the loan path: a producer writes straight into shared
//!   memory and nothing is copied.
//! - [`Reference`]: segment id, inode, offset, length, format and expiry, signed with
//!   HMAC-SHA256 and a per-host [`Secret`]; [`ReferenceReader`] is the worker side that checks
//!   token, expiry, bounds and owner before it maps anything, keeps recent mappings open and
//!   reads the payload in place.
//! - [`grpc`]: the tonic service a worker serves and the client a host uses, over a Unix domain
//!   socket or TCP, with payloads of any size streamed in chunks under the message limit.
//! - [`Carrier`]: the seam between the executor and the wire (negotiate, send inline, send a
//!   reference); [`WorkerClient`] carries over gRPC.
//! - [`Executor`]: decide, carry out (any zero-copy failure falls back to gRPC, so the transfer
//!   still succeeds), verify the worker's checksum, and send the measured
//!   [`TransferMetrics`](perf_core::TransferMetrics) to every sink.
//!
//! - [`Host`]: the host runtime over several workers, spawned or connected: admission control
//!   (callers wait, never fail, for load), balance, supervision with one retry on a live worker,
//!   and every transfer recorded, failed ones included.
//!
//! Each zero-copy transfer is verified as its pool's `verify` setting says
//! ([`Verification`](perf_core::Verification), carried by the decision, or
//! [`ExecutorConfig::verify`] for every transfer): the worker hashes every byte, a fixed sample
//! ([`checksum::sample_ranges`]) or nothing, and the host compares the digest after the clock
//! stops. A worker that does not name the `verify` extension in negotiation is asked for the
//! full checksum. Inline transfers are always checksummed whole as the worker reassembles them.
//!
//! ## Feature `delay-injection`
//!
//! A test hook for performance gates, off by default. With it compiled in, the environment
//! variable `PERFOPT_INJECT_ZERO_COPY_DELAY_US` (read once, at the first zero-copy transfer; a
//! whole number of microseconds, anything else counts as 0) adds that delay to the timed part of
//! every zero-copy transfer on the host side, spun for precision (slept above 2 ms, but for
//! the last millisecond). `cargo xtask perf` builds `perfopt` with it to show that its gate
//! fails on a slowdown. Without the feature no code of it exists.
//!
//! It covers R2.1 (measured transfers), R8.2 (fall back to gRPC when shared memory is
//! exhausted), R15.2 to R15.4 (references, loopback endpoints, bounds) and, with
//! `perf-platform`, R15.1.

pub mod carrier;
pub mod checksum;
pub mod executor;
pub mod grpc;
mod handler;
pub mod host;
#[cfg(test)]
mod memory_carrier;
pub mod pool;
pub mod reader;
pub mod reference;
pub mod reply;
pub mod worker;

pub use carrier::{Carrier, CarrierFuture};
pub use executor::{Executor, ExecutorConfig, TransferError, TransferOutcome};
pub use grpc::{
    Ack, ClientConfig, ClientError, Code, Endpoint, PeerCapabilities, ReferenceHandler, Refusal,
    ServeError, ServiceConfig, TransferService, WorkerClient,
};
pub use host::{
    ConnectCarrier, Host, HostBuilder, HostConfig, HostError, HostStats, SpawnedWorker,
    SpawnedWorkerError, WorkerCommand, WorkerStats,
};
pub use pool::{Lease, LeaseKind, PoolError, PoolStats, SegmentPool, SegmentPoolConfig};
pub use reader::{
    MappedPayload, MappingLimits, PartialRead, ProgressError, ReadError, ReadOutcome,
    ReferenceReader,
};
pub use reference::{Reference, ReferenceError, Secret, SecretError};
pub use reply::{CallOptions, Reply, ReplyMethod, ReplyMetrics};
pub use worker::{Call, Handler, HandlerError, Output};
