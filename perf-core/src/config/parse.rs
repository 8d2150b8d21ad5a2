//! Reading and validating the TOML configuration.
//!
//! The text is parsed into a [`toml::Table`] and walked by hand, so that every
//! problem in the file is collected and reported at once, each with its key
//! path, the value as written and what was expected there.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use toml::{Table, Value};

use super::{
    Adaptation, CONFIG_VERSION, Condition, Config, CostCoefficients, MAX_CONFIG_BYTES, MAX_POOLS,
    MAX_RULES, PoolConfig, PoolSettings, Rule,
};
use crate::name::Name;
use crate::size::{MAX_SIZE, config_size, parse_size};
use crate::vocab::{DataType, Format, Goal, Method};

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
const TOP_KEYS: &str = "version defaults adaptation costs rules pools";
const SETTINGS_KEYS: &str =
    "goal floor ceiling threshold marginal_gain exploration_rate exploration_band learning";
const POOL_KEYS: &str =
    "goal floor ceiling threshold marginal_gain exploration_rate exploration_band learning rules";
const ADAPTATION_KEYS: &str =
    "max_step min_factor max_factor cpu_high memory_high predictor_min_confidence";
const COST_KEYS: &str = "grpc_call_us grpc_ns_per_byte grpc_cached_ns_per_byte grpc_cache_bytes \
    grpc_cpu_share grpc_memory_factor zero_copy_notify_us memcpy_ns_per_byte segment_create_us \
    page_fault_us segment_cleanup_us pool_return_us";
const GLOBAL_RULE_KEYS: &str = "name priority method size_min size_max data_types formats pools";
const POOL_RULE_KEYS: &str = "name priority method size_min size_max data_types formats";

const MISSING: &str = "(missing)";
const SIZE_EXPECTED: &str = "a size like \"10MiB\" or a byte count, at most 1 TiB";
const NAME_RULES: &str = "1 to 32 letters, digits, '_', '-' or '.'";
const PRIORITY_LIMIT: i64 = 1_000_000;
const MAX_COST: f64 = 1e9;
/// Error messages list the configured pools when there are at most this many.
const MAX_LISTED_POOLS: usize = 16;
/// Rendered values longer than this many bytes are cut short.
const MAX_RENDERED: usize = 60;

