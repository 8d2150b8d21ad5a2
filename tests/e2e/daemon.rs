//! The daemon's endpoints over a real optimizer, a real host runtime and a real worker on a
//! real socket: readiness, `/metrics` counting the transfers carried, recent decisions with
//! their rationale, a configuration previewed then applied through the API, predictions and
//! statistics; the dashboard's snapshot and history after real transfers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perfopt::core::FixedProbe;
use perfopt::daemon::{DaemonView, serve_on};
use perfopt::monitor::http::{Daemon, HttpConfig, HttpListener};
use perfopt::{Method, MetricsSink, Optimizer, TransferMetrics, TransferRequest};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::in_process::InProcessWorker;

/// Transfers carried by each method, as the records say.
#[derive(Default)]
struct ByMethod([AtomicU64; 2]);

impl MetricsSink for ByMethod {
    fn record(&self, m: &TransferMetrics) {
        self.0[m.method.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// One HTTP/1.1 request on a fresh connection: the status code and the body.
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    // Bodies of unknown length come chunked; the tests read JSON and text whole.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// An optimizer on an idle machine recording to `sink` too, and its host runtime connected to
/// `worker`.
async fn connected(
    worker: &InProcessWorker,
    sink: Arc<dyn MetricsSink>,
) -> (Arc<Optimizer>, perfopt::transport::Host) {
    let optimizer = Arc::new(
        Optimizer::builder()
            .probe(Arc::new(FixedProbe::default()))
            .sink(sink)
            .build()
            .unwrap(),
    );
    let host = optimizer
        .host()
        .secret(worker.secret.clone())
        .connect(worker.endpoint.clone())
        .start()
        .await
        .unwrap();
    (optimizer, host)
}

/// The value of the sample `series` (name and labels, exactly) in a Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoints_show_the_running_optimizer_and_change_its_configuration() {
    let worker = InProcessWorker::start(None).await;

    let carried = Arc::new(ByMethod::default());
    let (optimizer, host) = connected(&worker, carried.clone()).await;
    let view = Arc::new(DaemonView::new(optimizer.clone(), host.clone()));
    let http_listener = HttpListener::bind(&HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_remote: false,
    })
    .await
    .unwrap();
    let addr = http_listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(http_listener, view, async {
        let _ = stopped.await;
    }));

    // 20 small transfers, mostly by gRPC, and 10 of 16 MiB, mostly by zero-copy (the threshold
    // is 10 MiB; exploration sends a few the other way).
    let small = vec![1u8; 4096];
    let large = vec![2u8; 16 << 20];
    for i in 0..30 {
        let payload = if i < 20 { &small } else { &large };
        let request = TransferRequest::new(payload.len() as u64);
        host.transfer(&request, payload).await.unwrap();
    }

