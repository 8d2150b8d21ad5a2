//! The worker side of the `Transfer` service: negotiation, inline payloads reassembled and
//! checksummed, and references handed to an injected [`ReferenceHandler`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status, Streaming};

use super::budget::{InlineBudget, ReserveError};
use super::buffers::BufferPool;
use super::cpu::{self, CpuTimed};
use super::error::ConfigError;
use super::host::local_capabilities;
use super::inline::{Assembly, check_first_chunk};
use super::messages::{Ack, Code, PeerCapabilities, Refusal};
use super::proto::transfer_server::Transfer;
use super::proto::{
    Capabilities, InlineChunk, ReferenceProgress, Reply, ReplyChunk, ReplyHandle, ReplyReleased,
    SegmentReference, TransferAck,
};
use super::{DEFAULT_MAX_INLINE_BYTES, MAX_FORMAT_LEN, PROTOCOL_VERSION};
use crate::handler::{from_wire, verification_of};
use crate::pool::SegmentPool;
use crate::reference::{Reference, Secret};
use crate::worker::Handler;
use crate::worker::desk::{Ask, HeldReplyLimits, PeerKey, ReplyDesk};
use perf_core::Verification;

/// The name of the reply extension in `Capabilities.features`.
pub(crate) const REPLY_FEATURE: &str = "reply";
/// The name of the verification extension in `Capabilities.features`: references carry how much
/// of the payload to hash (docs/protocol.md, "Verification").
pub(crate) const VERIFY_FEATURE: &str = "verify";
/// Inline payloads up to this size are handed to the handler on the serving thread.
const QUICK_HANDLER_BYTES: usize = 64 << 10;

/// Largest value accepted for [`ServiceConfig::max_inline_bytes`]: 16 GiB.
const MAX_INLINE_CEILING: u64 = 16 << 30;
/// Largest value accepted for [`ServiceConfig::max_inflight_inline_bytes`] and
/// [`ServiceConfig::max_retained_buffer_bytes`]: 64 GiB.
const MAX_INFLIGHT_CEILING: u64 = 64 << 30;
/// Longest value accepted for [`ServiceConfig::max_call_duration`]: one day.
const MAX_CALL_CEILING: Duration = Duration::from_secs(24 * 60 * 60);
/// Shortest value accepted for the timeouts of [`ServiceConfig`]: 10 ms.
const MIN_TIMEOUT: Duration = Duration::from_millis(10);
/// Most connections a worker may be configured to keep open.
const MAX_CONNECTIONS_CEILING: usize = 1 << 20;
/// In-flight inline bytes are counted in units of this many bytes.
const INFLIGHT_UNIT: u64 = 1024;

/// Maps a shared-memory reference and reads the payload in place: the worker's zero-copy path.
///
/// The service hands it a reference whose wire form is well-formed (it names a segment and has
/// a 32-byte token), with the [`Verification`] the host asked for. The handler checks the
/// reference (token, expiry, bounds, owner, mode) before it maps anything, whatever the
/// verification, and answers with the length and the digest `verify` names
/// ([`crate::checksum::digest`]: XXH3-64 of every byte, of the sample, or 0). It may block for a
/// while (mapping and checksumming a large payload), so the service runs it on a blocking thread.
/// A [`Refusal`] it returns goes back to the host as that gRPC status.
pub trait ReferenceHandler: Send + Sync {
    /// Reads what `verify` asks of the payload `reference` points to and acknowledges it.
    fn handle(&self, reference: &Reference, verify: Verification) -> Result<Ack, Refusal>;

    /// Whether reading `length` bytes takes so little time (a few tens of
    /// microseconds, no blocking call) that it may run on the serving thread
    /// instead of being handed to a blocking thread.
    fn reads_quickly(&self, length: u64) -> bool {
        let _ = length;
        false
    }

    /// Drops what the handler holds for transfers that are over (for a [`ReferenceReader`],
    /// the mappings of segments their host released); a serving worker calls it every
    /// [`MAINTENANCE_INTERVAL`] on a blocking thread.
    ///
    /// [`ReferenceReader`]: crate::ReferenceReader
    /// [`MAINTENANCE_INTERVAL`]: crate::reader::MAINTENANCE_INTERVAL
    fn maintain(&self) {}

