//! `perfopt bench`: measures gRPC, pooled and fresh zero-copy and a plain memcpy at each size against a real worker process.

pub(crate) mod fit;
mod report;
pub(crate) mod stats;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use perf_core::rng::SplitMix;
use perf_core::{
    CostCoefficients, FixedPolicy, HumanSize, Method, PoolSettings, ResourceProbe, TransferPolicy,
    TransferRequest,
};
use perfopt::platform::ProcProbe;
use perfopt::transport::grpc::{ClientConfig, WorkerClient, checksum};
use perfopt::transport::pool::MIN_CLASS;
use perfopt::transport::{
    Executor, ExecutorConfig, PoolStats, SegmentPool, SegmentPoolConfig, TransferOutcome,
};
use serde_json::json;

use self::report::{BenchMethod, Results, Row};
use self::stats::{MAX_BENCH_SIZE, MAX_REPEATS, WARMUPS, default_repeats, parse_sizes};
use crate::exit::Exit;
use crate::spawn::{WorkerProcess, Workspace};

/// Untimed transfers per method before the first size's own warm-ups.
const START_WARMUPS: u32 = 20;
/// The largest size of those transfers.
const START_WARMUP_SIZE: u64 = 64 << 10;

/// Arguments of `perfopt bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Payload sizes: `A..B` for the powers of two from A to B, or a comma list; each from
    /// 1 KiB to 1 GiB, at most 32 sizes.
    #[arg(long, default_value = "1KiB..256MiB")]
    sizes: String,
    /// Timed transfers per size and method (1 to 1000), after 2 untimed ones; by default 30
    /// up to 1 MiB, 10 up to 64 MiB and 5 above.
    #[arg(long)]
    repeats: Option<u32>,
    /// Writes the results as JSON to this file (`-` for standard output).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Writes a calibration profile fitted to the results to this file (replacing it
    /// atomically); `decide --profile` and the configuration load it.
    #[arg(long)]
    write_profile: Option<PathBuf>,
}

/// What one run measures: each size with its number of timed repeats.
struct Plan {
    sizes: Vec<(u64, u32)>,
}

impl Plan {
    fn from_args(args: &BenchArgs) -> Result<Plan, Exit> {
        let sizes = parse_sizes(&args.sizes).map_err(Exit::bad_input)?;
        if let Some(n) = args.repeats
            && !(1..=MAX_REPEATS).contains(&n)
        {
            return Err(Exit::bad_input(format_args!(
                "--repeats {n} is out of range, expected 1 to {MAX_REPEATS}"
            )));
        }
        Ok(Plan {
            sizes: sizes
                .into_iter()
                .map(|s| (s, args.repeats.unwrap_or_else(|| default_repeats(s))))
                .collect(),
        })
    }

    fn largest(&self) -> u64 {
        self.sizes
            .iter()
            .map(|s| s.0)
            .max()
            .unwrap_or(MIN_CLASS as u64)
    }

    /// The work of the run, weighing each transfer as its size plus about 100 µs of fixed
    /// cost, for the progress bar.
    fn work(&self) -> u64 {
        self.sizes
            .iter()
            .map(|&(size, n)| u64::from(n + WARMUPS) * 4 * weight(size))
            .sum()
    }
}

fn weight(size: u64) -> u64 {
    size + (100 << 10)
}

