//! An experiment's report from its recorded transfers: per variant the counts, the metric's
//! mean and percentiles, the comparison with the control, the sample-ratio check, and a
//! recommendation with its reason (R9.4, R9.5).

use serde::Serialize;

use perf_core::config::{Experiment, ExperimentMetric, ExperimentMode};
use perf_core::{HumanMicros, HumanSize, TransferMetrics};

use crate::assign::Split;
use crate::stats::{
    DEFAULT_TUNING_SAMPLE_SIZE, Estimate, Interval, PowerAnalysis, SequentialConfig, SrmCheck,
    SrmGrade, StatsError, Summary, sequential_test, srm_check, welch_test,
};

/// Resamples of the 95th-percentile bootstrap.
pub const BOOTSTRAP_RESAMPLES: usize = 500;
/// The power a sample-size estimate plans for.
const PLANNED_POWER: f64 = 0.8;

/// Where an experiment stands at the time of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Its start is still ahead.
    NotStarted,
    /// Between its start and its stop.
    Running,
    /// Past its stop.
    Stopped,
}

/// One variant's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantReport {
    /// The variant's name.
    pub name: String,
    /// Its configured share of the sessions, 0 to 1.
    pub weight: f64,
    /// The settings keys it overrides.
    pub overrides: Vec<String>,
    /// Sessions assigned to it that made at least one transfer: the unit of assignment, which
    /// the sample-ratio check counts.
    pub sessions: u64,
    /// Transfers assigned to it, delivered or failed.
    pub transfers: u64,
    /// Of those, the failed ones (every failure is counted, never dropped).
    pub failed: u64,
    /// Of those, the ones that fell back from zero-copy to gRPC.
    pub fallbacks: u64,
    /// Delivered transfers: the samples of the metric.
    pub samples: u64,
    /// The metric's mean over the samples.
    pub mean: f64,
    /// The metric's median.
    pub p50: f64,
    /// The metric's 95th percentile.
    pub p95: f64,
    /// The metric's 99th percentile.
    pub p99: f64,
    /// The comparison with the control; none for the control itself, or when a variant has
    /// fewer than two samples.
    pub vs_control: Option<Comparison>,
}

/// A treatment against the control on the experiment's metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// `treatment - control` with its interval (a confidence sequence in sequential mode, a
    /// confidence interval otherwise) and p-value (always valid in sequential mode).
    pub absolute: Estimate,
    /// `treatment / control - 1` likewise, when the control's value is not zero.
    pub relative: Option<Estimate>,
    /// Whether the interval excludes zero at the experiment's level (Bonferroni-corrected over
    /// the treatments).
    pub significant: bool,
    /// Whether the treatment is better on the metric (lower, or higher for throughput).
    pub better: bool,
}

/// What to do with the experiment now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Recommendation {
    /// Promote this variant: it beats the control significantly.
    Promote {
        /// The winning variant.
        variant: String,
    },
    /// Keep the control: every treatment is significantly worse.
    KeepControl,
    /// No conclusion yet.
    Inconclusive {
        /// Samples per variant still needed, when they can be estimated.
        samples_needed: Option<u64>,
    },
}

/// An experiment's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentReport {
    /// The experiment's name.
    pub experiment: String,
    /// Its pool.
    pub pool: String,
    /// What it compares on.
    pub metric: ExperimentMetric,
    /// How its results may be read.
    pub mode: ExperimentMode,
    /// Its level.
    pub alpha: f64,
    /// The level each treatment is tested at: `alpha` over the number of treatments.
    pub alpha_per_treatment: f64,
    /// Samples per variant before a winner may be named.
    pub min_samples: u64,
    /// Where it stands.
    pub status: Status,
    /// The variants, the control first.
    pub variants: Vec<VariantReport>,
    /// The sample-ratio check of the sessions per variant against the weights, once there are
    /// any (sessions are what is assigned; one session may make many transfers).
    pub srm: Option<SrmCheck>,
    /// What to do now.
    pub recommendation: Recommendation,
    /// Why, in a sentence.
    pub reason: String,
}

/// Why a report could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    /// The experiment's weights do not make a split (validated configurations always do).
    #[error("experiment {experiment}: {source}")]
    Split {
        /// The experiment.
        experiment: String,
        /// Why.
        source: crate::assign::SplitError,
    },
    /// A statistic failed on the data.
    #[error("experiment {experiment}: {source}")]
    Stats {
        /// The experiment.
        experiment: String,
        /// Why.
        source: StatsError,
    },
}

