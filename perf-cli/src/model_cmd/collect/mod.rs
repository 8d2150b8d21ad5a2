//! `perfopt model collect`: paired measurements (each case carried by gRPC and by pooled zero-copy
//! back to back) against a real worker, with and without CPU load, written as a paired dataset.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use perf_core::crossover::Measured;
use perf_core::{HumanSize, Method};
use perfopt::learn::{PairedDataset, PairedSample};

use crate::args::{check_output, parse_size_list, repeats};
use crate::exit::Exit;
use crate::load::MAX_BURNERS;
use crate::measure::paired::{self, Load, MAX_PER_CASE, PairedPlan};
use crate::measure::write_atomically;

/// The most sizes one collection measures.
const MAX_SIZES: usize = 64;

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

/// What the arguments ask to measure.
fn plan(args: &CollectArgs) -> Result<PairedPlan, Exit> {
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
    Ok(PairedPlan {
        sizes,
        loads: match args.load {
            LoadArg::None => vec![Load::None],
            LoadArg::Cpu => vec![Load::Cpu],
            LoadArg::Both => vec![Load::None, Load::Cpu],
        },
        burners: args.burners.unwrap_or(cpus.clamp(1, MAX_BURNERS)),
        per_case: args.per_case,
        seed: args.seed,
        budget_per_load: None,
    })
}

/// Reads `--sizes`: `A..B` for the powers of two from A up to B and the midpoints (x1.5)
/// between them, or a comma list; sorted, without duplicates, each from 1 KiB to 1 GiB, at
/// most 64 of them.
fn parse_sizes(text: &str) -> Result<Vec<u64>, String> {
    parse_size_list(text, true, MAX_SIZES)
}

/// Runs `perfopt model collect`.
pub(crate) fn run(args: &CollectArgs) -> Result<(), Exit> {
    let plan = plan(args)?;
    check_output("--out", Some(&args.out), false)?;
    let collected = paired::collect(&plan, args.worker.command()?)?;
    let skipped = collected.skipped_pairs();
    if collected.rows.is_empty() {
        return Err(Exit::failed(format_args!(
            "no valid pair was measured ({skipped} skipped: {})",
            collected.reasons()
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
            collected.reasons()
        );
    }
    print!(
        "{}",
        summary(&collected.rows, skipped, collected.elapsed_s, &args.out)
    );
    Ok(())
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
