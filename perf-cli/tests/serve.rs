//! `perfopt serve` as an operator runs it: a real process with real worker processes, its
//! endpoints on a real socket, numbers that move under `--demo-load`, and SIGTERM draining the
//! transfers, flushing the store and exiting 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Kills the daemon if a test fails before it stops it.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_shows_live_numbers_and_a_sigterm_drains_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_perfopt"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "1",
                "--demo-load",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(daemon.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening http://")
        .unwrap_or_else(|| panic!("first line {line:?}"))
        .parse()
        .unwrap();

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

    let status = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(code) = daemon.0.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "no exit 60 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    daemon
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(code.success(), "{code}: {stderr}");
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