/// The metric's value of one delivered transfer.
fn value(metric: ExperimentMetric, m: &TransferMetrics) -> f64 {
    match metric {
        ExperimentMetric::MeanLatency | ExperimentMetric::P95Latency => m.latency_us,
        ExperimentMetric::Throughput => m.throughput_bps,
        ExperimentMetric::CpuTime => m.cpu_time_us,
        ExperimentMetric::Memory => m.memory_bytes as f64,
    }
}

/// Whether a higher value of `metric` is better.
fn higher_is_better(metric: ExperimentMetric) -> bool {
    metric == ExperimentMetric::Throughput
}

/// The transfers of one variant as read from the records.
#[derive(Default)]
struct Arm {
    sessions: std::collections::HashSet<u64>,
    transfers: u64,
    failed: u64,
    fallbacks: u64,
    values: Vec<f64>,
}

/// The report of `experiment` at `now_unix_ms` from `records`: those not assigned to one of its
/// variants are ignored, so every record of the store may be given.
pub fn report<'a>(
    experiment: &Experiment,
    records: impl IntoIterator<Item = &'a TransferMetrics>,
    now_unix_ms: u64,
) -> Result<ExperimentReport, ReportError> {
    let name = experiment.name.as_str().to_string();
    let split = Split::from_fractions(
        &experiment
            .variants
            .iter()
            .map(|v| v.weight)
            .collect::<Vec<_>>(),
    )
    .map_err(|source| ReportError::Split {
        experiment: name.clone(),
        source,
    })?;
    let mut arms: Vec<Arm> = experiment.variants.iter().map(|_| Arm::default()).collect();
    for m in records {
        let Some(arm) = m.experiment.filter(|a| a.experiment == experiment.name) else {
            continue;
        };
        let Some(i) = experiment
            .variants
            .iter()
            .position(|v| v.name == arm.variant)
        else {
            continue;
        };
        let a = &mut arms[i];
        a.sessions.insert(m.session);
        a.transfers += 1;
        a.fallbacks += u64::from(m.fallback.is_some());
        if m.is_evidence() {
            a.values.push(value(experiment.metric, m));
        } else {
            a.failed += 1;
        }
    }
    let stats_err = |source| ReportError::Stats {
        experiment: name.clone(),
        source,
    };
    let treatments = experiment.variants.len() - 1;
    let alpha_per_treatment = experiment.alpha / treatments as f64;
    let summaries: Vec<Summary> = arms
        .iter()
        .map(|a| Summary::of(a.values.iter().copied()))
        .collect();
    for a in &mut arms {
        a.values.sort_unstable_by(f64::total_cmp);
    }
    let mut variants = Vec::with_capacity(arms.len());
    for (i, (v, a)) in experiment.variants.iter().zip(&arms).enumerate() {
        let vs_control = if i == 0 {
            None
        } else {
            let control = (&summaries[0], arms[0].values.as_slice());
            let treatment = (&summaries[i], a.values.as_slice());
            compare(experiment, control, treatment, alpha_per_treatment).map_err(stats_err)?
        };
        variants.push(VariantReport {
            name: v.name.as_str().to_string(),
            weight: v.weight,
            overrides: v.overrides.clone(),
            sessions: a.sessions.len() as u64,
            transfers: a.transfers,
            failed: a.failed,
            fallbacks: a.fallbacks,
            samples: a.values.len() as u64,
            mean: summaries[i].mean,
            p50: quantile(&a.values, 0.50),
            p95: quantile(&a.values, 0.95),
            p99: quantile(&a.values, 0.99),
            vs_control,
        });
    }
    let counts: Vec<u64> = arms.iter().map(|a| a.sessions.len() as u64).collect();
    let srm = if counts.iter().sum::<u64>() > 0 {
        Some(srm_check(&counts, &split).map_err(stats_err)?)
    } else {
        None
    };
    let status = if experiment
        .start_unix_ms
        .is_some_and(|start| now_unix_ms < start)
    {
        Status::NotStarted
    } else if experiment
        .stop_unix_ms
        .is_some_and(|stop| now_unix_ms >= stop)
    {
        Status::Stopped
    } else {
        Status::Running
    };
    let (recommendation, reason) = recommend(experiment, &variants, &summaries, srm.as_ref());
    Ok(ExperimentReport {
        experiment: name,
        pool: experiment.pool.as_str().to_string(),
        metric: experiment.metric,
        mode: experiment.mode,
        alpha: experiment.alpha,
        alpha_per_treatment,
        min_samples: experiment.min_samples,
        status,
        variants,
        srm,
        recommendation,
        reason,
    })
}