    /// Reads the payload `reference` points to, as [`ReferenceHandler::handle`], and shows the
    /// whole payload to `visit` before the mapping is let go; handlers that cannot refuse.
    fn handle_with(
        &self,
        reference: &Reference,
        verify: Verification,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<Ack, Refusal> {
        let _ = (reference, verify, visit);
        Err(Refusal::new(
            Code::Unimplemented,
            "this worker's reference handler cannot show the bytes it reads",
        ))
    }

    /// Checks `reference` and prepares to read a payload that the host is
    /// still writing, part by part, hashing what `verify` asks; handlers that cannot do that
    /// refuse.
    fn begin(
        &self,
        reference: &Reference,
        verify: Verification,
    ) -> Result<Box<dyn ReferenceRead>, Refusal> {
        let _ = (reference, verify);
        Err(Refusal::new(
            Code::Unimplemented,
            "this worker reads references only once they are fully written",
        ))
    }
}

/// A payload read part by part as its host announces how far it has written.
pub trait ReferenceRead: Send {
    /// Reads up to `ready` bytes from the payload's start.
    fn advance(&mut self, ready: u64) -> Result<(), Refusal>;
    /// Ends the read and acknowledges the whole payload.
    fn finish(self: Box<Self>) -> Result<Ack, Refusal>;

    /// Ends the read as [`ReferenceRead::finish`], showing the whole payload to `visit`;
    /// reads that cannot refuse.
    fn finish_with(self: Box<Self>, visit: &mut dyn FnMut(&[u8])) -> Result<Ack, Refusal> {
        let _ = visit;
        Err(Refusal::new(
            Code::Unimplemented,
            "this worker's reads cannot show the bytes they read",
        ))
    }
}

/// The replies a worker holds for their hosts: segments not yet released, deferred replies not
/// yet fetched (each at most [`REPLY_TTL`](crate::worker::REPLY_TTL)).
#[derive(Clone)]
pub struct HeldReplies(Arc<WorkerSide>);

impl fmt::Debug for HeldReplies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldReplies")
            .field("len", &self.len())
            .finish()
    }
}

impl HeldReplies {
    /// Replies held now.
    pub fn len(&self) -> usize {
        self.0.desk.held()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the replies held past [`REPLY_TTL`](crate::worker::REPLY_TTL); a serving worker
    /// does this every second.
    pub fn sweep(&self) {
        self.0.desk.sweep();
    }
}

/// A worker's code and the replies it holds.
pub(crate) struct WorkerSide {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) desk: ReplyDesk,
}

impl WorkerSide {
    /// Runs the handler on `payload` when one is installed.
    fn run(
        &self,
        transfer_id: u64,
        format: &str,
        payload: &[u8],
        ask: &Ask,
    ) -> Result<Option<Reply>, Status> {
        self.desk
            .run(self.handler.as_ref(), transfer_id, format, payload, ask)
    }
}

/// Limits of a worker's `Transfer` service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Largest inline payload accepted, in bytes: a larger one is refused with
    /// `RESOURCE_EXHAUSTED` before anything is reserved. Default 1 GiB, at most 16 GiB.
    pub max_inline_bytes: u64,
    /// Bytes of inline payloads held at once across all calls; a transfer waits, within its
    /// deadline, until its whole payload fits. Default 2 GiB; at least `max_inline_bytes`, at
    /// most 64 GiB.
    pub max_inflight_inline_bytes: u64,
    /// Bytes of receive buffers kept after their transfers for reuse, so later payloads land in
    /// memory that is already paged in; 0 keeps none. Default 256 MiB, at most 64 GiB.
    pub max_retained_buffer_bytes: u64,
    /// Largest segment announced to hosts when a reference handler is installed (0 otherwise),
    /// and the most a [`SpawnedWorker`](crate::SpawnedWorker)'s reader maps. Default 1 GiB, at
    /// most 2 GiB.
    pub max_segment_bytes: u64,
    /// Longest any call may run, whatever deadline the host asked for, or when it asked for
    /// none. Default 5 minutes, at most a day.
    pub max_call_duration: Duration,
    /// Longest a stream may go without a message (a chunk, or progress): then the call ends
    /// with `DEADLINE_EXCEEDED` and gives back what it held. Default 15 s, at most a day.
    pub stream_idle_timeout: Duration,
    /// How long an inline transfer holding room may go without a chunk while another waits for
    /// room; then it is preempted (`ABORTED`) and the waiter gets its room. Default 2 s, at most
    /// `stream_idle_timeout`.
    pub stall_timeout: Duration,
    /// Most connections open at once. When they are all open, a new connection takes the place
    /// of the oldest one that has not sent its HTTP/2 preface yet, or is closed if every open
    /// one has. Serving lowers it to fit the process's limit of open files. Default 512.
    pub max_connections: usize,
    /// How long a new connection may take to send the HTTP/2 preface before it is closed.
    /// Default 10 s, at most a day.
    pub handshake_timeout: Duration,
    /// How often a connection is probed with an HTTP/2 ping, so that a host that died or hung
    /// is noticed. Default 20 s, at most a day.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed. Default 10 s, at
    /// most a day.
    pub keepalive_timeout: Duration,
    /// Most replies a worker with a handler holds for its hosts at once (segments until
    /// released, deferred bytes until fetched); past it, and once expired replies are freed,
    /// a call is refused with `RESOURCE_EXHAUSTED` (docs/protocol.md, Held replies). Default
    /// 1,024, from 1 to 1,000,000.
    pub max_held_replies: usize,
    /// Most bytes of replies held at once (a segment counts its whole length), under the same
    /// rule. Default 4 GiB, from 1 byte to 64 GiB.
    pub max_held_bytes: u64,
}

