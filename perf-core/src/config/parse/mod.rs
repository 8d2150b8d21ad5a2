//! Reading and validating the TOML configuration: the entry point, the errors, the top-level walk.
//!
//! The text is parsed into a [`toml::Table`] and walked by hand, so that every
//! problem in the file is collected and reported at once, each with its key
//! path, the value as written and what was expected there.

mod experiments;
mod pools;
mod render;
mod rules;
mod section;
mod values;

use std::fmt;

use toml::{Table, Value};

use self::experiments::read_experiments;
use self::pools::{PoolDraft, SizesWritten, check_bounds, read_pool, read_settings};
use self::render::{join, render};
use self::rules::{check_effective_rules, read_rules};
use self::section::{Section, sorted_entries};
use self::values::{Range, read_number, read_size};
use super::{
    Adaptation, CONFIG_VERSION, Config, CostCoefficients, MAX_CONFIG_BYTES, MAX_OTLP_ENDPOINT,
    MAX_POOLS, MAX_RULES, MonitorSettings, PoolConfig, PoolSettings,
};
use crate::name::Name;
use crate::size::config_size;

/// One problem in a configuration: where, what came, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path, e.g. `pools.ml.goal`.
    pub path: String,
    /// The offending value as written, or `(missing)`.
    pub value: String,
    /// What was expected there.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: got {}, expected {}",
            self.path, self.value, self.expected
        )
    }
}

/// Every problem found in a configuration; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

// The keys each table accepts, separated by single spaces.
const TOP_KEYS: &str = "version profile defaults adaptation costs monitor rules pools experiments";
const PROFILE_KEYS: &str = "version costs measured";
/// The longest profile path accepted, in bytes.
const MAX_PROFILE_PATH: usize = 4096;
const SETTINGS_KEYS: &str =
    "goal floor ceiling threshold marginal_gain exploration_rate exploration_band learning verify";
const ADAPTATION_KEYS: &str = "max_step min_factor max_factor cpu_high memory_high \
    predictor_min_confidence classifier_min_confidence exploration_min_share";
const COST_KEYS: &str = "grpc_call_us grpc_ns_per_byte grpc_cached_ns_per_byte grpc_cache_bytes \
    grpc_cpu_share grpc_memory_factor zero_copy_notify_us memcpy_ns_per_byte segment_create_us \
    page_fault_us segment_cleanup_us pool_return_us";

const MONITOR_KEYS: &str =
    "decision_sample_rate otlp_endpoint otlp_interval_secs otlp_timeout_secs";

const MISSING: &str = "(missing)";
const MAX_COST: f64 = 1e9;

pub(super) fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_with(text, read_config)
}

/// Reads a calibration profile: `version = 1`, a `[costs]` table, and an
/// optional free-form `[measured]` table describing the run that made it.
pub(super) fn parse_profile(text: &str) -> Result<CostCoefficients, ConfigErrors> {
    parse_with(text, |report, top| {
        read_version(report, top);
        let costs = match top.table(report, "costs") {
            Some(sec) => read_costs(report, &sec),
            None => {
                report.push("costs", MISSING, "a [costs] table");
                CostCoefficients::default()
            }
        };
        top.table(report, "measured");
        top.unknown_keys(report, PROFILE_KEYS);
        costs
    })
}

fn parse_with<T>(
    text: &str,
    read: impl FnOnce(&mut Report, &Section<'_>) -> T,
) -> Result<T, ConfigErrors> {
    let mut report = Report::default();
    if text.len() > MAX_CONFIG_BYTES {
        report.push(
            "(file)",
            format!("{} bytes", text.len()),
            format!(
                "at most {MAX_CONFIG_BYTES} bytes ({})",
                config_size(MAX_CONFIG_BYTES as u64)
            ),
        );
        return Err(ConfigErrors(report.0));
    }
    let table = match text.parse::<Table>() {
        Ok(table) => table,
        Err(e) => {
            report.0.push(syntax_error(text, &e));
            return Err(ConfigErrors(report.0));
        }
    };
    let it = read(&mut report, &Section::top(&table));
    if report.0.is_empty() {
        Ok(it)
    } else {
        Err(ConfigErrors(report.0))
    }
}

/// Turns a TOML syntax error into one error for the whole file.
fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().to_lowercase();
    let (what, expected) = match message.split_once(", expected ") {
        Some((what, expected)) => (what.to_string(), expected.to_string()),
        None => (message.clone(), "valid toml".to_string()),
    };
    let at = match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let before = text.as_bytes().get(..start).unwrap_or_default();
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&before[line_start..])
                .chars()
                .count()
                + 1;
            format!(" at line {line}, column {column}")
        }
        None => String::new(),
    };
    ConfigError {
        path: "(file)".to_string(),
        value: format!("invalid toml{at} ({what})"),
        expected,
    }
}

