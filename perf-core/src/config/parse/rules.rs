//! Reading rules, and checking the rules that apply to each pool: how many, distinct priorities.

use std::collections::HashMap;

use toml::Value;

use super::Report;
use super::pools::PoolDraft;
use super::render::{join, render, render_str};
use super::section::Section;
use super::values::{NAME_RULES, names, one_of, read_list, read_size};
use crate::config::{Condition, MAX_RULES, Rule};
use crate::name::Name;
use crate::size::config_size;
use crate::vocab::{DataType, Format, Method};

// The keys each rule table accepts, separated by single spaces.
const GLOBAL_RULE_KEYS: &str = "name priority method size_min size_max data_types formats pools";
const POOL_RULE_KEYS: &str = "name priority method size_min size_max data_types formats";

const PRIORITY_LIMIT: i64 = 1_000_000;
/// Error messages list the configured pools when there are at most this many.
const MAX_LISTED_POOLS: usize = 16;

/// A rule as read, kept even when it has errors so that later checks see it.
pub(super) struct RuleDraft {
    path: String,
    name: Option<Name>,
    priority: Option<i32>,
    /// The pools a global rule is limited to; `None` when it applies to all.
    pools: Option<Vec<Name>>,
    /// The rule, when it had no errors.
    pub(super) rule: Option<Rule>,
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
pub(super) fn read_rules(
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
    if let (Some(min), Some(max)) = (size_min, size_max)
        && min > max
    {
        report.push(
            sec.key_path("size_min"),
            sec.table.get("size_min").map_or_else(String::new, render),
            format!("a size_min no larger than size_max ({})", config_size(max)),
        );
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

/// Checks the rules that apply to each pool: how many, and distinct priorities.
pub(super) fn check_effective_rules(
    report: &mut Report,
    pools: &[PoolDraft],
    global: &[RuleDraft],
) {
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