pub(super) fn parse(text: &str) -> Result<Config, ConfigErrors> {
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
    let config = read_config(&mut report, &Section::top(&table));
    if report.0.is_empty() {
        Ok(config)
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

/// One table of the file and its key path.
struct Section<'a> {
    table: &'a Table,
    path: String,
}

impl<'a> Section<'a> {
    fn top(table: &'a Table) -> Self {
        Section {
            table,
            path: String::new(),
        }
    }

    fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// Reads an optional key; a value that `read` rejects is reported.
    fn read<T>(
        &self,
        report: &mut Report,
        key: &str,
        read: impl FnOnce(&'a Value) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.table.get(key)?;
        match read(value) {
            Ok(it) => Some(it),
            Err(expected) => {
                report.push(self.key_path(key), render(value), expected);
                None
            }
        }
    }

    /// Reads a required key; a missing key is reported with `expected`.
    fn required<T>(
        &self,
        report: &mut Report,
        key: &str,
        expected: &str,
        read: impl FnOnce(&'a Value) -> Result<T, String>,
    ) -> Option<T> {
        if !self.has(key) {
            report.push(self.key_path(key), MISSING, expected);
        }
        self.read(report, key, read)
    }

    /// The sub-table at `key`, if it is written; a value that is not a table is reported.
    fn table(&self, report: &mut Report, key: &str) -> Option<Section<'a>> {
        let path = self.key_path(key);
        match self.table.get(key)? {
            Value::Table(table) => Some(Section { table, path }),
            other => {
                report.push(path, render(other), "a table");
                None
            }
        }
    }

    /// Reports every key that is not in `known` (keys separated by spaces).
    fn unknown_keys(&self, report: &mut Report, known: &str) {
        for (key, value) in sorted_entries(self.table) {
            if !known.split_whitespace().any(|k| k == key) {
                let list: Vec<&str> = known.split_whitespace().collect();
                let expected = format!("a known key: {}", list.join(", "));
                report.push(self.key_path(key), render(value), expected);
            }
        }
    }
}

/// The entries of a table in key order, whatever map the `toml` crate uses.
fn sorted_entries(table: &Table) -> Vec<(&str, &Value)> {
    let mut entries: Vec<(&str, &Value)> = table.iter().map(|(k, v)| (k.as_str(), v)).collect();
    entries.sort_unstable_by_key(|(k, _)| *k);
    entries
}

fn read_config(report: &mut Report, top: &Section<'_>) -> Config {
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

    Config {
        defaults,
        adaptation,
        costs,
        rules: global.into_iter().filter_map(|d| d.rule).collect(),
        pools: pools
            .into_iter()
            .map(|p| {
                let rules = p.rules.into_iter().filter_map(|d| d.rule).collect();
                let config = PoolConfig {
                    settings: p.settings,
                    rules,
                };
                (p.name, config)
            })
            .collect(),
    }
}

/// A pool as read: its resolved settings and its own rules, errors included.
struct PoolDraft {
    name: Name,
    path: String,
    settings: PoolSettings,
    rules: Vec<RuleDraft>,
}

/// Reads the pool at `key` of the `pools` table, reporting every problem; a
/// pool with an invalid name is still checked, but not returned.
fn read_pool(
    report: &mut Report,
    pools: &Section<'_>,
    key: &str,
    defaults: PoolSettings,
    defaults_valid: bool,
) -> Option<PoolDraft> {
    let path = pools.key_path(key);
    let name = Name::new(key).ok();
    if name.is_none() {
        report.push(
            &path,
            render_str(key),
            format!("a pool name of {NAME_RULES}"),
        );
    }
    let sec = pools.table(report, key)?;
    let (settings, sizes) = read_settings(report, &sec, defaults);
    let rules = read_rules(report, sec.table.get("rules"), &sec.key_path("rules"), None);
    sec.unknown_keys(report, POOL_KEYS);
    // A pool that writes no size inherits checked ones from `defaults`.
    if sizes.any() && sizes.valid && defaults_valid {
        check_bounds(report, &path, &settings, &sizes, "(from defaults)");
    }
    Some(PoolDraft {
        name: name?,
        path,
        settings,
        rules,
    })
}

/// Which of floor, ceiling and threshold a section wrote (rendered), and
/// whether all that it wrote were valid sizes.
struct SizesWritten {
    floor: Option<String>,
    ceiling: Option<String>,
    threshold: Option<String>,
    valid: bool,
}

impl SizesWritten {
    fn none() -> Self {
        SizesWritten {
            floor: None,
            ceiling: None,
            threshold: None,
            valid: true,
        }
    }

    fn any(&self) -> bool {
        self.floor.is_some() || self.ceiling.is_some() || self.threshold.is_some()
    }
}

/// Reads the keys of [`PoolSettings`] from `sec`, starting from `base`.
fn read_settings(
    report: &mut Report,
    sec: &Section<'_>,
    base: PoolSettings,
) -> (PoolSettings, SizesWritten) {
    let mut s = base;
    let mut sizes = SizesWritten::none();
    if let Some(goal) = sec.read(report, "goal", one_of::<Goal>(Goal::NAMES)) {
        s.goal = goal;
    }
    for (key, slot, written) in [
        ("floor", &mut s.floor, &mut sizes.floor),
        ("ceiling", &mut s.ceiling, &mut sizes.ceiling),
        ("threshold", &mut s.threshold, &mut sizes.threshold),
    ] {
        let Some(value) = sec.table.get(key) else {
            continue;
        };
        *written = Some(render(value));
        match sec.read(report, key, read_size) {
            Some(n) => *slot = n,
            None => sizes.valid = false,
        }
    }
    let numbers = [
        ("marginal_gain", &mut s.marginal_gain, Range::UpTo(0.0, 1.0)),
        (
            "exploration_rate",
            &mut s.exploration_rate,
            Range::Closed(0.0, 0.5),
        ),
        (
            "exploration_band",
            &mut s.exploration_band,
            Range::Closed(1.0, 64.0),
        ),
    ];
    for (key, slot, range) in numbers {
        if let Some(x) = sec.read(report, key, read_number(range)) {
            *slot = x;
        }
    }
    if let Some(learning) = sec.read(report, "learning", read_bool) {
        s.learning = learning;
    }
    (s, sizes)
}

/// Checks floor <= threshold <= ceiling and reports the first violation, at
/// the key to blame unless only the other key of the pair was written here.
fn check_bounds(
    report: &mut Report,
    prefix: &str,
    s: &PoolSettings,
    written: &SizesWritten,
    inherited: &str,
) {
    let get = |key: &str| match key {
        "floor" => (s.floor, &written.floor),
        "ceiling" => (s.ceiling, &written.ceiling),
        _ => (s.threshold, &written.threshold),
    };
    let shown = |n: u64, w: &Option<String>| {
        w.clone()
            .unwrap_or_else(|| format!("\"{}\" {inherited}", config_size(n)))
    };
    // Each pair (low, high) with the key blamed by default.
    let pairs = [
        ("floor", "ceiling", "floor"),
        ("floor", "threshold", "threshold"),
        ("threshold", "ceiling", "threshold"),
    ];
    for (lo, hi, blamed) in pairs {
        let ((lo_n, lo_w), (hi_n, hi_w)) = (get(lo), get(hi));
        if lo_n <= hi_n {
            continue;
        }
        let blame_lo = if blamed == lo {
            hi_w.is_none() || lo_w.is_some()
        } else {
            lo_w.is_some() && hi_w.is_none()
        };
        let (key, value, expected) = if blame_lo {
            let expected = format!("a {lo} no larger than the {hi} ({})", config_size(hi_n));
            (lo, shown(lo_n, lo_w), expected)
        } else {
            let expected = format!("a {hi} no smaller than the {lo} ({})", config_size(lo_n));
            (hi, shown(hi_n, hi_w), expected)
        };
        report.push(join(prefix, key), value, expected);
        return;
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

/// A rule as read, kept even when it has errors so that later checks see it.
struct RuleDraft {
    path: String,
    name: Option<Name>,
    priority: Option<i32>,
    /// The pools a global rule is limited to; `None` when it applies to all.
    pools: Option<Vec<Name>>,
    /// The rule, when it had no errors.
    rule: Option<Rule>,
}

impl RuleDraft {
    fn applies_to(&self, pool: Name) -> bool {
        self.pools
            .as_ref()
            .is_none_or(|pools| pools.is_empty() || pools.contains(&pool))
    }

    fn describe(&self) -> String {
        match self.name {
            Some(name) => format!("rule \"{name}\""),
            None => format!("the rule at {}", self.path),
        }
    }
}

/// Reads a list of rules; `configured` holds the known pools for global rules
/// and is `None` for a pool's own rules.
fn read_rules(
    report: &mut Report,
    value: Option<&Value>,
    path: &str,
    configured: Option<&[Name]>,
) -> Vec<RuleDraft> {
    let items = match value {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            report.push(
                path,
                render(other),
                format!("an array of tables ([[{path}]])"),
            );
            return Vec::new();
        }
    };
    if items.len() > MAX_RULES {
        report.push(
            path,
            format!("{} rules", items.len()),
            format!("at most {MAX_RULES} rules"),
        );
    }
    let mut drafts: Vec<RuleDraft> = Vec::new();
    let mut by_name: HashMap<Name, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Value::Table(table) = item else {
            report.push(
                item_path,
                render(item),
                "a table with name, priority and method",
            );
            continue;
        };
        let sec = Section {
            table,
            path: item_path,
        };
        let draft = read_rule(report, &sec, configured);
        if let Some(name) = draft.name {
            match by_name.get(&name).and_then(|i| drafts.get(*i)) {
                Some(first) => report.push(
                    sec.key_path("name"),
                    render_str(name.as_str()),
                    format!(
                        "a name not used by another rule in this list ({} has it)",
                        first.path
                    ),
                ),
                None => {
                    by_name.insert(name, drafts.len());
                }
            }
        }
        drafts.push(draft);
    }
    drafts
}

fn read_rule(report: &mut Report, sec: &Section<'_>, configured: Option<&[Name]>) -> RuleDraft {
    let errors_before = report.0.len();
    let name_expected = format!("a rule name of {NAME_RULES}");
    let name = sec.required(report, "name", &name_expected, |v| match v {
        Value::String(s) => Name::new(s).map_err(|_| name_expected.clone()),
        _ => Err(name_expected.clone()),
    });
    let priority_expected = format!("an integer from -{PRIORITY_LIMIT} to {PRIORITY_LIMIT}");
    let priority = sec.required(report, "priority", &priority_expected, |v| match v {
        Value::Integer(p) if p.abs() <= PRIORITY_LIMIT => {
            i32::try_from(*p).map_err(|_| priority_expected.clone())
        }
        _ => Err(priority_expected.clone()),
    });
    let method_expected = format!("one of {}", names(Method::NAMES));
    let method = sec.required(
        report,
        "method",
        &method_expected,
        one_of::<Method>(Method::NAMES),
    );
    let size_min = sec.read(report, "size_min", read_size);
    let size_max = sec.read(report, "size_max", read_size);
    if let (Some(min), Some(max)) = (size_min, size_max) {
        if min > max {
            report.push(
                sec.key_path("size_min"),
                sec.table.get("size_min").map_or_else(String::new, render),
                format!("a size_min no larger than size_max ({})", config_size(max)),
            );
        }
    }
    let data_types =
        read_list::<DataType>(report, sec, "data_types", "data types", DataType::NAMES);
    let formats = read_list::<Format>(report, sec, "formats", "formats", Format::NAMES);
    let pools = configured.and_then(|configured| read_rule_pools(report, sec, configured));
    sec.unknown_keys(
        report,
        if configured.is_some() {
            GLOBAL_RULE_KEYS
        } else {
            POOL_RULE_KEYS
        },
    );

    let rule = match (name, priority, method) {
        (Some(name), Some(priority), Some(method)) if report.0.len() == errors_before => {
            Some(Rule {
                name,
                priority,
                condition: Condition {
                    size_min,
                    size_max,
                    data_types,
                    formats,
                    pools: pools.clone().unwrap_or_default(),
                },
                method,
            })
        }
        _ => None,
    };
    RuleDraft {
        path: sec.path.clone(),
        name,
        priority,
        pools,
        rule,
    }
}

/// Reads the `pools` list of a global rule: names of configured pools.
fn read_rule_pools(
    report: &mut Report,
    sec: &Section<'_>,
    configured: &[Name],
) -> Option<Vec<Name>> {
    // A long list of pools would make every message long; it is left out.
    let list: Vec<&str> = configured.iter().map(Name::as_str).collect();
    let list = if list.len() <= MAX_LISTED_POOLS {
        format!(" ({})", list.join(", "))
    } else {
        String::new()
    };
    let expected = format!("the name of a configured pool{list}");
    let items = sec.read(report, "pools", |v| match v {
        Value::Array(items) => Ok(items),
        _ => Err(format!("an array of names of configured pools{list}")),
    })?;
    let path = sec.key_path("pools");
    let mut pools = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let name = match item {
            Value::String(s) => Name::new(s).ok().filter(|n| {
                // `configured` is sorted by name.
                configured
                    .binary_search_by(|c| c.as_str().cmp(n.as_str()))
                    .is_ok()
            }),
            _ => None,
        };
        match name {
            Some(name) => pools.push(name),
            None => report.push(format!("{path}[{i}]"), render(item), expected.clone()),
        }
    }
    Some(pools)
}

/// Reads an optional array of names of an enumeration, reporting each bad element.
fn read_list<T: FromStr>(
    report: &mut Report,
    sec: &Section<'_>,
    key: &str,
    what: &str,
    all: &str,
) -> Vec<T> {
    let Some(items) = sec.read(report, key, |v| match v {
        Value::Array(items) => Ok(items),
        _ => Err(format!("an array of {what} ({})", names(all))),
    }) else {
        return Vec::new();
    };
    let path = sec.key_path(key);
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match one_of::<T>(all)(item) {
            Ok(it) => out.push(it),
            Err(expected) => report.push(format!("{path}[{i}]"), render(item), expected),
        }
    }
    out
}

