//! The gate's decision: each SLO of the SLO file evaluated on a run's results, each ratio and
//! quantile SLO compared with the machine's baseline, and the failures that fail the run.

use serde::Serialize;

use super::results::{Results, Scenario, Series, Unit};
use super::slo::{self, FigureSlo, QuantileSlo, RatioSlo, SloFile};
use super::stats::{self, Best, BootstrapConfig, Statistic};

mod compare;

pub(crate) use compare::{Comparison, Status};

/// What became of one SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// Within its limits.
    Pass,
    /// A limit missed, or what it names missing from a scenario that ran.
    Fail,
    /// Its scenario did not run, or it does not apply to this set.
    NotRun,
}

/// One SLO's verdict.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Verdict {
    /// The SLO's name.
    pub(crate) name: String,
    /// ratio, quantile or figure.
    pub(crate) kind: &'static str,
    /// Its scenario.
    pub(crate) scenario: String,
    /// What is measured, e.g. `zero_copy@64MiB / memcpy@64MiB`.
    pub(crate) figure: String,
    /// The measured value, when there is one.
    pub(crate) value: Option<f64>,
    /// The limits, as text (`<= 1.50`, `>= zero_copy_share_idle (0.42)`).
    pub(crate) limit: String,
    /// Pass, fail or not run.
    pub(crate) outcome: Outcome,
    /// One line saying what happened; for a failure, the scenario, the figure and its limit.
    pub(crate) message: String,
    /// Whether it is a ratio whose numerator is a zero-copy series (what the bite check needs).
    pub(crate) zero_copy_ratio: bool,
}

/// The gate's whole decision on one run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Gate {
    /// Every SLO's verdict, in file order: ratios, quantiles, figures.
    pub(crate) verdicts: Vec<Verdict>,
    /// Every comparison with the baseline (none without a baseline).
    pub(crate) comparisons: Vec<Comparison>,
    /// The failures, one line each: missed SLOs, then regressions.
    pub(crate) failures: Vec<String>,
    /// Whether the run passes.
    pub(crate) passed: bool,
    /// The zero-copy delay the runner saw injected, in µs.
    pub(crate) injected_delay_us: u64,
}

impl Gate {
    /// Whether some zero-copy ratio SLO failed (the bite check's criterion).
    pub(crate) fn failed_a_zero_copy_ratio(&self) -> bool {
        self.verdicts
            .iter()
            .any(|it| it.zero_copy_ratio && it.outcome == Outcome::Fail)
    }
}

/// Evaluates `slos` on `now`, comparing with `baseline` when there is one.
pub(crate) fn evaluate(slos: &SloFile, now: &Results, baseline: Option<&Results>) -> Gate {
    let mut verdicts = Vec::new();
    let mut comparisons = Vec::new();
    let config = BootstrapConfig {
        resamples: slos.baseline.resamples,
        confidence: slos.baseline.confidence,
        seed: slos.baseline.seed,
    };
    for slo in &slos.ratio {
        let (verdict, resolved) = ratio_verdict(slo, now);
        if let (Some(now_ratio), Some(base)) = (resolved.filter(|_| slo.compare), baseline) {
            let margin = slo.margin.unwrap_or(slos.baseline.margin);
            comparisons.push(compare::ratio(
                slo, &verdict, &now_ratio, base, margin, config,
            ));
        }
        verdicts.push(verdict);
    }
    for slo in &slos.quantile {
        let (verdict, series) = quantile_verdict(slo, now);
        if let (Some(series), Some(base)) = (series.filter(|_| slo.compare), baseline) {
            let margin = slo.margin.unwrap_or(slos.baseline.margin);
            comparisons.push(compare::quantile(
                slo, &verdict, series, base, margin, config,
            ));
        }
        verdicts.push(verdict);
    }
    for slo in &slos.figure {
        verdicts.push(figure_verdict(slo, now));
    }
    let mut failures: Vec<String> = verdicts
        .iter()
        .filter(|it| it.outcome == Outcome::Fail)
        .map(|it| it.message.clone())
        .collect();
    failures.extend(
        comparisons
            .iter()
            .filter(|it| it.status == Status::Regressed)
            .map(|it| it.message.clone()),
    );
    Gate {
        passed: failures.is_empty(),
        injected_delay_us: now.injected_delay_us,
        verdicts,
        comparisons,
        failures,
    }
}