impl Default for ServiceConfig {
    fn default() -> ServiceConfig {
        ServiceConfig {
            max_inline_bytes: DEFAULT_MAX_INLINE_BYTES,
            max_inflight_inline_bytes: 2 << 30,
            max_retained_buffer_bytes: 256 << 20,
            max_segment_bytes: crate::reader::DEFAULT_MAX_SEGMENT_BYTES,
            max_call_duration: Duration::from_secs(300),
            stream_idle_timeout: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(2),
            max_connections: 512,
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            max_held_replies: crate::worker::desk::DEFAULT_MAX_HELD_REPLIES,
            max_held_bytes: crate::worker::desk::DEFAULT_MAX_HELD_BYTES,
        }
    }
}

impl ServiceConfig {
    /// Checks every limit against its bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_inline_bytes == 0 || self.max_inline_bytes > MAX_INLINE_CEILING {
            return Err(ConfigError::new(
                "max_inline_bytes",
                self.max_inline_bytes,
                format!("from 1 to {MAX_INLINE_CEILING}"),
            ));
        }
        if self.max_inflight_inline_bytes < self.max_inline_bytes
            || self.max_inflight_inline_bytes > MAX_INFLIGHT_CEILING
        {
            return Err(ConfigError::new(
                "max_inflight_inline_bytes",
                self.max_inflight_inline_bytes,
                format!(
                    "from max_inline_bytes ({}) to {MAX_INFLIGHT_CEILING}",
                    self.max_inline_bytes
                ),
            ));
        }
        if self.max_segment_bytes == 0 || self.max_segment_bytes > crate::reader::MAX_SEGMENT_BYTES
        {
            return Err(ConfigError::new(
                "max_segment_bytes",
                self.max_segment_bytes,
                format!("from 1 to {}", crate::reader::MAX_SEGMENT_BYTES),
            ));
        }
        if self.max_retained_buffer_bytes > MAX_INFLIGHT_CEILING {
            return Err(ConfigError::new(
                "max_retained_buffer_bytes",
                self.max_retained_buffer_bytes,
                format!("at most {MAX_INFLIGHT_CEILING}"),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_held_replies) {
            return Err(ConfigError::new(
                "max_held_replies",
                self.max_held_replies,
                "from 1 to 1000000".to_string(),
            ));
        }
        if self.max_held_bytes == 0 || self.max_held_bytes > MAX_INFLIGHT_CEILING {
            return Err(ConfigError::new(
                "max_held_bytes",
                self.max_held_bytes,
                format!("from 1 to {MAX_INFLIGHT_CEILING}"),
            ));
        }
        if self.max_call_duration.is_zero() || self.max_call_duration > MAX_CALL_CEILING {
            return Err(ConfigError::new(
                "max_call_duration",
                format!("{:?}", self.max_call_duration),
                format!("more than zero and at most {MAX_CALL_CEILING:?}"),
            ));
        }
        let timeouts = [
            (
                "stream_idle_timeout",
                self.stream_idle_timeout,
                MAX_CALL_CEILING,
                "one day",
            ),
            (
                "stall_timeout",
                self.stall_timeout,
                self.stream_idle_timeout,
                "stream_idle_timeout",
            ),
            (
                "handshake_timeout",
                self.handshake_timeout,
                MAX_CALL_CEILING,
                "one day",
            ),
            (
                "keepalive_interval",
                self.keepalive_interval,
                MAX_CALL_CEILING,
                "one day",
            ),
            (
                "keepalive_timeout",
                self.keepalive_timeout,
                MAX_CALL_CEILING,
                "one day",
            ),
        ];
        for (field, value, max, max_name) in timeouts {
            if value < MIN_TIMEOUT || value > max {
                return Err(ConfigError::new(
                    field,
                    format!("{value:?}"),
                    format!("from {MIN_TIMEOUT:?} to {max_name} ({max:?})"),
                ));
            }
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_CEILING {
            return Err(ConfigError::new(
                "max_connections",
                self.max_connections,
                format!("from 1 to {MAX_CONNECTIONS_CEILING}"),
            ));
        }
        Ok(())
    }
}

/// The worker side of the `Transfer` service; serve it with [`super::serve`].
pub struct TransferService {
    config: ServiceConfig,
    handler: Option<Arc<dyn ReferenceHandler>>,
    worker: Option<Arc<WorkerSide>>,
    /// Room for inline payloads being reassembled, in units of [`INFLIGHT_UNIT`] bytes.
    inflight: InlineBudget,
    buffers: BufferPool,
}

impl TransferService {
    /// A service with these limits and no reference handler: it takes inline transfers only.
    pub fn new(config: ServiceConfig) -> Result<TransferService, ConfigError> {
        config.validate()?;
        let units = config.max_inflight_inline_bytes.div_ceil(INFLIGHT_UNIT);
        let units = usize::try_from(units).unwrap_or(usize::MAX);
        // validate() bounds the budget by 64 GiB.
        let retained = usize::try_from(config.max_retained_buffer_bytes).unwrap_or(usize::MAX);
        Ok(TransferService {
            inflight: InlineBudget::new(units, config.stall_timeout),
            config,
            handler: None,
            worker: None,
            buffers: BufferPool::new(retained),
        })
    }

    /// Installs the handler for references to shared memory, which turns zero-copy on.
    pub fn with_reference_handler(mut self, handler: Arc<dyn ReferenceHandler>) -> TransferService {
        self.handler = Some(handler);
        self
    }

    /// Installs the worker's code: every payload is handed to `handler`, and a host that
    /// negotiated the `reply` extension gets its replies. `reply_segments` (a pool of the
    /// worker's and the secret to sign with) lets large replies go by shared memory; without
    /// it they are fetched.
    pub fn with_handler(
        mut self,
        handler: Arc<dyn Handler>,
        reply_segments: Option<(SegmentPool, Secret)>,
    ) -> TransferService {
        self.worker = Some(Arc::new(WorkerSide {
            handler,
            desk: ReplyDesk::with_limits(
                reply_segments,
                HeldReplyLimits {
                    max_replies: self.config.max_held_replies,
                    max_bytes: self.config.max_held_bytes,
                },
            ),
        }));
        self
    }

    /// The pool reply segments come from, when the worker has a handler and one.
    pub fn reply_pool(&self) -> Option<&SegmentPool> {
        self.worker.as_ref().and_then(|w| w.desk.pool())
    }

    /// A view of the replies this service holds for their hosts, which stays valid once the
    /// service is served; `None` without a handler.
    pub fn held_replies(&self) -> Option<HeldReplies> {
        self.worker.clone().map(HeldReplies)
    }

    /// The limits this service was built with.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The installed reference handler, if any.
    pub(crate) fn handler(&self) -> Option<Arc<dyn ReferenceHandler>> {
        self.handler.clone()
    }

    /// The next message of `stream`, or an error once it has been silent for the idle timeout.
    async fn next_message<T>(&self, stream: &mut Streaming<T>) -> Result<Option<T>, Status> {
        let idle = self.config.stream_idle_timeout;
        match tokio::time::timeout(idle, stream.message()).await {
            Ok(message) => message,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the stream sent nothing for {idle:?} (stream_idle_timeout); expected the next \
                 message"
            ))),
        }
    }

    /// What this worker announces in negotiation: zero-copy only with a reference handler.
    pub fn capabilities(&self) -> PeerCapabilities {
        PeerCapabilities::from_wire(self.wire_capabilities())
    }

    fn wire_capabilities(&self) -> Capabilities {
        let zero_copy = self.handler.is_some();
        let max_segment_bytes = if zero_copy {
            self.config.max_segment_bytes
        } else {
            0
        };
        local_capabilities(
            zero_copy,
            self.config.max_inline_bytes,
            max_segment_bytes,
            Vec::new(),
        )
    }

    /// The worker's code, when it runs on a request that asks `ask`.
    fn worker_for(&self, ask: &Ask) -> Option<Arc<WorkerSide>> {
        self.worker
            .clone()
            .filter(|w| ask.reply || w.handler.one_way())
    }

    /// What the request asks of a reply; nothing unless the worker has a handler.
    fn ask<T>(&self, request: &Request<T>) -> Result<Ask, Status> {
        match &self.worker {
            Some(_) => {
                let mut ask = Ask::from_metadata(request.metadata())?;
                ask.peer = PeerKey::of(request);
                Ok(ask)
            }
            None => Ok(Ask::default()),
        }
    }

    async fn receive_inline(
        &self,
        stream: &mut Streaming<InlineChunk>,
        ask: Ask,
    ) -> Result<TransferAck, Status> {
        let first = self.next_message(stream).await?.ok_or_else(|| {
            Status::invalid_argument(
                "expected a first chunk carrying the header, got an empty stream",
            )
        })?;
        let header = check_first_chunk(&first, self.config.max_inline_bytes)?;
        let format = header.format.clone();
        // Bounded by max_inflight_inline_bytes, which validate() keeps far below u32::MAX units.
        let units = u32::try_from(header.total_len.div_ceil(INFLIGHT_UNIT))
            .map_err(|_| Status::resource_exhausted("inline payload too large to hold"))?;
        let room = self
            .inflight
            .reserve(units)
            .await
            .map_err(|ReserveError::Closed| Status::unavailable("the worker is shutting down"))?;
        let mut assembly = Assembly::new(header, &self.buffers)?;
        assembly.push(&first)?;
        drop(first);
        loop {
            let next = tokio::select! {
                next = self.next_message(stream) => next?,
                () = room.preempted() => {
                    return Err(Status::aborted(format!(
                        "preempted: no chunk for {:?} (stall_timeout) while other transfers \
                         waited for room; {} of {} bytes had arrived",
                        self.config.stall_timeout,
                        assembly.received(),
                        assembly.total_len(),
                    )));
                }
            };
            let Some(chunk) = next else {
                break;
            };
            assembly.push(&chunk)?;
            room.progressed();
        }
        let (mut ack, payload) = assembly.finish()?;
        let Some(worker) = self.worker_for(&ask) else {
            // Without a handler this worker only proves the payload arrived.
            self.buffers.give_back(payload);
            return Ok(ack);
        };
        let id = ack.transfer_id;
        let (payload, reply) = if payload.len() <= QUICK_HANDLER_BYTES {
            let reply = worker.run(id, &format, &payload, &ask);
            (payload, reply)
        } else {
            tokio::task::spawn_blocking(move || {
                let reply = worker.run(id, &format, &payload, &ask);
                (payload, reply)
            })
            .await
            .map_err(|err| Status::internal(format!("the handler's thread failed: {err}")))?
        };
        self.buffers.give_back(payload);
        ack.reply = reply?;
        Ok(ack)
    }
}

