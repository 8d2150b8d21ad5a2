//! `perfopt bench`: measures gRPC, pooled, loaned and fresh zero-copy (checksummed, sampled or not verified), a bare notification and a plain memcpy at each size against a real worker process.

mod fit;
mod report;
mod stats;

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use perf_core::{CostCoefficients, HumanSize, Method, PoolSettings};
use perfopt::transport::PoolStats;
use perfopt::transport::TransferOutcome;
use serde_json::json;

use self::report::{BenchMethod, NOTIFY_BYTES, Results, Row};
use crate::args::{check_output, largest, parse_size_list, repeats};
use crate::exit::Exit;
use crate::measure::{
    Reuse, WARMUPS, Worker, misread, progress_bar, segments, weight, went, write_atomically,
};

/// The most sizes one run measures.
const MAX_SIZES: usize = 32;
/// Untimed transfers per method before the first size's own warm-ups.
const START_WARMUPS: u32 = 20;
/// The largest size of those transfers.
const START_WARMUP_SIZE: u64 = 64 << 10;

/// Arguments of `perfopt bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    worker: crate::args::WorkerCmdArg,
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
        let sizes = parse_size_list(&args.sizes, false, MAX_SIZES).map_err(Exit::bad_input)?;
        Ok(Plan {
            sizes: repeats(sizes, args.repeats)?,
        })
    }

    /// The work of the run, weighing each transfer as its size plus about 100 µs of fixed
    /// cost, for the progress bar.
    fn work(&self) -> u64 {
        self.sizes
            .iter()
            .map(|&(size, n)| u64::from(n + WARMUPS) * 8 * weight(size))
            .sum()
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
    let largest = largest(&plan.sizes);
    let (pooled_pool, fresh_pool) = (
        segments(largest, Reuse::Pooled)?,
        segments(largest, Reuse::Fresh)?,
    );
    let backend = pooled_pool.backend();

    let payload = perf_core::rng::random_bytes(largest as usize, 0xBE_4C4);
    // The memcpy target, written once so that every page is faulted in.
    let target = vec![0x5A_u8; largest as usize];

    let worker = args.worker.command()?;
    let runtime = crate::measure::runtime()?;
    let progress = progress_bar(plan.work());

    let started = Instant::now();
    let results = runtime.block_on(async {
        // Both zero-copy kinds reach the same worker process; gRPC goes by the pooled one.
        let pooled = Worker::spawn(pooled_pool, worker).await?;
        let fresh = pooled.share(fresh_pool).await?;
        let mut bench = Bench {
            pooled,
            fresh,
            payload,
            target,
            progress: &progress,
        };
        let results = bench.measure(&plan).await;
        bench.fresh.shutdown().await;
        bench.pooled.shutdown().await;
        results
    })?;
    progress.finish_and_clear();
    finish(
        args,
        &plan,
        &results,
        started.elapsed().as_secs_f64(),
        backend,
    )
}

/// What a run measures with.
struct Bench<'a> {
    /// Carries gRPC, pooled and loaned zero-copy.
    pooled: Worker,
    /// Carries zero-copy through a fresh segment each time, to the same worker process.
    fresh: Worker,
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
            self.pooled
                .pool()
                .warm(&[size as usize, NOTIFY_BYTES as usize])
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
            self.pooled
                .pool()
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
        let worker = match method {
            BenchMethod::Memcpy => {
                let us = memcpy_us(&mut self.target[..size as usize], bytes);
                return Ok(Sample::Took(us, None));
            }
            BenchMethod::ZeroCopyFresh => &self.fresh,
            _ => &self.pooled,
        };
        let before = worker.pool_stats();
        let verify = method.verification();
        let out = match method {
            BenchMethod::ZeroCopyLoan | BenchMethod::ZeroCopyLoanNone => {
                worker.carry_loaned(bytes, verify).await?
            }
            BenchMethod::Notify => worker.notify(NOTIFY_BYTES as usize).await?,
            BenchMethod::NotifyAfterWrite => {
                // Untimed, as the loan rows' producer writes its payload before sending.
                self.target[..bytes.len()].copy_from_slice(bytes);
                worker.notify(NOTIFY_BYTES as usize).await?
            }
            _ => worker
                .carry_verified(wanted(method), verify, bytes)
                .await
                .map_err(Exit::failed)?,
        };
        let after = worker.pool_stats();
        let bytes = if method.notifies() {
            &self.payload[..NOTIFY_BYTES as usize]
        } else {
            bytes
        };
        // Outside the timed part, like the executor's own check.
        if let Some(why) = misread(&out, bytes) {
            return Err(Exit::failed(format_args!(
                "{} at {}: {why}",
                method.name(),
                HumanSize(bytes.len() as u64)
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
}

/// The method that carries what `method` measures.
fn wanted(method: BenchMethod) -> Method {
    match method {
        BenchMethod::Grpc => Method::Grpc,
        _ => Method::ZeroCopy,
    }
}

/// What went another way than `method` measures, if anything did.
fn judge(
    method: BenchMethod,
    out: &TransferOutcome,
    before: PoolStats,
    after: PoolStats,
) -> Option<String> {
    if let Some(why) = went(out, wanted(method)) {
        return Some(why);
    }
    let new = |s: PoolStats| s.created + s.one_off;
    match method {
        BenchMethod::ZeroCopyPooled
        | BenchMethod::ZeroCopyPooledSampled
        | BenchMethod::ZeroCopyPooledNone
        | BenchMethod::ZeroCopyLoan
        | BenchMethod::ZeroCopyLoanNone
        | BenchMethod::Notify
        | BenchMethod::NotifyAfterWrite
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
    backend: &str,
) -> Result<(), Exit> {
    let sizes: Vec<u64> = plan.sizes.iter().map(|s| s.0).collect();
    let crossovers = report::crossovers(results, PoolSettings::default().threshold);
    let ratios = report::ratios(results);
    let platform = perfopt::platform::detect();
    let text = format!(
        "perfopt bench: {} sizes x {} methods against one worker process in {elapsed_s:.1} s \
         ({} {}, kernel {}, {} CPUs, {} segments, {})\n\n{}\n{}\n{}",
        sizes.len(),
        BenchMethod::ALL.len() - 1,
        platform.os,
        platform.arch,
        platform.kernel_release,
        platform.cpus,
        backend,
        if perfopt::platform::stream_copy_available() {
            format!(
                "copies from {} MiB streamed",
                perfopt::transport::executor::STREAM_MIN >> 20
            )
        } else {
            "no streamed copies".to_string()
        },
        report::table(results),
        report::LEGEND,
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
            json!({"platform": platform, "shm_backend": backend}),
        );
        v["warmups"] = json!(WARMUPS);
        v["elapsed_s"] = json!(elapsed_s);
        let text = serde_json::to_string_pretty(&v).map_err(Exit::failed)? + "\n";
        if json_to_stdout {
            print!("{text}");
        } else {
            write_atomically(path, &text)
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
            shm_backend: backend,
            sizes: &plan.sizes,
            warmups: WARMUPS,
            crossovers: &crossovers,
        };
        let measured = fit::measured_table(&facts, &fitted);
        let text = perf_core::calibrate::profile_text(&fitted, measured).map_err(Exit::failed)?;
        let replaced = write_atomically(path, &text)
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
