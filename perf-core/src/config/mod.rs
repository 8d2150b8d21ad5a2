//! The configuration: TOML `version = 1`, global defaults, cost coefficients, rules, pools and
//! experiments.
//!
//! [`Config::from_toml_str`] validates the whole file and reports every error at
//! once; a [`Config`] value is always valid, so applying one cannot fail half-way.

mod diff;
mod experiment;
mod parse;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::name::Name;
use crate::vocab::{DataType, Format, Goal, Method, Verification};

pub use diff::{Change, ConfigDiff, Flip, KeyChange};
pub use experiment::{
    DEFAULT_ALPHA, DEFAULT_MIN_SAMPLES, Experiment, ExperimentMetric, ExperimentMode,
    ExperimentUnit, MAX_EXPERIMENTS, MAX_SEED_LEN, MAX_VARIANTS, Variant,
};
pub use parse::{ConfigError, ConfigErrors};

/// The configuration version this build reads and writes.
pub const CONFIG_VERSION: i64 = 1;
/// At most this many pools may be configured, `default` included.
pub const MAX_POOLS: usize = 64;
/// At most this many rules may apply to one pool (its own plus global ones).
pub const MAX_RULES: usize = 64;
/// The longest OTLP endpoint accepted, in bytes.
pub const MAX_OTLP_ENDPOINT: usize = 2048;
/// The largest configuration file accepted, in bytes.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The default configuration, with a comment on every key.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default.toml");

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// A calibration profile (written by `perfopt bench`) whose `[costs]`
    /// replace the static coefficients; loaded by whoever reads files.
    pub profile: Option<String>,
    /// Settings every pool inherits unless it sets its own.
    pub defaults: PoolSettings,
    /// How thresholds adapt and how resources bend them.
    pub adaptation: Adaptation,
    /// Static cost coefficients of this machine.
    pub costs: CostCoefficients,
    /// What is told outside about the decisions and transfers.
    pub monitor: MonitorSettings,
    /// Rules that apply to every pool, or to the pools they list.
    pub rules: Vec<Rule>,
    /// The pools, always including `default`; each fully resolved against `defaults`.
    pub pools: BTreeMap<Name, PoolConfig>,
    /// A/B experiments between variants of a pool's settings (`[[experiments]]`).
    pub experiments: Vec<Experiment>,
}

/// The policy settings of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PoolSettings {
    /// What the pool optimises for.
    pub goal: Goal,
    /// Below this size, always gRPC (bytes).
    pub floor: u64,
    /// Above this size, always zero-copy (bytes).
    pub ceiling: u64,
    /// The base threshold from which zero-copy is used (bytes).
    pub threshold: u64,
    /// A zero-copy gain under this fraction picks gRPC, the simpler path.
    pub marginal_gain: f64,
    /// Share of decisions inside the ambiguous band that try the other method.
    pub exploration_rate: f64,
    /// The ambiguous band: sizes within this factor of the effective threshold.
    pub exploration_band: f64,
    /// Whether history may move the threshold and models may replace the
    /// static estimates.
    pub learning: bool,
    /// How much of a zero-copy payload the worker hashes for the host to check; by default
    /// [`Verification::Sampled`], which finds a wrong segment, offset or stale write for a
    /// fraction of a percent of the bytes (a full checksum reads the payload once more).
    pub verify: Verification,
}

/// The policy of one pool: its settings and its own rules.
pub type Policy = PoolConfig;

/// One pool: its settings and its own rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolConfig {
    /// The pool's settings, `defaults` filled in.
    pub settings: PoolSettings,
    /// Rules that apply only to this pool.
    pub rules: Vec<Rule>,
}

/// How thresholds adapt, and how load and memory pressure bend them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Adaptation {
    /// One adjustment moves a threshold by at most this fraction.
    pub max_step: f64,
    /// History may scale a threshold down to this factor at most.
    pub min_factor: f64,
    /// History may scale a threshold up to this factor at most.
    pub max_factor: f64,
    /// CPU utilisation from which CPU is scarce (0..1).
    pub cpu_high: f64,
    /// Memory use from which memory is scarce (0..1).
    pub memory_high: f64,
    /// A predictor's estimates replace the static ones from this confidence on.
    pub predictor_min_confidence: f64,
    /// A learned classifier's pick replaces the cost analysis from this confidence on.
    pub classifier_min_confidence: f64,
    /// Exploration shrinks as the policy grows sure, down to this share of
    /// `exploration_rate` (0..1; 1 keeps the rate flat).
    pub exploration_min_share: f64,
}

/// Static cost coefficients, measured on the machine (a calibration profile
/// written by `perfopt bench` replaces the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostCoefficients {
    /// Fixed cost of one gRPC call, both sides, in microseconds.
    pub grpc_call_us: f64,
    /// gRPC cost per payload byte (serialize, send, receive) beyond the first
    /// `grpc_cache_bytes`, in nanoseconds.
    pub grpc_ns_per_byte: f64,
    /// gRPC cost per byte for the first `grpc_cache_bytes`, which stay in cache.
    pub grpc_cached_ns_per_byte: f64,
    /// How many leading bytes of a message move at the cached rate.
    pub grpc_cache_bytes: u64,
    /// Fraction of the gRPC per-byte cost that is CPU work (the rest is waiting).
    pub grpc_cpu_share: f64,
    /// Extra memory gRPC holds per payload byte (encode and receive buffers).
    pub grpc_memory_factor: f64,
    /// Fixed cost of a zero-copy transfer: reference, token, notification; microseconds.
    pub zero_copy_notify_us: f64,
    /// Zero-copy's cost per payload byte, in nanoseconds: writing it into
    /// the segment (and, as `perfopt bench` measures it, the worker's read).
    pub memcpy_ns_per_byte: f64,
    /// Creating and mapping a fresh segment, in microseconds.
    pub segment_create_us: f64,
    /// First touch of one 4 KiB page of a fresh segment, in microseconds.
    pub page_fault_us: f64,
    /// Unlinking and unmapping a fresh segment, in microseconds.
    pub segment_cleanup_us: f64,
    /// Returning a pooled segment, in microseconds.
    pub pool_return_us: f64,
}

