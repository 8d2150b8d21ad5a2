//! The executor: decide, carry the transfer out (falling back to gRPC on any zero-copy failure), measure, report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use perf_core::{
    Decision, DecisionContext, FailureKind, FallbackReason, Locality, Method, MetricsSink,
    ReplyRecord, ResourceProbe, Timestamp, TransferMetrics, TransferPolicy, TransferRequest,
    Verification, ZeroCopyAvailability,
};

use crate::carrier::{Carrier, bounded};
use crate::checksum::digest;
use crate::grpc::cpu::CpuTimed;
use crate::grpc::service::{REPLY_FEATURE, VERIFY_FEATURE};
use crate::grpc::{Ack, ClientError, Code, Endpoint, PeerCapabilities, checksum, same_host};
use crate::pool::{Lease, PoolError, SegmentPool};
use crate::reader::{MAX_SEGMENT_BYTES, MappingLimits, ReferenceReader, now_unix_ms};
use crate::reference::{Reference, Secret};
use crate::reply::{
    Acked, CallMeta, CallOptions, Held, Releaser, Reply, ReplyAsk, ReplyBody, ReplyEnvelope,
    ReplyMethod, ReplyMetrics,
};
use crate::worker::DEFAULT_REPLY_INLINE;

#[cfg(feature = "delay-injection")]
mod delay;

/// Payloads from this size on, verified by the full checksum, are written and read in
/// overlapping parts; under a sampled verification, or none, the worker has (nearly) nothing to
/// overlap with the copy, and the payload is written whole before its reference goes.
pub const PIPELINE_MIN: usize = 4 << 20;
/// The part a pipelined copy announces at a time.
pub const PIPELINE_PART: usize = 2 << 20;
/// Announcements in flight before the writer waits for the worker.
const PIPELINE_DEPTH: usize = 4;
/// Payloads from this size on are copied into their segment with non-temporal stores
/// ([`perf_platform::stream_copy`]): the worker reads them from memory either way, and a plain
/// copy of a part reads every destination line first. Smaller ones are mostly still in the
/// shared cache when the worker reads them, which a streamed copy would give away. The bound is
/// where `perfopt bench` measured the gain (64 MiB); below it the product copies as before.
pub const STREAM_MIN: usize = 64 << 20;

/// Copies `part`, the whole or a part of a payload of `payload_len` bytes, into `target`.
fn copy_in(target: &mut [u8], part: &[u8], payload_len: usize) {
    if payload_len >= STREAM_MIN {
        perf_platform::stream_copy(target, part);
    } else {
        target.copy_from_slice(part);
    }
}

/// How the executor works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// How long a reference stays valid after it is signed.
    pub reference_ttl: Duration,
    /// How every transfer is verified, whatever its pool says; `None` (the default) follows
    /// each decision's [`Decision::verify`], the pool's `verify` setting. The worker's digest
    /// is compared with the payload's after the transfer is timed: a zero-copy mismatch falls
    /// back to gRPC, a gRPC mismatch is an error. A worker without the `verify` extension is
    /// always asked for the full checksum.
    pub verify: Option<Verification>,
    /// How long a zero-copy transfer waits for a segment when the pool's
    /// budget is only busy (lent segments hold it), before it falls back to
    /// gRPC with [`FallbackReason::ShmExhausted`]. Zero never waits.
    pub segment_wait: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            reference_ttl: Duration::from_secs(30),
            verify: None,
            segment_wait: Duration::from_millis(250),
        }
    }
}

