//! Monitoring of perfopt: telemetry, Prometheus and OTLP export, the dashboard, health endpoints,
//! analysis, and the detection of regressions, anomalies and bottlenecks with recommendations.
//!
//! ## Built
//!
//! - [`Telemetry`], a [`perf_core::MetricsSink`] that turns every transfer record and its
//!   decision into counters and histograms: relaxed atomic additions into tables fixed at
//!   construction, with no lock, no allocation and no syscall on `record` (the `record` bench
//!   measures it). Pools get series of their own when configured
//!   ([`TelemetryConfig::pools`]) and share `pool="other"` otherwise; sizes are bounded to
//!   [`SIZE_CLASS_LABELS`]; histogram buckets are fixed. Failed transfers are counted by kind
//!   and kept out of bytes and durations.
//! - Gauges the host runtime sets: [`Telemetry::set_load`], [`Telemetry::set_pool_threshold`],
//!   [`Telemetry::set_shm`], [`Telemetry::set_model`], [`Telemetry::add_drift_events`],
//!   [`Telemetry::set_degraded`]; build info from [`TelemetryConfig::version`].
//! - Prometheus text exposition for `/metrics`: [`Telemetry::prometheus_text`], served with
//!   [`PROMETHEUS_CONTENT_TYPE`]. Every name, help text, type and label set is in
//!   [`Family`] and fixed by a snapshot test.
//! - OTLP over gRPC with the OpenTelemetry SDK and a periodic reader: [`OtlpExporter`], tested
//!   against a real OTLP receiver.
//! - [`DecisionLog`]: decisions as structured `tracing` events (pool, size, method, reason,
//!   rule, estimates, threshold, confidence, propensity, policy version, rationale) sampled at
//!   [`DecisionLogConfig::sample_rate`], and a bounded ring of the most recent decisions for the
//!   API ([`DecisionLog::recent`]), whose rationale is written only when read.
//! - The HTTP endpoints ([`http`], axum, loopback unless allowed): `/livez`, `/readyz` with its
//!   checks, the degraded state and what to do about it, `/metrics`, and the JSON API under
//!   `/api/v1/`, over the [`http::Daemon`] a host runtime implements; every body and query
//!   parameter from outside is bounded.
//!
//! ```
//! use std::sync::Arc;
//!
//! use perf_core::{MetricsSink, Name};
//! use perf_monitor::{ShmUsage, Telemetry, TelemetryConfig};
//!
//! let telemetry = Arc::new(Telemetry::new(&TelemetryConfig::for_pools([Name::DEFAULT_POOL]))?);
//! // The host hands it to the executor as one of its sinks...
//! let sink: Arc<dyn MetricsSink> = telemetry.clone();
//! # let _ = sink;
//! // ...sets the gauges it knows...
//! telemetry.set_load(1, 0);
//! telemetry.set_shm(ShmUsage { segments: 2, held_bytes: 1 << 21, budget_bytes: 1 << 30 });
//! // ...and serves the text at /metrics.
//! assert!(telemetry.prometheus_text().contains("perfopt_shm_held_bytes 2097152"));
//! # Ok::<(), perf_monitor::TelemetryError>(())
//! ```
//!
//! ## Not built yet
//!
//! The live dashboard,
//! the Grafana dashboard and Prometheus rules; bottlenecks named by cause; outliers beside what
//! happened at the time; regressions against baselines; recommendations. They will cover the rest
//! of R5 (monitoring), R7 (regression detection), R11 (recommendations), R2.4 (regression
//! alerts).

mod catalog;
mod decisions;
mod histogram;
pub mod http;
mod labels;
mod otlp;
mod prometheus;
mod telemetry;

pub use catalog::{Family, Kind, MetricDef};
pub use decisions::{DECISION_TARGET, DecisionLog, DecisionLogConfig, MAX_RECENT};
pub use labels::{OTHER_POOL, SIZE_CLASS_LABELS, SIZE_CLASSES, size_class};
pub use otlp::{OtlpConfig, OtlpExporter};
pub use prometheus::PROMETHEUS_CONTENT_TYPE;
pub use telemetry::{ModelStatus, ShmUsage, Telemetry, TelemetryConfig, TelemetryError};
