//! Reading `[[experiments]]`: each experiment's pool, variants, split, metric and test.

use std::collections::{BTreeMap, HashSet};
use std::time::UNIX_EPOCH;

use toml::Value;

use super::Report;
use super::pools::{check_bounds, read_settings};
use super::render::{render, render_str};
use super::section::Section;
use super::values::{NAME_RULES, Range, one_of, read_number};
use crate::config::PoolConfig;
use crate::config::experiment::{
    DEFAULT_ALPHA, DEFAULT_MIN_SAMPLES, Experiment, ExperimentMetric, ExperimentMode,
    ExperimentUnit, MAX_EXPERIMENTS, MAX_SEED_LEN, MAX_VARIANTS, Variant,
};
use crate::name::Name;

const EXPERIMENT_KEYS: &str =
    "name pool seed unit start stop metric min_samples alpha mode variants";
const VARIANT_KEYS: &str = "name weight goal floor ceiling threshold marginal_gain \
    exploration_rate exploration_band learning verify";
/// The keys of a variant that override the pool's settings.
const OVERRIDE_KEYS: &str = "goal floor ceiling threshold marginal_gain exploration_rate \
    exploration_band learning verify";
const MIN_SAMPLES: u64 = 100;
const MAX_SAMPLES: u64 = 1_000_000_000;
/// Weights are percentages; their sum may be off by this much from 100.
const WEIGHT_SLACK: f64 = 1e-6;

/// Reads the `experiments` array against the resolved `pools`, reporting every problem; only
/// experiments without any are returned.
pub(super) fn read_experiments(
    report: &mut Report,
    value: Option<&Value>,
    pools: &BTreeMap<Name, PoolConfig>,
) -> Vec<Experiment> {
    let items = match value {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            report.push(
                "experiments",
                render(other),
                "an array of tables ([[experiments]])",
            );
            return Vec::new();
        }
    };
    if items.len() > MAX_EXPERIMENTS {
        report.push(
            "experiments",
            format!("{} experiments", items.len()),
            format!("at most {MAX_EXPERIMENTS} experiments"),
        );
        return Vec::new();
    }
    let mut names = HashSet::new();
    let mut experiments = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("experiments[{i}]");
        let Value::Table(table) = item else {
            report.push(path, render(item), "a table with name, pool and variants");
            continue;
        };
        let sec = Section { table, path };
        let before = report.0.len();
        let experiment = read_experiment(report, &sec, pools);
        let Some(experiment) = experiment.filter(|_| report.0.len() == before) else {
            continue;
        };
        if !names.insert(experiment.name) {
            report.push(
                sec.key_path("name"),
                render_str(experiment.name.as_str()),
                "a name no other experiment has",
            );
        } else if let Some(other) = experiments
            .iter()
            .find(|e: &&Experiment| e.pool == experiment.pool && overlap(e, &experiment))
        {
            report.push(
                sec.key_path("pool"),
                render_str(experiment.pool.as_str()),
                format!(
                    "a pool no other experiment splits at the same time (experiment \"{}\" does)",
                    other.name
                ),
            );
        } else {
            experiments.push(experiment);
        }
    }
    experiments
}

fn read_experiment(
    report: &mut Report,
    sec: &Section<'_>,
    pools: &BTreeMap<Name, PoolConfig>,
) -> Option<Experiment> {
    sec.unknown_keys(report, EXPERIMENT_KEYS);
    let name = sec.required(
        report,
        "name",
        &format!("a name of {NAME_RULES}"),
        read_name,
    );
    let pool = sec.required(report, "pool", "a configured pool", read_name);
    let pool_config = match &pool {
        Some(p) => {
            let found = pools.get(p);
            if found.is_none() {
                let mut known: Vec<&str> = pools.keys().map(Name::as_str).collect();
                known.sort_unstable();
                report.push(
                    sec.key_path("pool"),
                    render_str(p.as_str()),
                    format!("a configured pool: {}", known.join(", ")),
                );
            }
            found
        }
        None => None,
    };
    let seed = sec.read(report, "seed", read_seed);
    let unit = sec
        .read(
            report,
            "unit",
            one_of::<ExperimentUnit>(ExperimentUnit::NAMES),
        )
        .unwrap_or(ExperimentUnit::Session);
    let start = sec.read(report, "start", read_instant);
    let stop = sec.read(report, "stop", read_instant);
    if let (Some(start), Some(stop)) = (start, stop)
        && stop <= start
    {
        report.push(
            sec.key_path("stop"),
            render(&sec.table["stop"]),
            format!("a time after the start ({})", render(&sec.table["start"])),
        );
    }
    let metric = sec
        .read(
            report,
            "metric",
            one_of::<ExperimentMetric>(ExperimentMetric::NAMES),
        )
        .unwrap_or(ExperimentMetric::MeanLatency);
    let min_samples = sec
        .read(report, "min_samples", read_samples)
        .unwrap_or(DEFAULT_MIN_SAMPLES);
    let alpha = sec
        .read(report, "alpha", read_number(Range::Above(0.0, 0.5)))
        .unwrap_or(DEFAULT_ALPHA);
    let mode = sec
        .read(
            report,
            "mode",
            one_of::<ExperimentMode>(ExperimentMode::NAMES),
        )
        .unwrap_or(ExperimentMode::Sequential);
    let variants = read_variants(report, sec, pool_config);
    Some(Experiment {
        seed: seed.or_else(|| name.as_ref().map(|n| n.as_str().to_string()))?,
        name: name?,
        pool: pool?,
        unit,
        start_unix_ms: start,
        stop_unix_ms: stop,
        metric,
        min_samples,
        alpha,
        mode,
        variants: variants?,
    })
}

