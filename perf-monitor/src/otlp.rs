//! OTLP export over gRPC: the telemetry as OpenTelemetry instruments, pushed to a collector by a
//! periodic reader.
//!
//! Counters and gauges are observable instruments whose callbacks read the atomic tables.
//! Histograms are synchronous OpenTelemetry histograms fed off the record path: at each
//! collection, what each bucket gained since the last one is replayed at the bucket's mean, so
//! OTLP carries the same bucket counts and sums as `/metrics` (min and max are not exported).
//! The replay costs one SDK record per transfer and runs on the reader's thread, never on the
//! transfer path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    Histogram, Meter, MeterProvider as _, ObservableCounter, ObservableGauge,
};
use opentelemetry_otlp::{MetricExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, PeriodicReader, SdkMeterProvider, Stream,
};
use perf_core::config::{MAX_OTLP_ENDPOINT as MAX_ENDPOINT_LEN, MonitorSettings};

use crate::catalog::{Family, Kind};
use crate::histogram::{NS_PER_SEC, SeriesSnapshot};
use crate::telemetry::{Point, PointValue, Telemetry, TelemetryError};

/// Where and how often to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's OTLP/gRPC endpoint, `http://host:port` (TLS is not built in).
    pub endpoint: String,
    /// Time between exports, 100 ms to 1 h.
    pub interval: Duration,
    /// Time one export may take, 100 ms to 1 min.
    pub timeout: Duration,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: "http://127.0.0.1:4317".to_owned(),
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
            service_name: "perfopt".to_owned(),
        }
    }
}

impl OtlpConfig {
    /// The export a configuration's `[monitor]` table asks for, or `None` when it names no
    /// endpoint.
    pub fn from_settings(settings: &MonitorSettings) -> Option<OtlpConfig> {
        let endpoint = settings.otlp_endpoint.clone()?;
        Some(OtlpConfig {
            endpoint,
            interval: Duration::from_secs(settings.otlp_interval_secs),
            timeout: Duration::from_secs(settings.otlp_timeout_secs),
            ..OtlpConfig::default()
        })
    }

    fn check(&self) -> Result<(), TelemetryError> {
        let bad = |what, detail: String| Err(TelemetryError::OtlpConfig { what, detail });
        if self.endpoint.len() > MAX_ENDPOINT_LEN || !self.endpoint.starts_with("http://") {
            return bad(
                "endpoint",
                format!(
                    "expected http://host:port of at most {MAX_ENDPOINT_LEN} bytes, got {:?}",
                    self.endpoint.chars().take(80).collect::<String>()
                ),
            );
        }
        let range = |what, d: Duration, max: Duration| {
            if d < Duration::from_millis(100) || d > max {
                bad(what, format!("expected 100ms to {max:?}, got {d:?}"))
            } else {
                Ok(())
            }
        };
        range("interval", self.interval, Duration::from_secs(3600))?;
        range("timeout", self.timeout, Duration::from_secs(60))?;
        if self.service_name.is_empty() || self.service_name.len() > 256 {
            return bad(
                "service_name",
                format!("expected 1 to 256 bytes, got {}", self.service_name.len()),
            );
        }
        Ok(())
    }
}

/// A running OTLP export of one [`Telemetry`]; dropping it stops the export after a last push.
///
/// [`OtlpExporter::force_flush`], [`OtlpExporter::shutdown`] and the drop wait for the
/// collector (up to [`OtlpConfig::timeout`]): call them off an async runtime's worker threads
/// (in `spawn_blocking`, or on a thread of their own).
pub struct OtlpExporter {
    provider: SdkMeterProvider,
    _counters: Vec<ObservableCounter<u64>>,
    _gauges: Vec<ObservableGauge<f64>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter").finish_non_exhaustive()
    }
}

