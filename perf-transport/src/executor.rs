//! The executor: decide, carry the transfer out (falling back to gRPC on any zero-copy failure), measure, report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use perf_core::{
    Decision, DecisionContext, FallbackReason, Locality, Method, MetricsSink, ResourceProbe,
    Timestamp, TransferMetrics, TransferPolicy, TransferRequest, ZeroCopyAvailability,
};

use crate::grpc::cpu::CpuTimed;
use crate::grpc::proto::{Capabilities, TransferAck};
use crate::grpc::{ClientError, Code, WorkerClient, checksum, same_host};
use crate::handler::to_wire;
use crate::pool::{Lease, PoolError, SegmentPool};
use crate::reader::now_unix_ms;
use crate::reference::{Reference, Secret};

/// Payloads from this size on are written and read in overlapping parts.
pub const PIPELINE_MIN: usize = 4 << 20;
/// The part a pipelined copy announces at a time.
pub const PIPELINE_PART: usize = 2 << 20;
/// Announcements in flight before the writer waits for the worker.
const PIPELINE_DEPTH: usize = 4;

/// How the executor works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// How long a reference stays valid after it is signed.
    pub reference_ttl: Duration,
    /// Whether to compare the worker's checksum with the payload's (after the
    /// transfer is timed); a zero-copy mismatch falls back to gRPC, a gRPC
    /// mismatch is an error.
    pub verify: bool,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            reference_ttl: Duration::from_secs(30),
            verify: true,
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
}

/// What one transfer did.
#[derive(Debug, Clone)]
pub struct TransferOutcome {
    /// The decision that was made.
    pub decision: Decision,
    /// What was measured; also sent to every sink.
    pub metrics: TransferMetrics,
    /// The worker's acknowledgement.
    pub ack: TransferAck,
}

/// What carrying one transfer measured.
struct Measured {
    method: Method,
    ack: TransferAck,
    latency_us: f64,
    host_cpu_ns: u64,
    decision_ns: u64,
    memory: u64,
    fallback: Option<FallbackReason>,
}

