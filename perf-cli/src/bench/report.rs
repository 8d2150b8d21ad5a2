//! What `perfopt bench` measured, and how it is shown: the table, the crossovers, the ratios, the JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use perf_core::crossover::{Measured, crossover};
use perf_core::{HumanMicros, HumanSize, Method, Verification};
use serde_json::{Value, json};

use super::stats::percentile;
use crate::measure::median;

/// One way of moving a payload that the bench measures. Unless its name says otherwise, the
/// worker checksums every byte and the host compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum BenchMethod {
    /// An inline gRPC transfer to the worker.
    Grpc,
    /// Zero-copy through a pre-faulted segment the pool reuses.
    ZeroCopyPooled,
    /// The same, verified by the sample (the default pool's setting).
    ZeroCopyPooledSampled,
    /// The same, verified by nothing: the copy and the notification.
    ZeroCopyPooledNone,
    /// Zero-copy of a pooled segment the producer wrote into directly (the
    /// loan path): nothing is copied, the worker still reads every byte.
    ZeroCopyLoan,
    /// The loan path verified by nothing: the worker reads no byte.
    ZeroCopyLoanNone,
    /// A bare notification round trip: a reference to an already-written pooled segment of
    /// [`NOTIFY_BYTES`], verified by nothing, measured beside every size.
    Notify,
    /// The same notification, sent right after an untimed write of the row's size into a
    /// private buffer: the cache state a loaned transfer is in after its producer's write.
    NotifyAfterWrite,
    /// Zero-copy through a segment created for the transfer and released after it.
    ZeroCopyFresh,
    /// A plain copy into a pre-faulted buffer in this process: the physical ceiling.
    Memcpy,
}

/// The payload of a [`BenchMethod::Notify`] transfer, whatever the size it is measured beside.
pub(crate) const NOTIFY_BYTES: u64 = 1 << 10;

impl BenchMethod {
    /// Every method, in the order the table shows them.
    pub(crate) const ALL: [BenchMethod; 10] = [
        BenchMethod::Grpc,
        BenchMethod::ZeroCopyPooled,
        BenchMethod::ZeroCopyPooledSampled,
        BenchMethod::ZeroCopyPooledNone,
        BenchMethod::ZeroCopyLoan,
        BenchMethod::ZeroCopyLoanNone,
        BenchMethod::Notify,
        BenchMethod::NotifyAfterWrite,
        BenchMethod::ZeroCopyFresh,
        BenchMethod::Memcpy,
    ];

    /// The name in the table and the JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            BenchMethod::Grpc => "grpc",
            BenchMethod::ZeroCopyPooled => "zero_copy_pooled",
            BenchMethod::ZeroCopyPooledSampled => "zero_copy_pooled_sampled",
            BenchMethod::ZeroCopyPooledNone => "zero_copy_pooled_none",
            BenchMethod::ZeroCopyLoan => "zero_copy_loan",
            BenchMethod::ZeroCopyLoanNone => "zero_copy_loan_none",
            BenchMethod::Notify => "notify",
            BenchMethod::NotifyAfterWrite => "notify_after_write",
            BenchMethod::ZeroCopyFresh => "zero_copy_fresh",
            BenchMethod::Memcpy => "memcpy",
        }
    }

    /// Whether it is a bare notification, which carries no payload of the row's size.
    pub(crate) fn notifies(self) -> bool {
        matches!(self, BenchMethod::Notify | BenchMethod::NotifyAfterWrite)
    }

    /// How its transfers are verified.
    pub(crate) fn verification(self) -> Verification {
        match self {
            BenchMethod::ZeroCopyPooledSampled => Verification::Sampled,
            BenchMethod::ZeroCopyPooledNone
            | BenchMethod::ZeroCopyLoanNone
            | BenchMethod::Notify
            | BenchMethod::NotifyAfterWrite => Verification::None,
            _ => Verification::Checksum,
        }
    }
}