impl OtlpExporter {
    /// Starts pushing `telemetry` to `config.endpoint` every `config.interval`. It runs on
    /// threads of its own, so it may be called from anywhere; the connection is made lazily,
    /// so an unreachable collector shows in [`OtlpExporter::force_flush`], not here.
    pub fn start(
        telemetry: Arc<Telemetry>,
        config: &OtlpConfig,
    ) -> Result<OtlpExporter, TelemetryError> {
        config.check()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("perfopt-otlp")
            .enable_all()
            .build()
            .map_err(|e| TelemetryError::Otlp(format!("cannot start its runtime: {e}")))?;
        let exporter = {
            let _entered = runtime.enter();
            MetricExporter::builder()
                .with_tonic()
                .with_endpoint(config.endpoint.clone())
                .with_timeout(config.timeout)
                .build()
                .map_err(|e| TelemetryError::Otlp(e.to_string()))?
        };
        let reader = PeriodicReader::builder(exporter)
            .with_interval(config.interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .with_view(histogram_view)
            .build();
        let meter = provider.meter("perfopt");
        let (counters, gauges) = instruments(&meter, telemetry);
        Ok(OtlpExporter {
            provider,
            _counters: counters,
            _gauges: gauges,
            runtime: Some(runtime),
        })
    }

    /// Collects and pushes now, waiting for the collector's answer.
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        self.provider
            .force_flush()
            .map_err(|e| TelemetryError::Otlp(e.to_string()))
    }

    /// Pushes a last time and stops.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        let res = self
            .provider
            .shutdown()
            .map_err(|e| TelemetryError::Otlp(e.to_string()));
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        res
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // A failed last push has no one left to tell.
            let _ = self.provider.shutdown();
            rt.shutdown_background();
        }
    }
}

/// Histograms keep perfopt's buckets, in seconds, and no min or max (the replay knows only
/// bucket means).
fn histogram_view(instrument: &Instrument) -> Option<Stream> {
    let family = Family::ALL
        .iter()
        .find(|f| f.def().kind == Kind::Histogram && f.def().name == instrument.name())?;
    Stream::builder()
        .with_aggregation(Aggregation::ExplicitBucketHistogram {
            boundaries: bounds_secs(*family),
            record_min_max: false,
        })
        .build()
        .ok()
}

fn bounds_secs(family: Family) -> Vec<f64> {
    family
        .bounds_ns()
        .iter()
        .map(|b| *b as f64 / NS_PER_SEC)
        .collect()
}

fn attributes(point: &Point) -> Vec<KeyValue> {
    point
        .labels
        .iter()
        .map(|(k, v)| KeyValue::new(*k, v.clone()))
        .collect()
}

/// Replays what the atomic histograms gained since the last collection into the SDK's.
struct Replay {
    telemetry: Arc<Telemetry>,
    histograms: Vec<(Family, Histogram<f64>)>,
    seen: Mutex<HashMap<(Family, Vec<String>), SeriesSnapshot>>,
}

impl Replay {
    fn run(&self) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        for (family, histogram) in &self.histograms {
            let bounds = family.bounds_ns();
            for point in self.telemetry.points(*family) {
                let PointValue::Histogram(now) = &point.value else {
                    continue;
                };
                let key = (*family, point.labels.iter().map(|l| l.1.clone()).collect());
                let before = seen.get(&key);
                let attrs = attributes(&point);
                for (b, &count) in now.counts.iter().enumerate() {
                    let n = count.saturating_sub(before.map_or(0, |s| s.counts[b]));
                    if n == 0 {
                        continue;
                    }
                    let sum = now.sums[b].wrapping_sub(before.map_or(0, |s| s.sums[b]));
                    let low = if b == 0 { 0 } else { bounds[b - 1] + 1 };
                    let high = bounds.get(b).copied().unwrap_or(u64::MAX);
                    let mean = (sum / n).clamp(low, high) as f64 / NS_PER_SEC;
                    for _ in 0..n {
                        histogram.record(mean, &attrs);
                    }
                }
                seen.insert(key, now.clone());
            }
        }
    }
}

