//! Metrics store of perfopt: implements `MetricsSink` and `MetricsQuery` from `perf-core` with
//! time series, percentiles and persistence in redb.
//!
//! This crate will own the record of every completed transfer (the `TransferMetrics` vocabulary
//! shared from the hot path to the dashboards), recording that never blocks the caller,
//! aggregation into time series from 1 s to 1 h granularity, percentiles P50, P95, P99 and P99.9
//! by pool, method and range, profiles that correlate latency with size, format, compression and
//! load, retention, clean-up and archival of old metrics, and migration of stored data on
//! upgrade. Its crash safety will be tested as redb's is: by killing the writer at random points
//! and reopening, with storage faults injected through a test backend.
//!
//! Not implemented yet. It will cover R2.1, R2.3, R2.5 and R2.6 (measurement), the series of
//! R5.4, and R14.5 and R14.6 (retention and migration).

pub mod model;

pub use model::{
    Backend, Batch, Bucket, BucketKey, Granularity, Measure, SeriesKey, Stats, StoreError,
    size_class,
};
