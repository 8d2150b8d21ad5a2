//! `perfopt run`: the main job. Spawns workers and drives a workload of real transfers through the engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use perf_core::rng::SplitMix;
use perf_core::{
    Compression, Controller, DataType, Format, HumanSize, MetricsSink, Name, ResourceProbe,
    ThresholdStore, TransferRequest,
};
use perfopt::platform::{MemfdShm, NamedShm, NamedShmConfig, ProcProbe, SystemShm};
use perfopt::predict::{Learner, ModelConfig};
use perfopt::store::{
    Backend as StoreBackend, MemoryBackend, RedbBackend, Retention, SinkConfig, StoreSink,
};
use perfopt::transport::grpc::{ClientConfig, WorkerClient};
use perfopt::transport::{
    ClientError, Executor, ExecutorConfig, PoolConfig, SegmentPool, TransferError,
};
use serde_json::json;

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
    /// How long to drive transfers (e.g. 30s, 2m, 500ms; at most 24h).
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
    #[command(flatten)]
    data: DataDirArg,
}

/// The metrics store a run records into: the redb store of the data
/// directory, or memory when it cannot be opened (the run goes on).
struct RunStore {
    sink: Arc<StoreSink>,
    thresholds: Option<Arc<dyn ThresholdStore>>,
    where_: String,
    /// The durable store, for clean-ups while the run goes on.
    redb: Option<RedbBackend>,
    /// Rows removed by clean-ups (default retention), at start and every
    /// [`CLEANUP_EVERY`].
    cleaned: AtomicU64,
}

/// How often a long run removes metrics past their retention.
const CLEANUP_EVERY: Duration = Duration::from_secs(600);

impl RunStore {
    /// Removes metrics past the default retention; a failure is a warning.
    fn clean_up(&self) {
        if let Some(redb) = &self.redb {
            match redb.clean_up(&Retention::default(), crate::store_cmd::now()) {
                Ok(report) => {
                    self.cleaned.fetch_add(report.total(), Ordering::Relaxed);
                }
                Err(e) => eprintln!("warning: clean-up of old metrics failed: {e}"),
            }
        }
    }
}

fn open_store(data: &DataDirArg) -> Result<RunStore, Exit> {
    let dir = data.resolve()?;
    let opened = crate::store_cmd::open(&dir);
    let (backend, thresholds, where_): (
        Arc<dyn StoreBackend>,
        Option<Arc<dyn ThresholdStore>>,
        String,
    ) = match &opened {
        Ok(redb) => {
            let thresholds: Arc<dyn ThresholdStore> = Arc::new(redb.thresholds());
            (
                Arc::new(redb.clone()),
                Some(thresholds),
                dir.path.display().to_string(),
            )
        }
        Err(e) => {
            eprintln!(
                "warning: metrics are kept in memory only: {}",
                e.message.trim_start_matches("error: ")
            );
            (
                Arc::new(MemoryBackend::default()),
                None,
                "memory".to_string(),
            )
        }
    };
    let sink = StoreSink::new(backend, SinkConfig::default()).map_err(Exit::failed)?;
    let store = RunStore {
        sink: Arc::new(sink),
        thresholds,
        where_,
        redb: opened.ok(),
        cleaned: AtomicU64::new(0),
    };
    store.clean_up();
    Ok(store)
}

