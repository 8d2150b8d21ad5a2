//! What the caller asks about: the transfer request and the context of one decision.

use serde::{Deserialize, Serialize};

use crate::name::Name;
use crate::vocab::{Compression, DataType, Format, Locality, Method};

/// A point in time, in nanoseconds since the Unix epoch, supplied by the caller.
///
/// perf-core never reads a clock; tests drive it with a fake one.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Builds a timestamp from whole seconds since the epoch.
    pub const fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs * 1_000_000_000)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
}

/// One payload that the host wants to hand to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// The worker pool the payload goes to.
    pub pool: Name,
    /// Payload size in bytes.
    pub size: u64,
    /// What the payload holds.
    pub data_type: DataType,
    /// How it is encoded.
    pub format: Format,
    /// How it is compressed.
    pub compression: Compression,
    /// The caller's session; used for sticky experiment assignment.
    pub session: u64,
    /// Where the worker runs.
    pub locality: Locality,
    /// A method the caller insists on, if any.
    pub override_method: Option<Method>,
}

impl TransferRequest {
    /// A request for `size` bytes of raw, uncompressed bytes to the default pool
    /// on the same host.
    pub const fn new(size: u64) -> TransferRequest {
        TransferRequest {
            pool: Name::DEFAULT_POOL,
            size,
            data_type: DataType::Bytes,
            format: Format::Raw,
            compression: Compression::None,
            session: 0,
            locality: Locality::SameHost,
            override_method: None,
        }
    }

    /// The same request to another pool.
    pub const fn with_pool(mut self, pool: Name) -> TransferRequest {
        self.pool = pool;
        self
    }

    /// The same request with another data type.
    pub const fn with_data_type(mut self, data_type: DataType) -> TransferRequest {
        self.data_type = data_type;
        self
    }

    /// The same request with another format.
    pub const fn with_format(mut self, format: Format) -> TransferRequest {
        self.format = format;
        self
    }

    /// The same request with another compression.
    pub const fn with_compression(mut self, compression: Compression) -> TransferRequest {
        self.compression = compression;
        self
    }

    /// The same request for a worker at `locality`.
    pub const fn with_locality(mut self, locality: Locality) -> TransferRequest {
        self.locality = locality;
        self
    }

    /// The same request in session `session`.
    pub const fn with_session(mut self, session: u64) -> TransferRequest {
        self.session = session;
        self
    }

    /// The same request, forced onto `method`.
    pub const fn with_override(mut self, method: Method) -> TransferRequest {
        self.override_method = Some(method);
        self
    }
}

/// A snapshot of the machine's resources, sampled outside the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SystemState {
    /// CPU utilisation over the last sample, 0.0 to 1.0.
    pub cpu_utilization: f64,
    /// Fraction of memory in use, 0.0 to 1.0.
    pub memory_used: f64,
    /// Memory available to new allocations, in bytes.
    pub memory_available: u64,
    /// Free space for shared-memory segments (e.g. /dev/shm), in bytes.
    pub shm_free: u64,
    /// When it was sampled.
    pub sampled_at: Timestamp,
}

impl SystemState {
    /// An idle machine with plenty of memory and shared memory.
    pub const IDLE: SystemState = SystemState {
        cpu_utilization: 0.0,
        memory_used: 0.0,
        memory_available: u64::MAX,
        shm_free: u64::MAX,
        sampled_at: Timestamp(0),
    };
}

impl Default for SystemState {
    fn default() -> Self {
        SystemState::IDLE
    }
}

/// Whether the transport can carry a zero-copy transfer right now, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZeroCopyAvailability {
    /// A pre-faulted pooled segment is free for this size.
    Pooled,
    /// Only a fresh segment can be created (it pays first-touch page faults).
    Fresh,
    /// No shared memory: pool exhausted, budget reached, or no backend.
    Unavailable,
}

/// Everything besides the request that one decision depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecisionContext {
    /// The time of the decision.
    pub now: Timestamp,
    /// The latest resource sample.
    pub system: SystemState,
    /// What the shared-memory transport can do for this request.
    pub zero_copy: ZeroCopyAvailability,
}

impl DecisionContext {
    /// An idle machine with a pooled segment available, at `now`.
    pub const fn idle(now: Timestamp) -> DecisionContext {
        DecisionContext {
            now,
            system: SystemState::IDLE,
            zero_copy: ZeroCopyAvailability::Pooled,
        }
    }
}
