//! Argument grammars that several commands share: durations.

use std::time::Duration;

/// The values a duration flag accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DurationRange {
    /// The shortest.
    pub(crate) min: Duration,
    /// The longest.
    pub(crate) max: Duration,
    /// Whether only whole seconds are accepted.
    pub(crate) whole_seconds: bool,
    /// The range in words, for messages, e.g. `1s to 3650d`.
    pub(crate) text: &'static str,
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `run --duration` and `run --load-after`: 1 ms to 24 h.
pub(crate) const RUN_TIME: DurationRange = DurationRange {
    min: Duration::from_millis(1),
    max: secs(86_400),
    whole_seconds: false,
    text: "1ms to 24h",
};

/// `stats --since` and `export --since`: 1 s to 3650 days.
pub(crate) const LOOK_BACK: DurationRange = DurationRange {
    min: secs(1),
    max: secs(3650 * 86_400),
    whole_seconds: false,
    text: "1s to 3650d",
};

/// `stats --granularity`: whole seconds from 1 s to 1 h.
pub(crate) const BUCKET_WIDTH: DurationRange = DurationRange {
    min: secs(1),
    max: secs(3600),
    whole_seconds: true,
    text: "whole seconds from 1s to 1h",
};

/// `cleanup --keep-*`: 1 minute to 3650 days.
pub(crate) const RETENTION: DurationRange = DurationRange {
    min: secs(60),
    max: secs(3650 * 86_400),
    whole_seconds: false,
    text: "1m to 3650d",
};

/// Reads the value `text` of the duration flag `flag` (e.g. `--since`): a number and a unit,
/// `500ms`, `30s`, `15m`, `36h`, `7d`, or several, `1h 30m` (the grammar of the `humantime`
/// crate, which also knows `w` for weeks and a fractional number like `1.5h`); it must lie
/// within `range`. The error names the flag, the value and the range.
pub(crate) fn parse_duration(
    flag: &str,
    text: &str,
    range: &DurationRange,
) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "{flag} {text:?} is not a duration ({e}), expected a number and a unit ms, s, m, h \
             or d (e.g. 500ms, 30s, 15m, 36h, 7d), {}",
            range.text
        )
    })?;
    let whole = !range.whole_seconds || d.subsec_nanos() == 0;
    if !(range.min..=range.max).contains(&d) || !whole {
        return Err(format!(
            "{flag} {text:?} is out of range, expected {}",
            range.text
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_reads_and_days_are_24_hours() {
        let p = |t: &str| parse_duration("--since", t, &LOOK_BACK);
        assert_eq!(p("7d"), Ok(secs(7 * 86_400)));
        assert_eq!(p("168h"), Ok(secs(7 * 86_400)), "7d is 168h");
        assert_eq!(p("30d"), Ok(secs(30 * 86_400)));
        assert_eq!(p("3650d"), Ok(secs(3650 * 86_400)));
        assert_eq!(p("15m"), Ok(secs(900)));
        assert_eq!(p("90s"), Ok(secs(90)));
        assert_eq!(p("1h 30m"), Ok(secs(5400)));
        assert_eq!(p(" 2w "), Ok(secs(14 * 86_400)));
        let run = |t: &str| parse_duration("--duration", t, &RUN_TIME);
        assert_eq!(run("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(run("1.5h"), Ok(secs(5400)));
    }

    #[test]
    fn errors_name_the_flag_the_value_and_the_range() {
        assert_eq!(
            parse_duration("--since", "3651d", &LOOK_BACK).unwrap_err(),
            "--since \"3651d\" is out of range, expected 1s to 3650d"
        );
        assert_eq!(
            parse_duration("--duration", "25h", &RUN_TIME).unwrap_err(),
            "--duration \"25h\" is out of range, expected 1ms to 24h"
        );
        assert_eq!(
            parse_duration("--granularity", "1500ms", &BUCKET_WIDTH).unwrap_err(),
            "--granularity \"1500ms\" is out of range, expected whole seconds from 1s to 1h"
        );
        assert_eq!(
            parse_duration("--keep-samples", "30s", &RETENTION).unwrap_err(),
            "--keep-samples \"30s\" is out of range, expected 1m to 3650d"
        );
        let bad = parse_duration("--since", "soon", &LOOK_BACK).unwrap_err();
        assert!(
            bad.starts_with("--since \"soon\" is not a duration (")
                && bad.ends_with(
                    "expected a number and a unit ms, s, m, h or d (e.g. 500ms, 30s, 15m, 36h, \
                     7d), 1s to 3650d"
                ),
            "{bad}"
        );
        for bad in ["", "7", "0s", "-1d", "forever", "3 weeks later"] {
            assert!(parse_duration("--since", bad, &LOOK_BACK).is_err(), "{bad}");
        }
    }
}
