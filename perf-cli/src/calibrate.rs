//! `perfopt calibrate`: measures this machine (both methods across sizes, idle and under CPU
//! load) and calibrates the data directory: its profile and its first classifier.

use std::time::Duration;

use clap::Args;

use crate::args::{DataDirArg, DurationRange, parse_duration, parse_size_list};
use crate::exit::Exit;
use crate::measure::calibration::{self, CalibrationPlan, DEFAULT_PER_CASE, DEFAULT_SIZES};

/// The budgets `--budget` accepts.
const BUDGET: DurationRange = DurationRange {
    min: Duration::from_secs(2),
    max: Duration::from_secs(3600),
    whole_seconds: false,
    text: "2s to 1h",
};

/// Arguments of `perfopt calibrate`.
#[derive(Debug, Args)]
pub(crate) struct CalibrateArgs {
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    worker: crate::args::WorkerCmdArg,
    /// About how long to measure in all (2s to 1h), half of it idle and half under CPU load;
    /// a shorter budget measures fewer rows, and the classifier may then fail validation.
    #[arg(long, default_value = "60s")]
    budget: String,
    /// Payload sizes: `A..B` for the powers of two from A to B and the midpoints (x1.5)
    /// between them, or a comma list; each from 1 KiB to 1 GiB, at most 64 sizes.
    #[arg(long, default_value = DEFAULT_SIZES)]
    sizes: String,
    /// Transfers per method behind each row (1 to 15), whose medians the row holds.
    #[arg(long, default_value_t = DEFAULT_PER_CASE)]
    per_case: u32,
    /// Burner processes, one busy core each, under CPU load (1 to 64); by default one per CPU.
    #[arg(long)]
    burners: Option<u32>,
    /// Seed of the measuring order and of the train/validation split.
    #[arg(long, default_value_t = perfopt::learn::LearnConfig::default().seed)]
    seed: u64,
}

/// Runs `perfopt calibrate`.
pub(crate) fn run(args: &CalibrateArgs) -> Result<(), Exit> {
    let plan = CalibrationPlan {
        sizes: parse_size_list(&args.sizes, true, 64).map_err(Exit::bad_input)?,
        budget: parse_duration("--budget", &args.budget, &BUDGET).map_err(Exit::bad_input)?,
        per_case: args.per_case,
        burners: args.burners,
        seed: args.seed,
    };
    let dir = args.data.resolve()?;
    let report = calibration::calibrate(&dir.path, &plan, args.worker.command()?)?;
    print!("{report}");
    Ok(())
}
