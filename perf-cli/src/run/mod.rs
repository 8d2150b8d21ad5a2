//! `perfopt run`: the main job. Spawns workers and drives a workload of real transfers through the engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use perf_core::rng::SplitMix;
use perf_core::{
    Compression, Config, Controller, DataType, FixedPolicy, Format, Method, MetricsSink, Name,
    ResourceProbe, SampleFilter, TransferPolicy, TransferRequest,
};
use perfopt::learn::{BackgroundEngine, LearnConfig, LearnedClassifier, LearningEngine};
use perfopt::platform::{MemfdShm, NamedShm, NamedShmConfig, ProcProbe, SystemShm};
use perfopt::store::Backend as _;
use perfopt::transport::grpc::{ClientConfig, WorkerClient};
use perfopt::transport::{
    ClientError, Executor, ExecutorConfig, PoolConfig, SegmentPool, TransferError,
};
use serde_json::json;

mod report;
mod store;

use self::report::{Comparison, text_report};
use self::store::{CLEANUP_EVERY, cost_models, open_store};
use crate::args::{RUN_TIME, parse_duration};
use crate::exit::Exit;
use crate::learn_feed::LearnFeed;
use crate::spawn::{WorkerProcess, Workspace};
use crate::store_cmd::DataDirArg;
use crate::summary::Summary;

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
    /// Worker processes to spawn (1 to 64); each gets one transfer at a time.
    #[arg(long, default_value_t = 2)]
    workers: usize,
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
    #[command(flatten)]
    data: DataDirArg,
}

/// What every driver shares: the engine, the pool, the workers' directory,
/// the probe and the sinks; it (re)connects executors to workers.
struct Links {
    /// The engine's policy first, then the `--compare` baselines.
    policies: Vec<Arc<dyn TransferPolicy>>,
    classifier: LearnedClassifier,
    comparison: Comparison,
    pool: SegmentPool,
    workspace: Arc<Workspace>,
    probe: Arc<dyn ResourceProbe>,
    sinks: Vec<Arc<dyn MetricsSink>>,
    restarts: AtomicU64,
}

impl Links {
    /// An executor per policy connected to `worker`, each recording to every sink.
    async fn executors(&self, worker: &WorkerProcess) -> Result<Vec<Executor>, Exit> {
        let client = WorkerClient::connect(worker.endpoint(), ClientConfig::default())
            .await
            .map_err(Exit::failed)?;
        let mut executors = Vec::with_capacity(self.policies.len());
        for policy in &self.policies {
            let mut executor = Executor::connect(
                policy.clone(),
                client.clone(),
                Some((self.pool.clone(), self.workspace.secret().clone())),
                self.probe.clone(),
                ExecutorConfig::default(),
            )
            .await
            .map_err(Exit::failed)?;
            for sink in &self.sinks {
                executor = executor.with_sink(sink.clone());
            }
            executors.push(executor);
        }
        Ok(executors)
    }