/// A progress bar over `work` units on a terminal's standard error, hidden elsewhere.
pub(crate) fn progress_bar(work: u64) -> indicatif::ProgressBar {
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(work)
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {percent:>3}% {elapsed_precise} (eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress
}

/// Refuses an output path whose directory does not exist, before an expensive run; `-`
/// (standard output) passes when `stdout_ok`.
pub(crate) fn check_output(
    flag: &str,
    path: Option<&PathBuf>,
    stdout_ok: bool,
) -> Result<(), Exit> {
    let Some(path) = path else {
        return Ok(());
    };
    if path.as_os_str() == "-" {
        return if stdout_ok {
            Ok(())
        } else {
            Err(Exit::bad_input(format_args!(
                "{flag} -: expected a file, this output does not go to standard output"
            )))
        };
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if path.is_dir() || !dir.is_dir() {
        return Err(Exit::bad_input(format_args!(
            "{flag} {}: expected a file in an existing directory",
            path.display()
        )));
    }
    Ok(())
}

/// An executor that always carries by one method, zero-copy from `pool` when one is given
/// and gRPC otherwise, checking every checksum outside the timed part.
pub(crate) async fn fixed_executor(
    client: &WorkerClient,
    workspace: &Workspace,
    pool: Option<&SegmentPool>,
) -> Result<Executor, Exit> {
    let method = if pool.is_some() {
        Method::ZeroCopy
    } else {
        Method::Grpc
    };
    let policy: Arc<dyn TransferPolicy> = Arc::new(FixedPolicy(method));
    let zero_copy = pool.map(|p| (p.clone(), workspace.secret().clone()));
    let probe: Arc<dyn ResourceProbe> = Arc::new(ProcProbe::default());
    let config = ExecutorConfig {
        verify: true,
        ..ExecutorConfig::default()
    };
    Executor::connect(policy, client.clone(), zero_copy, probe, config)
        .await
        .map_err(Exit::failed)
}

/// `len` bytes from a seeded generator: a payload no compressor or cache shortcut favours.
pub(crate) fn random_payload(len: usize, seed: u64) -> Vec<u8> {
    let rng = SplitMix::new(seed);
    let mut bytes: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    bytes.truncate(len);
    bytes
}

/// One worker process and a single-threaded runtime to drive it.
pub(crate) fn one_worker() -> Result<(Workspace, WorkerProcess, tokio::runtime::Runtime), Exit> {
    let workspace = Workspace::new()?;
    let worker = workspace.spawn(0)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Exit::failed)?;
    Ok((workspace, worker, runtime))
}

/// The three executors the bench compares, on one connection to one worker.
struct Transports {
    grpc: Executor,
    pooled: Executor,
    fresh: Executor,
}

impl Transports {
    /// An executor per method over `client`, each with its own policy and pool.
    async fn connect(
        client: &WorkerClient,
        workspace: &Workspace,
        pooled: &SegmentPool,
        fresh: &SegmentPool,
    ) -> Result<Transports, Exit> {
        // A zero-copy mismatch falls back to gRPC, which the bench reports; it
        // checks the bytes too.
        let transports = Transports {
            grpc: fixed_executor(client, workspace, None).await?,
            pooled: fixed_executor(client, workspace, Some(pooled)).await?,
            fresh: fixed_executor(client, workspace, Some(fresh)).await?,
        };
        if transports.pooled.pool().is_none() {
            return Err(Exit::failed(
                "the worker takes no zero-copy references, expected a local worker that maps them",
            ));
        }
        Ok(transports)
    }

    fn of(&self, method: BenchMethod) -> Option<&Executor> {
        match method {
            BenchMethod::Grpc => Some(&self.grpc),
            BenchMethod::ZeroCopyPooled | BenchMethod::ZeroCopyLoan => Some(&self.pooled),
            BenchMethod::ZeroCopyFresh => Some(&self.fresh),
            BenchMethod::Memcpy => None,
        }
    }
}

/// One timed transfer: its latency, or what went another way than the method measures.
enum Sample {
    /// Latency and the worker's share of it, in microseconds.
    Took(f64, Option<f64>),
    Anomaly(String),
}

/// Runs `perfopt bench`.
pub(crate) fn run(args: &BenchArgs) -> Result<(), Exit> {
    let plan = Plan::from_args(args)?;
    check_output("--json", args.json.as_ref(), true)?;
    check_output("--write-profile", args.write_profile.as_ref(), false)?;
    let largest = plan.largest();

    // Every pooled class up to the largest size, so nothing large goes one-off.
    let max_class = (largest as usize)
        .next_power_of_two()
        .clamp(MIN_CLASS, MAX_BENCH_SIZE as usize);
    let shm = perfopt::platform::default_shm();
    let pool = |max_free_per_class| {
        SegmentPool::new(
            shm.clone(),
            SegmentPoolConfig {
                max_class,
                budget_bytes: 2 * max_class as u64,
                max_free_per_class,
                ..SegmentPoolConfig::default()
            },
        )
        .map_err(Exit::failed)
    };
    let (pooled_pool, fresh_pool) = (
        pool(SegmentPoolConfig::default().max_free_per_class)?,
        pool(0)?,
    );

    let payload = random_payload(largest as usize, 0xBE_4C4);
    // The memcpy target, written once so that every page is faulted in.
    let target = vec![0x5A_u8; largest as usize];

    let (workspace, worker, runtime) = one_worker()?;
    let progress = progress_bar(plan.work());

    let started = Instant::now();
    let results = runtime.block_on(async {
        let client = WorkerClient::connect(worker.endpoint(), ClientConfig::default())
            .await
            .map_err(Exit::failed)?;
        let transports =
            Transports::connect(&client, &workspace, &pooled_pool, &fresh_pool).await?;
        let mut bench = Bench {
            transports,
            pooled_pool: pooled_pool.clone(),
            payload,
            target,
            progress: &progress,
        };
        bench.measure(&plan).await
    })?;
    progress.finish_and_clear();
    drop(worker);
    finish(
        args,
        &plan,
        &results,
        started.elapsed().as_secs_f64(),
        &pooled_pool,
    )
}

/// What a run measures with.
struct Bench<'a> {
    transports: Transports,
    pooled_pool: SegmentPool,
    /// Random bytes, as many as the largest size.
    payload: Vec<u8>,
    /// The memcpy target, as large and already faulted in.
    target: Vec<u8>,
    progress: &'a indicatif::ProgressBar,
}

