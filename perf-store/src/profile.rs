//! Correlation profiles (R2.6): how latency and throughput vary with payload size, format,
//! compression and CPU load, computed from raw samples.

use std::collections::BTreeMap;

use perf_core::{HumanSize, TransferMetrics};
use serde::{Deserialize, Serialize};

use crate::schema::size_class;

/// One group of transfers in a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRow {
    /// What the group holds: `4 KiB..8 KiB`, `arrow`, `zstd`, `30-40%`.
    pub group: String,
    /// How many transfers.
    pub count: u64,
    /// Median latency, microseconds (exact, nearest rank).
    pub latency_p50_us: f64,
    /// 95th percentile latency, microseconds (exact, nearest rank).
    pub latency_p95_us: f64,
    /// Mean throughput, bytes per second.
    pub mean_throughput_bps: f64,
}

/// Latency and throughput against size, format, compression and load, each dimension's groups
/// in their natural order (smallest size, declaration order, lowest load first); groups with no
/// transfers are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// How many samples the profile was built from.
    pub samples: u64,
    /// By size class: payloads from `2^k` up to `2^(k+1)` bytes.
    pub by_size: Vec<ProfileRow>,
    /// By encoding format.
    pub by_format: Vec<ProfileRow>,
    /// By compression.
    pub by_compression: Vec<ProfileRow>,
    /// By CPU utilisation at the time, in deciles (`0-10%` .. `90-100%`).
    pub by_load: Vec<ProfileRow>,
}

/// Transfers of one group, collected before the row is computed.
#[derive(Default)]
struct Group {
    latencies: Vec<f64>,
    throughput_sum: f64,
}

impl Group {
    fn add(&mut self, m: &TransferMetrics) {
        self.latencies.push(m.latency_us);
        self.throughput_sum += m.throughput_bps;
    }

    fn row(mut self, group: String) -> ProfileRow {
        self.latencies.sort_by(f64::total_cmp);
        let n = self.latencies.len();
        let rank = |q: f64| {
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            self.latencies[i]
        };
        ProfileRow {
            group,
            count: n as u64,
            latency_p50_us: rank(0.50),
            latency_p95_us: rank(0.95),
            mean_throughput_bps: self.throughput_sum / n as f64,
        }
    }
}

/// Groups `samples` by `key` (which orders the rows) and labels each group with `label`.
fn rows<K: Ord + Copy>(
    samples: &[TransferMetrics],
    key: impl Fn(&TransferMetrics) -> K,
    label: impl Fn(K) -> String,
) -> Vec<ProfileRow> {
    let mut groups: BTreeMap<K, Group> = BTreeMap::new();
    for m in samples {
        groups.entry(key(m)).or_default().add(m);
    }
    groups.into_iter().map(|(k, g)| g.row(label(k))).collect()
}

/// The load decile of a CPU utilisation (0.0 to 1.0): 0 for under 10 %, 9 for 90 % and over.
pub fn load_decile(cpu_utilization: f64) -> u8 {
    let v = if cpu_utilization.is_finite() {
        cpu_utilization.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((v * 10.0).floor() as u8).min(9)
}

impl Profile {
    /// The profile of `samples`.
    pub fn from_samples(samples: &[TransferMetrics]) -> Profile {
        Profile {
            samples: samples.len() as u64,
            by_size: rows(
                samples,
                |m| size_class(m.size),
                |k| {
                    let lo = 1u64 << k;
                    match lo.checked_mul(2) {
                        Some(hi) => format!("{}..{}", HumanSize(lo), HumanSize(hi)),
                        None => format!("{}..", HumanSize(lo)),
                    }
                },
            ),
            by_format: rows(samples, |m| m.format, |f| f.as_str().to_string()),
            by_compression: rows(samples, |m| m.compression, |c| c.as_str().to_string()),
            by_load: rows(
                samples,
                |m| load_decile(m.system.cpu_utilization),
                |d| format!("{}-{}%", d * 10, d * 10 + 10),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perf_core::{Compression, Format};

    use crate::test_support::metrics;

    #[test]
    fn groups_by_each_dimension_in_natural_order() {
        let mut samples = Vec::new();
        for i in 1..=100u64 {
            let mut m = metrics(0, i as f64);
            m.size = if i <= 50 { 1024 } else { 1 << 20 };
            m.format = if i % 2 == 0 {
                Format::Arrow
            } else {
                Format::Raw
            };
            m.compression = Compression::Zstd;
            m.system.cpu_utilization = if i <= 90 { 0.35 } else { 1.0 };
            m.throughput_bps = 1000.0 * i as f64;
            samples.push(m);
        }
        let p = Profile::from_samples(&samples);
        assert_eq!(p.samples, 100);
        let sizes: Vec<_> = p
            .by_size
            .iter()
            .map(|r| (r.group.as_str(), r.count))
            .collect();
        assert_eq!(sizes.len(), 2);
        assert_eq!(sizes[0].1, 50);
        assert!(sizes[0].0.starts_with("1"), "{}", sizes[0].0);
        assert_eq!(p.by_size[0].latency_p50_us, 25.0);
        assert_eq!(p.by_size[0].latency_p95_us, 48.0);
        assert_eq!(p.by_size[1].latency_p50_us, 75.0);
        assert_eq!(p.by_size[0].mean_throughput_bps, 25_500.0);
        let formats: Vec<_> = p.by_format.iter().map(|r| r.group.as_str()).collect();
        assert_eq!(formats, ["raw", "arrow"]);
        assert_eq!(p.by_compression.len(), 1);
        assert_eq!(p.by_compression[0].group, "zstd");
        let loads: Vec<_> = p
            .by_load
            .iter()
            .map(|r| (r.group.as_str(), r.count))
            .collect();
        assert_eq!(loads, [("30-40%", 90), ("90-100%", 10)]);
        assert_eq!(Profile::from_samples(&[]), Profile::default());
    }

    #[test]
    fn load_deciles_are_bounded() {
        assert_eq!(load_decile(0.0), 0);
        assert_eq!(load_decile(0.099), 0);
        assert_eq!(load_decile(0.5), 5);
        assert_eq!(load_decile(1.0), 9);
        assert_eq!(load_decile(7.0), 9);
        assert_eq!(load_decile(f64::NAN), 0);
    }
}
