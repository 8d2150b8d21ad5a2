//! Builds an optimizer from a TOML policy, decides a few transfers, explains them and records one.
//!
//! Run with `cargo run --example quickstart`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use perfopt::{
    Config, DataType, Format, MetricsSink, Name, Optimizer, TransferMetrics, TransferRequest,
};

const POLICY: &str = r#"
version = 1

[defaults]
goal = "minimize_latency"

[pools.ml]
goal = "maximize_throughput"
threshold = "4MiB"

[[pools.ml.rules]]
name = "json-stays-on-grpc"
priority = 10
formats = ["json"]
method = "grpc"
"#;

/// Counts what it is given; a real deployment would use the metrics store.
#[derive(Default)]
struct Tally(AtomicU64);

impl MetricsSink for Tally {
    fn record(&self, _metrics: &TransferMetrics) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tally = Arc::new(Tally::default());
    let optimizer = Optimizer::builder()
        .config(Config::from_toml_str(POLICY)?)
        .sink(tally.clone())
        .seed(42)
        .build()?;

    let ml = Name::new("ml")?;
    let requests = [
        TransferRequest::new(16 << 10),
        TransferRequest::new(8 << 20),
        TransferRequest::new(8 << 20).with_pool(ml),
        TransferRequest::new(64 << 20)
            .with_pool(ml)
            .with_data_type(DataType::Records)
            .with_format(Format::Json),
        TransferRequest::new(256 << 20)
            .with_pool(ml)
            .with_data_type(DataType::Tensor),
    ];
    for request in &requests {
        let decision = optimizer.decide(request);
        println!("{}", decision.rationale());

        // A transport carries the payload and measures it; without one, this
        // example records the engine's own estimate for the chosen method.
        let ctx = optimizer.context();
        let latency_us = decision.predicted_latency_us().unwrap_or(0.0);
        let metrics = TransferMetrics::new(
            request,
            &decision,
            decision.method,
            latency_us,
            ctx.now,
            ctx.system,
        );
        optimizer.record(&metrics);
    }
    println!("recorded {} transfers", tally.0.load(Ordering::Relaxed));
    Ok(())
}
