//! Golden and property tests of the assignment hash and the split.

use perf_abtest::assign::{HASH_VERSION, Split, SplitError, bucket, bucket_session};
use proptest::prelude::*;

/// Every version 2 case of the `hash` section of GrowthBook's
/// `packages/sdk-js/test/cases.json` (specVersion 0.8.0), at commit
/// 05fe635c749bf7bac92cc5221cf523b69d572ada of github.com/growthbook/growthbook:
/// (seed, value, expected bucket).
const GROWTHBOOK_V2_CASES: [(&str, &str, f64); 7] = [
    ("seed", "a", 0.0505),
    ("seed", "b", 0.2696),
    ("foo", "ab", 0.2575),
    ("foo", "def", 0.2019),
    ("89123klj", "8952klfjas09ujkasdf", 0.124),
    ("90850943850283058242805", "123", 0.7516),
    ("()**(%$##$%#$#", "___)((*\":&", 0.0128),
];

#[test]
fn the_hash_is_version_2() {
    assert_eq!(HASH_VERSION, 2);
}

#[test]
fn bucket_matches_growthbooks_published_cases() {
    for (seed, value, want) in GROWTHBOOK_V2_CASES {
        assert_eq!(bucket(seed, value), want, "seed {seed:?}, value {value:?}");
    }
}

#[test]
fn non_ascii_text_is_hashed_as_utf16_code_units() {
    // GrowthBook's JavaScript SDK (packages/sdk-js/src/util.ts, hashFnv32a over charCodeAt)
    // run with node on these inputs; the Python SDK 4.0.0 gives the same.
    assert_eq!(bucket("é-seed", "ü"), 0.835);
    assert_eq!(bucket("seed", "\u{1F600}"), 0.4346);
    assert_eq!(bucket("日本", "42"), 0.3408);
}

/// (seed, session, bucket, variant of 50/50, variant of 10/90), from GrowthBook's Python SDK
/// 4.0.0: `gbhash(seed, str(session), 2)` and
/// `chooseVariation(bucket, getBucketRanges(2, 1, weights))`.
const PINNED: [(&str, u64, f64, usize, usize); 20] = [
    ("perfopt-exp-1", 0, 0.0599, 0, 0),
    ("perfopt-exp-1", 1, 0.0789, 0, 0),
    ("perfopt-exp-1", 2, 0.5886, 1, 1),
    ("perfopt-exp-1", 42, 0.6527, 1, 1),
    ("perfopt-exp-1", 1000, 0.208, 0, 1),
    ("perfopt-exp-1", 123456789, 0.6785, 1, 1),
    ("perfopt-exp-1", 18446744073709551615, 0.3095, 0, 1),
    ("perfopt-exp-1", 7, 0.9722, 1, 1),
    ("perfopt-exp-1", 99999, 0.0501, 0, 0),
    ("perfopt-exp-1", 31337, 0.4462, 0, 1),
    ("shm-vs-grpc", 0, 0.5619, 1, 1),
    ("shm-vs-grpc", 1, 0.1401, 0, 1),
    ("shm-vs-grpc", 2, 0.1249, 0, 1),
    ("shm-vs-grpc", 42, 0.6586, 1, 1),
    ("shm-vs-grpc", 1000, 0.6396, 1, 1),
    ("shm-vs-grpc", 123456789, 0.0297, 0, 0),
    ("shm-vs-grpc", 18446744073709551615, 0.1488, 0, 1),
    ("shm-vs-grpc", 7, 0.3783, 0, 1),
    ("shm-vs-grpc", 99999, 0.6536, 1, 1),
    ("shm-vs-grpc", 31337, 0.8029, 1, 1),
];

#[test]
fn pinned_sessions_keep_their_variants() {
    let even = Split::from_percentages(&[50.0, 50.0]).expect("valid split");
    let skewed = Split::from_fractions(&[0.1, 0.9]).expect("valid split");
    for (seed, session, want_bucket, want_even, want_skewed) in PINNED {
        assert_eq!(
            bucket_session(seed, session),
            want_bucket,
            "{seed} {session}"
        );
        assert_eq!(
            even.assign_session(seed, session),
            want_even,
            "{seed} {session}"
        );
        assert_eq!(
            skewed.assign_session(seed, session),
            want_skewed,
            "{seed} {session}"
        );
    }
}

