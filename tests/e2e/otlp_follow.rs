//! The OTLP export the configuration asks for, against real receivers (the OpenTelemetry
//! collector's metrics service, served by tonic on loopback sockets): it pushes to the
//! collector `[monitor]` names, moves to another one on a reload, and stops when a reload names
//! none.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use perfopt::core::FixedProbe;
use perfopt::core::conformance::transfer;
use perfopt::export::{ConfiguredExport, ExportEvent};
use perfopt::{Method, Name, Optimizer};
use tokio_stream::wrappers::TcpListenerStream;

/// A receiver that keeps the metric names of every request it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Vec<String>>>>);

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let names = request
            .into_inner()
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| m.name.clone())
            .collect();
        self.0.lock().unwrap().push(names);
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    fn requests(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Waits until a request has come in after `after` others, and returns its names.
    fn next_after(&self, after: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(names) = self.0.lock().unwrap().get(after) {
                return names.clone();
            }
            assert!(Instant::now() < deadline, "no OTLP request within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Serves a receiver on a loopback port of `runtime`.
fn receiver(runtime: &tokio::runtime::Runtime) -> (Receiver, SocketAddr) {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = Receiver::default();
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(receiver.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (receiver, addr)
}

fn config(endpoint: &str) -> String {
    format!("version = 1\n[monitor]\notlp_endpoint = \"{endpoint}\"\notlp_interval_secs = 1\n")
}

/// Waits for `event` among those sent so far.
fn wait_for(events: &Mutex<Vec<ExportEvent>>, event: &ExportEvent) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !events.lock().unwrap().contains(event) {
        assert!(
            Instant::now() < deadline,
            "no {event:?} within 30 s; events: {:?}",
            events.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_export_follows_the_collector_the_configuration_names() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (first, first_addr) = receiver(&runtime);
    let (second, second_addr) = receiver(&runtime);
    let (first_url, second_url) = (
        format!("http://{first_addr}"),
        format!("http://{second_addr}"),
    );

    let optimizer = Arc::new(
        Optimizer::builder()
            .probe(Arc::new(FixedProbe::default()))
            .build()
            .unwrap(),
    );
    optimizer.reload_config(&config(&first_url)).unwrap();
    optimizer.record(&transfer(Name::DEFAULT_POOL, Method::Grpc, 4096, 0, 80.0));
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let export = ConfiguredExport::start(
        optimizer.clone(),
        Box::new(move |e| seen.lock().unwrap().push(e.clone())),
    );
    wait_for(
        &events,
        &ExportEvent::Started {
            endpoint: first_url.clone(),
        },
    );
    let names = first.next_after(0);
    assert!(
        names.iter().any(|n| n == "perfopt_transfers"),
        "the first collector gets the telemetry: {names:?}"
    );

    optimizer.reload_config(&config(&second_url)).unwrap();
    wait_for(
        &events,
        &ExportEvent::Stopped {
            endpoint: first_url.clone(),
        },
    );
    wait_for(
        &events,
        &ExportEvent::Started {
            endpoint: second_url.clone(),
        },
    );
    let names = second.next_after(0);
    assert!(names.iter().any(|n| n == "perfopt_transfers"), "{names:?}");
    let first_total = first.requests();

    optimizer.reload_config("version = 1\n").unwrap();
    wait_for(
        &events,
        &ExportEvent::Stopped {
            endpoint: second_url.clone(),
        },
    );
    let second_total = second.requests();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        (first.requests(), second.requests()),
        (first_total, second_total),
        "nothing is pushed once the configuration names no collector"
    );
    export.stop();
    assert!(
        !events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, ExportEvent::Failed { .. })),
        "{:?}",
        events.lock().unwrap()
    );
}
