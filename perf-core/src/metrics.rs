//! The record of one completed transfer: the vocabulary from the hot path to the dashboards.

use serde::{Deserialize, Serialize};

use crate::decision::{Decision, ExperimentArm, ReasonCode};
use crate::name::Name;
use crate::request::{SystemState, Timestamp, TransferRequest};
use crate::vocab::{Compression, DataType, Format, Method};

/// Why a zero-copy transfer fell back to gRPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// No segment could be had: pool exhausted, budget reached or no space.
    ShmExhausted,
    /// Creating or mapping a segment failed.
    ShmError,
    /// The worker refused the reference.
    ReferenceRefused,
    /// The worker did not answer in time.
    Timeout,
    /// The worker failed while reading the segment.
    WorkerError,
}

/// Why a transfer failed: every way, gRPC included, was tried and none
/// delivered the payload intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The worker could not be reached, or its connection broke.
    Unavailable,
    /// The worker did not answer within the deadline.
    Timeout,
    /// The worker refused the transfer (bad request, over its limits).
    Refused,
    /// The worker read other bytes than were sent.
    Corrupted,
    /// The payload is larger than perfopt carries.
    TooLarge,
    /// The host could not carry it out (no worker left, an internal error).
    Internal,
    /// The worker's own code failed on the payload (it raised, panicked or returned no valid
    /// reply); the payload itself arrived.
    Handler,
}

impl FailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [FailureKind; 7] = [
        FailureKind::Unavailable,
        FailureKind::Timeout,
        FailureKind::Refused,
        FailureKind::Corrupted,
        FailureKind::TooLarge,
        FailureKind::Internal,
        FailureKind::Handler,
    ];

    /// The kind's name, as in records and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::Unavailable => "unavailable",
            FailureKind::Timeout => "timeout",
            FailureKind::Refused => "refused",
            FailureKind::Corrupted => "corrupted",
            FailureKind::TooLarge => "too_large",
            FailureKind::Internal => "internal",
            FailureKind::Handler => "handler",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reply of a call (a transfer whose worker code answered): how it came back, how large,
/// and how long it took from the acknowledgement to its bytes in hand and checked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReplyRecord {
    /// `ZeroCopy` when it came in a segment of the worker's, `Grpc` when inside the
    /// acknowledgement or streamed.
    pub method: Method,
    /// Reply bytes.
    pub size: u64,
    /// From the acknowledgement to the reply's bytes in hand and checked, in microseconds; not
    /// part of `latency_us`.
    pub latency_us: f64,
    /// Whether it came inside the acknowledgement: its bytes then travelled within the
    /// request's `latency_us`, and its own latency is only the check, so it is no evidence of
    /// what a reply route costs.
    #[serde(default)]
    pub inline: bool,
}

/// Everything measured about one transfer, delivered or failed (R2.1).
///
/// A failed transfer has `success == false` and its [`FailureKind`] in
/// `failure`; its latency is the time until it failed, which is no evidence
/// of either method's speed, so learning and prediction skip it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransferMetrics {
    /// When the transfer started.
    pub started_at: Timestamp,
    /// The pool it went to.
    pub pool: Name,
    /// The method that carried it (after any fallback).
    pub method: Method,
    /// The method the decision chose.
    pub decided_method: Method,
    /// Why the decision chose it.
    pub reason: ReasonCode,
    /// Whether the decision was an exploration.
    pub explored: bool,
    /// Probability that the policy picks `decided_method` in this context.
    pub propensity: f64,
    /// The policy version that decided.
    pub policy_version: u64,
    /// Payload size in bytes.
    pub size: u64,
    /// What the payload holds.
    pub data_type: DataType,
    /// How it is encoded.
    pub format: Format,
    /// How it is compressed.
    pub compression: Compression,
    /// The caller's session.
    pub session: u64,
    /// End-to-end latency, decision excluded, in microseconds.
    pub latency_us: f64,
    /// Payload bytes per second over the latency.
    pub throughput_bps: f64,
    /// Peak extra memory the transfer held (segments, buffers), in bytes.
    pub memory_bytes: u64,
    /// CPU time spent on both sides, in microseconds.
    pub cpu_time_us: f64,
    /// Time the decision took, in nanoseconds.
    pub decision_ns: u64,
    /// The latency the decision predicted for the chosen method, if it had one.
    pub predicted_latency_us: Option<f64>,
    /// The resources at the time.
    pub system: SystemState,
    /// Why a zero-copy attempt fell back to gRPC, if it did.
    pub fallback: Option<FallbackReason>,
    /// Whether the worker confirmed the bytes (checksum) and the transfer completed.
    pub success: bool,
    /// Why the transfer failed, when it did.
    #[serde(default)]
    pub failure: Option<FailureKind>,
    /// Time the transfer waited for admission (a free slot on the host and a
    /// worker) before it started being carried, in microseconds; not part of
    /// `latency_us`.
    #[serde(default)]
    pub queued_us: f64,
    /// The reply, when the transfer was a call whose worker answered.
    #[serde(default)]
    pub reply: Option<ReplyRecord>,
    /// The experiment variant the decision was made under, if any: the store keeps a series
    /// per variant. Left out of a record's JSON when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentArm>,
}

impl TransferMetrics {
    /// A record for `request` carried by `method` after `decision`, with the
    /// measured latency; throughput is derived, other measures start at zero.
    pub fn new(
        request: &TransferRequest,
        decision: &Decision,
        method: Method,
        latency_us: f64,
        started_at: Timestamp,
        system: SystemState,
    ) -> TransferMetrics {
        let throughput_bps = if latency_us > 0.0 {
            request.size as f64 / (latency_us / 1e6)
        } else {
            0.0
        };
        TransferMetrics {
            started_at,
            pool: request.pool,
            method,
            decided_method: decision.method,
            reason: decision.reason.code(),
            explored: decision.reason.is_exploration(),
            propensity: decision.propensity,
            policy_version: decision.policy_version,
            size: request.size,
            data_type: request.data_type,
            format: request.format,
            compression: request.compression,
            session: request.session,
            latency_us,
            throughput_bps,
            memory_bytes: 0,
            cpu_time_us: 0.0,
            decision_ns: 0,
            predicted_latency_us: decision.predicted_latency_us(),
            system,
            fallback: None,
            success: true,
            failure: None,
            queued_us: 0.0,
            reply: None,
            experiment: decision.experiment,
        }
    }

    /// Marks the record as a failure of `kind`.
    pub fn fail(&mut self, kind: FailureKind) {
        self.success = false;
        self.failure = Some(kind);
    }

    /// Whether the record is timing evidence: a delivered transfer.
    pub fn is_evidence(&self) -> bool {
        self.success && self.failure.is_none()
    }

    /// The reply, when it is timing evidence of a reply route: the call delivered, and the
    /// reply came by a segment or was fetched rather than inside the acknowledgement.
    pub fn reply_evidence(&self) -> Option<&ReplyRecord> {
        self.reply
            .as_ref()
            .filter(|r| self.is_evidence() && !r.inline)
    }

    /// The relative error of the prediction, `(measured - predicted) / measured`.
    pub fn prediction_error(&self) -> Option<f64> {
        let predicted = self.predicted_latency_us?;
        (self.latency_us > 0.0).then(|| (self.latency_us - predicted) / self.latency_us)
    }
}
