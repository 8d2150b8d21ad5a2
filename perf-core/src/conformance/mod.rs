//! One conformance suite per seam trait: functions that assert the trait's contract, to be run
//! against every implementation, and a macro per trait that stamps them out as tests.
//!
//! Built with the `conformance` feature; implementing crates turn it on for their
//! dev-dependency on perf-core. Each suite takes what the implementation needs to be tested
//! (an opener over one store's state, a ready predictor, a probe) and says in its functions'
//! docs what it checks. Suites do no IO themselves, so stores on disk bring their own place.
//!
//! | trait | suite | macro |
//! |---|---|---|
//! | `TransferPolicy` | [`transfer_policy`] | [`transfer_policy_conformance!`](crate::transfer_policy_conformance) |
//! | `DecisionFunction` | [`decision_function`] | [`decision_function_conformance!`](crate::decision_function_conformance) |
//! | `MetricsSink`, `MetricsQuery` | [`metrics`] | [`metrics_conformance!`](crate::metrics_conformance), [`metrics_sink_conformance!`](crate::metrics_sink_conformance) |
//! | `Predictor` | [`predictor`] | [`predictor_conformance!`](crate::predictor_conformance) |
//! | `MethodClassifier` | [`method_classifier`] | [`method_classifier_conformance!`](crate::method_classifier_conformance) |
//! | `ThresholdStore` | [`threshold_store`] | [`threshold_store_conformance!`](crate::threshold_store_conformance) |
//! | `ThresholdControl` | [`threshold_control`] | [`threshold_control_conformance!`](crate::threshold_control_conformance) |
//! | `ModelStore` | [`model_store`] | [`model_store_conformance!`](crate::model_store_conformance) |
//! | `PlatformShm` | [`platform_shm`] | [`platform_shm_conformance!`](crate::platform_shm_conformance) |
//! | `ResourceProbe` | [`resource_probe`] | [`resource_probe_conformance!`](crate::resource_probe_conformance) |
//!
//! `PlatformShm` backends are further checked against the file system (modes, owners, seals,
//! a second process) by perf-platform's own suite, which needs IO.

pub mod decision_function;
pub mod method_classifier;
pub mod metrics;
pub mod model_store;
pub mod platform_shm;
pub mod predictor;
pub mod resource_probe;
pub mod threshold_control;
pub mod threshold_store;
pub mod transfer_policy;

#[cfg(test)]
mod noop;

use crate::decision::Decision;
use crate::metrics::TransferMetrics;
use crate::name::Name;
use crate::request::{DecisionContext, SystemState, Timestamp, TransferRequest};
use crate::seams::{FixedPolicy, TransferPolicy};
use crate::vocab::{Compression, DataType, Format, Method};

/// What a store keeps of what it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keeps {
    /// Everything, across reopening over the same state.
    Everything,
    /// Nothing (a Noop store): every read finds nothing, and no write fails.
    Nothing,
}

/// A pool name for the suites; `name` must be a valid [`Name`].
pub fn pool(name: &str) -> Name {
    Name::new(name).expect("the suites use valid pool names")
}

/// Requests from 1 byte to 1 GiB, of every data type, format and compression in turn, to two
/// pools: the spread every suite that reads requests goes over.
pub fn spread_of_requests() -> Vec<TransferRequest> {
    let (data_types, formats, compressions) = (DataType::ALL, Format::ALL, Compression::ALL);
    let pools = [Name::DEFAULT_POOL, pool("conformance")];
    (0..=30u32)
        .map(|shift| {
            let i = shift as usize;
            TransferRequest::new((1u64 << shift) + u64::from(shift % 3))
                .with_data_type(data_types[i % data_types.len()])
                .with_format(formats[i % formats.len()])
                .with_compression(compressions[i % compressions.len()])
                .with_pool(pools[i % pools.len()])
        })
        .collect()
}

/// Machine states from idle to saturated, with little shared memory free in one.
pub fn spread_of_systems() -> Vec<SystemState> {
    vec![
        SystemState::IDLE,
        SystemState {
            cpu_utilization: 0.5,
            memory_used: 0.5,
            memory_available: 8 << 30,
            shm_free: 1 << 30,
            sampled_at: Timestamp::from_secs(1),
        },
        SystemState {
            cpu_utilization: 1.0,
            memory_used: 0.97,
            memory_available: 64 << 20,
            shm_free: 16 << 20,
            sampled_at: Timestamp::from_secs(2),
        },
    ]
}

/// A delivered transfer of `size` bytes to `pool` by `method`, started at `started_ns`, that
/// took `latency_us`.
pub fn transfer(
    pool: Name,
    method: Method,
    size: u64,
    started_ns: u64,
    latency_us: f64,
) -> TransferMetrics {
    let request = TransferRequest::new(size).with_pool(pool);
    let decision: Decision =
        FixedPolicy(method).decide(&request, &DecisionContext::idle(Timestamp(started_ns)));
    TransferMetrics::new(
        &request,
        &decision,
        method,
        latency_us,
        Timestamp(started_ns),
        SystemState::IDLE,
    )
}

/// Deterministic, position-dependent bytes, different for each `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
