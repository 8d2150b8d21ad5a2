//! The comparison of a run with the machine's baseline: the change of each ratio and quantile
//! SLO's figure with its bootstrap interval, called improved, unchanged or regressed.

use serde::Serialize;

use super::{Missing, Ratio, Verdict, find_ratio, num, scenario, series};
use crate::perf::results::{Results, Series};
use crate::perf::slo::{QuantileSlo, RatioSlo};
use crate::perf::stats::{self, BootstrapConfig, Statistic};

/// How a figure moved against the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// The whole interval is beyond the margin in the good direction.
    Improved,
    /// Neither improved nor regressed.
    Unchanged,
    /// The whole interval is beyond `1 + margin` in the bad direction.
    Regressed,
    /// Nothing to compare with: no baseline, or the baseline lacks the series.
    NoBaseline,
}

impl Status {
    /// The status as printed.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Status::Improved => "improved",
            Status::Unchanged => "unchanged",
            Status::Regressed => "regressed",
            Status::NoBaseline => "no baseline",
        }
    }
}

/// One SLO's figure compared with the baseline.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comparison {
    /// The SLO's name.
    pub(crate) name: String,
    /// Its scenario.
    pub(crate) scenario: String,
    /// What is compared, as in [`Verdict::figure`].
    pub(crate) figure: String,
    /// The figure now.
    pub(crate) now: f64,
    /// The figure in the baseline.
    pub(crate) baseline: Option<f64>,
    /// `now / baseline`, with its bootstrap interval.
    pub(crate) change: Option<f64>,
    /// Lower end of the interval of the change.
    pub(crate) lo: Option<f64>,
    /// Upper end of the interval of the change.
    pub(crate) hi: Option<f64>,
    /// Whether a higher figure is worse (`up`) or better (`down`).
    pub(crate) worse: &'static str,
    /// The practical margin applied.
    pub(crate) margin: f64,
    /// Improved, unchanged, regressed, or no baseline.
    pub(crate) status: Status,
    /// One line saying what happened.
    pub(crate) message: String,
}

/// Calls a change improved, unchanged or regressed: regressed only when the whole interval is
/// beyond `1 + margin` in the bad direction, improved when it is wholly beyond `1 / (1 + margin)`
/// in the good one.
pub(crate) fn classify(lo: f64, hi: f64, higher_is_worse: bool, margin: f64) -> Status {
    // Badness > 1 means worse, whichever way the figure goes.
    let (bad_lo, bad_hi) = if higher_is_worse {
        (lo, hi)
    } else {
        (1.0 / hi, 1.0 / lo)
    };
    if bad_lo > 1.0 + margin {
        Status::Regressed
    } else if bad_hi < 1.0 / (1.0 + margin) {
        Status::Improved
    } else {
        Status::Unchanged
    }
}

#[allow(clippy::too_many_arguments)]
fn comparison(
    verdict: &Verdict,
    now: &Statistic<'_>,
    base: Result<Statistic<'_>, String>,
    base_value: impl FnOnce() -> f64,
    now_value: f64,
    higher_is_worse: bool,
    margin: f64,
    config: BootstrapConfig,
) -> Comparison {
    let mut out = Comparison {
        name: verdict.name.clone(),
        scenario: verdict.scenario.clone(),
        figure: verdict.figure.clone(),
        now: now_value,
        baseline: None,
        change: None,
        lo: None,
        hi: None,
        worse: if higher_is_worse { "up" } else { "down" },
        margin,
        status: Status::NoBaseline,
        message: String::new(),
    };
    let base = match base {
        Ok(base) => base,
        Err(why) => {
            out.message = format!("{}: {} has no baseline: {why}", out.scenario, out.figure);
            return out;
        }
    };
    let then = base_value();
    let change = stats::change_interval(now, &base, config);
    out.baseline = Some(then);
    out.change = Some(change.point);
    out.lo = Some(change.lo);
    out.hi = Some(change.hi);
    out.status = classify(change.lo, change.hi, higher_is_worse, margin);
    out.message = format!(
        "{}: {} {}: {} now, {} in the baseline, change x{:.3} ({:.0}% interval x{:.3}..x{:.3}; a higher figure is {}, margin {:.0}%)",
        out.scenario,
        out.figure,
        out.status.label(),
        num(now_value),
        num(then),
        change.point,
        config.confidence * 100.0,
        change.lo,
        change.hi,
        if higher_is_worse { "worse" } else { "better" },
        margin * 100.0
    );
    out
}

pub(super) fn ratio(
    slo: &RatioSlo,
    verdict: &Verdict,
    now: &Ratio<'_>,
    baseline: &Results,
    margin: f64,
    config: BootstrapConfig,
) -> Comparison {
    let base = find_ratio(slo, baseline);
    let base_stat = match &base {
        Ok(ratio) => Ok(ratio.statistic()),
        Err(Missing::NotRun(why) | Missing::Absent(why)) => Err(why.clone()),
    };
    let base_value = || base.as_ref().map(|it| it.value().0).unwrap_or(f64::NAN);
    comparison(
        verdict,
        &now.statistic(),
        base_stat,
        base_value,
        now.value().0,
        now.unit.higher_is_worse(),
        margin,
        config,
    )
}

pub(super) fn quantile(
    slo: &QuantileSlo,
    verdict: &Verdict,
    now: &Series,
    baseline: &Results,
    margin: f64,
    config: BootstrapConfig,
) -> Comparison {
    let base = scenario(baseline, &slo.scenario).and_then(|it| series(it, &slo.series, &slo.name));
    let base_stat = match &base {
        Ok(series) => Ok(Statistic::Quantile {
            samples: &series.samples,
            q: slo.q,
        }),
        Err(Missing::NotRun(why) | Missing::Absent(why)) => Err(why.clone()),
    };
    let base_value = || {
        base.as_ref()
            .map(|it| stats::quantile(&it.samples, slo.q))
            .unwrap_or(f64::NAN)
    };
    comparison(
        verdict,
        &Statistic::Quantile {
            samples: &now.samples,
            q: slo.q,
        },
        base_stat,
        base_value,
        stats::quantile(&now.samples, slo.q),
        now.unit.higher_is_worse(),
        margin,
        config,
    )
}