impl fmt::Debug for TransferService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferService")
            .field("config", &self.config)
            .field("zero_copy", &self.handler.is_some())
            .finish_non_exhaustive()
    }
}

#[tonic::async_trait]
impl Transfer for TransferService {
    async fn negotiate(
        &self,
        request: Request<Capabilities>,
    ) -> Result<Response<Capabilities>, Status> {
        let peer = PeerKey::of(&request);
        let host = request.into_inner();
        if host.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "expected protocol version {PROTOCOL_VERSION}, got {}",
                host.protocol_version
            )));
        }
        let mut caps = self.wire_capabilities();
        if self.handler.is_some() && host.features.iter().any(|f| f == VERIFY_FEATURE) {
            caps.features.push(VERIFY_FEATURE.to_owned());
        }
        if let Some(worker) = &self.worker
            && host.features.iter().any(|f| f == REPLY_FEATURE)
        {
            worker.desk.negotiated(peer, &host);
            caps.features.push(REPLY_FEATURE.to_owned());
        }
        Ok(Response::new(caps))
    }

    async fn send_inline(
        &self,
        request: Request<Streaming<InlineChunk>>,
    ) -> Result<Response<TransferAck>, Status> {
        let started = Instant::now();
        let ask = self.ask(&request)?;
        let mut stream = request.into_inner();
        let (received, cpu_ns) = CpuTimed::new(self.receive_inline(&mut stream, ask)).await;
        let mut ack = received?;
        ack.worker_ns = nanos(started.elapsed());
        ack.worker_cpu_ns = cpu_ns;
        Ok(Response::new(ack))
    }

    async fn send_reference(
        &self,
        request: Request<SegmentReference>,
    ) -> Result<Response<TransferAck>, Status> {
        let Some(handler) = self.handler.clone() else {
            return Err(Status::failed_precondition(
                "zero-copy is not available on this worker",
            ));
        };
        let ask = self.ask(&request)?;
        let reference = request.into_inner();
        if reference.format.len() > MAX_FORMAT_LEN {
            return Err(Status::invalid_argument(format!(
                "format name of {} bytes, expected at most {MAX_FORMAT_LEN}",
                reference.format.len()
            )));
        }
        let verify = verification_of(&reference).map_err(Refusal::into_tonic)?;
        let reference = from_wire(&reference).map_err(Refusal::into_tonic)?;
        let transfer_id = reference.transfer_id;
        let started = Instant::now();
        if let Some(worker) = self.worker_for(&ask) {
            let quick = reference.length <= QUICK_HANDLER_BYTES as u64
                && handler.reads_quickly(reference.length);
            let handle =
                move || handle_reference(handler.as_ref(), &worker, &reference, verify, &ask);
            let (handled, cpu_ns) = if quick {
                cpu::timed(handle)
            } else {
                tokio::task::spawn_blocking(move || cpu::timed(handle))
                    .await
                    .map_err(|err| {
                        Status::internal(format!("the reference handler failed: {err}"))
                    })?
            };
            let mut ack = handled?;
            ack.worker_ns = nanos(started.elapsed());
            ack.worker_cpu_ns = cpu_ns;
            return Ok(Response::new(ack));
        }
        let (handled, cpu_ns) = if handler.reads_quickly(bytes_read(reference.length, verify)) {
            // Reading a small payload costs less than a hand-off to a blocking thread.
            cpu::timed(|| handler.handle(&reference, verify))
        } else {
            // The blocking thread runs on after a deadline drops this future; it cannot be stopped.
            tokio::task::spawn_blocking(move || cpu::timed(|| handler.handle(&reference, verify)))
                .await
                .map_err(|err| Status::internal(format!("the reference handler failed: {err}")))?
        };
        let mut ack = handled.map_err(Refusal::into_tonic)?.to_wire();
        ack.transfer_id = transfer_id;
        if ack.worker_ns == 0 {
            ack.worker_ns = nanos(started.elapsed());
        }
        if ack.worker_cpu_ns == 0 {
            ack.worker_cpu_ns = cpu_ns;
        }
        Ok(Response::new(ack))
    }

    async fn send_reference_stream(
        &self,
        request: Request<Streaming<ReferenceProgress>>,
    ) -> Result<Response<TransferAck>, Status> {
        let Some(handler) = self.handler.clone() else {
            return Err(Status::failed_precondition(
                "zero-copy is not available on this worker",
            ));
        };
        let started = Instant::now();
        let ask = self.ask(&request)?;
        let mut stream = request.into_inner();
        let (mut ack, cpu_ns) = self.receive_progress(handler, &mut stream, ask).await?;
        ack.worker_ns = nanos(started.elapsed());
        ack.worker_cpu_ns = cpu_ns;
        Ok(Response::new(ack))
    }

    type FetchReplyStream = FetchStream;

    async fn fetch_reply(
        &self,
        request: Request<ReplyHandle>,
    ) -> Result<Response<FetchStream>, Status> {
        let id = request.into_inner().transfer_id;
        let body = self
            .worker
            .as_ref()
            .and_then(|w| w.desk.take_deferred(id))
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no deferred reply of transfer {id}: fetched before, expired, or never made"
                ))
            })?;
        Ok(Response::new(reply_chunks(body)))
    }

    async fn release_reply(
        &self,
        request: Request<ReplyHandle>,
    ) -> Result<Response<ReplyReleased>, Status> {
        let id = request.into_inner().transfer_id;
        if let Some(worker) = &self.worker {
            worker.desk.release(id);
        }
        Ok(Response::new(ReplyReleased {}))
    }
}

