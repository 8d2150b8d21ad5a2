//! Workers that do real work: a [`Handler`] receives each payload as a checked, read-only view
//! (the mapped segment for a reference, the reassembled bytes for an inline transfer) and may
//! answer with a reply, which goes back inline, in a segment of the worker's, or fetched, as
//! `docs/protocol.md` ("Replies") says.
//!
//! [`serve`] runs a handler behind the `Transfer` and health services, under the spawn
//! contract of [`SpawnedWorker`](crate::SpawnedWorker): negotiation, reference checks, inline
//! reassembly, limits and reply segments are the service's; the handler sees bytes only.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::grpc::ServiceConfig;
use crate::host::{SpawnedWorker, SpawnedWorkerError};
use crate::pool::Lease;

pub(crate) mod desk;

pub use desk::REPLY_TTL;

/// Largest reply a worker puts inside an acknowledgement, whatever the host asks for: 4 MiB.
pub const MAX_REPLY_INLINE: u64 = 4 << 20;

/// The reply size a host takes inside the acknowledgement unless it says otherwise: 64 KiB.
pub const DEFAULT_REPLY_INLINE: u64 = 64 << 10;

/// The worker's code: called once per transfer with the payload, after the service checked it.
///
/// It runs on a blocking thread, or on the serving thread for payloads up to 64 KiB (keep the
/// work on those short, or hand it to a thread of your own). An error it returns, or a panic, ends the call with `UNKNOWN` and the trailer
/// `perfopt-handler-error: <kind>`; the worker goes on serving.
pub trait Handler: Send + Sync + 'static {
    /// Handles one payload; `Ok(None)` answers nothing.
    fn handle(&self, call: &Call<'_>) -> Result<Option<Output>, HandlerError>;

    /// Whether it runs on payloads whose host asked for no reply (true by default). A handler
    /// whose only work is its reply says false, and one-way transfers cost nothing more than
    /// without a handler.
    fn one_way(&self) -> bool {
        true
    }
}

impl<F> Handler for F
where
    F: Fn(&Call<'_>) -> Result<Option<Output>, HandlerError> + Send + Sync + 'static,
{
    fn handle(&self, call: &Call<'_>) -> Result<Option<Output>, HandlerError> {
        self(call)
    }
}

/// Why a handler failed: a kind (an exception's type, say) and a message, both sent to the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct HandlerError {
    /// A short name for what failed, sent as `perfopt-handler-error`.
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

impl HandlerError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> HandlerError {
        HandlerError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// What the host said about a payload, besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// The element type (numpy's `dtype.str`, e.g. `<f4`), if the host named one.
    pub dtype: Option<String>,
    /// The array shape, if the host named one.
    pub shape: Option<Vec<u64>>,
    /// The caller's own metadata (`perfopt-meta-<key>`, keyed by `<key>`).
    pub metadata: BTreeMap<String, String>,
}

/// One payload handed to a [`Handler`].
pub struct Call<'a> {
    pub(crate) transfer_id: u64,
    pub(crate) format: &'a str,
    pub(crate) payload: &'a [u8],
    pub(crate) info: &'a CallInfo,
    pub(crate) buffers: desk::BufferSource<'a>,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("transfer_id", &self.transfer_id)
            .field("format", &self.format)
            .field("len", &self.payload.len())
            .field("info", self.info)
            .finish_non_exhaustive()
    }
}

impl<'a> Call<'a> {
    /// The transfer's id, as the host numbered it.
    pub fn transfer_id(&self) -> u64 {
        self.transfer_id
    }

    /// The payload's format name.
    pub fn format(&self) -> &str {
        self.format
    }

    /// The payload, read in place: checked (token, bounds, owner, checksum computed) and never
    /// copied for a reference; the reassembled bytes for an inline transfer.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Element type, shape and the caller's metadata.
    pub fn info(&self) -> &CallInfo {
        self.info
    }

