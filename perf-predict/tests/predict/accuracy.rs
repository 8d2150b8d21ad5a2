//! Held-out accuracy on real transfers: the paired dataset measured on this machine (perf-learn's data).

use std::collections::BTreeMap;

use perf_core::seams::TransferPolicy;
use perf_core::{
    DecisionContext, FixedPolicy, Method, Name, SystemState, Timestamp, TransferMetrics,
    TransferRequest, ZeroCopyAvailability,
};
use perf_predict::{Evaluation, LOAD_BANDS, ModelConfig, evaluate, load_band};

/// Both methods measured back to back for each case, sizes 1 KiB..256 MiB with midpoints,
/// idle and under a CPU hog (`perfopt model collect`), read directly: perf-predict does not
/// depend on perf-learn.
const PAIRED: &str = include_str!("../../../perf-learn/data/paired-linux-2vcpu.csv");

const HEADER: &str = "at_ns,pool,size,data_type,format,compression,cpu_utilization,memory_used,\
shm_free,hour,grpc_slowdown,zero_copy_slowdown,grpc_us,zero_copy_us,source";

/// Each row of the paired dataset as two transfers, one per method, in the order measured.
fn paired_transfers(csv: &str) -> Vec<TransferMetrics> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(HEADER), "not a paired dataset");
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 15, "row {i}: {line}");
        let num = |j: usize| -> f64 {
            cols[j]
                .parse()
                .unwrap_or_else(|e| panic!("row {i} col {j}: {e}"))
        };
        let at = Timestamp(cols[0].parse().unwrap());
        let mut request = TransferRequest::new(cols[2].parse().unwrap());
        request.pool = Name::new(cols[1]).unwrap();
        request.data_type = cols[3].parse().unwrap();
        request.format = cols[4].parse().unwrap();
        request.compression = cols[5].parse().unwrap();
        let system = SystemState {
            cpu_utilization: num(6),
            memory_used: num(7),
            memory_available: u64::MAX,
            shm_free: cols[8].parse().unwrap(),
            sampled_at: at,
        };
        let ctx = DecisionContext {
            now: at,
            system,
            zero_copy: ZeroCopyAvailability::Pooled,
        };
        for (method, latency_us) in [(Method::Grpc, num(12)), (Method::ZeroCopy, num(13))] {
            let decision = FixedPolicy(method).decide(&request, &ctx);
            assert_eq!(decision.method, method, "row {i}");
            out.push(TransferMetrics::new(
                &request, &decision, method, latency_us, at, system,
            ));
        }
    }
    out
}

fn report(what: &str, e: &Evaluation) {
    println!(
        "{what:>9}: {} train, {} test, {:.1} % within 15 %, {:.1} % of 90 % intervals cover, median error {:.1} %; online {:.1} % within 15 %, {:.1} % covered",
        e.train,
        e.test,
        100.0 * e.within_15pct,
        100.0 * e.coverage,
        100.0 * e.median_relative_error,
        100.0 * e.online_within_15pct,
        100.0 * e.online_coverage
    );
}

/// `all` in a seeded random order, restamped so that time follows it.
fn shuffled(all: &[TransferMetrics], seed: u64) -> Vec<TransferMetrics> {
    // Pairs stay together: both methods of a row were measured back to back.
    let mut rows: Vec<&[TransferMetrics]> = all.chunks(2).collect();
    let mut state = seed;
    for i in (1..rows.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = ((state >> 33) % (i as u64 + 1)) as usize;
        rows.swap(i, j);
    }
    let start = all[0].started_at.as_nanos();
    rows.iter()
        .enumerate()
        .flat_map(|(i, pair)| {
            pair.iter().map(move |m| {
                let mut m = *m;
                m.started_at = Timestamp(start + i as u64 * 1_000_000);
                m
            })
        })
        .collect()
}

/// The best share within 15 % that any predictor of latency from size alone
/// could reach on `test`: per size and method, the best single value, chosen
/// with hindsight on the test samples themselves.
fn hindsight_ceiling(test: &[TransferMetrics]) -> f64 {
    let mut groups: BTreeMap<(u64, Method), Vec<f64>> = BTreeMap::new();
    for m in test {
        groups
            .entry((m.size, m.method))
            .or_default()
            .push(m.latency_us);
    }
    let within = |xs: &[f64], c: f64| xs.iter().filter(|x| (*x - c).abs() <= 0.15 * *x).count();
    let best: usize = groups
        .values()
        .map(|xs| {
            // A value c counts sample x when c is in [0.85 x, 1.15 x]; the
            // most such ranges overlap at the lower end of one of them (taken
            // just inside, clear of rounding).
            xs.iter()
                .map(|x| (0.85 + 1e-9) * x)
                .map(|c| within(xs, c))
                .max()
                .unwrap_or(0)
        })
        .sum();
    best as f64 / test.len() as f64
}

