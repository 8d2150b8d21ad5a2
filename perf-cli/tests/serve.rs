//! `perfopt serve` as an operator runs it: a real process with real worker processes, its
//! endpoints on a real socket, numbers that move under `--demo-load`, and SIGTERM draining the
//! transfers, flushing the store and exiting 0.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::Serve;

/// One HTTP/1.1 GET on a fresh connection: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

/// The sum of every sample of `name` (all label sets) in a Prometheus text.
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn serve_shows_live_numbers_and_a_sigterm_drains_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, logs) = start_demo(dir.path(), &[]);
    let addr = daemon.addr;

    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let (code, body) = get(addr, "/readyz?verbose");
        let (_, metrics) = get(addr, "/metrics");
        if code == 200 && total(&metrics, "perfopt_transfers_total") > 0.0 {
            assert!(body.contains("[+]workers ok: 1 of 1"), "{body}");
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "not ready with transfers: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(get(addr, "/livez").0, 200);
    std::thread::sleep(Duration::from_secs(2));
    let (_, second) = get(addr, "/metrics");
    let (a, b) = (
        total(&first, "perfopt_transfers_total"),
        total(&second, "perfopt_transfers_total"),
    );
    assert!(b > a, "the demo load moves the numbers: {a} then {b}");
    assert!(
        total(&second, "perfopt_transfer_duration_seconds_count") > 0.0,
        "{second}"
    );
    assert_eq!(total(&second, "perfopt_build_info"), 1.0, "{second}");

    daemon.stop();
    let stderr = logs.join().unwrap();
    assert!(stderr.contains("stopping: draining"), "{stderr}");
    let recorded: u64 = stderr
        .split("stopped: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        recorded as f64 >= b,
        "{recorded} recorded, {b} seen in /metrics"
    );
    assert!(
        stderr.contains(&format!("{recorded} committed")),
        "everything recorded reached the store: {stderr}"
    );
    assert!(
        TcpStream::connect(addr).is_err(),
        "the endpoints are closed"
    );
}

#[test]
fn serve_refuses_a_non_loopback_address_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_perfopt"))
        .args(["serve", "--listen", "0.0.0.0:0", "--workers", "1"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "bad input");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listen address 0.0.0.0:0 is not loopback"),
        "{stderr}"
    );
}

/// Starts `perfopt serve --demo-load` with `extra` arguments; returns it and a thread
/// collecting its stderr (read all the while, so the daemon never waits on it).
fn start_demo(dir: &std::path::Path, extra: &[&str]) -> (Serve, std::thread::JoinHandle<String>) {
    let mut serve = Serve::demo(dir, extra, Stdio::piped());
    let mut stderr = serve.process.0.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    (serve, logs)
}

/// With `--log-format json` every line on stderr is a JSON object: the sampled decisions at
/// the configuration's `[monitor]` rate, with their rationale (an audit log), the OTLP export
/// the configuration names, and the stop with its counts.
#[test]
fn serve_logs_json_lines_with_sampled_decisions_and_the_configured_otlp_export() {
    let dir = tempfile::tempdir().unwrap();
    // A collector that is not there: the export starts, and its pushes fail in the background.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config = dir.path().join("perfopt.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[monitor]\ndecision_sample_rate = 0.2\notlp_endpoint = \"{endpoint}\"\n\
             otlp_timeout_secs = 1\n"
        ),
    )
    .unwrap();
    let (mut daemon, logs) = start_demo(
        dir.path(),
        &["--log-format", "json", "--config", config.to_str().unwrap()],
    );
    let addr = daemon.addr;
    let deadline = Instant::now() + Duration::from_secs(60);
    while total(&get(addr, "/metrics").1, "perfopt_decisions_total") < 50.0 {
        assert!(Instant::now() < deadline, "no decisions within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.stop();
    let text = logs.join().unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l:?}")))
        .collect();
    let of = |target: &str| {
        events
            .iter()
            .filter(|e| e["target"] == target)
            .collect::<Vec<_>>()
    };
    let decisions = of("perfopt::decision");
    assert!(
        !decisions.is_empty(),
        "sampled decisions are logged: {text}"
    );
    for d in &decisions {
        let f = &d["fields"];
        for key in [
            "method",
            "reason",
            "pool",
            "size",
            "rationale",
            "policy_version",
        ] {
            assert!(!f[key].is_null(), "{key} missing in {d}");
        }
    }
    let said = of("perfopt::serve");
    let message = |m: &str| {
        said.iter()
            .find(|e| {
                e["fields"]["message"]
                    .as_str()
                    .is_some_and(|s| s.contains(m))
            })
            .copied()
    };
    let started = message("otlp: pushing metrics to").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(started["fields"]["endpoint"], endpoint.as_str());
    let stopped = message("stopped:").unwrap_or_else(|| panic!("{text}"));
    assert!(
        stopped["fields"]["recorded"].as_u64().unwrap() > 0,
        "{stopped}"
    );
    assert_eq!(
        stopped["fields"]["recorded"], stopped["fields"]["committed"],
        "everything recorded reached the store"
    );
}

/// `perfopt stats --daemon` asks the running daemon instead of opening the store it holds, and
/// shows the same report, text or JSON; a pool it does not have is bad input.
#[test]
fn stats_asks_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, logs) = start_demo(dir.path(), &[]);
    let addr = daemon.addr;
    let url = format!("http://{addr}");
    let stats = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_perfopt"))
            .args([
                "stats",
                "--daemon",
                &url,
                "--since",
                "10m",
                "--granularity",
                "1s",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let out = stats(&["--json"]);
        assert!(out.status.success(), "{out:?}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if report["total_transfers"].as_u64().unwrap() >= 10 {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "no transfers within 60 s: {report}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(report["daemon"], url.as_str());
    let counted: u64 = report["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, report["total_transfers"].as_u64().unwrap());
    let text = stats(&["--profile"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.lines().next().unwrap().contains(&format!("({url})")),
        "{text}"
    );
    assert!(text.contains("latency by ("), "the profile: {text}");

    let unknown = stats(&["--pool", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no pool \"nope\""),
        "{unknown:?}"
    );
    daemon.stop();
    drop(logs.join());
    let gone = stats(&[]);
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("cannot ask the daemon"),
        "{gone:?}"
    );
}