/// A treatment against the control: the mean by the experiment's test, or the 95th percentile
/// by a seeded bootstrap of the difference; none while either has fewer than two samples, or
/// neither varies.
fn compare(
    experiment: &Experiment,
    (control, control_values): (&Summary, &[f64]),
    (treatment, treatment_values): (&Summary, &[f64]),
    alpha: f64,
) -> Result<Option<Comparison>, StatsError> {
    if control.n < 2 || treatment.n < 2 || (control.variance == 0.0 && treatment.variance == 0.0) {
        return Ok(None);
    }
    let (absolute, relative) = if experiment.metric == ExperimentMetric::P95Latency {
        let absolute = bootstrap_p95(control_values, treatment_values, alpha);
        (absolute, None)
    } else {
        match experiment.mode {
            ExperimentMode::Sequential => {
                let config = SequentialConfig {
                    alpha,
                    tuning_sample_size: DEFAULT_TUNING_SAMPLE_SIZE,
                };
                let t = sequential_test(control, treatment, config)?;
                (t.absolute, t.relative)
            }
            // Read at any time, the fixed test is only shown; `recommend` concludes nothing
            // before the horizon.
            ExperimentMode::Fixed => {
                let t = welch_test(control, treatment, alpha)?;
                (t.absolute, t.relative)
            }
        }
    };
    let better = if higher_is_better(experiment.metric) {
        absolute.estimate > 0.0
    } else {
        absolute.estimate < 0.0
    };
    Ok(Some(Comparison {
        absolute,
        relative,
        significant: absolute.is_significant(),
        better,
    }))
}

/// A value or difference of `metric` in its unit, signed: `-136 ms`, `+2.0 MiB/s`.
pub fn in_unit(metric: ExperimentMetric, x: f64) -> String {
    let sign = if x < 0.0 { "-" } else { "+" };
    let magnitude = x.abs();
    let shown = match metric {
        ExperimentMetric::MeanLatency
        | ExperimentMetric::P95Latency
        | ExperimentMetric::CpuTime => HumanMicros(magnitude).to_string(),
        ExperimentMetric::Throughput => format!("{}/s", HumanSize(magnitude as u64)),
        ExperimentMetric::Memory => HumanSize(magnitude as u64).to_string(),
    };
    format!("{sign}{shown}")
}

/// A p-value as text with its relation: `= 0.042`, `= 3.1e-5`, or `< 1e-15` below what a double
/// tells apart from 0 in these tests.
pub fn p_text(p: f64) -> String {
    if p < 1e-15 {
        "< 1e-15".to_string()
    } else if p < 0.001 {
        format!("= {p:.1e}")
    } else {
        format!("= {p:.3}")
    }
}

/// The R type-7 quantile of sorted `values`; 0 for none.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => {
            let h = (n - 1) as f64 * p;
            let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// The difference of 95th percentiles (treatment - control) with a percentile-bootstrap
/// interval of [`BOOTSTRAP_RESAMPLES`] seeded resamples at level `1 - alpha`; its p-value is
/// twice the share of resampled differences on the other side of zero.
fn bootstrap_p95(control: &[f64], treatment: &[f64], alpha: f64) -> Estimate {
    let estimate = quantile(treatment, 0.95) - quantile(control, 0.95);
    let rng = perf_core::rng::SplitMix::new(0x5EED_AB7E);
    let mut scratch = Vec::new();
    // The modulo's bias is below len / 2^64: nothing at these sizes.
    let mut resample = |values: &[f64], rng: &perf_core::rng::SplitMix| {
        scratch.clear();
        let n = values.len() as u64;
        scratch.extend((0..n).map(|_| values[(rng.next_u64() % n) as usize]));
        scratch.sort_unstable_by(f64::total_cmp);
        quantile(&scratch, 0.95)
    };
    let mut diffs: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let c = resample(control, &rng);
            resample(treatment, &rng) - c
        })
        .collect();
    diffs.sort_unstable_by(f64::total_cmp);
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let variance = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (diffs.len() - 1) as f64;
    let below = diffs.iter().filter(|d| **d <= 0.0).count() as f64 / diffs.len() as f64;
    Estimate {
        estimate,
        std_error: variance.sqrt(),
        ci: Interval {
            low: quantile(&diffs, alpha / 2.0),
            high: quantile(&diffs, 1.0 - alpha / 2.0),
        },
        p_value: (2.0 * below.min(1.0 - below)).min(1.0),
    }
}