/// The stream `FetchReply` answers with.
pub(crate) type FetchStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ReplyChunk, Status>> + Send>>;

/// A deferred reply as chunks of at most [`MAX_CHUNK_SIZE`](super::MAX_CHUNK_SIZE) bytes: slices
/// of the heap buffer, or copies out of a segment as they are sent.
fn reply_chunks(body: crate::worker::Body) -> FetchStream {
    use crate::worker::Body;
    const CHUNK: usize = super::MAX_CHUNK_SIZE;
    match body {
        Body::Heap(v) => {
            let bytes = bytes::Bytes::from(v);
            let n = bytes.len().div_ceil(CHUNK);
            Box::pin(tokio_stream::iter((0..n).map(move |i| {
                let end = ((i + 1) * CHUNK).min(bytes.len());
                Ok(ReplyChunk {
                    data: bytes.slice(i * CHUNK..end),
                })
            })))
        }
        Body::Segment(lease, len) => {
            let n = len.div_ceil(CHUNK);
            Box::pin(tokio_stream::iter((0..n).map(move |i| {
                let end = ((i + 1) * CHUNK).min(len);
                Ok(ReplyChunk {
                    data: bytes::Bytes::copy_from_slice(&lease.as_slice()[i * CHUNK..end]),
                })
            })))
        }
    }
}

