//! Replies over real Unix sockets and real shared memory: a worker's handler answers inline, in
//! a segment of its own (mapped by the host, released when the reply is dropped) or by fetch;
//! a handler's failure is typed, recorded and not retried, and the worker serves on; a worker
//! that predates replies still takes transfers one way.

use std::sync::Arc;
use std::time::Duration;

use perf_core::{Config, Controller, FailureKind, Method, TransferPolicy, TransferRequest};
use perf_platform::MemfdShm;
use perf_transport::grpc::{
    ClientError, Code, HeldReplies, ServiceConfig, TransferService, WorkerClient,
};
use perf_transport::reply::{CallMeta, ReplyAsk, ReplyBody};
use perf_transport::worker::{Call, DEFAULT_REPLY_INLINE, HandlerError, Output};
use perf_transport::{
    CallOptions, Host, ReferenceReader, ReplyMethod, Secret, SegmentPool, SegmentPoolConfig,
    TransferError, checksum::checksum,
};

mod own_runtime;

use own_runtime::{Records, Served};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// The test handler: the payload with every byte plus one, written into the reply buffer; the
/// caller's metadata `fail` makes it return an error (`error`) or panic (`panic`), and `quiet`
/// makes it answer nothing.
fn plus_one(call: &Call<'_>) -> Result<Option<Output>, HandlerError> {
    match call.meta("fail") {
        Some("error") => return Err(HandlerError::new("ValueError", "asked to fail")),
        Some("panic") => panic!("asked to panic"),
        _ => {}
    }
    if call.meta("quiet").is_some() {
        return Ok(None);
    }
    let payload = call.payload();
    let mut out = call.reply_buffer(payload.len());
    for (o, b) in out.iter_mut().zip(payload) {
        *o = b.wrapping_add(1);
    }
    Ok(Some(
        Output::buffer(out)
            .with_format("plus-one")
            .with_meta("seen", call.transfer_id().to_string()),
    ))
}

/// An in-process worker on a Unix socket and a runtime of its own.
struct Worker {
    served: Served,
    held: Option<HeldReplies>,
    pool: Option<SegmentPool>,
}

impl Worker {
    /// A worker running [`plus_one`] when `handler`, mapping references and making reply
    /// segments with `secret`.
    async fn start(secret: &Secret, handler: bool) -> Worker {
        Worker::start_with(secret, handler, ServiceConfig::default()).await
    }

    /// As [`Worker::start`], with the service's limits `config`.
    async fn start_with(secret: &Secret, handler: bool, config: ServiceConfig) -> Worker {
        let reader = ReferenceReader::new(
            Arc::new(MemfdShm::default()),
            secret.clone(),
            Some(std::process::id()),
        );
        let mut service = TransferService::new(config)
            .unwrap()
            .with_reference_handler(Arc::new(reader));
        let mut pool = None;
        if handler {
            let replies =
                SegmentPool::new(Arc::new(MemfdShm::default()), SegmentPoolConfig::default())
                    .unwrap();
            pool = Some(replies.clone());
            service = service.with_handler(Arc::new(plus_one), Some((replies, secret.clone())));
        }
        let held = service.held_replies();
        let served = Served::start(service, 2).await;
        Worker { served, held, pool }
    }

    fn held(&self) -> usize {
        self.held.as_ref().map_or(0, HeldReplies::len)
    }
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) ^ seed) as u8)
        .collect()
}

fn plus_one_of(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| b.wrapping_add(1)).collect()
}

/// A host on `worker`; it maps reply segments when `zero_copy`.
async fn host(worker: &Worker, secret: &Secret, zero_copy: bool, records: Arc<Records>) -> Host {
    let policy: Arc<dyn TransferPolicy> = Arc::new(Controller::new(Config::default()).unwrap());
    let mut builder = Host::builder(policy)
        .sink(records)
        .connect(worker.served.endpoint.clone());
    if zero_copy {
        let pool =
            SegmentPool::new(Arc::new(MemfdShm::default()), SegmentPoolConfig::default()).unwrap();
        builder = builder.zero_copy(pool).secret(secret.clone());
    }
    builder.start().await.unwrap()
}

