//! Paired evidence: the same case measured by both methods under the same
//! conditions, which labels the faster method without trusting the policy's
//! own choices.

use std::collections::HashMap;
use std::fmt::Write as _;

use perf_core::{
    Compression, DataType, Format, MAX_SIZE, Method, Name, Timestamp, TransferMetrics,
};
use serde::{Deserialize, Serialize};

use crate::features::{Conditions, FeatureVec, features};

/// Where a paired sample came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A deliberate measurement of both methods (`perfopt model collect`).
    Bench,
    /// Two live transfers of one size class close in time, one by each
    /// method (exploration or comparison arms).
    Live,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Bench => "bench",
            Source::Live => "live",
        }
    }
}

/// One case measured by both methods.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedSample {
    /// When the pair was completed.
    pub at: Timestamp,
    /// The pool the transfers went to.
    pub pool: Name,
    /// Payload size in bytes.
    pub size: u64,
    /// What the payload holds.
    pub data_type: DataType,
    /// How it is encoded.
    pub format: Format,
    /// How it is compressed.
    pub compression: Compression,
    /// The conditions of the measurement.
    pub conditions: Conditions,
    /// Measured gRPC latency, microseconds.
    pub grpc_us: f64,
    /// Measured zero-copy latency, microseconds.
    pub zero_copy_us: f64,
    /// Where it came from.
    pub source: Source,
}

impl PairedSample {
    /// The method that was faster (gRPC on a tie: the simpler path).
    pub fn faster(&self) -> Method {
        if self.zero_copy_us < self.grpc_us {
            Method::ZeroCopy
        } else {
            Method::Grpc
        }
    }

    /// The measured latency of `method`.
    pub fn latency(&self, method: Method) -> f64 {
        match method {
            Method::Grpc => self.grpc_us,
            Method::ZeroCopy => self.zero_copy_us,
        }
    }

    /// The feature vector of this case.
    pub fn features(&self) -> FeatureVec {
        features(
            self.size,
            self.data_type,
            self.format,
            self.compression,
            &self.conditions,
        )
    }

    /// What is wrong with this sample, if anything.
    pub fn problem(&self) -> Option<String> {
        let c = &self.conditions;
        let latency_ok = |x: f64| x.is_finite() && x > 0.0 && x < 3.6e9;
        if self.size == 0 || self.size > MAX_SIZE {
            Some(format!("size {} is outside 1..={MAX_SIZE}", self.size))
        } else if !latency_ok(self.grpc_us) {
            Some(format!("grpc_us {} is not a latency", self.grpc_us))
        } else if !latency_ok(self.zero_copy_us) {
            Some(format!(
                "zero_copy_us {} is not a latency",
                self.zero_copy_us
            ))
        } else if !(0.0..=1.0).contains(&c.cpu_utilization) {
            Some(format!(
                "cpu_utilization {} is outside 0..1",
                c.cpu_utilization
            ))
        } else if !(0.0..=1.0).contains(&c.memory_used) {
            Some(format!("memory_used {} is outside 0..1", c.memory_used))
        } else if c.hour > 23 {
            Some(format!("hour {} is outside 0..23", c.hour))
        } else if !(c.grpc_slowdown.is_finite() && c.zero_copy_slowdown.is_finite()) {
            Some("a slowdown is not finite".to_string())
        } else {
            None
        }
    }
}

/// The CSV header of a paired dataset, in column order.
pub const CSV_HEADER: &str = "at_ns,pool,size,data_type,format,compression,cpu_utilization,\
memory_used,shm_free,hour,grpc_slowdown,zero_copy_slowdown,grpc_us,zero_copy_us,source";

/// The most rows a dataset file may hold.
pub const MAX_ROWS: usize = 1_000_000;

/// A dataset file that cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasetError {
    /// The first line is not [`CSV_HEADER`].
    #[error("not a paired dataset: the first line must be {CSV_HEADER:?}")]
    Header,
    /// More rows than [`MAX_ROWS`].
    #[error("the dataset has more than {MAX_ROWS} rows")]
    TooManyRows,
}

/// A row dropped while reading, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dropped {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub why: String,
}