/// Checks the rules that apply to each pool: how many, and distinct priorities.
fn check_effective_rules(report: &mut Report, pools: &[PoolDraft], global: &[RuleDraft]) {
    struct Clash<'r> {
        later: &'r RuleDraft,
        earlier: &'r RuleDraft,
        pools: Vec<Name>,
    }
    let mut clashes: Vec<Clash<'_>> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for PoolDraft {
        name: pool,
        path,
        rules: own,
        ..
    } in pools
    {
        if own.len() > MAX_RULES {
            continue;
        }
        let rules: Vec<&RuleDraft> = own
            .iter()
            .chain(global.iter().filter(|d| d.applies_to(*pool)))
            .collect();
        if rules.len() > MAX_RULES {
            report.push(
                path.as_str(),
                format!("{} rules", rules.len()),
                format!(
                    "at most {MAX_RULES} rules applying to pool {pool} (its own and global ones)"
                ),
            );
        }
        let mut seen: HashMap<i32, &RuleDraft> = HashMap::new();
        for rule in rules {
            let Some(priority) = rule.priority else {
                continue;
            };
            let Some(earlier) = seen.get(&priority).copied() else {
                seen.insert(priority, rule);
                continue;
            };
            let key = (rule.path.as_str(), earlier.path.as_str());
            match index.get(&key).and_then(|i| clashes.get_mut(*i)) {
                Some(clash) => clash.pools.push(*pool),
                None => {
                    index.insert(key, clashes.len());
                    clashes.push(Clash {
                        later: rule,
                        earlier,
                        pools: vec![*pool],
                    });
                }
            }
        }
    }
    for c in clashes {
        let names: Vec<&str> = c.pools.iter().map(Name::as_str).collect();
        let applies = if names.len() > 1 && names.len() == pools.len() {
            "every pool".to_string()
        } else if names.len() > 1 {
            format!("pools {}", names.join(", "))
        } else {
            format!("pool {}", names.join(", "))
        };
        report.push(
            join(&c.later.path, "priority"),
            c.later.priority.map_or_else(String::new, |p| p.to_string()),
            format!(
                "a priority not used by {} (both apply to {applies})",
                c.earlier.describe()
            ),
        );
    }
}

