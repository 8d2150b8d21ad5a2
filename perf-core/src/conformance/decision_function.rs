//! The contract of every [`DecisionFunction`]: whatever the metrics source answers, failures
//! included, it decides or passes without panicking, and the same question gets the same
//! answer.

use super::{spread_of_requests, spread_of_systems};
use crate::metrics::TransferMetrics;
use crate::request::{DecisionContext, Timestamp, ZeroCopyAvailability};
use crate::seams::{
    DecisionFunction, MetricsQuery, NoopQuery, QueryError, SampleFilter, SeriesPoint, SeriesQuery,
};

/// A metrics source whose every query fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailingQuery;

impl MetricsQuery for FailingQuery {
    fn series(&self, _query: &SeriesQuery) -> Result<Vec<SeriesPoint>, QueryError> {
        Err(QueryError::Store(
            "the conformance suite's store is down".into(),
        ))
    }
    fn samples(
        &self,
        _filter: &SampleFilter,
        _limit: usize,
    ) -> Result<Vec<TransferMetrics>, QueryError> {
        Err(QueryError::Store(
            "the conformance suite's store is down".into(),
        ))
    }
}

fn contexts() -> Vec<DecisionContext> {
    spread_of_systems()
        .into_iter()
        .map(|system| DecisionContext {
            now: Timestamp::from_secs(9),
            system,
            zero_copy: ZeroCopyAvailability::Pooled,
        })
        .collect()
}

/// With an empty and with a failing metrics source, the function decides or passes for every
/// request of the spread, and asking twice gives the same answer.
pub fn it_decides_or_passes_whatever_the_metrics_say(function: &dyn DecisionFunction) {
    let sources: [&dyn MetricsQuery; 2] = [&NoopQuery, &FailingQuery];
    for metrics in sources {
        for ctx in contexts() {
            for request in spread_of_requests() {
                let first = function.decide(&request, &ctx, metrics);
                assert_eq!(
                    first,
                    function.decide(&request, &ctx, metrics),
                    "{request:?}"
                );
            }
        }
    }
}

/// Stamps out the [`DecisionFunction`] suite as tests in a module `$name`: `$make` is
/// evaluated once per test and gives the function.
#[macro_export]
macro_rules! decision_function_conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn it_decides_or_passes_whatever_the_metrics_say() {
                $crate::conformance::decision_function::it_decides_or_passes_whatever_the_metrics_say(&$make);
            }
        }
    };
}
