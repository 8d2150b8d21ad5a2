//! Helpers for the unit tests of this crate: sample transfers and a backend that fails on demand.

use std::sync::atomic::{AtomicU32, Ordering};

use perf_core::{
    DecisionContext, FixedPolicy, Method, SampleFilter, SystemState, Timestamp, TransferMetrics,
    TransferPolicy, TransferRequest,
};

use crate::memory::MemoryBackend;
use crate::model::{Backend, Batch, Bucket, BucketKey, Granularity, StoreError};

/// A 4 KiB gRPC transfer to the default pool, started at `secs`, with `latency_us`.
pub(crate) fn metrics(secs: u64, latency_us: f64) -> TransferMetrics {
    let req = TransferRequest::new(4096);
    let d = FixedPolicy(Method::Grpc).decide(&req, &DecisionContext::idle(Timestamp(0)));
    TransferMetrics::new(
        &req,
        &d,
        Method::Grpc,
        latency_us,
        Timestamp::from_secs(secs),
        SystemState::IDLE,
    )
}

/// A memory backend whose first `n` commits fail.
pub(crate) struct FlakyBackend {
    pub(crate) inner: MemoryBackend,
    failures_left: AtomicU32,
}

impl FlakyBackend {
    pub(crate) fn failing(n: u32) -> FlakyBackend {
        FlakyBackend {
            inner: MemoryBackend::default(),
            failures_left: AtomicU32::new(n),
        }
    }
}

impl Backend for FlakyBackend {
    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let left = self.failures_left.load(Ordering::SeqCst);
        if left > 0 {
            self.failures_left.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::Io("injected: no space left on device".into()));
        }
        self.inner.commit(batch)
    }
    fn buckets(
        &self,
        granularity: Granularity,
        from_secs: u64,
        to_secs: u64,
    ) -> Result<Vec<(BucketKey, Bucket)>, StoreError> {
        self.inner.buckets(granularity, from_secs, to_secs)
    }
    fn samples(
        &self,
        filter: &SampleFilter,
        limit: usize,
    ) -> Result<Vec<TransferMetrics>, StoreError> {
        self.inner.samples(filter, limit)
    }
}
