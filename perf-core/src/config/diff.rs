//! What changes between two configurations, key by key, named and shown as people read the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::{
    Adaptation, Config, CostCoefficients, Experiment, MonitorSettings, PoolSettings, Rule,
};
use crate::controller::{Controller, ControllerError};
use crate::decision::ReasonCode;
use crate::name::Name;
use crate::request::{DecisionContext, Timestamp, TransferRequest};
use crate::size::HumanSize;
use crate::vocab::Method;

/// The sample sizes [`Config::diff`] decides in every pool: the powers of two from 1 KiB to
/// 1 GiB, as exponents.
const SAMPLE_SHIFTS: std::ops::RangeInclusive<u32> = 10..=30;

/// What a change from one configuration to another would do, before it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigDiff {
    /// Changed keys, pools and rules ([`Config::changes_to`]).
    pub keys: Vec<KeyChange>,
    /// Sample decisions whose method changes.
    pub flips: Vec<Flip>,
    /// How many sample decisions were compared.
    pub samples: usize,
}

/// One sample decision that a change of configuration flips to the other method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Flip {
    /// The pool.
    pub pool: Name,
    /// The sample size, bytes.
    pub size: u64,
    /// The method and the reason before.
    pub old: (Method, ReasonCode),
    /// The method and the reason after.
    pub new: (Method, ReasonCode),
}

/// One key, pool or rule that differs between two configurations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    /// Where, as the file writes it: `pools.ml.threshold`, `costs.grpc_call_us`; a rule is
    /// named by the name it is given, `rules["json-on-grpc"].priority`.
    pub path: String,
    /// What changes there.
    #[serde(flatten)]
    pub change: Change,
}

/// What changes at one [`KeyChange::path`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A key whose value changes; both values are written for people (`10 MiB`, `[json]`).
    Value {
        /// The value before.
        old: String,
        /// The value after.
        new: String,
    },
    /// A pool that only the new configuration has.
    PoolAdded,
    /// A pool that only the old configuration has.
    PoolRemoved,
    /// A rule that only the new configuration has.
    RuleAdded {
        /// The rule in one line: `priority 10, method grpc, formats [json]`.
        rule: String,
    },
    /// A rule that only the old configuration has.
    RuleRemoved {
        /// The rule in one line, as for [`Change::RuleAdded`].
        rule: String,
    },
}

impl fmt::Display for KeyChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.change {
            Change::Value { old, new } => write!(f, "{path}: {old} -> {new}"),
            Change::PoolAdded => write!(f, "{path}: pool added"),
            Change::PoolRemoved => write!(f, "{path}: pool removed"),
            Change::RuleAdded { rule } => write!(f, "{path}: rule added ({rule})"),
            Change::RuleRemoved { rule } => write!(f, "{path}: rule removed ({rule})"),
        }
    }
}

impl Config {
    /// What changing from this configuration to `new` would do: the changed keys
    /// ([`Config::changes_to`]), and the sample decisions that change method when a transfer
    /// of each power of two from 1 KiB to 1 GiB is decided in every pool of either side, on an
    /// idle machine with a pooled segment free (without exploration and without history).
    pub fn diff(&self, new: &Config) -> Result<ConfigDiff, ControllerError> {
        let before = Controller::new(self.clone())?;
        let after = Controller::new(new.clone())?;
        let mut pools: Vec<Name> = self.pools.keys().chain(new.pools.keys()).copied().collect();
        pools.sort();
        pools.dedup();
        let ctx = DecisionContext::idle(Timestamp(0));
        let mut flips = Vec::new();
        let mut samples = 0;
        for pool in pools {
            for shift in SAMPLE_SHIFTS {
                let request = TransferRequest::new(1 << shift).with_pool(pool);
                let (x, y) = (
                    before.preview(&request, &ctx),
                    after.preview(&request, &ctx),
                );
                samples += 1;
                if x.method != y.method {
                    flips.push(Flip {
                        pool,
                        size: request.size,
                        old: (x.method, x.reason.code()),
                        new: (y.method, y.reason.code()),
                    });
                }
            }
        }
        Ok(ConfigDiff {
            keys: self.changes_to(new),
            flips,
            samples,
        })
    }

