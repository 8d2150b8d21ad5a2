//! Throughput and latency of the host runtime against concurrency: a mixed workload of 1 KiB to
//! 16 MiB payloads, one host, two `perfopt worker` processes, at 1, 4, 64, 1,000 and 10,000
//! transfers in flight, every transfer checked and counted.
//!
//! `cargo bench -p perf-cli --bench host_concurrency` prints one row per level (the median of
//! `ROUNDS` rounds) and the ratio of the 10,000 level's throughput to the best level's, measured
//! in the same run. `PERFOPT_BENCH_TRANSFERS` sets the transfers per round (10,000 by default;
//! at 10,000 in flight every one is submitted at once from its own task).

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use perf_core::{Config, Controller, MetricsSink, TransferMetrics, TransferPolicy};
use perfopt::TransferRequest;
use perfopt::platform::MemfdShm;
use perfopt::transport::{Host, SegmentPool, SegmentPoolConfig, WorkerCommand};

const LEVELS: [usize; 5] = [1, 4, 64, 1_000, 10_000];
const ROUNDS: usize = 3;
const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// Latency and queueing of every delivered transfer; failures counted.
struct Tally(std::sync::Mutex<(Histogram<u64>, Histogram<u64>, u64, u64)>);

impl MetricsSink for Tally {
    fn record(&self, m: &TransferMetrics) {
        let mut t = self.0.lock().unwrap();
        if m.is_evidence() {
            let _ = t.0.record(m.latency_us as u64);
            let _ = t.1.record(m.queued_us as u64);
            t.2 += 1;
        } else {
            t.3 += 1;
        }
    }
}

impl Tally {
    fn new() -> Tally {
        let h = || Histogram::new(3).unwrap();
        Tally(std::sync::Mutex::new((h(), h(), 0, 0)))
    }

    fn take(&self) -> (Histogram<u64>, Histogram<u64>, u64, u64) {
        let mut t = self.0.lock().unwrap();
        let h = || Histogram::new(3).unwrap();
        std::mem::replace(&mut *t, (h(), h(), 0, 0))
    }
}

/// Sizes spread log-uniformly over 1 KiB..16 MiB, the same in every round.
fn sizes(n: usize) -> Vec<usize> {
    let (lo, hi) = ((KIB as f64).ln(), ((16 * MIB) as f64).ln());
    (0..n)
        .map(|i| {
            let u =
                ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
            ((lo + u * (hi - lo)).exp() as usize).clamp(KIB, 16 * MIB)
        })
        .collect()
}

struct Round {
    mib_s: f64,
    transfers_s: f64,
    latency: Histogram<u64>,
    queued: Histogram<u64>,
    delivered: u64,
    failed: u64,
}

async fn round(
    host: &Host,
    tally: &Tally,
    level: usize,
    sizes: &Arc<Vec<usize>>,
    data: &Arc<Vec<u8>>,
) -> Round {
    let n = sizes.len();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(level);
    for t in 0..level.min(n) {
        let (host, sizes, data) = (host.clone(), sizes.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            for i in (t..sizes.len()).step_by(level) {
                let len = sizes[i];
                let request = TransferRequest::new(len as u64).with_session(i as u64);
                if host.transfer(&request, &data[..len]).await.is_ok() {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut delivered = 0;
    for task in tasks {
        delivered += task.await.expect("a transfer task panicked");
    }
    let took = started.elapsed().as_secs_f64();
    let bytes: usize = sizes.iter().sum();
    let (latency, queued, recorded, failed) = tally.take();
    assert_eq!(recorded, delivered, "every delivered transfer is recorded");
    assert_eq!(
        delivered as usize + failed as usize,
        n,
        "no transfer is lost"
    );
    Round {
        mib_s: bytes as f64 / MIB as f64 / took,
        transfers_s: n as f64 / took,
        latency,
        queued,
        delivered,
        failed,
    }
}

fn main() {
    // `cargo test --benches` runs this with `--bench`-less arguments; measure only when benched.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("PERFOPT_BENCH_TRANSFERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tally = Arc::new(Tally::new());
        let policy: Arc<dyn TransferPolicy> =
            Arc::new(Controller::new(Config::default()).unwrap());
        let pool = SegmentPool::new(Arc::new(MemfdShm::default()), SegmentPoolConfig::default()).unwrap();
        let host = Host::builder(policy)
            .zero_copy(pool)
            .sink(tally.clone())
            .spawn(WorkerCommand::perfopt(env!("CARGO_BIN_EXE_perfopt")), 2)
            .start()
            .await
            .unwrap();
        let sizes = Arc::new(sizes(n));
        let data = Arc::new((0..16 * MIB).map(|i| (i * 7 + 3) as u8).collect::<Vec<u8>>());
        println!(
            "host runtime, mixed 1 KiB..16 MiB, 2 workers, {n} transfers per round, median of {ROUNDS} rounds (capacity {} in flight)",
            host.capacity()
        );
        println!(
            "{:>9} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12} {:>7}",
            "in flight", "MiB/s", "transfers/s", "p50 latency", "p99 latency", "p50 queued", "p99 queued", "failed"
        );
        let mut best = 0.0f64;
        let mut at_max = 0.0;
        for level in LEVELS {
            let mut rounds = Vec::new();
            for _ in 0..ROUNDS {
                rounds.push(round(&host, &tally, level, &sizes, &data).await);
            }
            rounds.sort_by(|a, b| a.mib_s.total_cmp(&b.mib_s));
            let median = &rounds[ROUNDS / 2];
            let failed: u64 = rounds.iter().map(|r| r.failed).sum();
            let us = |h: &Histogram<u64>, q| format!("{} us", h.value_at_quantile(q));
            println!(
                "{level:>9} {:>10.0} {:>12.0} {:>12} {:>12} {:>12} {:>12} {failed:>7}",
                median.mib_s,
                median.transfers_s,
                us(&median.latency, 0.5),
                us(&median.latency, 0.99),
                us(&median.queued, 0.5),
                us(&median.queued, 0.99),
            );
            assert_eq!(median.delivered as usize, n);
            best = best.max(median.mib_s);
            if level == 10_000 {
                at_max = median.mib_s;
            }
        }
        println!(
            "throughput at 10000 in flight / best level: {:.3}",
            at_max / best
        );
        let stats = host.stats();
        println!(
            "host: {} delivered, {} failed, {} retried, peak {} in flight",
            stats.delivered, stats.failed, stats.retried, stats.peak_in_flight
        );
        host.shutdown().await;
    });
}
