//! Arguments and grammars that several commands share: durations, payload size lists, the data
//! directory, the configuration file, output files and the worker command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use perf_core::{Config, HumanSize, SizeError, parse_size};
use perfopt::store::datadir::{self, DataDir};
use perfopt::transport::WorkerCommand;

use crate::exit::Exit;

/// The data directory option every store command takes.
#[derive(Debug, Args)]
pub(crate) struct DataDirArg {
    /// The metrics store's directory (else PERFOPT_DATA_DIR, else the
    /// platform's data directory).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
}

impl DataDirArg {
    /// The chosen directory.
    pub(crate) fn resolve(&self) -> Result<DataDir, Exit> {
        datadir::resolve(self.data_dir.as_deref()).map_err(Exit::bad_input)
    }
}

/// Reads `--config`, or the default configuration.
pub(crate) fn config(path: Option<&PathBuf>) -> Result<Config, Exit> {
    match path {
        Some(p) => perfopt::load_config(p).map_err(|e| Exit::bad_input(e.to_string().trim_end())),
        None => Ok(Config::default()),
    }
}

/// Refuses an output path whose directory does not exist, before an expensive run; `-`
/// (standard output) passes when `stdout_ok`.
pub(crate) fn check_output(
    flag: &str,
    path: Option<&PathBuf>,
    stdout_ok: bool,
) -> Result<(), Exit> {
    let Some(path) = path else {
        return Ok(());
    };
    if path.as_os_str() == "-" {
        return if stdout_ok {
            Ok(())
        } else {
            Err(Exit::bad_input(format_args!(
                "{flag} -: expected a file, this output does not go to standard output"
            )))
        };
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if path.is_dir() || !dir.is_dir() {
        return Err(Exit::bad_input(format_args!(
            "{flag} {}: expected a file in an existing directory",
            path.display()
        )));
    }
    Ok(())
}

/// The smallest payload `bench` and `model collect` measure.
pub(crate) const MIN_BENCH_SIZE: u64 = 1 << 10;
/// The largest payload `bench` and `model collect` measure.
pub(crate) const MAX_BENCH_SIZE: u64 = 1 << 30;
/// The most repeats `--repeats` accepts.
pub(crate) const MAX_REPEATS: u32 = 1000;

/// Reads `--sizes`: `A..B` for the powers of two from A up to B (A, 2A, 4A, ... while at
/// most B) and, when `midpoints`, the midpoints (x1.5) between them; or a comma list
/// `4KiB,1MiB,64MiB`. Sorted, without duplicates, each from 1 KiB to 1 GiB, at most `max`.
pub(crate) fn parse_size_list(text: &str, midpoints: bool, max: usize) -> Result<Vec<u64>, String> {
    let bad = |why: String| format!("invalid --sizes {text:?}: {why}");
    let one = |part: &str| -> Result<u64, String> {
        let n = parse_size(part).map_err(|e| match e {
            SizeError::TooLarge(_) => out_of_range(part),
            e => e.to_string(),
        })?;
        if (MIN_BENCH_SIZE..=MAX_BENCH_SIZE).contains(&n) {
            Ok(n)
        } else {
            Err(out_of_range(part))
        }
    };
    let mut sizes = Vec::new();
    if let Some((lo, hi)) = text.split_once("..") {
        let (lo, hi) = (one(lo).map_err(bad)?, one(hi).map_err(bad)?);
        if lo > hi {
            return Err(bad(format!(
                "the range runs backwards, expected the smaller size first ({} > {})",
                HumanSize(lo),
                HumanSize(hi)
            )));
        }
        let mut n = lo;
        while n <= hi {
            sizes.push(n);
            if midpoints && n + n / 2 <= hi && n * 2 <= hi {
                sizes.push(n + n / 2);
            }
            n *= 2;
        }
    } else {
        for part in text.split(',') {
            sizes.push(one(part).map_err(bad)?);
        }
    }
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.len() > max {
        return Err(bad(format!(
            "{} sizes, expected at most {max}",
            sizes.len()
        )));
    }
    Ok(sizes)
}

fn out_of_range(part: &str) -> String {
    format!(
        "size {:?} is out of range, expected {} to {}",
        part.trim(),
        HumanSize(MIN_BENCH_SIZE),
        HumanSize(MAX_BENCH_SIZE)
    )
}

/// Reads `--repeats`: each size's timed repeats, the given number (1 to 1000) or by default
/// more for small sizes, whose medians are noisier and cheaper to take: 30 up to 1 MiB, 10 up
/// to 64 MiB and 5 above.
pub(crate) fn repeats(sizes: Vec<u64>, repeats: Option<u32>) -> Result<Vec<(u64, u32)>, Exit> {
    if let Some(n) = repeats
        && !(1..=MAX_REPEATS).contains(&n)
    {
        return Err(Exit::bad_input(format_args!(
            "--repeats {n} is out of range, expected 1 to {MAX_REPEATS}"
        )));
    }
    Ok(sizes
        .into_iter()
        .map(|s| (s, repeats.unwrap_or_else(|| default_repeats(s))))
        .collect())
}

/// The largest size of a plan's `(size, repeats)`; the smallest measurable size when empty.
pub(crate) fn largest(sizes: &[(u64, u32)]) -> u64 {
    sizes.iter().map(|s| s.0).max().unwrap_or(MIN_BENCH_SIZE)
}

/// Timed repeats for `size` when `--repeats` is not given.
fn default_repeats(size: u64) -> u32 {
    match size {
        0..=0x10_0000 => 30,
        0x10_0001..=0x400_0000 => 10,
        _ => 5,
    }
}

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

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;

    #[test]
    fn a_range_is_the_powers_of_two_between_its_ends() {
        let p = |t: &str| parse_size_list(t, false, 32);
        assert_eq!(p("1KiB..8KiB"), Ok(vec![KIB, 2 * KIB, 4 * KIB, 8 * KIB]));
        assert_eq!(p("1KiB..256MiB").unwrap().len(), 19);
        // The upper end is a bound, not a member, when the doubling misses it.
        assert_eq!(p("1KiB..3KiB"), Ok(vec![KIB, 2 * KIB]));
        assert_eq!(p("64KiB..64KiB"), Ok(vec![64 * KIB]));
    }

    #[test]
    fn a_size_list_is_sorted_deduplicated_and_bounded() {
        let p = |t: &str| parse_size_list(t, false, 32);
        assert_eq!(p("1MiB, 4KiB,1MiB,1024"), Ok(vec![KIB, 4 * KIB, MIB]));
        for (text, why) in [
            ("1KiB..2TiB", "out of range, expected 1.0 KiB to 1.0 GiB"),
            ("1KiB..2GiB", "out of range"),
            ("512..4KiB", "out of range"),
            ("nonsense", "invalid size"),
            ("1KiB..", "invalid size"),
            ("8KiB..1KiB", "runs backwards"),
            ("-1KiB", "at least 0 bytes"),
        ] {
            let e = p(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.starts_with("invalid --sizes"), "{e}");
            assert!(!e.contains('\n') && !e.ends_with('.'), "{e}");
        }
        let many: Vec<String> = (1..=33).map(|i| format!("{i}KiB")).collect();
        assert!(p(&many.join(",")).unwrap_err().contains("at most 32"));
        assert_eq!(p(&many[..32].join(",")).unwrap().len(), 32);
    }

    #[test]
    fn repeats_fall_with_size_unless_given() {
        let sizes = vec![KIB, MIB, 2 * MIB, 64 * MIB, 96 * MIB];
        let got = repeats(sizes.clone(), None).unwrap();
        let n: Vec<u32> = got.iter().map(|s| s.1).collect();
        assert_eq!(n, [30, 30, 10, 10, 5]);
        assert!(
            repeats(sizes.clone(), Some(7))
                .unwrap()
                .iter()
                .all(|s| s.1 == 7)
        );
        for bad in [0, 1001] {
            let e = repeats(sizes.clone(), Some(bad)).unwrap_err();
            assert!(e.message.contains("--repeats"), "{}", e.message);
        }
    }

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

/// The worker program option of the commands that spawn workers.
#[derive(Debug, Args)]
pub(crate) struct WorkerCmdArg {
    /// The worker to spawn, as a shell-quoted command line, e.g. `python3 -m
    /// perfopt_worker.demo`; it must follow the spawn contract (docs/protocol.md). Default: this
    /// binary's `perfopt worker`.
    #[arg(long, value_name = "COMMAND")]
    pub(crate) worker_cmd: Option<String>,
}

/// The most words a `--worker-cmd` may have.
const MAX_WORKER_WORDS: usize = 256;

impl WorkerCmdArg {
    /// The command to spawn workers with.
    pub(crate) fn command(&self) -> Result<WorkerCommand, Exit> {
        let Some(line) = &self.worker_cmd else {
            let exe = std::env::current_exe().map_err(Exit::failed)?;
            return Ok(WorkerCommand::perfopt(exe));
        };
        let words = shlex::split(line).ok_or_else(|| {
            Exit::bad_input(format_args!(
                "--worker-cmd {line:?} is not a valid command line (unbalanced quotes?)"
            ))
        })?;
        let Some((program, rest)) = words.split_first() else {
            return Err(Exit::bad_input("--worker-cmd is empty, expected a program"));
        };
        if words.len() > MAX_WORKER_WORDS {
            return Err(Exit::bad_input(format_args!(
                "--worker-cmd has {} words, expected at most {MAX_WORKER_WORDS}",
                words.len()
            )));
        }
        Ok(rest
            .iter()
            .fold(WorkerCommand::new(program), |cmd, word| cmd.arg(word)))
    }
}
