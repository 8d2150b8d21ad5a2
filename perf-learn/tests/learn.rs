//! The classifier and the learning engine on synthetic machines whose crossover is known:
//! accuracy and regret on held-out pairs, model files that round-trip and are rejected when
//! damaged, publication only after validation, drift that triggers retraining, a model that
//! loses accuracy dropped for the rules, persistence, and thresholds that follow the crossover.

use std::sync::{Arc, Mutex};

use perf_core::{
    ChangeKind, Config, Controller, DecisionContext, MemoryModelStore, Method, MethodClassifier,
    ModelStore, Name, Proposal, Reason, SystemState, ThresholdBreakdown, ThresholdChange,
    ThresholdControl, ThresholdError, Timestamp, TransferRequest, ZeroCopyAvailability,
};
use perf_learn::synthetic::{Physics, Workload};
use perf_learn::{
    Classifier, EventKind, LearnConfig, LearnError, LearningEngine, MODEL_NAME, PairedDataset,
    TreeConfig, Trigger, crossover,
};

const NOW: Timestamp = Timestamp(1_700_000_000_000_000_000);

fn dataset(seed: u64, n: usize, loaded_share: f64) -> PairedDataset {
    let mut w = Workload::new(Physics::default(), seed);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        w.cpu = if (i as f64 / n as f64) < loaded_share {
            0.9
        } else {
            0.05
        };
        samples.push(w.pair());
    }
    PairedDataset { samples }
}

#[test]
fn the_classifier_learns_the_crossover_and_its_dependence_on_load() {
    let data = dataset(1, 4000, 0.5);
    let (train, test) = data.split(0.8, 7);
    assert_eq!((train.len(), test.len()), (3200, 800));
    let model = Classifier::train(&train, &TreeConfig::default(), NOW).unwrap();
    let e = model.evaluate(&test);
    eprintln!(
        "synthetic: accuracy {:.4}, regret {:.5}",
        e.accuracy, e.regret
    );
    assert!(e.accuracy > 0.95, "held-out accuracy {}", e.accuracy);
    assert!(e.regret < 0.01, "regret {}", e.regret);
    assert!(e.model_us < e.always_grpc_us && e.model_us < e.always_zero_copy_us);
    let total: u64 = e.confusion.iter().flatten().sum();
    assert_eq!(total as usize, test.len());

    // Far from the crossover the model is sure; the crossover moves with load.
    let mut w = Workload::new(Physics::default(), 2);
    let mut pick = |size: u64, cpu: f64| {
        w.cpu = cpu;
        let mut s = w.pair();
        s.size = size;
        model.predict(&s.features())
    };
    let (m, p) = pick(2 << 10, 0.05);
    assert_eq!(m, Method::Grpc);
    assert!(p > 0.9, "{p}");
    let (m, p) = pick(64 << 20, 0.05);
    assert_eq!(m, Method::ZeroCopy);
    assert!(p > 0.9, "{p}");
    // 256 KiB: past the idle crossover (64 KiB), short of the loaded one (~780 KiB).
    assert_eq!(pick(256 << 10, 0.05).0, Method::ZeroCopy);
    assert_eq!(pick(256 << 10, 0.9).0, Method::Grpc);
}

#[test]
fn too_few_samples_is_an_error_not_a_model() {
    let data = dataset(3, 5, 0.0);
    assert!(matches!(
        Classifier::train(&data.samples, &TreeConfig::default(), NOW),
        Err(LearnError::TooFew { got: 5, .. })
    ));
}