/// A numeric range; its `Display` says what is expected.
#[derive(Clone, Copy)]
enum Range {
    /// From the first to the second, both included.
    Closed(f64, f64),
    /// From the first, included, to the second, excluded.
    UpTo(f64, f64),
    /// Above the first, excluded, up to the second, included.
    Above(f64, f64),
}

impl Range {
    fn contains(self, x: f64) -> bool {
        match self {
            Range::Closed(lo, hi) => lo <= x && x <= hi,
            Range::UpTo(lo, hi) => lo <= x && x < hi,
            Range::Above(lo, hi) => lo < x && x <= hi,
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Range::Closed(lo, hi) => write!(f, "a number from {lo} to {hi}"),
            Range::UpTo(lo, hi) => write!(f, "a number from {lo} to below {hi}"),
            Range::Above(lo, hi) => write!(f, "a number above {lo} and at most {hi}"),
        }
    }
}

fn read_number(range: Range) -> impl Fn(&Value) -> Result<f64, String> {
    move |v| {
        let x = match v {
            Value::Float(x) => *x,
            Value::Integer(i) => *i as f64,
            _ => return Err(range.to_string()),
        };
        if x.is_finite() && range.contains(x) {
            Ok(x)
        } else {
            Err(range.to_string())
        }
    }
}

