//! The gate's report: `report.json` (the verdicts, the comparisons and the results they were
//! made from) and the table printed on the terminal.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::gate::{Gate, Outcome};
use super::results::{Machine, Results};
use super::stats;

/// The schema version of `report.json`.
pub(crate) const SCHEMA: u32 = 1;

/// Which baseline a run was compared with.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BaselineInfo {
    /// The machine fingerprint's slug.
    pub(crate) slug: String,
    /// The baseline file, relative to the workspace root.
    pub(crate) path: String,
    /// Whether there was one to compare with.
    pub(crate) found: bool,
    /// Whether this run was saved as the new baseline.
    pub(crate) saved: bool,
}

/// One series' summary, computed from its samples (type 7 quantiles).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SeriesRow {
    /// The scenario.
    pub(crate) scenario: String,
    /// The series id.
    pub(crate) id: String,
    /// The samples' unit.
    pub(crate) unit: &'static str,
    /// Samples in the results.
    pub(crate) count: usize,
    /// Median.
    pub(crate) p50: Option<f64>,
    /// 95th percentile.
    pub(crate) p95: Option<f64>,
    /// 99th percentile.
    pub(crate) p99: Option<f64>,
    /// 99.9th percentile.
    pub(crate) p999: Option<f64>,
    /// Bytes moved over wall time.
    pub(crate) throughput_mib_s: Option<f64>,
    /// Transfers per second.
    pub(crate) transfers_per_s: Option<f64>,
    /// CPU seconds of the host side.
    pub(crate) cpu_host_s: Option<f64>,
    /// CPU seconds of the workers.
    pub(crate) cpu_workers_s: Option<f64>,
    /// Peak resident memory.
    pub(crate) peak_rss_bytes: Option<u64>,
    /// Peak shared memory.
    pub(crate) peak_shm_bytes: Option<u64>,
    /// Fallbacks.
    pub(crate) fallbacks: Option<u64>,
    /// Failed transfers.
    pub(crate) failed: Option<u64>,
    /// Lost transfers.
    pub(crate) lost: Option<u64>,
}

/// Everything `report.json` holds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// [`SCHEMA`].
    pub(crate) schema: u32,
    /// Whether the gate passed.
    pub(crate) passed: bool,
    /// The set that ran.
    pub(crate) set: String,
    /// The machine.
    pub(crate) machine: Machine,
    /// The zero-copy delay the runner saw injected.
    pub(crate) injected_delay_us: u64,
    /// The baseline used.
    pub(crate) baseline: BaselineInfo,
    /// The gate's verdicts, comparisons and failures.
    pub(crate) gate: Gate,
    /// Per-series summaries.
    pub(crate) series: Vec<SeriesRow>,
    /// The results JSON as the runner wrote it.
    pub(crate) results: serde_json::Value,
}

impl Report {
    /// The report of `gate` on `results` (`raw` being the results file as read).
    pub(crate) fn new(
        results: &Results,
        raw: serde_json::Value,
        gate: &Gate,
        baseline: BaselineInfo,
    ) -> Report {
        let mut series = Vec::new();
        for scenario in &results.scenarios {
            for s in &scenario.series {
                let sorted = stats::sorted(&s.samples);
                let q = |q| (!sorted.is_empty()).then(|| stats::quantile_sorted(&sorted, q));
                series.push(SeriesRow {
                    scenario: scenario.name.clone(),
                    id: s.id.clone(),
                    unit: s.unit.label(),
                    count: s.samples.len(),
                    p50: q(0.5),
                    p95: q(0.95),
                    p99: q(0.99),
                    p999: q(0.999),
                    throughput_mib_s: s.throughput_mib_s,
                    transfers_per_s: s.transfers_per_s,
                    cpu_host_s: s.cpu_host_s,
                    cpu_workers_s: s.cpu_workers_s,
                    peak_rss_bytes: s.peak_rss_bytes,
                    peak_shm_bytes: s.peak_shm_bytes,
                    fallbacks: s.fallbacks,
                    failed: s.failed,
                    lost: s.lost,
                });
            }
        }
        Report {
            schema: SCHEMA,
            passed: gate.passed,
            set: results.set.clone(),
            machine: results.machine.clone(),
            injected_delay_us: results.injected_delay_us,
            baseline,
            gate: gate.clone(),
            series,
            results: raw,
        }
    }

    /// Writes `report.json` into `out`.
    pub(crate) fn write(&self, out: &Path) -> Result<()> {
        let path = out.join("report.json");
        let text = serde_json::to_string_pretty(self).context("could not encode the report")?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("could not write {}", path.display()))
    }
}

fn cell(value: Option<f64>) -> String {
    value
        .map(super::gate::num)
        .unwrap_or_else(|| "-".to_owned())
}

/// The report as printed: the SLO verdicts, the baseline comparisons, then the failures.
pub(crate) fn table(report: &Report) -> String {
    let gate = &report.gate;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nperf suite, set {}, on {} ({} cores, {}){}",
        report.set,
        report.machine.cpu_model,
        report.machine.cores,
        report.machine.kernel,
        if report.injected_delay_us > 0 {
            format!(
                ", zero-copy delay of {} us injected",
                report.injected_delay_us
            )
        } else {
            String::new()
        }
    );
    let width = |get: &dyn Fn(usize) -> usize, n: usize, min: usize| {
        (0..n).map(get).max().unwrap_or(0).max(min)
    };
    let v = &gate.verdicts;
    let name_w = width(&|i| v[i].name.len(), v.len(), 4);
    let limit_w = width(&|i| v[i].limit.len(), v.len(), 5);
    let _ = writeln!(
        out,
        "\n{:<7}  {:<name_w$}  {:>10}  {:<limit_w$}  figure",
        "SLO", "name", "value", "limit"
    );
    for it in v {
        let outcome = match it.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::NotRun => "not run",
        };
        let _ = writeln!(
            out,
            "{outcome:<7}  {:<name_w$}  {:>10}  {:<limit_w$}  {}: {}",
            it.name,
            cell(it.value),
            it.limit,
            it.scenario,
            it.figure
        );
    }
    if report.baseline.found {
        let c = &gate.comparisons;
        let name_w = width(&|i| c[i].name.len(), c.len(), 4);
        let _ = writeln!(
            out,
            "\n{:<11}  {:<name_w$}  {:>10}  {:>10}  {:>8}  interval",
            "baseline", "name", "now", "then", "change"
        );
        for it in c {
            let interval = match (it.lo, it.hi) {
                (Some(lo), Some(hi)) => format!("x{lo:.3}..x{hi:.3}"),
                _ => "-".to_owned(),
            };
            let change = it
                .change
                .map(|c| format!("x{c:.3}"))
                .unwrap_or_else(|| "-".to_owned());
            let _ = writeln!(
                out,
                "{:<11}  {:<name_w$}  {:>10}  {:>10}  {change:>8}  {interval}",
                it.status.label(),
                it.name,
                super::gate::num(it.now),
                cell(it.baseline),
            );
        }
        let _ = writeln!(out, "(compared with {})", report.baseline.path);
    } else {
        let _ = writeln!(
            out,
            "\nno baseline for this machine ({}): SLOs only; `cargo xtask perf --save-baseline` writes {}",
            report.baseline.slug, report.baseline.path
        );
    }
    if report.baseline.saved {
        let _ = writeln!(
            out,
            "saved this run as the baseline {}",
            report.baseline.path
        );
    }
    if !gate.failures.is_empty() {
        let _ = writeln!(out, "\nfailures:");
        for failure in &gate.failures {
            let _ = writeln!(out, "  {failure}");
        }
    }
    out
}
