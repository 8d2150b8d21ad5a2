//! Monitoring of perfopt: telemetry, Prometheus and OTLP export, the dashboard, health endpoints,
//! analysis, and the detection of regressions, anomalies and bottlenecks with recommendations.
//!
//! This crate will own a `MetricsSink` of `perf-core` that turns every decision and transfer into
//! telemetry events; Prometheus exposition, OpenTelemetry (OTLP) export and a Grafana dashboard;
//! a live dashboard updated within 1 s; liveness, readiness and degraded health endpoints for the
//! optimizer itself; bottlenecks named by cause (serialization, allocation, page faults or IO,
//! socket); outliers put beside what happened at the time; regressions against baselines per size
//! class and data type, grouped, explained and with next steps; and recommendations ranked by
//! impact against effort, each with the configuration snippet that applies it and a follow-up of
//! predicted against actual gain.
//!
//! Built: the HTTP endpoints ([`http`]): `/livez`, `/readyz` with its checks and the degraded
//! state, `/metrics`, and the JSON API under `/api/v1/`, over the [`http::Daemon`] a host
//! runtime implements. The rest is not built yet; it will cover R5 (monitoring), R7
//! (regression detection), R11 (recommendations) and R2.4 (regression alerts).

pub mod http;