    /// What changes from this configuration to `new`, sorted by path. Pool settings are
    /// compared after `[defaults]` is resolved into each pool, so a changed default also shows
    /// in every pool that inherits it. A pool on one side only is one line, followed by the
    /// settings it sets apart from that side's `[defaults]` and by its rules; rules are matched
    /// by name, so reordering them changes nothing.
    pub fn changes_to(&self, new: &Config) -> Vec<KeyChange> {
        let mut out = Vec::new();
        let profile = |c: &Config| c.profile.clone().unwrap_or_else(|| NONE.to_string());
        compare(
            &mut out,
            "",
            &[("profile", profile(self))],
            &[("profile", profile(new))],
        );
        compare(
            &mut out,
            "defaults",
            &settings(&self.defaults),
            &settings(&new.defaults),
        );
        compare(
            &mut out,
            "adaptation",
            &adaptation(&self.adaptation),
            &adaptation(&new.adaptation),
        );
        compare(&mut out, "costs", &costs(&self.costs), &costs(&new.costs));
        compare(
            &mut out,
            "monitor",
            &monitor(&self.monitor),
            &monitor(&new.monitor),
        );
        compare_rules(&mut out, "rules", &self.rules, &new.rules);
        let names: BTreeSet<&Name> = self.pools.keys().chain(new.pools.keys()).collect();
        for name in names {
            let path = format!("pools.{}", key(name.as_str()));
            let rules_path = format!("{path}.rules");
            match (self.pools.get(name), new.pools.get(name)) {
                (Some(a), Some(b)) => {
                    compare(
                        &mut out,
                        &path,
                        &settings(&a.settings),
                        &settings(&b.settings),
                    );
                    compare_rules(&mut out, &rules_path, &a.rules, &b.rules);
                }
                (None, Some(b)) => {
                    out.push(KeyChange {
                        path: path.clone(),
                        change: Change::PoolAdded,
                    });
                    compare_with_defaults(&mut out, &path, &new.defaults, &b.settings, true);
                    compare_rules(&mut out, &rules_path, &[], &b.rules);
                }
                (Some(a), None) => {
                    out.push(KeyChange {
                        path: path.clone(),
                        change: Change::PoolRemoved,
                    });
                    compare_with_defaults(&mut out, &path, &self.defaults, &a.settings, false);
                    compare_rules(&mut out, &rules_path, &a.rules, &[]);
                }
                (None, None) => {}
            }
        }
        compare_experiments(&mut out, &self.experiments, &new.experiments);
        out.sort_by(|x, y| x.path.cmp(&y.path));
        out
    }
}

/// One line per experiment added, removed or changed, matched by name.
fn compare_experiments(out: &mut Vec<KeyChange>, old: &[Experiment], new: &[Experiment]) {
    let names: BTreeSet<&str> = old.iter().chain(new).map(|e| e.name.as_str()).collect();
    let find = |side: &[Experiment], name: &str| {
        side.iter()
            .find(|e| e.name.as_str() == name)
            .map(experiment_line)
    };
    for name in names {
        let (a, b) = (find(old, name), find(new, name));
        if a != b {
            out.push(KeyChange {
                path: format!("experiments[\"{name}\"]"),
                change: Change::Value {
                    old: a.unwrap_or_else(|| NONE.to_string()),
                    new: b.unwrap_or_else(|| NONE.to_string()),
                },
            });
        }
    }
}

/// An experiment in one line: `pool ml, control 50 %, low 50 % (threshold 2 MiB), mean_latency,
/// sequential, alpha 0.05, 10000 samples`.
fn experiment_line(e: &Experiment) -> String {
    let variants: Vec<String> = e
        .variants
        .iter()
        .map(|v| {
            let set = settings(&v.settings);
            let overrides: Vec<String> = set
                .iter()
                .filter(|(k, _)| v.overrides.iter().any(|o| o == k))
                .map(|(k, value)| format!("{k} {value}"))
                .collect();
            let weight = v.weight * 100.0;
            if overrides.is_empty() {
                format!("{} {weight} %", v.name)
            } else {
                format!("{} {weight} % ({})", v.name, overrides.join(", "))
            }
        })
        .collect();
    let window = |t: Option<u64>| {
        t.map_or_else(
            || NONE.to_string(),
            |ms| {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                humantime::format_rfc3339_seconds(at).to_string()
            },
        )
    };
    format!(
        "pool {}, {}, {}, {}, alpha {}, {} samples, seed {:?}, start {}, stop {}",
        e.pool,
        variants.join(", "),
        e.metric,
        e.mode,
        e.alpha,
        e.min_samples,
        e.seed,
        window(e.start_unix_ms),
        window(e.stop_unix_ms),
    )
}

/// Shown for a key that is not set: no profile, no size bound.
const NONE: &str = "(none)";

