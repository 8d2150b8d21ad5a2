//! Criterion benchmarks of `StoreSink::record` from one and two threads, of the drain thread's
//! aggregation, and of a 1 MiB memcpy (the cheapest 1 MiB transfer) to compare them with.
//!
//! Records are timed in chunks that fit the queue; between chunks, outside the timing, the sink
//! is flushed, so what is measured is the common case: a push onto a queue with room while the
//! drain thread runs. Budget (issue 4): under 200 ns per record and under 1 % of the 1 MiB copy.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use perf_core::{
    DecisionContext, FixedPolicy, Method, MetricsSink, SystemState, Timestamp, TransferMetrics,
    TransferPolicy, TransferRequest,
};
use perf_store::{Aggregator, AggregatorConfig, MemoryBackend, SinkConfig, StoreSink};

const MIB: usize = 1 << 20;
const QUEUE: usize = 1 << 18;

fn sample() -> TransferMetrics {
    let req = TransferRequest::new(MIB as u64);
    let d = FixedPolicy(Method::ZeroCopy).decide(&req, &DecisionContext::idle(Timestamp(0)));
    TransferMetrics::new(
        &req,
        &d,
        Method::ZeroCopy,
        70.0,
        Timestamp::from_secs(1_700_000_000),
        SystemState::IDLE,
    )
}

fn sink() -> StoreSink {
    StoreSink::new(
        Arc::new(MemoryBackend::default()),
        SinkConfig {
            queue_capacity: QUEUE,
            ..SinkConfig::default()
        },
    )
    .expect("the sink starts")
}

/// Times `iters` records on each of `threads` threads, in chunks the queue holds; returns the
/// slowest thread's time, so the result is the time per record per thread.
fn timed_records(sink: &Arc<StoreSink>, threads: usize, iters: u64) -> Duration {
    let chunk = (QUEUE / (2 * threads)) as u64;
    let m = sample();
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        let barrier = Arc::new(Barrier::new(threads));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (sink, barrier) = (Arc::clone(sink), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..n {
                        sink.record(black_box(&m));
                    }
                    start.elapsed()
                })
            })
            .collect();
        total += workers
            .into_iter()
            .map(|w| w.join().expect("a recording thread"))
            .max()
            .unwrap_or_default();
        sink.flush();
        left -= n;
    }
    total
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for threads in [1, 2] {
        let sink = Arc::new(sink());
        group.bench_function(format!("{threads}_thread"), |b| {
            b.iter_custom(|iters| timed_records(&sink, threads, iters))
        });
        let stats = sink.stats();
        assert_eq!(
            stats.dropped, 0,
            "the chunks fit the queue, so nothing may drop"
        );
    }
    group.finish();
}

fn drain(c: &mut Criterion) {
    let backend = MemoryBackend::default();
    let mut agg = Aggregator::new(AggregatorConfig::default());
    let m = sample();
    let mut n = 0u32;
    c.bench_function("drain/aggregate_one", |b| {
        b.iter(|| {
            agg.record(black_box(&m));
            n += 1;
            if n == 10_000 {
                n = 0;
                agg.commit(&backend).expect("memory commits");
            }
        })
    });
}

fn memcpy(c: &mut Criterion) {
    let src = vec![7u8; MIB];
    let mut dst = vec![0u8; MIB];
    c.bench_function("memcpy_1MiB", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(dst[MIB - 1])
        })
    });
}

criterion_group!(benches, record, drain, memcpy);
criterion_main!(benches);
