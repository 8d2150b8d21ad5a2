//! The seam traits other crates implement, each with a Noop or fixed implementation.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decision::{Decision, MethodEstimate};
use crate::metrics::TransferMetrics;
use crate::name::Name;
use crate::request::{DecisionContext, SystemState, Timestamp, TransferRequest};
use crate::vocab::Method;

/// Decides how one transfer travels.
pub trait TransferPolicy: Send + Sync {
    /// The policy's name, as shown in reports and experiments.
    fn name(&self) -> &str;
    /// Decides for `request` in `ctx`; must not block, allocate or do IO.
    fn decide(&self, request: &TransferRequest, ctx: &DecisionContext) -> Decision;
}

/// Receives the record of every completed transfer.
pub trait MetricsSink: Send + Sync {
    /// Records one transfer; never blocks the caller (a full buffer drops and counts).
    fn record(&self, metrics: &TransferMetrics);
    /// Makes recorded metrics durable or visible; may block.
    fn flush(&self) {}
}

/// A sink that discards everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopSink;

impl MetricsSink for NoopSink {
    fn record(&self, _metrics: &TransferMetrics) {}
}

/// A time range and filter for [`MetricsQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeriesQuery {
    /// Only this pool, or all.
    pub pool: Option<Name>,
    /// Only this method, or both.
    pub method: Option<Method>,
    /// Start of the range, inclusive.
    pub from: Timestamp,
    /// End of the range, exclusive.
    pub to: Timestamp,
    /// Bucket width in seconds, 1 to 3600.
    pub granularity_secs: u32,
}

/// Summary statistics of one metric over a set of transfers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

/// One time bucket of a series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Start of the bucket.
    pub start: Timestamp,
    /// Latency in microseconds.
    pub latency_us: Percentiles,
    /// Throughput in bytes per second.
    pub throughput_bps: Percentiles,
    /// Decision time in nanoseconds.
    pub decision_ns: Percentiles,
    /// Memory held in bytes.
    pub memory_bytes: Percentiles,
}

/// Which raw samples to return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleFilter {
    /// Only this pool, or all.
    pub pool: Option<Name>,
    /// Only this method, or both.
    pub method: Option<Method>,
    /// Only samples at or after this time.
    pub since: Timestamp,
    /// Only sizes in this inclusive range.
    pub sizes: Option<(u64, u64)>,
}

/// Why a metrics query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The query itself is invalid.
    #[error("invalid query: {0}")]
    Invalid(String),
    /// The backing store failed.
    #[error("metrics store failed: {0}")]
    Store(String),
}

/// Reads recorded metrics: percentile series and raw samples.
pub trait MetricsQuery: Send + Sync {
    /// Percentiles per time bucket (merged histograms, never averaged percentiles).
    fn series(&self, query: &SeriesQuery) -> Result<Vec<SeriesPoint>, QueryError>;
    /// The most recent `limit` raw samples that pass `filter`, newest first.
    fn samples(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, QueryError>;
}

/// A query source with no data.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopQuery;

impl MetricsQuery for NoopQuery {
    fn series(&self, _query: &SeriesQuery) -> Result<Vec<SeriesPoint>, QueryError> {
        Ok(Vec::new())
    }
    fn samples(
        &self,
        _filter: &SampleFilter,
        _limit: usize,
    ) -> Result<Vec<TransferMetrics>, QueryError> {
        Ok(Vec::new())
    }
}

/// Learned per-method estimates for one request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Zero-copy estimate, with its interval.
    pub zero_copy: MethodEstimate,
    /// gRPC estimate, with its interval.
    pub grpc: MethodEstimate,
    /// How sure the model is, 0.0 to 1.0.
    pub confidence: f64,
    /// How many samples the model has seen for this kind of request.
    pub samples: u64,
}

/// Predicts per-method costs from what was measured before.
pub trait Predictor: Send + Sync {
    /// The model's name and version, for rationales.
    fn name(&self) -> &str;
    /// Estimates for `request`, or `None` when the model knows nothing useful;
    /// must not block, allocate or do IO.
    fn predict(&self, request: &TransferRequest, system: &SystemState) -> Option<Prediction>;
}