    /// Carries one transfer through the driver's worker by policy `arm`, and
    /// returns its latency in microseconds. When the worker is unreachable
    /// (gRPC, the last resort, failed too), a new worker takes its place and the
    /// transfer is tried once more, so a dead worker loses nothing.
    async fn carry(
        &self,
        index: usize,
        slot: &mut Option<(WorkerProcess, Vec<Executor>)>,
        arm: usize,
        request: &TransferRequest,
        bytes: &[u8],
    ) -> Result<f64, String> {
        if let Some((_, executors)) = slot.as_ref() {
            match executors[arm].transfer(request, bytes).await {
                Ok(outcome) => return Ok(outcome.metrics.latency_us),
                // The worker is gone or hung: replace it. A refusal from a
                // live worker is the transfer's own failure.
                Err(TransferError::Grpc {
                    source:
                        ClientError::Unavailable { .. }
                        | ClientError::Connect { .. }
                        | ClientError::Timeout { .. },
                    ..
                }) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        // Kill and reap what is left of the old worker before its socket is reused.
        drop(slot.take());
        let workspace = self.workspace.clone();
        let worker = tokio::task::spawn_blocking(move || workspace.spawn(index))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.message)?;
        let executors = self.executors(&worker).await.map_err(|e| e.message)?;
        self.restarts.fetch_add(1, Ordering::Relaxed);
        let result = executors[arm].transfer(request, bytes).await;
        *slot = Some((worker, executors));
        result
            .map(|outcome| outcome.metrics.latency_us)
            .map_err(|e| e.to_string())
    }

    /// Carries `request` by the engine, or by every arm in rotating order
    /// when comparing; returns the failures.
    async fn carry_request(
        &self,
        index: usize,
        slot: &mut Option<(WorkerProcess, Vec<Executor>)>,
        turn: usize,
        request: &TransferRequest,
        bytes: &[u8],
    ) -> Vec<String> {
        let arms = self.policies.len();
        if arms == 1 {
            return self
                .carry(index, slot, 0, request, bytes)
                .await
                .err()
                .into_iter()
                .collect();
        }
        let with_model = self.classifier.model().is_some();
        let mut latencies = [0.0; 4];
        let mut failures = Vec::new();
        for k in 0..arms {
            let arm = (turn + k) % arms;
            match self.carry(index, slot, arm, request, bytes).await {
                Ok(latency) => latencies[arm] = latency,
                Err(e) => failures.push(e),
            }
        }
        if failures.is_empty() {
            self.comparison.add(with_model, &latencies);
        }
        failures
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
    let config = crate::decide::load(args.config.as_ref())?;
    let pools: Vec<Name> = config.pools.keys().copied().collect();
    let store = open_store(&args.data)?;
    // The learned cost models: fed by every transfer of this run, used by
    // the engine (in pools with learning on) once they are confident.
    let learner = Arc::new(cost_models(&store)?);
    if !(LearningEngine::MIN_SAMPLES..=1_000_000).contains(&args.learn_min_samples) {
        return Err(Exit::bad_input(format_args!(
            "--learn-min-samples {} is out of range, expected {} to 1000000",
            args.learn_min_samples,
            LearningEngine::MIN_SAMPLES
        )));
    }
    // The learning engine: pairs measurements of both methods, trains the
    // classifier off the transfer path and publishes it once it validates.
    let learning = args.learning == Switch::On;
    let mut engine = LearningEngine::new(LearnConfig {
        enabled: learning,
        min_samples: args.learn_min_samples,
        ..LearnConfig::default()
    });
    if let Some(models) = &store.models {
        engine = engine.with_store(models.clone(), crate::store_cmd::now());
    }
    // Evidence gathered by earlier runs counts: replay their recorded transfers.
    if let Some(redb) = &store.redb {
        let limit = 4 * engine.config().max_samples;
        match redb.samples(&SampleFilter::default(), limit) {
            Ok(mut history) => {
                history.reverse();
                engine.replay(&history);
            }
            Err(e) => eprintln!("warning: earlier transfers are not replayed: {e}"),
        }
    }
    let classifier = engine.classifier();
    let static_config = {
        let mut c: Config = config.clone();
        for pool in c.pools.values_mut() {
            pool.settings.learning = false;
        }
        c
    };
    let mut builder = Controller::builder(config)
        .seed(args.seed)
        .predictor(Arc::new(learner.predictor()));
    if learning {
        builder = builder.classifier(Arc::new(classifier.clone()));
    }
    if let Some(t) = &store.thresholds {
        builder = builder.threshold_store(t.clone());
    }
    let controller = Arc::new(builder.build().map_err(Exit::bad_input)?);
    let engine = Arc::new(BackgroundEngine::start(
        engine.with_controller(controller.clone()),
    ));
    let learn_feed = Arc::new(LearnFeed::start(learner.clone()));
    let mut policies: Vec<Arc<dyn TransferPolicy>> = vec![controller.clone()];
    if args.compare {
        let fixed = Controller::new(static_config).map_err(Exit::bad_input)?;
        policies.push(Arc::new(fixed));
        policies.push(Arc::new(FixedPolicy(Method::Grpc)));
        policies.push(Arc::new(FixedPolicy(Method::ZeroCopy)));
    }

    let named = NamedShm::new(NamedShmConfig::default()).map_err(Exit::failed)?;
    let swept = named.sweep_stale().map_err(Exit::failed)?;
    let shm = Arc::new(SystemShm::new(
        MemfdShm::default(),
        named,
        args.backend == Backend::Named,
    ));
    let pool = SegmentPool::new(
        shm,
        PoolConfig {
            budget_bytes: budget,
            ..PoolConfig::default()
        },
    )
    .map_err(Exit::bad_input)?;

    let workspace = Arc::new(Workspace::new()?);
    let workers: Vec<WorkerProcess> = (0..args.workers)
        .map(|i| workspace.spawn(i))
        .collect::<Result<_, _>>()?;
    let summary = Arc::new(Summary::default());
    let (_, hi) = args.workload.bounds();
    let payload: Arc<[u8]> = crate::bench::random_payload(hi as usize, args.seed ^ 0xDA7A).into();
    let links = Arc::new(Links {
        policies,
        classifier,
        comparison: Comparison::default(),
        pool: pool.clone(),
        workspace: workspace.clone(),
        probe: Arc::new(ProcProbe::default()),
        sinks: vec![
            summary.clone(),
            store.sink.clone(),
            learn_feed.clone(),
            engine.clone(),
        ],
        restarts: AtomicU64::new(0),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Exit::failed)?;
    let started = Instant::now();
    let mut burners: Option<crate::collect::Burners> = None;
    let mut load_started: Option<(Duration, u64)> = None;
    let failures = runtime.block_on(async {
        let mut drivers = Vec::new();
        for (i, worker) in workers.into_iter().enumerate() {
            // A worker that died before its first connection is replaced once.
            let (worker, executors) = match links.executors(&worker).await {
                Ok(executors) => (worker, executors),
                Err(first) => {
                    drop(worker);
                    let worker = workspace.spawn(i)?;
                    let executors = links.executors(&worker).await.map_err(|e| {
                        Exit::failed(format_args!("{}; and again: {}", first.message, e.message))
                    })?;
                    links.restarts.fetch_add(1, Ordering::Relaxed);
                    (worker, executors)
                }
            };
            drivers.push((i, worker, executors));
        }
        let progress = indicatif::ProgressBar::new(duration.as_millis() as u64);
        progress.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {elapsed}/{duration} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let deadline = started + duration;
        let mut tasks = Vec::new();
        for (i, worker, executors) in drivers {
            let rng = SplitMix::new(args.seed.wrapping_mul(31).wrapping_add(i as u64));
            let payload = payload.clone();
            let pools = pools.clone();
            let workload = args.workload;
            let links = links.clone();
            tasks.push(tokio::spawn(async move {
                let mut failed = Vec::new();
                let mut slot = Some((worker, executors));
                let mut turn = i;
                while Instant::now() < deadline {
                    let request = next_request(&rng, workload, &pools);
                    let bytes = &payload[..request.size as usize];
                    failed.extend(
                        links
                            .carry_request(i, &mut slot, turn, &request, bytes)
                            .await,
                    );
                    turn += 1;
                }
                failed
            }));
        }
        let ticker = async {
            let mut last_cleanup = Instant::now();
            while Instant::now() < deadline {
                progress.set_position(started.elapsed().as_millis() as u64);
                if let Some(after) = load_after
                    && burners.is_none()
                    && started.elapsed() >= after
                {
                    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
                    load_started = Some((started.elapsed(), summary.transfers()));
                    burners = Some(crate::collect::Burners::start(cpus)?);
                }
                if last_cleanup.elapsed() >= CLEANUP_EVERY {
                    last_cleanup = Instant::now();
                    store.clean_up();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<(), Exit>(())
        };
        let (results, ticked) = tokio::join!(futures_join(tasks), ticker);
        progress.finish_and_clear();
        drop(burners.take());
        ticked?;
        Ok::<Vec<String>, Exit>(results.into_iter().flatten().collect())
    })?;
    let elapsed = started.elapsed();
    let flushed = store.sink.try_flush();
    let recorded = store.sink.stats();

    let mut report = summary.to_json();
    report["duration_s"] = json!(elapsed.as_secs_f64());
    report["workers"] = json!(args.workers);
    report["workload"] = json!(format!("{:?}", args.workload).to_lowercase());
    report["failed"] = json!(failures.len());
    report["pool"] = json!(pool.stats());
    report["swept_segments"] = json!(swept.removed);
    report["swept_run_dirs"] = json!(links.workspace.swept().removed);
    report["workers_restarted"] = json!(links.restarts.load(Ordering::Relaxed));
    learn_feed.finish();
    engine.finish();
    let saved = store.models.as_ref().map(|models| {
        learner
            .save(models.as_ref(), crate::store_cmd::now())
            .map_err(|e| e.to_string())
    });
    let dropped = learn_feed.dropped() + engine.dropped();
    let engine = engine.engine();
    let events: Vec<_> = engine.events().collect();
    let alerts = events.iter().filter(|e| e.kind.is_alert()).count();
    report["learning"] = json!({
        "enabled": learning,
        "engine": engine.status(),
        "alerts": alerts,
        "events": events.iter().rev().take(20).rev().collect::<Vec<_>>(),
        "cost_model_version": learner.version(),
        "cost_models_saved": saved.as_ref().map(|r| r.is_ok()),
        "cost_models_error": saved.and_then(|r| r.err()),
        "dropped": dropped,
    });
    if args.compare {
        report["compare"] = links.comparison.to_json();
    }
    if let Some((at, transfers)) = load_started {
        report["load"] = json!({
            "started_after_s": at.as_secs_f64(),
            "started_after_transfers": transfers,
        });
    }
    report["store"] = json!({
        "data_dir": store.where_,
        "recorded": recorded.recorded,
        "committed": recorded.committed,
        "dropped": recorded.dropped,
        "failed_commits": recorded.failed_commits,
        "cleaned_rows": store.cleaned.load(Ordering::Relaxed),
        "error": flushed.err().map(|e| e.to_string()),
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
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Exit::failed(format_args!(
            "{} transfer(s) failed",
            failures.len()
        )))
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<Vec<String>>>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            t.await
                .unwrap_or_else(|e| vec![format!("driver task failed: {e}")]),
        );
    }
    out
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