impl Bench<'_> {
    /// Measures every size of `plan` with every method.
    async fn measure(&mut self, plan: &Plan) -> Result<Results, Exit> {
        // A process's first transfers pay for connections, caches and mappings once:
        // pay that before anything is timed.
        if let Some(&(first, _)) = plan.sizes.first() {
            let size = first.min(START_WARMUP_SIZE);
            self.pooled_pool
                .warm(&[size as usize])
                .map_err(Exit::failed)?;
            for _ in 0..START_WARMUPS {
                for method in BenchMethod::ALL {
                    self.sample(method, size).await?;
                }
            }
        }
        let mut results = Results::default();
        for &(size, repeats) in &plan.sizes {
            // A pre-faulted segment of this size's class waits in the pool.
            self.pooled_pool
                .warm(&[size as usize])
                .map_err(Exit::failed)?;
            let mut rows: Vec<Row> = BenchMethod::ALL
                .iter()
                .map(|&method| Row {
                    size,
                    method,
                    samples_us: Vec::new(),
                    worker_us: Vec::new(),
                    anomalies: Default::default(),
                })
                .collect();
            // Round-robin over the methods, so drift on a shared machine hits them alike.
            for i in 0..WARMUPS + repeats {
                for row in &mut rows {
                    let msg = format!("{} {}", HumanSize(size), row.method.name());
                    self.progress.set_message(msg);
                    let sample = self.sample(row.method, size).await?;
                    self.progress.inc(weight(size));
                    if i < WARMUPS {
                        continue;
                    }
                    match sample {
                        Sample::Took(us, worker) => {
                            row.samples_us.push(us);
                            row.worker_us.extend(worker);
                        }
                        Sample::Anomaly(what) => *row.anomalies.entry(what).or_default() += 1,
                    }
                }
            }
            results.rows.extend(rows);
        }
        Ok(results)
    }

    /// Moves `size` bytes once with `method`.
    async fn sample(&mut self, method: BenchMethod, size: u64) -> Result<Sample, Exit> {
        let bytes = &self.payload[..size as usize];
        match self.transports.of(method) {
            Some(ex) if method == BenchMethod::ZeroCopyLoan => loan(ex, bytes).await,
            Some(ex) => transfer(ex, method, bytes).await,
            None => {
                let us = memcpy_us(&mut self.target[..size as usize], bytes);
                Ok(Sample::Took(us, None))
            }
        }
    }
}

