//! Offline evaluation of a candidate policy from logged decisions, before any live traffic is
//! risked: inverse propensity scoring (IPS), its self-normalised form (SNIPS) and the doubly
//! robust estimator (DR), each with a normal confidence interval, and the effective sample
//! size of the reweighting.
//!
//! Each logged transfer gives the action the logging policy took, the probability it had of
//! taking it (its propensity, recorded with every decision), and the outcome (latency, lower
//! is better). For the candidate, each gives the action it would take in the same context and
//! a direct model's predicted outcome of each action. With `w = 1 / propensity` when the
//! candidate takes the logged action and 0 otherwise (actions are two, so the candidate's
//! action, when it differs, was not observed):
//!
//! - IPS: `mean(w r)`; unbiased when every action the candidate takes had a positive
//!   probability under the logging policy.
//! - SNIPS: `sum(w r) / sum(w)`; biased by `O(1/n)` but with a much smaller variance.
//! - DR: `mean(q(c) + w (r - q(c)))` with `q` the direct model: unbiased if either the
//!   propensities or the model are right, and as precise as the model is good.
//!
//! A candidate that takes an action the logging policy never took in that context (its
//! propensity for the logged action was 1) is *unsupported* there: IPS and SNIPS then miss
//! that part of the value and only DR's model speaks for it, so the count is reported.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use perf_core::Method;

use crate::stats::{Interval, StatsError};

/// One logged decision seen by the candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoggedDecision {
    /// The action the logging policy took.
    pub action: Method,
    /// Its probability under the logging policy, in (0, 1].
    pub propensity: f64,
    /// The outcome observed (e.g. latency in microseconds).
    pub outcome: f64,
    /// The action the candidate takes in the same context.
    pub candidate: Method,
    /// The direct model's predicted outcome of zero-copy and of gRPC in this context.
    pub model: Model,
}

/// A direct model's predicted outcome of each action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    /// Predicted outcome of zero-copy.
    pub zero_copy: f64,
    /// Predicted outcome of gRPC.
    pub grpc: f64,
}

impl Model {
    fn of(&self, method: Method) -> f64 {
        match method {
            Method::ZeroCopy => self.zero_copy,
            Method::Grpc => self.grpc,
        }
    }
}

/// One estimator's estimate of the candidate's mean outcome.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OfflineEstimate {
    /// The estimated mean outcome.
    pub estimate: f64,
    /// Its standard error.
    pub std_error: f64,
    /// The normal interval at level `1 - alpha`.
    pub ci: Interval,
}

/// The candidate's value by each estimator, with what the reweighting rests on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OfflineEvaluation {
    /// The level of the intervals.
    pub alpha: f64,
    /// Logged decisions used.
    pub n: u64,
    /// Of those, where the candidate takes the logged action.
    pub matched: u64,
    /// Of those, where the candidate takes an action the logging policy could not have taken
    /// (propensity 1 for the other): no weight can stand in for them.
    pub unsupported: u64,
    /// `(sum w)^2 / sum w^2`: how many logged decisions the reweighted ones are worth.
    pub effective_sample_size: f64,
    /// The logging policy's own mean outcome, for comparison.
    pub logged_mean: f64,
    /// Inverse propensity scoring.
    pub ips: OfflineEstimate,
    /// Self-normalised inverse propensity scoring.
    pub snips: OfflineEstimate,
    /// The doubly robust estimator.
    pub dr: OfflineEstimate,
}

/// Why an offline evaluation could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OfflineError {
    /// Fewer than two logged decisions.
    #[error("an offline evaluation needs at least 2 logged decisions, got {0}")]
    TooFew(u64),
    /// A propensity outside (0, 1] or an outcome that is not finite.
    #[error(
        "logged decision {index} has propensity {propensity} and outcome {outcome}, expected a propensity in (0, 1] and a finite outcome"
    )]
    Invalid {
        /// Its index.
        index: usize,
        /// Its propensity.
        propensity: f64,
        /// Its outcome.
        outcome: f64,
    },
    /// The candidate never takes a logged action, so no logged outcome speaks for it.
    #[error("the candidate takes the logged action in none of the {0} decisions")]
    NoMatch(u64),
    /// The level is not in (0, 1).
    #[error(transparent)]
    Stats(#[from] StatsError),
}

/// Running sums of one estimator's per-decision terms.
#[derive(Default)]
struct Terms {
    n: f64,
    sum: f64,
    sum_sq: f64,
}

impl Terms {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        self.sum += x;
        self.sum_sq += x * x;
    }

    fn mean(&self) -> f64 {
        self.sum / self.n
    }

    /// The standard error of the mean.
    fn std_error(&self) -> f64 {
        let mean = self.mean();
        let variance = ((self.sum_sq - self.n * mean * mean) / (self.n - 1.0)).max(0.0);
        (variance / self.n).sqrt()
    }
}

