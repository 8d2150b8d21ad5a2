//! Time buckets: the measures of one series over one bucket of time (mergeable histograms with
//! exact stats), its failures by kind, and the versioned byte encoding they are stored in.

use std::fmt;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use perf_core::{FailureKind, TransferMetrics};
use serde::{Deserialize, Serialize};

/// Significant digits every histogram keeps (0.1 % relative error).
pub const SIGNIFICANT_DIGITS: u8 = 3;

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

/// The failed transfers of a bucket, by [`FailureKind`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    /// Counts in the order of [`FailureKind::ALL`].
    by_kind: [u64; FailureKind::ALL.len()],
    /// Failed transfers whose record names no kind.
    unknown: u64,
}

/// The position of `kind` in [`FailureKind::ALL`].
fn kind_index(kind: FailureKind) -> usize {
    FailureKind::ALL
        .iter()
        .position(|&k| k == kind)
        .unwrap_or(FailureKind::ALL.len() - 1)
}

impl Failures {
    /// Counts one failed transfer of `kind` (`None`: the record names no kind).
    pub fn record(&mut self, kind: Option<FailureKind>) {
        self.add(kind, 1);
    }

    fn add(&mut self, kind: Option<FailureKind>, n: u64) {
        match kind {
            Some(kind) => self.by_kind[kind_index(kind)] += n,
            None => self.unknown += n,
        }
    }

    /// How many failed with `kind`.
    pub fn of(&self, kind: FailureKind) -> u64 {
        self.by_kind[kind_index(kind)]
    }

    /// How many failed without a recorded kind (records that say `success = false` only).
    pub fn unknown(&self) -> u64 {
        self.unknown
    }

    /// How many failed, whatever the kind.
    pub fn total(&self) -> u64 {
        self.by_kind.iter().sum::<u64>() + self.unknown
    }

    /// Every kind that failed at least once, with its count, in the order of
    /// [`FailureKind::ALL`].
    pub fn kinds(&self) -> impl Iterator<Item = (FailureKind, u64)> + '_ {
        FailureKind::ALL
            .into_iter()
            .zip(self.by_kind)
            .filter(|&(_, n)| n > 0)
    }

    /// Adds another bucket's failures.
    pub fn merge(&mut self, o: &Failures) {
        for (mine, theirs) in self.by_kind.iter_mut().zip(o.by_kind) {
            *mine += theirs;
        }
        self.unknown += o.unknown;
    }
}

/// Every measure of one bucket: latency in microseconds, throughput in KiB/s, decision time in
/// nanoseconds, memory in bytes, time queued for admission in microseconds, and the failures.
///
/// A failed transfer is no timing evidence: it is counted in [`Bucket::failures`] and in the
/// decision and queueing measures, never in latency, throughput or memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    /// End-to-end latency of delivered transfers, microseconds.
    pub latency_us: Measure,
    /// Throughput of delivered transfers, KiB per second.
    pub throughput_kib_s: Measure,
    /// Decision time of every transfer, nanoseconds.
    pub decision_ns: Measure,
    /// Memory held by delivered transfers, bytes.
    pub memory_bytes: Measure,
    /// Time every transfer waited for admission, microseconds (empty in buckets written before
    /// it was kept).
    pub queued_us: Measure,
    /// Failed transfers by kind (none in buckets written before failures were recorded).
    pub failures: Failures,
}

/// Why bytes are not a bucket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stored bucket: {0}")]
pub struct BucketDecodeError(pub String);

/// The first byte of a bucket encoded before failures and queueing were kept: four measures.
const BUCKET_ENCODING_V1: u8 = 1;
/// The first byte of an encoded bucket: the encoding's version.
const BUCKET_ENCODING: u8 = 2;

