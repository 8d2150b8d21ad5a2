//! Paired measurements: each case carried by gRPC and by pooled zero-copy back to back against
//! one real worker, with and without CPU load, as `perfopt model collect` writes them and
//! `perfopt calibrate` learns from them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use perf_core::rng::SplitMix;
use perf_core::{HumanSize, Method, ResourceProbe, TransferRequest};
use perfopt::learn::{Conditions, LoadTracker, PairedSample, Source};
use perfopt::platform::{ProbeConfig, ProcProbe};
use perfopt::transport::WorkerCommand;
use perfopt::transport::pool::MIN_CLASS;

use super::{Reuse, WARMUPS, Worker, median, misread, progress_bar, segments, weight, went};
use crate::args::{MIN_BENCH_SIZE, largest};
use crate::clock::now;
use crate::exit::Exit;
use crate::load::Burners;

/// How long the burners spin before the first measurement under load.
const RAMP: Duration = Duration::from_millis(500);
/// How often the probe reads the system: CPU utilisation is measured over this window.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// Untimed pairs before anything is measured, at the smallest size (at most 64 KiB).
const START_WARMUPS: u32 = 20;

/// The most transfers per method behind one row.
pub(crate) const MAX_PER_CASE: u32 = 15;

/// One load condition measured under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Load {
    /// The machine as it is.
    None,
    /// With CPU burner processes.
    Cpu,
}

impl Load {
    /// The condition's name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Load::None => "none",
            Load::Cpu => "cpu",
        }
    }
}

/// What one collection measures.
#[derive(Debug, PartialEq)]
pub(crate) struct PairedPlan {
    /// Each size with its rows per load condition (per round, with a budget).
    pub(crate) sizes: Vec<(u64, u32)>,
    pub(crate) loads: Vec<Load>,
    /// Burner processes under CPU load.
    pub(crate) burners: u32,
    /// Transfers per method behind each row.
    pub(crate) per_case: u32,
    /// Seed of the order in which sizes are measured.
    pub(crate) seed: u64,
    /// Without a budget, each size is measured once (its rows) per load condition; with one,
    /// the sizes are measured round after round, in a new order each, until the condition's
    /// budget is spent (the size under way is finished).
    pub(crate) budget_per_load: Option<Duration>,
}

impl PairedPlan {
    /// The work of the run for the progress bar: each transfer weighs its size plus about
    /// 100 µs of fixed cost, or, with a budget, each millisecond of it.
    fn work(&self) -> u64 {
        if let Some(budget) = self.budget_per_load {
            return budget.as_millis() as u64 * self.loads.len() as u64;
        }
        let per_load: u64 = self
            .sizes
            .iter()
            .map(|&(size, n)| u64::from(n * self.per_case + WARMUPS) * 2 * weight(size))
            .sum();
        per_load * self.loads.len() as u64
    }
}

/// What a collection measured: the pairs with their load condition, and the skipped pairs by
/// why zero-copy went another way.
pub(crate) struct Collected {
    pub(crate) rows: Vec<(Load, PairedSample)>,
    pub(crate) skipped: BTreeMap<String, u64>,
    /// How long it took, in seconds.
    pub(crate) elapsed_s: f64,
}