/// Carries transfers to one worker.
pub struct Executor {
    policy: Arc<dyn TransferPolicy>,
    client: WorkerClient,
    peer: Capabilities,
    zero_copy: Option<(SegmentPool, Secret)>,
    sinks: Vec<Arc<dyn MetricsSink>>,
    probe: Arc<dyn ResourceProbe>,
    config: ExecutorConfig,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("policy", &self.policy.name())
            .field("worker", self.client.endpoint())
            .field("zero_copy", &self.zero_copy.is_some())
            .finish_non_exhaustive()
    }
}

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    )
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
    /// An executor for the worker behind `client`, after negotiating with it.
    /// Zero-copy is used only when `zero_copy` is given, the worker maps
    /// references, and it runs on this host.
    pub async fn connect(
        policy: Arc<dyn TransferPolicy>,
        client: WorkerClient,
        zero_copy: Option<(SegmentPool, Secret)>,
        probe: Arc<dyn ResourceProbe>,
        config: ExecutorConfig,
    ) -> Result<Executor, ClientError> {
        let peer = client.negotiate().await?;
        let usable = peer.zero_copy && same_host(&peer);
        Ok(Executor {
            policy,
            client,
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

    /// What the worker said it can do.
    pub fn peer(&self) -> &Capabilities {
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
    /// and the checksum comparison happens after the clock stops.
    pub async fn transfer(
        &self,
        request: &TransferRequest,
        payload: &[u8],
    ) -> Result<TransferOutcome, TransferError> {
        let ctx = self.context(payload.len() as u64);
        let request = self.shape(request, payload.len());
        let started = Instant::now();
        let decision = self.policy.decide(&request, &ctx);
        let decision_ns = started.elapsed().as_nanos() as u64;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let format = request.format.as_str();

        let start = Instant::now();
        let mut fallback = None;
        let mut carried = None;
        let mut cpu_ns = 0;
        if decision.method == Method::ZeroCopy {
            let (result, cpu) = CpuTimed::new(self.zero_copy_copy_in(id, payload, format)).await;
            cpu_ns += cpu;
            match result {
                Ok(done) => carried = Some(done),
                Err(reason) => fallback = Some(reason),
            }
        }
        let mut elapsed = start.elapsed();
        if let Some((ack, _)) = &carried
            && self.config.verify
            && ack.checksum != checksum(payload)
        {
            // The worker read other bytes: never trust that, go the simple way.
            fallback = Some(FallbackReason::WorkerError);
            carried = None;
        }
        let (method, ack, memory) = match carried {
            Some((ack, memory)) => (Method::ZeroCopy, ack, memory),
            None => {
                let (ack, took, cpu) = self.inline(id, payload, format).await?;
                elapsed += took;
                cpu_ns += cpu;
                // The host's copy of the payload and the worker's buffer.
                (Method::Grpc, ack, 2 * payload.len() as u64)
            }
        };
        let measured = Measured {
            method,
            ack,
            latency_us: elapsed.as_secs_f64() * 1e6,
            host_cpu_ns: cpu_ns,
            decision_ns,
            memory,
            fallback,
        };
        Ok(self.record(&request, decision, measured, &ctx))
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
        match &self.zero_copy {
            Some((pool, _)) => pool.acquire(size),
            None => Err(PoolError::Config(
                "zero-copy is not available with this worker".into(),
            )),
        }
    }

    /// Sends the first `len` bytes of a loaned segment: nothing is copied on
    /// the zero-copy path. If the reference is refused, the bytes go by gRPC.
    pub async fn send_lease(
        &self,
        request: &TransferRequest,
        lease: Lease,
        len: usize,
    ) -> Result<TransferOutcome, TransferError> {
        let len = len.min(lease.len());
        // The segment is in hand: zero-copy is possible whatever the pool holds now.
        let ctx = DecisionContext {
            zero_copy: ZeroCopyAvailability::Pooled,
            ..self.context(len as u64)
        };
        let request = self.shape(request, len);
        let started = Instant::now();
        let decision = self.policy.decide(&request, &ctx);
        let decision_ns = started.elapsed().as_nanos() as u64;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let format = request.format.as_str();
        let start = Instant::now();
        let attempt = async {
            match (decision.method, &self.zero_copy) {
                (Method::ZeroCopy, Some((_, secret))) => {
                    self.send_reference(id, &lease, len, format, secret).await
                }
                _ => Err(FallbackReason::ShmExhausted),
            }
        };
        let (sent, mut cpu_ns) = CpuTimed::new(attempt).await;
        let mut elapsed = start.elapsed();
        let bytes = &lease.as_slice()[..len];
        let sent = match sent {
            // The worker read other bytes: never trust that, go the simple way.
            Ok(ack) if self.config.verify && ack.checksum != checksum(bytes) => {
                Err(FallbackReason::WorkerError)
            }
            other => other,
        };
        let (method, ack, memory, fallback) = match sent {
            Ok(ack) => (Method::ZeroCopy, ack, lease.len() as u64, None),
            Err(reason) => {
                let (ack, took, cpu) = self.inline(id, bytes, format).await?;
                elapsed += took;
                cpu_ns += cpu;
                let why = (decision.method == Method::ZeroCopy).then_some(reason);
                (Method::Grpc, ack, 2 * len as u64, why)
            }
        };
        drop(lease);
        let measured = Measured {
            method,
            ack,
            latency_us: elapsed.as_secs_f64() * 1e6,
            host_cpu_ns: cpu_ns,
            decision_ns,
            memory,
            fallback,
        };
        Ok(self.record(&request, decision, measured, &ctx))
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
    ) -> Result<(TransferAck, u64), FallbackReason> {
        let Some((pool, secret)) = &self.zero_copy else {
            return Err(FallbackReason::ShmExhausted);
        };
        let mut lease = pool.acquire(payload.len()).map_err(|e| match e {
            PoolError::Exhausted { .. } => FallbackReason::ShmExhausted,
            _ => FallbackReason::ShmError,
        })?;
        let segment_len = lease.len() as u64;
        if payload.len() < PIPELINE_MIN {
            lease.as_mut_slice()[..payload.len()].copy_from_slice(payload);
            let ack = self
                .send_reference(id, &lease, payload.len(), format, secret)
                .await?;
            return Ok((ack, segment_len));
        }
        let reference = self.reference(id, &lease, payload.len(), format, secret);
        let (progress, announced) = tokio::sync::mpsc::channel(PIPELINE_DEPTH);
        let call = self
            .client
            .send_reference_stream(to_wire(&reference), announced);
        let target = lease.as_mut_slice();
        let write = async move {
            for (part, bytes) in payload.chunks(PIPELINE_PART).enumerate() {
                let from = part * PIPELINE_PART;
                target[from..from + bytes.len()].copy_from_slice(bytes);
                // A closed channel means the call ended early; its result says why.
                if progress.send((from + bytes.len()) as u64).await.is_err() {
                    break;
                }
            }
        };
        let (sent, ()) = tokio::join!(call, write);
        let ack = sent.map_err(|e| fallback_of(&e))?;
        drop(lease);
        Ok((ack, segment_len))
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

    /// Sends `bytes` by gRPC, the last resort, and checks the worker's
    /// checksum (after the clock stops); returns the ack, the time the call
    /// took and the host's CPU time.
    async fn inline(
        &self,
        id: u64,
        bytes: &[u8],
        format: &str,
    ) -> Result<(TransferAck, Duration, u64), TransferError> {
        let start = Instant::now();
        let (sent, cpu) = CpuTimed::new(self.client.send_inline_slice(id, bytes, format)).await;
        let took = start.elapsed();
        let ack = sent.map_err(|source| TransferError::Grpc { id, source })?;
        if self.config.verify && ack.checksum != checksum(bytes) {
            return Err(TransferError::Corrupted {
                id,
                expected: checksum(bytes),
                got: ack.checksum,
            });
        }
        Ok((ack, took, cpu))
    }

    async fn send_reference(
        &self,
        id: u64,
        lease: &Lease,
        len: usize,
        format: &str,
        secret: &Secret,
    ) -> Result<TransferAck, FallbackReason> {
        let reference = self.reference(id, lease, len, format, secret);
        self.client
            .send_reference(to_wire(&reference))
            .await
            .map_err(|e| fallback_of(&e))
    }

    fn record(
        &self,
        request: &TransferRequest,
        decision: Decision,
        m: Measured,
        ctx: &DecisionContext,
    ) -> TransferOutcome {
        let mut metrics = TransferMetrics::new(
            request,
            &decision,
            m.method,
            m.latency_us,
            ctx.now,
            ctx.system,
        );
        metrics.memory_bytes = m.memory;
        metrics.cpu_time_us = (m.host_cpu_ns + m.ack.worker_cpu_ns) as f64 / 1000.0;
        metrics.decision_ns = m.decision_ns;
        metrics.fallback = m.fallback;
        let ack = m.ack;
        for sink in &self.sinks {
            sink.record(&metrics);
        }
        TransferOutcome {
            decision,
            metrics,
            ack,
        }
    }
}
