//! Resolving pools against the defaults, and checking floor <= threshold <= ceiling.

use super::Report;
use super::render::{join, render, render_str};
use super::rules::{RuleDraft, read_rules};
use super::section::Section;
use super::values::{NAME_RULES, Range, one_of, read_bool, read_number, read_size};
use crate::config::PoolSettings;
use crate::name::Name;
use crate::size::config_size;
use crate::vocab::{Goal, Verification};

// The keys a pool table accepts, separated by single spaces.
const POOL_KEYS: &str = "goal floor ceiling threshold marginal_gain exploration_rate exploration_band learning verify \
    rules";

/// A pool as read: its resolved settings and its own rules, errors included.
pub(super) struct PoolDraft {
    pub(super) name: Name,
    pub(super) path: String,
    pub(super) settings: PoolSettings,
    pub(super) rules: Vec<RuleDraft>,
}

/// Reads the pool at `key` of the `pools` table, reporting every problem; a
/// pool with an invalid name is still checked, but not returned.
pub(super) fn read_pool(
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
pub(super) struct SizesWritten {
    floor: Option<String>,
    ceiling: Option<String>,
    threshold: Option<String>,
    pub(super) valid: bool,
}

impl SizesWritten {
    pub(super) fn none() -> Self {
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
pub(super) fn read_settings(
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
    if let Some(verify) = sec.read(
        report,
        "verify",
        one_of::<Verification>(Verification::NAMES),
    ) {
        s.verify = verify;
    }
    (s, sizes)
}

/// Checks floor <= threshold <= ceiling and reports the first violation, at
/// the key to blame unless only the other key of the pair was written here.
pub(super) fn check_bounds(
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
