//! The scenarios that time the work around a transfer: recording one into the optimizer's
//! sinks (the store, the telemetry, the learning feeds) against a 1 MiB transfer, and single
//! decisions by the engine against their budget.

use std::hint::black_box;
use std::time::Instant;

use perf_core::{DecisionContext, Method, Timestamp, TransferRequest};
use perfopt::Optimizer;
use perfopt::learn::LearnConfig;

use super::Measured;
use super::scenario::{DecisionSpec, RecordingSpec};
use super::series::{Series, Unit};
use crate::exit::Exit;
use crate::measure::{Reuse, Worker, segments};

/// Records timed together; one sample is their mean.
const RECORD_BATCH: usize = 100;
/// Decisions made untimed before the timed ones.
const DECISION_WARMUP: usize = 100_000;

/// Runs a `recording` scenario.
pub(crate) fn recording(spec: &RecordingSpec) -> Result<Measured, Exit> {
    let optimizer = Optimizer::builder()
        .learning(LearnConfig::default())
        .build()
        .map_err(Exit::failed)?;
    let size = 1usize << 20;
    let payload = perf_core::rng::random_bytes(size, 0x4EC);
    let exe = std::env::current_exe().map_err(Exit::failed)?;
    let command = perfopt::transport::WorkerCommand::perfopt(exe);
    let mut record = Series::new("record", "record", Unit::Micros);
    let mut transfer = Series::new("transfer@1MiB", "zero_copy", Unit::Micros);
    transfer.size = Some(size as u64);
    let batches = spec.records.div_ceil(RECORD_BATCH);
    let runtime = crate::measure::runtime()?;
    runtime.block_on(async {
        let worker = Worker::spawn(segments(size as u64, Reuse::Pooled)?, command).await?;
        worker.pool().warm(&[size]).map_err(Exit::failed)?;
        for i in 0..spec.transfers.max(batches) {
            let out = worker
                .carry(Method::ZeroCopy, &payload)
                .await
                .map_err(Exit::failed)?;
            if i < spec.transfers {
                transfer.transfers += 1;
                transfer.samples.push(out.metrics.latency_us);
                transfer.bytes += size as u64;
                transfer.wall_s += out.metrics.latency_us * 1e-6;
                transfer.fallbacks += u64::from(out.metrics.fallback.is_some());
            }
            if i < batches {
                // The record a real transfer makes, into every sink the optimizer feeds.
                let mut m = out.metrics;
                let start = Instant::now();
                for k in 0..RECORD_BATCH {
                    m.session = k as u64;
                    optimizer.record(black_box(&m));
                }
                let us = start.elapsed().as_secs_f64() * 1e6 / RECORD_BATCH as f64;
                record.samples.push(us);
                record.transfers += RECORD_BATCH as u64;
            }
        }
        worker.shutdown().await;
        Ok::<_, Exit>(())
    })?;
    let report = optimizer.shutdown();
    let mut measured = Measured::series(&[record, transfer]);
    measured.figure("store_recorded", report.store.recorded);
    measured.figure("store_dropped", report.store.dropped);
    Ok(measured)
}

/// Runs a `decision` scenario: each decision timed on its own (the timer's cost of about 20
/// ns included), on the quick path (4 KiB, below the floor) and with the full cost analysis
/// and an exploration draw (12 MiB, inside the ambiguous band), from one thread and from two.
pub(crate) fn decision(spec: &DecisionSpec) -> Result<Measured, Exit> {
    // The engine as the facade wires it, on the default configuration.
    let optimizer = Optimizer::builder().build().map_err(Exit::failed)?;
    let controller = optimizer.controller().clone();
    let quick = TransferRequest::new(4 << 10);
    let full = TransferRequest::new(12 << 20);
    let time = |request: &TransferRequest, n: usize| -> Vec<f64> {
        let ctx = DecisionContext::idle(Timestamp(1));
        for _ in 0..DECISION_WARMUP {
            black_box(controller.decide(black_box(request), &ctx));
        }
        (0..n)
            .map(|_| {
                let start = Instant::now();
                black_box(controller.decide(black_box(request), &ctx));
                start.elapsed().as_secs_f64() * 1e6
            })
            .collect()
    };
    let mut series = Vec::new();
    for (id, request) in [("decide_quick", &quick), ("decide", &full)] {
        let mut s = Series::new(id, "decide", Unit::Micros);
        s.samples = time(request, spec.decisions);
        s.transfers = s.samples.len() as u64;
        series.push(s);
    }
    let two: Vec<f64> = std::thread::scope(|scope| {
        let a = scope.spawn(|| time(&full, spec.decisions / 2));
        let b = scope.spawn(|| time(&full, spec.decisions / 2));
        let mut v = a.join().unwrap_or_default();
        v.extend(b.join().unwrap_or_default());
        v
    });
    let mut s = Series::new("decide_two_threads", "decide", Unit::Micros);
    s.in_flight = 2;
    s.transfers = two.len() as u64;
    s.samples = two;
    series.push(s);
    optimizer.shutdown();
    Ok(Measured::series(&series))
}
