//! Measures the latency distribution of single decisions (p50, p99, p99.9) and prints it as JSON.
//!
//! Criterion reports medians of batches; a hot-path budget is about the tail of
//! single calls, so each call is timed on its own here. The timer's own cost
//! (about 20 ns) is included, which makes the figures conservative.
//! `cargo xtask perf-gate` runs this in release mode and checks the budgets.

use std::hint::black_box;
use std::time::Instant;

use perf_core::{Config, Controller, DecisionContext, Timestamp, TransferRequest};

const WARMUP: usize = 100_000;

fn percentiles(mut ns: Vec<u64>) -> serde_json::Value {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q).round() as usize];
    serde_json::json!({
        "samples": ns.len(),
        "p50_ns": at(0.50),
        "p99_ns": at(0.99),
        "p999_ns": at(0.999),
        "max_ns": ns[ns.len() - 1],
    })
}

fn time_calls(controller: &Controller, request: &TransferRequest, n: usize) -> Vec<u64> {
    let ctx = DecisionContext::idle(Timestamp(1));
    for _ in 0..WARMUP {
        black_box(controller.decide(black_box(request), &ctx));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        black_box(controller.decide(black_box(request), &ctx));
        out.push(start.elapsed().as_nanos() as u64);
    }
    out
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let controller = Controller::new(Config::default()).expect("the default config is valid");
    let quick = TransferRequest::new(4 << 10);
    // 12 MiB lies above the threshold and inside the exploration band: the
    // whole cost analysis and an exploration draw run.
    let full = TransferRequest::new(12 << 20);

    let quick_ns = time_calls(&controller, &quick, n);
    let full_ns = time_calls(&controller, &full, n);
    let two: Vec<u64> = std::thread::scope(|s| {
        let a = s.spawn(|| time_calls(&controller, &full, n / 2));
        let b = s.spawn(|| time_calls(&controller, &full, n / 2));
        let mut v = a.join().expect("thread a");
        v.extend(b.join().expect("thread b"));
        v
    });
    let report = serde_json::json!({
        "quick_path": percentiles(quick_ns),
        "full_analysis": percentiles(full_ns),
        "two_threads": percentiles(two),
    });
    println!("{report}");
}
