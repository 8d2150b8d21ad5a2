//! The dashboard's endpoints over a daemon whose snapshots the test counts: the page and its
//! embedded assets, the event stream (at once, then every second), its bound, the validation
//! of `pool` and `range_secs`, and a graceful shutdown with a stream open.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures_util::StreamExt;
use perf_monitor::http::{
    CONTENT_SECURITY_POLICY, Check, ConfigRefusal, Daemon, HttpConfig, HttpListener,
    MAX_EVENT_STREAMS, StatsRefusal, router,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// A daemon with one pool, `default`, whose snapshots are numbered.
#[derive(Default)]
struct Fake {
    snapshots: AtomicU64,
    histories: Mutex<Vec<(Option<String>, u64)>>,
}

impl Daemon for Fake {
    fn checks(&self) -> Vec<Check> {
        vec![Check::degraded(
            "shared_memory",
            "no /dev/shm",
            "mount a tmpfs on /dev/shm",
        )]
    }
    fn metrics_text(&self) -> String {
        String::new()
    }
    fn status(&self) -> Value {
        json!({})
    }
    fn decisions(&self, _limit: usize) -> Value {
        json!([])
    }
    fn thresholds(&self) -> Value {
        json!({})
    }
    fn config(&self) -> Value {
        json!({})
    }
    fn apply_config(&self, _toml: &str, _dry_run: bool) -> Result<Value, ConfigRefusal> {
        Err(ConfigRefusal::Failed("read only".into()))
    }
    fn predict(&self, _pool: Option<&str>, _size: u64) -> Option<Value> {
        None
    }
    fn stats(&self, _request: &perf_core::StatsRequest) -> Result<Value, StatsRefusal> {
        Err(StatsRefusal::Unavailable("none".into()))
    }
    fn snapshot(&self, pool: Option<&str>) -> Option<Value> {
        if pool.is_some_and(|p| p != "default") {
            return None;
        }
        let n = self.snapshots.fetch_add(1, Ordering::Relaxed);
        Some(json!({ "n": n, "pool": pool }))
    }
    fn history(&self, pool: Option<&str>, range_secs: u64) -> Result<Option<Value>, String> {
        if pool.is_some_and(|p| p != "default") {
            return Ok(None);
        }
        let mut asked = self.histories.lock().unwrap();
        asked.push((pool.map(str::to_owned), range_secs));
        Ok(Some(json!({ "range_secs": range_secs, "t": [] })))
    }
    fn experiments(&self) -> Result<Value, String> {
        Ok(json!({ "experiments": [{ "experiment": "lower-threshold" }] }))
    }
    fn experiment(&self, name: &str) -> Result<Option<Value>, String> {
        Ok((name == "lower-threshold").then(|| json!({ "experiment": name })))
    }
}

async fn get(app: &Router, uri: &str) -> axum::response::Response {
    app.clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn text(response: axum::response::Response) -> String {
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

fn header_of(response: &axum::response::Response, name: header::HeaderName) -> &str {
    response
        .headers()
        .get(&name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}

/// The `data:` payloads of the `snapshot` events in `text`, parsed.
fn snapshots(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|e| e.lines().any(|l| l == "event: snapshot"))
        .map(|e| {
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn the_page_references_its_embedded_assets_and_they_come_with_their_types() {
    let app = router(Arc::new(Fake::default()));
    let page = get(&app, "/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        header_of(&page, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    assert_eq!(
        header_of(&page, header::CONTENT_SECURITY_POLICY),
        CONTENT_SECURITY_POLICY
    );
    assert!(CONTENT_SECURITY_POLICY.contains("default-src 'self'"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    let html = text(page).await;
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN"
    );
    let mut referenced = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let url = &part[..part.find('"').unwrap()];
            if url.starts_with("/assets/") {
                referenced.push(url.to_owned());
            }
        }
    }
    for expected in [
        "/assets/dashboard.js",
        "/assets/dashboard.css",
        "/assets/vendor/uplot/uPlot.iife.min.js",
        "/assets/vendor/uplot/uPlot.min.css",
    ] {
        assert!(
            referenced.iter().any(|r| r == expected),
            "{expected} in {html}"
        );
    }
    for url in &referenced {
        let asset = get(&app, url).await;
        assert_eq!(asset.status(), StatusCode::OK, "{url}");
        let kind = header_of(&asset, header::CONTENT_TYPE).to_owned();
        let want = match url.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            _ => "text/plain; charset=utf-8",
        };
        assert_eq!(kind, want, "{url}");
        assert!(
            header_of(&asset, header::CACHE_CONTROL).contains("max-age="),
            "{url}"
        );
        assert_eq!(header_of(&asset, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert!(!text(asset).await.is_empty(), "{url}");
    }
    let uplot = text(get(&app, "/assets/vendor/uplot/uPlot.iife.min.js").await).await;
    assert!(uplot.contains("uPlot"), "the vendored uPlot");
    let missing = get(&app, "/assets/../Cargo.toml").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let missing = get(&app, "/assets/nothing.js").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(text(missing).await.contains("no asset"));
}

#[tokio::test(start_paused = true)]
async fn events_bring_a_snapshot_at_once_and_then_one_a_second() {
    let daemon = Arc::new(Fake::default());
    let response = get(&router(daemon.clone()), "/api/v1/events").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(&response, header::CONTENT_TYPE),
        "text/event-stream"
    );
    let seen = Arc::new(Mutex::new(String::new()));
    let reading = seen.clone();
    let mut body = response.into_body().into_data_stream();
    let reader = tokio::spawn(async move {
        while let Some(Ok(chunk)) = body.next().await {
            reading
                .lock()
                .unwrap()
                .push_str(std::str::from_utf8(&chunk).unwrap());
        }
    });
    // Time is paused: it moves only when every task waits, so each count is exact.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let first = snapshots(&seen.lock().unwrap());
    assert_eq!(first.len(), 1, "one snapshot at once");
    assert_eq!(first[0]["n"], 1, "the stream checked the pool first");
    assert_eq!(first[0]["state"], "degraded", "with the readiness");
    assert_eq!(first[0]["checks"][0]["name"], "shared_memory");
    assert_eq!(first[0]["checks"][0]["remedy"], "mount a tmpfs on /dev/shm");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let all = snapshots(&seen.lock().unwrap());
    assert_eq!(all.len(), 4, "then one a second");
    let numbers: Vec<u64> = all.iter().map(|s| s["n"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4], "each a fresh snapshot");
    reader.abort();
}

#[tokio::test]
async fn event_streams_are_bounded_and_one_more_is_refused_until_one_closes() {
    let app = router(Arc::new(Fake::default()));
    let mut open = Vec::new();
    for _ in 0..MAX_EVENT_STREAMS {
        let response = get(&app, "/api/v1/events").await;
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response);
    }
    let refused = get(&app, "/api/v1/events").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_str(&text(refused).await).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains(&format!("{MAX_EVENT_STREAMS} event streams")),
        "{body}"
    );
    // Other endpoints still answer.
    assert_eq!(get(&app, "/api/v1/history").await.status(), StatusCode::OK);
    drop(open.pop());
    assert_eq!(
        get(&app, "/api/v1/events").await.status(),
        StatusCode::OK,
        "a closed stream frees its place"
    );
}

#[tokio::test]
async fn pool_and_range_are_checked_and_named_when_wrong() {
    let daemon = Arc::new(Fake::default());
    let app = router(daemon.clone());
    let long = "p".repeat(65);
    for (uri, status, names) in [
        ("/api/v1/events?pool=", StatusCode::BAD_REQUEST, "pool"),
        (
            &format!("/api/v1/events?pool={long}") as &str,
            StatusCode::BAD_REQUEST,
            "pool",
        ),
        ("/api/v1/events?pool=batch", StatusCode::NOT_FOUND, "batch"),
        ("/api/v1/history?pool=", StatusCode::BAD_REQUEST, "pool"),
        ("/api/v1/history?pool=batch", StatusCode::NOT_FOUND, "batch"),
        (
            "/api/v1/history?range_secs=59",
            StatusCode::BAD_REQUEST,
            "range_secs",
        ),
        (
            "/api/v1/history?range_secs=3601",
            StatusCode::BAD_REQUEST,
            "range_secs",
        ),
        (
            "/api/v1/history?range_secs=1m",
            StatusCode::BAD_REQUEST,
            "range_secs",
        ),
        (
            "/api/v1/history?range_secs=-60",
            StatusCode::BAD_REQUEST,
            "range_secs",
        ),
    ] {
        let response = get(&app, uri).await;
        assert_eq!(response.status(), status, "{uri}");
        let body: Value = serde_json::from_str(&text(response).await).unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(names),
            "{uri}: {body}"
        );
    }
    assert!(
        daemon.histories.lock().unwrap().is_empty(),
        "nothing invalid reached the daemon"
    );
    for uri in [
        "/api/v1/history",
        "/api/v1/history?range_secs=60",
        "/api/v1/history?range_secs=3600&pool=default",
    ] {
        let response = get(&app, uri).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
    }
    assert_eq!(
        *daemon.histories.lock().unwrap(),
        [(None, 300), (None, 60), (Some("default".to_owned()), 3600)]
    );
    let stream = get(&app, "/api/v1/events?pool=default").await;
    assert_eq!(stream.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_server_with_an_open_event_stream_stops_and_ends_the_stream() {
    let listener = HttpListener::bind(&HttpConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        allow_remote: false,
    })
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(Arc::new(Fake::default()), async {
        let _ = stopped.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /api/v1/events HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: snapshot") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stream ended before its first event");
        seen.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&seen).to_string();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let _ = stop.send(());
    // A generous bound: without ending the stream, the server would wait forever.
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server stopped with a stream open")
        .unwrap()
        .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.map(|_| rest)
    })
    .await
    .expect("the stream was closed");
    let rest = String::from_utf8_lossy(&rest.unwrap()).to_string();
    assert!(
        rest.ends_with("0\r\n\r\n"),
        "the chunked body ended: {rest:?}"
    );
}
