//! The gRPC transport: the `perfopt.transfer.v1.Transfer` service a worker serves, and the client
//! a host uses to reach it, over a Unix domain socket (same host) or TCP (remote).
//!
//! - [`Endpoint`] names where a worker listens: `unix:PATH` or `tcp:HOST:PORT`.
//! - [`TransferService`] is the worker side: capability negotiation, inline payloads streamed in
//!   chunks and reassembled into one buffer, and references to shared memory handed to an
//!   injected [`ReferenceHandler`]. Every transfer is acknowledged with the XXH3-64
//!   [`checksum`] of the bytes the worker read.
//! - [`serve`] (or [`Listener::bind`] then [`Listener::serve`]) runs the service with the
//!   standard gRPC health service beside it until a shutdown future completes.
//! - [`WorkerClient`] is the host side: every call has a deadline, payloads of any size up to the
//!   worker's limit are streamed in chunks under the message size limit, and failures come back
//!   as a typed [`ClientError`].
//!
//! Message size limits are set explicitly on both sides: a chunk message carries at most
//! [`MAX_CHUNK_SIZE`] payload bytes plus [`MESSAGE_SLACK`] bytes of protobuf framing, so payloads
//! far above tonic's default 4 MiB limit travel as many messages of one stream.
//!
//! An acknowledgement's `worker_ns` is wall time from the call's arrival to its answer
//! (`std::time::Instant`); `worker_cpu_ns` is the CPU time the worker's threads spent on the
//! transfer, added up over the polls of its future from `/proc/thread-self/schedstat` (0 where
//! the platform does not report it). A worker keeps the buffers of finished inline transfers for
//! reuse, up to a byte budget, so a payload lands in memory that is already paged in.

mod accept;
mod budget;
mod buffers;
mod client;
pub(crate) mod cpu;
mod endpoint;
mod error;
mod host;
mod inline;
mod messages;
mod server;
pub(crate) mod service;

/// The messages, client and server generated from `proto/perfopt/transfer/v1/transfer.proto`:
/// the wire itself, kept inside this crate; the public API speaks in [`Ack`],
/// [`PeerCapabilities`], [`Reference`](crate::Reference) and [`Refusal`].
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]
pub(crate) mod proto {
    include!(concat!(env!("OUT_DIR"), "/perfopt.transfer.v1.rs"));
}

pub use client::{ClientConfig, WorkerClient, WorkerHealth};
pub use endpoint::{Endpoint, EndpointError, MAX_UNIX_PATH_LEN};
pub use error::{ClientError, ConfigError, ServeError};
pub use host::{host_id, platform, same_host};
pub use messages::{Ack, Code, PeerCapabilities, Refusal};
pub use server::{Listener, serve};
pub use service::{HeldReplies, ReferenceHandler, ReferenceRead, ServiceConfig, TransferService};

/// The protocol version this crate speaks; `transfer.proto` is version 1.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest inline payload a worker accepts unless configured otherwise: 1 GiB.
pub const DEFAULT_MAX_INLINE_BYTES: u64 = 1 << 30;

/// Smallest payload chunk a client may be configured to send: 64 KiB.
pub const MIN_CHUNK_SIZE: usize = 64 << 10;

/// Payload chunk size a client sends unless configured otherwise: 1 MiB.
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;

/// Largest payload chunk a client may send, and a worker accepts: 4 MiB.
pub const MAX_CHUNK_SIZE: usize = 4 << 20;

/// Room for the protobuf framing around a chunk's payload bytes (field tags, lengths and the
/// header of the first chunk); a chunk message is at most its payload plus this.
pub const MESSAGE_SLACK: usize = 4 << 10;

/// Longest payload format name, in bytes, inline or by reference: the same bound as
/// [`Reference`](crate::Reference)'s.
pub use crate::reference::MAX_FORMAT_LEN;

/// Size limit for the small messages (capabilities, references, acknowledgements) in either
/// direction.
const CONTROL_MESSAGE_LIMIT: usize = 64 << 10;

/// HTTP/2 flow-control window per stream: large enough that a sender of 4 MiB chunks is not
/// stalled waiting for window updates.
const STREAM_WINDOW: u32 = 16 << 20;

/// HTTP/2 flow-control window per connection, shared by its concurrent streams.
const CONNECTION_WINDOW: u32 = 64 << 20;

pub use crate::checksum::checksum;