/// The keys of one table and their values, as [`compare`] takes them.
type Keys = [(&'static str, String)];

/// Pushes a change for every key whose value differs; both sides list the same keys.
fn compare(out: &mut Vec<KeyChange>, prefix: &str, old: &Keys, new: &Keys) {
    for ((key, a), (_, b)) in old.iter().zip(new) {
        if a != b {
            let path = if prefix.is_empty() {
                (*key).to_string()
            } else {
                format!("{prefix}.{key}")
            };
            out.push(KeyChange {
                path,
                change: Change::Value {
                    old: a.clone(),
                    new: b.clone(),
                },
            });
        }
    }
}

/// Compares two lists of rules, matching them by name.
fn compare_rules(out: &mut Vec<KeyChange>, prefix: &str, old: &[Rule], new: &[Rule]) {
    let by_name = |rules: &[Rule]| -> BTreeMap<Name, Rule> {
        rules.iter().map(|r| (r.name, r.clone())).collect()
    };
    let (old, new) = (by_name(old), by_name(new));
    let names: BTreeSet<&Name> = old.keys().chain(new.keys()).collect();
    for name in names {
        let path = format!("{prefix}[{}]", quoted(name.as_str()));
        match (old.get(name), new.get(name)) {
            (Some(a), Some(b)) => compare(out, &path, &rule_keys(a), &rule_keys(b)),
            (None, Some(b)) => out.push(KeyChange {
                path,
                change: Change::RuleAdded { rule: summary(b) },
            }),
            (Some(a), None) => out.push(KeyChange {
                path,
                change: Change::RuleRemoved { rule: summary(a) },
            }),
            (None, None) => {}
        }
    }
}

/// The settings keys of `[defaults]` and `[pools.NAME]`.
fn settings(s: &PoolSettings) -> Vec<(&'static str, String)> {
    vec![
        ("goal", s.goal.to_string()),
        ("floor", size(s.floor)),
        ("ceiling", size(s.ceiling)),
        ("threshold", size(s.threshold)),
        ("marginal_gain", number(s.marginal_gain)),
        ("exploration_rate", number(s.exploration_rate)),
        ("exploration_band", number(s.exploration_band)),
        ("learning", s.learning.to_string()),
        ("verify", s.verify.to_string()),
    ]
}

/// Compares the settings of a pool on one side only with that side's `[defaults]`; `added`
/// tells whether the pool is new, and so whether the defaults stand before or after it.
fn compare_with_defaults(
    out: &mut Vec<KeyChange>,
    prefix: &str,
    defaults: &PoolSettings,
    pool: &PoolSettings,
    added: bool,
) {
    let mut changes = Vec::new();
    compare(&mut changes, prefix, &settings(defaults), &settings(pool));
    for it in &mut changes {
        if let Change::Value { old, new } = &mut it.change {
            old.push_str(" (defaults)");
            if !added {
                std::mem::swap(old, new);
            }
        }
    }
    out.append(&mut changes);
}

/// The keys of `[adaptation]`.
fn adaptation(a: &Adaptation) -> Vec<(&'static str, String)> {
    vec![
        ("max_step", number(a.max_step)),
        ("min_factor", number(a.min_factor)),
        ("max_factor", number(a.max_factor)),
        ("cpu_high", number(a.cpu_high)),
        ("memory_high", number(a.memory_high)),
        (
            "predictor_min_confidence",
            number(a.predictor_min_confidence),
        ),
        (
            "classifier_min_confidence",
            number(a.classifier_min_confidence),
        ),
        ("exploration_min_share", number(a.exploration_min_share)),
    ]
}

/// The keys of `[costs]`.
fn costs(c: &CostCoefficients) -> Vec<(&'static str, String)> {
    vec![
        ("grpc_call_us", number(c.grpc_call_us)),
        ("grpc_ns_per_byte", number(c.grpc_ns_per_byte)),
        ("grpc_cached_ns_per_byte", number(c.grpc_cached_ns_per_byte)),
        ("grpc_cache_bytes", size(c.grpc_cache_bytes)),
        ("grpc_cpu_share", number(c.grpc_cpu_share)),
        ("grpc_memory_factor", number(c.grpc_memory_factor)),
        ("zero_copy_notify_us", number(c.zero_copy_notify_us)),
        ("memcpy_ns_per_byte", number(c.memcpy_ns_per_byte)),
        ("segment_create_us", number(c.segment_create_us)),
        ("page_fault_us", number(c.page_fault_us)),
        ("segment_cleanup_us", number(c.segment_cleanup_us)),
        ("pool_return_us", number(c.pool_return_us)),
    ]
}

/// The keys of `[monitor]`.
fn monitor(m: &MonitorSettings) -> Vec<(&'static str, String)> {
    vec![
        ("decision_sample_rate", number(m.decision_sample_rate)),
        (
            "otlp_endpoint",
            m.otlp_endpoint.clone().unwrap_or_else(|| NONE.to_string()),
        ),
        ("otlp_interval_secs", m.otlp_interval_secs.to_string()),
        ("otlp_timeout_secs", m.otlp_timeout_secs.to_string()),
    ]
}

/// The keys of one rule besides its name; an empty list matches anything.
fn rule_keys(r: &Rule) -> Vec<(&'static str, String)> {
    let bound = |b: Option<u64>| b.map_or_else(|| NONE.to_string(), size);
    let c = &r.condition;
    vec![
        ("priority", r.priority.to_string()),
        ("method", r.method.to_string()),
        ("size_min", bound(c.size_min)),
        ("size_max", bound(c.size_max)),
        ("data_types", list(&c.data_types, "(any)")),
        ("formats", list(&c.formats, "(any)")),
        ("pools", list(&c.pools, "(all)")),
    ]
}

/// A rule in one line: priority and method, then the conditions it sets.
fn summary(r: &Rule) -> String {
    let c = &r.condition;
    let mut parts = vec![
        format!("priority {}", r.priority),
        format!("method {}", r.method),
    ];
    parts.extend(c.size_min.map(|n| format!("size_min {}", size(n))));
    parts.extend(c.size_max.map(|n| format!("size_max {}", size(n))));
    for (key, items) in [
        ("data_types", list(&c.data_types, "")),
        ("formats", list(&c.formats, "")),
        ("pools", list(&c.pools, "")),
    ] {
        if !items.is_empty() {
            parts.push(format!("{key} {items}"));
        }
    }
    parts.join(", ")
}

/// A list as `[a, b]`, or `empty` when it has no items.
fn list<T: fmt::Display>(items: &[T], empty: &str) -> String {
    if items.is_empty() {
        return empty.to_string();
    }
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// A number as TOML writes it: `0.05`, `4.0`.
fn number(x: f64) -> String {
    format!("{x:?}")
}

/// A size for people that still tells sizes apart: `32 MiB`, `1.5 MiB`, and with the byte
/// count when one decimal would round it, `3.0 MiB (3145729 B)`.
fn size(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    match UNITS.iter().find(|(_, m)| n >= *m) {
        None => format!("{n} B"),
        Some((unit, m)) if n.is_multiple_of(*m) => format!("{} {unit}", n / m),
        Some((_, m)) if n.checked_mul(10).is_some_and(|t| t.is_multiple_of(*m)) => {
            HumanSize(n).to_string()
        }
        Some(_) => format!("{} ({n} B)", HumanSize(n)),
    }
}

/// A table key as TOML writes it: bare when it can be, quoted otherwise.
fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { k.to_string() } else { quoted(k) }
}

/// A name in double quotes; names hold only letters, digits, `_`, `-` and `.`.
fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text).unwrap()
    }

    fn lines(old: &str, new: &str) -> Vec<String> {
        config(old)
            .changes_to(&config(new))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_lower_threshold_flips_the_sizes_it_now_sends_by_zero_copy() {
        let old = config("version = 1\n[pools.ml]\n");
        let new = config("version = 1\n[pools.ml]\nthreshold = \"3MiB\"\n");
        let d = old.diff(&new).unwrap();
        assert_eq!(d.keys, old.changes_to(&new));
        assert_eq!(d.keys.len(), 1);
        // Two pools (default and ml), 21 sizes each.
        assert_eq!(d.samples, 42);
        let ml = Name::new("ml").unwrap();
        let flipped: Vec<(Name, u64)> = d.flips.iter().map(|f| (f.pool, f.size)).collect();
        assert_eq!(flipped, [(ml, 4 << 20), (ml, 8 << 20)]);
        for f in &d.flips {
            assert_eq!(f.old, (Method::Grpc, ReasonCode::BelowThreshold), "{f:?}");
            assert_eq!(f.new.0, Method::ZeroCopy, "{f:?}");
        }
        let same = old.diff(&old).unwrap();
        assert_eq!((same.keys.len(), same.flips.len()), (0, 0));
    }

    #[test]
    fn keys_are_named_as_the_file_writes_them_and_sizes_for_people() {
        let got = lines(
            "version = 1\n[pools.batch]\n",
            "version = 1\n[pools.batch]\nthreshold = \"32MiB\"\n[costs]\ngrpc_cache_bytes = \"1.5MiB\"\n",
        );
        assert_eq!(
            got,
            [
                "costs.grpc_cache_bytes: 2 MiB -> 1.5 MiB",
                "pools.batch.threshold: 10 MiB -> 32 MiB",
            ]
        );
    }

    #[test]
    fn a_new_pool_lists_what_it_sets_apart_from_the_defaults_and_its_rules() {
        let got = lines(
            "version = 1\n",
            "version = 1\n[pools.batch]\ngoal = \"minimize_memory\"\n\
             [[pools.batch.rules]]\nname = \"big\"\npriority = 1\nmethod = \"zero_copy\"\nsize_min = \"64MiB\"\n",
        );
        assert_eq!(
            got,
            [
                "pools.batch: pool added",
                "pools.batch.goal: minimize_latency (defaults) -> minimize_memory",
                "pools.batch.rules[\"big\"]: rule added (priority 1, method zero_copy, size_min 64 MiB)",
            ]
        );
        let back = lines(
            "version = 1\n[pools.batch]\ngoal = \"minimize_memory\"\n",
            "version = 1\n",
        );
        assert_eq!(
            back,
            [
                "pools.batch: pool removed",
                "pools.batch.goal: minimize_memory -> minimize_latency (defaults)",
            ]
        );
    }

    #[test]
    fn rules_are_matched_by_name_and_compared_key_by_key() {
        let json =
            "[[rules]]\nname = \"json\"\npriority = 10\nmethod = \"grpc\"\nformats = [\"json\"]\n";
        let tensors = "[[rules]]\nname = \"tensors\"\npriority = 20\nmethod = \"zero_copy\"\n";
        let old = format!("version = 1\n{json}{tensors}");
        let reordered = format!("version = 1\n{tensors}{json}");
        assert!(lines(&old, &reordered).is_empty());

        let changed = format!(
            "version = 1\n{}{tensors}",
            json.replace("[\"json\"]", "[\"json\", \"msgpack\"]")
        );
        assert_eq!(
            lines(&old, &changed),
            ["rules[\"json\"].formats: [json] -> [json, msgpack]"]
        );
        assert_eq!(
            lines("version = 1\n", &format!("version = 1\n{json}")),
            ["rules[\"json\"]: rule added (priority 10, method grpc, formats [json])"]
        );
        assert_eq!(
            lines(&format!("version = 1\n{tensors}"), "version = 1\n"),
            ["rules[\"tensors\"]: rule removed (priority 20, method zero_copy)"]
        );
    }

    #[test]
    fn a_changed_default_shows_in_every_pool_that_inherits_it() {
        let got = lines(
            "version = 1\n[pools.ml]\nthreshold = \"4MiB\"\n[pools.batch]\n",
            "version = 1\n[defaults]\nlearning = false\n[pools.ml]\nthreshold = \"4MiB\"\n[pools.batch]\n",
        );
        assert_eq!(
            got,
            [
                "defaults.learning: true -> false",
                "pools.batch.learning: true -> false",
                "pools.default.learning: true -> false",
                "pools.ml.learning: true -> false",
            ]
        );
    }

    #[test]
    fn a_changed_verification_shows_per_pool() {
        let got = lines(
            "version = 1\n[pools.ml]\n",
            "version = 1\n[pools.ml]\nverify = \"checksum\"\n",
        );
        assert_eq!(got, ["pools.ml.verify: sampled -> checksum"]);
    }

    #[test]
    fn sizes_stay_exact_and_readable() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1000), "1000 B");
        assert_eq!(size(4096), "4 KiB");
        assert_eq!(size(32 << 20), "32 MiB");
        assert_eq!(size(3 << 19), "1.5 MiB");
        assert_eq!(size((3 << 20) + 1), "3.0 MiB (3145729 B)");
        assert_eq!(size(1 << 40), "1 TiB");
    }

    /// How many keys `value` serializes to.
    fn n_keys<T: Serialize>(value: &T) -> usize {
        serde_json::to_value(value)
            .unwrap()
            .as_object()
            .map_or(0, serde_json::Map::len)
    }

    #[test]
    fn every_key_of_each_table_is_compared() {
        let c = Config::default();
        assert_eq!(settings(&c.defaults).len(), n_keys(&c.defaults));
        assert_eq!(adaptation(&c.adaptation).len(), n_keys(&c.adaptation));
        assert_eq!(costs(&c.costs).len(), n_keys(&c.costs));
        assert_eq!(monitor(&c.monitor).len(), n_keys(&c.monitor));
        let rule =
            &config("version = 1\n[[rules]]\nname = \"r\"\npriority = 1\nmethod = \"grpc\"\n")
                .rules[0];
        // A rule compares its keys but its name and condition, plus each key of the condition.
        let own = n_keys(rule) - 2;
        assert_eq!(rule_keys(rule).len(), own + n_keys(&rule.condition));
    }
}