#[test]
fn model_files_round_trip_and_damage_is_rejected_clearly() {
    let data = dataset(4, 1000, 0.3);
    let mut model = Classifier::train(&data.samples, &TreeConfig::default(), NOW).unwrap();
    model.version = 3;
    let bytes = model.encode();
    let back = Classifier::decode(&bytes).unwrap();
    assert!(back == model, "the decoded model differs");
    assert_eq!(back.encode(), bytes);

    // A flipped byte in the body: checksum mismatch.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 10;
    flipped[last] ^= 0x20;
    let e = Classifier::decode(&flipped).unwrap_err();
    assert!(matches!(e, LearnError::Corrupt(_)), "{e}");
    // Truncated.
    let e = Classifier::decode(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    // Another layout version.
    let newer = String::from_utf8(bytes.clone())
        .unwrap()
        .replacen(" v1 ", " v2 ", 1);
    assert_eq!(
        Classifier::decode(newer.as_bytes()).unwrap_err(),
        LearnError::Incompatible {
            found: 2,
            expected: 1
        }
    );
    // Not a model at all.
    assert!(Classifier::decode(b"hello").is_err());
    assert!(Classifier::decode(b"").is_err());

    // A well-formed file whose tree points backwards (a loop) is refused.
    let text = String::from_utf8(bytes).unwrap();
    let body_at = text.find('\n').unwrap() + 1;
    let mut body: serde_json::Value = serde_json::from_str(&text[body_at..]).unwrap();
    body["nodes"][0]["left"] = serde_json::json!(0);
    let body = serde_json::to_vec(&body).unwrap();
    let e = Classifier::decode(&reencode(&body)).unwrap_err();
    assert!(e.to_string().contains("children"), "{e}");

    // Random damage never panics.
    let good = model.encode();
    let mut w = perf_learn::synthetic::Rng::new(9);
    for _ in 0..500 {
        let mut b = good.clone();
        for _ in 0..1 + w.next_u64() % 4 {
            let i = (w.next_u64() % b.len() as u64) as usize;
            b[i] = w.next_u64() as u8;
        }
        let _ = Classifier::decode(&b);
    }
}

/// A header with the right length and checksum for `body`, as `encode` writes.
fn reencode(body: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut out = format!("perfopt.classifier v1 len={} fnv64={h:016x}\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn small_config() -> LearnConfig {
    LearnConfig {
        min_samples: 400,
        retrain_after_drift: 150,
        // The synthetic clock moves 1 ms per transfer.
        drift_sample_every: std::time::Duration::from_millis(2),
        ..LearnConfig::default()
    }
}

fn ctx(cpu: f64) -> DecisionContext {
    DecisionContext {
        now: NOW,
        system: SystemState {
            cpu_utilization: cpu,
            memory_used: 0.3,
            ..SystemState::IDLE
        },
        zero_copy: ZeroCopyAvailability::Pooled,
    }
}

#[test]
fn the_engine_publishes_only_after_enough_evidence_and_the_controller_follows_it() {
    let mut engine = LearningEngine::new(small_config());
    let classifier = engine.classifier();
    let controller = Arc::new(
        Controller::builder(Config::default())
            .classifier(Arc::new(classifier.clone()))
            .build()
            .unwrap(),
    );
    let mut engine_with = engine_with_controller(&mut engine, controller.clone());
    let engine = &mut engine_with;
    let request = TransferRequest::new(1 << 20); // 1 MiB: gRPC by the 10 MiB default
    assert_eq!(controller.decide(&request, &ctx(0.05)).method, Method::Grpc);

    let mut w = Workload::new(Physics::default(), 5);
    w.cpu = 0.05;
    let mut fed = 0;
    while engine.status().paired < 399 {
        for m in w.live_pair() {
            engine.observe(&m);
            fed += 1;
        }
        assert!(classifier.classify(&request, &ctx(0.05)).is_none());
    }
    assert_eq!(engine.status().trainings, 0);
    for m in w.live_pair() {
        engine.observe(&m);
    }
    fed += 2;
    let status = engine.status();
    assert!(status.active, "{status:?} after {fed} transfers");
    let published = engine
        .events()
        .find_map(|e| match &e.kind {
            EventKind::Published {
                trigger,
                validation,
                ..
            } => Some((*trigger, *validation)),
            _ => None,
        })
        .expect("a Published event");
    assert_eq!(published.0, Trigger::FirstModel);
    assert!(published.1.accuracy >= 0.9);

    // The controller now sends 1 MiB by zero-copy, saying why.
    let d = controller.decide(&request, &ctx(0.05));
    assert_eq!(d.method, Method::ZeroCopy);
    assert!(matches!(d.reason, Reason::Learned { .. }), "{d:?}");

    // The threshold moved from 10 MiB toward the measured crossover (64 KiB),
    // by at most one bounded step.
    let moved = engine
        .events()
        .find_map(|e| match &e.kind {
            EventKind::ThresholdMoved {
                crossover,
                from,
                to,
                ..
            } => Some((*crossover, *from, *to)),
            _ => None,
        })
        .expect("a ThresholdMoved event");
    assert!(moved.0 < 256 << 10, "crossover {}", moved.0);
    assert!(moved.2 < moved.1, "{moved:?}");
    let now = controller
        .threshold(Name::DEFAULT_POOL, &SystemState::IDLE)
        .unwrap();
    assert_eq!(now.effective, moved.2);
}

fn engine_with_controller(engine: &mut LearningEngine, c: Arc<Controller>) -> LearningEngine {
    std::mem::replace(engine, LearningEngine::new(small_config())).with_controller(c)
}

/// A policy's thresholds as the engine sees them: one configured pool at 10 MiB; proposals
/// are recorded, and answered with a move to the target or refused.
struct FakeThresholds {
    pool: Name,
    refuse: bool,
    proposals: Mutex<Vec<(Name, u64)>>,
}

impl ThresholdControl for FakeThresholds {
    fn threshold(
        &self,
        pool: Name,
        _system: &SystemState,
    ) -> Result<ThresholdBreakdown, ThresholdError> {
        if pool != self.pool {
            return Err(ThresholdError::UnknownPool(pool.to_string()));
        }
        Ok(ThresholdBreakdown {
            base: 10 << 20,
            history: 1.0,
            resources: 1.0,
            effective: 10 << 20,
        })
    }
    fn propose(
        &self,
        pool: Name,
        proposal: &Proposal<'_>,
    ) -> Result<ThresholdChange, ThresholdError> {
        self.proposals.lock().unwrap().push((pool, proposal.target));
        if self.refuse {
            return Err(ThresholdError::LearningOff(pool.to_string()));
        }
        Ok(ThresholdChange {
            pool,
            at: proposal.at,
            kind: ChangeKind::Adjust,
            from_factor: 1.0,
            to_factor: proposal.target as f64 / f64::from(10 << 20),
            from_bytes: 10 << 20,
            to_bytes: proposal.target,
            reason: proposal.reason.to_string(),
            expected_gain: proposal.expected_gain,
        })
    }
}

/// Feeds live pairs, half of them to `other`, until a model is published.
fn publish_with(control: Arc<FakeThresholds>, other: Name) -> LearningEngine {
    let mut engine = LearningEngine::new(small_config()).with_controller(control);
    let mut w = Workload::new(Physics::default(), 5);
    w.cpu = 0.05;
    let mut i = 0;
    while !engine.status().active {
        i += 1;
        for mut m in w.live_pair() {
            if i % 2 == 0 {
                m.pool = other;
            }
            engine.observe(&m);
        }
    }
    engine
}

#[test]
fn thresholds_move_through_the_policy_seam_for_configured_pools_only() {
    let other = Name::new("other").unwrap();
    let control = Arc::new(FakeThresholds {
        pool: Name::DEFAULT_POOL,
        refuse: false,
        proposals: Mutex::new(Vec::new()),
    });
    let engine = publish_with(control.clone(), other);
    let proposals = control.proposals.lock().unwrap().clone();
    assert_eq!(proposals.len(), 1, "{proposals:?}");
    let (pool, target) = proposals[0];
    assert_eq!(
        pool,
        Name::DEFAULT_POOL,
        "an unconfigured pool got a proposal"
    );
    assert!(
        target < 256 << 10,
        "the crossover is near 64 KiB, proposed {target}"
    );
    let moved: Vec<_> = engine
        .events()
        .filter_map(|e| match &e.kind {
            EventKind::ThresholdMoved { pool, from, to, .. } => Some((*pool, *from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(moved, [(Name::DEFAULT_POOL, 10 << 20, target)]);
}

#[test]
fn a_refused_proposal_is_no_threshold_move() {
    let control = Arc::new(FakeThresholds {
        pool: Name::DEFAULT_POOL,
        refuse: true,
        proposals: Mutex::new(Vec::new()),
    });
    let engine = publish_with(control.clone(), Name::new("other").unwrap());
    assert_eq!(control.proposals.lock().unwrap().len(), 1);
    assert!(
        !engine
            .events()
            .any(|e| matches!(e.kind, EventKind::ThresholdMoved { .. })),
        "a refused proposal was reported as a move"
    );
}

#[test]
fn drift_is_detected_and_the_model_retrained() {
    let mut engine = LearningEngine::new(small_config());
    let classifier = engine.classifier();
    let mut w = Workload::new(Physics::default(), 6);
    w.cpu = 0.05;
    while !engine.status().active {
        for m in w.live_pair() {
            engine.observe(&m);
        }
    }
    let first = engine.status().version;
    // A CPU hog starts: the crossover moves from 64 KiB to ~780 KiB.
    w.cpu = 0.9;
    let start = engine.status().paired;
    let mut transfers = 0u64;
    while engine.status().version == first {
        for m in w.live_pair() {
            engine.observe(&m);
        }
        transfers += 2;
        assert!(
            transfers < 4000,
            "no retraining after {transfers} transfers"
        );
    }
    let drift = engine
        .events()
        .find(|e| matches!(e.kind, EventKind::Drift { .. }))
        .expect("a Drift event");
    assert!(drift.kind.is_alert());
    assert!(drift.paired > start, "drift flagged after the hog started");
    let retrained = engine
        .events()
        .filter_map(|e| match &e.kind {
            EventKind::Published { trigger, .. } => Some(*trigger),
            _ => None,
        })
        .last();
    assert_eq!(retrained, Some(Trigger::Drift));
    // The new model knows the loaded machine: 256 KiB is gRPC's now.
    let v = classifier
        .classify(&TransferRequest::new(256 << 10), &ctx(0.9))
        .unwrap();
    assert_eq!(v.method, Method::Grpc);
    eprintln!(
        "drift: detected {} pairs after the change, retrained after {transfers} transfers",
        drift.paired - start
    );
}

#[test]
fn a_model_that_loses_accuracy_is_dropped_for_the_rules() {
    let mut engine = LearningEngine::new(LearnConfig {
        // Only the accuracy floor may act in this test.
        drift_alpha: 0.0,
        retrain_after_drift: usize::MAX / 2,
        ..small_config()
    });
    let classifier = engine.classifier();
    let mut w = Workload::new(Physics::default(), 8);
    while !engine.status().active {
        for m in w.live_pair() {
            engine.observe(&m);
        }
    }
    // The machine changes so much that the model is wrong half the time:
    // zero-copy now loses everywhere below 64 MiB.
    w.physics.crossover = 64.0 * 1024.0 * 1024.0;
    w.max_size = 64 << 20;
    let mut n = 0;
    while engine.status().active {
        for m in w.live_pair() {
            engine.observe(&m);
        }
        n += 1;
        assert!(n < 2000, "the model was never dropped");
    }
    let dropped = engine
        .events()
        .find_map(|e| match e.kind {
            EventKind::Dropped { live_accuracy } => Some(live_accuracy),
            _ => None,
        })
        .expect("a Dropped event");
    assert!(dropped < 0.75, "{dropped}");
    assert!(
        classifier
            .classify(&TransferRequest::new(1 << 20), &ctx(0.0))
            .is_none(),
        "the rules decide"
    );
}

#[test]
fn models_persist_and_a_damaged_stored_model_leaves_the_rules_in_charge() {
    let store = MemoryModelStore::default();
    let mut engine = LearningEngine::new(small_config()).with_store(Arc::new(store.clone()), NOW);
    let mut w = Workload::new(Physics::default(), 10);
    while !engine.status().active {
        for m in w.live_pair() {
            engine.observe(&m);
        }
    }
    let version = engine.status().version;
    assert_eq!(
        store.load_model(MODEL_NAME).unwrap().unwrap().version,
        version
    );

    // A new process starts from the stored model and answers alike.
    let again = LearningEngine::new(small_config()).with_store(Arc::new(store.clone()), NOW);
    assert!(again.status().active);
    assert!(
        again
            .events()
            .any(|e| e.kind == EventKind::Loaded { version })
    );
    let request = TransferRequest::new(4 << 20);
    assert_eq!(
        again.classifier().classify(&request, &ctx(0.0)),
        engine.classifier().classify(&request, &ctx(0.0))
    );

    // Learning switched off: the stored model does not decide.
    let off = LearningEngine::new(LearnConfig {
        enabled: false,
        ..small_config()
    })
    .with_store(Arc::new(store.clone()), NOW);
    assert!(!off.status().active);
    assert!(off.classifier().classify(&request, &ctx(0.0)).is_none());

    // A damaged model: rejected at load, with an alert, and the rules decide.
    let mut bytes = store.load_model(MODEL_NAME).unwrap().unwrap().bytes;
    let at = bytes.len() - 3;
    bytes[at] ^= 1;
    store.save_model(MODEL_NAME, &bytes, NOW).unwrap();
    let damaged = LearningEngine::new(small_config()).with_store(Arc::new(store), NOW);
    assert!(!damaged.status().active);
    let alert = damaged
        .events()
        .find(|e| matches!(e.kind, EventKind::LoadFailed { .. }))
        .expect("a LoadFailed event");
    assert!(alert.kind.is_alert());
    let text = format!("{:?}", alert.kind);
    assert!(text.contains("checksum"), "{text}");
}

#[test]
fn learning_switched_off_gathers_evidence_but_never_decides() {
    let mut engine = LearningEngine::new(LearnConfig {
        enabled: false,
        ..small_config()
    });
    let mut w = Workload::new(Physics::default(), 12);
    for _ in 0..600 {
        for m in w.live_pair() {
            engine.observe(&m);
        }
    }
    let s = engine.status();
    assert!(s.paired >= 600 && !s.active && s.trainings == 0, "{s:?}");
}

#[test]
fn a_model_that_fails_validation_is_not_published() {
    // Pure noise: both methods cost the same, the label is a coin toss.
    let mut engine = LearningEngine::new(small_config());
    let mut w = Workload::new(
        Physics {
            crossover: 1.0,
            noise: 0.3,
        },
        13,
    );
    w.min_size = 1 << 10;
    w.max_size = 1 << 10;
    let pairs: Vec<_> = (0..500)
        .map(|_| {
            let mut p = w.pair();
            p.grpc_us = p.zero_copy_us * (1.0 + 0.2 * (w.pair().grpc_us.sin()));
            p
        })
        .collect();
    engine.add_paired(&pairs);
    assert!(!engine.status().active);
    assert!(
        engine
            .events()
            .any(|e| matches!(e.kind, EventKind::Rejected { .. })),
        "{:?}",
        engine.events().collect::<Vec<_>>()
    );
}

#[test]
fn the_crossover_is_the_size_from_which_zero_copy_keeps_winning() {
    let mut w = Workload::new(Physics::default(), 14);
    w.physics.noise = 0.0;
    let pairs = w.pairs(2000);
    // Without noise that is the first measured size past the machine's crossover.
    let c = crossover(&pairs, 10 << 20).unwrap();
    let truth = Physics::default().crossover;
    assert!(
        (c.crossover as f64 / truth - 1.0).abs() < 0.05,
        "{} vs {truth}",
        c.crossover
    );
    assert!(c.expected_gain > 0.0);
    assert!(crossover(&[], 1).is_none());
}

#[test]
fn earlier_transfers_replayed_count_as_evidence_not_as_observed() {
    let mut w = Workload::new(Physics::default(), 15);
    let history: Vec<_> = (0..300).flat_map(|_| w.live_pair()).collect();
    let mut engine = LearningEngine::new(small_config());
    engine.replay(&history);
    let s = engine.status();
    assert_eq!((s.observed, s.replayed), (0, 600));
    assert_eq!(s.paired, 300);
    // New transfers add to the replayed evidence: 400 pairs train the first model.
    for _ in 0..100 {
        for m in w.live_pair() {
            engine.observe(&m);
        }
    }
    let s = engine.status();
    assert_eq!(s.observed, 200);
    assert!(s.active, "{s:?}");
}

#[test]
fn a_model_answers_only_near_the_sizes_it_learned() {
    let mut w = Workload::new(Physics::default(), 16);
    w.min_size = 1 << 20;
    w.max_size = 4 << 20;
    let mut engine = LearningEngine::new(small_config());
    engine.add_paired(&w.pairs(400));
    let classifier = engine.classifier();
    assert!(engine.status().active);
    let answers = |size: u64| classifier.classify(&TransferRequest::new(size), &ctx(0.0));
    assert!(answers(2 << 20).is_some());
    assert!(answers(600 << 10).is_some(), "within an octave below");
    assert!(answers(7 << 20).is_some(), "within an octave above");
    assert!(answers(64 << 10).is_none(), "no evidence this small");
    assert!(answers(64 << 20).is_none(), "no evidence this large");
}

#[test]
fn failed_transfers_are_counted_and_never_paired_trained_on_or_watched_for_drift() {
    use perf_core::FailureKind;
    let mut w = Workload::new(Physics::default(), 17);
    let mut engine = LearningEngine::new(small_config());
    // A failed transfer between the two halves of a live pair is not the other half: the pair
    // still forms from the delivered ones, and the failure's latency is in no sample.
    let mut failed = 0;
    for i in 0..500 {
        let [a, b] = w.live_pair();
        engine.observe(&a);
        let mut f = w.transfer(b.method, b.size, 1e9);
        match i % 3 {
            0 => f.fail(FailureKind::Timeout),
            1 => f.fail(FailureKind::Unavailable),
            // A record that says only `success = false`, as earlier builds wrote them.
            _ => f.success = false,
        }
        engine.observe(&f);
        failed += 1;
        engine.observe(&b);
    }
    let s = engine.status();
    assert_eq!(s.observed, 1500);
    assert_eq!(s.failed, failed);
    assert_eq!(s.paired, 500, "every delivered pair, none with a failure");
    assert!(
        engine
            .samples()
            .all(|p| p.grpc_us < 1e9 && p.zero_copy_us < 1e9)
    );
    assert!(s.active, "{s:?}");
    let live_before = s.live_accuracy;
    // A kind set on a record that still says `success = true` is a failure too: it is no
    // partner for the delivered transfer right after it.
    let [a, b] = w.live_pair();
    let mut odd = a;
    odd.latency_us = 1e9;
    odd.failure = Some(FailureKind::Corrupted);
    engine.observe(&odd);
    engine.observe(&b);
    assert_eq!(engine.status().paired, 500);
    failed += 1;
    // Failures alone, of both methods, with latencies and load no delivered transfer had: no
    // pair, no live accuracy, no drift.
    let mut storm = Vec::new();
    for _ in 0..600 {
        w.cpu = 0.99;
        for mut m in w.live_pair() {
            m.latency_us = 5e8;
            m.fail(FailureKind::Refused);
            storm.push(m);
        }
    }
    engine.replay(&storm);
    let s = engine.status();
    assert_eq!(s.failed, failed + storm.len() as u64);
    assert_eq!(s.replayed, storm.len() as u64);
    assert_eq!(s.paired, 500);
    assert_eq!(s.drifts, 0);
    assert_eq!(s.live_accuracy, live_before);
    assert!(
        engine
            .samples()
            .all(|p| p.grpc_us < 1e9 && p.zero_copy_us < 5e8)
    );
}