/// The timed samples of one method at one size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// Payload bytes.
    pub(crate) size: u64,
    /// How they moved.
    pub(crate) method: BenchMethod,
    /// Latencies of the timed repeats that went the way the method measures, in microseconds.
    pub(crate) samples_us: Vec<f64>,
    /// The worker's share of each sample (from the call's arrival to its answer), in
    /// microseconds; empty for memcpy.
    pub(crate) worker_us: Vec<f64>,
    /// Timed transfers that went another way (a fallback to gRPC, a segment that was not
    /// reused), counted by what happened; they are not in the samples.
    pub(crate) anomalies: BTreeMap<String, u32>,
}

impl Row {
    /// The median latency, in microseconds.
    pub(crate) fn median_us(&self) -> Option<f64> {
        median(&self.samples_us)
    }

    /// The median time the worker spent on a transfer, in microseconds.
    pub(crate) fn worker_median_us(&self) -> Option<f64> {
        median(&self.worker_us)
    }

    /// The 99th percentile latency (nearest rank), in microseconds.
    pub(crate) fn p99_us(&self) -> Option<f64> {
        percentile(&self.samples_us, 0.99)
    }

    /// Size over median latency, in MiB per second; none for a notification, which carries no
    /// payload of the size.
    pub(crate) fn throughput_mib_s(&self) -> Option<f64> {
        if self.method.notifies() {
            return None;
        }
        self.median_us()
            .filter(|m| *m > 0.0)
            .map(|m| self.size as f64 / (1 << 20) as f64 / (m / 1e6))
    }
}

/// Every row of a run, in measuring order: by size, then by method.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Results {
    /// The rows.
    pub(crate) rows: Vec<Row>,
}

impl Results {
    /// `(size, median)` of `method` at every size where it has samples, smallest first.
    pub(crate) fn series(&self, method: BenchMethod) -> Vec<(u64, f64)> {
        let mut s: Vec<(u64, f64)> = self
            .rows
            .iter()
            .filter(|r| r.method == method)
            .filter_map(|r| r.median_us().map(|m| (r.size, m)))
            .collect();
        s.sort_by_key(|p| p.0);
        s
    }

    /// The median of `method` at `size`, when measured.
    pub(crate) fn median_at(&self, size: u64, method: BenchMethod) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.size == size && r.method == method)
            .and_then(Row::median_us)
    }

    /// Timed transfers that went another way than their method, over all rows.
    pub(crate) fn anomalies(&self) -> u32 {
        self.rows.iter().flat_map(|r| r.anomalies.values()).sum()
    }
}

/// Where zero-copy starts to beat gRPC on this machine ([`perf_core::crossover`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Crossovers {
    /// From this size on, pooled zero-copy's median is below gRPC's at every measured size.
    pub(crate) pooled: Option<u64>,
    /// The same for a fresh segment per transfer.
    pub(crate) fresh: Option<u64>,
    /// The default threshold of the configuration, to compare with.
    pub(crate) default_threshold: u64,
}

/// The crossovers of `results`.
pub(crate) fn crossovers(results: &Results, default_threshold: u64) -> Crossovers {
    Crossovers {
        pooled: crossover_of(results, BenchMethod::ZeroCopyPooled),
        fresh: crossover_of(results, BenchMethod::ZeroCopyFresh),
        default_threshold,
    }
}

/// The crossover of the zero-copy `method` against gRPC, over every timed sample of both.
fn crossover_of(results: &Results, method: BenchMethod) -> Option<u64> {
    let measured = results
        .rows
        .iter()
        .filter_map(|r| match r.method {
            BenchMethod::Grpc => Some((r, Method::Grpc)),
            m if m == method => Some((r, Method::ZeroCopy)),
            _ => None,
        })
        .flat_map(|(r, m)| {
            r.samples_us
                .iter()
                .map(move |&us| Measured::new(r.size, m, us))
        });
    crossover(measured)
}

/// What a ratio compares a zero-copy method with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Against {
    /// Throughput relative to memcpy's.
    Memcpy,
    /// Speedup over gRPC (above 1 is faster).
    Grpc,
    /// The bare notification's latency over the method's (0.5 is twice as slow).
    Notify,
    /// The same, the notification sent after a write of the row's size (the same cache state).
    NotifyAfterWrite,
}

