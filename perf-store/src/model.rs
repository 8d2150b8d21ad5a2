//! The stored vocabulary: series keys, time buckets with their histograms, batches, and the storage seam.

use std::fmt;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use perf_core::{DataType, Method, Name, SampleFilter, TransferMetrics};
use serde::{Deserialize, Serialize};

/// Significant digits every histogram keeps (0.1 % relative error).
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// The width of a time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
}

impl Granularity {
    /// Every granularity, finest first.
    pub const ALL: [Granularity; 3] = [Granularity::Second, Granularity::Minute, Granularity::Hour];

    /// The bucket width in seconds.
    pub const fn secs(self) -> u64 {
        match self {
            Granularity::Second => 1,
            Granularity::Minute => 60,
            Granularity::Hour => 3600,
        }
    }

    /// The start of the bucket holding `secs` (seconds since the epoch).
    pub const fn bucket_start(self, secs: u64) -> u64 {
        secs - secs % self.secs()
    }

    /// The coarsest stored granularity whose buckets tile a bucket of
    /// `width_secs` exactly (1 s always does).
    pub fn finest_for(width_secs: u64) -> Granularity {
        Granularity::ALL
            .into_iter()
            .rev()
            .find(|g| width_secs.is_multiple_of(g.secs()))
            .unwrap_or(Granularity::Second)
    }
}

/// The size class of a payload: `floor(log2(size))`, so 1 KiB is class 10.
pub fn size_class(size: u64) -> u8 {
    (63 - size.max(1).leading_zeros()) as u8
}

/// What one time series is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The pool.
    pub pool: Name,
    /// The method that carried the transfers.
    pub method: Method,
    /// `floor(log2(size))` of the payloads.
    pub size_class: u8,
    /// What the payloads held.
    pub data_type: DataType,
}

impl SeriesKey {
    /// The series a transfer belongs to.
    pub fn of(m: &TransferMetrics) -> SeriesKey {
        SeriesKey {
            pool: m.pool,
            method: m.method,
            size_class: size_class(m.size),
            data_type: m.data_type,
        }
    }
}

/// One bucket of one series at one granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BucketKey {
    /// The bucket width.
    pub granularity: Granularity,
    /// Its start, in seconds since the epoch.
    pub start_secs: u64,
    /// The series.
    pub series: SeriesKey,
}

/// Count, sum, min and max of one measure, beside its histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// How many values.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Stats {
    fn add(&mut self, v: f64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += v;
    }

    fn merge(&mut self, o: &Stats) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

/// One measure: an HDR histogram of integer units and exact stats.
#[derive(Clone)]
pub struct Measure {
    /// Values recorded in the measure's integer unit (see [`Bucket`]).
    pub histogram: Histogram<u64>,
    /// Count, sum, min, max in the same unit.
    pub stats: Stats,
}

impl fmt::Debug for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Measure")
            .field("count", &self.stats.count)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Default for Measure {
    fn default() -> Self {
        Measure {
            histogram: Histogram::new(SIGNIFICANT_DIGITS)
                .expect("3 significant digits is a valid precision"),
            stats: Stats::default(),
        }
    }
}

impl PartialEq for Measure {
    fn eq(&self, o: &Measure) -> bool {
        self.stats == o.stats && self.histogram == o.histogram
    }
}

impl Measure {
    /// Records one value (negative values count as 0).
    pub fn record(&mut self, v: f64) {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        // An out-of-range value only fails for auto-resize-off histograms; ours resize.
        let _ = self.histogram.record(v.round() as u64);
        self.stats.add(v);
    }

    /// Adds another measure's values.
    pub fn merge(&mut self, o: &Measure) {
        let _ = self.histogram.add(&o.histogram);
        self.stats.merge(&o.stats);
    }
}

/// Every measure of one bucket: latency in microseconds, throughput in KiB/s,
/// decision time in nanoseconds, memory in bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    /// End-to-end latency, microseconds.
    pub latency_us: Measure,
    /// Throughput, KiB per second.
    pub throughput_kib_s: Measure,
    /// Decision time, nanoseconds.
    pub decision_ns: Measure,
    /// Memory held, bytes.
    pub memory_bytes: Measure,
}

/// Why bytes are not a bucket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stored bucket: {0}")]
pub struct BucketDecodeError(pub String);

/// The first byte of an encoded bucket: the encoding's version.
const BUCKET_ENCODING: u8 = 1;

impl Bucket {
    /// Adds one transfer.
    pub fn record(&mut self, m: &TransferMetrics) {
        self.latency_us.record(m.latency_us);
        self.throughput_kib_s.record(m.throughput_bps / 1024.0);
        self.decision_ns.record(m.decision_ns as f64);
        self.memory_bytes.record(m.memory_bytes as f64);
    }

    /// Adds another bucket (merging histograms, never averaging percentiles).
    pub fn merge(&mut self, o: &Bucket) {
        self.latency_us.merge(&o.latency_us);
        self.throughput_kib_s.merge(&o.throughput_kib_s);
        self.decision_ns.merge(&o.decision_ns);
        self.memory_bytes.merge(&o.memory_bytes);
    }

    /// How many transfers it holds.
    pub fn count(&self) -> u64 {
        self.latency_us.stats.count
    }

    fn measures(&self) -> [&Measure; 4] {
        [
            &self.latency_us,
            &self.throughput_kib_s,
            &self.decision_ns,
            &self.memory_bytes,
        ]
    }

