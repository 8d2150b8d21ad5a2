//! Criterion benchmarks of the decision hot path and of rendering a rationale.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use perf_core::{Config, Controller, DecisionContext, Timestamp, TransferRequest};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

fn ctx() -> DecisionContext {
    DecisionContext::idle(Timestamp::from_secs(1_700_000_000))
}

/// The default policy, with its 5 % exploration in the band around 10 MiB.
fn controller() -> Controller {
    Controller::new(Config::default()).expect("the default configuration is valid")
}

fn decide(c: &mut Criterion) {
    let controller = controller();
    let ctx = ctx();
    let mut group = c.benchmark_group("decide");

    // Under the 1 MiB floor: no estimates are computed.
    let small = TransferRequest::new(4 * KIB);
    group.bench_function("quick_path", |b| {
        b.iter(|| controller.decide(black_box(&small), black_box(&ctx)))
    });

    // Above the 10 MiB threshold and inside the exploration band: estimates,
    // goal weights and an exploration draw.
    let large = TransferRequest::new(12 * MIB);
    group.bench_function("full_analysis", |b| {
        b.iter(|| controller.decide(black_box(&large), black_box(&ctx)))
    });

    // Two threads deciding at once on one controller. Each thread makes
    // `iters` decisions after a common start; the slower thread's time is
    // returned, so criterion reports wall time per decision per thread.
    let shared = Arc::new(controller);
    group.bench_function("two_threads", |b| {
        b.iter_custom(|iters| {
            let start = Arc::new(Barrier::new(2));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let (c, start) = (shared.clone(), start.clone());
                    thread::spawn(move || {
                        start.wait();
                        let t = std::time::Instant::now();
                        for _ in 0..iters {
                            black_box(c.decide(black_box(&large), &ctx));
                        }
                        t.elapsed()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a decider thread panicked"))
                .max()
                .unwrap_or(Duration::ZERO)
        })
    });
    group.finish();

    // Formatting the rationale of a full analysis to a new String.
    let decision = shared.decide(&large, &ctx);
    c.bench_function("rationale/render", |b| {
        b.iter(|| black_box(&decision).rationale().to_string())
    });
}

criterion_group!(benches, decide);
criterion_main!(benches);
