//! The worker's budget of inline bytes: a transfer reserves room for its whole payload before
//! it receives it, so an admitted transfer always completes if its host keeps sending; and one
//! whose host stops sending gives the room back, so it cannot starve the others.
//!
//! A holder that has not delivered a chunk for [`ServiceConfig::stall_timeout`] while another
//! transfer waits for room is preempted: its call ends with `ABORTED` and its room goes to the
//! waiters. A holder delivering nothing for [`ServiceConfig::stream_idle_timeout`] ends anyway
//! (the service's receive loop enforces that).
//!
//! [`ServiceConfig::stall_timeout`]: super::ServiceConfig::stall_timeout
//! [`ServiceConfig::stream_idle_timeout`]: super::ServiceConfig::stream_idle_timeout

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// How often a transfer waiting for room looks for stalled holders to preempt.
const PREEMPT_CHECK: Duration = Duration::from_millis(100);

/// Room for inline payloads, in units a transfer reserves all at once.
#[derive(Debug)]
pub(crate) struct InlineBudget {
    units: Semaphore,
    holders: Mutex<Vec<Arc<Holder>>>,
    stall_timeout: Duration,
    epoch: Instant,
}

/// One transfer holding room: when it last made progress, and how to tell it to stop.
#[derive(Debug)]
struct Holder {
    /// Nanoseconds from the budget's epoch to the last chunk received.
    progressed_ns: AtomicU64,
    preempted: AtomicBool,
    wake: Notify,
}

/// Room held by one transfer until dropped.
#[derive(Debug)]
pub(crate) struct Reservation<'a> {
    budget: &'a InlineBudget,
    holder: Arc<Holder>,
    _permit: SemaphorePermit<'a>,
}

/// Why no room was had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReserveError {
    /// The budget was closed: the worker is shutting down.
    Closed,
}

impl InlineBudget {
    /// A budget of `units`; holders silent for `stall_timeout` give way to waiters.
    pub(crate) fn new(units: usize, stall_timeout: Duration) -> InlineBudget {
        InlineBudget {
            units: Semaphore::new(units.min(Semaphore::MAX_PERMITS)),
            holders: Mutex::new(Vec::new()),
            stall_timeout,
            epoch: Instant::now(),
        }
    }

    /// Waits for `units` of room, preempting holders that have stalled meanwhile. Waiters are
    /// served in the order they came.
    pub(crate) async fn reserve(&self, units: u32) -> Result<Reservation<'_>, ReserveError> {
        let acquire = self.units.acquire_many(units);
        tokio::pin!(acquire);
        let permit = loop {
            tokio::select! {
                permit = &mut acquire => break permit.map_err(|_| ReserveError::Closed)?,
                () = tokio::time::sleep(PREEMPT_CHECK) => self.preempt_stalled(),
            }
        };
        let holder = Arc::new(Holder {
            progressed_ns: AtomicU64::new(self.elapsed_ns()),
            preempted: AtomicBool::new(false),
            wake: Notify::new(),
        });
        self.lock().push(Arc::clone(&holder));
        Ok(Reservation {
            budget: self,
            holder,
            _permit: permit,
        })
    }

    /// Units free now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.units.available_permits()
    }

    /// Tells every holder that has not progressed for the stall timeout to give its room back.
    fn preempt_stalled(&self) {
        let now = self.elapsed_ns();
        let stall = u64::try_from(self.stall_timeout.as_nanos()).unwrap_or(u64::MAX);
        for holder in self.lock().iter() {
            let since = now.saturating_sub(holder.progressed_ns.load(Ordering::Relaxed));
            if since >= stall && !holder.preempted.swap(true, Ordering::AcqRel) {
                holder.wake.notify_one();
            }
        }
    }

    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Holder>>> {
        // Every change is one push or one removal; the list stays valid after a panic.
        self.holders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Reservation<'_> {
    /// Records that the transfer received more of its payload.
    pub(crate) fn progressed(&self) {
        self.holder
            .progressed_ns
            .store(self.budget.elapsed_ns(), Ordering::Relaxed);
    }

    /// Completes when the transfer has been preempted and must give its room back.
    pub(crate) async fn preempted(&self) {
        // `notify_one` stores a permit, so a preemption before this call is not lost.
        self.holder.wake.notified().await;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut holders = self.budget.lock();
        if let Some(index) = holders.iter().position(|h| Arc::ptr_eq(h, &self.holder)) {
            holders.swap_remove(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_waiter_preempts_a_stalled_holder_but_not_a_progressing_one() {
        let budget = InlineBudget::new(10, Duration::from_secs(1));
        let stalled = budget.reserve(6).await.unwrap();
        let busy = budget.reserve(4).await.unwrap();
        let keep_busy = async {
            loop {
                busy.progressed();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let waiter = async { budget.reserve(6).await.unwrap() };
        tokio::pin!(waiter);
        tokio::select! {
            () = stalled.preempted() => {}
            _ = &mut waiter => panic!("the waiter got room the stalled holder still held"),
            () = keep_busy => unreachable!("the loop never ends"),
        }
        assert!(
            !busy.holder.preempted.load(Ordering::Acquire),
            "a holder that progressed was preempted"
        );
        drop(stalled);
        let room = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter got the stalled holder's room");
        assert_eq!(budget.available(), 0);
        drop(room);
        drop(busy);
        assert_eq!(budget.available(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn without_waiters_nobody_is_preempted() {
        let budget = InlineBudget::new(10, Duration::from_millis(100));
        let holder = budget.reserve(10).await.unwrap();
        let preempted = tokio::time::timeout(Duration::from_secs(60), holder.preempted()).await;
        assert!(preempted.is_err(), "preempted with nobody waiting");
    }
}