/// Why a transfer failed; a zero-copy failure is never one of these, since it
/// falls back to gRPC.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// gRPC, the last resort, failed too.
    #[error("transfer {id} failed over gRPC: {source}")]
    Grpc {
        /// The transfer.
        id: u64,
        /// What went wrong.
        source: ClientError,
    },
    /// The worker read other bytes than were sent.
    #[error("transfer {id}: the worker read checksum {got:#018x}, expected {expected:#018x}")]
    Corrupted {
        /// The transfer.
        id: u64,
        /// The payload's checksum.
        expected: u64,
        /// The worker's.
        got: u64,
    },
    /// The payload is larger than perfopt carries.
    #[error("payload of {0} bytes is larger than the 1 TiB perfopt carries")]
    TooLarge(u64),
    /// The worker's code failed on the payload; it is neither retried nor sent another way.
    /// Its text is the worker's: `the handler failed on transfer <id>: <kind>: <message>`.
    #[error("{message}")]
    Handler {
        /// The transfer.
        id: u64,
        /// The kind the worker named (an exception's type, `panic`, `bad-reply`).
        kind: String,
        /// The worker's message.
        message: String,
    },
    /// A reply was asked for and the worker does not speak the reply extension; it takes
    /// one-way transfers only. Nothing was sent.
    #[error(
        "the worker at {endpoint} does not speak the reply extension; it takes transfers one way only"
    )]
    NoReplies {
        /// The worker's endpoint.
        endpoint: String,
    },
    /// The worker's reply could not be taken (a refused segment, a wrong checksum, a fetch
    /// that failed).
    #[error("transfer {id}: the worker's reply could not be taken: {message}")]
    BadReply {
        /// The transfer.
        id: u64,
        /// What went wrong.
        message: String,
    },
    /// No worker could take the transfer: none was connected within the wait.
    #[error("no worker could take the transfer within {waited:?}: {why}")]
    NoWorker {
        /// How long the transfer waited for one.
        waited: Duration,
        /// What the workers were doing.
        why: String,
    },
}

impl TransferError {
    /// The kind of failure, as recorded.
    pub fn kind(&self) -> FailureKind {
        match self {
            TransferError::Grpc { source, .. } => match source {
                ClientError::Connect { .. } | ClientError::Unavailable { .. } => {
                    FailureKind::Unavailable
                }
                ClientError::Timeout { .. } => FailureKind::Timeout,
                ClientError::Rejected { .. }
                | ClientError::InvalidRequest { .. }
                | ClientError::ReplyRefused { .. } => FailureKind::Refused,
                ClientError::Config(_) | ClientError::Protocol { .. } => FailureKind::Internal,
                ClientError::Handler { .. } => FailureKind::Handler,
            },
            TransferError::Handler { .. } => FailureKind::Handler,
            TransferError::NoReplies { .. } => FailureKind::Refused,
            TransferError::BadReply { .. } => FailureKind::Corrupted,
            TransferError::Corrupted { .. } => FailureKind::Corrupted,
            TransferError::TooLarge(_) => FailureKind::TooLarge,
            TransferError::NoWorker { .. } => FailureKind::Unavailable,
        }
    }

    /// Whether the worker looks gone or hung (unreachable, connection broken,
    /// no answer in time) rather than refusing this transfer: another worker
    /// may carry it.
    pub fn worker_gone(&self) -> bool {
        matches!(
            self,
            TransferError::Grpc {
                source: ClientError::Unavailable { .. }
                    | ClientError::Connect { .. }
                    | ClientError::Timeout { .. },
                ..
            }
        )
    }
}

/// What one transfer did.
#[derive(Debug, Clone)]
pub struct TransferOutcome {
    /// The decision that was made.
    pub decision: Decision,
    /// What was measured; also sent to every sink.
    pub metrics: TransferMetrics,
    /// The worker's acknowledgement.
    pub ack: Ack,
    /// How the bytes were verified: what the worker was asked to hash and the host compared
    /// ([`Verification::None`]: nothing was compared).
    pub verified: Verification,
}

/// What carrying one transfer measured.
struct Measured {
    method: Method,
    latency_us: f64,
    cpu_ns: u64,
    decision_ns: u64,
    queued_us: f64,
    memory: u64,
    fallback: Option<FallbackReason>,
}

/// The bytes a transfer carries: borrowed from the caller (copied once into a
/// segment on the zero-copy path) or already in a loaned segment.
pub(crate) enum Payload<'a> {
    /// The caller's bytes.
    Borrowed(&'a [u8]),
    /// The first `len` bytes of a loaned segment.
    Loaned(Lease, usize),
}

