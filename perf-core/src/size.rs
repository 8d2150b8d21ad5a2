//! Byte sizes: parsing `64MiB`-style strings and printing sizes for people.

use std::fmt;

/// The largest size perfopt accepts anywhere: 1 TiB.
pub const MAX_SIZE: u64 = 1 << 40;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Why a size string could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SizeError {
    /// The text is not a number followed by an optional unit.
    #[error(
        "invalid size {0:?}, expected a number with an optional unit B, KiB, MiB, GiB or TiB (e.g. 64MiB)"
    )]
    Syntax(String),
    /// The size is negative.
    #[error("invalid size {0:?}, expected a size of at least 0 bytes")]
    Negative(String),
    /// The size is larger than [`MAX_SIZE`].
    #[error("size {0:?} is too large, expected at most 1 TiB")]
    TooLarge(String),
}

/// Parses `4096`, `4096B`, `4KiB`, `1.5 GiB`; units are binary and case-insensitive.
///
/// Sizes above 1 TiB and negative sizes are rejected; fractions are rounded down
/// to whole bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => KIB,
        "mib" => MIB,
        "gib" => GIB,
        "tib" => TIB,
        _ => return Err(SizeError::Syntax(text.to_string())),
    };
    if num.starts_with('-') {
        return Err(SizeError::Negative(text.to_string()));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| SizeError::Syntax(text.to_string()))?;
    if !value.is_finite() {
        return Err(SizeError::Syntax(text.to_string()));
    }
    let bytes = value * multiplier as f64;
    if bytes > MAX_SIZE as f64 {
        return Err(SizeError::TooLarge(text.to_string()));
    }
    Ok(bytes as u64)
}

/// A size printed with a binary unit and one decimal: `1.5 MiB`, `512 B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanSize(pub u64);

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        let (value, unit) = if n >= TIB {
            (n as f64 / TIB as f64, "TiB")
        } else if n >= GIB {
            (n as f64 / GIB as f64, "GiB")
        } else if n >= MIB {
            (n as f64 / MIB as f64, "MiB")
        } else if n >= KIB {
            (n as f64 / KIB as f64, "KiB")
        } else {
            return write!(f, "{n} B");
        };
        write!(f, "{value:.1} {unit}")
    }
}

/// Formats a size for a configuration file: the largest unit that divides it exactly.
pub fn config_size(n: u64) -> String {
    for (unit, m) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if n >= m && n.is_multiple_of(m) {
            return format!("{}{unit}", n / m);
        }
    }
    format!("{n}B")
}

/// A duration in microseconds printed with a fitting unit: `47 µs`, `3.1 ms`, `1.85 s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HumanMicros(pub f64);

impl fmt::Display for HumanMicros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0;
        if us >= 1_000_000.0 {
            write!(f, "{:.2} s", us / 1_000_000.0)
        } else if us >= 100_000.0 {
            write!(f, "{:.0} ms", us / 1000.0)
        } else if us >= 1000.0 {
            write!(f, "{:.1} ms", us / 1000.0)
        } else if us >= 10.0 {
            write!(f, "{us:.0} µs")
        } else {
            write!(f, "{us:.1} µs")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_plain_numbers() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("4096B").unwrap(), 4096);
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("100MiB").unwrap(), 100 * MIB);
        assert_eq!(parse_size("2GiB").unwrap(), 2 * GIB);
        assert_eq!(parse_size("1.5 gib").unwrap(), 3 * GIB / 2);
        assert_eq!(parse_size("1TiB").unwrap(), TIB);
        assert_eq!(parse_size("0").unwrap(), 0);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(parse_size(""), Err(SizeError::Syntax(_))));
        assert!(matches!(parse_size("MiB"), Err(SizeError::Syntax(_))));
        assert!(matches!(
            parse_size("12 parsecs"),
            Err(SizeError::Syntax(_))
        ));
        assert!(matches!(parse_size("10MB"), Err(SizeError::Syntax(_))));
        assert!(matches!(parse_size("-5MiB"), Err(SizeError::Negative(_))));
        assert!(matches!(parse_size("2TiB"), Err(SizeError::TooLarge(_))));
        assert!(matches!(parse_size("1e30"), Err(SizeError::Syntax(_))));
        assert!(matches!(parse_size("nan"), Err(SizeError::Syntax(_))));
        let msg = parse_size("12 parsecs").unwrap_err().to_string();
        assert!(
            msg.contains("\"12 parsecs\"") && msg.contains("MiB"),
            "{msg}"
        );
    }

    #[test]
    fn prints_sizes_for_people_and_configs() {
        assert_eq!(HumanSize(512).to_string(), "512 B");
        assert_eq!(HumanSize(4096).to_string(), "4.0 KiB");
        assert_eq!(HumanSize(3 * MIB / 2).to_string(), "1.5 MiB");
        assert_eq!(HumanSize(2 * GIB).to_string(), "2.0 GiB");
        assert_eq!(config_size(10 * MIB), "10MiB");
        assert_eq!(config_size(GIB), "1GiB");
        assert_eq!(config_size(1000), "1000B");
        assert_eq!(HumanMicros(47.0).to_string(), "47 µs");
        assert_eq!(HumanMicros(15_200.0).to_string(), "15.2 ms");
        assert_eq!(HumanMicros(431_000.0).to_string(), "431 ms");
        assert_eq!(HumanMicros(1_850_000.0).to_string(), "1.85 s");
    }
}
