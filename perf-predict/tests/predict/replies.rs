//! Reply models: calls' replies teach models of their own, whose crossover the controller turns
//! into the size from which replies come back by shared memory; saved and loaded with the rest.

use std::sync::Arc;

use perf_core::seams::Predictor;
use perf_core::{
    Config, Controller, DecisionContext, FailureKind, Method, Name, ReplyRecord, Timestamp,
    TransferMetrics, TransferRequest,
};
use perf_predict::synthetic::{SyntheticModel, samples};
use perf_predict::{Learner, ModelConfig};

use super::{MIB, grpc_truth};

/// Replies fetched by gRPC: cheap to start, 350 µs per MiB.
fn grpc_reply() -> SyntheticModel {
    SyntheticModel {
        method: Method::Grpc,
        fixed_us: 95.0,
        cached_us_per_mib: 350.0,
        bulk_us_per_mib: 350.0,
        knot_bytes: 2 * MIB,
        noise: 0.02,
    }
}

/// Replies in a segment of the worker's: mapping costs 400 µs, then 50 µs per MiB. The two
/// cross at about 1.02 MiB, so among powers of two zero-copy wins from 2 MiB.
fn zero_copy_reply(fixed_us: f64) -> SyntheticModel {
    SyntheticModel {
        method: Method::ZeroCopy,
        fixed_us,
        cached_us_per_mib: 50.0,
        bulk_us_per_mib: 50.0,
        knot_bytes: 2 * MIB,
        noise: 0.02,
    }
}

/// `n` calls, each with a reply drawn from `zero_copy` or from gRPC's model in turn.
fn calls(n: usize, zero_copy: &SyntheticModel, inline: bool) -> Vec<TransferMetrics> {
    let requests = samples(&grpc_truth(0.02), n, 11);
    let zc = samples(zero_copy, n, 12);
    let grpc = samples(&grpc_reply(), n, 13);
    requests
        .into_iter()
        .enumerate()
        .map(|(i, mut m)| {
            let r = if i % 2 == 0 { &zc[i] } else { &grpc[i] };
            m.reply = Some(ReplyRecord {
                method: r.method,
                size: r.size,
                latency_us: r.latency_us,
                inline,
            });
            m
        })
        .collect()
}

fn learner() -> Learner {
    Learner::new("test", ModelConfig::default()).unwrap()
}

fn decide(predictor: Arc<dyn Predictor>, request: TransferRequest) -> perf_core::Decision {
    let controller = Controller::builder(Config::default())
        .predictor(predictor)
        .build()
        .unwrap();
    controller.decide(&request, &DecisionContext::idle(Timestamp::from_secs(1)))
}

#[test]
fn replies_teach_their_own_models_and_the_controller_sends_them_by_the_crossover() {
    let learner = learner();
    assert_eq!(
        learner.update_batch(&calls(4000, &zero_copy_reply(400.0), false)),
        4000
    );
    assert_eq!(
        learner.samples(),
        4000,
        "the requests teach the request models"
    );
    assert_eq!(learner.reply_samples(), 4000);
    let snap = learner.snapshot();
    for method in [Method::ZeroCopy, Method::Grpc] {
        let reply = snap.reply_model(Name::DEFAULT_POOL, method).unwrap();
        assert_eq!(reply.samples(), 2000, "{method}");
    }
    // The replies' models are not the requests': a 64 MiB gRPC request costs about 66 ms in its
    // model, a 64 MiB gRPC reply about 22 ms in its own.
    let request = snap
        .estimate(Name::DEFAULT_POOL, Method::Grpc, 64 * MIB)
        .unwrap();
    let reply = snap
        .reply_model(Name::DEFAULT_POOL, Method::Grpc)
        .unwrap()
        .estimate(snap.config(), 64 * MIB);
    assert!(
        request.latency_us > 2.5 * reply.latency_us,
        "{request:?} {reply:?}"
    );

    assert_eq!(snap.reply_crossover(Name::DEFAULT_POOL), Some(2 * MIB));
    assert_eq!(snap.reply_crossover(Name::new("other").unwrap()), None);
    let predictor: Arc<dyn Predictor> = Arc::new(learner.predictor());
    assert_eq!(predictor.reply_crossover(Name::DEFAULT_POOL), Some(2 * MIB));

    // The default pool's threshold is 10 MiB; its replies go by shared memory from 2 MiB.
    let d = decide(predictor.clone(), TransferRequest::new(MIB));
    assert_eq!(d.threshold.effective, 10 * MIB);
    assert_eq!(d.reply_threshold, 2 * MIB);
    // What the caller forces holds for the reply too.
    let grpc = TransferRequest {
        override_method: Some(Method::Grpc),
        ..TransferRequest::new(MIB)
    };
    assert_eq!(decide(predictor.clone(), grpc).reply_threshold, u64::MAX);
    let zc = TransferRequest {
        override_method: Some(Method::ZeroCopy),
        ..TransferRequest::new(MIB)
    };
    assert_eq!(decide(predictor, zc).reply_threshold, 0);
}

