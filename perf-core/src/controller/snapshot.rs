//! One compiled policy version: pools, their rules in priority order and counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::{Config, ConfigError, ConfigErrors, PoolSettings};
use crate::decision::ReasonCode;
use crate::name::Name;
use crate::request::TransferRequest;
use crate::seams::DecisionFunction;
use crate::threshold::{AtomicF64, ThresholdManager};
use crate::vocab::{DataType, Format, Method};

/// Decisions counted per method and reason, for one pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecisionCounts {
    /// Total decisions.
    pub total: u64,
    /// Per method (`zero_copy`, `grpc`).
    pub by_method: BTreeMap<Method, u64>,
    /// Per method and reason, non-zero entries only.
    pub by_reason: BTreeMap<ReasonCode, BTreeMap<Method, u64>>,
}

/// Counter shards: threads count into different cache lines, so two threads
/// deciding at once do not fight over one.
const SHARDS: usize = 8;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard([[AtomicU64; ReasonCode::ALL.len()]; 2]);

#[derive(Debug, Default)]
pub(super) struct Counters([Shard; SHARDS]);

/// This thread's counter shard, assigned round-robin on first use.
fn shard_index() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SHARD: usize = (NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS as u64) as usize;
    }
    SHARD.with(|s| *s)
}