/// Waits, within ten seconds, until the worker holds no reply.
async fn until_released(worker: &Worker) {
    for _ in 0..1000 {
        if worker.held() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the worker still holds {} replies", worker.held());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_come_inline_in_a_worker_segment_or_fetched_with_the_handlers_bytes() {
    let secret = Secret::generate().unwrap();
    // A worker remembers what each host process maps; these hosts share a process, so each
    // has a worker of its own.
    let workers = [
        Worker::start(&secret, true).await,
        Worker::start(&secret, true).await,
    ];
    let records = Arc::new(Records::default());
    let mapping = host(&workers[0], &secret, true, records.clone()).await;
    let fetching = host(&workers[1], &secret, false, records.clone()).await;
    for (host, maps, worker) in [
        (&mapping, true, &workers[0]),
        (&fetching, false, &workers[1]),
    ] {
        for len in [KIB, MIB, 64 * MIB] {
            let sent = payload(len, len as u64);
            let request = TransferRequest::new(len as u64);
            let reply = host.call(&request, &sent).await.unwrap();
            assert_eq!(reply.len(), len);
            assert!(
                reply.bytes() == plus_one_of(&sent).as_slice(),
                "{len} bytes"
            );
            assert_eq!(reply.format(), "plus-one");
            let id = reply.outcome().ack.transfer_id;
            assert_eq!(reply.metadata()["seen"], id.to_string());
            let threshold = reply.outcome().decision.reply_threshold;
            // Without reply models the reply follows the pool's threshold; a host with no
            // shared memory takes none.
            let pool_threshold = reply.outcome().decision.threshold.effective;
            assert_eq!(threshold, if maps { pool_threshold } else { u64::MAX });
            let expected = if len as u64 <= DEFAULT_REPLY_INLINE {
                ReplyMethod::Inline
            } else if maps && len as u64 >= threshold {
                ReplyMethod::Segment
            } else {
                ReplyMethod::Fetched
            };
            assert_eq!(reply.metrics().method, expected, "{len} bytes, maps {maps}");
            assert_eq!(reply.metrics().size, len as u64);
            if expected == ReplyMethod::Segment {
                assert_eq!(
                    worker.held(),
                    1,
                    "the segment is held while the reply lives"
                );
            }
            drop(reply);
            until_released(worker).await;
        }
    }
    // The biggest reply went by the worker's segment for the host that maps them, and no
    // segment was made for the host that maps none.
    let pool = workers[0].pool.as_ref().unwrap().stats();
    assert!(pool.created + pool.one_off > 0, "{pool:?}");
    let pool = workers[1].pool.as_ref().unwrap().stats();
    assert_eq!(pool.created + pool.one_off, 0, "{pool:?}");
    let records = records.all();
    assert_eq!(records.len(), 6, "one record per call");
    assert!(records.iter().all(|r| r.success));
    // Each record carries its reply: how it came back, how large, and how long it took.
    for (r, maps) in records.iter().zip([true, true, true, false, false, false]) {
        let reply = r.reply.expect("a call's record carries its reply");
        assert_eq!(reply.size, r.size, "{r:?}");
        assert!(reply.latency_us > 0.0, "{r:?}");
        assert_eq!(reply.inline, r.size <= DEFAULT_REPLY_INLINE, "{r:?}");
        if reply.method == Method::ZeroCopy {
            assert!(
                maps && r.size > DEFAULT_REPLY_INLINE,
                "only a host that maps reply segments gets large replies in them: {r:?}"
            );
        }
    }
    assert!(
        records
            .iter()
            .any(|r| r.reply.is_some_and(|p| p.method == Method::ZeroCopy)),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_takes_the_route_the_caller_forced_on_the_request() {
    let secret = Secret::generate().unwrap();
    let worker = Worker::start(&secret, true).await;
    let records = Arc::new(Records::default());
    let host = host(&worker, &secret, true, records.clone()).await;
    // The default pool's threshold is 10 MiB: unforced, a 2 MiB reply is fetched and a 16 MiB
    // one comes in a segment. Forcing a method on the request forces it on the reply.
    for (len, forced, route) in [
        (2 * MIB, None, ReplyMethod::Fetched),
        (16 * MIB, None, ReplyMethod::Segment),
        (2 * MIB, Some(Method::ZeroCopy), ReplyMethod::Segment),
        (16 * MIB, Some(Method::Grpc), ReplyMethod::Fetched),
    ] {
        let sent = payload(len, 5);
        let request = TransferRequest {
            override_method: forced,
            ..TransferRequest::new(len as u64)
        };
        let reply = host.call(&request, &sent).await.unwrap();
        assert_eq!(reply.metrics().method, route, "{len} bytes, {forced:?}");
        assert!(reply.bytes() == plus_one_of(&sent).as_slice());
        drop(reply);
        until_released(&worker).await;
    }
    let methods: Vec<Method> = records
        .all()
        .iter()
        .map(|r| r.reply.unwrap().method)
        .collect();
    assert_eq!(
        methods,
        [
            Method::Grpc,
            Method::ZeroCopy,
            Method::ZeroCopy,
            Method::Grpc
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_held_replies_a_worker_refuses_the_call_and_the_host_does_not_send_it_again() {
    let secret = Secret::generate().unwrap();
    let config = ServiceConfig {
        max_held_replies: 1,
        ..ServiceConfig::default()
    };
    let worker = Worker::start_with(&secret, true, config).await;
    let records = Arc::new(Records::default());
    let host = host(&worker, &secret, true, records.clone()).await;
    let sent = payload(16 * MIB, 9);
    let request = TransferRequest::new(sent.len() as u64);
    // The first reply's segment is held while the reply lives.
    let first = host.call(&request, &sent).await.unwrap();
    assert_eq!(first.metrics().method, ReplyMethod::Segment);
    let err = host.call(&request, &sent).await.unwrap_err();
    assert_eq!(err.kind(), FailureKind::Refused, "{err}");
    assert!(!err.worker_gone(), "{err}");
    assert!(err.to_string().contains("held"), "{err}");
    // The refused call was not sent again another way (which would run the handler again):
    // the host recorded one delivered call and one refused, with no fallback.
    let all = records.all();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[0].success);
    assert_eq!(all[1].failure, Some(FailureKind::Refused), "{:?}", all[1]);
    assert_eq!(all[1].fallback, None, "{:?}", all[1]);
    // Once the first reply is released there is room again.
    drop(first);
    until_released(&worker).await;
    let third = host.call(&request, &sent).await.unwrap();
    assert!(third.bytes() == plus_one_of(&sent).as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_reply_segment_is_reused_for_the_next_reply() {
    let secret = Secret::generate().unwrap();
    let worker = Worker::start(&secret, true).await;
    let host = host(&worker, &secret, true, Arc::default()).await;
    let sent = payload(64 * MIB, 3);
    let request = TransferRequest::new(sent.len() as u64);
    let first = host.call(&request, &sent).await.unwrap();
    assert_eq!(first.metrics().method, ReplyMethod::Segment);
    let before = worker.pool.as_ref().unwrap().stats();
    drop(first);
    until_released(&worker).await;
    let second = host.call(&request, &sent).await.unwrap();
    assert_eq!(second.metrics().method, ReplyMethod::Segment);
    assert!(second.bytes() == plus_one_of(&sent).as_slice());
    let after = worker.pool.as_ref().unwrap().stats();
    assert_eq!(after.reused, before.reused + 1, "{before:?} then {after:?}");
    assert_eq!(after.created, before.created, "{before:?} then {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_panicking_handler_is_a_typed_error_and_the_worker_serves_on() {
    let secret = Secret::generate().unwrap();
    let worker = Worker::start(&secret, true).await;
    let records = Arc::new(Records::default());
    let host = host(&worker, &secret, true, records.clone()).await;
    // Inline and by reference: both paths report the handler, neither falls back.
    for len in [KIB, 8 * MIB] {
        for (fail, kind, message) in [
            ("error", "ValueError", "asked to fail"),
            ("panic", "panic", "asked to panic"),
        ] {
            let options = CallOptions {
                metadata: [("fail".to_owned(), fail.to_owned())].into(),
                ..CallOptions::default()
            };
            let err = host
                .call_with(
                    &TransferRequest::new(len as u64),
                    &payload(len, 1),
                    &options,
                )
                .await
                .unwrap_err();
            let TransferError::Handler {
                id,
                kind: got_kind,
                message: got_message,
            } = &err
            else {
                panic!("expected a handler error, got {err:?}");
            };
            assert_eq!(got_kind, kind);
            assert_eq!(
                got_message,
                &format!("the handler failed on transfer {id}: {kind}: {message}")
            );
            assert_eq!(err.kind(), FailureKind::Handler);
            let ok = host
                .call(&TransferRequest::new(KIB as u64), &payload(KIB, 2))
                .await
                .unwrap();
            assert!(ok.bytes() == plus_one_of(&payload(KIB, 2)).as_slice());
        }
    }
    let stats = host.stats();
    assert_eq!((stats.failed, stats.retried), (4, 0), "{stats:?}");
    let records = records.all();
    let failed: Vec<_> = records.iter().filter(|r| !r.success).collect();
    assert_eq!(failed.len(), 4);
    assert!(
        failed
            .iter()
            .all(|r| r.failure == Some(FailureKind::Handler))
    );
    assert!(
        failed.iter().all(|r| r.fallback.is_none()),
        "a handler's failure is not sent another way"
    );
    assert!(failed.iter().all(|r| r.method == r.decided_method));
    assert!(
        failed.iter().any(|r| r.method == Method::ZeroCopy),
        "a reference's handler failed too: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_replies_takes_transfers_and_refuses_calls_with_a_typed_error() {
    let secret = Secret::generate().unwrap();
    let worker = Worker::start(&secret, false).await;
    let records = Arc::new(Records::default());
    let host = host(&worker, &secret, true, records.clone()).await;
    let sent = payload(MIB, 5);
    let request = TransferRequest::new(sent.len() as u64);
    let err = host.call(&request, &sent).await.unwrap_err();
    assert!(
        matches!(err, TransferError::NoReplies { .. }),
        "expected no replies, got {err:?}"
    );
    // The refused call is a recorded failure, not a silent gap.
    let refused = records.all();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        refused[0].failure,
        Some(FailureKind::Refused),
        "{refused:?}"
    );
    assert_eq!(refused[0].reply, None);
    assert!(
        err.to_string()
            .contains("does not speak the reply extension")
    );
    let outcome = host.transfer(&request, &sent).await.unwrap();
    assert!(outcome.metrics.success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_answers_nothing_gives_an_empty_reply() {
    let secret = Secret::generate().unwrap();
    let worker = Worker::start(&secret, true).await;
    let host = host(&worker, &secret, true, Arc::default()).await;
    let options = CallOptions {
        metadata: [("quiet".to_owned(), "1".to_owned())].into(),
        ..CallOptions::default()
    };
    let reply = host
        .call_with(
            &TransferRequest::new(KIB as u64),
            &payload(KIB, 1),
            &options,
        )
        .await
        .unwrap();
    assert!(reply.is_empty());
    assert_eq!(reply.metrics().method, ReplyMethod::Nothing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_reply_is_fetched_once() {
    let secret = Secret::generate().unwrap();
    let worker = Worker::start(&secret, true).await;
    let client = WorkerClient::connect(&worker.served.endpoint, Default::default())
        .await
        .unwrap();
    let caps = client.negotiate().await.unwrap();
    assert!(caps.speaks("reply"), "{caps:?}");
    let sent = payload(5 * MIB, 9);
    let meta = CallMeta {
        reply: Some(ReplyAsk {
            inline_max: DEFAULT_REPLY_INLINE,
            threshold: 0,
        }),
        ..CallMeta::default()
    };
    let acked = client
        .send_inline_slice_with(77, &sent, "raw", &meta)
        .await
        .unwrap();
    let reply = acked.reply.unwrap();
    assert_eq!(
        reply.body,
        ReplyBody::Deferred,
        "this host maps no segments"
    );
    assert_eq!(worker.held(), 1);
    let bytes = client.fetch_reply(77, reply.length).await.unwrap();
    assert_eq!(checksum(&bytes), reply.checksum);
    assert!(bytes == plus_one_of(&sent));
    assert_eq!(worker.held(), 0);
    let again = client.fetch_reply(77, reply.length).await.unwrap_err();
    assert_eq!(again.rejection_code(), Some(Code::NotFound), "{again}");
    // Releasing what the worker does not hold is answered all the same.
    client.release_reply(77).await.unwrap();
    // Without `perfopt-reply` the ack carries no reply.
    let plain = client
        .send_inline_slice_with(78, &sent, "raw", &CallMeta::default())
        .await
        .unwrap();
    assert!(plain.reply.is_none());
    assert!(matches!(
        client
            .send_inline_slice_with(
                79,
                &sent,
                "raw",
                &CallMeta {
                    options: CallOptions {
                        metadata: [("fail".to_owned(), "error".to_owned())].into(),
                        ..CallOptions::default()
                    },
                    ..meta
                }
            )
            .await,
        Err(ClientError::Handler { ref kind, .. }) if kind == "ValueError"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_calls_all_get_their_own_replies() {
    let secret = Secret::generate().unwrap();
    let worker = Worker::start(&secret, true).await;
    let host = host(&worker, &secret, true, Arc::default()).await;
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let len = [KIB, 100 * KIB, MIB, 3 * MIB][i as usize % 4];
            let sent = payload(len, i);
            let reply = host
                .call(&TransferRequest::new(len as u64).with_session(i), &sent)
                .await
                .unwrap();
            assert!(reply.bytes() == plus_one_of(&sent).as_slice(), "call {i}");
            reply.metrics().method
        }));
    }
    let mut methods = Vec::new();
    for task in tasks {
        methods.push(task.await.unwrap());
    }
    assert_eq!(methods.len(), 200);
    assert!(methods.contains(&ReplyMethod::Inline));
    let stats = host.stats();
    assert_eq!((stats.delivered, stats.failed), (200, 0), "{stats:?}");
    until_released(&worker).await;
}