/// Paired samples in time order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairedDataset {
    /// The samples.
    pub samples: Vec<PairedSample>,
}

impl PairedDataset {
    /// Reads CSV text; rows that are malformed or invalid are dropped and
    /// reported, the rest kept.
    pub fn from_csv(text: &str) -> Result<(PairedDataset, Vec<Dropped>), DatasetError> {
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(CSV_HEADER) {
            return Err(DatasetError::Header);
        }
        let mut samples = Vec::new();
        let mut dropped = Vec::new();
        for (i, line) in lines.enumerate() {
            let line_no = i + 2;
            if line.trim().is_empty() {
                continue;
            }
            if samples.len() + dropped.len() >= MAX_ROWS {
                return Err(DatasetError::TooManyRows);
            }
            match parse_row(line).and_then(|s| s.problem().map_or(Ok(s), Err)) {
                Ok(s) => samples.push(s),
                Err(why) => dropped.push(Dropped { line: line_no, why }),
            }
        }
        Ok((PairedDataset { samples }, dropped))
    }

    /// Writes CSV text that [`PairedDataset::from_csv`] reads back.
    pub fn to_csv(&self) -> String {
        let mut out = String::with_capacity(64 + self.samples.len() * 120);
        out.push_str(CSV_HEADER);
        out.push('\n');
        for s in &self.samples {
            write_row(&mut out, s);
        }
        out
    }