/// The series a ratio SLO names, found in one run.
struct Ratio<'r> {
    num: &'r Series,
    den: Vec<&'r Series>,
    unit: Unit,
}

impl Ratio<'_> {
    fn best(&self) -> Best {
        if self.unit.higher_is_worse() {
            Best::Lowest
        } else {
            Best::Highest
        }
    }

    fn statistic(&self) -> Statistic<'_> {
        Statistic::RatioOfMedians {
            num: &self.num.samples,
            den: self.den.iter().map(|it| it.samples.as_slice()).collect(),
            best: self.best(),
        }
    }

    /// The ratio of medians, and the denominator series that was the best.
    fn value(&self) -> (f64, &str) {
        let medians: Vec<f64> = self
            .den
            .iter()
            .map(|it| stats::median(&it.samples))
            .collect();
        let best = self.best().pick(medians.iter().copied());
        let at = medians.iter().position(|it| *it == best).unwrap_or(0);
        (stats::median(&self.num.samples) / best, &self.den[at].id)
    }
}

/// Why a figure could not be measured.
enum Missing {
    /// The scenario did not run, or the SLO does not apply to this set: not a failure.
    NotRun(String),
    /// The scenario ran without what the SLO names: a failure.
    Absent(String),
}

fn scenario<'r>(results: &'r Results, name: &str) -> Result<&'r Scenario, Missing> {
    results.scenario(name).ok_or_else(|| {
        Missing::NotRun(format!(
            "{name}: not run (the scenario is not in this run of set {})",
            results.set
        ))
    })
}

fn series<'r>(scenario: &'r Scenario, id: &str, slo: &str) -> Result<&'r Series, Missing> {
    let series = scenario.series(id).ok_or_else(|| {
        let known: Vec<&str> = scenario.series.iter().map(|it| it.id.as_str()).collect();
        Missing::Absent(format!(
            "{}: no series `{id}`, expected one for SLO {slo} (the scenario has: {})",
            scenario.name,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))
    })?;
    if series.samples.is_empty() {
        return Err(Missing::Absent(format!(
            "{}: series `{id}` has no samples, expected some for SLO {slo}",
            scenario.name
        )));
    }
    Ok(series)
}

fn find_ratio<'r>(slo: &RatioSlo, results: &'r Results) -> Result<Ratio<'r>, Missing> {
    let scen = scenario(results, &slo.scenario)?;
    let den_scen = match &slo.den_scenario {
        Some(name) => scenario(results, name)?,
        None => scen,
    };
    let num = series(scen, &slo.num, &slo.name)?;
    let den = slo
        .den
        .ids()
        .into_iter()
        .map(|id| series(den_scen, id, &slo.name))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(other) = den.iter().find(|it| it.unit != num.unit) {
        return Err(Missing::Absent(format!(
            "{}: series `{}` is in {} and `{}` in {}, expected one unit for SLO {}",
            slo.scenario,
            num.id,
            num.unit.label(),
            other.id,
            other.unit.label(),
            slo.name
        )));
    }
    Ok(Ratio {
        num,
        den,
        unit: num.unit,
    })
}

fn ratio_label(slo: &RatioSlo) -> String {
    let den = match &slo.den {
        slo::Den::One(id) => id.clone(),
        slo::Den::Best(ids) if ids.len() == 1 => ids[0].clone(),
        slo::Den::Best(ids) => format!("best of [{}]", ids.join(", ")),
    };
    match &slo.den_scenario {
        Some(other) => format!("{} / {other}:{den}", slo.num),
        None => format!("{} / {den}", slo.num),
    }
}

