//! CPU time of the calling thread and of the whole process, for measuring what a transfer
//! (or a benchmark's series of them) costs in CPU.

/// CPU time the calling thread has used so far, in nanoseconds (one
/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`), or `None` where the platform
/// does not report it.
pub fn thread_cpu_ns() -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Some(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        None
    }
}

/// CPU time every thread of this process has used so far, in nanoseconds (one
/// `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`), or `None` where the platform does not report it.
pub fn process_cpu_ns() -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        Some(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn thread_cpu_time_grows_with_work() {
        let before = thread_cpu_ns().unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let after = thread_cpu_ns().unwrap();
        assert!(after > before, "{before} -> {after}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_cpu_time_counts_other_threads_too() {
        let before = process_cpu_ns().unwrap();
        let worked = std::thread::spawn(|| {
            let start = thread_cpu_ns().unwrap();
            let mut x = 0u64;
            for i in 0..20_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            thread_cpu_ns().unwrap() - start
        })
        .join()
        .unwrap();
        let after = process_cpu_ns().unwrap();
        assert!(
            after - before >= worked,
            "{before} -> {after}, the thread used {worked}"
        );
    }
}
