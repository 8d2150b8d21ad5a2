//! `ProcProbe`: the machine's CPU, memory and shared-memory space from `/proc` and `statvfs`,
//! sampled at most once per interval and cached so that `sample` is a load on the common path.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use perf_core::request::{SystemState, Timestamp};
use perf_core::seams::ResourceProbe;

use crate::linux::proc::{CpuTimes, MemInfo};

/// How often a [`ProcProbe`] reads the system, and where shared memory lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The shortest time between two reads of the system; `sample` returns the cached value
    /// until it is this old.
    pub interval: Duration,
    /// The file system whose free space bounds named segments (`statvfs`).
    pub shm_dir: PathBuf,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: Duration::from_secs(1),
            shm_dir: PathBuf::from("/dev/shm"),
        }
    }
}

/// A [`ResourceProbe`] for Linux, reading `/proc/stat`, `/proc/meminfo` and `statvfs`.
///
/// `sample` returns the cached state and refreshes it only when it is older than the interval
/// (one second by default). One caller refreshes (about 30 µs of file reads); callers arriving
/// meanwhile get the previous state rather than wait. CPU utilisation is measured between two
/// refreshes (since boot for the first). `shm_free` is the smaller of the free space of the
/// shared-memory file system and `MemAvailable`, since both bound a new segment. Fields that
/// cannot be read keep their previous values (those of [`SystemState::IDLE`] at first).
#[derive(Debug)]
pub struct ProcProbe {
    config: ProbeConfig,
    cached: ArcSwap<Cached>,
    refresh: Mutex<Option<CpuTimes>>,
}

#[derive(Debug)]
struct Cached {
    state: SystemState,
    at: Instant,
}

impl ProcProbe {
    /// A probe with the default configuration; it samples once now.
    pub fn new() -> ProcProbe {
        ProcProbe::with_config(ProbeConfig::default())
    }

    /// A probe with `config`; it samples once now.
    pub fn with_config(config: ProbeConfig) -> ProcProbe {
        let probe = ProcProbe {
            config,
            cached: ArcSwap::from_pointee(Cached {
                state: SystemState::IDLE,
                at: Instant::now(),
            }),
            refresh: Mutex::new(None),
        };
        probe.refresh();
        probe
    }

    /// Reads the system now, whatever the age of the cache, and returns the new state.
    pub fn refresh(&self) -> SystemState {
        let mut last_cpu = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh_locked(&mut last_cpu)
    }

    fn refresh_locked(&self, last_cpu: &mut Option<CpuTimes>) -> SystemState {
        let mut state = self.cached.load().state;
        if let Ok(cpu) = CpuTimes::read() {
            let utilization = match last_cpu {
                Some(earlier) => cpu.utilization_since(earlier),
                None => cpu.utilization_since_boot(),
            };
            if let Some(u) = utilization {
                state.cpu_utilization = u;
            }
            *last_cpu = Some(cpu);
        }
        let mut available = None;
        if let Ok(mem) = MemInfo::read() {
            if mem.total > 0 {
                let used = mem.total.saturating_sub(mem.available);
                state.memory_used = (used as f64 / mem.total as f64).clamp(0.0, 1.0);
            }
            state.memory_available = mem.available;
            available = Some(mem.available);
        }
        let fs_free = rustix::fs::statvfs(&self.config.shm_dir)
            .ok()
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
        state.shm_free = match (fs_free, available) {
            (Some(fs), Some(mem)) => fs.min(mem),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => state.shm_free,
        };
        state.sampled_at = wall_clock();
        self.cached.store(Arc::new(Cached {
            state,
            at: Instant::now(),
        }));
        state
    }
}

impl Default for ProcProbe {
    fn default() -> Self {
        ProcProbe::new()
    }
}

impl ResourceProbe for ProcProbe {
    fn sample(&self) -> SystemState {
        let cached = self.cached.load();
        if cached.at.elapsed() < self.config.interval {
            return cached.state;
        }
        match self.refresh.try_lock() {
            Ok(mut last_cpu) => self.refresh_locked(&mut last_cpu),
            // Another caller is refreshing (or panicked doing so): the cached state will do.
            Err(_) => cached.state,
        }
    }
}

/// Nanoseconds since the Unix epoch from the wall clock (0 if the clock is before 1970).
fn wall_clock() -> Timestamp {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Timestamp(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(interval: Duration) -> ProcProbe {
        ProcProbe::with_config(ProbeConfig {
            interval,
            ..ProbeConfig::default()
        })
    }

    #[test]
    fn a_sample_describes_this_machine() {
        let state = probe(Duration::from_secs(3600)).sample();
        assert!((0.0..=1.0).contains(&state.cpu_utilization), "{state:?}");
        assert!(
            state.memory_used > 0.0 && state.memory_used < 1.0,
            "{state:?}"
        );
        let mem = MemInfo::read().unwrap();
        assert!(state.memory_available > 0 && state.memory_available <= mem.total);
        assert!(
            state.shm_free > 0 && state.shm_free <= mem.total,
            "{state:?}"
        );
        // Sampled after 2020-01-01 by the wall clock.
        assert!(state.sampled_at > Timestamp::from_secs(1_577_836_800));
    }

    #[test]
    fn samples_inside_the_interval_come_from_the_cache() {
        let p = probe(Duration::from_secs(3600));
        let first = p.sample();
        for _ in 0..100 {
            assert_eq!(p.sample().sampled_at, first.sampled_at);
        }
        // An explicit refresh reads again.
        assert!(p.refresh().sampled_at > first.sampled_at);
    }

    #[test]
    fn an_expired_cache_is_refreshed_by_sample() {
        let p = probe(Duration::ZERO);
        let first = p.sample();
        std::thread::sleep(Duration::from_millis(2));
        assert!(p.sample().sampled_at > first.sampled_at);
    }

    #[test]
    fn a_missing_shm_directory_falls_back_to_available_memory() {
        let p = ProcProbe::with_config(ProbeConfig {
            interval: Duration::from_secs(3600),
            shm_dir: PathBuf::from("/nonexistent/perfopt"),
        });
        let state = p.sample();
        assert_eq!(state.shm_free, state.memory_available);
    }
}
