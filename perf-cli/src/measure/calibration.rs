//! Calibrating a data directory: paired measurements of this machine idle and under CPU load,
//! handed to the library ([`perfopt::calibrate_data_dir`]) to fit the profile and train the
//! first classifier; what `perfopt calibrate`, `run --calibrate` and `serve --calibrate` do,
//! and the notice for a data directory without calibration.

use std::path::Path;
use std::time::Duration;

use perf_core::{HumanSize, Method, PoolSettings};
use perfopt::learn::{LearnConfig, MODEL_NAME, PairedSample};
use perfopt::transport::WorkerCommand;
use perfopt::{Calibrated, CalibrationRun, CalibrationStatus};

use super::paired::{self, Load, PairedPlan};
use crate::exit::Exit;
use crate::load::MAX_BURNERS;

/// How long a calibration measures by default.
pub(crate) const DEFAULT_BUDGET: Duration = Duration::from_secs(60);
/// The sizes a calibration measures by default: the range `perfopt run` sends.
pub(crate) const DEFAULT_SIZES: &str = "1KiB..64MiB";
/// Transfers per method behind each row by default.
pub(crate) const DEFAULT_PER_CASE: u32 = 5;
/// Time of a calibration's budget that is not spent measuring: starting the worker, warming
/// up, the burners' ramp, finishing the size under way, training.
const OVERHEAD: f64 = 0.12;

/// What a calibration measures.
pub(crate) struct CalibrationPlan {
    /// The sizes, each from 1 KiB to 1 GiB.
    pub(crate) sizes: Vec<u64>,
    /// How long it may take in all, about.
    pub(crate) budget: Duration,
    /// Transfers per method behind each row.
    pub(crate) per_case: u32,
    /// Burner processes under CPU load; by default one per CPU.
    pub(crate) burners: Option<u32>,
    /// Seed of the measuring order and of the train/validation split.
    pub(crate) seed: u64,
}

impl CalibrationPlan {
    /// The default calibration: [`DEFAULT_SIZES`] with their midpoints, within
    /// [`DEFAULT_BUDGET`].
    pub(crate) fn default_plan() -> Result<CalibrationPlan, Exit> {
        let sizes = crate::args::parse_size_list(DEFAULT_SIZES, true, 64).map_err(Exit::failed)?;
        Ok(CalibrationPlan {
            sizes,
            budget: DEFAULT_BUDGET,
            per_case: DEFAULT_PER_CASE,
            burners: None,
            seed: LearnConfig::default().seed,
        })
    }

