//! Offline evaluation on simulated logs whose truth is known: a logging policy that explores
//! 20 % of the time over ten size classes, and a threshold candidate. Over 300 simulated logs
//! of 2,000 decisions each, the 95 % intervals of IPS, SNIPS and DR must cover the candidate's
//! true mean outcome at least as often as 95 % less three binomial standard deviations, with
//! an exact direct model and with one 30 % off; DR with the exact model must be the most
//! precise. The coverage and the mean standard errors are printed to stderr.

use perf_abtest::offline::{LoggedDecision, Model, evaluate};
use perf_core::Method;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

const LOGS: usize = 300;
const DECISIONS: usize = 2_000;
const EXPLORE: f64 = 0.2;

/// The true mean latency of `method` in size class `x` (0..10): gRPC grows faster with size.
fn truth(x: usize, method: Method) -> f64 {
    let x = x as f64;
    match method {
        Method::ZeroCopy => 300.0 + 40.0 * x,
        Method::Grpc => 100.0 + 90.0 * x,
    }
}

/// The logging policy's greedy pick: zero-copy from class 6 up (the true crossover is 4).
fn logging(x: usize) -> Method {
    if x >= 6 {
        Method::ZeroCopy
    } else {
        Method::Grpc
    }
}

/// The candidate: zero-copy from class 4 up.
fn candidate(x: usize) -> Method {
    if x >= 4 {
        Method::ZeroCopy
    } else {
        Method::Grpc
    }
}

#[test]
fn the_intervals_cover_the_candidate_s_true_value() {
    let true_value = (0..10).map(|x| truth(x, candidate(x))).sum::<f64>() / 10.0;
    let mut rng = SmallRng::seed_from_u64(7);
    let noise = Normal::new(0.0, 1.0).expect("valid parameters");
    let mut covered = [[0usize; 3]; 2];
    let mut std_errors = [[0.0f64; 3]; 2];
    for _ in 0..LOGS {
        let mut logs = [Vec::with_capacity(DECISIONS), Vec::with_capacity(DECISIONS)];
        for _ in 0..DECISIONS {
            let x = rng.gen_range(0..10);
            let greedy = logging(x);
            let explored = rng.gen_bool(EXPLORE);
            let action = if explored { greedy.other() } else { greedy };
            let propensity = if explored { EXPLORE } else { 1.0 - EXPLORE };
            let mean = truth(x, action);
            let outcome = mean + 0.2 * mean * noise.sample(&mut rng);
            let exact = Model {
                zero_copy: truth(x, Method::ZeroCopy),
                grpc: truth(x, Method::Grpc),
            };
            let off = Model {
                zero_copy: exact.zero_copy * 1.3,
                grpc: exact.grpc * 0.7,
            };
            for (log, model) in logs.iter_mut().zip([exact, off]) {
                log.push(LoggedDecision {
                    action,
                    propensity,
                    outcome,
                    candidate: candidate(x),
                    model,
                });
            }
        }
        for (m, log) in logs.iter().enumerate() {
            let e = evaluate(log, 0.05).expect("a valid log");
            assert_eq!(e.unsupported, 0, "every action has a positive propensity");
            for (k, est) in [e.ips, e.snips, e.dr].iter().enumerate() {
                covered[m][k] += usize::from(est.ci.contains(true_value));
                std_errors[m][k] += est.std_error / LOGS as f64;
            }
        }
    }
    let floor = 0.95 - 3.0 * (0.95 * 0.05 / LOGS as f64).sqrt();
    for (m, model) in ["exact model", "model 30 % off"].iter().enumerate() {
        let rates: Vec<f64> = covered[m].iter().map(|c| *c as f64 / LOGS as f64).collect();
        eprintln!(
            "offline, {model}: coverage IPS {:.3}, SNIPS {:.3}, DR {:.3}; mean standard error \
             IPS {:.2}, SNIPS {:.2}, DR {:.2} (true value {true_value:.1})",
            rates[0], rates[1], rates[2], std_errors[m][0], std_errors[m][1], std_errors[m][2]
        );
        for (rate, name) in rates.iter().zip(["IPS", "SNIPS", "DR"]) {
            assert!(
                *rate >= floor,
                "{name} with the {model} covers {rate}, below {floor}"
            );
        }
    }
    assert!(
        std_errors[0][2] < std_errors[0][1] && std_errors[0][2] < std_errors[0][0],
        "DR with the exact model is the most precise: {:?}",
        std_errors[0]
    );
}