impl Payload<'_> {
    /// The first `len` bytes of `lease`, or all of it when `len` is longer.
    pub(crate) fn loaned(lease: Lease, len: usize) -> Payload<'static> {
        let len = len.min(lease.len());
        Payload::Loaned(lease, len)
    }

    /// Bytes carried.
    pub(crate) fn len(&self) -> usize {
        self.bytes().len()
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Payload::Borrowed(bytes) => bytes,
            Payload::Loaned(lease, len) => &lease.as_slice()[..*len],
        }
    }
}

/// Carries transfers to one worker, over any [`Carrier`].
pub struct Executor {
    policy: Arc<dyn TransferPolicy>,
    carrier: Arc<dyn Carrier>,
    peer: PeerCapabilities,
    zero_copy: Option<(SegmentPool, Secret)>,
    sinks: Vec<Arc<dyn MetricsSink>>,
    probe: Arc<dyn ResourceProbe>,
    config: ExecutorConfig,
    next_id: AtomicU64,
    /// Maps the worker's reply segments, when this host maps them and the worker speaks the
    /// reply extension.
    reply_reader: Option<Arc<ReferenceReader>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("policy", &self.policy.name())
            .field("worker", self.carrier.endpoint())
            .field("zero_copy", &self.zero_copy.is_some())
            .finish_non_exhaustive()
    }
}

/// The one loan path of the executor and the host: a writable segment of `pool` for a payload
/// of up to `size` bytes, or an error when there is no pool to lend from.
pub(crate) fn loan(pool: Option<&SegmentPool>, size: usize) -> Result<Lease, PoolError> {
    match pool {
        Some(pool) => pool.acquire(size),
        None => Err(PoolError::Config(
            "zero-copy is not available: no segment pool, or no worker that maps references".into(),
        )),
    }
}

pub(crate) fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    )
}

/// Why a zero-copy attempt did not deliver: a reason to fall back to gRPC, or the worker's code
/// failing, which no other way would change.
enum Missed {
    Fallback(FallbackReason),
    Handler(ClientError),
}

impl From<FallbackReason> for Missed {
    fn from(reason: FallbackReason) -> Missed {
        Missed::Fallback(reason)
    }
}

fn missed(e: ClientError) -> Missed {
    match e {
        // The worker's code ran: another attempt would run it again.
        ClientError::Handler { .. } | ClientError::ReplyRefused { .. } => Missed::Handler(e),
        other => Missed::Fallback(fallback_of(&other)),
    }
}

/// The transfer error of a failed call.
fn grpc_error(id: u64, source: ClientError) -> TransferError {
    match source {
        ClientError::Handler { kind, message, .. } => TransferError::Handler { id, kind, message },
        source => TransferError::Grpc { id, source },
    }
}

/// Why a zero-copy attempt fell back, from what the client said.
fn fallback_of(e: &ClientError) -> FallbackReason {
    if e.is_timeout() {
        return FallbackReason::Timeout;
    }
    match e.rejection_code() {
        Some(
            Code::Unauthenticated
            | Code::PermissionDenied
            | Code::OutOfRange
            | Code::InvalidArgument
            | Code::FailedPrecondition,
        ) => FallbackReason::ReferenceRefused,
        _ => FallbackReason::WorkerError,
    }
}

impl Executor {
    /// An executor for the worker behind `carrier` (a [`WorkerClient`](crate::WorkerClient)
    /// for gRPC), after negotiating with it. Zero-copy is used only when `zero_copy` is given,
    /// the worker maps references, and it runs on this host.
    pub async fn connect(
        policy: Arc<dyn TransferPolicy>,
        carrier: impl Carrier,
        zero_copy: Option<(SegmentPool, Secret)>,
        probe: Arc<dyn ResourceProbe>,
        config: ExecutorConfig,
    ) -> Result<Executor, ClientError> {
        Executor::over(policy, Arc::new(carrier), zero_copy, probe, config).await
    }