/// A predictor that never predicts: the engine uses its calibrated coefficients.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopPredictor;

impl Predictor for NoopPredictor {
    fn name(&self) -> &str {
        "none"
    }
    fn predict(&self, _request: &TransferRequest, _system: &SystemState) -> Option<Prediction> {
        None
    }
}

/// A predictor that returns the same prediction for every request.
#[derive(Debug, Clone, Copy)]
pub struct FixedPredictor(pub Prediction);

impl Predictor for FixedPredictor {
    fn name(&self) -> &str {
        "fixed"
    }
    fn predict(&self, _request: &TransferRequest, _system: &SystemState) -> Option<Prediction> {
        Some(self.0)
    }
}

/// Names a shared-memory segment across processes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentId {
    /// An anonymous memory file, reachable as `/proc/<pid>/fd/<fd>`.
    Memfd {
        /// The owning process.
        pid: u32,
        /// The descriptor in that process.
        fd: i32,
    },
    /// A named segment (e.g. under /dev/shm).
    Named(String),
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentId::Memfd { pid, fd } => write!(f, "/proc/{pid}/fd/{fd}"),
            SegmentId::Named(name) => f.write_str(name),
        }
    }
}

/// Why a shared-memory operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShmError {
    /// This backend cannot provide shared memory here.
    #[error("shared memory is not supported by backend {0}")]
    Unsupported(&'static str),
    /// No space is left for a segment of this size.
    #[error("no space for a segment of {0} bytes")]
    NoSpace(u64),
    /// The segment does not exist.
    #[error("segment {0} not found")]
    NotFound(String),
    /// The segment exists but may not be used by this process.
    #[error("segment {0} is not accessible: {1}")]
    Denied(String, String),
    /// The backend cannot seal segments (only memory files take seals).
    #[error("segment {0} cannot be sealed: only memfd segments take seals")]
    SealUnsupported(String),
    /// The request itself is invalid (a zero length, a bad name).
    #[error("invalid shared-memory request: {0}")]
    Invalid(String),
    /// The operating system refused.
    #[error("shared memory operation failed: {0}")]
    Os(String),
    /// The segment's file no longer has the length it was mapped with: another process of the
    /// same user resized it, and touching the missing pages would fault.
    #[error("segment {id} was resized to {found} bytes after it was mapped with {mapped}")]
    Resized {
        /// The segment.
        id: String,
        /// The length it was mapped with.
        mapped: u64,
        /// The length its file has now.
        found: u64,
    },
}

/// A shared-memory segment this process created and may write.
pub trait ShmSegment: Send + Sync {
    /// Its identity, to be sent to another process.
    fn id(&self) -> &SegmentId;
    /// The identity of its backing file (inode), so that a reused descriptor
    /// or name is never taken for this segment.
    fn inode(&self) -> u64;
    /// Mapped length in bytes.
    fn len(&self) -> usize;
    /// Whether the segment is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The mapped bytes.
    fn as_slice(&self) -> &[u8];
    /// The mapped bytes, writable.
    fn as_mut_slice(&mut self) -> &mut [u8];
    /// The size of the pages backing the segment (4 KiB, or 2 MiB when huge
    /// pages back it).
    fn page_size(&self) -> usize {
        4096
    }
    /// Checks, just before the segment is written, that its file still has the mapped length;
    /// backends whose segments nobody else can resize (sealed memory files, heap memory)
    /// always pass.
    fn check_intact(&self) -> Result<(), ShmError> {
        Ok(())
    }
    /// Faults every page in now, keeping its contents, so that later writes
    /// pay no page faults.
    fn prefault(&mut self) -> Result<(), ShmError> {
        let page = self.page_size().max(1);
        let bytes = self.as_mut_slice();
        let mut i = 0;
        while i < bytes.len() {
            bytes[i] = std::hint::black_box(bytes[i]);
            i += page;
        }
        Ok(())
    }
}