#[test]
fn bucket_ranges_follow_growthbook() {
    // The full-coverage cases of the `getBucketRange` and `chooseVariation` sections of the
    // same cases.json: a bucket falls in [start, end) of its variant.
    let cases: [(&[f64], f64, usize); 12] = [
        (&[0.5, 0.5], 0.2, 0),
        (&[0.5, 0.5], 0.4, 0),
        (&[0.5, 0.5], 0.6, 1),
        (&[0.5, 0.5], 0.8, 1),
        (&[0.5, 0.5], 0.0, 0),
        (&[0.5, 0.5], 0.5, 1),
        (&[0.5, 0.0, 0.5], 0.5, 2),
        (&[0.4, 0.6], 0.3999, 0),
        (&[0.4, 0.6], 0.4, 1),
        (&[0.2, 0.3, 0.5], 0.2, 1),
        (&[0.2, 0.3, 0.5], 0.4999, 1),
        (&[0.2, 0.3, 0.5], 0.5, 2),
    ];
    for (weights, n, want) in cases {
        let split = Split::from_fractions(weights).expect("valid split");
        assert_eq!(split.variant(n), want, "weights {weights:?}, bucket {n}");
    }
    let four = Split::even(4).expect("valid split");
    assert_eq!(four.weights(), &[0.25; 4]);
    assert_eq!(
        [0.0, 0.2499, 0.25, 0.5, 0.7499, 0.75, 0.9999].map(|n| four.variant(n)),
        [0, 0, 1, 2, 2, 3, 3]
    );
}

#[test]
fn every_bucket_has_a_variant_despite_rounding() {
    let thirds = Split::from_fractions(&[1.0 / 3.0; 3]).expect("valid split");
    assert_eq!(thirds.variant(0.9999), 2);
    assert_eq!(thirds.variant(1.0), 2);
    let last_empty = Split::from_fractions(&[0.6, 0.4, 0.0]).expect("valid split");
    assert_eq!(last_empty.variant(1.0), 1);
}

#[test]
fn invalid_weights_are_refused_with_what_is_wrong() {
    assert_eq!(
        Split::from_fractions(&[1.0]),
        Err(SplitError::TooFewVariants(1))
    );
    assert_eq!(Split::even(0), Err(SplitError::TooFewVariants(0)));
    let err = Split::from_fractions(&[0.5, -0.1, 0.6]).expect_err("negative weight");
    assert_eq!(
        err.to_string(),
        "weight of variant 1 must be a finite number >= 0, got -0.1"
    );
    assert!(matches!(
        Split::from_fractions(&[0.5, f64::NAN]),
        Err(SplitError::InvalidWeight { index: 1, .. })
    ));
    let err = Split::from_fractions(&[0.4, 0.5]).expect_err("sum below 1");
    assert_eq!(
        err.to_string(),
        "weights must add up to 1 (within 0.000001), got 0.9"
    );
    let err = Split::from_percentages(&[50.0, 60.0]).expect_err("sum above 100");
    assert!(
        err.to_string().starts_with("weights must add up to 100"),
        "{err}"
    );
    assert!(Split::from_percentages(&[33.33333, 33.33333, 33.33334]).is_ok());
}

#[test]
fn a_split_serialises_as_its_weights() {
    let split = Split::from_fractions(&[0.25, 0.75]).expect("valid split");
    let json = serde_json::to_string(&split).expect("serialises");
    assert_eq!(json, "[0.25,0.75]");
    let back: Split = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, split);
    assert!(serde_json::from_str::<Split>("[0.5,0.6]").is_err());
}

/// The largest deviation of a share from its weight allowed over `n` draws: five binomial
/// standard deviations.
fn tolerance(weight: f64, n: f64) -> f64 {
    5.0 * (weight * (1.0 - weight) / n).sqrt()
}

#[test]
fn shares_over_100000_sessions_match_the_weights() {
    const SESSIONS: u64 = 100_000;
    for weights in [&[0.5, 0.5][..], &[0.1, 0.9], &[0.2, 0.3, 0.5]] {
        let split = Split::from_fractions(weights).expect("valid split");
        let mut counts = vec![0u64; weights.len()];
        for session in 0..SESSIONS {
            counts[split.assign_session("share-test", session)] += 1;
        }
        for (count, &weight) in counts.iter().zip(weights) {
            let share = *count as f64 / SESSIONS as f64;
            assert!(
                (share - weight).abs() <= tolerance(weight, SESSIONS as f64),
                "weights {weights:?}: share {share} for weight {weight}"
            );
        }
    }
}

proptest! {
    #[test]
    fn the_same_input_gives_the_same_variant(seed in "\\PC{0,24}", session: u64) {
        let split = Split::from_fractions(&[0.1, 0.9]).expect("valid split");
        let first = split.assign_session(&seed, session);
        prop_assert_eq!(first, split.assign_session(&seed, session));
        let b = bucket_session(&seed, session);
        prop_assert_eq!(b, bucket(&seed, &session.to_string()));
        prop_assert!((0.0..1.0).contains(&b));
        prop_assert_eq!(first, split.variant(b));
    }
}
