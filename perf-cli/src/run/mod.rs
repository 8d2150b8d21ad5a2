//! `perfopt run`: the main job. Spawns workers and drives a workload of real transfers through the engine.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use perf_core::rng::SplitMix;
use perf_core::{
    Compression, DataType, FixedPolicy, Format, Method, Name, TransferPolicy, TransferRequest,
};
use perfopt::learn::{LearnConfig, LearnedClassifier, LearningEngine};
use perfopt::transport::host::MAX_IN_FLIGHT;
use perfopt::transport::{Host, TransferError};
use perfopt::{Optimizer, OptimizerError, StoreStatus, SweepOutcome};
use serde_json::json;

mod report;
mod summary;

use self::report::{Comparison, text_report};
use self::summary::Summary;
use crate::args::{DataDirArg, RUN_TIME, parse_duration};
use crate::exit::Exit;
use crate::load::Burners;
use crate::measure::calibration::{self, CalibrationPlan};

/// The mix of sizes a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// Sizes spread log-uniformly from 1 KiB to 64 MiB.
    Mixed,
    /// 1 KiB to 1 MiB.
    Small,
    /// 4 MiB to 256 MiB.
    Large,
}

impl Workload {
    fn bounds(self) -> (u64, u64) {
        match self {
            Workload::Mixed => (1 << 10, 64 << 20),
            Workload::Small => (1 << 10, 1 << 20),
            Workload::Large => (4 << 20, 256 << 20),
        }
    }
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// Which shared-memory segments the host creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Backend {
    /// Anonymous memory files (Linux): they die with their last holder.
    Memfd,
    /// Named segments under /dev/shm, swept at start-up when their owner died.
    Named,
}

/// Arguments of `perfopt run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// How long to drive transfers, 1ms to 24h (e.g. 500ms, 30s, 2m, 1h 30m).
    #[arg(long, default_value = "30s")]
    duration: String,
    /// Worker processes to spawn (1 to 64).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[command(flatten)]
    worker: crate::args::WorkerCmdArg,
    /// Transfers submitted at once, 1 to 100000; beyond what the workers take at once
    /// (16 each), they wait for room. Default: what the workers take at once.
    #[arg(long)]
    in_flight: Option<usize>,
    /// The mix of sizes.
    #[arg(long, value_enum, default_value = "mixed")]
    workload: Workload,
    /// A configuration file (the default configuration otherwise).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Writes the summary as JSON to this file (`-` for standard output).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seeds the workload and the exploration draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Shared memory the host may hold at once.
    #[arg(long, default_value = "1GiB")]
    shm_budget: String,
    /// Which segments the host creates.
    #[arg(long, value_enum, default_value = "memfd")]
    backend: Backend,
    /// `on`: the learning engine pairs measurements of both methods, trains a classifier
    /// and lets it decide once it passes validation; `off`: the rules decide throughout.
    #[arg(long, value_enum, default_value = "on")]
    learning: Switch,
    /// Paired samples needed before the first model (20 to 1000000).
    #[arg(long, default_value_t = LearnConfig::default().min_samples)]
    learn_min_samples: usize,
    /// Carries every request four ways in rotating order (the engine; the configured
    /// thresholds without learning; always gRPC; always zero-copy) and reports each one's mean
    /// latency, before and after the engine has a model.
    #[arg(long)]
    compare: bool,
    /// Starts CPU burner processes (one busy core each, as many as CPUs) this long into the
    /// run (1ms to 24h, e.g. 10s), e.g. to watch the learning engine detect the changed
    /// workload and retrain.
    #[arg(long)]
    load_after: Option<String>,
    /// Calibrates the data directory first, as `perfopt calibrate` does (about 60 s): the
    /// run then decides with this machine's costs and the classifier trained on them.
    #[arg(long)]
    calibrate: bool,
    #[command(flatten)]
    data: DataDirArg,
}

/// What every driver shares: the host runtime, the policies and the comparison.
struct Drive {
    host: Host,
    /// The engine's policy first, then the `--compare` baselines.
    policies: Vec<Arc<dyn TransferPolicy>>,
    classifier: Option<LearnedClassifier>,
    comparison: Comparison,
    /// The first failures' messages, for the report; all are counted by the host.
    failures: Mutex<Vec<String>>,
}