/// The `[monitor]` table: the decision audit log and the OTLP export.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorSettings {
    /// The fraction of decisions emitted as `tracing` events (the audit log), 0 to 1.
    pub decision_sample_rate: f64,
    /// The OTLP/gRPC collector the metrics are pushed to, `http://host:port`; `None` exports
    /// nothing by OTLP.
    pub otlp_endpoint: Option<String>,
    /// Seconds between two OTLP exports, 1 to 3600.
    pub otlp_interval_secs: u64,
    /// Seconds one OTLP export may take, 1 to 60.
    pub otlp_timeout_secs: u64,
}

/// A user rule: when its condition matches, it picks its method.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// The rule's name, unique where it is defined.
    pub name: Name,
    /// Higher priority rules are tried first; priorities are distinct per pool
    /// and lie in -1,000,000..=1,000,000.
    pub priority: i32,
    /// When the rule applies.
    pub condition: Condition,
    /// What it picks.
    pub method: Method,
}

/// When a rule applies; an empty list or a missing bound matches anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Condition {
    /// Smallest matching size (bytes, inclusive).
    pub size_min: Option<u64>,
    /// Largest matching size (bytes, inclusive).
    pub size_max: Option<u64>,
    /// Matching data types.
    pub data_types: Vec<DataType>,
    /// Matching formats.
    pub formats: Vec<Format>,
    /// Matching pools (global rules only).
    pub pools: Vec<Name>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            goal: Goal::MinimizeLatency,
            floor: 1 << 20,
            ceiling: 1 << 30,
            threshold: 10 << 20,
            marginal_gain: 0.05,
            exploration_rate: 0.05,
            exploration_band: 2.0,
            learning: true,
            verify: Verification::Sampled,
        }
    }
}

impl Default for Adaptation {
    fn default() -> Self {
        Adaptation {
            max_step: 0.25,
            min_factor: 0.25,
            max_factor: 4.0,
            cpu_high: 0.8,
            memory_high: 0.8,
            predictor_min_confidence: 0.8,
            classifier_min_confidence: 0.7,
            exploration_min_share: 0.2,
        }
    }
}

impl Default for MonitorSettings {
    /// One decision in a hundred in the audit log, no OTLP export.
    fn default() -> Self {
        MonitorSettings {
            decision_sample_rate: 0.01,
            otlp_endpoint: None,
            otlp_interval_secs: 15,
            otlp_timeout_secs: 10,
        }
    }
}

impl Default for CostCoefficients {
    /// Figures measured on a 2 vCPU VM (see DESIGN.md, transport physics).
    fn default() -> Self {
        CostCoefficients {
            grpc_call_us: 95.0,
            grpc_ns_per_byte: 1.1,
            grpc_cached_ns_per_byte: 0.34,
            grpc_cache_bytes: 2 << 20,
            grpc_cpu_share: 0.8,
            grpc_memory_factor: 2.0,
            zero_copy_notify_us: 45.0,
            memcpy_ns_per_byte: 0.05,
            segment_create_us: 20.0,
            page_fault_us: 2.6,
            segment_cleanup_us: 15.0,
            pool_return_us: 1.0,
        }
    }
}

impl CostCoefficients {
    /// These coefficients as a calibration profile that
    /// [`Config::parse_profile`] reads back; `measured` describes the run.
    pub fn to_profile_toml(&self, measured: toml::Table) -> String {
        let mut top = toml::Table::new();
        top.insert("version".into(), toml::Value::Integer(CONFIG_VERSION));
        let costs = toml::Table::try_from(self).unwrap_or_default();
        top.insert("costs".into(), toml::Value::Table(costs));
        top.insert("measured".into(), toml::Value::Table(measured));
        format!("# perfopt calibration profile: cost coefficients measured on this machine.\n{top}")
    }
}

impl Default for Config {
    fn default() -> Self {
        let defaults = PoolSettings::default();
        let mut pools = BTreeMap::new();
        pools.insert(
            Name::DEFAULT_POOL,
            PoolConfig {
                settings: defaults,
                rules: Vec::new(),
            },
        );
        Config {
            profile: None,
            defaults,
            adaptation: Adaptation::default(),
            costs: CostCoefficients::default(),
            monitor: MonitorSettings::default(),
            rules: Vec::new(),
            pools,
            experiments: Vec::new(),
        }
    }
}

impl Config {
    /// Reads and validates a TOML configuration, reporting every error at once.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        parse::parse(text)
    }

    /// Reads a calibration profile's cost coefficients, reporting every error.
    pub fn parse_profile(text: &str) -> Result<CostCoefficients, ConfigErrors> {
        parse::parse_profile(text)
    }

    /// The rules that apply to `pool`, its own and the global ones that match
    /// it, highest priority first.
    pub fn rules_for(&self, pool: Name) -> Vec<&Rule> {
        let own = self
            .pools
            .get(&pool)
            .map(|p| p.rules.as_slice())
            .unwrap_or(&[]);
        let mut rules: Vec<&Rule> = own
            .iter()
            .chain(
                self.rules
                    .iter()
                    .filter(|r| r.condition.pools.is_empty() || r.condition.pools.contains(&pool)),
            )
            .collect();
        rules.sort_by_key(|r| std::cmp::Reverse(r.priority));
        rules
    }
}