impl Counters {
    pub(super) fn count(&self, method: Method, reason: ReasonCode) {
        self.0[shard_index()].0[method.index()][reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn read(&self) -> DecisionCounts {
        let mut out = DecisionCounts::default();
        for method in [Method::ZeroCopy, Method::Grpc] {
            for code in ReasonCode::ALL {
                let n: u64 = self
                    .0
                    .iter()
                    .map(|s| s.0[method.index()][code.index()].load(Ordering::Relaxed))
                    .sum();
                if n > 0 {
                    out.total += n;
                    *out.by_method.entry(method).or_default() += n;
                    out.by_reason.entry(code).or_default().insert(method, n);
                }
            }
        }
        out
    }
}

/// A rule condition compiled to bit masks, so matching never allocates.
#[derive(Debug, Clone, Copy)]
pub(super) struct CompiledCondition {
    size_min: u64,
    size_max: u64,
    data_types: u32,
    formats: u32,
}

impl CompiledCondition {
    pub(super) fn matches(&self, r: &TransferRequest) -> bool {
        r.size >= self.size_min
            && r.size <= self.size_max
            && (self.data_types == 0 || self.data_types & (1 << r.data_type as u32) != 0)
            && (self.formats == 0 || self.formats & (1 << r.format as u32) != 0)
    }
}

#[derive(Clone)]
pub(super) enum RuleStep {
    Rule {
        name: Name,
        priority: i32,
        condition: CompiledCondition,
        method: Method,
    },
    Function {
        name: Name,
        priority: i32,
        function: Arc<dyn DecisionFunction>,
    },
}

impl RuleStep {
    pub(super) fn priority(&self) -> i32 {
        match self {
            RuleStep::Rule { priority, .. } | RuleStep::Function { priority, .. } => *priority,
        }
    }
}

#[derive(Clone)]
pub(super) struct PoolState {
    pub(super) name: Name,
    pub(super) settings: PoolSettings,
    pub(super) steps: Vec<RuleStep>,
    pub(super) history: Arc<AtomicF64>,
    pub(super) counters: Arc<Counters>,
}

/// An experiment of the configuration, compiled: its pool and one state per variant, each the
/// pool's rules, threshold history and counters with the variant's settings.
pub(super) struct ExperimentState {
    /// Its index in the configuration's experiments.
    pub(super) index: usize,
    pub(super) pool: Name,
    pub(super) variants: Vec<PoolState>,
}

/// One immutable policy version; reloads replace it whole.
pub(super) struct Snapshot {
    pub(super) version: u64,
    pub(super) config: Arc<Config>,
    pub(super) pools: Vec<PoolState>,
    pub(super) default_index: usize,
    pub(super) experiments: Vec<ExperimentState>,
}

impl Snapshot {
    pub(super) fn pool(&self, name: Name) -> (&PoolState, bool) {
        match self.pools.binary_search_by(|p| p.name.cmp(&name)) {
            Ok(i) => (&self.pools[i], true),
            Err(_) => (&self.pools[self.default_index], false),
        }
    }
}

/// A user-defined decision function with its place in the rule order.
#[derive(Clone)]
pub(super) struct RegisteredFunction {
    pub(super) name: Name,
    pub(super) priority: i32,
    pub(super) pools: Vec<Name>,
    pub(super) function: Arc<dyn DecisionFunction>,
}

pub(super) fn compile(
    version: u64,
    config: Config,
    functions: &[RegisteredFunction],
    thresholds: &ThresholdManager,
    counters: &Mutex<BTreeMap<Name, Arc<Counters>>>,
) -> Result<Snapshot, ConfigErrors> {
    let mut errors = Vec::new();
    let mut pools = Vec::with_capacity(config.pools.len());
    for (name, pool) in &config.pools {
        let mut steps: Vec<RuleStep> = config
            .rules_for(*name)
            .into_iter()
            .map(|r| RuleStep::Rule {
                name: r.name,
                priority: r.priority,
                condition: CompiledCondition {
                    size_min: r.condition.size_min.unwrap_or(0),
                    size_max: r.condition.size_max.unwrap_or(u64::MAX),
                    data_types: mask(r.condition.data_types.iter().map(|d| *d as u32)),
                    formats: mask(r.condition.formats.iter().map(|f| *f as u32)),
                },
                method: r.method,
            })
            .collect();
        for f in functions
            .iter()
            .filter(|f| f.pools.is_empty() || f.pools.contains(name))
        {
            if let Some(clash) = steps.iter().find(|s| s.priority() == f.priority) {
                let other = match clash {
                    RuleStep::Rule { name, .. } | RuleStep::Function { name, .. } => name,
                };
                errors.push(ConfigError {
                    path: format!("functions.{}.priority", f.name),
                    value: f.priority.to_string(),
                    expected: format!(
                        "a priority not used by rule \"{other}\" (both apply to pool {name})"
                    ),
                });
            }
            steps.push(RuleStep::Function {
                name: f.name,
                priority: f.priority,
                function: f.function.clone(),
            });
        }
        steps.sort_by_key(|s| std::cmp::Reverse(s.priority()));
        let counter = counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(*name)
            .or_default()
            .clone();
        pools.push(PoolState {
            name: *name,
            settings: pool.settings,
            steps,
            history: thresholds.cell(*name),
            counters: counter,
        });
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let default_index = pools
        .iter()
        .position(|p| p.name == Name::DEFAULT_POOL)
        .ok_or_else(|| {
            ConfigErrors(vec![ConfigError {
                path: "pools".into(),
                value: "(no default pool)".into(),
                expected: "a pool named default".into(),
            }])
        })?;
    let experiments = config
        .experiments
        .iter()
        .enumerate()
        .filter_map(|(index, e)| {
            let pool = pools.iter().find(|p| p.name == e.pool)?;
            let variants = e
                .variants
                .iter()
                .map(|v| PoolState {
                    settings: v.settings,
                    ..pool.clone()
                })
                .collect();
            Some(ExperimentState {
                index,
                pool: e.pool,
                variants,
            })
        })
        .collect();
    Ok(Snapshot {
        version,
        config: Arc::new(config),
        pools,
        default_index,
        experiments,
    })
}

fn mask(bits: impl Iterator<Item = u32>) -> u32 {
    bits.fold(0, |m, b| m | (1 << b))
}

const _: () = assert!(DataType::ALL.len() <= 32 && Format::ALL.len() <= 32);