/// Appends one measure: count, sum, min and max, then its histogram in HdrHistogram's V2 format
/// with its length.
fn put_measure(out: &mut Vec<u8>, m: &Measure) {
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

/// The bytes of an encoded bucket still to read.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BucketDecodeError> {
        if self.0.len() < n {
            return Err(BucketDecodeError("truncated".to_string()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, BucketDecodeError> {
        Ok(self.take(1)?[0])
    }

    fn word(&mut self) -> Result<u64, BucketDecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }

    fn measure(&mut self) -> Result<Measure, BucketDecodeError> {
        let mut m = Measure::default();
        m.stats.count = self.word()?;
        m.stats.sum = f64::from_bits(self.word()?);
        m.stats.min = f64::from_bits(self.word()?);
        m.stats.max = f64::from_bits(self.word()?);
        let len = u32::from_le_bytes(self.take(4)?.try_into().unwrap_or([0; 4])) as usize;
        m.histogram = Deserializer::new()
            .deserialize(&mut self.take(len)?)
            .map_err(|e| BucketDecodeError(format!("histogram: {e:?}")))?;
        Ok(m)
    }

    fn failures(&mut self) -> Result<Failures, BucketDecodeError> {
        let mut out = Failures::default();
        for _ in 0..self.byte()? {
            let len = self.byte()? as usize;
            let name = self.take(len)?;
            let kind = FailureKind::ALL
                .into_iter()
                .find(|k| k.as_str().as_bytes() == name)
                .ok_or_else(|| {
                    BucketDecodeError(format!(
                        "failure kind {:?}, expected one of {:?}",
                        String::from_utf8_lossy(name),
                        FailureKind::ALL.map(FailureKind::as_str)
                    ))
                })?;
            let n = self.word()?;
            out.add(Some(kind), n);
        }
        let unknown = self.word()?;
        out.add(None, unknown);
        Ok(out)
    }
}

impl Bucket {
    /// Adds one transfer: a delivered one to every measure, a failed one to its failure kind
    /// and the decision and queueing measures only.
    pub fn record(&mut self, m: &TransferMetrics) {
        self.decision_ns.record(m.decision_ns as f64);
        self.queued_us.record(m.queued_us);
        if m.is_evidence() {
            self.latency_us.record(m.latency_us);
            self.throughput_kib_s.record(m.throughput_bps / 1024.0);
            self.memory_bytes.record(m.memory_bytes as f64);
        } else {
            self.failures.record(m.failure);
        }
    }

    /// Adds another bucket (merging histograms, never averaging percentiles).
    pub fn merge(&mut self, o: &Bucket) {
        self.latency_us.merge(&o.latency_us);
        self.throughput_kib_s.merge(&o.throughput_kib_s);
        self.decision_ns.merge(&o.decision_ns);
        self.memory_bytes.merge(&o.memory_bytes);
        self.queued_us.merge(&o.queued_us);
        self.failures.merge(&o.failures);
    }

    /// How many transfers it holds, delivered and failed.
    pub fn count(&self) -> u64 {
        self.delivered() + self.failed()
    }

    /// How many delivered transfers it holds: the count of its latency measure.
    pub fn delivered(&self) -> u64 {
        self.latency_us.stats.count
    }

    /// How many failed transfers it holds.
    pub fn failed(&self) -> u64 {
        self.failures.total()
    }

    /// A compact, versioned encoding: a version byte; per measure (latency, throughput,
    /// decision, memory, queued) its count, sum, min and max and its histogram in HdrHistogram's
    /// V2 format; then the failures as a count of kinds, each kind's name (length-prefixed) and
    /// count, and the count of failures without a kind.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![BUCKET_ENCODING];
        for m in [
            &self.latency_us,
            &self.throughput_kib_s,
            &self.decision_ns,
            &self.memory_bytes,
            &self.queued_us,
        ] {
            put_measure(&mut out, m);
        }
        let kinds: Vec<(FailureKind, u64)> = self.failures.kinds().collect();
        // There are fewer kinds than fit a byte.
        out.push(kinds.len() as u8);
        for (kind, n) in kinds {
            let name = kind.as_str();
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&self.failures.unknown().to_le_bytes());
        out
    }

    /// Reads what [`Bucket::to_bytes`] wrote, and the four-measure encoding of earlier builds
    /// (whose transfers all count as delivered).
    pub fn from_bytes(bytes: &[u8]) -> Result<Bucket, BucketDecodeError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or_else(|| BucketDecodeError("empty".to_string()))?;
        if version != BUCKET_ENCODING && version != BUCKET_ENCODING_V1 {
            return Err(BucketDecodeError(format!(
                "encoding {version}, expected {BUCKET_ENCODING_V1} or {BUCKET_ENCODING}"
            )));
        }
        let mut r = Reader(rest);
        let mut out = Bucket {
            latency_us: r.measure()?,
            throughput_kib_s: r.measure()?,
            decision_ns: r.measure()?,
            memory_bytes: r.measure()?,
            ..Bucket::default()
        };
        if version == BUCKET_ENCODING {
            out.queued_us = r.measure()?;
            out.failures = r.failures()?;
        }
        if !r.0.is_empty() {
            return Err(BucketDecodeError("trailing bytes".to_string()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perf_core::{
        DecisionContext, FixedPolicy, Method, SystemState, Timestamp, TransferPolicy,
        TransferRequest,
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

    /// A bucket of three delivered 4 KiB transfers (latency 100, 250 and 4000 us, decision 500,
    /// 501 and 502 ns, 4 KiB of memory each) as the four-measure encoding of earlier builds
    /// wrote it.
    const V1_BUCKET: &str = "0103000000000000000000000000feb0400000000000005940000000000040af40310000001c84931300000009000000000000000300000000000000010000000000000fff3ff0000000000000c70102a90202a92b0203000000000000000000000000d5eb400000000000408f40000000000088e340310000001c8493130000000900000000000000030000000000000001000000000000ffff3ff0000000000000cf0f02cd3f02a11402030000000000000000000000007c97400000000000407f400000000000607f402d0000001c849313000000050000000000000003000000000000000100000000000000023ff0000000000000e7070202020300000000000000000000000000c840000000000000b040000000000000b0402b0000001c84931300000003000000000000000300000000000000010000000000001fff3ff0000000000000ff2f06";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_bucket_written_by_earlier_builds_still_decodes_as_delivered_transfers() {
        let old = Bucket::from_bytes(&unhex(V1_BUCKET)).unwrap();
        assert_eq!((old.count(), old.delivered(), old.failed()), (3, 3, 0));
        assert_eq!(old.latency_us.stats.sum, 4350.0);
        assert_eq!(old.latency_us.stats.max, 4000.0);
        assert_eq!(old.latency_us.histogram.len(), 3);
        assert_eq!(old.decision_ns.stats.min, 500.0);
        assert_eq!(old.memory_bytes.stats.sum, 12288.0);
        assert_eq!(old.queued_us.stats.count, 0, "not kept by earlier builds");
        // It merges with new buckets and is written back in the new encoding.
        let mut merged = old.clone();
        let mut failed = metrics(10.0, 4096);
        failed.fail(FailureKind::Timeout);
        merged.record(&failed);
        let back = Bucket::from_bytes(&merged.to_bytes()).unwrap();
        assert_eq!(back, merged);
        assert_eq!((back.delivered(), back.failed()), (3, 1));
        let mut truncated = unhex(V1_BUCKET);
        truncated.pop();
        assert!(Bucket::from_bytes(&truncated).is_err());
    }

    #[test]
    fn failed_transfers_are_counted_by_kind_and_kept_out_of_latency() {
        let mut b = Bucket::default();
        for i in 1..=10 {
            let mut m = metrics(i as f64, 4096);
            m.queued_us = 5.0;
            b.record(&m);
        }
        for (kind, latency) in [
            (Some(FailureKind::Timeout), 1e9),
            (Some(FailureKind::Timeout), 2e9),
            (Some(FailureKind::Unavailable), 3e9),
            (None, 4e9),
        ] {
            let mut m = metrics(latency, 4096);
            m.queued_us = 1000.0;
            match kind {
                Some(kind) => m.fail(kind),
                None => m.success = false,
            }
            b.record(&m);
        }
        assert_eq!((b.count(), b.delivered(), b.failed()), (14, 10, 4));
        assert_eq!(b.latency_us.stats.max, 10.0, "no failed latency in it");
        assert_eq!(b.throughput_kib_s.stats.count, 10);
        assert_eq!(b.memory_bytes.stats.count, 10);
        assert_eq!(b.decision_ns.stats.count, 14, "every transfer was decided");
        assert_eq!(b.queued_us.stats.count, 14, "every transfer waited");
        assert_eq!(b.queued_us.stats.sum, 4050.0);
        assert_eq!(b.failures.of(FailureKind::Timeout), 2);
        assert_eq!(b.failures.of(FailureKind::Unavailable), 1);
        assert_eq!(b.failures.of(FailureKind::Refused), 0);
        assert_eq!(b.failures.unknown(), 1);
        assert_eq!(
            b.failures.kinds().collect::<Vec<_>>(),
            vec![(FailureKind::Unavailable, 1), (FailureKind::Timeout, 2)]
        );
        let back = Bucket::from_bytes(&b.to_bytes()).unwrap();
        assert_eq!(back, b);
        let mut twice = back.clone();
        twice.merge(&b);
        assert_eq!(twice.failures.of(FailureKind::Timeout), 4);
        assert_eq!(twice.failures.unknown(), 2);
        assert_eq!(twice.count(), 28);
    }

    #[test]
    fn a_bucket_naming_an_unknown_failure_kind_is_refused_by_name() {
        let mut b = Bucket::default();
        let mut m = metrics(1.0, 4096);
        m.fail(FailureKind::Refused);
        b.record(&m);
        let mut bytes = b.to_bytes();
        let at = bytes
            .windows(7)
            .position(|w| w == b"refused")
            .expect("the kind is stored by name");
        bytes[at..at + 7].copy_from_slice(b"removed");
        let err = Bucket::from_bytes(&bytes).unwrap_err();
        assert!(
            err.to_string().contains("failure kind \"removed\""),
            "{err}"
        );
    }
}