/// `<= 1.50`, `>= 0.40`, or both.
fn limit_text(max: Option<f64>, min: Option<f64>, unit: &str) -> String {
    let mut parts = Vec::new();
    if let Some(min) = min {
        parts.push(format!(">= {}{unit}", num(min)));
    }
    if let Some(max) = max {
        parts.push(format!("<= {}{unit}", num(max)));
    }
    parts.join(" and ")
}

/// A number as printed in verdicts: integers plainly, others with two decimals (four when small).
pub(crate) fn num(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() >= 0.1 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

/// Whether `value` is over `max` (a NaN is over every limit).
fn above(value: f64, max: f64) -> bool {
    value > max || value.is_nan()
}

/// Whether `value` is under `min` (a NaN is under every limit).
fn below(value: f64, min: f64) -> bool {
    value < min || value.is_nan()
}

/// Checks `value` against the bounds; the failure's tail (`over its limit 1.50`) when missed.
fn check_bounds(value: f64, max: Option<f64>, min: Option<f64>, unit: &str) -> Option<String> {
    if let Some(max) = max.filter(|max| above(value, *max)) {
        return Some(format!("over its limit {}{unit}", num(max)));
    }
    if let Some(min) = min.filter(|min| below(value, *min)) {
        return Some(format!("under its limit {}{unit}", num(min)));
    }
    None
}

fn ratio_verdict<'r>(slo: &RatioSlo, results: &'r Results) -> (Verdict, Option<Ratio<'r>>) {
    let figure = ratio_label(slo);
    let mut verdict = Verdict {
        name: slo.name.clone(),
        kind: "ratio",
        scenario: slo.scenario.clone(),
        figure: figure.clone(),
        value: None,
        limit: limit_text(slo.max, slo.min, ""),
        outcome: Outcome::NotRun,
        message: String::new(),
        zero_copy_ratio: slo.num.starts_with("zero_copy"),
    };
    if !slo::applies(slo.sets.as_ref(), &results.set) {
        verdict.message = format!("{}: not run (not in set {})", slo.scenario, results.set);
        return (verdict, None);
    }
    let ratio = match find_ratio(slo, results) {
        Ok(ratio) => ratio,
        Err(missing) => {
            missing.apply(&mut verdict);
            return (verdict, None);
        }
    };
    let (value, best) = ratio.value();
    verdict.value = Some(value);
    let shown = if slo.den.ids().len() > 1 {
        format!("{figure} (best: {best})")
    } else {
        figure
    };
    let head = format!("{}: {shown} = {} (median ratio)", slo.scenario, num(value));
    verdict.judge(&head, check_bounds(value, slo.max, slo.min, ""));
    (verdict, Some(ratio))
}

impl Verdict {
    /// Fails with `head` and the limit it missed (`tail`), or passes with `head` within the
    /// limit.
    fn judge(&mut self, head: &str, tail: Option<String>) {
        match tail {
            Some(tail) => {
                self.outcome = Outcome::Fail;
                self.message = format!("{head}, {tail}");
            }
            None => {
                self.outcome = Outcome::Pass;
                self.message = format!("{head}, within {}", self.limit);
            }
        }
    }
}

impl Missing {
    fn apply(self, verdict: &mut Verdict) {
        match self {
            Missing::NotRun(message) => {
                verdict.outcome = Outcome::NotRun;
                verdict.message = message;
            }
            Missing::Absent(message) => {
                verdict.outcome = Outcome::Fail;
                verdict.message = message;
            }
        }
    }
}

/// `p99`, `p50`, `p99.9` for a quantile.
fn quantile_label(q: f64) -> String {
    let pct = format!("{:.3}", q * 100.0);
    let pct = pct.trim_end_matches('0').trim_end_matches('.');
    format!("p{pct}")
}

