//! Replies through the facade: an optimizer's calls to a real worker over a real socket teach
//! its cost models the reply routes, and the engine then sends replies by what it learned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use perfopt::core::FixedProbe;
use perfopt::platform::MemfdShm;
use perfopt::transport::grpc::ClientConfig;
use perfopt::transport::worker::{Call, HandlerError, Output};
use perfopt::transport::{CallOptions, ReplyMethod, SegmentPool, SegmentPoolConfig};
use perfopt::{Method, Name, Optimizer, TransferRequest};

use crate::in_process::InProcessWorker;

const MIB: u64 = 1 << 20;

/// Answers with as many bytes as the caller's `reply` metadata asks, each the payload's first
/// byte plus its index.
fn sized_reply(call: &Call<'_>) -> Result<Option<Output>, HandlerError> {
    let len: usize = call
        .meta("reply")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| HandlerError::new("ValueError", "no reply size"))?;
    let first = call.payload().first().copied().unwrap_or(0);
    let mut out = call.reply_buffer(len);
    for (i, o) in out.iter_mut().enumerate() {
        *o = first.wrapping_add(i as u8);
    }
    Ok(Some(Output::buffer(out)))
}

fn options(reply: u64) -> CallOptions {
    CallOptions {
        metadata: [("reply".to_owned(), reply.to_string())].into(),
        ..CallOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_teach_the_cost_models_and_the_engine_routes_replies_by_them() {
    let worker = InProcessWorker::start(Some(Arc::new(sized_reply))).await;

    let optimizer = Optimizer::builder()
        .probe(Arc::new(FixedProbe::default()))
        .cost_models(true)
        .build()
        .unwrap();
    let pool =
        SegmentPool::new(Arc::new(MemfdShm::default()), SegmentPoolConfig::default()).unwrap();
    let executor = optimizer
        .connect(
            &worker.endpoint,
            ClientConfig::default(),
            Some((pool, worker.secret.clone())),
        )
        .await
        .unwrap();

    // Small requests whose replies go each way by the method forced on the request: 24 replies
    // of each size class and route, so that both reply models are sure of both classes.
    let payload = [9u8; 1024];
    let mut calls = 0;
    for _ in 0..24 {
        for reply in [2 * MIB, 8 * MIB] {
            for method in [Method::ZeroCopy, Method::Grpc] {
                let request = TransferRequest {
                    override_method: Some(method),
                    ..TransferRequest::new(payload.len() as u64)
                };
                let got = executor
                    .call(&request, &payload, &options(reply))
                    .await
                    .unwrap();
                assert_eq!(got.len() as u64, reply);
                assert_eq!(got.bytes()[1], 10);
                calls += 1;
            }
        }
    }
    let models = optimizer.cost_models().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while models.reply_samples() < calls && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        models.reply_samples(),
        calls,
        "every reply taught a reply model"
    );
    let snap = models.snapshot();
    for method in [Method::ZeroCopy, Method::Grpc] {
        let model = snap.reply_model(Name::DEFAULT_POOL, method).unwrap();
        assert_eq!(model.samples(), calls / 2, "{method}");
    }
    let crossover = snap
        .reply_crossover(Name::DEFAULT_POOL)
        .expect("both reply models are sure at 2 and 8 MiB");

    // The engine now sends replies by the learned crossover, held within the pool's floor
    // (1 MiB) and ceiling (1 GiB), rather than by the pool's 10 MiB threshold.
    let d = optimizer.decide(&TransferRequest::new(payload.len() as u64));
    assert_eq!(d.reply_threshold, crossover.clamp(MIB, 1 << 30));
    for reply in [2 * MIB, 8 * MIB] {
        let got = executor
            .call(
                &TransferRequest::new(payload.len() as u64),
                &payload,
                &options(reply),
            )
            .await
            .unwrap();
        let threshold = got.outcome().decision.reply_threshold;
        let route = if reply >= threshold {
            ReplyMethod::Segment
        } else {
            ReplyMethod::Fetched
        };
        assert_eq!(
            got.metrics().method,
            route,
            "{reply} bytes, reply threshold {threshold}, crossover {crossover}"
        );
    }
}
