//! OTLP to a real receiver: the OpenTelemetry collector's metrics gRPC service, served by tonic
//! on a loopback socket, gets the expected metric names and values.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use perf_monitor::{OtlpConfig, OtlpExporter};
use tokio_stream::wrappers::TcpListenerStream;

use super::{busy_telemetry, feed};

/// A receiver that keeps every request it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ExportMetricsServiceRequest>>>);

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// The metrics of the last request.
    fn last(&self) -> Vec<Metric> {
        let requests = self.0.lock().unwrap();
        let last = requests.last().expect("the receiver got a request");
        last.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| s.metrics.clone())
            .collect()
    }
}

fn labels_match(
    attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    want: &[(&str, &str)],
) -> bool {
    attrs.len() == want.len()
        && want.iter().all(|(k, v)| {
            attrs.iter().any(|a| {
                a.key == *k
                    && matches!(
                        a.value.as_ref().and_then(|v| v.value.as_ref()),
                        Some(any_value::Value::StringValue(s)) if s == v
                    )
            })
        })
}

fn metric<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
    metrics.iter().find(|m| m.name == name).unwrap_or_else(|| {
        panic!(
            "no {name} among {:?}",
            metrics.iter().map(|m| &m.name).collect::<Vec<_>>()
        )
    })
}

/// The value of a sum's series with `labels`, which must be monotonic and cumulative.
fn counter(metrics: &[Metric], name: &str, labels: &[(&str, &str)]) -> u64 {
    let Some(metric::Data::Sum(sum)) = &metric(metrics, name).data else {
        panic!("{name} is not a sum");
    };
    assert!(sum.is_monotonic, "{name} is a counter");
    assert_eq!(sum.aggregation_temporality, 2, "{name} is cumulative");
    let point = sum
        .data_points
        .iter()
        .find(|p| labels_match(&p.attributes, labels))
        .unwrap_or_else(|| panic!("no {name} {labels:?}"));
    match point.value {
        Some(number_data_point::Value::AsInt(n)) => n as u64,
        other => panic!("{name} is {other:?}"),
    }
}

fn gauge(metrics: &[Metric], name: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(metric::Data::Gauge(g)) = &metric(metrics, name).data else {
        panic!("{name} is not a gauge");
    };
    let point = g
        .data_points
        .iter()
        .find(|p| labels_match(&p.attributes, labels))
        .unwrap_or_else(|| panic!("no {name} {labels:?}"));
    match point.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        other => panic!("{name} is {other:?}"),
    }
}