/// Lends a pooled segment, writes the payload into it as a producer would
/// (not timed), and sends it: the loan path, where nothing is copied.
async fn loan(ex: &Executor, bytes: &[u8]) -> Result<Sample, Exit> {
    let stats = |ex: &Executor| ex.pool().map(SegmentPool::stats).unwrap_or_default();
    let before = stats(ex);
    let mut lease = ex.loan(bytes.len()).map_err(Exit::failed)?;
    lease.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
    let request = TransferRequest::new(bytes.len() as u64);
    let out = ex
        .send_lease(&request, lease, bytes.len())
        .await
        .map_err(Exit::failed)?;
    let after = stats(ex);
    let expected = checksum(bytes);
    if out.ack.checksum != expected || out.ack.length != bytes.len() as u64 {
        return Err(Exit::failed(format_args!(
            "zero_copy_loan at {}: the worker read other bytes than were written",
            HumanSize(bytes.len() as u64)
        )));
    }
    Ok(
        match judge(BenchMethod::ZeroCopyLoan, &out, before, after) {
            None => Sample::Took(
                out.metrics.latency_us,
                Some(out.ack.worker_ns as f64 / 1000.0),
            ),
            Some(what) => Sample::Anomaly(what),
        },
    )
}

/// Carries one transfer and checks it went the way `method` measures.
async fn transfer(ex: &Executor, method: BenchMethod, bytes: &[u8]) -> Result<Sample, Exit> {
    let stats = |ex: &Executor| ex.pool().map(SegmentPool::stats).unwrap_or_default();
    let before = stats(ex);
    let request = TransferRequest::new(bytes.len() as u64);
    let out = ex.transfer(&request, bytes).await.map_err(Exit::failed)?;
    let after = stats(ex);
    let size = HumanSize(bytes.len() as u64);
    // Outside the timed part, like the executor's own check.
    let expected = checksum(bytes);
    if out.ack.checksum != expected || out.ack.length != bytes.len() as u64 {
        return Err(Exit::failed(format_args!(
            "{} at {size}: the worker read {} bytes with checksum {:#018x}, expected {} bytes with {expected:#018x}",
            method.name(),
            out.ack.length,
            out.ack.checksum,
            bytes.len(),
        )));
    }
    Ok(match judge(method, &out, before, after) {
        None => Sample::Took(
            out.metrics.latency_us,
            Some(out.ack.worker_ns as f64 / 1000.0),
        ),
        Some(what) => Sample::Anomaly(what),
    })
}

/// What went another way than `method` measures, if anything did.
fn judge(
    method: BenchMethod,
    out: &TransferOutcome,
    before: PoolStats,
    after: PoolStats,
) -> Option<String> {
    let m = &out.metrics;
    let wanted = match method {
        BenchMethod::Grpc => Method::Grpc,
        _ => Method::ZeroCopy,
    };
    if m.method != wanted {
        return Some(match m.fallback {
            Some(f) => format!("fell back to {}: {}", m.method, fallback_name(f)),
            None => format!("decided {}: {}", m.decided_method, m.reason),
        });
    }
    let new = |s: PoolStats| s.created + s.one_off;
    match method {
        BenchMethod::ZeroCopyPooled | BenchMethod::ZeroCopyLoan
            if after.reused != before.reused + 1 =>
        {
            Some("segment not reused".to_string())
        }
        BenchMethod::ZeroCopyFresh if new(after) != new(before) + 1 => {
            Some("segment not fresh".to_string())
        }
        _ => None,
    }
}

