//! Reading single values: numbers in a range, sizes, booleans and names of enumerations.

use std::fmt;
use std::str::FromStr;

use toml::Value;

use super::Report;
use super::render::render;
use super::section::Section;
use crate::size::{MAX_SIZE, parse_size};

const SIZE_EXPECTED: &str = "a size like \"10MiB\" or a byte count, at most 1 TiB";
pub(super) const NAME_RULES: &str = "1 to 32 letters, digits, '_', '-' or '.'";

/// A numeric range; its `Display` says what is expected.
#[derive(Clone, Copy)]
pub(super) enum Range {
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

pub(super) fn read_number(range: Range) -> impl Fn(&Value) -> Result<f64, String> {
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

pub(super) fn read_size(v: &Value) -> Result<u64, String> {
    let size = match v {
        Value::Integer(i) => u64::try_from(*i).ok().filter(|n| *n <= MAX_SIZE),
        Value::String(s) => parse_size(s).ok(),
        _ => None,
    };
    size.ok_or_else(|| SIZE_EXPECTED.to_string())
}

pub(super) fn read_bool(v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| "true or false".to_string())
}

/// Reads one name of an enumeration whose names are `all` (as in `Goal::NAMES`).
pub(super) fn one_of<T: FromStr>(all: &str) -> impl Fn(&Value) -> Result<T, String> + '_ {
    move |v| {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("one of {}", names(all)))
    }
}

/// An enumeration's `NAMES` without the trailing separator.
pub(super) fn names(all: &str) -> &str {
    all.trim_end_matches(", ")
}

/// Reads an optional array of names of an enumeration, reporting each bad element.
pub(super) fn read_list<T: FromStr>(
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