impl TransferService {
    async fn receive_progress(
        &self,
        handler: Arc<dyn ReferenceHandler>,
        stream: &mut Streaming<ReferenceProgress>,
        ask: Ask,
    ) -> Result<(TransferAck, u64), Status> {
        let first = self.next_message(stream).await?.ok_or_else(|| {
            Status::invalid_argument("expected a first message carrying the reference, got none")
        })?;
        let reference = first.reference.ok_or_else(|| {
            Status::invalid_argument("expected the reference in the first message")
        })?;
        if reference.format.len() > MAX_FORMAT_LEN {
            return Err(Status::invalid_argument(format!(
                "format name of {} bytes, expected at most {MAX_FORMAT_LEN}",
                reference.format.len()
            )));
        }
        let verify = verification_of(&reference).map_err(Refusal::into_tonic)?;
        let reference = from_wire(&reference).map_err(Refusal::into_tonic)?;
        let transfer_id = reference.transfer_id;
        let format = reference.format.clone();
        let (begun, mut cpu_ns) =
            tokio::task::spawn_blocking(move || cpu::timed(|| handler.begin(&reference, verify)))
                .await
                .map_err(|err| Status::internal(format!("the reference handler failed: {err}")))?;
        let mut read = begun.map_err(Refusal::into_tonic)?;
        let mut ready = first.ready;
        // What was announced before; a repeat announces nothing new, and anything less than
        // it is refused by the read.
        let mut announced = 0;
        loop {
            if ready != announced {
                announced = ready;
                let (advanced, spent) = tokio::task::spawn_blocking(move || {
                    let (result, spent) = cpu::timed(|| read.advance(ready));
                    (result.map(|()| read), spent)
                })
                .await
                .map_err(|err| Status::internal(format!("the reference handler failed: {err}")))?;
                cpu_ns += spent;
                read = advanced.map_err(Refusal::into_tonic)?;
            }
            match self.next_message(stream).await? {
                Some(next) if next.reference.is_some() => {
                    return Err(Status::invalid_argument(
                        "expected progress after the first message, got a second reference",
                    ));
                }
                Some(next) => ready = next.ready,
                None => break,
            }
        }
        let Some(worker) = self.worker_for(&ask) else {
            let (finished, spent) = cpu::timed(|| read.finish());
            let mut ack = finished.map_err(Refusal::into_tonic)?.to_wire();
            ack.transfer_id = transfer_id;
            return Ok((ack, cpu_ns + spent));
        };
        let (finished, spent) = tokio::task::spawn_blocking(move || {
            cpu::timed(|| {
                let mut reply = Ok(None);
                let mut visit =
                    |bytes: &[u8]| reply = worker.run(transfer_id, &format, bytes, &ask);
                let acked = read.finish_with(&mut visit);
                acked.map_err(Refusal::into_tonic).and_then(|ack| {
                    let mut ack = ack.to_wire();
                    ack.reply = reply?;
                    Ok(ack)
                })
            })
        })
        .await
        .map_err(|err| Status::internal(format!("the handler's thread failed: {err}")))?;
        let mut ack = finished?;
        ack.transfer_id = transfer_id;
        Ok((ack, cpu_ns + spent))
    }
}