    fn paired(&self) -> Result<PairedPlan, Exit> {
        if let Some(n) = self.burners
            && !(1..=MAX_BURNERS).contains(&n)
        {
            return Err(Exit::bad_input(format_args!(
                "--burners {n} is out of range, expected 1 to {MAX_BURNERS}"
            )));
        }
        if !(1..=paired::MAX_PER_CASE).contains(&self.per_case) {
            return Err(Exit::bad_input(format_args!(
                "--per-case {} is out of range, expected 1 to {}",
                self.per_case,
                paired::MAX_PER_CASE
            )));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let per_load = self.budget.mul_f64((1.0 - OVERHEAD) / 2.0);
        Ok(PairedPlan {
            sizes: self.sizes.iter().map(|&s| (s, 1)).collect(),
            loads: vec![Load::None, Load::Cpu],
            burners: self.burners.unwrap_or(cpus.clamp(1, MAX_BURNERS)),
            per_case: self.per_case,
            seed: self.seed,
            budget_per_load: Some(per_load),
        })
    }
}

/// Measures this machine by `plan` with a worker started by `worker`, and calibrates
/// `data_dir` from it; returns the report to print. Fails, saving nothing, when the classifier
/// does not pass validation.
pub(crate) fn calibrate(
    data_dir: &Path,
    plan: &CalibrationPlan,
    worker: WorkerCommand,
) -> Result<String, Exit> {
    let paired_plan = plan.paired()?;
    eprintln!(
        "calibrating {}: measuring gRPC and zero-copy at {} sizes from {} to {}, idle and under \
         CPU load, for about {} s",
        data_dir.display(),
        plan.sizes.len(),
        HumanSize(plan.sizes.first().copied().unwrap_or(0)),
        HumanSize(plan.sizes.last().copied().unwrap_or(0)),
        plan.budget.as_secs()
    );
    let collected = paired::collect(&paired_plan, worker)?;
    let rows = |load: Load| -> Vec<PairedSample> {
        collected
            .rows
            .iter()
            .filter(|r| r.0 == load)
            .map(|r| r.1)
            .collect()
    };
    let run = CalibrationRun {
        idle: rows(Load::None),
        loaded: rows(Load::Cpu),
        seed: plan.seed,
        elapsed_s: collected.elapsed_s,
    };
    let skipped = collected.skipped_pairs();
    if skipped > 0 {
        eprintln!(
            "warning: {skipped} pair(s) skipped, zero-copy went another way twice: {}",
            collected.reasons()
        );
    }
    let calibrated = perfopt::calibrate_data_dir(data_dir, &run).map_err(|e| match e {
        perfopt::CalibrationError::Stored(perfopt::StoredError::Learn(e)) => Exit::failed(
            format_args!("the classifier cannot be trained on what was measured: {e}"),
        ),
        e => Exit::failed(e),
    })?;
    let text = report(data_dir, plan, &run, &calibrated);
    if calibrated.profile.is_none() {
        eprint!("{text}");
        return Err(Exit::failed(format_args!(
            "the classifier failed validation (needs {:.0} % held-out accuracy, at most \
             {:.0} % regret, and no more latency than always gRPC or always zero-copy): nothing \
             was saved; the built-in costs and the rules keep deciding",
            LearnConfig::default().min_accuracy * 100.0,
            LearnConfig::default().max_regret * 100.0
        )));
    }
    Ok(text)
}

/// A size, or `none`.
fn size_or_none(size: Option<u64>) -> String {
    size.map_or_else(|| "none".to_string(), |s| HumanSize(s).to_string())
}

/// What was measured, fitted, trained and saved.
fn report(data_dir: &Path, plan: &CalibrationPlan, run: &CalibrationRun, c: &Calibrated) -> String {
    let mut text = format!(
        "perfopt calibrate: {} rows in {:.1} s, each the median of {} transfers per method\n\n  \
         {:<6} {:>6} {:>17} {:>19} {:>9}\n",
        run.idle.len() + run.loaded.len(),
        run.elapsed_s,
        plan.per_case,
        "load",
        "rows",
        "zero-copy faster",
        "measured crossover",
        "mean cpu",
    );
    for (name, rows, crossover) in [
        ("idle", &run.idle, c.measured_crossover_idle),
        ("cpu", &run.loaded, c.measured_crossover_loaded),
    ] {
        let n = rows.len().max(1) as f64;
        let wins = rows
            .iter()
            .filter(|s| s.faster() == Method::ZeroCopy)
            .count();
        let cpu = rows
            .iter()
            .map(|s| s.conditions.cpu_utilization)
            .sum::<f64>()
            / n;
        text += &format!(
            "  {name:<6} {:>6} {:>10} ({:>3.0} %) {:>19} {cpu:>9.2}\n",
            rows.len(),
            wins,
            100.0 * wins as f64 / n,
            size_or_none(crossover),
        );
    }
    let costs = &c.fit.costs;
    text += &format!(
        "\n  fitted to the idle medians ({} of {} coefficients; built-in: {}):\n    gRPC {:.0} µs + \
         {:.2} ns/B ({:.2} ns/B in cache), zero-copy {:.0} µs + {:.3} ns/B\n",
        c.fit.fitted.len(),
        c.fit.fitted.len() + c.fit.kept().len(),
        c.fit.kept().join(", "),
        costs.grpc_call_us,
        costs.grpc_ns_per_byte,
        costs.grpc_cached_ns_per_byte,
        costs.zero_copy_notify_us,
        costs.memcpy_ns_per_byte,
    );
    let defaults = PoolSettings::default();
    text += &format!(
        "  fitted crossover: zero-copy estimated faster from {} (the default pool: floor {}, \
         threshold {})\n",
        size_or_none(c.crossover),
        HumanSize(defaults.floor),
        HumanSize(defaults.threshold),
    );
    let v = &c.training.validation;
    text += &format!(
        "  classifier: held-out accuracy {:.1} % of {} pairs, regret {:.2} % against an oracle\n",
        v.accuracy * 100.0,
        v.samples,
        v.regret * 100.0,
    );
    match (&c.profile, c.training.published) {
        (Some(profile), Some(version)) => {
            text += &format!(
                "\n  saved: {MODEL_NAME} v{version} in the store of {}, profile {}\n  \
                 `perfopt run --data-dir {}` decides with both from its first transfer\n",
                data_dir.display(),
                profile.display(),
                data_dir.display(),
            );
        }
        _ => text += "\n",
    }
    text
}

/// What `run` and `serve` say on a data directory without calibration, once; `None` when it
/// has one (or its profile does not load, which the optimizer's warnings say).
pub(crate) fn notice(data_dir: &Path, status: &CalibrationStatus) -> Option<String> {
    matches!(status, CalibrationStatus::Missing { .. }).then(|| {
        format!(
            "{} holds no calibration of this machine: the built-in costs decide, and no \
             model until one is learned; `perfopt calibrate --data-dir {}` measures this machine \
             in about {} s (or add --calibrate)",
            data_dir.display(),
            data_dir.display(),
            DEFAULT_BUDGET.as_secs()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_plan_spends_its_budget_on_both_loads() {
        let plan = CalibrationPlan::default_plan().unwrap();
        assert_eq!(plan.sizes.first(), Some(&(1 << 10)));
        assert_eq!(plan.sizes.last(), Some(&(64 << 20)));
        let p = plan.paired().unwrap();
        assert_eq!(p.loads, [Load::None, Load::Cpu]);
        let per_load = p.budget_per_load.unwrap();
        assert!(per_load * 2 < DEFAULT_BUDGET && per_load * 5 > DEFAULT_BUDGET * 2);
        assert!(p.sizes.iter().all(|s| s.1 == 1));
        let bad = CalibrationPlan {
            per_case: 0,
            ..CalibrationPlan::default_plan().unwrap()
        };
        assert!(bad.paired().is_err());
    }

    #[test]
    fn only_a_directory_without_a_profile_gets_the_notice() {
        let dir = Path::new("/data");
        let path = dir.join(perfopt::CALIBRATION_FILE);
        let missing = CalibrationStatus::Missing { path: path.clone() };
        let text = notice(dir, &missing).unwrap();
        assert!(
            text.contains("perfopt calibrate --data-dir /data") && text.contains("--calibrate"),
            "{text}"
        );
        let applied = CalibrationStatus::Applied {
            path,
            overridden: false,
        };
        assert_eq!(notice(dir, &applied), None);
    }
}
