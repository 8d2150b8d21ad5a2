//! `perfopt model collect`: paired measurements (each case carried by gRPC and by pooled zero-copy
//! back to back) against a real worker, with and without CPU load, written as a paired dataset.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use perf_core::crossover::Measured;
use perf_core::rng::SplitMix;
use perf_core::{HumanSize, Method, ResourceProbe, TransferRequest};
use perfopt::learn::{Conditions, LoadTracker, PairedDataset, PairedSample, Source};
use perfopt::platform::{ProbeConfig, ProcProbe};
use perfopt::transport::pool::MIN_CLASS;

use crate::args::{MIN_BENCH_SIZE, check_output, largest, parse_size_list, repeats};
use crate::clock::now;
use crate::exit::Exit;
use crate::load::{Burners, MAX_BURNERS};
use crate::measure::{
    Reuse, WARMUPS, Worker, median, misread, progress_bar, segments, weight, went, write_atomically,
};

/// The most sizes one collection measures.
const MAX_SIZES: usize = 64;
/// How long the burners spin before the first measurement under load.
const RAMP: Duration = Duration::from_millis(500);
/// How often the probe reads the system: CPU utilisation is measured over this window.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// Untimed pairs before anything is measured, at the smallest size (at most 64 KiB).
const START_WARMUPS: u32 = 20;

/// The load conditions `--load` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LoadArg {
    /// The machine as it is.
    None,
    /// With CPU burner processes.
    Cpu,
    /// Without load first, then with CPU load.
    Both,
}

/// One load condition measured under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Load {
    None,
    Cpu,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::None => "none",
            Load::Cpu => "cpu",
        }
    }
}

