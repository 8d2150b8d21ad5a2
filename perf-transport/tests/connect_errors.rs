//! What a host is told when it cannot reach a worker: each cause once, naming the socket.

#![cfg(unix)]

mod grpc_support;

use std::collections::HashSet;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use perf_transport::grpc::{ClientConfig, ClientError, Endpoint, WorkerClient};

use grpc_support::{TRANSPORTS, Worker};

/// Asserts that no cause of `text` (the parts between `: `) is told twice, and that it holds
/// `expected`.
fn assert_each_cause_once(text: &str, expected: &str) {
    assert!(text.contains(expected), "{expected:?} is missing: {text}");
    let mut seen = HashSet::new();
    for part in text.split(": ") {
        assert!(seen.insert(part), "{part:?} is told twice: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_nobody_listens_on_reports_connection_refused_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.sock");
    // A socket file whose listener is closed: connecting to it is refused.
    drop(UnixListener::bind(&path).unwrap());
    let endpoint = Endpoint::Unix(path.clone());
    let err = WorkerClient::connect(&endpoint, ClientConfig::default())
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert_each_cause_once(&text, "Connection refused (os error 111)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_path_that_does_not_exist_reports_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never.sock");
    let endpoint = Endpoint::Unix(path.clone());
    let err = WorkerClient::connect(&endpoint, ClientConfig::default())
        .await
        .expect_err("nothing is there");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert_each_cause_once(&text, "No such file or directory (os error 2)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_worker_that_went_away_reports_each_cause_once() {
    for transport in TRANSPORTS {
        let worker = Worker::plain(transport).await;
        let client = worker.client().await;
        client
            .negotiate()
            .await
            .expect("the worker answers while it runs");
        worker.stop().await;
        // The first call may still meet the closing connection; once the channel knows it is
        // closed, calls fail on reconnecting, with the operating system's error.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let err = client.negotiate().await.expect_err("the worker is gone");
            assert!(
                matches!(err, ClientError::Unavailable { .. }),
                "{transport:?}: {err:?}"
            );
            let text = err.to_string();
            if text.contains("(os error ") {
                assert_each_cause_once(&text, "(os error ");
                break;
            }
            assert_each_cause_once(&text, "unavailable");
            assert!(
                Instant::now() < deadline,
                "{transport:?}: no reconnection error within 10 s, the last: {text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