/// Reads the variants; `pool` is the experiment's pool when it is configured.
fn read_variants(
    report: &mut Report,
    sec: &Section<'_>,
    pool: Option<&PoolConfig>,
) -> Option<Vec<Variant>> {
    let path = sec.key_path("variants");
    let expected = format!(
        "2 to {MAX_VARIANTS} variants ([[experiments.variants]]), the control first, each with a \
         name and a weight in percent"
    );
    let items = match sec.table.get("variants") {
        Some(Value::Array(items)) if (2..=MAX_VARIANTS).contains(&items.len()) => items,
        Some(Value::Array(items)) => {
            report.push(path, format!("{} variants", items.len()), expected);
            return None;
        }
        Some(other) => {
            report.push(path, render(other), expected);
            return None;
        }
        None => {
            report.push(path, super::MISSING, expected);
            return None;
        }
    };
    let mut variants = Vec::new();
    let mut seen = HashSet::new();
    let mut all_valid = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Value::Table(table) = item else {
            report.push(item_path, render(item), "a table with name and weight");
            all_valid = false;
            continue;
        };
        let vsec = Section {
            table,
            path: item_path,
        };
        vsec.unknown_keys(report, VARIANT_KEYS);
        let name = vsec.required(
            report,
            "name",
            &format!("a name of {NAME_RULES}"),
            read_name,
        );
        if let Some(n) = &name
            && !seen.insert(*n)
        {
            report.push(
                vsec.key_path("name"),
                render_str(n.as_str()),
                "a name no other variant of this experiment has",
            );
        }
        let weight = vsec.required(
            report,
            "weight",
            "a share of the traffic in percent, above 0 and at most 100",
            read_number(Range::Above(0.0, 100.0)),
        );
        let overrides: Vec<String> = OVERRIDE_KEYS
            .split_whitespace()
            .filter(|k| vsec.has(k))
            .map(str::to_string)
            .collect();
        let settings = pool.map(|p| {
            let (settings, sizes) = read_settings(report, &vsec, p.settings);
            if sizes.valid {
                check_bounds(report, &vsec.path, &settings, &sizes, "(from the pool)");
            }
            settings
        });
        match (name, weight, settings) {
            (Some(name), Some(weight), Some(settings)) => variants.push(Variant {
                name,
                weight: weight / 100.0,
                settings,
                overrides,
            }),
            _ => all_valid = false,
        }
    }
    if !all_valid {
        return None;
    }
    let total: f64 = variants.iter().map(|v| v.weight * 100.0).sum();
    if (total - 100.0).abs() > WEIGHT_SLACK {
        report.push(
            path,
            format!("weights summing to {total}"),
            "weights summing to 100 (percent)",
        );
        return None;
    }
    Some(variants)
}

/// Whether two experiments run at the same time at some point (an open end runs forever).
fn overlap(a: &Experiment, b: &Experiment) -> bool {
    let starts_before_end = |x: &Experiment, y: &Experiment| match (x.start_unix_ms, y.stop_unix_ms)
    {
        (Some(start), Some(stop)) => start < stop,
        _ => true,
    };
    starts_before_end(a, b) && starts_before_end(b, a)
}

fn read_name(v: &Value) -> Result<Name, String> {
    v.as_str()
        .and_then(|s| Name::new(s).ok())
        .ok_or_else(|| format!("a name of {NAME_RULES}"))
}

