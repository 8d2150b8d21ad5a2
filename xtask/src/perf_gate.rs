//! `cargo xtask perf-gate`: measures the decision hot path in release mode and fails over budget.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

/// One budget: a measured series and the p99 it must stay under.
struct Budget {
    series: &'static str,
    p99_ns: u64,
}

/// The hot-path budgets of DESIGN.md: p99 under 1 µs on the quick path and
/// under 5 µs with the full analysis, also with two threads deciding at once.
const BUDGETS: [Budget; 3] = [
    Budget {
        series: "quick_path",
        p99_ns: 1_000,
    },
    Budget {
        series: "full_analysis",
        p99_ns: 5_000,
    },
    Budget {
        series: "two_threads",
        p99_ns: 5_000,
    },
];

/// Checks a latency report against the budgets; returns one line per breach.
pub(crate) fn check(report: &Value) -> anyhow::Result<Vec<String>> {
    let mut breaches = Vec::new();
    for b in &BUDGETS {
        let p99 = report[b.series]["p99_ns"]
            .as_u64()
            .with_context(|| format!("latency report has no {}.p99_ns", b.series))?;
        if p99 > b.p99_ns {
            breaches.push(format!(
                "{}: p99 {p99} ns is over the budget of {} ns",
                b.series, b.p99_ns
            ));
        }
    }
    Ok(breaches)
}

/// Runs the latency harness with `samples` calls per series and checks it.
pub(crate) fn run(root: &Path, samples: u64) -> anyhow::Result<()> {
    let output = Command::new(crate::cargo())
        .current_dir(root)
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "perf-core",
            "--example",
            "decide_latency",
            "--",
        ])
        .arg(samples.to_string())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!(
            "the latency harness failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report: Value =
        serde_json::from_slice(&output.stdout).context("the latency harness printed no JSON")?;
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>9}",
        "series", "p50 ns", "p99 ns", "p99.9 ns", "budget"
    );
    for b in &BUDGETS {
        let s = &report[b.series];
        let ns = |key: &str| s[key].as_u64().unwrap_or_default();
        println!(
            "{:<14} {:>9} {:>9} {:>9} {:>9}",
            b.series,
            ns("p50_ns"),
            ns("p99_ns"),
            ns("p999_ns"),
            b.p99_ns
        );
    }
    let breaches = check(&report)?;
    if !breaches.is_empty() {
        bail!("perf-gate failed:\n{}", breaches.join("\n"));
    }
    println!("perf-gate: every p99 is within budget");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(quick: u64, full: u64, two: u64) -> Value {
        serde_json::json!({
            "quick_path": {"p99_ns": quick},
            "full_analysis": {"p99_ns": full},
            "two_threads": {"p99_ns": two},
        })
    }

    #[test]
    fn within_budget_passes_and_each_breach_is_named() {
        assert!(check(&report(900, 4_000, 4_900)).unwrap().is_empty());
        let breaches = check(&report(1_001, 4_000, 5_001)).unwrap();
        assert_eq!(breaches.len(), 2);
        assert!(breaches[0].starts_with("quick_path: p99 1001 ns"));
        assert!(breaches[1].starts_with("two_threads"));
    }

    #[test]
    fn a_report_missing_a_series_is_an_error() {
        let partial = serde_json::json!({"quick_path": {"p99_ns": 10}});
        assert!(check(&partial).is_err());
    }
}