/// A ratio the issue asks to measure, with its target.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ratio {
    /// Its key in the JSON.
    pub(crate) key: String,
    /// The size it was measured at.
    pub(crate) size: u64,
    /// The ratio: the other's median latency over the method's, so above 1 is faster.
    pub(crate) value: f64,
    /// The smallest value that meets the target.
    pub(crate) target: f64,
    /// What the method is compared with.
    pub(crate) against: Against,
    /// The zero-copy method measured.
    pub(crate) method: BenchMethod,
}

impl Ratio {
    /// Whether the target is met.
    pub(crate) fn met(&self) -> bool {
        self.value >= self.target
    }

    fn describe(&self) -> String {
        let size = HumanSize(self.size);
        let verdict = if self.met() { "met" } else { "NOT met" };
        let name = self.method.name();
        match self.against {
            Against::Grpc => {
                let target = if self.target >= 1.0 {
                    format!("at least {}x faster", self.target)
                } else {
                    format!("at most {:.1}x slower", 1.0 / self.target)
                };
                format!(
                    "{name} vs grpc at {size}: {} (target {target}: {verdict})",
                    times(self.value)
                )
            }
            Against::Memcpy => format!(
                "{name} / memcpy throughput at {size}: {:.2} (target at least {}: {verdict})",
                self.value, self.target
            ),
            Against::Notify | Against::NotifyAfterWrite => format!(
                "{name} latency / {} at {size}: {:.2}x (target at most {}x: {verdict})",
                match self.against {
                    Against::Notify => "notify",
                    _ => "notify_after_write",
                },
                1.0 / self.value,
                1.0 / self.target
            ),
        }
    }
}

/// `2.50x faster` or `1.10x slower`.
fn times(speedup: f64) -> String {
    if speedup >= 1.0 {
        format!("{speedup:.2}x faster")
    } else {
        format!("{:.2}x slower", 1.0 / speedup)
    }
}

/// The ratios the transfer targets name, at the sizes that were measured: the copied pooled path at
/// least 0.75x memcpy's throughput checksummed and 0.9x verified by nothing (64 and 256 MiB),
/// the loan path as fast as the copied one, zero-copy against gRPC, and the loan path verified
/// by nothing within 2x of a bare notification at every size.
pub(crate) fn ratios(results: &Results) -> Vec<Ratio> {
    let mut out = Vec::new();
    let mut push = |method: BenchMethod, size: u64, other: BenchMethod, against, target| {
        let (Some(own), Some(theirs)) = (
            results.median_at(size, method),
            results.median_at(size, other),
        ) else {
            return;
        };
        let what = match against {
            Against::Memcpy => "over_memcpy",
            Against::Grpc => "speedup_over_grpc",
            Against::Notify => "within_notify",
            Against::NotifyAfterWrite => "within_notify_after_write",
        };
        out.push(Ratio {
            key: format!("{}_{what}_{}", method.name(), key_size(size)),
            size,
            value: theirs / own,
            target,
            against,
            method,
        });
    };
    for (method, target) in [
        (BenchMethod::ZeroCopyPooled, 0.75),
        (BenchMethod::ZeroCopyPooledNone, 0.9),
        (BenchMethod::ZeroCopyLoan, 0.75),
    ] {
        for size in [64u64 << 20, 256 << 20] {
            push(method, size, BenchMethod::Memcpy, Against::Memcpy, target);
        }
    }
    for method in [BenchMethod::ZeroCopyPooled, BenchMethod::ZeroCopyLoan] {
        for (size, target) in [(256u64 << 20, 10.0), (1 << 10, 1.0 / 1.2)] {
            push(method, size, BenchMethod::Grpc, Against::Grpc, target);
        }
    }
    let mut sizes: Vec<u64> = results.rows.iter().map(|r| r.size).collect();
    sizes.dedup();
    for size in sizes {
        for (other, against) in [
            (BenchMethod::Notify, Against::Notify),
            (BenchMethod::NotifyAfterWrite, Against::NotifyAfterWrite),
        ] {
            push(BenchMethod::ZeroCopyLoanNone, size, other, against, 0.5);
        }
    }
    out
}

fn key_size(size: u64) -> String {
    perf_core::size::config_size(size)
}

