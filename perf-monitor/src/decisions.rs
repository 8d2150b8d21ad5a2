//! Decisions for audit and diagnosis: sampled structured `tracing` events (a JSON subscriber
//! makes them an audit log) and a bounded ring of the most recent decisions, whose rationale is
//! written only when read.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use perf_core::{Decision, Name};

use crate::TelemetryError;

/// The most decisions the ring keeps.
pub const MAX_RECENT: usize = 4096;

/// The `tracing` target of decision events.
pub const DECISION_TARGET: &str = "perfopt::decision";

const PPM: u128 = 1_000_000;

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

/// The decision log: [`DecisionLog::observe`] takes each decision without waiting, emits the
/// sampled ones as `tracing` events at INFO under [`DECISION_TARGET`] and keeps the last
/// [`DecisionLogConfig::recent`] for [`DecisionLog::recent`].
#[derive(Debug)]
pub struct DecisionLog {
    sample_ppm: u128,
    seen: AtomicU64,
    next: AtomicU64,
    skipped: AtomicU64,
    slots: Box<[Slot]>,
}

/// One ring slot: a decision and its place in the order of arrival.
type Slot = Mutex<Option<(u64, Decision)>>;

impl DecisionLog {
    /// A log for `config`; a rate outside 0..=1 or a ring over [`MAX_RECENT`] is refused.
    pub fn new(config: &DecisionLogConfig) -> Result<DecisionLog, TelemetryError> {
        if !(0.0..=1.0).contains(&config.sample_rate) {
            return Err(TelemetryError::DecisionLog(format!(
                "sample rate expected 0 to 1, got {}",
                config.sample_rate
            )));
        }
        if config.recent > MAX_RECENT {
            return Err(TelemetryError::DecisionLog(format!(
                "recent decisions expected at most {MAX_RECENT}, got {}",
                config.recent
            )));
        }
        Ok(DecisionLog {
            sample_ppm: (config.sample_rate * PPM as f64).round() as u128,
            seen: AtomicU64::new(0),
            next: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            slots: (0..config.recent).map(|_| Mutex::new(None)).collect(),
        })
    }

    /// Takes one decision; never waits. A ring slot being read at that moment is left as it
    /// was, and counted in [`DecisionLog::skipped`].
    pub fn observe(&self, decision: &Decision) {
        let n = u128::from(self.seen.fetch_add(1, Relaxed));
        if (n + 1) * self.sample_ppm / PPM > n * self.sample_ppm / PPM {
            emit(decision);
        }
        if self.slots.is_empty() {
            return;
        }
        let ticket = self.next.fetch_add(1, Relaxed);
        let slot = &self.slots[(ticket % self.slots.len() as u64) as usize];
        match slot.try_lock() {
            Ok(mut kept) => *kept = Some((ticket, *decision)),
            Err(_) => {
                self.skipped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Up to `n` of the most recent decisions, newest first; each one's
    /// [`Decision::rationale`] gives its full text.
    pub fn recent(&self, n: usize) -> Vec<Decision> {
        let mut kept: Vec<(u64, Decision)> = self
            .slots
            .iter()
            .filter_map(|slot| *slot.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        kept.sort_unstable_by_key(|it| std::cmp::Reverse(it.0));
        kept.into_iter().take(n).map(|(_, d)| d).collect()
    }

    /// Decisions that found their ring slot being read and were not kept.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Relaxed)
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
    use std::sync::{Arc, Mutex};

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