/// The errors found so far.
#[derive(Default)]
struct Report(Vec<ConfigError>);

impl Report {
    fn push(
        &mut self,
        path: impl Into<String>,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.0.push(ConfigError {
            path: path.into(),
            value: value.into(),
            expected: expected.into(),
        });
    }
}

fn read_version(report: &mut Report, top: &Section<'_>) {
    match top.table.get("version") {
        None => report.push("version", MISSING, CONFIG_VERSION.to_string()),
        Some(Value::Integer(v)) if *v == CONFIG_VERSION => {}
        Some(Value::Integer(v)) if *v > CONFIG_VERSION => report.push(
            "version",
            v.to_string(),
            format!("{CONFIG_VERSION} (this file is from a newer perfopt)"),
        ),
        Some(other) => report.push("version", render(other), CONFIG_VERSION.to_string()),
    }
}

fn read_profile_path(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_PROFILE_PATH && !s.contains('\0') => {
            Ok(s.clone())
        }
        _ => Err(format!(
            "the path of a calibration profile, 1 to {MAX_PROFILE_PATH} bytes"
        )),
    }
}

fn read_config(report: &mut Report, top: &Section<'_>) -> Config {
    read_version(report, top);
    let profile = top.read(report, "profile", read_profile_path);
    if profile.is_some() && top.has("costs") {
        report.push(
            "profile",
            render(&top.table["profile"]),
            "either a profile or a [costs] table, not both",
        );
    }

    let defaults_section = top.table(report, "defaults");
    let (defaults, defaults_sizes) = match &defaults_section {
        Some(sec) => {
            let (settings, sizes) = read_settings(report, sec, PoolSettings::default());
            sec.unknown_keys(report, SETTINGS_KEYS);
            if sizes.valid {
                check_bounds(report, &sec.path, &settings, &sizes, "(built-in default)");
            }
            (settings, sizes)
        }
        None => (PoolSettings::default(), SizesWritten::none()),
    };
    let adaptation = match top.table(report, "adaptation") {
        Some(sec) => read_adaptation(report, &sec),
        None => Adaptation::default(),
    };
    let costs = match top.table(report, "costs") {
        Some(sec) => read_costs(report, &sec),
        None => CostCoefficients::default(),
    };

    let monitor = match top.table(report, "monitor") {
        Some(sec) => read_monitor(report, &sec),
        None => MonitorSettings::default(),
    };

    let pools_section = top.table(report, "pools");
    let mut configured: Vec<Name> = pools_section
        .iter()
        .flat_map(|sec| sec.table.keys())
        .filter_map(|key| Name::new(key).ok())
        .collect();
    if !configured.contains(&Name::DEFAULT_POOL) {
        configured.push(Name::DEFAULT_POOL);
    }
    configured.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    let global = read_rules(report, top.table.get("rules"), "rules", Some(&configured));

    let mut pools: Vec<PoolDraft> = Vec::new();
    if let Some(sec) = &pools_section {
        for (key, _) in sorted_entries(sec.table) {
            pools.extend(read_pool(report, sec, key, defaults, defaults_sizes.valid));
        }
    }
    if !pools.iter().any(|p| p.name == Name::DEFAULT_POOL) {
        pools.push(PoolDraft {
            name: Name::DEFAULT_POOL,
            path: join("pools", "default"),
            settings: defaults,
            rules: Vec::new(),
        });
        pools.sort_unstable_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    }
    let n_pools = pools_section.as_ref().map_or(0, |sec| sec.table.len())
        + usize::from(!pools_section.as_ref().is_some_and(|sec| sec.has("default")));
    if n_pools > MAX_POOLS {
        report.push(
            "pools",
            format!("{n_pools} pools"),
            format!("at most {MAX_POOLS} pools, counting default"),
        );
    } else if global.len() <= MAX_RULES {
        check_effective_rules(report, &pools, &global);
    }
    top.unknown_keys(report, TOP_KEYS);

    let pools = pools
        .into_iter()
        .map(|p| {
            let rules = p.rules.into_iter().filter_map(|d| d.rule).collect();
            let config = PoolConfig {
                settings: p.settings,
                rules,
            };
            (p.name, config)
        })
        .collect();
    let experiments = read_experiments(report, top.table.get("experiments"), &pools);
    Config {
        profile,
        defaults,
        adaptation,
        costs,
        monitor,
        rules: global.into_iter().filter_map(|d| d.rule).collect(),
        pools,
        experiments,
    }
}