impl Collected {
    /// The skipped pairs, counted by why, as one line.
    pub(crate) fn reasons(&self) -> String {
        self.skipped
            .iter()
            .map(|(why, n)| format!("{n} x {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// How many pairs were skipped.
    pub(crate) fn skipped_pairs(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// Measures `plan` against one worker process started by `worker`, with a progress bar on a
/// terminal's standard error.
pub(crate) fn collect(plan: &PairedPlan, worker: WorkerCommand) -> Result<Collected, Exit> {
    let largest = largest(&plan.sizes);
    // Every zero-copy transfer reuses a pre-faulted segment, as `perfopt run` does.
    let pool = segments(largest, Reuse::Pooled)?;
    let payload = perf_core::rng::random_bytes(largest as usize, 0xC0_11EC7);
    let runtime = super::runtime()?;
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
            timed: None,
        };
        let measured = collector.measure(plan).await;
        let Collector {
            worker,
            rows,
            skipped,
            ..
        } = collector;
        worker.shutdown().await;
        measured.map(|()| (rows, skipped))
    });
    progress.finish_and_clear();
    let (rows, skipped) = collected?;
    Ok(Collected {
        rows,
        skipped,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
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
    /// With a budget: the progress bar's position so far and when the condition under way
    /// started.
    timed: Option<(u64, Instant)>,
}

impl Collector<'_> {
    /// Measures every size of `plan` under each load condition.
    async fn measure(&mut self, plan: &PairedPlan) -> Result<(), Exit> {
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
            let deadline = plan.budget_per_load.map(|b| {
                let position = self.progress.position();
                self.timed = Some((position, Instant::now()));
                Instant::now() + b
            });
            let rng = SplitMix::new(plan.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut round = 0_u32;
            'rounds: loop {
                for (size, repeats) in shuffled(&plan.sizes, &rng) {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break 'rounds;
                    }
                    let zero_copy_even = rng.next_u64() & 1 == 1;
                    self.measure_size(load, size, repeats, zero_copy_even, round == 0)
                        .await?;
                }
                round += 1;
                if deadline.is_none() {
                    break;
                }
            }
            if let Some(b) = &mut burners {
                b.check_running()?;
            }
            if let (Some((position, _)), Some(budget)) = (self.timed, plan.budget_per_load) {
                self.progress
                    .set_position(position + budget.as_millis() as u64);
            }
        }
        Ok(())
    }

    /// Moves the progress bar on by a pair at `size`, or to the time spent.
    fn tick(&self, size: u64) {
        match self.timed {
            Some((position, since)) => self
                .progress
                .set_position(position + since.elapsed().as_millis() as u64),
            None => self.progress.inc(2 * weight(size)),
        }
    }

    /// Untimed pairs (when `warm`), then `repeats` measured ones at `size`, alternating which
    /// method goes first (zero-copy on even repeats when `zero_copy_even`).
    async fn measure_size(
        &mut self,
        load: Load,
        size: u64,
        repeats: u32,
        zero_copy_even: bool,
        warm: bool,
    ) -> Result<(), Exit> {
        self.progress
            .set_message(format!("{} {}", load.name(), HumanSize(size)));
        // A pre-faulted segment of this size's class waits in the pool.
        self.worker
            .pool()
            .warm(&[size as usize])
            .map_err(Exit::failed)?;
        for i in 0..if warm { WARMUPS } else { 0 } {
            let _ = self
                .pair(size, i.is_multiple_of(2) == zero_copy_even)
                .await?;
            self.tick(size);
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
                self.tick(size);
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

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1 << 10;

    #[test]
    fn shuffling_is_seeded_and_keeps_every_size() {
        let sizes: Vec<(u64, u32)> = (0..20).map(|i| (KIB << i, 3)).collect();
        let a = shuffled(&sizes, &SplitMix::new(7));
        assert_eq!(a, shuffled(&sizes, &SplitMix::new(7)));
        assert_ne!(a, sizes);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, sizes);
    }

    #[test]
    fn a_budget_is_the_work_of_the_progress_bar() {
        let mut plan = PairedPlan {
            sizes: vec![(KIB, 2)],
            loads: vec![Load::None, Load::Cpu],
            burners: 1,
            per_case: 3,
            seed: 1,
            budget_per_load: None,
        };
        assert_eq!(
            plan.work(),
            2 * u64::from(2 * 3 + WARMUPS) * 2 * weight(KIB)
        );
        plan.budget_per_load = Some(Duration::from_secs(5));
        assert_eq!(plan.work(), 10_000);
    }
}