    /// One value of the caller's metadata.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.info.metadata.get(key).map(String::as_str)
    }

    /// Whether the host asked for a reply; a reply returned without one is dropped.
    pub fn wants_reply(&self) -> bool {
        self.buffers.wants_reply()
    }

    /// A zeroed buffer of `len` bytes to write the reply into, in the place it will travel
    /// from: a segment of the worker's when the reply goes by shared memory, so it is written
    /// once and never copied on the worker. Return it with [`Output::buffer`].
    pub fn reply_buffer(&self, len: usize) -> ReplyBuffer {
        self.buffers.buffer(len)
    }
}

/// A buffer a handler fills with its reply (see [`Call::reply_buffer`]).
pub struct ReplyBuffer {
    pub(crate) body: Body,
}

impl std::fmt::Debug for ReplyBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyBuffer")
            .field("len", &self.len())
            .field("shared", &matches!(self.body, Body::Segment(..)))
            .finish()
    }
}

impl Deref for ReplyBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.body.bytes()
    }
}

impl DerefMut for ReplyBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.body {
            Body::Heap(v) => v,
            Body::Segment(lease, len) => &mut lease.as_mut_slice()[..*len],
        }
    }
}

/// The reply's bytes, where they are.
pub(crate) enum Body {
    /// In the worker's heap.
    Heap(Vec<u8>),
    /// The first bytes of a segment of the worker's pool.
    Segment(Lease, usize),
}

impl Body {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Body::Heap(v) => v,
            Body::Segment(lease, len) => &lease.as_slice()[..*len],
        }
    }
}

/// A handler's reply: bytes, their format and metadata about them.
pub struct Output {
    pub(crate) body: Body,
    pub(crate) format: String,
    pub(crate) metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("len", &self.body.bytes().len())
            .field("format", &self.format)
            .field("metadata", &self.metadata)
            .finish()
    }
}

impl Output {
    /// A reply of `bytes`, format `raw`.
    pub fn bytes(bytes: Vec<u8>) -> Output {
        Output::of(Body::Heap(bytes))
    }

    /// A reply of the buffer the handler filled.
    pub fn buffer(buffer: ReplyBuffer) -> Output {
        Output::of(buffer.body)
    }

    fn of(body: Body) -> Output {
        Output {
            body,
            format: "raw".to_owned(),
            metadata: BTreeMap::new(),
        }
    }

    /// The same reply with format `format` (at most `MAX_FORMAT_LEN` bytes).
    pub fn with_format(mut self, format: impl Into<String>) -> Output {
        self.format = format.into();
        self
    }

    /// The same reply with the handler's metadata `key = value` (ASCII text).
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Output {
        self.metadata
            .insert(format!("perfopt-meta-{}", key.into()), value.into());
        self
    }

    /// The same reply described as an array of `dtype` (e.g. `<f4`) and `shape`.
    pub fn with_array(mut self, dtype: &str, shape: &[u64]) -> Output {
        self.metadata
            .insert("perfopt-dtype".to_owned(), dtype.to_owned());
        self.metadata
            .insert("perfopt-shape".to_owned(), desk::shape_text(shape));
        self
    }

    /// Reply bytes.
    pub fn len(&self) -> usize {
        self.body.bytes().len()
    }

    /// Whether the reply is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Serves `handler` under the spawn contract: reads `--listen`, `--peer-pid` and
/// `--secret-file` from `args`, prints `listening <endpoint>`, and serves until the host is
/// gone or `stop` completes. Reply segments come from a memfd pool of the worker's, signed with
/// the host's secret, when there is one.
pub async fn serve(
    args: impl IntoIterator<Item = OsString>,
    config: ServiceConfig,
    handler: impl Handler,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), SpawnedWorkerError> {
    let worker = SpawnedWorker::from_args(args)?;
    let service = worker.handler_service(config, Arc::new(handler))?;
    worker.serve(service, stop).await
}
