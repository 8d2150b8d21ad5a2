//! The Prometheus text exposition (format 0.0.4) of the telemetry, for `/metrics`.

use std::collections::HashMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::registry::Registry;

use crate::catalog::{Family, Kind};
use crate::histogram::NS_PER_SEC;
use crate::telemetry::{Point, PointValue, Telemetry};

/// The `Content-Type` of [`Telemetry::prometheus_text`].
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every family's series at one moment, to be encoded.
#[derive(Debug)]
struct Scrape(Vec<(Family, Vec<Point>)>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (family, points) in &self.0 {
            let def = family.def();
            let kind = match def.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(def.name, def.help, None, kind)?;
            for point in points {
                let mut series = metric.encode_family(&point.labels)?;
                match &point.value {
                    PointValue::Counter(n) => {
                        series.encode_counter::<NoLabelSet, u64, u64>(n, None)?
                    }
                    // Whole values print as integers (`3`, not `3.0`).
                    PointValue::Gauge(v) if v.fract() == 0.0 && v.abs() < 2f64.powi(53) => {
                        series.encode_gauge(&(*v as i64))?
                    }
                    PointValue::Gauge(v) => series.encode_gauge(v)?,
                    PointValue::Histogram(h) => {
                        let mut buckets: Vec<(f64, u64)> = family
                            .bounds_ns()
                            .iter()
                            .map(|b| *b as f64 / NS_PER_SEC)
                            .zip(h.counts.iter().copied())
                            .collect();
                        buckets.push((f64::INFINITY, *h.counts.last().unwrap_or(&0)));
                        series.encode_histogram::<NoLabelSet>(
                            h.sum() as f64 / NS_PER_SEC,
                            h.count(),
                            &buckets,
                            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
                        )?
                    }
                }
            }
        }
        Ok(())
    }
}

impl Telemetry {
    /// Every metric as Prometheus text exposition (format 0.0.4, served with
    /// [`PROMETHEUS_CONTENT_TYPE`]): one `# HELP` and `# TYPE` per metric, names under
    /// `perfopt_`, seconds and bytes as units, `_total` on counters.
    pub fn prometheus_text(&self) -> String {
        let scrape = Scrape(Family::ALL.iter().map(|f| (*f, self.points(*f))).collect());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut text = String::new();
        // Writing into a String cannot fail, and the collector only fails when its writer does.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}