fn read_adaptation(report: &mut Report, sec: &Section<'_>) -> Adaptation {
    let mut a = Adaptation::default();
    let fields = [
        ("max_step", &mut a.max_step, Range::Above(0.0, 1.0)),
        ("min_factor", &mut a.min_factor, Range::Above(0.0, 1.0)),
        ("max_factor", &mut a.max_factor, Range::Closed(1.0, 100.0)),
        ("cpu_high", &mut a.cpu_high, Range::Above(0.0, 1.0)),
        ("memory_high", &mut a.memory_high, Range::Above(0.0, 1.0)),
        (
            "predictor_min_confidence",
            &mut a.predictor_min_confidence,
            Range::Closed(0.0, 1.0),
        ),
        (
            "classifier_min_confidence",
            &mut a.classifier_min_confidence,
            Range::Closed(0.5, 1.0),
        ),
        (
            "exploration_min_share",
            &mut a.exploration_min_share,
            Range::Closed(0.0, 1.0),
        ),
    ];
    for (key, slot, range) in fields {
        if let Some(x) = sec.read(report, key, read_number(range)) {
            *slot = x;
        }
    }
    sec.unknown_keys(report, ADAPTATION_KEYS);
    a
}

fn read_costs(report: &mut Report, sec: &Section<'_>) -> CostCoefficients {
    let mut c = CostCoefficients::default();
    let cost = Range::Closed(0.0, MAX_COST);
    let fields = [
        ("grpc_call_us", &mut c.grpc_call_us, cost),
        ("grpc_ns_per_byte", &mut c.grpc_ns_per_byte, cost),
        (
            "grpc_cached_ns_per_byte",
            &mut c.grpc_cached_ns_per_byte,
            cost,
        ),
        (
            "grpc_cpu_share",
            &mut c.grpc_cpu_share,
            Range::Closed(0.0, 1.0),
        ),
        ("grpc_memory_factor", &mut c.grpc_memory_factor, cost),
        ("zero_copy_notify_us", &mut c.zero_copy_notify_us, cost),
        ("memcpy_ns_per_byte", &mut c.memcpy_ns_per_byte, cost),
        ("segment_create_us", &mut c.segment_create_us, cost),
        ("page_fault_us", &mut c.page_fault_us, cost),
        ("segment_cleanup_us", &mut c.segment_cleanup_us, cost),
        ("pool_return_us", &mut c.pool_return_us, cost),
    ];
    for (key, slot, range) in fields {
        if let Some(x) = sec.read(report, key, read_number(range)) {
            *slot = x;
        }
    }
    if let Some(n) = sec.read(report, "grpc_cache_bytes", read_size) {
        c.grpc_cache_bytes = n;
    }
    sec.unknown_keys(report, COST_KEYS);
    c
}

fn read_monitor(report: &mut Report, sec: &Section<'_>) -> MonitorSettings {
    let mut m = MonitorSettings::default();
    if let Some(x) = sec.read(
        report,
        "decision_sample_rate",
        read_number(Range::Closed(0.0, 1.0)),
    ) {
        m.decision_sample_rate = x;
    }
    if let Some(endpoint) = sec.read(report, "otlp_endpoint", read_endpoint) {
        m.otlp_endpoint = endpoint;
    }
    let seconds = [
        ("otlp_interval_secs", &mut m.otlp_interval_secs, 3600),
        ("otlp_timeout_secs", &mut m.otlp_timeout_secs, 60),
    ];
    for (key, slot, max) in seconds {
        if let Some(x) = sec.read(report, key, read_number(Range::Closed(1.0, max as f64))) {
            if x.fract() == 0.0 {
                *slot = x as u64;
            } else {
                report.push(
                    sec.key_path(key),
                    render(&sec.table[key]),
                    format!("a whole number of seconds from 1 to {max}"),
                );
            }
        }
    }
    sec.unknown_keys(report, MONITOR_KEYS);
    m
}

/// An OTLP endpoint: `http://host:port`, or `""` for none.
fn read_endpoint(v: &Value) -> Result<Option<String>, String> {
    let expected = || {
        format!(
            "an OTLP/gRPC endpoint \"http://host:port\" of at most {MAX_OTLP_ENDPOINT} bytes, or \"\" \
             for none"
        )
    };
    let text = v.as_str().ok_or_else(expected)?;
    if text.is_empty() {
        return Ok(None);
    }
    let authority = text.strip_prefix("http://").ok_or_else(expected)?;
    let fits = text.len() <= MAX_OTLP_ENDPOINT
        && !authority.is_empty()
        && !authority.starts_with(['/', ':'])
        && !text.chars().any(|c| c.is_whitespace() || c.is_control());
    if fits {
        Ok(Some(text.to_owned()))
    } else {
        Err(expected())
    }
}
