//! The metrics perfopt exports: one name, help text, kind and unit each, shared by the Prometheus
//! text and OTLP so both say the same.

use crate::histogram::{DECISION_BOUNDS_NS, DURATION_BOUNDS_NS};

/// What kind of instrument a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic count; Prometheus shows it with `_total`.
    Counter,
    /// A value set from outside, that can go up and down.
    Gauge,
    /// A distribution over fixed buckets, in seconds.
    Histogram,
}

/// The description of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The name, `perfopt_` first and the base unit last, without `_total`.
    pub name: &'static str,
    /// One sentence for `# HELP` and the OTLP description.
    pub help: &'static str,
    /// The instrument kind.
    pub kind: Kind,
    /// The unit in UCUM, as OTLP carries it (`s`, `By`, `1`, `{transfer}`).
    pub unit: &'static str,
    /// The label names of its series, in order.
    pub labels: &'static [&'static str],
}

macro_rules! families {
    ($( $(#[$doc:meta])* $variant:ident = ($name:literal, $kind:ident, $unit:literal, [$($label:literal),*], $help:literal), )+) => {
        /// Every metric perfopt exports.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Family {
            $( $(#[$doc])* $variant, )+
        }

        impl Family {
            /// Every family, in export order.
            pub const ALL: &'static [Family] = &[$(Family::$variant),+];

            /// Its description.
            pub const fn def(self) -> MetricDef {
                match self {
                    $(Family::$variant => MetricDef {
                        name: $name,
                        help: $help,
                        kind: Kind::$kind,
                        unit: $unit,
                        labels: &[$($label),*],
                    },)+
                }
            }
        }
    };
}

families! {
    /// Transfers completed, delivered or failed, by the method that carried them.
    Transfers = ("perfopt_transfers", Counter, "{transfer}", ["pool", "method"],
        "Transfers completed, delivered or failed, by pool and the method that carried them."),
    /// Payload bytes of delivered transfers.
    TransferBytes = ("perfopt_transfer_bytes", Counter, "By", ["pool", "method"],
        "Payload bytes of delivered transfers, by pool and method."),
    /// Decisions by chosen method and reason.
    Decisions = ("perfopt_decisions", Counter, "{decision}", ["method", "reason"],
        "Decisions by the method chosen and the step.rule that chose it."),
    /// Decisions that explored.
    Explorations = ("perfopt_explorations", Counter, "{decision}", ["method"],
        "Decisions that explored, by the method they tried."),
    /// Zero-copy attempts that fell back to gRPC.
    Fallbacks = ("perfopt_fallbacks", Counter, "{transfer}", ["pool", "reason"],
        "Zero-copy attempts that fell back to gRPC, by pool and reason."),
    /// Failed transfers by kind.
    Failures = ("perfopt_transfer_failures", Counter, "{transfer}", ["pool", "kind"],
        "Transfers that failed by every way tried, by pool and failure kind."),
    /// Reply bytes of calls.
    ReplyBytes = ("perfopt_reply_bytes", Counter, "By", ["method"],
        "Reply bytes of calls whose worker answered, by the method the reply came back by."),
    /// Drift events the learner detected.
    DriftEvents = ("perfopt_drift_events", Counter, "{event}", [],
        "Drift events detected by learning."),
    /// Measurements left out of the histograms.
    InvalidMeasurements = ("perfopt_telemetry_invalid_measurements", Counter, "{measurement}", [],
        "Latencies or queue times that were not a finite non-negative number, kept out of the histograms; their transfers are still counted."),
    /// Duration of delivered transfers.
    TransferDuration = ("perfopt_transfer_duration_seconds", Histogram, "s", ["pool", "method", "size_class"],
        "End-to-end duration of delivered transfers, decision and queueing excluded, by pool, method and size class."),
    /// Time waiting for admission.
    QueueDuration = ("perfopt_transfer_queue_seconds", Histogram, "s", ["pool"],
        "Time transfers waited for admission before being carried, by pool."),
    /// Time decisions took.
    DecisionDuration = ("perfopt_decision_duration_seconds", Histogram, "s", [],
        "Time the decision of a transfer took."),
    /// Duration of replies.
    ReplyDuration = ("perfopt_reply_duration_seconds", Histogram, "s", ["method"],
        "Time from a call's acknowledgement to its reply in hand and checked, by method."),
    /// Transfers being carried.
    InFlight = ("perfopt_transfers_in_flight", Gauge, "{transfer}", [],
        "Transfers being carried now."),
    /// Transfers waiting for admission.
    Queued = ("perfopt_transfers_queued", Gauge, "{transfer}", [],
        "Transfers waiting for admission now."),
    /// The effective threshold of a pool.
    PoolThreshold = ("perfopt_pool_threshold_bytes", Gauge, "By", ["pool"],
        "The effective size threshold of a pool, above which zero-copy is favoured."),
    /// Shared-memory segments held.
    ShmSegments = ("perfopt_shm_segments", Gauge, "{segment}", [],
        "Shared-memory segments held by the segment pool."),
    /// Shared memory held.
    ShmHeld = ("perfopt_shm_held_bytes", Gauge, "By", [],
        "Shared memory held by the segment pool."),
    /// The shared-memory budget.
    ShmBudget = ("perfopt_shm_budget_bytes", Gauge, "By", [],
        "The shared-memory budget the segment pool may hold."),
    /// Whether a learned model decides.
    ModelActive = ("perfopt_model_active", Gauge, "{state}", [],
        "1 when a learned model takes part in decisions, 0 when rules and estimates decide alone."),
    /// Whether learning is on.
    LearningEnabled = ("perfopt_learning_enabled", Gauge, "{state}", [],
        "1 when learning is on in the configuration, 0 when it was turned off."),
    /// The version of the model.
    ModelVersion = ("perfopt_model_version", Gauge, "{version}", [],
        "The version of the learned model in use."),
    /// The validation accuracy of the model.
    ModelAccuracy = ("perfopt_model_validation_accuracy_ratio", Gauge, "1", [],
        "The accuracy of the learned model on its validation set, 0 to 1."),
    /// Whether the optimizer is degraded.
    Degraded = ("perfopt_degraded", Gauge, "{state}", [],
        "1 when the optimizer runs degraded (model dropped, store failing, shared memory unavailable, failure or fallback rate high)."),
    /// Build information.
    BuildInfo = ("perfopt_build_info", Gauge, "{info}", ["version"],
        "Always 1; the version label names the perfopt build."),
}

impl Family {
    /// The finite bucket bounds of a histogram, in nanoseconds; empty for other kinds.
    pub(crate) const fn bounds_ns(self) -> &'static [u64] {
        match self {
            Family::TransferDuration | Family::QueueDuration | Family::ReplyDuration => {
                DURATION_BOUNDS_NS
            }
            Family::DecisionDuration => DECISION_BOUNDS_NS,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for f in Family::ALL {
            let d = f.def();
            assert!(seen.insert(d.name), "{} twice", d.name);
            assert!(d.name.starts_with("perfopt_"), "{}", d.name);
            assert!(
                !d.name["perfopt_".len()..].contains("perfopt"),
                "{}",
                d.name
            );
            assert!(
                !d.name.ends_with("_total"),
                "{}: the encoder adds _total",
                d.name
            );
            assert!(
                d.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                d.name
            );
            // As an OpenTelemetry collector translates OTLP to Prometheus names, so that both
            // routes give the same names: `1` becomes `_ratio`, a `{...}` annotation nothing.
            match d.unit {
                "s" => assert!(d.name.ends_with("_seconds"), "{}", d.name),
                "By" => assert!(d.name.ends_with("_bytes"), "{}", d.name),
                "1" => assert!(d.name.ends_with("_ratio"), "{}", d.name),
                unit => assert!(
                    unit.starts_with('{') && unit.ends_with('}'),
                    "{}: unit {unit}",
                    d.name
                ),
            }
            assert_eq!(d.kind == Kind::Histogram, !f.bounds_ns().is_empty());
            for l in d.labels {
                assert!(
                    ["pool", "method", "reason", "size_class", "kind", "version"].contains(l),
                    "{}: label {l} is not in the bounded set",
                    d.name
                );
            }
        }
    }
}