/// Arguments of `perfopt model collect`.
#[derive(Debug, Args)]
pub(crate) struct CollectArgs {
    #[command(flatten)]
    worker: crate::args::WorkerCmdArg,
    /// The dataset file to write (CSV; replaced atomically).
    #[arg(long)]
    out: PathBuf,
    /// Payload sizes: `A..B` for the powers of two from A to B and the midpoints (x1.5)
    /// between them, or a comma list; each from 1 KiB to 1 GiB, at most 64 sizes.
    #[arg(long, default_value = "1KiB..256MiB")]
    sizes: String,
    /// Pairs per size and load condition (1 to 1000); by default 30 up to 1 MiB, 10 up to
    /// 64 MiB and 5 above.
    #[arg(long)]
    repeats: Option<u32>,
    /// Load conditions to measure under: none, cpu (burner processes) or both.
    #[arg(long, value_enum, default_value_t = LoadArg::Both)]
    load: LoadArg,
    /// Burner processes, one busy core each, under CPU load (1 to 64); by default one per CPU.
    #[arg(long)]
    burners: Option<u32>,
    /// Transfers per method behind each row (1 to 15): the row holds each method's median
    /// over them, measured alternately, so that one noisy transfer does not decide the label.
    #[arg(long, default_value_t = 7)]
    per_case: u32,
    /// Seed of the order in which sizes are measured.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The most transfers per method behind one row.
const MAX_PER_CASE: u32 = 15;

/// What one collection measures.
#[derive(Debug, PartialEq)]
struct Plan {
    /// Each size with its pairs per load condition.
    sizes: Vec<(u64, u32)>,
    loads: Vec<Load>,
    burners: u32,
    /// Transfers per method behind each row.
    per_case: u32,
}

impl Plan {
    fn from_args(args: &CollectArgs) -> Result<Plan, Exit> {
        let sizes = parse_sizes(&args.sizes).map_err(Exit::bad_input)?;
        let sizes = repeats(sizes, args.repeats)?;
        if let Some(n) = args.burners
            && !(1..=MAX_BURNERS).contains(&n)
        {
            return Err(Exit::bad_input(format_args!(
                "--burners {n} is out of range, expected 1 to {MAX_BURNERS}"
            )));
        }
        if !(1..=MAX_PER_CASE).contains(&args.per_case) {
            return Err(Exit::bad_input(format_args!(
                "--per-case {} is out of range, expected 1 to {MAX_PER_CASE}",
                args.per_case
            )));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Ok(Plan {
            sizes,
            loads: match args.load {
                LoadArg::None => vec![Load::None],
                LoadArg::Cpu => vec![Load::Cpu],
                LoadArg::Both => vec![Load::None, Load::Cpu],
            },
            burners: args.burners.unwrap_or(cpus.clamp(1, MAX_BURNERS)),
            per_case: args.per_case,
        })
    }

    /// The work of the run for the progress bar: each transfer weighs its size plus about
    /// 100 µs of fixed cost.
    fn work(&self) -> u64 {
        let per_load: u64 = self
            .sizes
            .iter()
            .map(|&(size, n)| u64::from(n * self.per_case + WARMUPS) * 2 * weight(size))
            .sum();
        per_load * self.loads.len() as u64
    }
}

/// Reads `--sizes`: `A..B` for the powers of two from A up to B and the midpoints (x1.5)
/// between them, or a comma list; sorted, without duplicates, each from 1 KiB to 1 GiB, at
/// most 64 of them.
fn parse_sizes(text: &str) -> Result<Vec<u64>, String> {
    parse_size_list(text, true, MAX_SIZES)
}

/// Runs `perfopt model collect`.
pub(crate) fn run(args: &CollectArgs) -> Result<(), Exit> {
    let plan = Plan::from_args(args)?;
    check_output("--out", Some(&args.out), false)?;
    let largest = largest(&plan.sizes);
    // Every zero-copy transfer reuses a pre-faulted segment, as `perfopt run` does.
    let pool = segments(largest, Reuse::Pooled)?;
    let payload = perf_core::rng::random_bytes(largest as usize, 0xC0_11EC7);

    let worker = args.worker.command()?;
    let runtime = crate::measure::runtime()?;
    let progress = progress_bar(plan.work());

    let started = Instant::now();
    let collected = runtime.block_on(async {
        let mut collector = Collector {
            worker: Worker::spawn(pool, worker).await?,
            payload,
            probe: ProcProbe::with_config(ProbeConfig {
                interval: PROBE_INTERVAL,
                ..ProbeConfig::default()
            }),
            tracker: LoadTracker::default(),
            progress: &progress,
            rows: Vec::new(),
            skipped: BTreeMap::new(),
            per_case: plan.per_case,
        };
        let measured = collector.measure(&plan, args.seed).await;
        let Collector {
            worker,
            rows,
            skipped,
            ..
        } = collector;
        worker.shutdown().await;
        measured.map(|()| Collected { rows, skipped })
    })?;

    progress.finish_and_clear();
    let elapsed_s = started.elapsed().as_secs_f64();

    let skipped: u64 = collected.skipped.values().sum();
    if collected.rows.is_empty() {
        return Err(Exit::failed(format_args!(
            "no valid pair was measured ({skipped} skipped: {})",
            reasons(&collected.skipped)
        )));
    }
    let dataset = PairedDataset {
        samples: collected.rows.iter().map(|r| r.1).collect(),
    };
    write_atomically(&args.out, &dataset.to_csv())
        .map_err(|e| Exit::failed(format_args!("cannot write {}: {e}", args.out.display())))?;
    if skipped > 0 {
        eprintln!(
            "warning: {skipped} pair(s) skipped, zero-copy went another way twice: {}",
            reasons(&collected.skipped)
        );
    }
    print!(
        "{}",
        summary(&collected.rows, skipped, elapsed_s, &args.out)
    );
    Ok(())
}

/// What a collection measured: the pairs with their load condition, and the skipped pairs by
/// why zero-copy went another way.
struct Collected {
    rows: Vec<(Load, PairedSample)>,
    skipped: BTreeMap<String, u64>,
}

/// What a collection measures with, and what it has measured.
struct Collector<'a> {
    worker: Worker,
    /// Random bytes, as many as the largest size.
    payload: Vec<u8>,
    /// Samples the system before each pair.
    probe: ProcProbe,
    /// Recent slowdowns, folded in after each pair.
    tracker: LoadTracker,
    progress: &'a indicatif::ProgressBar,
    /// The pairs, in the order measured, with their load condition.
    rows: Vec<(Load, PairedSample)>,
    /// Skipped pairs by why zero-copy went another way.
    skipped: BTreeMap<String, u64>,
    /// Transfers per method behind each row.
    per_case: u32,
}

impl Collector<'_> {
    /// Measures every size of `plan` under each load condition.
    async fn measure(&mut self, plan: &Plan, seed: u64) -> Result<(), Exit> {
        // A process's first transfers pay for connections, caches and mappings once: pay
        // that before anything is measured.
        let first = plan.sizes.first().map_or(MIN_BENCH_SIZE, |s| s.0);
        let warm_size = first.min(MIN_CLASS as u64);
        self.worker
            .pool()
            .warm(&[warm_size as usize])
            .map_err(Exit::failed)?;
        for i in 0..START_WARMUPS {
            // Untimed: whether zero-copy went its way does not matter yet.
            let _ = self.pair(warm_size, i.is_multiple_of(2)).await?;
        }
        for (k, &load) in plan.loads.iter().enumerate() {
            if self.progress.is_hidden() {
                eprintln!(
                    "collecting {} sizes under load {}{}",
                    plan.sizes.len(),
                    load.name(),
                    match load {
                        Load::Cpu => format!(" ({} burner processes)", plan.burners),
                        Load::None => String::new(),
                    }
                );
            }
            let mut burners = match load {
                Load::Cpu => Some(Burners::start(plan.burners)?),
                Load::None => None,
            };
            if burners.is_some() {
                tokio::time::sleep(RAMP).await;
            }
            // Untimed pairs for one probe window: the first sample under this condition sees
            // it with transfers going, as every later sample does, and not what came before.
            self.probe.refresh();
            let window = Instant::now();
            let mut i = 0_u32;
            while window.elapsed() < PROBE_INTERVAL {
                let _ = self.pair(warm_size, i.is_multiple_of(2)).await?;
                i += 1;
            }
            self.probe.refresh();
            let rng = SplitMix::new(seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for (size, repeats) in shuffled(&plan.sizes, &rng) {
                self.measure_size(load, size, repeats, rng.next_u64() & 1 == 1)
                    .await?;
            }
            if let Some(b) = &mut burners {
                b.check_running()?;
            }
        }
        Ok(())
    }

    /// Untimed pairs, then `repeats` measured ones at `size`, alternating which method goes
    /// first (zero-copy on even repeats when `zero_copy_even`).
    async fn measure_size(
        &mut self,
        load: Load,
        size: u64,
        repeats: u32,
        zero_copy_even: bool,
    ) -> Result<(), Exit> {
        self.progress
            .set_message(format!("{} {}", load.name(), HumanSize(size)));
        // A pre-faulted segment of this size's class waits in the pool.
        self.worker
            .pool()
            .warm(&[size as usize])
            .map_err(Exit::failed)?;
        for i in 0..WARMUPS {
            let _ = self
                .pair(size, i.is_multiple_of(2) == zero_copy_even)
                .await?;
            self.progress.inc(2 * weight(size));
        }
        for i in 0..repeats {
            let system = self.probe.sample();
            let conditions = Conditions::new(&system, now(), &self.tracker);
            let (mut grpc, mut zero_copy) = (Vec::new(), Vec::new());
            let mut skipped = None;
            for k in 0..self.per_case {
                let zero_copy_first = (i + k).is_multiple_of(2) == zero_copy_even;
                let mut taken = self.pair(size, zero_copy_first).await?;
                if taken.is_err() {
                    // Once more, still before the load tracker learns anything.
                    taken = self.pair(size, zero_copy_first).await?;
                }
                self.progress.inc(2 * weight(size));
                match taken {
                    Ok((g, z)) => {
                        grpc.push(g);
                        zero_copy.push(z);
                    }
                    Err(why) => {
                        skipped = Some(why);
                        break;
                    }
                }
            }
            if let Some(why) = skipped {
                *self.skipped.entry(why).or_default() += 1;
                continue;
            }
            let (Some(grpc_us), Some(zero_copy_us)) = (median(&grpc), median(&zero_copy)) else {
                continue;
            };
            self.tracker.observe(Method::Grpc, size, grpc_us);
            self.tracker.observe(Method::ZeroCopy, size, zero_copy_us);
            let request = TransferRequest::new(size);
            let sample = PairedSample {
                at: now(),
                pool: request.pool,
                size,
                data_type: request.data_type,
                format: request.format,
                compression: request.compression,
                conditions,
                grpc_us,
                zero_copy_us,
                source: Source::Bench,
            };
            self.rows.push((load, sample));
        }
        Ok(())
    }

    /// Carries `size` bytes by each method back to back: `(grpc_us, zero_copy_us)`, or why
    /// zero-copy went another way.
    async fn pair(
        &self,
        size: u64,
        zero_copy_first: bool,
    ) -> Result<Result<(f64, f64), String>, Exit> {
        let bytes = &self.payload[..size as usize];
        let (grpc, zero_copy) = if zero_copy_first {
            let z = self.zero_copy(bytes).await?;
            (self.grpc(bytes).await?, z)
        } else {
            let g = self.grpc(bytes).await?;
            (g, self.zero_copy(bytes).await?)
        };
        Ok(zero_copy.map(|z| (grpc, z)))
    }

    /// One gRPC transfer's latency; any failure is the worker's or the connection's, and ends
    /// the collection.
    async fn grpc(&self, bytes: &[u8]) -> Result<f64, Exit> {
        let out = self
            .worker
            .carry(Method::Grpc, bytes)
            .await
            .map_err(|e| Exit::failed(format_args!("gRPC transfer failed: {e}")))?;
        match misread(&out, bytes).or_else(|| went(&out, Method::Grpc)) {
            None => Ok(out.metrics.latency_us),
            Some(why) => Err(Exit::failed(format_args!(
                "gRPC transfer at {}: {why}",
                HumanSize(bytes.len() as u64)
            ))),
        }
    }

    /// One pooled zero-copy transfer's latency, or why it went another way.
    async fn zero_copy(&self, bytes: &[u8]) -> Result<Result<f64, String>, Exit> {
        let before = self.worker.pool_stats().reused;
        let out = match self.worker.carry(Method::ZeroCopy, bytes).await {
            Ok(out) => out,
            Err(e) => return Ok(Err(format!("failed: {e}"))),
        };
        let reused = self.worker.pool_stats().reused == before + 1;
        Ok(
            match misread(&out, bytes).or_else(|| went(&out, Method::ZeroCopy)) {
                Some(why) => Err(why),
                None if !reused => Err("segment not reused".to_string()),
                None => Ok(out.metrics.latency_us),
            },
        )
    }
}

/// The sizes in a seeded random order.
fn shuffled(sizes: &[(u64, u32)], rng: &SplitMix) -> Vec<(u64, u32)> {
    let mut order = sizes.to_vec();
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

fn reasons(skipped: &BTreeMap<String, u64>) -> String {
    skipped
        .iter()
        .map(|(why, n)| format!("{n} x {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The crossover of `samples` ([`perf_core::crossover`]): each pair is one latency of each
/// method at its size.
fn crossover(samples: &[&PairedSample]) -> Option<u64> {
    perf_core::crossover::crossover(samples.iter().flat_map(|s| {
        [
            Measured::new(s.size, Method::Grpc, s.grpc_us),
            Measured::new(s.size, Method::ZeroCopy, s.zero_copy_us),
        ]
    }))
}

/// The closing report: rows, skipped pairs, and per load condition how often zero-copy won.
fn summary(
    rows: &[(Load, PairedSample)],
    skipped: u64,
    elapsed_s: f64,
    path: &std::path::Path,
) -> String {
    let mut text = format!(
        "perfopt model collect: {} rows written to {} in {elapsed_s:.1} s, {skipped} pair(s) skipped\n\n\
         {:<6} {:>6} {:>17} {:>11} {:>9}\n",
        rows.len(),
        path.display(),
        "load",
        "pairs",
        "zero-copy faster",
        "crossover",
        "mean cpu",
    );
    let loads: std::collections::BTreeSet<Load> = rows.iter().map(|r| r.0).collect();
    for load in loads {
        let samples: Vec<&PairedSample> =
            rows.iter().filter(|r| r.0 == load).map(|r| &r.1).collect();
        let n = samples.len() as f64;
        let wins = samples
            .iter()
            .filter(|s| s.faster() == Method::ZeroCopy)
            .count();
        let cpu = samples
            .iter()
            .map(|s| s.conditions.cpu_utilization)
            .sum::<f64>()
            / n;
        let from =
            crossover(&samples).map_or_else(|| "none".to_string(), |s| HumanSize(s).to_string());
        text += &format!(
            "{:<6} {:>6} {:>10} ({:>3.0} %) {from:>11} {cpu:>9.2}\n",
            load.name(),
            samples.len(),
            wins,
            100.0 * wins as f64 / n,
        );
    }
    text
}

#[cfg(test)]
mod tests;