fn read_size(v: &Value) -> Result<u64, String> {
    let size = match v {
        Value::Integer(i) => u64::try_from(*i).ok().filter(|n| *n <= MAX_SIZE),
        Value::String(s) => parse_size(s).ok(),
        _ => None,
    };
    size.ok_or_else(|| SIZE_EXPECTED.to_string())
}

fn read_bool(v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| "true or false".to_string())
}

/// Reads one name of an enumeration whose names are `all` (as in `Goal::NAMES`).
fn one_of<T: FromStr>(all: &str) -> impl Fn(&Value) -> Result<T, String> + '_ {
    move |v| {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("one of {}", names(all)))
    }
}

/// An enumeration's `NAMES` without the trailing separator.
fn names(all: &str) -> &str {
    all.trim_end_matches(", ")
}

/// Appends `key` to a dotted path, quoting it when it is not a bare TOML key.
fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        render_str(key)
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// A value as TOML would write it, cut short when long.
fn render(v: &Value) -> String {
    let mut out = String::new();
    render_into(v, &mut out);
    if out.len() > MAX_RENDERED {
        let mut end = MAX_RENDERED;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str("...");
    }
    out
}

fn render_str(s: &str) -> String {
    let mut out = String::new();
    push_str_literal(s, &mut out);
    out
}

fn render_into(v: &Value, out: &mut String) {
    if out.len() > MAX_RENDERED {
        return;
    }
    match v {
        Value::String(s) => push_str_literal(s, out),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(x) if x.is_nan() => out.push_str("nan"),
        Value::Float(x) if x.is_infinite() => out.push_str(if *x > 0.0 { "inf" } else { "-inf" }),
        Value::Float(x) => {
            let _ = write!(out, "{x:?}");
        }
        Value::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Datetime(d) => {
            let _ = write!(out, "{d}");
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_into(item, out);
            }
            out.push(']');
        }
        Value::Table(table) if table.is_empty() => out.push_str("{}"),
        Value::Table(table) => {
            out.push_str("{ ");
            for (i, (key, value)) in sorted_entries(table).into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&join("", key));
                out.push_str(" = ");
                render_into(value, out);
            }
            out.push_str(" }");
        }
    }
}

/// Appends `s` as a TOML basic string, stopping early when the output is long.
fn push_str_literal(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if out.len() > MAX_RENDERED {
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
