//! The scenarios that drive the host runtime of an optimizer: throughput at each concurrency
//! level (10,000 in flight among them), the engine against the fixed policies, every transfer
//! asking for zero-copy while /dev/shm is far too small, and the engine's decisions idle and
//! with every CPU busy. Every transfer is counted: delivered, failed, or lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use perf_core::rng::SplitMix;
use perf_core::{FixedPolicy, Method, MetricsSink, TransferMetrics, TransferPolicy};
use perfopt::learn::LearnConfig;
use perfopt::transport::{Host, TransferOutcome, WorkerCommand};
use perfopt::{Optimizer, OptimizerError};

use super::Measured;
use super::machine::{peak_rss, process_cpu_s, reset_peak_rss};
use super::scenario::{
    ConcurrencySpec, CpuSaturationSpec, MemoryPressureSpec, PoliciesSpec, SizeRange,
};
use super::series::{Series, Unit};
use crate::exit::Exit;
use crate::load::Burners;

const MIB: f64 = (1u64 << 20) as f64;

/// Counts what reaches the optimizer's sinks: every attempt, delivered or failed.
#[derive(Default)]
struct Tally {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl MetricsSink for Tally {
    fn record(&self, m: &TransferMetrics) {
        let counter = if m.success {
            &self.delivered
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Tally {
    fn take(&self) -> (u64, u64) {
        (
            self.delivered.swap(0, Ordering::Relaxed),
            self.failed.swap(0, Ordering::Relaxed),
        )
    }
}

/// An optimizer on the default configuration with an in-memory store, learning as `learn` says.
fn optimizer(
    learn: bool,
    configure: impl FnOnce(perfopt::OptimizerBuilder) -> perfopt::OptimizerBuilder,
) -> Result<Optimizer, Exit> {
    let builder = Optimizer::builder().learning(LearnConfig {
        enabled: learn,
        ..LearnConfig::default()
    });
    configure(builder).build().map_err(|e| match e {
        OptimizerError::Config { .. } => Exit::bad_input(e),
        other => Exit::failed(other),
    })
}

/// A multi-threaded runtime of two threads, as `perfopt run` drives its host with.
fn runtime() -> Result<tokio::runtime::Runtime, Exit> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Exit::failed)
}

/// `workers` `perfopt worker` processes on `optimizer`'s host runtime, counted by `tally`.
async fn start_host(
    optimizer: &Optimizer,
    tally: &Arc<Tally>,
    workers: usize,
) -> Result<Host, Exit> {
    let exe = std::env::current_exe().map_err(Exit::failed)?;
    optimizer
        .host()
        .sink(tally.clone())
        .spawn(WorkerCommand::perfopt(exe), workers)
        .start()
        .await
        .map_err(Exit::failed)
}

/// `n` sizes drawn log-uniformly from `range`, the same for the same seed.
fn sizes(range: &SizeRange, n: usize, seed: u64) -> Vec<u64> {
    let rng = SplitMix::new(seed);
    let (lo, hi) = ((range.min_size as f64).ln(), (range.max_size as f64).ln());
    (0..n)
        .map(|_| {
            ((lo + rng.next_f64() * (hi - lo)).exp() as u64).clamp(range.min_size, range.max_size)
        })
        .collect()
}

/// What one carried transfer came to, as its caller saw it.
#[derive(Default, Clone, Copy)]
struct Done {
    delivered: bool,
    latency_us: f64,
    queued_us: f64,
    fallback: bool,
    zero_copy_decided: bool,
    worker_cpu_ns: u64,
}

impl Done {
    fn of(result: &Result<TransferOutcome, perfopt::transport::TransferError>) -> Done {
        match result {
            Ok(out) => Done {
                delivered: true,
                latency_us: out.metrics.latency_us,
                queued_us: out.metrics.queued_us,
                fallback: out.metrics.fallback.is_some(),
                zero_copy_decided: out.metrics.decided_method == Method::ZeroCopy,
                worker_cpu_ns: out.ack.worker_cpu_ns,
            },
            Err(_) => Done::default(),
        }
    }
}

/// The counts of a finished batch: `n` submitted, `done` returned, `tally` recorded.
fn count(series: &mut Series, n: usize, done: &[Done], recorded: (u64, u64)) {
    let delivered = done.iter().filter(|d| d.delivered).count() as u64;
    let failed = done.len() as u64 - delivered;
    series.transfers = n as u64;
    series.failed = failed;
    series.fallbacks = done.iter().filter(|d| d.fallback).count() as u64;
    // Lost: submitted and never returned, or delivered and never recorded.
    series.lost = (n as u64 - done.len() as u64) + delivered.saturating_sub(recorded.0);
    let worker_ns: u64 = done.iter().map(|d| d.worker_cpu_ns).sum();
    series.cpu_workers_s = Some(worker_ns as f64 * 1e-9);
    for d in done.iter().filter(|d| d.delivered) {
        series.latency_us.push(d.latency_us);
        series.queued_us.push(d.queued_us);
    }
}

/// Carries `sizes` through `host` by `policy` (the host's own when None) from `level` tasks at
/// once, sampling the throughput every `window`; the series is unit MiB/s.
async fn carry_all(
    host: &Host,
    policy: Option<Arc<dyn TransferPolicy>>,
    level: usize,
    sizes: &Arc<Vec<u64>>,
    range: &SizeRange,
    data: &Arc<[u8]>,
    window: Duration,
) -> (Vec<Done>, Vec<f64>, f64, u64) {
    let moved = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(level);
    for t in 0..level.min(sizes.len()) {
        let (host, sizes, data, moved, finished) = (
            host.clone(),
            sizes.clone(),
            data.clone(),
            moved.clone(),
            finished.clone(),
        );
        let policy = policy.clone();
        let range = range.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for i in (t..sizes.len()).step_by(level) {
                let len = sizes[i] as usize;
                let request = range.request(i, len as u64);
                let result = match &policy {
                    Some(p) => host.transfer_with(p.as_ref(), &request, &data[..len]).await,
                    None => host.transfer(&request, &data[..len]).await,
                };
                if result.is_ok() {
                    moved.fetch_add(len as u64, Ordering::Relaxed);
                }
                finished.fetch_add(1, Ordering::Relaxed);
                done.push(Done::of(&result));
            }
            done
        }));
    }
    // Throughput per whole window; the last, partial one is left out.
    let total = sizes.len() as u64;
    let sampler = {
        let (moved, finished) = (moved.clone(), finished.clone());
        let pool = host.pool().cloned();
        tokio::spawn(async move {
            let mut windows = Vec::new();
            let mut peak_shm = 0;
            let mut last = 0;
            let mut tick = tokio::time::interval(window);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Some(p) = &pool {
                    peak_shm = peak_shm.max(p.stats().held_bytes);
                }
                if finished.load(Ordering::Relaxed) >= total {
                    break;
                }
                let now = moved.load(Ordering::Relaxed);
                windows.push((now - last) as f64 / MIB / window.as_secs_f64());
                last = now;
            }
            (windows, peak_shm)
        })
    };
    let mut done = Vec::with_capacity(sizes.len());
    for task in tasks {
        // A task that panicked returned nothing: its transfers count as lost.
        if let Ok(d) = task.await {
            done.extend(d);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    finished.store(total, Ordering::Relaxed);
    let (windows, peak_shm) = sampler.await.unwrap_or_default();
    (done, windows, wall, peak_shm)
}

/// Runs a `concurrency` scenario.
pub(crate) fn concurrency(spec: &ConcurrencySpec) -> Result<Measured, Exit> {
    let optimizer = optimizer(false, |b| b)?;
    let tally = Arc::new(Tally::default());
    let sizes = Arc::new(sizes(&spec.range, spec.transfers, 0xC0C0));
    let data: Arc<[u8]> = perf_core::rng::random_bytes(spec.range.max_size as usize, 7).into();
    let window = Duration::from_millis(spec.window_ms);
    let runtime = runtime()?;
    let series = runtime.block_on(async {
        let host = start_host(&optimizer, &tally, spec.workers).await?;
        let mut all = Vec::new();
        for &level in &spec.levels {
            tally.take();
            reset_peak_rss();
            let cpu = process_cpu_s();
            let (done, windows, wall, peak_shm) =
                carry_all(&host, None, level, &sizes, &spec.range, &data, window).await;
            let mut s = Series::new(format!("in_flight={level}"), "engine", Unit::MibPerSec);
            s.in_flight = level;
            s.workers = spec.workers;
            s.samples = windows;
            s.wall_s = wall;
            s.bytes = done
                .iter()
                .zip(sizes.iter())
                .filter(|(d, _)| d.delivered)
                .map(|(_, size)| size)
                .sum();
            count(&mut s, sizes.len(), &done, tally.take());
            s.cpu_host_s = Some(process_cpu_s() - cpu);
            s.peak_rss_bytes = peak_rss();
            s.peak_shm_bytes = Some(peak_shm);
            eprintln!(
                "suite:   {level} in flight: {:.0} MiB/s, {} failed, {} lost",
                s.bytes as f64 / MIB / wall,
                s.failed,
                s.lost
            );
            all.push(s);
        }
        host.shutdown().await;
        Ok::<_, Exit>(all)
    })?;
    let report = optimizer.shutdown();
    let mut measured = Measured::series(&series);
    measured.figure("lost", series.iter().map(|s| s.lost).sum::<u64>());
    measured.figure("failed", series.iter().map(|s| s.failed).sum::<u64>());
    measured.figure("fallbacks", series.iter().map(|s| s.fallbacks).sum::<u64>());
    measured.figure("store_dropped", report.store.dropped);
    Ok(measured)
}

/// Runs a `policies` scenario: every request carried once by the engine (learning from what
/// the run measures), the configured thresholds without learning, always zero-copy and always
/// gRPC, in rotating order.
pub(crate) fn policies(spec: &PoliciesSpec) -> Result<Measured, Exit> {
    let dir = tempfile::tempdir().map_err(Exit::failed)?;
    let optimizer = optimizer(true, |b| b.data_dir(dir.path()).cost_models(true))?;
    let tally = Arc::new(Tally::default());
    let fixed = optimizer.fixed_thresholds_policy().map_err(Exit::failed)?;
    let arms: Vec<(&'static str, Arc<dyn TransferPolicy>)> = vec![
        ("engine", optimizer.controller().clone()),
        ("threshold", Arc::new(fixed)),
        ("zero_copy", Arc::new(FixedPolicy(Method::ZeroCopy))),
        ("grpc", Arc::new(FixedPolicy(Method::Grpc))),
    ];
    let sizes = sizes(&spec.range, spec.transfers, 0x9011C1E5);
    let data: Arc<[u8]> = perf_core::rng::random_bytes(spec.range.max_size as usize, 11).into();
    let classifier = optimizer.learning().map(|engine| engine.classifier());
    let runtime = runtime()?;
    let mut series: Vec<Series> = arms
        .iter()
        .map(|(name, _)| {
            let mut s = Series::new(format!("policy={name}"), name, Unit::Micros);
            s.workers = spec.workers;
            s
        })
        .collect();
    let mut lost = 0;
    runtime.block_on(async {
        let host = start_host(&optimizer, &tally, spec.workers).await?;
        for (i, &size) in sizes.iter().enumerate() {
            let request = spec.range.request(i, size);
            for k in 0..arms.len() {
                let arm = (i + k) % arms.len();
                let cpu = process_cpu_s();
                let result = host
                    .transfer_with(arms[arm].1.as_ref(), &request, &data[..size as usize])
                    .await;
                let s = &mut series[arm];
                Series::add_cpu(&mut s.cpu_host_s, process_cpu_s() - cpu);
                s.transfers += 1;
                match result {
                    Ok(out) => {
                        s.samples.push(out.metrics.latency_us);
                        s.bytes += size;
                        s.wall_s += out.metrics.latency_us * 1e-6;
                        s.fallbacks += u64::from(out.metrics.fallback.is_some());
                        Series::add_cpu(&mut s.cpu_workers_s, out.ack.worker_cpu_ns as f64 * 1e-9);
                    }
                    Err(_) => s.failed += 1,
                }
            }
        }
        host.shutdown().await;
        let (recorded, _failed_attempts) = tally.take();
        let delivered: u64 = series.iter().map(|s| s.transfers - s.failed).sum();
        // Every delivered transfer is recorded once; failed attempts are recorded too.
        lost = delivered.saturating_sub(recorded);
        Ok::<_, Exit>(())
    })?;
    let model = classifier.as_ref().is_some_and(|c| c.model().is_some());
    optimizer.shutdown();
    let mut measured = Measured::series(&series);
    measured.figure("lost", lost);
    measured.figure("failed", series.iter().map(|s| s.failed).sum::<u64>());
    measured.figure("engine_model", u64::from(model));
    Ok(measured)
}

/// Runs a `memory_pressure` scenario, inside a private /dev/shm far smaller than the payloads:
/// named segments, every transfer asking for zero-copy; each must still be delivered, those
/// that find no room by gRPC.
pub(crate) fn memory_pressure(spec: &MemoryPressureSpec) -> Result<Measured, Exit> {
    let optimizer = optimizer(false, |b| b.named_segments(true).shm_budget(1 << 30))?;
    let tally = Arc::new(Tally::default());
    let sizes = Arc::new(sizes(&spec.range, spec.transfers, 0x3E3));
    let data: Arc<[u8]> = perf_core::rng::random_bytes(spec.range.max_size as usize, 13).into();
    let runtime = runtime()?;
    let policy: Arc<dyn TransferPolicy> = Arc::new(FixedPolicy(Method::ZeroCopy));
    let series = runtime.block_on(async {
        let host = start_host(&optimizer, &tally, 1).await?;
        let cpu = process_cpu_s();
        let (done, windows, wall, peak_shm) = carry_all(
            &host,
            Some(policy),
            spec.in_flight,
            &sizes,
            &spec.range,
            &data,
            Duration::from_millis(100),
        )
        .await;
        let mut s = Series::new("zero_copy_asked", "zero_copy", Unit::MibPerSec);
        s.in_flight = spec.in_flight;
        s.samples = windows;
        s.wall_s = wall;
        s.bytes = sizes
            .iter()
            .zip(&done)
            .filter(|(_, d)| d.delivered)
            .map(|(n, _)| n)
            .sum();
        count(&mut s, sizes.len(), &done, tally.take());
        s.cpu_host_s = Some(process_cpu_s() - cpu);
        s.peak_shm_bytes = Some(peak_shm);
        s.peak_rss_bytes = peak_rss();
        host.shutdown().await;
        Ok::<_, Exit>(vec![s])
    })?;
    optimizer.shutdown();
    let s = &series[0];
    let mut measured = Measured::series(&series);
    measured.figure("lost", s.lost);
    measured.figure("failed", s.failed);
    measured.figure("fallbacks", s.fallbacks);
    measured.figure("zero_copy_delivered", s.transfers - s.failed - s.fallbacks);
    measured.figure("shm_device_bytes", spec.shm_device);
    Ok(measured)
}

/// Runs a `cpu_saturation` scenario: the same sizes decided by the engine idle, then with one
/// burner per CPU after `settle_ms`, one transfer every `pause_ms`; the share decided
/// zero-copy is the figure (high CPU favours zero-copy, which saves serialization), with the
/// CPU utilization the engine's probe saw in each phase.
pub(crate) fn cpu_saturation(spec: &CpuSaturationSpec) -> Result<Measured, Exit> {
    let optimizer = optimizer(false, |b| b)?;
    let tally = Arc::new(Tally::default());
    let sizes = sizes(&spec.range, spec.transfers, 0xC9C9);
    let data: Arc<[u8]> = perf_core::rng::random_bytes(spec.range.max_size as usize, 17).into();
    let runtime = runtime()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let (series, shares, cpu_seen) = runtime.block_on(async {
        let host = start_host(&optimizer, &tally, 1).await?;
        let mut series = Vec::new();
        let mut shares = Vec::new();
        let mut cpu_seen = Vec::new();
        let mut burners = None;
        for phase in ["idle", "loaded"] {
            if phase == "loaded" {
                burners = Some(Burners::start(cpus)?);
                tokio::time::sleep(Duration::from_millis(spec.settle_ms)).await;
            }
            let mut s = Series::new(phase, "engine", Unit::Micros);
            s.load = if phase == "idle" { "idle" } else { "cpu" };
            let mut zero_copy = 0u64;
            let mut cpu_sum = 0.0;
            let mut done = Vec::new();
            for (i, &size) in sizes.iter().enumerate() {
                let request = spec.range.request(i, size);
                let result = host.transfer(&request, &data[..size as usize]).await;
                if let Ok(out) = &result {
                    cpu_sum += out.metrics.system.cpu_utilization;
                    s.samples.push(out.metrics.latency_us);
                    s.bytes += size;
                    s.wall_s += out.metrics.latency_us * 1e-6;
                }
                let d = Done::of(&result);
                zero_copy += u64::from(d.zero_copy_decided);
                done.push(d);
                tokio::time::sleep(Duration::from_millis(spec.pause_ms)).await;
            }
            count(&mut s, sizes.len(), &done, tally.take());
            shares.push(zero_copy as f64 / sizes.len() as f64);
            cpu_seen.push(cpu_sum / sizes.len() as f64);
            series.push(s);
        }
        if let Some(b) = burners.as_mut() {
            b.check_running()?;
        }
        drop(burners);
        host.shutdown().await;
        Ok::<_, Exit>((series, shares, cpu_seen))
    })?;
    optimizer.shutdown();
    let mut measured = Measured::series(&series);
    measured.figure("lost", series.iter().map(|s| s.lost).sum::<u64>());
    measured.figure("failed", series.iter().map(|s| s.failed).sum::<u64>());
    measured.figure("zero_copy_share_idle", shares[0]);
    measured.figure("zero_copy_share_loaded", shares[1]);
    measured.figure("zero_copy_share_gain", shares[1] - shares[0]);
    measured.figure("cpu_utilization_idle", cpu_seen[0]);
    measured.figure("cpu_utilization_loaded", cpu_seen[1]);
    Ok(measured)
}
