//! CPU time a transfer spends, measured per thread.
//!
//! The platform reads the calling thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`). An async
//! transfer may move between runtime threads at every `.await`, so [`CpuTimed`] reads the clock
//! around each poll of the transfer's future and adds up the differences: the sum is the CPU
//! time the transfer itself used, on whichever threads ran it. Where the platform has no such
//! clock the time reads as 0.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use perf_platform::thread_cpu_ns;

/// Runs `f` and returns its result with the CPU time the calling thread spent in it.
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let start = thread_cpu_ns();
    let out = f();
    (out, elapsed_since(start))
}

fn elapsed_since(start: Option<u64>) -> u64 {
    match (start, thread_cpu_ns()) {
        (Some(start), Some(end)) => end.saturating_sub(start),
        _ => 0,
    }
}

/// A future that adds up the CPU time spent in each of its polls; it resolves to the inner
/// future's output and that sum in nanoseconds.
pub(crate) struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    cpu_ns: u64,
}

impl<F: Future> CpuTimed<F> {
    pub(crate) fn new(inner: F) -> CpuTimed<F> {
        CpuTimed {
            inner: Box::pin(inner),
            cpu_ns: 0,
        }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = (F::Output, u64);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (poll, spent) = timed(|| this.inner.as_mut().poll(cx));
        this.cpu_ns += spent;
        poll.map(|out| (out, this.cpu_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(rounds: u64) -> u64 {
        (0..rounds).fold(0u64, |acc, it| {
            std::hint::black_box(acc.wrapping_mul(31).wrapping_add(it))
        })
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn busy_work_uses_cpu_time_and_rereading_the_file_sees_it_grow() {
        let before = thread_cpu_ns().expect("linux reports thread cpu time");
        let (_, spent) = timed(|| spin(20_000_000));
        let after = thread_cpu_ns().expect("linux reports thread cpu time");
        assert!(spent > 0, "spent {spent} ns");
        assert!(after > before, "before {before} after {after}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_timed_future_reports_the_cpu_time_of_its_polls() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (out, spent) = runtime.block_on(CpuTimed::new(async {
            tokio::task::yield_now().await;
            spin(20_000_000)
        }));
        assert_eq!(out, spin(20_000_000));
        assert!(spent > 0, "spent {spent} ns");
    }
}