fn read_seed(v: &Value) -> Result<String, String> {
    match v.as_str() {
        Some(s) if !s.is_empty() && s.len() <= MAX_SEED_LEN => Ok(s.to_string()),
        _ => Err(format!("a seed of 1 to {MAX_SEED_LEN} bytes")),
    }
}

fn read_samples(v: &Value) -> Result<u64, String> {
    v.as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .filter(|n| (MIN_SAMPLES..=MAX_SAMPLES).contains(n))
        .ok_or_else(|| format!("a whole number of samples from {MIN_SAMPLES} to {MAX_SAMPLES}"))
}

/// Reads a point in time: an RFC 3339 date and time in UTC, as a TOML date-time or a string.
fn read_instant(v: &Value) -> Result<u64, String> {
    const EXPECTED: &str = "an RFC 3339 date and time in UTC, like 2026-12-01T09:00:00Z";
    let text = match v {
        Value::Datetime(d) => d.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(EXPECTED.to_string()),
    };
    humantime::parse_rfc3339(&text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .ok_or_else(|| EXPECTED.to_string())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::experiment::{ExperimentMetric, ExperimentMode};

    const BASE: &str = r#"
version = 1

[pools.ml]
threshold = "8MiB"
"#;

    fn parse(experiments: &str) -> Result<Config, Vec<String>> {
        Config::from_toml_str(&format!("{BASE}\n{experiments}"))
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn an_experiment_resolves_its_variants_against_the_pool() {
        let config = parse(
            r#"
[[experiments]]
name = "lower-threshold"
pool = "ml"
start = 2026-12-01T09:00:00Z
stop = "2026-12-08T09:00:00Z"
metric = "p95_latency"
mode = "fixed"
min_samples = 5000
alpha = 0.01

[[experiments.variants]]
name = "control"
weight = 50

[[experiments.variants]]
name = "low"
weight = 50
threshold = "2MiB"
learning = false
"#,
        )
        .unwrap();
        let [e] = config.experiments.as_slice() else {
            panic!("one experiment, got {:?}", config.experiments);
        };
        assert_eq!(e.name.as_str(), "lower-threshold");
        assert_eq!(e.seed, "lower-threshold", "the seed defaults to the name");
        assert_eq!(e.pool.as_str(), "ml");
        assert_eq!(e.metric, ExperimentMetric::P95Latency);
        assert_eq!(e.mode, ExperimentMode::Fixed);
        assert_eq!((e.min_samples, e.alpha), (5000, 0.01));
        assert_eq!(e.start_unix_ms, Some(1_796_115_600_000));
        assert_eq!(e.stop_unix_ms, Some(1_796_115_600_000 + 7 * 86_400_000));
        assert!(!e.active_at(1_796_115_600_000 - 1));
        assert!(e.active_at(1_796_115_600_000));
        assert!(!e.active_at(1_796_115_600_000 + 7 * 86_400_000));
        let pool = config.pools[&e.pool].settings;
        assert_eq!(
            e.control().settings,
            pool,
            "the control is the pool as configured"
        );
        assert!(e.control().overrides.is_empty());
        let low = &e.variants[1];
        assert_eq!(low.weight, 0.5);
        assert_eq!(low.settings.threshold, 2 << 20);
        assert!(!low.settings.learning);
        assert_eq!(
            low.settings.floor, pool.floor,
            "what it does not set is the pool's"
        );
        assert_eq!(low.overrides, ["threshold", "learning"]);
    }

    #[test]
    fn the_defaults_are_sequential_mean_latency_at_ten_thousand_samples() {
        let config = parse(
            r#"
[[experiments]]
name = "aa"
pool = "default"
variants = [{ name = "a", weight = 50 }, { name = "b", weight = 50 }]
"#,
        )
        .unwrap();
        let e = &config.experiments[0];
        assert_eq!(e.metric, ExperimentMetric::MeanLatency);
        assert_eq!(e.mode, ExperimentMode::Sequential);
        assert_eq!((e.min_samples, e.alpha), (10_000, 0.05));
        assert_eq!((e.start_unix_ms, e.stop_unix_ms), (None, None));
    }

    #[test]
    fn every_problem_of_every_experiment_is_reported_at_once() {
        let errors = parse(
            r#"
[[experiments]]
name = "bad one"
pool = "nope"
unit = "user"
start = "2026-12-08T00:00:00Z"
stop = "2026-12-01T00:00:00Z"
metric = "speed"
alpha = 0.9
min_samples = 10
mode = "bayesian"
colour = "red"
variants = [{ name = "a", weight = 60 }, { name = "a", weight = 30, threshold = "huge" }]

[[experiments]]
name = "weights"
pool = "ml"
variants = [{ name = "a", weight = 60 }, { name = "b", weight = 30, floor = "16MiB" }]

[[experiments]]
name = "one"
pool = "ml"
variants = [{ name = "a", weight = 100 }]
"#,
        )
        .unwrap_err();
        let expect = [
            "experiments[0].name: got \"bad one\", expected a name of",
            "experiments[0].pool: got \"nope\", expected a configured pool: default, ml",
            "experiments[0].unit: got \"user\", expected one of session",
            "experiments[0].stop: got \"2026-12-01T00:00:00Z\", expected a time after the start",
            "experiments[0].metric: got \"speed\", expected one of mean_latency, p95_latency",
            "experiments[0].alpha: got 0.9, expected a number above 0 and at most 0.5",
            "experiments[0].min_samples: got 10, expected a whole number of samples from 100",
            "experiments[0].mode: got \"bayesian\", expected one of sequential, fixed",
            "experiments[0].colour: got \"red\", expected a known key",
            "experiments[0].variants[1].name: got \"a\", expected a name no other variant",
            "experiments[1].variants[1].floor: got \"16MiB\", expected a floor no larger than the threshold (8MiB)",
            "experiments[2].variants: got 1 variants, expected 2 to 8 variants",
        ];
        for e in expect {
            assert!(
                errors.iter().any(|got| got.starts_with(e)),
                "missing {e:?} in {errors:#?}"
            );
        }
    }

    #[test]
    fn weights_must_sum_to_a_hundred_and_names_be_unique() {
        let errors = parse(
            r#"
[[experiments]]
name = "x"
pool = "ml"
variants = [{ name = "a", weight = 60 }, { name = "b", weight = 30 }]

[[experiments]]
name = "y"
pool = "ml"
variants = [{ name = "a", weight = 50 }, { name = "b", weight = 50 }]

[[experiments]]
name = "y"
pool = "ml"
variants = [{ name = "a", weight = 50 }, { name = "b", weight = 50 }]
"#,
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "experiments[0].variants: got weights summing to 90, expected weights summing to 100 (percent)",
                "experiments[2].name: got \"y\", expected a name no other experiment has",
            ]
        );
    }

    #[test]
    fn a_changed_experiment_is_one_line_of_the_diff() {
        let experiment = |threshold: &str| {
            format!(
                r#"
[[experiments]]
name = "x"
pool = "ml"
variants = [{{ name = "control", weight = 50 }}, {{ name = "low", weight = 50, threshold = "{threshold}" }}]
"#
            )
        };
        let (a, b) = (
            parse(&experiment("2MiB")).unwrap(),
            parse(&experiment("4MiB")).unwrap(),
        );
        let changes: Vec<String> = a.changes_to(&b).iter().map(|c| c.to_string()).collect();
        let line = |t: &str| {
            format!(
                "pool ml, control 50 %, low 50 % (threshold {t}), mean_latency, sequential, \
                 alpha 0.05, 10000 samples, seed \"x\", start (none), stop (none)"
            )
        };
        assert_eq!(
            changes,
            [format!(
                "experiments[\"x\"]: {} -> {}",
                line("2 MiB"),
                line("4 MiB")
            )]
        );
        let none = parse("").unwrap();
        let added: Vec<String> = none.changes_to(&a).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            added,
            [format!("experiments[\"x\"]: (none) -> {}", line("2 MiB"))]
        );
        assert!(a.changes_to(&a).is_empty());
    }

    #[test]
    fn one_pool_runs_one_experiment_at_a_time() {
        let experiment = |name: &str, window: &str| {
            format!(
                "[[experiments]]\nname = \"{name}\"\npool = \"ml\"\n{window}\n\
                 variants = [{{ name = \"a\", weight = 50 }}, {{ name = \"b\", weight = 50 }}]\n"
            )
        };
        let week1 = "start = 2026-12-01T00:00:00Z\nstop = 2026-12-08T00:00:00Z";
        let week2 = "start = 2026-12-08T00:00:00Z\nstop = 2026-12-15T00:00:00Z";
        let config = parse(&(experiment("one", week1) + &experiment("two", week2))).unwrap();
        assert_eq!(config.experiments.len(), 2, "one after the other");
        let errors = parse(&(experiment("one", week1) + &experiment("always", ""))).unwrap_err();
        assert_eq!(
            errors,
            [
                "experiments[1].pool: got \"ml\", expected a pool no other experiment splits at the \
              same time (experiment \"one\" does)"
            ]
        );
    }
}