/// Reads `30s`, `2m`, `500ms`, `1h`; bounded to 1 ms .. 24 h.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?}, expected e.g. 30s, 2m, 500ms"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {text:?}, expected a unit ms, s, m or h"
            ));
        }
    };
    if !(0.001..=86_400.0).contains(&secs) {
        return Err(format!(
            "duration {text:?} is out of range, expected 1ms to 24h"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What every driver shares: the engine, the pool, the workers' directory,
/// the probe and the sinks; it (re)connects executors to workers.
struct Links {
    controller: Arc<Controller>,
    pool: SegmentPool,
    workspace: Arc<Workspace>,
    probe: Arc<dyn ResourceProbe>,
    sinks: Vec<Arc<dyn MetricsSink>>,
    restarts: AtomicU64,
}

impl Links {
    /// An executor connected to `worker`, recording to every sink.
    async fn executor(&self, worker: &WorkerProcess) -> Result<Executor, Exit> {
        let client = WorkerClient::connect(worker.endpoint(), ClientConfig::default())
            .await
            .map_err(Exit::failed)?;
        let mut executor = Executor::connect(
            self.controller.clone(),
            client,
            Some((self.pool.clone(), self.workspace.secret().clone())),
            self.probe.clone(),
            ExecutorConfig::default(),
        )
        .await
        .map_err(Exit::failed)?;
        for sink in &self.sinks {
            executor = executor.with_sink(sink.clone());
        }
        Ok(executor)
    }

    /// Carries one transfer through the driver's worker. When the worker is
    /// unreachable (gRPC, the last resort, failed too), a new worker takes its place
    /// and the transfer is tried once more, so a dead worker loses nothing.
    async fn carry(
        &self,
        index: usize,
        slot: &mut Option<(WorkerProcess, Executor)>,
        request: &TransferRequest,
        bytes: &[u8],
    ) -> Result<(), String> {
        if let Some((_, executor)) = slot.as_ref() {
            match executor.transfer(request, bytes).await {
                Ok(_) => return Ok(()),
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
        let executor = self.executor(&worker).await.map_err(|e| e.message)?;
        self.restarts.fetch_add(1, Ordering::Relaxed);
        let result = executor.transfer(request, bytes).await.map(|_| ());
        *slot = Some((worker, executor));
        result.map_err(|e| e.to_string())
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
    let duration = parse_duration(&args.duration).map_err(Exit::bad_input)?;
    if !(1..=64).contains(&args.workers) {
        return Err(Exit::bad_input(format_args!(
            "--workers {} is out of range, expected 1 to 64",
            args.workers
        )));
    }
    let budget = perf_core::parse_size(&args.shm_budget).map_err(Exit::bad_input)?;
    let config = crate::decide::load(args.config.as_ref())?;
    let pools: Vec<Name> = config.pools.keys().copied().collect();
    let store = open_store(&args.data)?;
    // The learned cost models: fed by every transfer of this run, used by
    // the engine (in pools with learning on) once they are confident.
    let learner = Arc::new(
        Learner::new(
            &perfopt::platform::detect().kernel_release,
            ModelConfig::default(),
        )
        .map_err(Exit::failed)?,
    );
    let learn_feed = Arc::new(LearnFeed::start(learner.clone()));
    let mut builder = Controller::builder(config)
        .seed(args.seed)
        .predictor(Arc::new(learner.predictor()));
    if let Some(t) = &store.thresholds {
        builder = builder.threshold_store(t.clone());
    }
    let controller = Arc::new(builder.build().map_err(Exit::bad_input)?);

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
    let payload: Arc<[u8]> = {
        let rng = SplitMix::new(args.seed ^ 0xDA7A);
        (0..hi as usize / 8)
            .flat_map(|_| rng.next_u64().to_le_bytes())
            .collect()
    };
    let links = Arc::new(Links {
        controller: controller.clone(),
        pool: pool.clone(),
        workspace: workspace.clone(),
        probe: Arc::new(ProcProbe::default()),
        sinks: vec![summary.clone(), store.sink.clone(), learn_feed.clone()],
        restarts: AtomicU64::new(0),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Exit::failed)?;
    let started = Instant::now();
    let failures = runtime.block_on(async {
        let mut drivers = Vec::new();
        for (i, worker) in workers.into_iter().enumerate() {
            let executor = links.executor(&worker).await?;
            drivers.push((i, worker, executor));
        }
        let progress = indicatif::ProgressBar::new(duration.as_millis() as u64);
        progress.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {elapsed}/{duration} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let deadline = started + duration;
        let mut tasks = Vec::new();
        for (i, worker, executor) in drivers {
            let rng = SplitMix::new(args.seed.wrapping_mul(31).wrapping_add(i as u64));
            let payload = payload.clone();
            let pools = pools.clone();
            let workload = args.workload;
            let links = links.clone();
            tasks.push(tokio::spawn(async move {
                let mut failed = Vec::new();
                let mut slot = Some((worker, executor));
                while Instant::now() < deadline {
                    let request = next_request(&rng, workload, &pools);
                    let bytes = &payload[..request.size as usize];
                    if let Err(e) = links.carry(i, &mut slot, &request, bytes).await {
                        failed.push(e);
                    }
                }
                failed
            }));
        }
        let ticker = async {
            let mut last_cleanup = Instant::now();
            while Instant::now() < deadline {
                progress.set_position(started.elapsed().as_millis() as u64);
                if last_cleanup.elapsed() >= CLEANUP_EVERY {
                    last_cleanup = Instant::now();
                    store.clean_up();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let (results, ()) = tokio::join!(futures_join(tasks), ticker);
        progress.finish_and_clear();
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
    report["workers_restarted"] = json!(links.restarts.load(Ordering::Relaxed));
    learn_feed.finish();
    report["learning"] = json!({
        "model_version": learner.version(),
        "dropped": learn_feed.dropped(),
    });
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

fn text_report(r: &serde_json::Value, failures: &[String]) -> String {
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let mut out = format!(
        "perfopt run: {:.1} s, {} workers, workload {}: {} transfers, {} failed, {} moved\n\n",
        num(&r["duration_s"]),
        r["workers"],
        r["workload"].as_str().unwrap_or(""),
        r["transfers"],
        failures.len(),
        HumanSize(r["bytes"].as_u64().unwrap_or(0)),
    );
    out += &format!(
        "  {:<10} {:>9} {:>12} {:>12} {:>14}\n",
        "method", "transfers", "p50 latency", "p99 latency", "p50 MiB/s"
    );
    if let Some(methods) = r["methods"].as_object() {
        for (name, m) in methods {
            out += &format!(
                "  {:<10} {:>9} {:>12} {:>12} {:>14.0}\n",
                name,
                m["transfers"].as_u64().unwrap_or(0),
                perf_core::HumanMicros(num(&m["latency_us"]["p50"])).to_string(),
                perf_core::HumanMicros(num(&m["latency_us"]["p99"])).to_string(),
                num(&m["throughput_mib_s"]["p50"]),
            );
        }
    }
    if let Some(pools) = r["by_pool"].as_object() {
        let list: Vec<String> = pools.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out += &format!("\n  transfers by pool: {}\n", list.join(", "));
    }
    out += "\n  decisions by reason:\n";
    if let Some(reasons) = r["by_reason"].as_object() {
        for (reason, methods) in reasons {
            if let Some(methods) = methods.as_object() {
                for (method, n) in methods {
                    out += &format!("    {reason:<32} {method:<10} {n:>9}\n");
                }
            }
        }
    }
    let fallbacks = r["fallbacks"].as_object().map_or(0, |f| f.len());
    out += &format!(
        "\n  fallbacks to gRPC: {}\n  decision time: p50 {} ns, p99 {} ns\n  segment pool: {} reused, {} created, {} one-off, {} refused\n",
        if fallbacks == 0 {
            "none".to_string()
        } else {
            r["fallbacks"].to_string()
        },
        r["decision_ns"]["p50"],
        r["decision_ns"]["p99"],
        r["pool"]["reused"],
        r["pool"]["created"],
        r["pool"]["one_off"],
        r["pool"]["refused"],
    );
    out += &format!(
        "  workers restarted: {}\n",
        r["workers_restarted"].as_u64().unwrap_or(0)
    );
    out += &format!(
        "  metrics store: {} ({} recorded, {} committed, {} dropped)\n",
        r["store"]["data_dir"].as_str().unwrap_or(""),
        r["store"]["recorded"],
        r["store"]["committed"],
        r["store"]["dropped"],
    );
    for f in failures.iter().take(5) {
        out += &format!("  failed: {f}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bounds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

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