/// The target is 90 % of held-out predictions within 15 % (goal 95 %).
/// Measured on the shipped dataset (1540 pairs, each latency the median of 7):
/// not reached. The time-ordered held-out 20 % are all under the CPU hog,
/// where small transfers switch between a fast (~35 µs) and a slow (~100 µs)
/// mode from one size's run to the next, which nothing measured before
/// predicts, and large ones vary by up to x3 within a run: even a value per
/// size chosen with hindsight on the test samples themselves is within 15 %
/// for only 90 % of them.
#[test]
fn accuracy_on_the_shipped_paired_dataset() {
    let all = paired_transfers(PAIRED);
    let config = ModelConfig::default();
    let e = evaluate(&all, &config, 0.8).unwrap();
    report("both", &e);
    for method in [Method::Grpc, Method::ZeroCopy] {
        let one: Vec<TransferMetrics> =
            all.iter().filter(|m| m.method == method).copied().collect();
        report(method.as_str(), &evaluate(&one, &config, 0.8).unwrap());
    }
    let bare_config = ModelConfig {
        corrections: false,
        ..config
    };
    let bare = evaluate(&all, &bare_config, 0.8).unwrap();
    report("bare fit", &bare);
    let idle: Vec<TransferMetrics> = all
        .iter()
        .filter(|m| load_band(m.system.cpu_utilization) < LOAD_BANDS - 1)
        .copied()
        .collect();
    let quiet = evaluate(&idle, &config, 0.8).unwrap();
    report("idle only", &quiet);
    // The same transfers in a seeded random order: the held-out 20 % then
    // mix idle and loaded rows, as transfers of a steady workload do.
    let shuffled = shuffled(&all, 7);
    let mixed = evaluate(&shuffled, &config, 0.8).unwrap();
    report("shuffled", &mixed);
    let mut sorted = all.clone();
    sorted.sort_by_key(|m| m.started_at);
    let ceiling = hindsight_ceiling(&sorted[e.train..]);
    println!(
        "hindsight ceiling on the held-out samples: {:.1} %",
        100.0 * ceiling
    );

    // Measured: 43.2 % within 15 % (gRPC 49.0, zero-copy 37.3), 90.4 % of
    // 90 % intervals cover; online 61.2 % within, 98.2 % covered.
    assert!(e.within_15pct >= 0.40, "{e:?}");
    assert!(e.coverage >= 0.85, "{e:?}");
    assert!(e.online_within_15pct >= 0.58, "{e:?}");
    assert!(e.online_coverage >= 0.90, "{e:?}");
    // The corrections measurably help on held-out data. Measured without
    // them: 17.2 % within, online 13.1 %.
    assert!(e.within_15pct >= bare.within_15pct + 0.2, "{bare:?}");
    assert!(
        e.online_within_15pct >= bare.online_within_15pct + 0.4,
        "{bare:?}"
    );
    // Shuffled (held-out transfers idle and loaded alike): 72.9 % within
    // 15 %, 95.0 % covered.
    assert!(mixed.within_15pct >= 0.70, "{mixed:?}");
    assert!(mixed.coverage >= 0.90, "{mixed:?}");
    // Without the hog: 82.8 % within 15 %, 89.6 % covered; online 85.7 %.
    assert!(quiet.within_15pct >= 0.80, "{quiet:?}");
    // Measured: 90.3 % (the rest is spread within a run at one size).
    assert!(ceiling < 0.95, "{ceiling}");
}

/// Models learned from real transfers (corrections in force, a recent load)
/// come back from their encoding predicting exactly as before.
#[test]
fn models_of_real_transfers_survive_a_restart() {
    use perf_predict::Learner;

    let all = paired_transfers(PAIRED);
    let learner = Learner::new("linux-2vcpu", ModelConfig::default()).unwrap();
    learner.update_batch(&all);
    let back = Learner::decode(&learner.encode(), "linux-2vcpu", ModelConfig::default()).unwrap();
    let (a, b) = (learner.snapshot(), back.snapshot());
    for method in [Method::Grpc, Method::ZeroCopy] {
        for size in [1 << 10, 6 << 10, 1 << 20, 64 << 20, 256 << 20] {
            for cpu_utilization in [0.0, 0.6, 1.0] {
                let system = SystemState {
                    cpu_utilization,
                    ..SystemState::IDLE
                };
                let pool = Name::DEFAULT_POOL;
                assert_eq!(
                    a.estimate_under(pool, method, size, &system),
                    b.estimate_under(pool, method, size, &system)
                );
            }
        }
    }
}