/// The recommendation and its reason.
fn recommend(
    experiment: &Experiment,
    variants: &[VariantReport],
    summaries: &[Summary],
    srm: Option<&SrmCheck>,
) -> (Recommendation, String) {
    let inconclusive = |samples_needed| Recommendation::Inconclusive { samples_needed };
    if let Some(srm) = srm.filter(|s| s.grade.blocks_winner()) {
        return (
            inconclusive(None),
            format!(
                "the sample ratio does not match the weights (chi-square p {}, largest share \
                 off by {:.3}): the assignment is biased, so no result can be trusted until its \
                 cause is found",
                p_text(srm.p_value),
                srm.max_deviation
            ),
        );
    }
    let fewest = variants.iter().map(|v| v.samples).min().unwrap_or(0);
    if fewest < experiment.min_samples {
        let needed = experiment.min_samples - fewest;
        return (
            inconclusive(Some(needed)),
            format!(
                "{fewest} samples in the smallest variant, {} needed per variant before a \
                 winner is named",
                experiment.min_samples
            ),
        );
    }
    // Both modes wait for `min_samples` per variant; in fixed mode that is the horizon, and
    // past it the fixed test is valid for this look.
    let compared: Vec<(&VariantReport, &Comparison)> = variants
        .iter()
        .skip(1)
        .filter_map(|v| v.vs_control.as_ref().map(|c| (v, c)))
        .collect();
    let winner = compared
        .iter()
        .filter(|(_, c)| c.significant && c.better)
        .max_by(|a, b| {
            a.1.absolute
                .estimate
                .abs()
                .total_cmp(&b.1.absolute.estimate.abs())
        });
    let srm_note = match srm.map(|s| s.grade) {
        Some(SrmGrade::Yellow) => " (the sample ratio is worth watching: yellow)",
        _ => "",
    };
    if let Some((v, c)) = winner {
        let relative = c
            .relative
            .map(|r| format!(" ({:+.1} %)", r.estimate * 100.0))
            .unwrap_or_default();
        return (
            Recommendation::Promote {
                variant: v.name.clone(),
            },
            format!(
                "{} beats {} on {}: {}{relative}, interval {} to {}, p {}{srm_note}",
                v.name,
                variants[0].name,
                experiment.metric,
                in_unit(experiment.metric, c.absolute.estimate),
                in_unit(experiment.metric, c.absolute.ci.low),
                in_unit(experiment.metric, c.absolute.ci.high),
                p_text(c.absolute.p_value)
            ),
        );
    }
    if !compared.is_empty() && compared.iter().all(|(_, c)| c.significant && !c.better) {
        return (
            Recommendation::KeepControl,
            format!(
                "every treatment is significantly worse than {} on {}{srm_note}",
                variants[0].name, experiment.metric
            ),
        );
    }
    let needed = samples_needed(experiment, variants, summaries);
    let reason = match needed {
        Some(n) => format!(
            "no significant difference on {} yet; about {n} more samples per variant would \
             detect the difference seen so far with 80 % power",
            experiment.metric
        ),
        None => format!(
            "no significant difference on {}, and none is seen to detect",
            experiment.metric
        ),
    };
    (inconclusive(needed), reason)
}