#[test]
fn without_reply_models_replies_follow_the_pool_threshold() {
    let learner = learner();
    let d = decide(Arc::new(learner.predictor()), TransferRequest::new(MIB));
    assert_eq!(d.reply_threshold, d.threshold.effective);
}

#[test]
fn where_grpc_replies_always_win_shared_memory_is_kept_for_the_largest() {
    let learner = learner();
    // Mapping at 400 ms pays off only from about 1.3 GiB.
    learner.update_batch(&calls(4000, &zero_copy_reply(400_000.0), false));
    let snap = learner.snapshot();
    assert_eq!(snap.reply_crossover(Name::DEFAULT_POOL), Some(u64::MAX));
    let d = decide(Arc::new(learner.predictor()), TransferRequest::new(MIB));
    // Held at the pool's ceiling, so the largest replies still go, and are still measured.
    assert_eq!(d.reply_threshold, 1 << 30);
}

#[test]
fn inline_replies_and_failed_calls_teach_no_reply_model() {
    let learner = learner();
    learner.update_batch(&calls(1000, &zero_copy_reply(400.0), true));
    assert_eq!(learner.reply_samples(), 0);
    let mut failed = calls(1000, &zero_copy_reply(400.0), false);
    for m in &mut failed {
        m.fail(FailureKind::Handler);
    }
    assert_eq!(learner.update_batch(&failed), 0);
    assert_eq!(learner.reply_samples(), 0);
    assert_eq!(learner.snapshot().reply_crossover(Name::DEFAULT_POOL), None);
}

#[test]
fn saved_reply_models_come_back_and_older_saves_without_them_still_load() {
    let learner = learner();
    learner.update_batch(&calls(4000, &zero_copy_reply(400.0), false));
    let loaded = Learner::decode(&learner.encode(), "test", ModelConfig::default()).unwrap();
    let (a, b) = (learner.snapshot(), loaded.snapshot());
    assert_eq!(b.reply_crossover(Name::DEFAULT_POOL), Some(2 * MIB));
    for method in [Method::ZeroCopy, Method::Grpc] {
        for size in [4096, MIB, 64 * MIB] {
            let e = |s: &perf_predict::ModelSnapshot| {
                s.reply_model(Name::DEFAULT_POOL, method)
                    .unwrap()
                    .estimate(s.config(), size)
            };
            assert_eq!(e(&a), e(&b), "{method} {size}");
        }
    }
    assert_eq!(loaded.encode(), learner.encode());

    // Models saved before replies existed have no `replies` field.
    let old = learner_without_replies();
    let loaded = Learner::decode(&old.encode(), "test", ModelConfig::default()).unwrap();
    assert_eq!(loaded.reply_samples(), 0);
    assert_eq!(loaded.samples(), old.samples());
}

/// A learner whose encoding has no `replies` field at all, as builds before replies wrote.
fn learner_without_replies() -> Learner {
    let learner = learner();
    learner.update_batch(&samples(&grpc_truth(0.02), 500, 3));
    let bytes = learner.encode();
    let at = bytes.iter().position(|&b| b == b'\n').unwrap();
    let mut body: serde_json::Value = serde_json::from_slice(&bytes[at + 1..]).unwrap();
    assert!(body.as_object_mut().unwrap().remove("replies").is_some());
    let body = serde_json::to_vec(&body).unwrap();
    let framed = super::persist::framed(1, &body);
    Learner::decode(&framed, "test", ModelConfig::default()).unwrap()
}