/// Failure messages a run keeps for its report.
const FAILURES_KEPT: usize = 20;

impl Drive {
    fn failed(&self, e: &TransferError) {
        let mut kept = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < FAILURES_KEPT {
            kept.push(e.to_string());
        }
    }

    /// Carries `request` by the engine, or by every arm in rotating order when comparing.
    async fn carry_request(&self, turn: usize, request: &TransferRequest, bytes: &[u8]) {
        let arms = self.policies.len();
        let with_model = self
            .classifier
            .as_ref()
            .is_some_and(|c| c.model().is_some());
        let mut latencies = [0.0; 4];
        let mut all = true;
        for k in 0..arms {
            let arm = (turn + k) % arms;
            match self
                .host
                .transfer_with(self.policies[arm].as_ref(), request, bytes)
                .await
            {
                Ok(outcome) => latencies[arm] = outcome.metrics.latency_us,
                Err(e) => {
                    all = false;
                    self.failed(&e);
                }
            }
        }
        if arms > 1 && all {
            self.comparison.add(with_model, &latencies);
        }
    }
}

/// One random request of the workload, and its size.
fn next_request(rng: &SplitMix, workload: Workload, pools: &[Name]) -> TransferRequest {
    let (lo, hi) = workload.bounds();
    let (llo, lhi) = ((lo as f64).ln(), (hi as f64).ln());
    let size = (llo + rng.next_f64() * (lhi - llo)).exp() as u64;
    let pick = |n: usize| (rng.next_u64() % n as u64) as usize;
    let data_type = DataType::ALL[pick(DataType::ALL.len())];
    let format = match data_type {
        DataType::Tensor => [Format::Numpy, Format::Raw][pick(2)],
        DataType::Table => [Format::Arrow, Format::Parquet][pick(2)],
        DataType::Records => [Format::Json, Format::Msgpack, Format::Protobuf][pick(3)],
        _ => Format::Raw,
    };
    TransferRequest::new(size.clamp(lo, hi))
        .with_pool(pools[pick(pools.len())])
        .with_data_type(data_type)
        .with_format(format)
        .with_compression(Compression::None)
        .with_session(1 + rng.next_u64() % 256)
}

