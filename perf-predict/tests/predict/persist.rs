//! Saved cost models: round trips, every rejection with its message, damaged bytes, store versions.

use perf_core::rng::SplitMix;
use perf_core::{MemoryModelStore, Method, ModelStore, Name, NoopModelStore, Timestamp};
use perf_predict::synthetic::samples;
use perf_predict::{COST_MODELS_NAME, Learner, ModelConfig, PredictError};
use serde_json::Value;

use super::{MIB, grpc_truth, trained, zero_copy_truth};

const SIZES: [u64; 7] = [1, 1024, 100_000, MIB, 3 * MIB, 64 * MIB, 1 << 30];

/// Every estimate of every model at several sizes, for exact comparison.
fn estimates(learner: &Learner) -> Vec<perf_predict::ModelEstimate> {
    let snap = learner.snapshot();
    let mut out = Vec::new();
    for method in [Method::Grpc, Method::ZeroCopy] {
        for size in SIZES {
            out.push(snap.estimate(Name::DEFAULT_POOL, method, size).unwrap());
        }
    }
    out
}

/// FNV-1a 64, as the format uses.
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `body` behind a header that matches it, as an intact file would have.
pub(crate) fn framed(version: u32, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "perfopt.cost-models v{version} len={} fnv64={:016x}\n",
        body.len(),
        fnv64(body)
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The JSON body of an encoding.
fn body(bytes: &[u8]) -> Value {
    let at = bytes.iter().position(|&b| b == b'\n').unwrap();
    serde_json::from_slice(&bytes[at + 1..]).unwrap()
}

fn decode_err(bytes: &[u8]) -> String {
    Learner::decode(bytes, "test", ModelConfig::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn a_round_trip_gives_identical_predictions_and_bytes() {
    let learner = trained(0.05, 2000);
    let bytes = learner.encode();
    assert!(bytes.starts_with(b"perfopt.cost-models v1 len="), "header");
    let back = Learner::decode(&bytes, "test", ModelConfig::default()).unwrap();
    assert_eq!(back.version(), learner.version());
    assert_eq!(estimates(&back), estimates(&learner));
    assert_eq!(back.encode(), bytes, "encoding is stable");
    assert_eq!(*back.snapshot().platform(), *"test");

    // Both go on learning the same way: the whole state was kept.
    let more = samples(&grpc_truth(0.05), 300, 77);
    learner.update_batch(&more);
    back.update_batch(&more);
    assert_eq!(back.version(), learner.version());
    assert_eq!(estimates(&back), estimates(&learner));
    assert_eq!(back.encode(), learner.encode());

    // Nothing earlier than the loaded version to roll back to.
    let fresh = Learner::decode(&bytes, "test", ModelConfig::default()).unwrap();
    assert!(matches!(
        fresh.rollback(),
        Err(PredictError::NoPreviousVersion(_))
    ));

    // An empty learner round-trips too.
    let empty = Learner::new("test", ModelConfig::default()).unwrap();
    let back = Learner::decode(&empty.encode(), "test", ModelConfig::default()).unwrap();
    assert_eq!((back.version(), back.snapshot().models().count()), (0, 0));
}

#[test]
fn loaded_models_take_the_settings_they_are_given() {
    let learner = trained(0.05, 2000);
    let bytes = learner.encode();
    let wider = ModelConfig {
        interval: 0.99,
        min_class_samples: 5,
        ..ModelConfig::default()
    };
    let back = Learner::decode(&bytes, "test", wider).unwrap();
    assert_eq!(*back.snapshot().config(), wider);
    let width = |l: &Learner| {
        let e = l
            .snapshot()
            .estimate(Name::DEFAULT_POOL, Method::Grpc, 8 * MIB)
            .unwrap();
        let (lo, hi) = e.interval_us.unwrap();
        hi - lo
    };
    assert!(width(&back) > width(&learner), "99 % is wider than 90 %");

    let other_knot = ModelConfig {
        knot_bytes: 4 * MIB,
        ..ModelConfig::default()
    };
    let e = Learner::decode(&bytes, "test", other_knot)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "cost model file rejected: fitted with a knot at 2097152 bytes, the settings have it at 4194304"
    );
    let bad = ModelConfig {
        forgetting: 2.0,
        ..ModelConfig::default()
    };
    assert!(matches!(
        Learner::decode(&bytes, "test", bad),
        Err(PredictError::InvalidConfig {
            field: "forgetting",
            ..
        })
    ));
}

#[test]
fn every_kind_of_bad_file_is_rejected_with_a_clear_message() {
    let bytes = trained(0.05, 500).encode();
    let at = bytes.iter().position(|&b| b == b'\n').unwrap();
    let good_body = &bytes[at + 1..];

    assert_eq!(
        decode_err(b"perfopt.classifier v1 len=2 fnv64=0000000000000000\n{}"),
        "cost model file rejected: not a perfopt.cost-models file: the header does not start with perfopt.cost-models"
    );
    assert_eq!(
        decode_err(b"{\"no\": \"header\"}"),
        "cost model file rejected: no header line, expected perfopt.cost-models"
    );
    assert_eq!(
        decode_err(&vec![b'x'; 1000]),
        "cost model file rejected: no header line, expected perfopt.cost-models"
    );

    let v2 = framed(2, good_body);
    assert_eq!(
        Learner::decode(&v2, "test", ModelConfig::default()).unwrap_err(),
        PredictError::IncompatibleModel {
            found: 2,
            expected: 1
        }
    );
    assert_eq!(
        decode_err(&v2),
        "cost model file has layout version 2, this build reads version 1"
    );

    let cut = &bytes[..bytes.len() - 10];
    let e = decode_err(cut);
    assert!(
        e.starts_with("cost model file rejected: body is ") && e.ends_with("(truncated?)"),
        "{e}"
    );

    let mut flipped = bytes.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 0x01;
    let e = decode_err(&flipped);
    assert!(
        e.starts_with("cost model file rejected: checksum mismatch: the header says "),
        "{e}"
    );

    let e = decode_err(&framed(1, b"{\"platform\": \"test\", \"version\": 1"));
    assert!(
        e.starts_with("cost model file rejected: invalid JSON: EOF"),
        "{e}"
    );

    let e = Learner::decode(&bytes, "linux-arm64", ModelConfig::default()).unwrap_err();
    assert_eq!(
        e,
        PredictError::OtherPlatform {
            found: "test".to_string(),
            expected: "linux-arm64".to_string()
        }
    );
    assert_eq!(
        e.to_string(),
        "cost models were measured on platform \"test\", expected models of \"linux-arm64\""
    );

    // A coefficient that is not finite cannot be written as a JSON number:
    // serde_json writes NaN as null, and 1e999 overflows.
    for bad in [Value::Null, Value::String("NaN".to_string())] {
        let mut v = body(&bytes);
        v["models"][0]["model"]["latency"]["theta"][0] = bad;
        let e = decode_err(&framed(1, &serde_json::to_vec(&v).unwrap()));
        assert!(
            e.starts_with("cost model file rejected: invalid JSON: invalid type"),
            "{e}"
        );
    }
    let text = serde_json::to_string(&body(&bytes)).unwrap();
    let start = text.find("\"theta\":[").unwrap() + "\"theta\":[".len();
    let end = start + text[start..].find(',').unwrap();
    let overflow = format!("{}1e999{}", &text[..start], &text[end..]);
    let e = decode_err(&framed(1, overflow.as_bytes()));
    assert!(e.contains("invalid JSON"), "{e}");

    // Numbers that parse but make no sense are caught by the checks.
    let mut v = body(&bytes);
    v["models"][0]["model"]["latency"]["p"][1][1] = Value::from(-1.0);
    let e = decode_err(&framed(1, &serde_json::to_vec(&v).unwrap()));
    assert_eq!(
        e,
        "cost model file rejected: model of zero_copy in pool default: latency fit: covariance diagonal -1 is not finite and positive"
    );
    let mut v = body(&bytes);
    v["models"][1]["model"]["cpu"]["lambda"] = Value::from(1.5);
    let e = decode_err(&framed(1, &serde_json::to_vec(&v).unwrap()));
    assert!(
        e.ends_with("cpu fit: forgetting factor 1.5, expected 0.9 to 1.0"),
        "{e}"
    );
    let mut v = body(&bytes);
    v["models"][0]["model"]["corrections"][2][3]["score"] = Value::from(5.0);
    let e = decode_err(&framed(1, &serde_json::to_vec(&v).unwrap()));
    assert!(
        e.ends_with("size class 2, load band 3: correction score 5, expected -1 to 1"),
        "{e}"
    );
    let mut v = body(&bytes);
    v["models"][0]["model"]["recent_load"] = Value::from(1.5);
    let e = decode_err(&framed(1, &serde_json::to_vec(&v).unwrap()));
    assert!(e.ends_with("recent load 1.5, expected 0 to 1"), "{e}");
    let mut v = body(&bytes);
    v["models"][0]["model"]["samples"] = Value::from(3);
    let e = decode_err(&framed(1, &serde_json::to_vec(&v).unwrap()));
    assert!(
        e.ends_with("3 samples, but 500 counted by size class"),
        "{e}"
    );
    let mut v = body(&bytes);
    let first = v["models"][0].clone();
    v["models"].as_array_mut().unwrap().push(first);
    let e = decode_err(&framed(1, &serde_json::to_vec(&v).unwrap()));
    assert_eq!(
        e,
        "cost model file rejected: two models of zero_copy in pool default"
    );
}

/// Damaged bytes (flipped, cut, inserted, duplicated) never panic: the
/// decoder rejects them, or, when the damage only touched the header's
/// spelling (a checksum digit's case), decodes the very same models.
#[test]
fn random_damage_never_panics() {
    let learner = trained(0.05, 300);
    let bytes = learner.encode();
    let want = estimates(&learner);
    let rng = SplitMix::new(2024);
    let (mut rejected, mut accepted) = (0, 0);
    for round in 0..3000 {
        let mut damaged = bytes.clone();
        let at = (rng.next_u64() % damaged.len() as u64) as usize;
        match round % 4 {
            0 => damaged[at] ^= 1 << (rng.next_u64() % 8),
            1 => damaged.truncate(at),
            2 => damaged.insert(at, rng.next_u64() as u8),
            _ => damaged[at] = rng.next_u64() as u8,
        }
        match Learner::decode(&damaged, "test", ModelConfig::default()) {
            Ok(back) => {
                assert_eq!(estimates(&back), want, "round {round}");
                accepted += 1;
            }
            Err(_) => rejected += 1,
        }
    }
    assert!(rejected > 2900 && accepted + rejected == 3000, "{rejected}");
}

#[test]
fn a_store_keeps_versions_and_loads_the_newest() {
    let store = MemoryModelStore::default();
    let config = ModelConfig::default();
    assert!(Learner::load(&store, "test", config).unwrap().is_none());
    assert!(
        Learner::load(&NoopModelStore, "test", config)
            .unwrap()
            .is_none()
    );

    let learner = trained(0.05, 1000);
    assert_eq!(learner.save(&store, Timestamp::from_secs(1)).unwrap(), 1);
    let first = estimates(&learner);
    learner.update_batch(&samples(&zero_copy_truth(0.05), 500, 31));
    assert_eq!(learner.save(&store, Timestamp::from_secs(2)).unwrap(), 2);

    let stored = store.load_model(COST_MODELS_NAME).unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.saved_at),
        (2, Timestamp::from_secs(2))
    );
    let back = Learner::load(&store, "test", config).unwrap().unwrap();
    assert_eq!(back.version(), learner.version());
    assert_eq!(estimates(&back), estimates(&learner));
    assert_ne!(estimates(&back), first);

    // Models of another platform in the store are refused, not used.
    assert!(matches!(
        Learner::load(&store, "other", config),
        Err(PredictError::OtherPlatform { .. })
    ));
    // A damaged newest version is refused with the store's bytes untouched.
    store
        .save_model(COST_MODELS_NAME, b"garbage", Timestamp::from_secs(3))
        .unwrap();
    let e = Learner::load(&store, "test", config).unwrap_err();
    assert!(matches!(e, PredictError::CorruptModel(_)), "{e}");
}