    /// Splits into training and test sets: every `1 / (1 - train)`-th sample
    /// by a seeded shuffle goes to the test set.
    pub fn split(&self, train_fraction: f64, seed: u64) -> (Vec<PairedSample>, Vec<PairedSample>) {
        let mut order: Vec<usize> = (0..self.samples.len()).collect();
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        for i in (1..order.len()).rev() {
            state = splitmix(state);
            let j = (state % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let n_train = (self.samples.len() as f64 * train_fraction.clamp(0.0, 1.0)).round() as usize;
        let mut train: Vec<_> = order[..n_train].iter().map(|&i| self.samples[i]).collect();
        let mut test: Vec<_> = order[n_train..].iter().map(|&i| self.samples[i]).collect();
        train.sort_by_key(|s| s.at);
        test.sort_by_key(|s| s.at);
        (train, test)
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Appends one sample as a CSV row.
pub fn write_row(out: &mut String, s: &PairedSample) {
    let c = &s.conditions;
    let _ = writeln!(
        out,
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        s.at.as_nanos(),
        s.pool,
        s.size,
        s.data_type,
        s.format,
        s.compression,
        c.cpu_utilization,
        c.memory_used,
        c.shm_free,
        c.hour,
        c.grpc_slowdown,
        c.zero_copy_slowdown,
        s.grpc_us,
        s.zero_copy_us,
        s.source.as_str()
    );
}

fn parse_row(line: &str) -> Result<PairedSample, String> {
    let cols: Vec<&str> = line.split(',').map(str::trim).collect();
    if cols.len() != 15 {
        return Err(format!("{} columns, expected 15", cols.len()));
    }
    fn num<T: std::str::FromStr>(col: &str, what: &str) -> Result<T, String> {
        col.parse()
            .map_err(|_| format!("{what} {col:?} is not a number"))
    }
    let source = match cols[14] {
        "bench" => Source::Bench,
        "live" => Source::Live,
        other => return Err(format!("source {other:?} is not bench or live")),
    };
    Ok(PairedSample {
        at: Timestamp(num(cols[0], "at_ns")?),
        pool: Name::new(cols[1]).map_err(|e| format!("pool: {e}"))?,
        size: num(cols[2], "size")?,
        data_type: cols[3].parse().map_err(|e| format!("{e}"))?,
        format: cols[4].parse().map_err(|e| format!("{e}"))?,
        compression: cols[5].parse().map_err(|e| format!("{e}"))?,
        conditions: Conditions {
            cpu_utilization: num(cols[6], "cpu_utilization")?,
            memory_used: num(cols[7], "memory_used")?,
            shm_free: num(cols[8], "shm_free")?,
            hour: num(cols[9], "hour")?,
            grpc_slowdown: num(cols[10], "grpc_slowdown")?,
            zero_copy_slowdown: num(cols[11], "zero_copy_slowdown")?,
        },
        grpc_us: num(cols[12], "grpc_us")?,
        zero_copy_us: num(cols[13], "zero_copy_us")?,
        source,
    })
}

/// Pairs live transfers: a successful transfer by one method and one by the
/// other, to the same pool, in the same quarter-octave of size, with the same
/// payload kind, close in time and under similar CPU load, make one sample.
#[derive(Debug)]
pub struct Pairer {
    max_age_ns: u64,
    max_cpu_gap: f64,
    waiting: HashMap<PairKey, Waiting>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PairKey {
    pool: Name,
    class: u32,
    data_type: DataType,
    format: Format,
    compression: Compression,
    method: Method,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    at: Timestamp,
    size: u64,
    latency_us: f64,
    conditions: Conditions,
}

/// The most open keys a [`Pairer`] keeps; older ones are dropped beyond this.
const MAX_WAITING: usize = 4096;

/// A quarter-octave size class: sizes in one class differ by less than 19 %.
pub fn quarter_octave(size: u64) -> u32 {
    ((size.max(1) as f64).log2() * 4.0).floor() as u32
}

impl Pairer {
    /// Pairs transfers at most `max_age` apart with CPU load at most
    /// `max_cpu_gap` apart.
    pub fn new(max_age: std::time::Duration, max_cpu_gap: f64) -> Pairer {
        Pairer {
            max_age_ns: max_age.as_nanos().min(u128::from(u64::MAX)) as u64,
            max_cpu_gap,
            waiting: HashMap::new(),
        }
    }

    /// Offers one transfer measured under `conditions`; returns a sample when
    /// it completes a pair. Failed transfers and zero-copy transfers that fell
    /// back to gRPC are not evidence and are ignored.
    pub fn offer(&mut self, m: &TransferMetrics, conditions: Conditions) -> Option<PairedSample> {
        if !m.is_evidence()
            || m.fallback.is_some()
            || m.size == 0
            || m.latency_us.is_nan()
            || m.latency_us <= 0.0
        {
            return None;
        }
        let key = |method| PairKey {
            pool: m.pool,
            class: quarter_octave(m.size),
            data_type: m.data_type,
            format: m.format,
            compression: m.compression,
            method,
        };
        let other = key(m.method.other());
        if let Some(w) = self.waiting.get(&other).copied() {
            let fresh = m.started_at.as_nanos().saturating_sub(w.at.as_nanos()) <= self.max_age_ns;
            let similar = (w.conditions.cpu_utilization - conditions.cpu_utilization).abs()
                <= self.max_cpu_gap;
            if fresh && similar {
                self.waiting.remove(&other);
                // From 1 MiB on latency is mostly per byte: scale the earlier
                // measurement to this size (within a quarter octave, < 19 %).
                let scale = if m.size >= 1 << 20 {
                    (m.size as f64 / w.size as f64).clamp(0.8, 1.25)
                } else {
                    1.0
                };
                let earlier = w.latency_us * scale;
                let (grpc_us, zero_copy_us) = match m.method {
                    Method::Grpc => (m.latency_us, earlier),
                    Method::ZeroCopy => (earlier, m.latency_us),
                };
                return Some(PairedSample {
                    at: m.started_at,
                    pool: m.pool,
                    size: m.size,
                    data_type: m.data_type,
                    format: m.format,
                    compression: m.compression,
                    conditions,
                    grpc_us,
                    zero_copy_us,
                    source: Source::Live,
                });
            }
        }
        if self.waiting.len() >= MAX_WAITING {
            let cutoff = m.started_at.as_nanos().saturating_sub(self.max_age_ns);
            self.waiting.retain(|_, w| w.at.as_nanos() >= cutoff);
            if self.waiting.len() >= MAX_WAITING {
                self.waiting.clear();
            }
        }
        self.waiting.insert(
            key(m.method),
            Waiting {
                at: m.started_at,
                size: m.size,
                latency_us: m.latency_us,
                conditions,
            },
        );
        None
    }
}