/// What the rows mean, printed under the table.
pub(crate) const LEGEND: &str = "\
  zero_copy_pooled: copied into a pooled segment; _sampled / _none: verified by the sample or \
not at all\n  zero_copy_loan: a loaned segment the producer wrote (untimed); _none: not verified, \
the worker reads nothing\n  notify: a bare notification round trip, a 1 KiB loaned segment \
as it is, not verified, beside every size; _after_write: sent right after an untimed write of \
the row's size elsewhere, the cache state the loan rows' producer leaves\n  anything else: the worker checksums every byte and \
the host compares\n";

/// The table: per size and method, median, p99, throughput, samples.
pub(crate) fn table(results: &Results) -> String {
    let mut out = format!(
        "  {:>9}  {:<24} {:>9} {:>9} {:>10} {:>4} {:>9}\n",
        "size", "method", "median", "p99", "MiB/s", "n", "worker"
    );
    let mut last = None;
    for r in &results.rows {
        let size = if last == Some(r.size) {
            String::new()
        } else {
            HumanSize(r.size).to_string()
        };
        last = Some(r.size);
        let us = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| HumanMicros(v).to_string());
        let _ = write!(
            out,
            "  {size:>9}  {:<24} {:>9} {:>9} {:>10} {:>4} {:>9}",
            r.method.name(),
            us(r.median_us()),
            us(r.p99_us()),
            r.throughput_mib_s()
                .map_or_else(|| "-".to_string(), |t| format!("{t:.0}")),
            r.samples_us.len(),
            us(r.worker_median_us()),
        );
        for (what, n) in &r.anomalies {
            let _ = write!(out, "  [{n} x {what}]");
        }
        out.push('\n');
    }
    out
}

/// The crossovers and ratios, as sentences.
pub(crate) fn conclusions(c: &Crossovers, ratios: &[Ratio], sizes: &[u64]) -> String {
    let mut out = String::from("crossover (zero-copy faster than gRPC from this size up):\n");
    let range = match (sizes.first(), sizes.last()) {
        (Some(lo), Some(hi)) => format!("{}..{}", HumanSize(*lo), HumanSize(*hi)),
        _ => String::new(),
    };
    for (name, at) in [("zero_copy_pooled", c.pooled), ("zero_copy_fresh", c.fresh)] {
        let default = HumanSize(c.default_threshold);
        let text = match at {
            None => format!("none in range ({range}); the default threshold is {default}"),
            Some(size) => {
                let below = sizes.iter().rev().find(|s| **s < size);
                let from = match below {
                    Some(b) => format!("{} (slower at {})", HumanSize(size), HumanSize(*b)),
                    None => format!("{} (faster at every measured size)", HumanSize(size)),
                };
                let cmp = if size == c.default_threshold {
                    "equal to".to_string()
                } else if size < c.default_threshold {
                    format!("{:.1}x below", c.default_threshold as f64 / size as f64)
                } else {
                    format!("{:.1}x above", size as f64 / c.default_threshold as f64)
                };
                format!("{from}, {cmp} the {default} default threshold")
            }
        };
        let _ = writeln!(out, "  {name:<24} {text}");
    }
    if !ratios.is_empty() {
        out += "ratios:\n";
        for r in ratios {
            let _ = writeln!(out, "  {}", r.describe());
        }
    }
    out
}