/// Samples per variant still needed to detect the largest difference seen so far with
/// [`PLANNED_POWER`], by the t-test's power; none when no difference is seen.
fn samples_needed(
    experiment: &Experiment,
    variants: &[VariantReport],
    summaries: &[Summary],
) -> Option<u64> {
    let alpha = experiment.alpha / (variants.len() - 1) as f64;
    let fewest = variants.iter().map(|v| v.samples).min()?;
    variants
        .iter()
        .zip(summaries)
        .skip(1)
        .filter_map(|(v, s)| {
            let effect = v.vs_control?.absolute.estimate;
            let std_dev = ((s.variance + summaries[0].variance) / 2.0).sqrt();
            let plan = PowerAnalysis {
                effect,
                std_dev,
                alpha,
            };
            plan.sample_size(PLANNED_POWER).ok()
        })
        .map(|n| (n.ceil() as u64).saturating_sub(fewest))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use perf_core::rng::SplitMix;
    use perf_core::{
        Config, DecisionContext, ExperimentArm, FailureKind, FixedPolicy, Method, Name,
        SystemState, Timestamp, TransferPolicy, TransferRequest,
    };

    fn experiment(extra: &str) -> Experiment {
        let text = format!(
            r#"
version = 1

[[experiments]]
name = "low"
pool = "default"
min_samples = 1000
{extra}
variants = [{{ name = "control", weight = 50 }}, {{ name = "low", weight = 50, threshold = "1MiB" }}]
"#
        );
        Config::from_toml_str(&text).unwrap().experiments[0].clone()
    }

    /// `n` records of `variant` with latencies normal around `mean` (sd `sd`), the first
    /// `failed` of them failed.
    fn records(
        variant: &str,
        n: usize,
        mean: f64,
        sd: f64,
        failed: usize,
        seed: u64,
    ) -> Vec<TransferMetrics> {
        let rng = SplitMix::new(seed);
        let ctx = DecisionContext::idle(Timestamp::from_secs(1_800_000_000));
        (0..n)
            .map(|i| {
                // A session of its own per record.
                let request = TransferRequest::new(1 << 20).with_session(seed << 32 | i as u64);
                let decision = FixedPolicy(Method::ZeroCopy).decide(&request, &ctx);
                // Box-Muller from two uniforms in (0, 1].
                let (u, v) = (1.0 - rng.next_f64(), rng.next_f64());
                let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                let mut m = TransferMetrics::new(
                    &request,
                    &decision,
                    Method::ZeroCopy,
                    mean + sd * z,
                    ctx.now,
                    SystemState::IDLE,
                );
                m.experiment = Some(ExperimentArm {
                    experiment: Name::new("low").unwrap(),
                    variant: Name::new(variant).unwrap(),
                });
                if i < failed {
                    m.fail(FailureKind::Timeout);
                }
                m
            })
            .collect()
    }

    fn run(e: &Experiment, parts: &[Vec<TransferMetrics>]) -> ExperimentReport {
        report(e, parts.iter().flatten(), 1_800_000_000_000).unwrap()
    }

    #[test]
    fn a_faster_treatment_with_enough_samples_is_promoted() {
        let e = experiment("");
        let r = run(
            &e,
            &[
                records("control", 2000, 1000.0, 100.0, 7, 1),
                records("low", 2000, 800.0, 100.0, 0, 2),
            ],
        );
        assert_eq!(r.status, Status::Running);
        assert_eq!(
            r.recommendation,
            Recommendation::Promote {
                variant: "low".into()
            },
            "{}",
            r.reason
        );
        let [control, low] = r.variants.as_slice() else {
            panic!("two variants")
        };
        assert_eq!(
            (control.transfers, control.failed, control.samples),
            (2000, 7, 1993)
        );
        assert!((control.mean - 1000.0).abs() < 10.0, "{}", control.mean);
        assert!(control.p50 < control.p95 && control.p95 < control.p99);
        let c = low.vs_control.unwrap();
        assert!(c.significant && c.better);
        assert!(c.absolute.ci.contains(-200.0), "{:?}", c.absolute.ci);
        let rel = c.relative.unwrap();
        assert!((rel.estimate + 0.2).abs() < 0.02, "{}", rel.estimate);
        assert!(c.absolute.p_value < 1e-6);
        assert_eq!(r.srm.unwrap().grade, SrmGrade::Green);
        assert!(
            r.reason.starts_with("low beats control on mean_latency"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn too_few_samples_say_how_many_are_still_needed() {
        let e = experiment("");
        let r = run(
            &e,
            &[
                records("control", 600, 1000.0, 100.0, 0, 1),
                records("low", 640, 800.0, 100.0, 0, 2),
            ],
        );
        assert_eq!(
            r.recommendation,
            Recommendation::Inconclusive {
                samples_needed: Some(400)
            }
        );
        assert!(r.reason.contains("1000 needed per variant"), "{}", r.reason);
    }

    #[test]
    fn a_sample_ratio_mismatch_blocks_the_winner() {
        let e = experiment("");
        let r = run(
            &e,
            &[
                records("control", 2400, 1000.0, 100.0, 0, 1),
                records("low", 2000, 800.0, 100.0, 0, 2),
            ],
        );
        let srm = r.srm.unwrap();
        assert_eq!(srm.grade, SrmGrade::Red, "{srm:?}");
        assert_eq!(
            r.recommendation,
            Recommendation::Inconclusive {
                samples_needed: None
            }
        );
        assert!(r.reason.contains("sample ratio"), "{}", r.reason);
        // The difference itself is still reported.
        assert!(r.variants[1].vs_control.unwrap().significant);
    }

    #[test]
    fn a_slower_treatment_keeps_the_control_and_no_difference_is_inconclusive() {
        let e = experiment("");
        let slower = run(
            &e,
            &[
                records("control", 2000, 1000.0, 100.0, 0, 1),
                records("low", 2000, 1100.0, 100.0, 0, 2),
            ],
        );
        assert_eq!(
            slower.recommendation,
            Recommendation::KeepControl,
            "{}",
            slower.reason
        );
        let same = run(
            &e,
            &[
                records("control", 2000, 1000.0, 100.0, 0, 1),
                records("low", 2000, 1000.0, 100.0, 0, 3),
            ],
        );
        assert!(
            matches!(same.recommendation, Recommendation::Inconclusive { .. }),
            "{:?}: {}",
            same.recommendation,
            same.reason
        );
        assert!(
            same.reason.starts_with("no significant difference"),
            "{}",
            same.reason
        );
    }

    #[test]
    fn the_fixed_mode_reads_nothing_before_its_horizon_and_p95_is_bootstrapped() {
        let fixed = experiment("mode = \"fixed\"");
        let early = run(
            &fixed,
            &[
                records("control", 900, 1000.0, 100.0, 0, 1),
                records("low", 900, 800.0, 100.0, 0, 2),
            ],
        );
        assert!(matches!(
            early.recommendation,
            Recommendation::Inconclusive {
                samples_needed: Some(100)
            }
        ));
        let p95 = experiment("metric = \"p95_latency\"");
        let r = run(
            &p95,
            &[
                records("control", 2000, 1000.0, 300.0, 0, 1),
                records("low", 2000, 1000.0, 100.0, 0, 2),
            ],
        );
        let c = r.variants[1].vs_control.unwrap();
        // p95 is mean + 1.645 sd: 1493 against 1164, a difference near -329.
        assert!(
            (c.absolute.estimate + 329.0).abs() < 40.0,
            "{}",
            c.absolute.estimate
        );
        assert!(
            c.absolute.ci.low < c.absolute.estimate && c.absolute.estimate < c.absolute.ci.high
        );
        assert!(c.significant && c.better);
        assert_eq!(
            r.recommendation,
            Recommendation::Promote {
                variant: "low".into()
            }
        );
    }

    #[test]
    fn records_of_other_experiments_are_ignored_and_the_window_gives_the_status() {
        let e = experiment("start = 2027-01-01T00:00:00Z\nstop = 2027-02-01T00:00:00Z");
        let mut other = records("control", 50, 1.0, 1.0, 0, 9);
        for m in &mut other {
            m.experiment.as_mut().unwrap().experiment = Name::new("other").unwrap();
        }
        let r = report(&e, &other, 1_700_000_000_000).unwrap();
        assert_eq!(r.status, Status::NotStarted);
        assert!(r.variants.iter().all(|v| v.transfers == 0));
        assert_eq!(r.srm, None);
        let r = report(&e, &other, 1_900_000_000_000).unwrap();
        assert_eq!(r.status, Status::Stopped);
    }

    #[test]
    fn the_sample_ratio_counts_sessions_not_transfers() {
        let e = experiment("");
        // 1,000 sessions each; the treatment's make five transfers apiece.
        let control = records("control", 1000, 1000.0, 100.0, 0, 1);
        let mut low = Vec::new();
        for _ in 0..5 {
            low.extend(records("low", 1000, 1000.0, 100.0, 0, 2));
        }
        let r = run(&e, &[control, low]);
        assert_eq!(
            r.variants
                .iter()
                .map(|v| (v.sessions, v.transfers))
                .collect::<Vec<_>>(),
            [(1000, 1000), (1000, 5000)]
        );
        assert_eq!(r.srm.unwrap().grade, SrmGrade::Green, "{:?}", r.srm);
    }
}
