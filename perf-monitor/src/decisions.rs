//! Decisions for audit and diagnosis: sampled structured `tracing` events (a JSON subscriber
//! makes them an audit log) and a bounded ring of the most recent decisions, whose rationale is
//! written only when read.
//!
//! Taking a decision never waits and takes no lock: the ring's slots are sequence locks. A
//! writer claims its slot with one compare-and-swap, copies the decision in and publishes it
//! with a new even stamp; a reader copies a slot optimistically and keeps the copy only when
//! the stamp was even and unchanged around it (the scheme of crossbeam's `AtomicCell`, whose
//! writers spin on a shared lock instead, which a decision path must not). The three `unsafe`
//! operations this needs are here and nowhere else in the crate, each with its `SAFETY:` case.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use perf_core::{Decision, Name};

use crate::TelemetryError;

/// The most decisions the ring keeps.
pub const MAX_RECENT: usize = 4096;

/// The `tracing` target of decision events.
pub const DECISION_TARGET: &str = "perfopt::decision";

const PPM: u128 = 1_000_000;

/// How many times a reader copies a slot that a writer keeps changing before it passes it by.
const READ_TRIES: usize = 4;

/// How many decisions become events, and how many are kept for the API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecisionLogConfig {
    /// The fraction of decisions emitted as events, 0 to 1, kept to one in a million; the
    /// `n`-th decision is emitted when `floor(n x rate)` steps up, so the rate holds exactly
    /// over any run.
    pub sample_rate: f64,
    /// How many of the most recent decisions are kept, at most [`MAX_RECENT`].
    pub recent: usize,
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        DecisionLogConfig {
            sample_rate: 0.01,
            recent: 256,
        }
    }
}

/// The decision log: [`DecisionLog::observe`] takes each decision without waiting or locking,
/// emits the sampled ones as `tracing` events at INFO under [`DECISION_TARGET`] and keeps the
/// last [`DecisionLogConfig::recent`] for [`DecisionLog::recent`].
#[derive(Debug)]
pub struct DecisionLog {
    sample_ppm: AtomicU64,
    seen: AtomicU64,
    next: AtomicU64,
    skipped: AtomicU64,
    slots: Box<[Slot]>,
}

/// One ring slot, a sequence lock: `stamp` is 0 while empty, odd while a decision is being
/// written, and `2 * (ticket + 1)` once the decision that drew `ticket` is in place.
struct Slot {
    stamp: AtomicU64,
    decision: UnsafeCell<MaybeUninit<Decision>>,
}

// SAFETY: `decision` is written only by the writer that moved `stamp` from even to odd, and
// read only as a `MaybeUninit` copy that is kept after `stamp` shows no write overlapped it.
#[allow(unsafe_code)]
unsafe impl Sync for Slot {}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("stamp", &self.stamp.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            stamp: AtomicU64::new(0),
            decision: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Puts in the decision of `ticket`, unless another writer holds the slot (one a whole lap
    /// of the ring behind or ahead); returns whether it was put in.
    fn write(&self, ticket: u64, decision: &Decision) -> bool {
        let stamp = self.stamp.load(Ordering::Relaxed);
        if stamp & 1 == 1
            || self
                .stamp
                .compare_exchange(stamp, stamp | 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        fence(Ordering::Release);
        #[allow(unsafe_code)]
        // SAFETY: the odd stamp makes this the only writer; readers copy it as `MaybeUninit`
        // and drop the copy, since the stamp changes under them.
        unsafe {
            (*self.decision.get()).write(*decision)
        };
        self.stamp.store(2 * (ticket + 1), Ordering::Release);
        true
    }

    /// The decision in place and its ticket, when a copy of it could be taken whole.
    fn read(&self) -> Option<(u64, Decision)> {
        for _ in 0..READ_TRIES {
            let before = self.stamp.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            // SAFETY: a volatile copy of plain memory; it is only taken as a `Decision` below,
            // once the stamp shows that no write overlapped the copy.
            #[allow(unsafe_code)]
            let copy = unsafe { std::ptr::read_volatile(self.decision.get()) };
            fence(Ordering::Acquire);
            if self.stamp.load(Ordering::Relaxed) == before {
                // SAFETY: an even nonzero stamp, unchanged around the copy: a whole decision
                // was in place and nothing wrote it meanwhile.
                #[allow(unsafe_code)]
                let decision = unsafe { copy.assume_init() };
                return Some((before / 2 - 1, decision));
            }
        }
        None
    }
}

/// A sample rate as parts per million, refused outside 0..=1.
fn sample_ppm(rate: f64) -> Result<u64, TelemetryError> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(TelemetryError::DecisionLog(format!(
            "sample rate expected 0 to 1, got {rate}"
        )));
    }
    Ok((rate * PPM as f64).round() as u64)
}