    /// As [`Executor::connect`], over a carrier already shared.
    pub(crate) async fn over(
        policy: Arc<dyn TransferPolicy>,
        carrier: Arc<dyn Carrier>,
        zero_copy: Option<(SegmentPool, Secret)>,
        probe: Arc<dyn ResourceProbe>,
        config: ExecutorConfig,
    ) -> Result<Executor, ClientError> {
        let reply_segments = if zero_copy.is_some() {
            MAX_SEGMENT_BYTES
        } else {
            0
        };
        let peer = bounded(
            "negotiate",
            carrier.call_timeout(),
            carrier.negotiate(reply_segments),
        )
        .await?;
        let usable = peer.zero_copy && same_host(&peer);
        let reply_reader = zero_copy
            .as_ref()
            .filter(|_| same_host(&peer) && peer.speaks(REPLY_FEATURE))
            .map(|(_, secret)| {
                let limits = MappingLimits {
                    max_segment_bytes: MAX_SEGMENT_BYTES,
                    ..MappingLimits::default()
                };
                let shm = Arc::new(perf_platform::MemfdShm::default());
                Arc::new(ReferenceReader::with_limits(
                    shm,
                    secret.clone(),
                    Some(peer.pid),
                    limits,
                ))
            });
        Ok(Executor {
            reply_reader,
            policy,
            carrier,
            zero_copy: zero_copy.filter(|_| usable),
            peer,
            sinks: Vec::new(),
            probe,
            config,
            next_id: AtomicU64::new(1),
        })
    }

    /// Sends every transfer record to `sink` too.
    pub fn with_sink(mut self, sink: Arc<dyn MetricsSink>) -> Executor {
        self.sinks.push(sink);
        self
    }

