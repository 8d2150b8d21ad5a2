//! The HTTP endpoints over a daemon whose state the test sets: status codes, bodies, the bounds
//! on what comes from outside, loopback by default, and a real socket with graceful shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use perf_core::StatsRequest;
use perf_monitor::http::{
    Check, ConfigRefusal, Daemon, HttpConfig, HttpError, HttpListener, MAX_BODY_BYTES,
    MAX_DECISIONS, StatsRefusal, router,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// A daemon whose checks the test sets, and which keeps the configurations it was given.
#[derive(Default)]
struct Fake {
    checks: Mutex<Vec<Check>>,
    applied: Mutex<Vec<String>>,
    asked_decisions: Mutex<Vec<usize>>,
}

impl Daemon for Fake {
    fn checks(&self) -> Vec<Check> {
        self.checks.lock().unwrap().clone()
    }
    fn metrics_text(&self) -> String {
        "# TYPE perfopt_transfers_total counter\nperfopt_transfers_total 3\n".into()
    }
    fn status(&self) -> Value {
        json!({ "version": "0.1.0", "state": "overridden?", "workers": 2 })
    }
    fn decisions(&self, limit: usize) -> Value {
        self.asked_decisions.lock().unwrap().push(limit);
        json!([])
    }
    fn thresholds(&self) -> Value {
        json!({ "default": { "effective": 10485760 } })
    }
    fn config(&self) -> Value {
        let applied = self.applied.lock().unwrap();
        json!({ "version": applied.len() + 1, "toml": applied.last().cloned().unwrap_or_default() })
    }
    fn apply_config(&self, toml: &str, dry_run: bool) -> Result<Value, ConfigRefusal> {
        if toml.contains("threshold = -1") {
            return Err(ConfigRefusal::Invalid(vec![
                "pools.default.threshold: -1, expected a size".into(),
                "pools.default.goal: \"fast\", expected one of minimize_latency, ...".into(),
            ]));
        }
        if !dry_run {
            self.applied.lock().unwrap().push(toml.to_string());
        }
        Ok(json!({ "applied": !dry_run, "flips": [] }))
    }
    fn predict(&self, pool: Option<&str>, size: u64) -> Option<Value> {
        match pool {
            None | Some("default") => Some(json!({ "size": size })),
            Some(_) => None,
        }
    }
    fn stats(&self, request: &StatsRequest) -> Result<Value, StatsRefusal> {
        if request.pool.is_some_and(|p| p.as_str() == "nope") {
            return Err(StatsRefusal::UnknownPool("nope".into()));
        }
        Ok(serde_json::to_value(request).unwrap())
    }
    fn snapshot(&self, pool: Option<&str>) -> Option<Value> {
        pool.is_none().then(|| json!({ "t": 0 }))
    }
    fn history(&self, pool: Option<&str>, range_secs: u64) -> Result<Option<Value>, String> {
        Ok(pool.is_none().then(|| json!({ "range_secs": range_secs })))
    }
    fn experiments(&self) -> Result<Value, String> {
        Ok(json!({ "experiments": [{ "experiment": "lower-threshold" }] }))
    }
    fn experiment(&self, name: &str) -> Result<Option<Value>, String> {
        Ok((name == "lower-threshold").then(|| json!({ "experiment": name })))
    }
}

async fn get(daemon: &Arc<Fake>, uri: &str) -> (StatusCode, String) {
    send(daemon, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn send(daemon: &Arc<Fake>, request: Request<Body>) -> (StatusCode, String) {
    let response = router(daemon.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn readiness_follows_the_checks_and_verbose_says_what_to_do() {
    let daemon = Arc::new(Fake::default());
    assert_eq!(get(&daemon, "/livez").await.0, StatusCode::OK);
    *daemon.checks.lock().unwrap() = vec![
        Check::pass("store", "open"),
        Check::fail("workers", "0 of 2 connected", "check --worker-cmd"),
    ];
    let (code, body) = get(&daemon, "/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "readyz check failed: workers\n");
    let (code, body) = get(&daemon, "/readyz?verbose").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains("[-]workers failed: 0 of 2 connected\n    what to do: check --worker-cmd"),
        "{body}"
    );
    assert!(body.contains("[+]store ok: open"), "{body}");
    // The liveness of the process does not depend on its readiness.
    assert_eq!(get(&daemon, "/livez").await.0, StatusCode::OK);

    *daemon.checks.lock().unwrap() = vec![
        Check::pass("workers", "2 of 2 connected"),
        Check::degraded("shared_memory", "no /dev/shm", "mount a tmpfs on /dev/shm"),
    ];
    let (code, body) = get(&daemon, "/readyz").await;
    assert_eq!(code, StatusCode::OK, "degraded still serves");
    assert_eq!(body, "readyz check passed, degraded: shared_memory\n");
    let (code, body) = get(&daemon, "/api/v1/status").await;
    assert_eq!(code, StatusCode::OK);
    let status = json_of(&body);
    assert_eq!(
        status["state"], "degraded",
        "the daemon's fields never replace the verdict"
    );
    assert_eq!(status["degraded"], true);
    assert_eq!(status["ready"], true);
    assert_eq!(status["workers"], 2);
    assert_eq!(status["checks"][1]["remedy"], "mount a tmpfs on /dev/shm");
    assert_eq!(
        get(&daemon, "/readyz?verbose=maybe").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_configuration_is_applied_whole_checked_first_or_only_previewed() {
    let daemon = Arc::new(Fake::default());
    let post = |uri: &str, body: &str| {
        Request::post(uri)
            .header("content-type", "application/toml")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (code, body) = send(&daemon, post("/api/v1/config?dry_run=1", "version = 1\n")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(json_of(&body)["applied"], false);
    assert!(
        daemon.applied.lock().unwrap().is_empty(),
        "a dry run applies nothing"
    );

    let (code, body) = send(
        &daemon,
        post("/api/v1/config", "version = 1\nthreshold = -1\n"),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let refused = json_of(&body);
    assert_eq!(
        refused["errors"].as_array().unwrap().len(),
        2,
        "every error at once"
    );
    assert!(daemon.applied.lock().unwrap().is_empty());

    let (code, _) = send(&daemon, post("/api/v1/config", "version = 1\n")).await;
    assert_eq!(code, StatusCode::OK);
    let (_, body) = get(&daemon, "/api/v1/config").await;
    assert_eq!(json_of(&body)["toml"], "version = 1\n");

    // Not UTF-8, and larger than the bound: refused before the daemon sees it.
    let bytes = Request::post("/api/v1/config")
        .body(Body::from(vec![0xff, 0xfe]))
        .unwrap();
    assert_eq!(send(&daemon, bytes).await.0, StatusCode::BAD_REQUEST);
    let huge = "#".repeat(MAX_BODY_BYTES + 1);
    assert_eq!(
        send(&daemon, post("/api/v1/config", &huge)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(daemon.applied.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn query_parameters_are_bounded_and_named_when_wrong() {
    let daemon = Arc::new(Fake::default());
    assert_eq!(get(&daemon, "/api/v1/decisions").await.0, StatusCode::OK);
    let max = format!("/api/v1/decisions?limit={MAX_DECISIONS}");
    assert_eq!(get(&daemon, &max).await.0, StatusCode::OK);
    assert_eq!(
        *daemon.asked_decisions.lock().unwrap(),
        [100, MAX_DECISIONS]
    );
    let too_many = format!("/api/v1/decisions?limit={}", MAX_DECISIONS + 1);
    for (uri, name) in [
        (too_many.as_str(), "limit"),
        ("/api/v1/decisions?limit=0", "limit"),
        ("/api/v1/decisions?limit=ten", "limit"),
        ("/api/v1/predict", "size"),
        ("/api/v1/predict?size=2000000000000", "size"),
        ("/api/v1/predict?size=10&pool=", "pool"),
        ("/api/v1/stats?since_secs=999999999", "since_secs"),
        ("/api/v1/stats?granularity_secs=0", "granularity_secs"),
        ("/api/v1/stats?granularity_secs=7200", "granularity_secs"),
        (
            "/api/v1/stats?since_secs=86400000&granularity_secs=1",
            "buckets",
        ),
        ("/api/v1/stats?pool=no%20spaces", "pool"),
        ("/api/v1/stats?method=carrier-pigeon", "method"),
        ("/api/v1/stats?profile=maybe", "profile"),
    ] {
        let (code, body) = get(&daemon, uri).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}");
        let error = json_of(&body)["error"].as_str().unwrap().to_string();
        assert!(error.contains(name), "{uri}: {error}");
    }
    let (code, body) = get(
        &daemon,
        "/api/v1/stats?since_secs=600&granularity_secs=10&pool=ml&method=grpc&profile=1",
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        json_of(&body),
        json!({"pool": "ml", "method": "grpc", "since_secs": 600, "granularity_secs": 10,
               "profile": true}),
        "every parameter reaches the daemon"
    );
    let (_, body) = get(&daemon, "/api/v1/stats").await;
    assert_eq!(json_of(&body)["since_secs"], 3600, "the defaults");
    assert_eq!(json_of(&body)["granularity_secs"], 60);
    assert_eq!(
        get(&daemon, "/api/v1/stats?pool=nope").await.0,
        StatusCode::NOT_FOUND
    );
    let (code, body) = get(&daemon, "/api/v1/predict?size=1048576").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(json_of(&body)["size"], 1048576);
    assert_eq!(
        get(&daemon, "/api/v1/predict?size=1&pool=nope").await.0,
        StatusCode::NOT_FOUND
    );
    let (code, body) = get(&daemon, "/api/v2/status").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(
        json_of(&body)["error"]
            .as_str()
            .unwrap()
            .contains("/api/v2/status")
    );
}

#[tokio::test]
async fn the_endpoints_listen_on_loopback_unless_told_and_shut_down_gracefully() {
    let remote = HttpConfig {
        listen: SocketAddr::from(([0, 0, 0, 0], 0)),
        allow_remote: false,
    };
    let err = HttpListener::bind(&remote).await.unwrap_err();
    assert!(matches!(err, HttpError::NotLoopback(_)), "{err}");
    assert!(err.to_string().contains("not loopback"), "{err}");

    let config = HttpConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        allow_remote: false,
    };
    let listener = HttpListener::bind(&config).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(Arc::new(Fake::default()), async {
        let _ = stopped.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("content-type: text/plain; version=0.0.4"),
        "{response}"
    );
    assert!(
        response.ends_with("perfopt_transfers_total 3\n"),
        "{response}"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "stopped listening"
    );
}

#[tokio::test]
async fn experiments_are_listed_and_read_one_by_one() {
    let daemon = Arc::new(Fake::default());
    let (code, body) = get(&daemon, "/api/v1/experiments").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all["experiments"][0]["experiment"], "lower-threshold");
    let (code, body) = get(&daemon, "/api/v1/experiments/lower-threshold").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, body) = get(&daemon, "/api/v1/experiments/nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(
        body.contains("no experiment \\\"nope\\\"; see /api/v1/experiments"),
        "{body}"
    );
    let long = format!("/api/v1/experiments/{}", "x".repeat(65));
    let (code, body) = get(&daemon, &long).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("an experiment name of 65 bytes, expected at most 64"),
        "{body}"
    );
}
