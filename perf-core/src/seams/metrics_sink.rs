//! The `MetricsSink` seam: where the record of every transfer goes, and a sink that drops it.

use crate::metrics::TransferMetrics;

/// Receives the record of every completed transfer.
pub trait MetricsSink: Send + Sync {
    /// Records one transfer; never blocks the caller (a full buffer drops and counts).
    fn record(&self, metrics: &TransferMetrics);
    /// Makes recorded metrics durable or visible; may block.
    fn flush(&self) {}
}

/// A sink that discards everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopSink;

impl MetricsSink for NoopSink {
    fn record(&self, _metrics: &TransferMetrics) {}
}