    /// The worker's endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        self.carrier.endpoint()
    }

    /// What the worker said it can do.
    pub fn peer(&self) -> &PeerCapabilities {
        &self.peer
    }

    /// The segment pool, when zero-copy is possible with this worker.
    pub fn pool(&self) -> Option<&SegmentPool> {
        self.zero_copy.as_ref().map(|(p, _)| p)
    }

    /// The decision context for `size` bytes now: zero-copy is unavailable for a payload
    /// larger than the worker maps.
    pub fn context(&self, size: u64) -> DecisionContext {
        let system = self.probe.sample();
        if let Some(pool) = self.pool() {
            pool.follow_pressure(system.memory_used);
        }
        let zero_copy = match self.pool() {
            Some(pool) if size <= self.peer.max_segment_bytes => pool.availability(size),
            _ => ZeroCopyAvailability::Unavailable,
        };
        DecisionContext {
            now: now(),
            system,
            zero_copy,
        }
    }

    /// Decides, carries `payload` to the worker, verifies and records it.
    ///
    /// The latency covers the carrying only: the decision is timed apart,
    /// and the checksum comparison happens after the clock stops. A failed
    /// transfer is recorded too (`success == false`, with its kind).
    pub async fn transfer(
        &self,
        request: &TransferRequest,
        payload: &[u8],
    ) -> Result<TransferOutcome, TransferError> {
        self.carry(
            self.policy.as_ref(),
            request,
            &Payload::Borrowed(payload),
            Duration::ZERO,
            None,
        )
        .await
        .map(|(outcome, _)| outcome)
    }

    /// As [`Executor::transfer`], and hands the worker's code the payload with `options`,
    /// asking for its reply: the returned [`Reply`] is a view over the worker's segment, or the
    /// bytes that came inline or were fetched. A handler's failure is
    /// [`TransferError::Handler`]; a worker without the reply extension gets nothing and the
    /// call fails with [`TransferError::NoReplies`].
    pub async fn call(
        &self,
        request: &TransferRequest,
        payload: &[u8],
        options: &CallOptions,
    ) -> Result<Reply, TransferError> {
        let payload = Payload::Borrowed(payload);
        let (outcome, reply) = self
            .carry(
                self.policy.as_ref(),
                request,
                &payload,
                Duration::ZERO,
                Some(options),
            )
            .await?;
        self.take_reply(outcome, reply).await
    }

    /// Whether the worker speaks the reply extension.
    pub fn replies(&self) -> bool {
        self.peer.speaks(REPLY_FEATURE)
    }

    /// Turns the reply an acknowledgement carried into the caller's [`Reply`]: maps and checks
    /// a segment, or fetches deferred bytes; verifies length and checksum.
    ///
    /// The call's record goes to the sinks here, once the reply is in hand: with the reply's
    /// method, size and latency, or as a failure when the reply could not be had.
    pub(crate) async fn take_reply(
        &self,
        outcome: TransferOutcome,
        envelope: Option<ReplyEnvelope>,
    ) -> Result<Reply, TransferError> {
        let mut metrics = outcome.metrics;
        match self.receive_reply(outcome, envelope).await {
            Ok(mut reply) => {
                let m = reply.metrics;
                metrics.reply = Some(ReplyRecord {
                    method: match m.method {
                        ReplyMethod::Segment => Method::ZeroCopy,
                        ReplyMethod::Nothing | ReplyMethod::Inline | ReplyMethod::Fetched => {
                            Method::Grpc
                        }
                    },
                    size: m.size,
                    latency_us: m.latency_us,
                    inline: matches!(m.method, ReplyMethod::Nothing | ReplyMethod::Inline),
                });
                reply.outcome.metrics = metrics;
                self.emit(&metrics);
                Ok(reply)
            }
            Err(e) => {
                metrics.fail(e.kind());
                self.emit(&metrics);
                Err(e)
            }
        }
    }

    /// The reply an acknowledgement carried, mapped and checked or fetched.
    async fn receive_reply(
        &self,
        outcome: TransferOutcome,
        envelope: Option<ReplyEnvelope>,
    ) -> Result<Reply, TransferError> {
        let id = outcome.ack.transfer_id;
        let started = Instant::now();
        let Some(envelope) = envelope else {
            return Ok(Reply {
                held: Held::Owned(Vec::new()),
                format: String::new(),
                metadata: Default::default(),
                metrics: ReplyMetrics {
                    method: ReplyMethod::Nothing,
                    size: 0,
                    latency_us: 0.0,
                },
                outcome,
            });
        };
        let bad = |message: String| TransferError::BadReply { id, message };
        // The mapping of a reply segment checksums it as it maps it.
        let mut summed = None;
        let (held, method) = match envelope.body {
            ReplyBody::Inline(bytes) => (Held::Owned(bytes), ReplyMethod::Inline),
            ReplyBody::Deferred => {
                let deadline = self.carrier.inline_deadline(envelope.length);
                let call = self.carrier.fetch_reply(id, envelope.length);
                let bytes = bounded("fetch_reply", deadline, call)
                    .await
                    .map_err(|e| bad(e.to_string()))?;
                (Held::Owned(bytes), ReplyMethod::Fetched)
            }
            ReplyBody::Segment(reference) => {
                let releaser = Releaser {
                    carrier: self.carrier.clone(),
                    transfer_id: id,
                };
                let Some(reader) = self.reply_reader.clone() else {
                    return Err(bad("a reply segment came, and this host maps none".into()));
                };
                if reference.transfer_id != id {
                    return Err(bad(format!(
                        "the reply segment names transfer {}",
                        reference.transfer_id
                    )));
                }
                let mapped = tokio::task::spawn_blocking(move || {
                    // Mappings of segments the worker has freed since go first, so that they
                    // do not keep its memory alive.
                    reader.release_unused();
                    reader.map(&reference)
                })
                .await
                .map_err(|e| bad(format!("the mapping thread failed: {e}")))?
                .map_err(|e| bad(e.to_string()))?;
                summed = Some(mapped.1.checksum);
                (Held::Mapped(mapped.0, releaser), ReplyMethod::Segment)
            }
        };
        let reply = Reply {
            held,
            format: envelope.format,
            metadata: envelope.metadata,
            metrics: ReplyMetrics {
                method,
                size: envelope.length,
                latency_us: 0.0,
            },
            outcome,
        };
        let got = reply.bytes();
        if got.len() as u64 != envelope.length {
            return Err(bad(format!(
                "{} reply bytes, the ack says {}",
                got.len(),
                envelope.length
            )));
        }
        if self.verification(&reply.outcome.decision) != Verification::None {
            let sum = summed.unwrap_or_else(|| checksum(got));
            if sum != envelope.checksum {
                return Err(bad(format!(
                    "reply checksum {sum:#018x}, the ack says {:#018x}",
                    envelope.checksum
                )));
            }
        }
        let mut reply = reply;
        reply.metrics.latency_us = started.elapsed().as_secs_f64() * 1e6;
        Ok(reply)
    }

    /// How a transfer decided as `decision` is verified: the configured override, else the
    /// pool's setting the decision carries.
    fn verification(&self, decision: &Decision) -> Verification {
        self.config.verify.unwrap_or(decision.verify)
    }

    /// What a worker is asked to hash for a reference: the wanted verification when it speaks
    /// the `verify` extension, else the full checksum, all it knows.
    fn reference_verification(&self, wanted: Verification) -> Verification {
        if self.peer.speaks(VERIFY_FEATURE) {
            wanted
        } else {
            Verification::Checksum
        }
    }

    /// The request as carried: its real size, and marked remote when the
    /// worker runs on another host (no shared memory can reach it).
    fn shape(&self, request: &TransferRequest, len: usize) -> TransferRequest {
        let locality = if same_host(&self.peer) {
            request.locality
        } else {
            Locality::Remote
        };
        TransferRequest {
            size: len as u64,
            locality,
            ..*request
        }
    }

    /// Lends a segment for a payload of up to `size` bytes, for a producer that
    /// writes straight into shared memory; send it with [`Executor::send_lease`].
    pub fn loan(&self, size: usize) -> Result<Lease, PoolError> {
        loan(self.pool(), size)
    }

    /// Sends the first `len` bytes of a loaned segment: nothing is copied on
    /// the zero-copy path. If the reference is refused, the bytes go by gRPC.
    pub async fn send_lease(
        &self,
        request: &TransferRequest,
        lease: Lease,
        len: usize,
    ) -> Result<TransferOutcome, TransferError> {
        let payload = Payload::loaned(lease, len);
        self.carry(
            self.policy.as_ref(),
            request,
            &payload,
            Duration::ZERO,
            None,
        )
        .await
        .map(|(outcome, _)| outcome)
    }

    /// The one path of every transfer: decide with `policy`, carry by
    /// zero-copy when decided (falling back to gRPC on any failure), verify,
    /// and record what happened, failures included. `queued` is the time the
    /// transfer waited for admission before it got here.
    pub(crate) async fn carry(
        &self,
        policy: &dyn TransferPolicy,
        request: &TransferRequest,
        payload: &Payload<'_>,
        queued: Duration,
        call: Option<&CallOptions>,
    ) -> Result<(TransferOutcome, Option<ReplyEnvelope>), TransferError> {
        let len = payload.bytes().len();
        let mut ctx = self.context(len as u64);
        if matches!(payload, Payload::Loaned(..)) {
            // The segment is in hand: zero-copy is possible whatever the pool holds now.
            ctx.zero_copy = ZeroCopyAvailability::Pooled;
        }
        let request = self.shape(request, len);
        let started = Instant::now();
        let decision = policy.decide(&request, &ctx);
        let decision_ns = started.elapsed().as_nanos() as u64;
        if call.is_some() && !self.replies() {
            let e = TransferError::NoReplies {
                endpoint: self.carrier.endpoint().to_string(),
            };
            let refused = Measured {
                method: decision.method,
                latency_us: 0.0,
                cpu_ns: 0,
                decision_ns,
                queued_us: queued.as_secs_f64() * 1e6,
                memory: 0,
                fallback: None,
            };
            self.emit(&self.measure(&request, decision, &refused, None, &ctx, Some(e.kind())));
            return Err(e);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let format = request.format.as_str();
        let wanted = self.verification(&decision);
        let by_reference = self.reference_verification(wanted);
        let meta = CallMeta {
            reply: call.map(|_| ReplyAsk {
                inline_max: DEFAULT_REPLY_INLINE,
                threshold: decision.reply_threshold,
            }),
            options: call.cloned().unwrap_or_default(),
            verify: by_reference,
        };
        let meta = &meta;
        let mut measured = Measured {
            method: Method::Grpc,
            latency_us: 0.0,
            cpu_ns: 0,
            decision_ns,
            queued_us: queued.as_secs_f64() * 1e6,
            memory: 2 * len as u64,
            fallback: None,
        };

        let start = Instant::now();
        let mut carried = None;
        if decision.method == Method::ZeroCopy {
            let (result, cpu) = match &payload {
                Payload::Borrowed(bytes) => {
                    CpuTimed::new(self.zero_copy_copy_in(id, bytes, format, meta)).await
                }
                Payload::Loaned(lease, len) => {
                    CpuTimed::new(self.send_loaned(id, lease, *len, format, meta)).await
                }
            };
            measured.cpu_ns += cpu;
            #[cfg(feature = "delay-injection")]
            delay::inject().await;
            match result {
                Ok(done) => carried = Some(done),
                Err(Missed::Fallback(reason)) => measured.fallback = Some(reason),
                Err(Missed::Handler(source)) => {
                    measured.latency_us = start.elapsed().as_secs_f64() * 1e6;
                    measured.method = Method::ZeroCopy;
                    let e = grpc_error(id, source);
                    self.emit(&self.measure(
                        &request,
                        decision,
                        &measured,
                        None,
                        &ctx,
                        Some(e.kind()),
                    ));
                    return Err(e);
                }
            }
        }
        let mut elapsed = start.elapsed();
        let bytes = payload.bytes();
        let mut verified = by_reference;
        if let Some((acked, _)) = &carried
            && by_reference != Verification::None
            && acked.ack.checksum != digest(bytes, by_reference)
        {
            // The worker read other bytes: never trust that, go the simple way.
            measured.fallback = Some(FallbackReason::WorkerError);
            carried = None;
        }
        let acked = match carried {
            Some((acked, memory)) => {
                measured.method = Method::ZeroCopy;
                measured.memory = memory;
                acked
            }
            None => {
                let start = Instant::now();
                let deadline = self.carrier.inline_deadline(len as u64);
                let call = self.carrier.send_inline(id, bytes, format, meta);
                let (sent, cpu) = CpuTimed::new(bounded("send_inline", deadline, call)).await;
                elapsed += start.elapsed();
                measured.cpu_ns += cpu;
                // A worker always checksums an inline payload whole as it reassembles it: the
                // host compares that unless the pool verifies nothing.
                verified = match wanted {
                    Verification::None => Verification::None,
                    _ => Verification::Checksum,
                };
                let checked = sent
                    .map_err(|source| grpc_error(id, source))
                    .and_then(|acked| {
                        if verified == Verification::None {
                            return Ok(acked);
                        }
                        // After the clock stopped.
                        let expected = checksum(bytes);
                        if acked.ack.checksum != expected {
                            return Err(TransferError::Corrupted {
                                id,
                                expected,
                                got: acked.ack.checksum,
                            });
                        }
                        Ok(acked)
                    });
                match checked {
                    Ok(acked) => acked,
                    Err(e) => {
                        measured.latency_us = elapsed.as_secs_f64() * 1e6;
                        self.emit(&self.measure(
                            &request,
                            decision,
                            &measured,
                            None,
                            &ctx,
                            Some(e.kind()),
                        ));
                        return Err(e);
                    }
                }
            }
        };
        measured.latency_us = elapsed.as_secs_f64() * 1e6;
        let ack = acked.ack;
        // A call's record waits for its reply (`take_reply`).
        let metrics = self.measure(&request, decision, &measured, Some(&ack), &ctx, None);
        if call.is_none() {
            self.emit(&metrics);
        }
        let outcome = TransferOutcome {
            decision,
            metrics,
            ack,
            verified,
        };
        Ok((outcome, acked.reply))
    }

    /// Sends a reference to the first `len` bytes of a loaned segment.
    async fn send_loaned(
        &self,
        id: u64,
        lease: &Lease,
        len: usize,
        format: &str,
        meta: &CallMeta,
    ) -> Result<(Acked, u64), Missed> {
        let Some((_, secret)) = &self.zero_copy else {
            return Err(FallbackReason::ShmExhausted.into());
        };
        let acked = self
            .send_reference(id, lease, len, format, secret, meta)
            .await?;
        Ok((acked, lease.len() as u64))
    }

    /// Writes the payload once into a pooled segment and sends its reference.
    ///
    /// From [`PIPELINE_MIN`] bytes on, the reference goes first and the copy
    /// follows in parts of [`PIPELINE_PART`] bytes, each announced as it is
    /// written, so the worker reads one part while the host writes the next.
    async fn zero_copy_copy_in(
        &self,
        id: u64,
        payload: &[u8],
        format: &str,
        meta: &CallMeta,
    ) -> Result<(Acked, u64), Missed> {
        let Some((pool, secret)) = &self.zero_copy else {
            return Err(FallbackReason::ShmExhausted.into());
        };
        let mut lease = pool
            .acquire_within(payload.len(), self.config.segment_wait)
            .await
            .map_err(|e| match e {
                PoolError::Exhausted { .. } => Missed::Fallback(FallbackReason::ShmExhausted),
                _ => Missed::Fallback(FallbackReason::ShmError),
            })?;
        let segment_len = lease.len() as u64;
        if payload.len() < PIPELINE_MIN || meta.verify != Verification::Checksum {
            copy_in(
                &mut lease.as_mut_slice()[..payload.len()],
                payload,
                payload.len(),
            );
            let acked = self
                .send_reference(id, &lease, payload.len(), format, secret, meta)
                .await?;
            return Ok((acked, segment_len));
        }
        let reference = self.reference(id, &lease, payload.len(), format, secret);
        let (progress, announced) = tokio::sync::mpsc::channel(PIPELINE_DEPTH);
        let deadline = self.carrier.inline_deadline(payload.len() as u64);
        let call = bounded(
            "send_reference_stream",
            deadline,
            self.carrier
                .send_reference_stream(&reference, announced, meta),
        );
        let target = lease.as_mut_slice();
        let write = async move {
            for (part, bytes) in payload.chunks(PIPELINE_PART).enumerate() {
                let from = part * PIPELINE_PART;
                copy_in(&mut target[from..from + bytes.len()], bytes, payload.len());
                // A closed channel means the call ended early; its result says why.
                if progress.send((from + bytes.len()) as u64).await.is_err() {
                    break;
                }
                // Lets the connection send the announcement now rather than after the next
                // parts are written, so the worker reads while the host writes.
                tokio::task::yield_now().await;
            }
        };
        let (sent, ()) = tokio::join!(call, write);
        let acked = sent.map_err(missed)?;
        drop(lease);
        Ok((acked, segment_len))
    }

    fn reference(
        &self,
        id: u64,
        lease: &Lease,
        len: usize,
        format: &str,
        secret: &Secret,
    ) -> Reference {
        let mut reference = Reference {
            transfer_id: id,
            segment: lease.id().clone(),
            segment_inode: lease.inode(),
            segment_len: lease.len() as u64,
            offset: 0,
            length: len as u64,
            format: format.to_string(),
            expires_unix_ms: now_unix_ms() + self.config.reference_ttl.as_millis() as u64,
            token: [0; 32],
        };
        reference.sign(secret);
        reference
    }

    async fn send_reference(
        &self,
        id: u64,
        lease: &Lease,
        len: usize,
        format: &str,
        secret: &Secret,
        meta: &CallMeta,
    ) -> Result<Acked, Missed> {
        let reference = self.reference(id, lease, len, format, secret);
        let call = self.carrier.send_reference(&reference, meta);
        bounded("send_reference", self.carrier.call_timeout(), call)
            .await
            .map_err(missed)
    }

    /// The record of one transfer.
    fn measure(
        &self,
        request: &TransferRequest,
        decision: Decision,
        m: &Measured,
        ack: Option<&Ack>,
        ctx: &DecisionContext,
        failure: Option<FailureKind>,
    ) -> TransferMetrics {
        let mut metrics = TransferMetrics::new(
            request,
            &decision,
            m.method,
            m.latency_us,
            ctx.now,
            ctx.system,
        );
        metrics.memory_bytes = m.memory;
        let worker_cpu_ns = ack.map_or(0, |a| a.worker_cpu_ns);
        metrics.cpu_time_us = (m.cpu_ns + worker_cpu_ns) as f64 / 1000.0;
        metrics.decision_ns = m.decision_ns;
        metrics.queued_us = m.queued_us;
        metrics.fallback = m.fallback;
        if let Some(kind) = failure {
            metrics.fail(kind);
        }
        metrics
    }

    /// Sends a record to every sink.
    fn emit(&self, metrics: &TransferMetrics) {
        for sink in &self.sinks {
            sink.record(metrics);
        }
    }
}

#[cfg(test)]
mod tests;
