//! gRPC inline round trips over a Unix domain socket: a host sends a payload in chunks, the
//! worker in the same process reassembles and checksums it and acknowledges.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use perf_transport::grpc::{
    ClientConfig, Endpoint, Listener, ServiceConfig, TransferService, WorkerClient,
};

const SIZES: [(&str, usize); 3] = [("1KiB", 1 << 10), ("1MiB", 1 << 20), ("64MiB", 64 << 20)];

fn inline_round_trips(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let endpoint = Endpoint::Unix(dir.path().join("bench.sock"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (client, server) = runtime.block_on(async {
        let service = TransferService::new(ServiceConfig::default()).expect("a valid config");
        let listener = Listener::bind(&endpoint).await.expect("the worker binds");
        let server = tokio::spawn(listener.serve(service, async {
            let _ = stopped.await;
        }));
        let client = WorkerClient::connect(&endpoint, ClientConfig::default())
            .await
            .expect("the client connects");
        (client, server)
    });

    let mut group = c.benchmark_group("grpc_inline_uds");
    for (name, len) in SIZES {
        let payload = Bytes::from((0..len).map(|it| (it % 251) as u8).collect::<Vec<u8>>());
        group.throughput(Throughput::Bytes(len as u64));
        if len >= 64 << 20 {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(8));
        } else {
            group.sample_size(50);
            group.measurement_time(Duration::from_secs(3));
        }
        group.bench_with_input(BenchmarkId::from_parameter(name), &payload, |b, payload| {
            let mut id = 0u64;
            b.iter(|| {
                id += 1;
                let ack = runtime
                    .block_on(client.send_inline(id, payload.clone(), "raw"))
                    .expect("the transfer succeeds");
                black_box(ack)
            });
        });
    }
    group.finish();

    let _ = stop.send(());
    runtime
        .block_on(server)
        .expect("the worker task did not panic")
        .expect("the worker served without error");
}

criterion_group!(benches, inline_round_trips);
criterion_main!(benches);