/// Evaluates the candidate on `logged` at level `alpha`.
pub fn evaluate(logged: &[LoggedDecision], alpha: f64) -> Result<OfflineEvaluation, OfflineError> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(StatsError::InvalidAlpha(alpha).into());
    }
    let n = logged.len() as u64;
    if n < 2 {
        return Err(OfflineError::TooFew(n));
    }
    let (mut ips, mut dr, mut outcomes) = (Terms::default(), Terms::default(), Terms::default());
    let (mut sum_w, mut sum_w2, mut sum_wr) = (0.0, 0.0, 0.0);
    let (mut matched, mut unsupported) = (0, 0);
    for (index, d) in logged.iter().enumerate() {
        let valid = d.propensity > 0.0 && d.propensity <= 1.0 && d.outcome.is_finite();
        if !valid {
            return Err(OfflineError::Invalid {
                index,
                propensity: d.propensity,
                outcome: d.outcome,
            });
        }
        let w = if d.candidate == d.action {
            matched += 1;
            1.0 / d.propensity
        } else {
            if d.propensity >= 1.0 {
                unsupported += 1;
            }
            0.0
        };
        let q = d.model.of(d.candidate);
        ips.push(w * d.outcome);
        dr.push(q + w * (d.outcome - q));
        outcomes.push(d.outcome);
        sum_w += w;
        sum_w2 += w * w;
        sum_wr += w * d.outcome;
    }
    if matched == 0 {
        return Err(OfflineError::NoMatch(n));
    }
    let z = Normal::standard().inverse_cdf(1.0 - alpha / 2.0);
    let estimate = |t: &Terms| {
        let (estimate, std_error) = (t.mean(), t.std_error());
        OfflineEstimate {
            estimate,
            std_error,
            ci: Interval {
                low: estimate - z * std_error,
                high: estimate + z * std_error,
            },
        }
    };
    // SNIPS' standard error by the delta method: the terms w (r - V) over the mean weight.
    let snips_value = sum_wr / sum_w;
    let mut snips_terms = Terms::default();
    for d in logged {
        let w = if d.candidate == d.action {
            1.0 / d.propensity
        } else {
            0.0
        };
        snips_terms.push(w * (d.outcome - snips_value));
    }
    let mean_w = sum_w / n as f64;
    let snips_se = snips_terms.std_error() / mean_w;
    Ok(OfflineEvaluation {
        alpha,
        n,
        matched,
        unsupported,
        effective_sample_size: sum_w * sum_w / sum_w2,
        logged_mean: outcomes.mean(),
        ips: estimate(&ips),
        snips: OfflineEstimate {
            estimate: snips_value,
            std_error: snips_se,
            ci: Interval {
                low: snips_value - z * snips_se,
                high: snips_value + z * snips_se,
            },
        },
        dr: estimate(&dr),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(action: Method, propensity: f64, outcome: f64, candidate: Method) -> LoggedDecision {
        LoggedDecision {
            action,
            propensity,
            outcome,
            candidate,
            model: Model {
                zero_copy: 100.0,
                grpc: 300.0,
            },
        }
    }

    #[test]
    fn the_estimators_match_a_reference_computation() {
        use Method::{Grpc as G, ZeroCopy as Z};
        let logged = [
            d(Z, 0.8, 110.0, Z),
            d(G, 0.2, 290.0, Z),
            d(G, 0.9, 320.0, G),
            d(Z, 0.1, 95.0, G),
            d(Z, 0.8, 120.0, Z),
            d(G, 1.0, 280.0, Z),
        ];
        let e = evaluate(&logged, 0.05).unwrap();
        // Reference: numpy 1.26.4 and scipy 1.17.1, with
        //   w = [1/0.8, 0, 1/0.9, 0, 1/0.8, 0], r = [110, 290, 320, 95, 120, 280],
        //   q = [100, 100, 300, 300, 100, 100] (the model's value of the candidate's action);
        //   ips = w*r, dr = q + w*(r - q), snips = sum(w*r)/sum(w),
        //   se = std(terms, ddof=1)/sqrt(6), snips se = std(w*(r - snips), ddof=1)/sqrt(6)/mean(w),
        //   z = scipy.stats.norm.ppf(0.975).
        assert_eq!((e.n, e.matched, e.unsupported), (6, 3, 1));
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        assert!(
            close(e.ips.estimate, 107.17592592592592),
            "{}",
            e.ips.estimate
        );
        assert!(
            close(e.ips.std_error, 57.41832706779907),
            "{}",
            e.ips.std_error
        );
        assert!(
            close(e.snips.estimate, 178.07692307692307),
            "{}",
            e.snips.estimate
        );
        assert!(
            close(e.snips.std_error, 58.64895067506818),
            "{}",
            e.snips.std_error
        );
        assert!(
            close(e.dr.estimate, 176.62037037037035),
            "{}",
            e.dr.estimate
        );
        assert!(
            close(e.dr.std_error, 42.7940335074982),
            "{}",
            e.dr.std_error
        );
        assert!(
            close(e.effective_sample_size, 2.991150442477876),
            "{}",
            e.effective_sample_size
        );
        assert!(close(
            e.ips.ci.high - e.ips.estimate,
            1.959963984540054 * e.ips.std_error
        ));
        assert!(close(e.logged_mean, 202.5));
    }

    #[test]
    fn inputs_that_cannot_be_evaluated_are_named() {
        use Method::{Grpc as G, ZeroCopy as Z};
        assert_eq!(
            evaluate(&[d(Z, 0.5, 1.0, Z)], 0.05),
            Err(OfflineError::TooFew(1))
        );
        let err = evaluate(&[d(Z, 0.5, 1.0, Z), d(Z, 0.0, 1.0, Z)], 0.05).unwrap_err();
        assert!(
            err.to_string()
                .contains("logged decision 1 has propensity 0"),
            "{err}"
        );
        let err = evaluate(&[d(Z, 0.5, 1.0, G), d(Z, 0.5, 1.0, G)], 0.05).unwrap_err();
        assert_eq!(err, OfflineError::NoMatch(2));
        assert!(evaluate(&[d(Z, 0.5, 1.0, Z), d(Z, 0.5, 1.0, Z)], 1.5).is_err());
    }
}