/// Reads a reference and runs the worker's code on the mapped bytes.
fn handle_reference(
    handler: &dyn ReferenceHandler,
    worker: &WorkerSide,
    reference: &Reference,
    verify: Verification,
    ask: &Ask,
) -> Result<TransferAck, Status> {
    let (id, format) = (reference.transfer_id, reference.format.as_str());
    let mut reply = Ok(None);
    let mut visit = |bytes: &[u8]| reply = worker.run(id, format, bytes, ask);
    let ack = handler
        .handle_with(reference, verify, &mut visit)
        .map_err(Refusal::into_tonic)?;
    let mut ack = ack.to_wire();
    ack.transfer_id = id;
    ack.reply = reply?;
    Ok(ack)
}

/// How many of a payload's `length` bytes a handler reads to acknowledge it under `verify`.
fn bytes_read(length: u64, verify: Verification) -> u64 {
    match verify {
        Verification::Checksum => length,
        Verification::Sampled => crate::checksum::sample_ranges(length)
            .map(|r| r.end - r.start)
            .sum(),
        Verification::None => 0,
    }
}

fn nanos(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::{HandlerError, Output};

    #[test]
    fn default_config_is_valid_and_bounds_are_enforced() {
        assert_eq!(ServiceConfig::default().validate(), Ok(()));
        let small_budget = ServiceConfig {
            max_inflight_inline_bytes: 1 << 20,
            ..ServiceConfig::default()
        };
        let err = small_budget.validate().unwrap_err();
        assert_eq!(err.field, "max_inflight_inline_bytes");
        let no_time = ServiceConfig {
            max_call_duration: Duration::ZERO,
            ..ServiceConfig::default()
        };
        assert_eq!(no_time.validate().unwrap_err().field, "max_call_duration");
        let zero = ServiceConfig {
            max_inline_bytes: 0,
            ..ServiceConfig::default()
        };
        assert_eq!(zero.validate().unwrap_err().field, "max_inline_bytes");
        let stall_past_idle = ServiceConfig {
            stall_timeout: Duration::from_secs(20),
            ..ServiceConfig::default()
        };
        assert_eq!(
            stall_past_idle.validate().unwrap_err().field,
            "stall_timeout"
        );
        let no_connections = ServiceConfig {
            max_connections: 0,
            ..ServiceConfig::default()
        };
        assert_eq!(
            no_connections.validate().unwrap_err().field,
            "max_connections"
        );
    }

    struct Echo;

    impl ReferenceHandler for Echo {
        fn handle(&self, reference: &Reference, _: Verification) -> Result<Ack, Refusal> {
            Ok(Ack {
                length: reference.length,
                ..Ack::default()
            })
        }
    }

    fn quiet(_: &crate::worker::Call<'_>) -> Result<Option<Output>, HandlerError> {
        Ok(None)
    }

    async fn features(service: &TransferService, offered: &[&str]) -> Vec<String> {
        let mut host = local_capabilities(false, 0, 0, Vec::new());
        host.features = offered.iter().map(|f| (*f).to_owned()).collect();
        service
            .negotiate(Request::new(host))
            .await
            .unwrap()
            .into_inner()
            .features
    }

    #[tokio::test]
    async fn the_reply_extension_is_spoken_only_with_a_handler_and_a_host_that_names_it() {
        let plain = TransferService::new(ServiceConfig::default()).unwrap();
        assert!(features(&plain, &["reply"]).await.is_empty());
        let working = TransferService::new(ServiceConfig::default())
            .unwrap()
            .with_handler(Arc::new(quiet), None);
        assert!(features(&working, &[]).await.is_empty(), "a v1 host");
        assert_eq!(features(&working, &["zstd", "reply"]).await, ["reply"]);
    }

    #[tokio::test]
    async fn the_verify_extension_is_spoken_only_by_a_worker_that_maps_references() {
        let plain = TransferService::new(ServiceConfig::default()).unwrap();
        assert!(features(&plain, &["verify"]).await.is_empty());
        let mapping = TransferService::new(ServiceConfig::default())
            .unwrap()
            .with_reference_handler(Arc::new(Echo));
        assert!(
            features(&mapping, &["reply"]).await.is_empty(),
            "a host that does not name it"
        );
        assert_eq!(features(&mapping, &["reply", "verify"]).await, ["verify"]);
    }

    #[test]
    fn zero_copy_is_announced_only_with_a_handler() {
        let service = TransferService::new(ServiceConfig::default()).unwrap();
        let plain = service.capabilities();
        assert!(!plain.zero_copy);
        assert_eq!(plain.max_segment_bytes, 0);
        assert_eq!(plain.protocol_version, PROTOCOL_VERSION);
        assert_eq!(plain.pid, std::process::id());
        let with = service
            .with_reference_handler(Arc::new(Echo))
            .capabilities();
        assert!(with.zero_copy);
        assert_eq!(with.max_segment_bytes, 1 << 30);
        assert_eq!(with.max_inline_bytes, DEFAULT_MAX_INLINE_BYTES);
    }
}
