//! Reading and parsing `/proc` and `/sys` files: memory, CPU times, process start times and
//! transparent huge page modes. The parsers are pure, so tests feed them fixtures.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The most bytes read from one `/proc` or `/sys` file; the files read here are far smaller.
const MAX_PROC_FILE: u64 = 64 << 10;

/// Reads at most 64 KiB of a small text file.
pub(crate) fn read_small(path: impl AsRef<Path>) -> io::Result<String> {
    let mut text = String::new();
    File::open(path)?
        .take(MAX_PROC_FILE)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// What `/proc/meminfo` says, in bytes (and pages for the hugetlb pool).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MemInfo {
    /// `MemTotal`.
    pub(crate) total: u64,
    /// `MemAvailable`.
    pub(crate) available: u64,
    /// `HugePages_Total`: pages in the hugetlb pool.
    pub(crate) huge_pages_total: u64,
    /// `HugePages_Free`: free pages in the hugetlb pool.
    pub(crate) huge_pages_free: u64,
    /// `Hugepagesize`: the default hugetlb page size.
    pub(crate) huge_page_size: u64,
}

impl MemInfo {
    /// Reads and parses `/proc/meminfo`.
    pub(crate) fn read() -> io::Result<MemInfo> {
        parse_meminfo(&read_small("/proc/meminfo")?).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "/proc/meminfo: expected MemTotal and MemAvailable, found neither",
            )
        })
    }
}

/// Parses `/proc/meminfo`; `None` unless both `MemTotal` and `MemAvailable` are present.
pub(crate) fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let mut info = MemInfo::default();
    let (mut has_total, mut has_available) = (false, false);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let Some(Ok(value)) = words.next().map(str::parse::<u64>) else {
            continue;
        };
        let bytes = match words.next() {
            Some("kB") => value.saturating_mul(1024),
            _ => value,
        };
        match key {
            "MemTotal" => (info.total, has_total) = (bytes, true),
            "MemAvailable" => (info.available, has_available) = (bytes, true),
            "HugePages_Total" => info.huge_pages_total = value,
            "HugePages_Free" => info.huge_pages_free = value,
            "Hugepagesize" => info.huge_page_size = bytes,
            _ => {}
        }
    }
    (has_total && has_available).then_some(info)
}

/// Cumulative CPU time of the whole machine, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    /// Ticks spent working (user, nice, system, irq, softirq, steal).
    pub(crate) busy: u64,
    /// All ticks, idle and iowait included.
    pub(crate) total: u64,
}

impl CpuTimes {
    /// Reads the `cpu` line of `/proc/stat`.
    pub(crate) fn read() -> io::Result<CpuTimes> {
        parse_cpu_times(&read_small("/proc/stat")?).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "/proc/stat: expected a `cpu` line with at least 4 counters",
            )
        })
    }

    /// The fraction of time busy between `earlier` and `self`, or `None` if no tick passed.
    pub(crate) fn utilization_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.saturating_sub(earlier.busy);
        (total > 0).then(|| (busy as f64 / total as f64).clamp(0.0, 1.0))
    }

    /// The fraction of time busy since boot, or `None` before the first tick.
    pub(crate) fn utilization_since_boot(&self) -> Option<f64> {
        self.utilization_since(&CpuTimes::default())
    }
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub(crate) fn parse_cpu_times(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if fields.len() < 4 {
        return None;
    }
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal; guest time is already inside user.
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    let idle = at(3) + at(4);
    Some(CpuTimes {
        busy,
        total: busy + idle,
    })
}

/// The start time of process `pid` in clock ticks since boot: `Ok(None)` if there is no such
/// process, an error if `/proc` could not tell.
pub(crate) fn process_start_time(pid: u32) -> io::Result<Option<u64>> {
    match read_small(format!("/proc/{pid}/stat")) {
        Ok(text) => parse_start_time(&text).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/stat: expected a start time in field 22"),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(3) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Field 22 (`starttime`) of a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields after the command name start at 3 (`state`), so field 22 is the 20th of them.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// The inode of this process's pid namespace (`/proc/self/ns/pid -> pid:[N]`), or 0 if unknown.
pub(crate) fn pid_namespace() -> u64 {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|target| parse_namespace(&target.to_string_lossy()))
        .unwrap_or(0)
}

/// Parses `pid:[4026531836]`.
pub(crate) fn parse_namespace(link: &str) -> Option<u64> {
    link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// The selected word of a sysfs choice file such as `always within_size [advise] never`.
pub(crate) fn selected_choice(text: &str) -> Option<&str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24683656 kB\nMemFree:        22067936 kB\n\
        MemAvailable:   23813748 kB\nHugePages_Total:       8\nHugePages_Free:        3\n\
        Hugepagesize:       2048 kB\n";

    #[test]
    fn meminfo_is_read_in_bytes_and_pages() {
        let info = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(info.total, 24_683_656 * 1024);
        assert_eq!(info.available, 23_813_748 * 1024);
        assert_eq!(info.huge_pages_total, 8);
        assert_eq!(info.huge_pages_free, 3);
        assert_eq!(info.huge_page_size, 2 << 20);
    }

    #[test]
    fn meminfo_without_available_memory_is_refused() {
        assert_eq!(parse_meminfo("MemTotal: 100 kB\nMemFree: 50 kB\n"), None);
        assert_eq!(parse_meminfo("garbage"), None);
    }

    #[test]
    fn cpu_times_count_work_and_idle() {
        let text = "cpu  100 5 50 800 20 3 2 10 7 0\ncpu0 1 2 3 4\n";
        let t = parse_cpu_times(text).unwrap();
        assert_eq!(t.busy, 100 + 5 + 50 + 3 + 2 + 10);
        assert_eq!(t.total, t.busy + 800 + 20);
        let later = CpuTimes {
            busy: t.busy + 30,
            total: t.total + 120,
        };
        assert_eq!(later.utilization_since(&t), Some(0.25));
        assert_eq!(t.utilization_since(&t), None);
        assert_eq!(parse_cpu_times("cpu  1 2\n"), None);
        assert_eq!(parse_cpu_times("intr 5\n"), None);
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
            987654 1000 100 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("4242 (x) S 1"), None);
    }

    #[test]
    fn our_own_start_time_is_known_and_a_dead_pid_has_none() {
        let me = std::process::id();
        assert!(process_start_time(me).unwrap().is_some());
        // Pids are at most 2^22 on Linux, so this one cannot exist.
        assert_eq!(process_start_time(u32::MAX - 1).unwrap(), None);
    }

    #[test]
    fn namespaces_and_choices_parse() {
        assert_eq!(parse_namespace("pid:[4026531836]"), Some(4_026_531_836));
        assert_eq!(parse_namespace("net:[1]"), None);
        assert_eq!(selected_choice("always [advise] never\n"), Some("advise"));
        assert_eq!(selected_choice("always advise never"), None);
    }
}