/// The report as JSON: `rows`, `crossover`, `ratios`, `machine`.
pub(crate) fn to_json(
    results: &Results,
    c: &Crossovers,
    ratios: &[Ratio],
    machine: Value,
) -> Value {
    let rows: Vec<Value> = results
        .rows
        .iter()
        .map(|r| {
            json!({
                "size": r.size,
                "method": r.method.name(),
                "median_us": r.median_us(),
                "p99_us": r.p99_us(),
                "throughput_mib_s": r.throughput_mib_s(),
                "repeats": r.samples_us.len(),
                "worker_median_us": r.worker_median_us(),
                "verify": match r.method {
                    BenchMethod::Memcpy => None,
                    m => Some(m.verification().as_str()),
                },
                "payload": if r.method.notifies() { NOTIFY_BYTES } else { r.size },
                "anomalies": r.anomalies,
            })
        })
        .collect();
    let ratios: serde_json::Map<String, Value> = ratios
        .iter()
        .map(|r| {
            let v = json!({
                "size": r.size,
                "ratio": r.value,
                "target": r.target,
                "met": r.met(),
            });
            (r.key.clone(), v)
        })
        .collect();
    json!({
        "rows": rows,
        "crossover": {
            "zero_copy_pooled": c.pooled,
            "zero_copy_fresh": c.fresh,
            "default_threshold": c.default_threshold,
        },
        "ratios": ratios,
        "machine": machine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn row(size: u64, method: BenchMethod, samples: &[f64]) -> Row {
        Row {
            size,
            method,
            samples_us: samples.to_vec(),
            worker_us: Vec::new(),
            anomalies: BTreeMap::new(),
        }
    }

    fn results() -> Results {
        let mut rows = Vec::new();
        for (size, grpc, pooled, fresh, memcpy) in [
            (1 << 10, 100.0, 110.0, 150.0, 0.1),
            (64 * MIB, 70_000.0, 4_000.0, 50_000.0, 3_200.0),
            (256 * MIB, 300_000.0, 16_000.0, 200_000.0, 12_000.0),
        ] {
            rows.push(row(size, BenchMethod::Grpc, &[grpc, grpc * 1.1]));
            rows.push(row(size, BenchMethod::ZeroCopyPooled, &[pooled]));
            rows.push(row(size, BenchMethod::ZeroCopyFresh, &[fresh]));
            rows.push(row(size, BenchMethod::Memcpy, &[memcpy]));
        }
        Results { rows }
    }

    #[test]
    fn rows_compute_median_p99_and_throughput() {
        let r = row(MIB, BenchMethod::Grpc, &[1000.0, 3000.0, 2000.0]);
        assert_eq!(r.median_us(), Some(2000.0));
        assert_eq!(r.p99_us(), Some(3000.0));
        assert_eq!(r.throughput_mib_s(), Some(500.0));
        assert_eq!(row(MIB, BenchMethod::Grpc, &[]).throughput_mib_s(), None);
    }

    #[test]
    fn ratios_compare_pooled_with_memcpy_and_grpc() {
        let r = ratios(&results());
        let keys: Vec<&str> = r.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "zero_copy_pooled_over_memcpy_64MiB",
                "zero_copy_pooled_over_memcpy_256MiB",
                "zero_copy_pooled_speedup_over_grpc_256MiB",
                "zero_copy_pooled_speedup_over_grpc_1KiB",
            ]
        );
        assert!((r[0].value - 0.8).abs() < 1e-9 && r[0].met());
        assert!((r[1].value - 0.75).abs() < 1e-9 && r[1].met());
        assert!((r[2].value - 300_000.0 * 1.05 / 16_000.0).abs() < 1e-9 && r[2].met());
        // 110 vs 105 µs: 1.05x slower, within the 1.2x allowed.
        assert!(r[3].met() && r[3].value < 1.0);
        let text = conclusions(&crossovers(&results(), 10 * MIB), &r, &[1 << 10]);
        assert!(text.contains("at 1.0 KiB: 1.05x slower (target at most 1.2x slower: met)"));
        assert!(text.contains("at 256.0 MiB: 19.69x faster"), "{text}");
    }

    #[test]
    fn crossovers_and_their_comparison_with_the_default() {
        let res = results();
        let c = crossovers(&res, 10 * MIB);
        assert_eq!(c.pooled, Some(64 * MIB));
        assert_eq!(c.fresh, Some(64 * MIB));
        let sizes = [1 << 10, 64 * MIB, 256 * MIB];
        let text = conclusions(&c, &[], &sizes);
        assert!(
            text.contains("64.0 MiB (slower at 1.0 KiB), 6.4x above the 10.0 MiB default"),
            "{text}"
        );
        let none = Crossovers {
            pooled: None,
            fresh: Some(1 << 10),
            default_threshold: 10 * MIB,
        };
        let text = conclusions(&none, &[], &sizes);
        assert!(
            text.contains("none in range (1.0 KiB..256.0 MiB)"),
            "{text}"
        );
        assert!(text.contains("faster at every measured size"), "{text}");
    }

    #[test]
    fn each_crossover_compares_its_own_method_and_skips_sizes_it_lacks() {
        let mut res = results();
        // Fresh segments lose at 256 MiB: no fresh crossover, the pooled one stays.
        res.rows[10].samples_us = vec![400_000.0];
        // Pooled wins at 1 KiB too, and every pooled transfer at 64 MiB went another way:
        // that size says nothing, so pooled keeps winning from 1 KiB.
        res.rows[1].samples_us = vec![50.0];
        res.rows[5].samples_us.clear();
        let c = crossovers(&res, 10 * MIB);
        assert_eq!((c.pooled, c.fresh), (Some(1 << 10), None));
        // The median decides: one slow pooled transfer among three at 256 MiB does not.
        res.rows[9].samples_us = vec![16_000.0, 16_500.0, 900_000.0];
        assert_eq!(crossovers(&res, 10 * MIB).pooled, Some(1 << 10));
        res.rows[9].samples_us.push(900_000.0);
        res.rows[9].samples_us.push(900_000.0);
        assert_eq!(crossovers(&res, 10 * MIB).pooled, None);
    }

    #[test]
    fn json_has_a_row_per_size_and_method() {
        let res = results();
        let v = to_json(&res, &crossovers(&res, 10 * MIB), &ratios(&res), json!({}));
        assert_eq!(v["rows"].as_array().unwrap().len(), 12);
        assert_eq!(v["rows"][1]["method"], "zero_copy_pooled");
        assert_eq!(v["rows"][0]["median_us"], 105.0);
        assert_eq!(v["crossover"]["zero_copy_pooled"], 64 * MIB);
        assert_eq!(
            v["ratios"]["zero_copy_pooled_over_memcpy_64MiB"]["met"],
            true
        );
    }

    #[test]
    fn ratios_hold_the_unverified_paths_to_memcpy_and_the_notification() {
        let mut res = results();
        for (size, none, loan_none, notify) in [
            (1 << 10, 100.0, 90.0, 80.0),
            (64 * MIB, 3_400.0, 100.0, 80.0),
            (256 * MIB, 14_000.0, 170.0, 80.0),
        ] {
            res.rows
                .push(row(size, BenchMethod::ZeroCopyPooledNone, &[none]));
            res.rows
                .push(row(size, BenchMethod::ZeroCopyLoanNone, &[loan_none]));
            res.rows.push(row(size, BenchMethod::Notify, &[notify]));
        }
        let r = ratios(&res);
        let find = |key: &str| {
            r.iter()
                .find(|r| r.key == key)
                .unwrap_or_else(|| panic!("{key}"))
        };
        let none = find("zero_copy_pooled_none_over_memcpy_64MiB");
        assert!(
            (none.value - 3_200.0 / 3_400.0).abs() < 1e-9 && none.met(),
            "{none:?}"
        );
        assert!(!find("zero_copy_pooled_none_over_memcpy_256MiB").met());
        // 170 µs against an 80 µs notification is more than twice as slow.
        let at = |size: &str| find(&format!("zero_copy_loan_none_within_notify_{size}")).met();
        assert_eq!((at("1KiB"), at("64MiB"), at("256MiB")), (true, true, false));
        let text = conclusions(&crossovers(&res, 10 * MIB), &r, &[1 << 10]);
        assert!(
            text.contains(
                "zero_copy_loan_none latency / notify at 256.0 MiB: 2.12x (target at most 2x: NOT met)"
            ),
            "{text}"
        );
        let v = to_json(&res, &crossovers(&res, 10 * MIB), &r, json!({}));
        assert_eq!(
            v["ratios"]["zero_copy_loan_none_within_notify_64MiB"]["met"],
            true
        );
        let notify = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["method"] == "notify")
            .unwrap();
        assert_eq!(
            (notify["verify"].as_str(), notify["payload"].as_u64()),
            (Some("none"), Some(1024))
        );
        assert!(notify["throughput_mib_s"].is_null());
    }

    #[test]
    fn the_table_shows_anomalies_beside_their_row() {
        let mut res = results();
        res.rows[1].anomalies.insert("fell back to gRPC".into(), 2);
        assert_eq!(res.anomalies(), 2);
        let t = table(&res);
        assert!(t.contains("[2 x fell back to gRPC]"), "{t}");
        assert_eq!(t.lines().count(), 13);
    }
}