/// Count, sum, bucket bounds and bucket counts of a histogram's series with `labels`.
fn histogram(
    metrics: &[Metric],
    name: &str,
    labels: &[(&str, &str)],
) -> (u64, f64, Vec<f64>, Vec<u64>) {
    let m = metric(metrics, name);
    assert_eq!(m.unit, "s", "{name}");
    let Some(metric::Data::Histogram(h)) = &m.data else {
        panic!("{name} is not a histogram");
    };
    let p = h
        .data_points
        .iter()
        .find(|p| labels_match(&p.attributes, labels))
        .unwrap_or_else(|| panic!("no {name} {labels:?}"));
    assert_eq!((p.min, p.max), (None, None), "min and max are not exported");
    (
        p.count,
        p.sum.unwrap_or(f64::NAN),
        p.explicit_bounds.clone(),
        p.bucket_counts.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_transfers_reach_a_real_otlp_receiver() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = Receiver::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(receiver.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let telemetry = Arc::new(busy_telemetry(1));
    let config = OtlpConfig {
        endpoint: format!("http://{addr}"),
        // Long enough that only the flushes below export.
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(10),
        service_name: "perfopt-test".to_owned(),
    };
    let exporter = OtlpExporter::start(telemetry.clone(), &config).unwrap();
    // Flushing blocks until the collector answers, so it runs off the test's runtime threads.
    let exporter = tokio::task::spawn_blocking(move || {
        exporter.force_flush().unwrap();
        exporter
    })
    .await
    .unwrap();

    let metrics = receiver.last();
    let requests = receiver.0.lock().unwrap().clone();
    let service = requests[0].resource_metrics[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .any(|a| {
            a.key == "service.name"
                && labels_match(std::slice::from_ref(a), &[("service.name", "perfopt-test")])
        });
    assert!(service, "the resource names the service");
    for (name, labels, want) in [
        ("perfopt_transfers", [("pool", "a"), ("method", "grpc")], 4),
        (
            "perfopt_transfers",
            [("pool", "other"), ("method", "grpc")],
            1,
        ),
        (
            "perfopt_transfer_bytes",
            [("pool", "b"), ("method", "zero_copy")],
            1 << 20,
        ),
        (
            "perfopt_transfer_failures",
            [("pool", "a"), ("kind", "unavailable")],
            1,
        ),
        (
            "perfopt_fallbacks",
            [("pool", "other"), ("reason", "shm_exhausted")],
            1,
        ),
        (
            "perfopt_decisions",
            [("method", "grpc"), ("reason", "rule.fixed_policy")],
            4,
        ),
    ] {
        assert_eq!(counter(&metrics, name, &labels), want, "{name} {labels:?}");
    }
    assert_eq!(
        gauge(&metrics, "perfopt_pool_threshold_bytes", &[("pool", "a")]),
        65536.0
    );
    assert_eq!(
        gauge(&metrics, "perfopt_model_validation_accuracy_ratio", &[]),
        0.875
    );
    assert_eq!(
        gauge(&metrics, "perfopt_build_info", &[("version", "1.2.3")]),
        1.0
    );
    assert_eq!(gauge(&metrics, "perfopt_transfers_queued", &[]), 5.0);
    let a_grpc = [
        ("pool", "a"),
        ("method", "grpc"),
        ("size_class", "4KiB-16KiB"),
    ];
    let (count, sum, bounds, buckets) =
        histogram(&metrics, "perfopt_transfer_duration_seconds", &a_grpc);
    assert_eq!(count, 3, "failures stay out of durations");
    assert!((sum - 300e-6).abs() < 1e-12, "sum {sum}");
    assert_eq!(bounds.len(), 20);
    assert_eq!(bounds[3], 100e-6);
    assert_eq!(buckets[3], 3, "100 µs is in the 100 µs bucket: {buckets:?}");

    // A second push carries the totals so far: the replay adds only what is new.
    feed(&telemetry, 2);
    let exporter = tokio::task::spawn_blocking(move || {
        exporter.force_flush().unwrap();
        exporter
    })
    .await
    .unwrap();
    let metrics = receiver.last();
    assert_eq!(
        counter(
            &metrics,
            "perfopt_transfers",
            &[("pool", "a"), ("method", "grpc")]
        ),
        12
    );
    let (count, sum, _, buckets) =
        histogram(&metrics, "perfopt_transfer_duration_seconds", &a_grpc);
    assert_eq!((count, buckets[3]), (9, 9));
    assert!((sum - 900e-6).abs() < 1e-12, "sum {sum}");
    let (count, sum, _, _) =
        histogram(&metrics, "perfopt_transfer_queue_seconds", &[("pool", "b")]);
    assert_eq!(count, 3);
    assert!((sum - 6e-3).abs() < 1e-12, "sum {sum}");
    let (count, _, bounds, _) = histogram(&metrics, "perfopt_decision_duration_seconds", &[]);
    assert_eq!((count, bounds.len()), (9, 11));

    tokio::task::spawn_blocking(move || exporter.shutdown().unwrap())
        .await
        .unwrap();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_to_a_collector_that_is_not_there_fails_and_says_so() {
    // Bind and drop, so that nothing listens on the port.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let config = OtlpConfig {
        endpoint: format!("http://{addr}"),
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(2),
        ..OtlpConfig::default()
    };
    let exporter = OtlpExporter::start(Arc::new(busy_telemetry(1)), &config).unwrap();
    let res = tokio::task::spawn_blocking(move || exporter.force_flush())
        .await
        .unwrap();
    assert!(res.is_err(), "a flush nobody received succeeded");
}
