//! Tests of the gate's decision on the synthetic results fixture and variants of it.

use super::compare::classify;
use super::*;
use crate::perf::results::tests::FIXTURE;

fn slos() -> SloFile {
    SloFile::load(&crate::workspace_root().join("xtask/perf/slo.toml")).unwrap()
}

fn fixture() -> Results {
    Results::parse(FIXTURE, "fixture").unwrap()
}

/// The fixture with every zero-copy sample of `sizes` made `delay_us` slower, as the injected
/// delay of the bite check does to the real runner.
fn slowed(delay_us: f64) -> Results {
    let mut results = fixture();
    for scenario in &mut results.scenarios {
        for series in &mut scenario.series {
            if series.id.starts_with("zero_copy@") {
                series.samples.iter_mut().for_each(|it| *it += delay_us);
            }
        }
    }
    results.injected_delay_us = delay_us as u64;
    results
}

/// A second healthy run: the same distributions, measured again (samples reordered and 3%
/// slower across the board, as a rerun on a shared machine is).
fn rerun() -> Results {
    let mut results = fixture();
    for scenario in &mut results.scenarios {
        for series in &mut scenario.series {
            series.samples.reverse();
            series.samples.iter_mut().for_each(|it| *it *= 1.03);
        }
    }
    results
}

fn verdict<'g>(gate: &'g Gate, name: &str) -> &'g Verdict {
    gate.verdicts.iter().find(|it| it.name == name).unwrap()
}

fn comparison<'g>(gate: &'g Gate, name: &str) -> &'g Comparison {
    gate.comparisons.iter().find(|it| it.name == name).unwrap()
}

#[test]
fn the_healthy_fixture_passes_and_what_did_not_run_is_not_run() {
    let gate = evaluate(&slos(), &fixture(), None);
    assert!(gate.passed, "{:#?}", gate.failures);
    assert!(gate.comparisons.is_empty());
    // stress_10k is not in the quick run; the 256 MiB SLOs are for the full set.
    for name in [
        "stress_10k_none_lost",
        "stress_10k_vs_best_concurrency",
        "zero_copy_vs_memcpy_256MiB",
    ] {
        assert_eq!(verdict(&gate, name).outcome, Outcome::NotRun, "{name}");
    }
    assert_eq!(
        verdict(&gate, "zero_copy_vs_memcpy_64MiB").outcome,
        Outcome::Pass
    );
    assert_eq!(
        verdict(&gate, "cpu_saturation_moves_to_zero_copy").outcome,
        Outcome::Pass
    );
}

#[test]
fn a_slowed_zero_copy_path_fails_its_ratio_slo_and_regresses_against_the_baseline() {
    let baseline = fixture();
    let slos = slos();

    let healthy = evaluate(&slos, &rerun(), Some(&baseline));
    assert!(healthy.passed, "{:#?}", healthy.failures);
    assert!(!healthy.failed_a_zero_copy_ratio());
    for name in ["zero_copy_vs_memcpy_1MiB", "zero_copy_vs_memcpy_64MiB"] {
        let c = comparison(&healthy, name);
        assert_eq!(c.status, Status::Unchanged, "{}", c.message);
    }

    let slow = evaluate(&slos, &slowed(3000.0), Some(&baseline));
    assert!(!slow.passed);
    assert!(slow.failed_a_zero_copy_ratio());
    let v = verdict(&slow, "zero_copy_vs_memcpy_1MiB");
    assert_eq!(v.outcome, Outcome::Fail);
    assert!(
        v.message
            .starts_with("sizes: zero_copy@1MiB / memcpy@1MiB = ")
            && v.message.ends_with("(median ratio), over its limit 12"),
        "{}",
        v.message
    );
    let c = comparison(&slow, "zero_copy_vs_memcpy_1MiB");
    assert_eq!(c.status, Status::Regressed, "{}", c.message);
    assert!(c.lo.unwrap() > 1.1);
    assert!(slow.failures.iter().any(|it| it == &c.message));
    // Series the delay does not touch stay unchanged.
    let c = comparison(&slow, "recording_vs_1MiB_transfer");
    assert_eq!(c.status, Status::Unchanged, "{}", c.message);
}

#[test]
fn a_failure_names_the_scenario_the_figure_and_its_limit() {
    let mut results = fixture();
    let sizes = results
        .scenarios
        .iter_mut()
        .find(|it| it.name == "sizes")
        .unwrap();
    for series in &mut sizes.series {
        series.samples = match series.id.as_str() {
            "zero_copy@64MiB" => vec![1.83, 1.8, 1.9],
            "memcpy@64MiB" => vec![1.0, 0.9, 1.1],
            _ => continue,
        };
    }
    let mut slos = slos();
    let slo = slos
        .ratio
        .iter_mut()
        .find(|it| it.name == "zero_copy_vs_memcpy_64MiB")
        .unwrap();
    slo.max = Some(1.5);
    let gate = evaluate(&slos, &results, None);
    assert_eq!(
        verdict(&gate, "zero_copy_vs_memcpy_64MiB").message,
        "sizes: zero_copy@64MiB / memcpy@64MiB = 1.83 (median ratio), over its limit 1.50"
    );
    assert!(!gate.passed);
}