fn fallback_name(f: perf_core::FallbackReason) -> String {
    serde_json::to_value(f)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{f:?}"))
}

/// A plain copy of `bytes` into the pre-faulted `target`, in microseconds.
fn memcpy_us(target: &mut [u8], bytes: &[u8]) -> f64 {
    let bytes = std::hint::black_box(bytes);
    let start = Instant::now();
    target.copy_from_slice(bytes);
    std::hint::black_box(&mut *target);
    start.elapsed().as_secs_f64() * 1e6
}

/// Prints the report, writes the JSON and the profile.
fn finish(
    args: &BenchArgs,
    plan: &Plan,
    results: &Results,
    elapsed_s: f64,
    pool: &SegmentPool,
) -> Result<(), Exit> {
    let sizes: Vec<u64> = plan.sizes.iter().map(|s| s.0).collect();
    let crossovers = report::crossovers(results, PoolSettings::default().threshold);
    let ratios = report::ratios(results);
    let platform = perfopt::platform::detect();
    let text = format!(
        "perfopt bench: {} sizes x 4 methods against one worker process in {elapsed_s:.1} s \
         ({} {}, kernel {}, {} CPUs, {} segments)\n\n{}\n{}",
        sizes.len(),
        platform.os,
        platform.arch,
        platform.kernel_release,
        platform.cpus,
        pool.backend(),
        report::table(results),
        report::conclusions(&crossovers, &ratios, &sizes),
    );
    let json_to_stdout = args.json.as_ref().is_some_and(|p| p.as_os_str() == "-");
    if json_to_stdout {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    let anomalies = results.anomalies();
    if anomalies > 0 {
        eprintln!(
            "warning: {anomalies} timed transfer(s) went another way than their method and are left out of the figures (see the table)"
        );
    }

    if let Some(path) = &args.json {
        let mut v = report::to_json(
            results,
            &crossovers,
            &ratios,
            json!({"platform": platform, "shm_backend": pool.backend()}),
        );
        v["warmups"] = json!(WARMUPS);
        v["elapsed_s"] = json!(elapsed_s);
        let text = serde_json::to_string_pretty(&v).map_err(Exit::failed)? + "\n";
        if json_to_stdout {
            print!("{text}");
        } else {
            fit::write_atomically(path, &text)
                .map_err(|e| Exit::failed(format_args!("cannot write {}: {e}", path.display())))?;
        }
    }

    if let Some(path) = &args.write_profile {
        let fitted = fit::fit(results, CostCoefficients::default());
        let facts = fit::RunFacts {
            unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            platform: &platform,
            shm_backend: pool.backend(),
            sizes: &plan.sizes,
            warmups: WARMUPS,
            crossovers: &crossovers,
        };
        let measured = fit::measured_table(&facts, &fitted);
        let text = fit::profile_text(&fitted, measured).map_err(Exit::failed)?;
        let replaced = fit::write_atomically(path, &text)
            .map_err(|e| Exit::failed(format_args!("cannot write {}: {e}", path.display())))?;
        eprintln!(
            "{} calibration profile {} ({} of {} coefficients fitted)",
            if replaced { "replaced" } else { "wrote" },
            path.display(),
            fitted.fitted.len(),
            fitted.fitted.len() + fitted.kept().len(),
        );
    }

    let empty: Vec<String> = results
        .rows
        .iter()
        .filter(|r| r.samples_us.is_empty())
        .map(|r| format!("{} at {}", r.method.name(), HumanSize(r.size)))
        .collect();
    if empty.is_empty() {
        Ok(())
    } else {
        Err(Exit::failed(format_args!(
            "no timed transfer went the measured way for {}",
            empty.join(", ")
        )))
    }
}