/// Runs `perfopt run`.
pub(crate) fn run(args: &RunArgs) -> Result<(), Exit> {
    let duration =
        parse_duration("--duration", &args.duration, &RUN_TIME).map_err(Exit::bad_input)?;
    if let Some(n) = args.in_flight
        && !(1..=MAX_IN_FLIGHT).contains(&n)
    {
        return Err(Exit::bad_input(format_args!(
            "--in-flight {n} is out of range, expected 1 to {MAX_IN_FLIGHT}"
        )));
    }
    if !(1..=64).contains(&args.workers) {
        return Err(Exit::bad_input(format_args!(
            "--workers {} is out of range, expected 1 to 64",
            args.workers
        )));
    }
    let budget = perf_core::parse_size(&args.shm_budget).map_err(Exit::bad_input)?;
    let load_after = match &args.load_after {
        Some(text) => {
            Some(parse_duration("--load-after", text, &RUN_TIME).map_err(Exit::bad_input)?)
        }
        None => None,
    };
    let config = crate::args::config(args.config.as_ref())?;
    let pools: Vec<Name> = config.pools.keys().copied().collect();
    if !(LearningEngine::MIN_SAMPLES..=1_000_000).contains(&args.learn_min_samples) {
        return Err(Exit::bad_input(format_args!(
            "--learn-min-samples {} is out of range, expected {} to 1000000",
            args.learn_min_samples,
            LearningEngine::MIN_SAMPLES
        )));
    }
    let dir = args.data.resolve()?;
    if args.calibrate {
        let plan = CalibrationPlan::default_plan()?;
        eprint!(
            "{}",
            calibration::calibrate(&dir.path, &plan, args.worker.command()?)?
        );
    }
    let learning = args.learning == Switch::On;
    // The library wires the store (memory when it cannot be opened), the cost models, the
    // learning engine replaying earlier runs' transfers, the swept shared-memory backend, the
    // segment pool and retention.
    let optimizer = Optimizer::builder()
        .config(config)
        .seed(args.seed)
        .data_dir(&dir.path)
        .cost_models(true)
        .learning(LearnConfig {
            enabled: learning,
            min_samples: args.learn_min_samples,
            ..LearnConfig::default()
        })
        .named_segments(args.backend == Backend::Named)
        .shm_budget(budget)
        .build()
        .map_err(|e| match e {
            OptimizerError::Config { .. } | OptimizerError::Controller(_) => Exit::bad_input(e),
            other => Exit::failed(other),
        })?;
    for warning in optimizer.warnings() {
        eprintln!("warning: {warning}");
    }
    if let Some(notice) = calibration::notice(&dir.path, optimizer.calibration()) {
        eprintln!("note: {notice}");
    }
    let classifier = optimizer.learning().map(|engine| engine.classifier());
    let mut policies: Vec<Arc<dyn TransferPolicy>> = vec![optimizer.policy()];
    if args.compare {
        let fixed = optimizer.fixed_thresholds_policy().map_err(Exit::failed)?;
        policies.push(Arc::new(fixed));
        policies.push(Arc::new(FixedPolicy(Method::Grpc)));
        policies.push(Arc::new(FixedPolicy(Method::ZeroCopy)));
    }
    let pool = optimizer.segment_pool().clone();

    let summary = Arc::new(Summary::default());
    let (_, hi) = args.workload.bounds();
    let payload: Arc<[u8]> = perf_core::rng::random_bytes(hi as usize, args.seed ^ 0xDA7A).into();
    let worker = args.worker.command()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Exit::failed)?;
    let mut burners: Option<Burners> = None;
    let mut load_started: Option<(Duration, u64)> = None;
    let (drive, in_flight, started) = runtime.block_on(async {
        let host = optimizer
            .host()
            .sink(summary.clone())
            .spawn(worker, args.workers)
            .start()
            .await
            .map_err(Exit::failed)?;
        let in_flight = args.in_flight.unwrap_or(host.capacity());
        let drive = Arc::new(Drive {
            host,
            policies,
            classifier,
            comparison: Comparison::default(),
            failures: Mutex::new(Vec::new()),
        });
        let progress = indicatif::ProgressBar::new(duration.as_millis() as u64);
        progress.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {elapsed}/{duration} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let started = Instant::now();
        let deadline = started + duration;
        let mut tasks = Vec::with_capacity(in_flight);
        for i in 0..in_flight {
            let rng = SplitMix::new(args.seed.wrapping_mul(31).wrapping_add(i as u64));
            let payload = payload.clone();
            let pools = pools.clone();
            let workload = args.workload;
            let drive = drive.clone();
            tasks.push(tokio::spawn(async move {
                let mut turn = i;
                while Instant::now() < deadline {
                    let request = next_request(&rng, workload, &pools);
                    let bytes = &payload[..request.size as usize];
                    drive.carry_request(turn, &request, bytes).await;
                    turn += 1;
                }
            }));
        }
        let ticker = async {
            while Instant::now() < deadline {
                progress.set_position(started.elapsed().as_millis() as u64);
                if let Some(after) = load_after
                    && burners.is_none()
                    && started.elapsed() >= after
                {
                    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
                    load_started = Some((started.elapsed(), summary.transfers()));
                    burners = Some(Burners::start(cpus)?);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<(), Exit>(())
        };
        let drivers = async {
            for task in tasks {
                if let Err(e) = task.await {
                    let mut kept = drive.failures.lock().unwrap_or_else(|e| e.into_inner());
                    kept.push(format!("driver task failed: {e}"));
                }
            }
        };
        let ((), ticked) = tokio::join!(drivers, ticker);
        progress.finish_and_clear();
        drop(burners.take());
        ticked?;
        Ok::<_, Exit>((drive, in_flight, started))
    })?;
    let host_stats = drive.host.stats();
    let swept_run_dirs = drive.host.swept().map_or(0, |s| s.removed);
    let failures = std::mem::take(&mut *drive.failures.lock().unwrap_or_else(|e| e.into_inner()));
    runtime.block_on(drive.host.clone().shutdown());
    let elapsed = started.elapsed();
    let pool_stats = pool.stats();
    let swept_segments = match &optimizer.shm_status().sweep {
        SweepOutcome::Swept { removed, .. } => *removed,
        SweepOutcome::Failed { .. } | SweepOutcome::NotApplicable => 0,
    };
    let data_dir = match optimizer.store_status() {
        StoreStatus::Persistent { dir } => dir.display().to_string(),
        StoreStatus::Memory | StoreStatus::Fallback { .. } => "memory".to_string(),
    };
    let engine = optimizer.learning().cloned();
    // Flushes the store, finishes learning, saves the cost models, stops retention.
    let stopped = optimizer.shutdown();

    let mut report = summary.to_json();
    report["duration_s"] = json!(elapsed.as_secs_f64());
    report["workers"] = json!(args.workers);
    report["workload"] = json!(format!("{:?}", args.workload).to_lowercase());
    report["failed"] = json!(host_stats.failed);
    report["retried"] = json!(host_stats.retried);
    report["in_flight"] = json!({
        "submitted": in_flight,
        "capacity": drive.host.capacity(),
        "peak": host_stats.peak_in_flight,
    });
    report["pool"] = json!(pool_stats);
    report["swept_segments"] = json!(swept_segments);
    report["swept_run_dirs"] = json!(swept_run_dirs);
    report["workers_restarted"] = json!(host_stats.restarts);
    report["host"] = json!(host_stats);
    let models = stopped.cost_models.as_ref();
    let learned = stopped.learning.as_ref();
    let events: Vec<_> = engine
        .as_ref()
        .map(|e| e.engine().events().cloned().collect())
        .unwrap_or_default();
    let alerts = events.iter().filter(|e| e.kind.is_alert()).count();
    report["learning"] = json!({
        "enabled": learning,
        "engine": learned.map(|l| &l.status),
        "alerts": alerts,
        "events": events.iter().rev().take(20).rev().collect::<Vec<_>>(),
        "cost_model_version": models.map(|m| m.version),
        "cost_models_saved": models.map(|m| m.saved_as.is_some()),
        "cost_models_error": models.and_then(|m| m.save_error.clone()),
        "dropped": models.map_or(0, |m| m.dropped) + learned.map_or(0, |l| l.dropped),
    });
    if args.compare {
        report["compare"] = drive.comparison.to_json();
    }
    if let Some((at, transfers)) = load_started {
        report["load"] = json!({
            "started_after_s": at.as_secs_f64(),
            "started_after_transfers": transfers,
        });
    }
    let store = &stopped.store;
    report["store"] = json!({
        "data_dir": data_dir,
        "recorded": store.recorded,
        "committed": store.committed,
        "dropped": store.dropped,
        "failed_commits": store.failed_commits,
        "cleaned_rows": stopped.retention.as_ref().map_or(0, |r| r.cleaned_rows),
        "error": store.flush_error,
    });
    print!("{}", text_report(&report, &failures));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(Exit::failed)?;
        if path.as_os_str() == "-" {
            println!("{text}");
        } else {
            std::fs::write(path, text + "\n").map_err(Exit::failed)?;
        }
    }
    if host_stats.failed == 0 && failures.is_empty() {
        Ok(())
    } else {
        Err(Exit::failed(format_args!(
            "{} transfer(s) failed",
            host_stats.failed.max(failures.len() as u64)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_sizes_stay_in_bounds_and_spread_over_the_range() {
        let rng = SplitMix::new(3);
        let pools = [Name::DEFAULT_POOL];
        let sizes: Vec<u64> = (0..10_000)
            .map(|_| next_request(&rng, Workload::Mixed, &pools).size)
            .collect();
        assert!(sizes.iter().all(|s| (1 << 10..=64 << 20).contains(s)));
        // Log-uniform: about a third of the sizes fall in each third of the log range.
        let below_64k = sizes.iter().filter(|s| **s < 64 << 10).count();
        assert!((2_800..3_900).contains(&below_64k), "{below_64k}");
    }
}