    let (code, body) = http(addr, "GET", "/readyz?verbose", "").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("[+]workers ok: 1 of 1 workers connected"),
        "{body}"
    );
    assert!(body.contains("[+]shared_memory ok"), "{body}");
    assert!(body.ends_with("readyz check passed\n"), "{body}");

    let (code, text) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(code, 200);
    let count = |method: &str| {
        let series = format!("perfopt_transfers_total{{pool=\"default\",method=\"{method}\"}}");
        sample(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    let by = |m: Method| carried.0[m.index()].load(Ordering::Relaxed) as f64;
    assert_eq!(
        (count("grpc"), count("zero_copy")),
        (by(Method::Grpc), by(Method::ZeroCopy))
    );
    assert_eq!(count("grpc") + count("zero_copy"), 30.0);
    assert_eq!(
        sample(&text, "perfopt_pool_threshold_bytes{pool=\"default\"}"),
        Some(10.0 * 1048576.0)
    );
    assert_eq!(sample(&text, "perfopt_degraded"), Some(0.0));
    assert!(
        sample(&text, "perfopt_shm_budget_bytes").unwrap() > 0.0,
        "{text}"
    );

    let (code, body) = http(addr, "GET", "/api/v1/decisions?limit=5", "").await;
    assert_eq!(code, 200);
    let decisions = json(&body);
    let decisions = decisions.as_array().unwrap();
    assert_eq!(decisions.len(), 5);
    assert_eq!(decisions[0]["method"], "zero_copy", "newest first");
    assert!(
        decisions[0]["rationale"]
            .as_str()
            .unwrap()
            .contains("zero-copy"),
        "{body}"
    );

    // A threshold of 2 MiB flips the sample decisions between 2 and 10 MiB: previewed first,
    // nothing moves.
    let lower = "version = 1\n[pools.default]\nthreshold = \"2MiB\"\n";
    let (code, body) = http(addr, "POST", "/api/v1/config?dry_run=1", lower).await;
    assert_eq!(code, 200, "{body}");
    let preview = json(&body);
    assert_eq!(preview["applied"], false);
    assert!(
        !preview["diff"]["flips"].as_array().unwrap().is_empty(),
        "{body}"
    );
    let version = optimizer.controller().version();
    assert_eq!(
        json(&http(addr, "GET", "/api/v1/config", "").await.1)["version"],
        version
    );

    let (code, body) = http(
        addr,
        "POST",
        "/api/v1/config",
        "version = 1\n[pools.default]\nthreshold = 7\ngoal = \"fast\"\n",
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        json(&body)["errors"].as_array().unwrap().len() >= 2,
        "every error at once: {body}"
    );
    assert_eq!(optimizer.controller().version(), version, "nothing applied");

    let (code, body) = http(addr, "POST", "/api/v1/config", lower).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["applied"], true);
    assert_eq!(optimizer.controller().version(), version + 1);
    let thresholds = json(&http(addr, "GET", "/api/v1/thresholds", "").await.1);
    assert_eq!(
        thresholds["pools"]["default"]["base"],
        2 << 20,
        "{thresholds}"
    );

    let (code, body) = http(addr, "GET", "/api/v1/predict?size=4194304", "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        json(&body)["decision"]["threshold"]["base"],
        2 << 20,
        "{body}"
    );
    assert_eq!(
        http(addr, "GET", "/api/v1/predict?size=1&pool=nope", "")
            .await
            .0,
        404
    );

    optimizer.flush().unwrap();
    let (code, body) = http(addr, "GET", "/api/v1/stats?since_secs=600", "").await;
    assert_eq!(code, 200, "{body}");
    let stats: perfopt::store::StatsReport = serde_json::from_str(&body).unwrap();
    assert_eq!(stats.total_transfers, 30, "{body}");
    assert_eq!(stats.latency_us.count, 30, "{body}");
    let zero_copy = stats
        .by_method
        .iter()
        .find(|m| m.method == Method::ZeroCopy)
        .map_or(0, |m| m.transfers);
    assert_eq!(zero_copy as f64, by(Method::ZeroCopy), "{body}");
    assert_eq!(
        http(addr, "GET", "/api/v1/stats?pool=nope", "").await.0,
        404
    );

    let (code, body) = http(addr, "GET", "/api/v1/status", "").await;
    assert_eq!(code, 200);
    let status = json(&body);
    assert_eq!(status["state"], "ready", "{body}");
    assert_eq!(status["transfers"]["total"], 30, "{body}");

    // Ten failed transfers in the minute: a quarter of 40 failed, over the 1 % mark. The service
    // is degraded, still ready, and says what to do.
    for i in 0..10 {
        let mut failed = perfopt::core::conformance::transfer(
            perfopt::Name::DEFAULT_POOL,
            Method::Grpc,
            4096,
            i,
            100.0,
        );
        failed.fail(perfopt::core::FailureKind::Timeout);
        optimizer.record(&failed);
    }
    let (code, body) = http(addr, "GET", "/readyz?verbose", "").await;
    assert_eq!(code, 200, "degraded still serves: {body}");
    assert!(
        body.contains("[~]failure_rate degraded: 25.0 % of the last 60 s's 40 transfers failed"),
        "{body}"
    );
    assert!(
        body.ends_with("readyz check passed, degraded: failure_rate\n"),
        "{body}"
    );
    let (_, text) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(sample(&text, "perfopt_degraded"), Some(1.0), "{text}");
    assert_eq!(
        json(&http(addr, "GET", "/api/v1/status", "").await.1)["state"],
        "degraded"
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    host.shutdown().await;
}

/// Per method, the transfers, bytes and the shortest and longest latency (µs) the records say.
#[derive(Default)]
struct Carried(Mutex<[(u64, u64, f64, f64); 2]>);

impl MetricsSink for Carried {
    fn record(&self, m: &TransferMetrics) {
        let mut by = self.0.lock().unwrap();
        let row = &mut by[m.method.index()];
        if row.0 == 0 {
            row.2 = f64::MAX;
        }
        row.0 += 1;
        row.1 += m.size;
        row.2 = row.2.min(m.latency_us);
        row.3 = row.3.max(m.latency_us);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_snapshot_and_history_count_the_transfers_carried() {
    let worker = InProcessWorker::start(None).await;
    let carried = Arc::new(Carried::default());
    let (optimizer, host) = connected(&worker, carried.clone()).await;
    let view = DaemonView::new(optimizer.clone(), host.clone());

    // 20 of 4 KiB, mostly by gRPC, and 10 of 16 MiB, mostly by zero-copy.
    let small = vec![1u8; 4096];
    let large = vec![2u8; 16 << 20];
    for i in 0..30 {
        let payload = if i < 20 { &small } else { &large };
        let request = TransferRequest::new(payload.len() as u64);
        host.transfer(&request, payload).await.unwrap();
    }
    let by = *carried.0.lock().unwrap();

    let s = view.snapshot(None).unwrap();
    let w = &s["window"];
    // No reading a second old yet: the window reaches back to the view's start.
    assert_eq!(w["transfers"], 30, "{s}");
    assert_eq!(w["failures"], 0);
    assert_eq!(s["totals"]["transfers"], 30);
    assert_eq!(
        s["totals"]["bytes"].as_u64().unwrap(),
        20 * 4096 + 10 * (16 << 20)
    );
    for (i, method) in ["zero_copy", "grpc"].into_iter().enumerate() {
        let m = &w["methods"][method];
        let (n, bytes, min_us, max_us) = by[i];
        assert_eq!(m["transfers"], n, "{method}: {s}");
        assert_eq!(m["bytes"], bytes, "{method}");
        if n == 0 {
            assert!(m["p50_ms"].is_null(), "{method}");
            continue;
        }
        let p = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("{method} {k}: {m}"));
        assert!(
            p("p50_ms") <= p("p95_ms") && p("p95_ms") <= p("p99_ms"),
            "{m}"
        );
        // Bucket bounds are at most 2.5 apart: the percentiles lie within one bucket of the
        // shortest and longest transfer.
        assert!(
            p("p50_ms") >= min_us / 1e3 / 2.5,
            "{method}: {m}, min {min_us} µs"
        );
        assert!(
            p("p99_ms") <= max_us / 1e3 * 2.5,
            "{method}: {m}, max {max_us} µs"
        );
        let mean = p("mean_ms") * 1e3;
        assert!((min_us..=max_us).contains(&mean), "{method}: {m}");
    }
    let decided: u64 = w["decisions"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|by| by.as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(decided, 30, "{s}");
    assert_eq!(s["thresholds"]["default"], 10 * 1048576);
    assert_eq!(s["pools"], serde_json::json!(["default"]));
    assert_eq!(s["load"]["live_workers"], 1);
    assert_eq!(s["load"]["in_flight"], 0);
    assert!(s["shared_memory"]["budget_bytes"].as_u64().unwrap() > 0);
    assert!(s["model"].is_null(), "no learning was asked for: {s}");

    assert!(view.snapshot(Some("batch")).is_none(), "an unknown pool");
    assert_eq!(
        view.snapshot(Some("default")).unwrap()["totals"]["transfers"],
        30
    );

    // A quiet second: the next window starts at a reading a second old and holds nothing.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _ = view.snapshot(None).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let quiet = view.snapshot(None).unwrap();
    assert_eq!(quiet["window"]["transfers"], 0, "{quiet}");
    assert_eq!(quiet["window"]["transfers_per_s"], 0.0);
    assert!(quiet["window"]["methods"]["grpc"]["p99_ms"].is_null());
    let secs = quiet["window"]["secs"].as_f64().unwrap();
    assert!(secs >= 1.0, "{secs}");
    assert_eq!(quiet["totals"]["transfers"], 30);

    // The history comes from the store's buckets.
    optimizer.flush().unwrap();
    let h = view.history(None, 60).unwrap().unwrap();
    assert_eq!(h["step_secs"], 1);
    let t = h["t"].as_array().unwrap();
    assert!(!t.is_empty(), "{h}");
    let sum = |method: &str| -> u64 {
        let col = h[method]["transfers"].as_array().unwrap();
        assert_eq!(col.len(), t.len());
        col.iter().filter_map(Value::as_u64).sum()
    };
    assert_eq!(sum("zero_copy"), by[0].0, "{h}");
    assert_eq!(sum("grpc"), by[1].0, "{h}");
    let rate: f64 = h["transfers_per_s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert_eq!(
        rate, 30.0,
        "one-second buckets: the rates add up to the count"
    );
    assert!(view.history(Some("batch"), 60).unwrap().is_none());
    assert_eq!(view.history(None, 3600).unwrap().unwrap()["step_secs"], 30);
    host.shutdown().await;
}
