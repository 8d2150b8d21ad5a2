//! perf-core's conformance suites run against perf-store's implementations of the seams: the
//! sink with its query over the memory and the redb backends, and the redb threshold and model
//! stores (the damaged-record case of the model store is in `models.rs`, beside the tool that
//! damages records).

use std::sync::Arc;

use perf_core::conformance::Keeps;
use perf_store::{MemoryBackend, RedbBackend, SinkConfig, StoreQuery, StoreSink};

fn sink_and_query(backend: Arc<dyn perf_store::Backend>) -> (StoreSink, StoreQuery) {
    let sink = StoreSink::new(backend.clone(), SinkConfig::default()).unwrap();
    (sink, StoreQuery::new(backend))
}

perf_core::metrics_conformance!(
    memory_sink_and_query,
    || sink_and_query(Arc::new(MemoryBackend::default())),
    Keeps::Everything
);
perf_core::metrics_conformance!(
    redb_sink_and_query,
    {
        let dir = tempfile::tempdir().unwrap();
        move || sink_and_query(Arc::new(RedbBackend::open(dir.path()).unwrap()))
    },
    Keeps::Everything
);
perf_core::threshold_store_conformance!(
    redb_threshold_store,
    {
        let dir = tempfile::tempdir().unwrap();
        move || RedbBackend::open(dir.path()).unwrap().thresholds()
    },
    Keeps::Everything
);
perf_core::model_store_conformance!(
    redb_model_store,
    {
        let dir = tempfile::tempdir().unwrap();
        move || RedbBackend::open(dir.path()).unwrap().models()
    },
    Keeps::Everything
);