#[test]
fn a_missing_series_or_figure_of_a_scenario_that_ran_fails_saying_so() {
    let mut results = fixture();
    for scenario in &mut results.scenarios {
        if scenario.name == "sizes" {
            scenario.series.retain(|it| it.id != "grpc@16MiB");
        }
        if scenario.name == "cpu_saturation" {
            scenario.figures.remove("zero_copy_share_idle");
        }
    }
    let gate = evaluate(&slos(), &results, None);
    let v = verdict(&gate, "zero_copy_vs_grpc_16MiB");
    assert_eq!(v.outcome, Outcome::Fail);
    assert!(
        v.message.starts_with(
            "sizes: no series `grpc@16MiB`, expected one for SLO zero_copy_vs_grpc_16MiB"
        ),
        "{}",
        v.message
    );
    let v = verdict(&gate, "cpu_saturation_moves_to_zero_copy");
    assert_eq!(v.outcome, Outcome::Fail);
    assert!(
        v.message
            .starts_with("cpu_saturation: no figure `zero_copy_share_idle`"),
        "{}",
        v.message
    );
    assert_eq!(gate.failures.len(), 2, "{:#?}", gate.failures);
}

#[test]
fn figure_slos_check_numbers_and_other_figures() {
    let mut results = fixture();
    for scenario in &mut results.scenarios {
        if scenario.name == "cpu_saturation" {
            scenario
                .figures
                .insert("zero_copy_share_loaded".into(), 0.3);
        }
        if scenario.name == "memory_pressure" {
            scenario.figures.insert("fallbacks".into(), 0.0);
        }
    }
    let gate = evaluate(&slos(), &results, None);
    assert_eq!(
        verdict(&gate, "cpu_saturation_moves_to_zero_copy").message,
        "cpu_saturation: zero_copy_share_loaded = 0.30, under its limit zero_copy_share_idle = 0.42"
    );
    assert_eq!(
        verdict(&gate, "memory_pressure_fell_back").message,
        "memory_pressure: fallbacks = 0, under its limit 1"
    );
}

#[test]
fn the_best_denominator_depends_on_the_unit() {
    let gate = evaluate(&slos(), &fixture(), None);
    // Throughput: the best level is the highest (in_flight=100, about 2600 MiB/s).
    let v = verdict(&gate, "concurrency_1000_vs_best");
    assert!(v.message.contains("(best: in_flight=100)"), "{}", v.message);
    let value = v.value.unwrap();
    assert!((0.8..0.95).contains(&value), "{value}");
    // Latency: the best fixed policy is the lowest (threshold, about 1000 us).
    let v = verdict(&gate, "engine_vs_best_fixed_policy");
    assert!(
        v.message.contains("(best: policy=threshold)"),
        "{}",
        v.message
    );
}

#[test]
fn a_quantile_slo_reads_the_series_quantile_in_its_unit() {
    let mut results = fixture();
    for scenario in &mut results.scenarios {
        if scenario.name == "decision" {
            scenario.series[0].samples = (1..=100).map(f64::from).collect();
        }
    }
    let gate = evaluate(&slos(), &results, None);
    // R: quantile(1:100, 0.99) is 99.01.
    assert_eq!(
        verdict(&gate, "decision_p99").message,
        "decision: decide p99 = 99.01 us, over its limit 5 us"
    );
}

#[test]
fn changes_are_classified_by_direction_and_margin() {
    // Latency: higher is worse.
    assert_eq!(classify(1.2, 1.4, true, 0.1), Status::Regressed);
    assert_eq!(classify(1.05, 1.4, true, 0.1), Status::Unchanged);
    assert_eq!(classify(0.5, 0.8, true, 0.1), Status::Improved);
    // Throughput: lower is worse.
    assert_eq!(classify(0.5, 0.8, false, 0.1), Status::Regressed);
    assert_eq!(classify(1.2, 1.4, false, 0.1), Status::Improved);
    assert_eq!(classify(0.95, 1.05, false, 0.1), Status::Unchanged);
}

#[test]
fn a_baseline_without_the_series_says_so() {
    let mut baseline = fixture();
    baseline.scenarios.retain(|it| it.name != "recording");
    let gate = evaluate(&slos(), &fixture(), Some(&baseline));
    let c = comparison(&gate, "recording_vs_1MiB_transfer");
    assert_eq!(c.status, Status::NoBaseline);
    assert!(c.message.contains("has no baseline"), "{}", c.message);
    assert!(gate.passed);
}