    /// A compact, versioned encoding: a version byte, then per measure its
    /// count, sum, min and max and its histogram in HdrHistogram's V2 format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![BUCKET_ENCODING];
        for m in self.measures() {
            out.extend_from_slice(&m.stats.count.to_le_bytes());
            for v in [m.stats.sum, m.stats.min, m.stats.max] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            let mut h = Vec::new();
            // Writing to a Vec cannot fail.
            let _ = V2Serializer::new().serialize(&m.histogram, &mut h);
            out.extend_from_slice(&(h.len() as u32).to_le_bytes());
            out.extend_from_slice(&h);
        }
        out
    }

    /// Reads what [`Bucket::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Bucket, BucketDecodeError> {
        let bad = |what: &str| BucketDecodeError(what.to_string());
        let (&version, mut rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        if version != BUCKET_ENCODING {
            return Err(BucketDecodeError(format!(
                "encoding {version}, expected {BUCKET_ENCODING}"
            )));
        }
        let mut take = |n: usize| -> Result<&[u8], BucketDecodeError> {
            if rest.len() < n {
                return Err(bad("truncated"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let mut out = [(); 4].map(|()| Measure::default());
        for m in &mut out {
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            m.stats.count = word(take(8)?);
            m.stats.sum = f64::from_bits(word(take(8)?));
            m.stats.min = f64::from_bits(word(take(8)?));
            m.stats.max = f64::from_bits(word(take(8)?));
            let len = u32::from_le_bytes(take(4)?.try_into().unwrap_or([0; 4])) as usize;
            m.histogram = Deserializer::new()
                .deserialize(&mut take(len)?)
                .map_err(|e| BucketDecodeError(format!("histogram: {e:?}")))?;
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let [latency_us, throughput_kib_s, decision_ns, memory_bytes] = out;
        Ok(Bucket {
            latency_us,
            throughput_kib_s,
            decision_ns,
            memory_bytes,
        })
    }
}

/// What one flush writes: raw samples and the buckets they touched, whole.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// New raw samples, in arrival order.
    pub samples: Vec<TransferMetrics>,
    /// Buckets to store, replacing any stored bucket of the same key.
    pub buckets: Vec<(BucketKey, Bucket)>,
}

/// Why the store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The storage device or file failed.
    #[error("metrics store i/o failed: {0}")]
    Io(String),
    /// The stored data is damaged.
    #[error("metrics store is corrupt: {0}")]
    Corrupt(String),
    /// The store was written by a newer perfopt.
    #[error(
        "metrics store has schema version {found}, this perfopt reads up to {supported}; upgrade perfopt"
    )]
    TooNew {
        /// The store's version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// The store needs `perfopt migrate` first.
    #[error("metrics store has schema version {found}, expected {expected}; run `perfopt migrate`")]
    NeedsMigration {
        /// The store's version.
        found: u32,
        /// The version this build writes.
        expected: u32,
    },
    /// A query or argument is invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The store's path names something other than a regular file; it was not opened.
    #[error("metrics store {path} is {what}, expected a regular file")]
    NotAFile {
        /// The store's file.
        path: std::path::PathBuf,
        /// What is there instead, e.g. `a FIFO`.
        what: String,
    },
    /// There is no store to read.
    #[error("no metrics store at {path}, expected one written by `perfopt run`")]
    Missing {
        /// The store's file.
        path: std::path::PathBuf,
    },
}

/// Where batches go and buckets come from: a redb file, or memory in tests.
pub trait Backend: Send + Sync {
    /// Writes one batch atomically: all of it is committed or none.
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;
    /// The stored buckets of `granularity` whose start lies in `from..to`
    /// (seconds since the epoch).
    fn buckets(
        &self,
        granularity: Granularity,
        from_secs: u64,
        to_secs: u64,
    ) -> Result<Vec<(BucketKey, Bucket)>, StoreError>;
    /// The most recent `limit` raw samples that pass `filter`, newest first.
    fn samples(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use perf_core::{
        DecisionContext, FixedPolicy, SystemState, Timestamp, TransferPolicy, TransferRequest,
    };

    fn metrics(latency_us: f64, size: u64) -> TransferMetrics {
        let req = TransferRequest::new(size);
        let d = FixedPolicy(Method::Grpc).decide(&req, &DecisionContext::idle(Timestamp(0)));
        TransferMetrics::new(
            &req,
            &d,
            Method::Grpc,
            latency_us,
            Timestamp(0),
            SystemState::IDLE,
        )
    }

    #[test]
    fn granularities_and_size_classes() {
        assert_eq!(Granularity::Minute.bucket_start(125), 120);
        assert_eq!(Granularity::finest_for(120), Granularity::Minute);
        assert_eq!(Granularity::finest_for(7200), Granularity::Hour);
        assert_eq!(Granularity::finest_for(90), Granularity::Second);
        assert_eq!(size_class(1024), 10);
        assert_eq!(size_class(1025), 10);
        assert_eq!(size_class(0), 0);
        assert_eq!(size_class(1 << 30), 30);
    }

    #[test]
    fn buckets_merge_and_round_trip_through_bytes() {
        let mut a = Bucket::default();
        let mut b = Bucket::default();
        for i in 1..=100 {
            a.record(&metrics(i as f64, 4096));
            b.record(&metrics(1000.0 + i as f64, 4096));
        }
        let mut both = a.clone();
        both.merge(&b);
        assert_eq!(both.count(), 200);
        assert_eq!(both.latency_us.stats.min, 1.0);
        assert_eq!(both.latency_us.stats.max, 1100.0);
        let back = Bucket::from_bytes(&both.to_bytes()).unwrap();
        assert_eq!(back, both);
        let bytes = both.to_bytes();
        assert!(Bucket::from_bytes(b"not a bucket").is_err());
        assert!(Bucket::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(Bucket::from_bytes(&[]).is_err());
    }
}