/// One OpenTelemetry instrument per family; the replay of the histograms runs in the first
/// counter's callback, since the SDK runs every callback before it reads any aggregation.
fn instruments(
    meter: &Meter,
    telemetry: Arc<Telemetry>,
) -> (Vec<ObservableCounter<u64>>, Vec<ObservableGauge<f64>>) {
    let histograms = Family::ALL
        .iter()
        .filter(|f| f.def().kind == Kind::Histogram)
        .map(|f| {
            let def = f.def();
            let h = meter
                .f64_histogram(def.name)
                .with_description(def.help)
                .with_unit(def.unit)
                .with_boundaries(bounds_secs(*f))
                .build();
            (*f, h)
        })
        .collect();
    let replay = Arc::new(Replay {
        telemetry: telemetry.clone(),
        histograms,
        seen: Mutex::new(HashMap::new()),
    });
    let mut counters = Vec::new();
    let mut gauges = Vec::new();
    for family in Family::ALL.iter().copied() {
        let def = family.def();
        let t = telemetry.clone();
        match def.kind {
            Kind::Counter => {
                let replay = (counters.is_empty()).then(|| replay.clone());
                let c = meter
                    .u64_observable_counter(def.name)
                    .with_description(def.help)
                    .with_unit(def.unit)
                    .with_callback(move |observer| {
                        if let Some(r) = &replay {
                            r.run();
                        }
                        for p in t.points(family) {
                            if let PointValue::Counter(n) = p.value {
                                observer.observe(n, &attributes(&p));
                            }
                        }
                    })
                    .build();
                counters.push(c);
            }
            Kind::Gauge => {
                let g = meter
                    .f64_observable_gauge(def.name)
                    .with_description(def.help)
                    .with_unit(def.unit)
                    .with_callback(move |observer| {
                        for p in t.points(family) {
                            if let PointValue::Gauge(v) = p.value {
                                observer.observe(v, &attributes(&p));
                            }
                        }
                    })
                    .build();
                gauges.push(g);
            }
            Kind::Histogram => {}
        }
    }
    (counters, gauges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused_with_what_came() {
        assert!(OtlpConfig::default().check().is_ok());
        let cases = [
            OtlpConfig {
                endpoint: "https://collector:4317".into(),
                ..OtlpConfig::default()
            },
            OtlpConfig {
                endpoint: format!("http://{}", "a".repeat(MAX_ENDPOINT_LEN)),
                ..OtlpConfig::default()
            },
            OtlpConfig {
                interval: Duration::from_millis(10),
                ..OtlpConfig::default()
            },
            OtlpConfig {
                timeout: Duration::from_secs(600),
                ..OtlpConfig::default()
            },
            OtlpConfig {
                service_name: String::new(),
                ..OtlpConfig::default()
            },
        ];
        let whats: Vec<&str> = cases
            .iter()
            .map(|c| match c.check() {
                Err(TelemetryError::OtlpConfig { what, .. }) => what,
                other => panic!("{c:?} gave {other:?}"),
            })
            .collect();
        assert_eq!(
            whats,
            [
                "endpoint",
                "endpoint",
                "interval",
                "timeout",
                "service_name"
            ]
        );
    }

    #[test]
    fn the_monitor_table_gives_the_export_or_none() {
        let mut settings = MonitorSettings::default();
        assert_eq!(OtlpConfig::from_settings(&settings), None);
        settings.otlp_endpoint = Some("http://collector:4317".into());
        settings.otlp_interval_secs = 3;
        settings.otlp_timeout_secs = 2;
        let config = OtlpConfig::from_settings(&settings).unwrap();
        assert_eq!(config.endpoint, "http://collector:4317");
        assert_eq!(config.interval, Duration::from_secs(3));
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(config.service_name, "perfopt");
        assert!(config.check().is_ok());
    }
}