fn quantile_verdict<'r>(slo: &QuantileSlo, results: &'r Results) -> (Verdict, Option<&'r Series>) {
    let figure = format!("{} {}", slo.series, quantile_label(slo.q));
    let mut verdict = Verdict {
        name: slo.name.clone(),
        kind: "quantile",
        scenario: slo.scenario.clone(),
        figure: figure.clone(),
        value: None,
        limit: limit_text(slo.max, slo.min, ""),
        outcome: Outcome::NotRun,
        message: String::new(),
        zero_copy_ratio: false,
    };
    if !slo::applies(slo.sets.as_ref(), &results.set) {
        verdict.message = format!("{}: not run (not in set {})", slo.scenario, results.set);
        return (verdict, None);
    }
    let found = scenario(results, &slo.scenario).and_then(|it| series(it, &slo.series, &slo.name));
    let series = match found {
        Ok(series) => series,
        Err(missing) => {
            missing.apply(&mut verdict);
            return (verdict, None);
        }
    };
    let unit = format!(" {}", series.unit.label());
    verdict.limit = limit_text(slo.max, slo.min, &unit);
    let value = stats::quantile(&series.samples, slo.q);
    verdict.value = Some(value);
    let head = format!("{}: {figure} = {}{unit}", slo.scenario, num(value));
    verdict.judge(&head, check_bounds(value, slo.max, slo.min, &unit));
    (verdict, Some(series))
}

fn figure_verdict(slo: &FigureSlo, results: &Results) -> Verdict {
    let mut limits = Vec::new();
    if let Some(other) = &slo.min_figure {
        limits.push(format!(">= {other}"));
    }
    if let Some(other) = &slo.max_figure {
        limits.push(format!("<= {other}"));
    }
    let plain = limit_text(slo.max, slo.min, "");
    if !plain.is_empty() {
        limits.push(plain);
    }
    let mut verdict = Verdict {
        name: slo.name.clone(),
        kind: "figure",
        scenario: slo.scenario.clone(),
        figure: slo.figure.clone(),
        value: None,
        limit: limits.join(" and "),
        outcome: Outcome::NotRun,
        message: String::new(),
        zero_copy_ratio: false,
    };
    if !slo::applies(slo.sets.as_ref(), &results.set) {
        verdict.message = format!("{}: not run (not in set {})", slo.scenario, results.set);
        return verdict;
    }
    let scen = match scenario(results, &slo.scenario) {
        Ok(scen) => scen,
        Err(missing) => {
            missing.apply(&mut verdict);
            return verdict;
        }
    };
    let figure = |name: &str| {
        scen.figures.get(name).copied().ok_or_else(|| {
            let known: Vec<&str> = scen.figures.keys().map(String::as_str).collect();
            format!(
                "{}: no figure `{name}`, expected one for SLO {} (the scenario has: {})",
                scen.name,
                slo.name,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })
    };
    let checked = (|| -> Result<(f64, Option<String>), String> {
        let value = figure(&slo.figure)?;
        if let Some(tail) = check_bounds(value, slo.max, slo.min, "") {
            return Ok((value, Some(tail)));
        }
        if let Some(other) = &slo.min_figure {
            let bound = figure(other)?;
            if below(value, bound) {
                return Ok((
                    value,
                    Some(format!("under its limit {other} = {}", num(bound))),
                ));
            }
        }
        if let Some(other) = &slo.max_figure {
            let bound = figure(other)?;
            if above(value, bound) {
                return Ok((
                    value,
                    Some(format!("over its limit {other} = {}", num(bound))),
                ));
            }
        }
        Ok((value, None))
    })();
    match checked {
        Err(message) => {
            verdict.outcome = Outcome::Fail;
            verdict.message = message;
        }
        Ok((value, tail)) => {
            verdict.value = Some(value);
            let head = format!("{}: {} = {}", slo.scenario, slo.figure, num(value));
            verdict.judge(&head, tail);
        }
    }
    verdict
}

#[cfg(test)]
mod tests;