/// A segment another process created, mapped read-only after its checks.
pub trait ShmView: Send + Sync {
    /// Its identity.
    fn id(&self) -> &SegmentId;
    /// The identity of its backing file (inode).
    fn inode(&self) -> u64;
    /// Mapped length in bytes.
    fn len(&self) -> usize;
    /// Whether the view is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The mapped bytes.
    fn as_slice(&self) -> &[u8];
    /// Checks, just before the view is read, that the segment's file still has the mapped
    /// length; backends whose segments nobody else can resize always pass.
    fn check_intact(&self) -> Result<(), ShmError> {
        Ok(())
    }
}

/// Creates, opens, seals and removes shared-memory segments.
pub trait PlatformShm: Send + Sync {
    /// The backend's name.
    fn name(&self) -> &'static str;
    /// Creates a segment of `len` bytes, owner-only (0600), under an
    /// unguessable name, with its space reserved (a full device is an error
    /// here, never a fault later).
    fn create(&self, len: usize) -> Result<Box<dyn ShmSegment>, ShmError>;
    /// Maps an existing segment read-only after checking that it belongs to
    /// this user, is owner-only and holds at least `len` bytes.
    fn open(&self, id: &SegmentId, len: usize) -> Result<Box<dyn ShmView>, ShmError>;
    /// Forbids further resizing of the segment; backends without seals
    /// return [`ShmError::SealUnsupported`].
    fn seal(&self, segment: &mut dyn ShmSegment) -> Result<(), ShmError>;
    /// Removes the segment's name; it dies with its last mapping.
    fn unlink(&self, id: &SegmentId) -> Result<(), ShmError>;
    /// The process that created the segment `id`, as far as the id tells: the pid of a memory
    /// file, the owner recorded in a name by backends that record one; `None` when unknown.
    fn owner_pid(&self, id: &SegmentId) -> Option<u32> {
        match id {
            SegmentId::Memfd { pid, .. } => Some(*pid),
            SegmentId::Named(_) => None,
        }
    }
    /// Whether the segment `id` with file `inode` still exists where its creator keeps it (the
    /// creator's descriptor, or the name), so that a reader may drop a mapping whose segment
    /// was released; `None` when this backend cannot tell.
    fn still_exists(&self, id: &SegmentId, inode: u64) -> Option<bool> {
        let _ = (id, inode);
        None
    }
}

/// A backend without shared memory: every transfer goes by gRPC.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoShm;

impl PlatformShm for NoShm {
    fn name(&self) -> &'static str {
        "none"
    }
    fn create(&self, _len: usize) -> Result<Box<dyn ShmSegment>, ShmError> {
        Err(ShmError::Unsupported("none"))
    }
    fn open(&self, _id: &SegmentId, _len: usize) -> Result<Box<dyn ShmView>, ShmError> {
        Err(ShmError::Unsupported("none"))
    }
    fn seal(&self, _segment: &mut dyn ShmSegment) -> Result<(), ShmError> {
        Err(ShmError::Unsupported("none"))
    }
    fn unlink(&self, _id: &SegmentId) -> Result<(), ShmError> {
        Err(ShmError::Unsupported("none"))
    }
}

/// Samples the machine's resources; implementations cache, so a call is cheap.
pub trait ResourceProbe: Send + Sync {
    /// The latest sample.
    fn sample(&self) -> SystemState;
}

/// A probe that always reports the same state.
#[derive(Debug, Clone, Copy)]
pub struct FixedProbe(pub SystemState);

impl Default for FixedProbe {
    fn default() -> Self {
        FixedProbe(SystemState::IDLE)
    }
}

impl ResourceProbe for FixedProbe {
    fn sample(&self) -> SystemState {
        self.0
    }
}

/// A user-defined decision function (R6.3): it may read metrics and return a
/// method, or `None` to let the next rule decide.
pub trait DecisionFunction: Send + Sync {
    /// Decides, or passes.
    fn decide(
        &self,
        request: &TransferRequest,
        ctx: &DecisionContext,
        metrics: &dyn MetricsQuery,
    ) -> Option<Method>;
}

impl<F> DecisionFunction for F
where
    F: Fn(&TransferRequest, &DecisionContext, &dyn MetricsQuery) -> Option<Method> + Send + Sync,
{
    fn decide(
        &self,
        request: &TransferRequest,
        ctx: &DecisionContext,
        metrics: &dyn MetricsQuery,
    ) -> Option<Method> {
        self(request, ctx, metrics)
    }
}