impl DecisionLog {
    /// A log for `config`; a rate outside 0..=1 or a ring over [`MAX_RECENT`] is refused.
    pub fn new(config: &DecisionLogConfig) -> Result<DecisionLog, TelemetryError> {
        let ppm = sample_ppm(config.sample_rate)?;
        if config.recent > MAX_RECENT {
            return Err(TelemetryError::DecisionLog(format!(
                "recent decisions expected at most {MAX_RECENT}, got {}",
                config.recent
            )));
        }
        Ok(DecisionLog {
            sample_ppm: AtomicU64::new(ppm),
            seen: AtomicU64::new(0),
            next: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            slots: (0..config.recent).map(|_| Slot::empty()).collect(),
        })
    }

    /// Changes the fraction of decisions emitted as events from the next one on; a rate
    /// outside 0..=1 is refused and the rate stays as it was.
    pub fn set_sample_rate(&self, rate: f64) -> Result<(), TelemetryError> {
        self.sample_ppm.store(sample_ppm(rate)?, Ordering::Relaxed);
        Ok(())
    }

    /// The fraction of decisions emitted as events.
    pub fn sample_rate(&self) -> f64 {
        self.sample_ppm.load(Ordering::Relaxed) as f64 / PPM as f64
    }

    /// Takes one decision; never waits and takes no lock.
    pub fn observe(&self, decision: &Decision) {
        let n = u128::from(self.seen.fetch_add(1, Ordering::Relaxed));
        let ppm = u128::from(self.sample_ppm.load(Ordering::Relaxed));
        if (n + 1) * ppm / PPM > n * ppm / PPM {
            emit(decision);
        }
        if self.slots.is_empty() {
            return;
        }
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = &self.slots[(ticket % self.slots.len() as u64) as usize];
        if !slot.write(ticket, decision) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Up to `n` of the most recent decisions, newest first; each one's
    /// [`Decision::rationale`] gives its full text. Writers never wait for it.
    pub fn recent(&self, n: usize) -> Vec<Decision> {
        let mut kept: Vec<(u64, Decision)> = self.slots.iter().filter_map(Slot::read).collect();
        kept.sort_unstable_by_key(|it| std::cmp::Reverse(it.0));
        kept.into_iter().take(n).map(|(_, d)| d).collect()
    }

    /// Decisions not kept in the ring because a writer a whole lap of it away held their slot.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// One decision as an event; its fields are formatted only when a subscriber takes it.
fn emit(d: &Decision) {
    let rule = d.reason.rule_name();
    let estimates = d.estimates;
    tracing::info!(
        target: DECISION_TARGET,
        pool = d.pool.as_str(),
        size = d.size,
        method = d.method.as_str(),
        reason = d.reason.code().as_str(),
        rule = rule.as_ref().map(Name::as_str),
        zero_copy_estimate_us = estimates.map(|e| e.zero_copy.latency_us),
        grpc_estimate_us = estimates.map(|e| e.grpc.latency_us),
        threshold_bytes = d.threshold.effective,
        confidence = d.confidence,
        propensity = d.propensity,
        policy_version = d.policy_version,
        rationale = %d.rationale(),
        "decision"
    );
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Barrier, Mutex};

    use perf_core::{
        DecisionContext, FixedPolicy, Method, Name, Reason, Timestamp, TransferPolicy,
        TransferRequest,
    };

    use super::*;

    fn decision(size: u64) -> Decision {
        FixedPolicy(Method::Grpc).decide(
            &TransferRequest::new(size),
            &DecisionContext::idle(Timestamp(0)),
        )
    }

    /// A writer into a shared buffer, for a JSON subscriber.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The events `f` emits, as JSON objects, with a JSON subscriber installed.
    fn events(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn sampled_decisions_become_structured_events_at_the_configured_rate() {
        let log = DecisionLog::new(&DecisionLogConfig {
            sample_rate: 0.25,
            recent: 0,
        })
        .unwrap();
        let mut ruled = decision(4096);
        ruled.reason = Reason::Rule {
            name: Name::new("small-frames").unwrap(),
            priority: 7,
        };
        let events = events(|| {
            for _ in 0..100 {
                log.observe(&ruled);
            }
        });
        assert_eq!(events.len(), 25, "one in four");
        let e = &events[0];
        assert_eq!(e["target"], DECISION_TARGET);
        assert_eq!(e["level"], "INFO");
        let fields = &e["fields"];
        assert_eq!(fields["method"], "grpc");
        assert_eq!(fields["reason"], "rule.user_rule");
        assert_eq!(fields["rule"], "small-frames");
        assert_eq!(fields["pool"], "default");
        assert_eq!(fields["size"], 4096);
        assert_eq!(fields["policy_version"], ruled.policy_version);
        assert_eq!(fields["propensity"], ruled.propensity);
        assert_eq!(fields["confidence"], ruled.confidence);
        assert_eq!(fields["rationale"], ruled.rationale().to_string());
    }

    #[test]
    fn a_rate_of_zero_emits_nothing_and_a_rate_of_one_everything() {
        for (rate, expected) in [(0.0, 0), (1.0, 10)] {
            let log = DecisionLog::new(&DecisionLogConfig {
                sample_rate: rate,
                recent: 0,
            })
            .unwrap();
            let n = events(|| (0..10).for_each(|_| log.observe(&decision(1)))).len();
            assert_eq!(n, expected, "rate {rate}");
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_decisions_newest_first() {
        let log = DecisionLog::new(&DecisionLogConfig {
            sample_rate: 0.0,
            recent: 4,
        })
        .unwrap();
        assert!(log.recent(10).is_empty());
        for size in 1..=10 {
            log.observe(&decision(size));
        }
        let sizes: Vec<u64> = log.recent(10).iter().map(|d| d.size).collect();
        assert_eq!(sizes, [10, 9, 8, 7]);
        let sizes: Vec<u64> = log.recent(2).iter().map(|d| d.size).collect();
        assert_eq!(sizes, [10, 9]);
        assert_eq!(log.skipped(), 0);
    }

    #[test]
    fn the_sample_rate_changes_from_the_next_decision_on() {
        let log = DecisionLog::new(&DecisionLogConfig {
            sample_rate: 0.0,
            recent: 0,
        })
        .unwrap();
        let before = events(|| (0..10).for_each(|_| log.observe(&decision(1)))).len();
        log.set_sample_rate(0.5).unwrap();
        assert_eq!(log.sample_rate(), 0.5);
        let after = events(|| (0..10).for_each(|_| log.observe(&decision(1)))).len();
        assert_eq!((before, after), (0, 5));
        assert!(log.set_sample_rate(2.0).is_err());
        assert_eq!(log.sample_rate(), 0.5, "a refused rate changes nothing");
    }

    /// Writers on several threads and a reader all the while: every decision read is one that
    /// was written whole (its size and its pool agree), and once the writers stop, the ring
    /// holds exactly the newest decisions.
    #[test]
    fn concurrent_writers_and_readers_see_only_whole_decisions() {
        const THREADS: u64 = 4;
        const EACH: u64 = 20_000;
        let log = Arc::new(
            DecisionLog::new(&DecisionLogConfig {
                sample_rate: 0.0,
                recent: 64,
            })
            .unwrap(),
        );
        let pools: Vec<Name> = (0..THREADS)
            .map(|t| Name::new(&format!("pool-{t}")).unwrap())
            .collect();
        let start = Arc::new(Barrier::new(THREADS as usize + 1));
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (log, start, pool) = (log.clone(), start.clone(), pools[t as usize]);
                std::thread::spawn(move || {
                    start.wait();
                    for i in 0..EACH {
                        let mut d = decision(t * EACH + i);
                        d.pool = pool;
                        log.observe(&d);
                    }
                })
            })
            .collect();
        start.wait();
        while writers.iter().any(|w| !w.is_finished()) {
            for d in log.recent(64) {
                let t = d.size / EACH;
                assert_eq!(d.pool, pools[t as usize], "a torn decision: {d:?}");
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        let last = log.recent(64);
        assert_eq!(last.len(), 64, "every slot holds a whole decision");
        for d in &last {
            assert_eq!(d.pool, pools[(d.size / EACH) as usize]);
        }
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        for config in [
            DecisionLogConfig {
                sample_rate: 1.5,
                recent: 1,
            },
            DecisionLogConfig {
                sample_rate: f64::NAN,
                recent: 1,
            },
            DecisionLogConfig {
                sample_rate: 0.5,
                recent: MAX_RECENT + 1,
            },
        ] {
            assert!(
                matches!(
                    DecisionLog::new(&config),
                    Err(TelemetryError::DecisionLog(_))
                ),
                "{config:?}"
            );
        }
        assert!(DecisionLog::new(&DecisionLogConfig::default()).is_ok());
    }
}
