//! Running the `perfopt` binary from the integration tests, as a user would.

// Each test binary uses the helpers it needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use perfopt::transport::grpc::Endpoint;

use serde_json::Value;

/// Runs `perfopt` with `args`, without a data directory from the environment.
pub(crate) fn perfopt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perfopt"))
        .args(args)
        .env_remove("PERFOPT_DATA_DIR")
        .output()
        .expect("the perfopt binary runs")
}

/// How long a command that must not block (on a FIFO, a device, a store that is not one) may
/// run.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `perfopt` with `args` like [`perfopt`]; kills it and fails the test if it is still
/// running after [`DEADLINE`].
pub(crate) fn perfopt_within_deadline(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfopt"))
        .args(args)
        .env_remove("PERFOPT_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the perfopt binary runs");
    let started = Instant::now();
    while child.try_wait().expect("waiting on perfopt").is_none() {
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("perfopt {args:?} still ran after {DEADLINE:?}, expected it not to block");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("perfopt's output")
}

/// Waits for a `perfopt run ... --json -` child, which must succeed, and reads the JSON report
/// that ends its standard output.
pub(crate) fn run_report(child: Child) -> Value {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json_start = text.find("\n{").map_or(0, |i| i + 1);
    serde_json::from_str(&text[json_start..]).unwrap()
}

/// Standard output as text.
pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Standard error as text.
pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs `perfopt` with `args`, which must succeed, and reads its JSON output.
pub(crate) fn json(args: &[&str]) -> Value {
    let o = perfopt(args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A `perfopt worker` child on a socket in `dir`; killed when dropped.
pub(crate) struct WorkerChild {
    pub(crate) child: Child,
    pub(crate) endpoint: Endpoint,
}

impl WorkerChild {
    /// Starts `perfopt worker` on socket `name` in `dir`, checking references with the secret
    /// in `secret`, serving this process, and waits until it listens.
    pub(crate) fn start(dir: &Path, name: &str, secret: &Path) -> WorkerChild {
        WorkerChild::start_with(dir, name, secret, None)
    }

    /// The same as [`WorkerChild::start`], the worker limited to `open_files` open files
    /// (soft and hard limit) when given.
    pub(crate) fn start_with(
        dir: &Path,
        name: &str,
        secret: &Path,
        open_files: Option<u32>,
    ) -> WorkerChild {
        let socket = dir.join(name);
        let mut command = match open_files {
            // The shell sets the limit, then becomes the worker.
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_perfopt"));
                sh
            }
            None => Command::new(env!("CARGO_BIN_EXE_perfopt")),
        };
        let mut child = command
            .arg("worker")
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--secret-file")
            .arg(secret)
            .arg("--peer-pid")
            .arg(std::process::id().to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("perfopt worker starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = Endpoint::parse(line.trim().strip_prefix("listening ").unwrap())
            .unwrap_or_else(|_| panic!("the worker did not start: {line:?}"));
        WorkerChild { child, endpoint }
    }

    /// Sends signal `sig` (a name such as `STOP` or `KILL`).
    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }
}

impl Drop for WorkerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a child process if the test ends before it stops it.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `perfopt serve` and the address it listens on.
pub(crate) struct Serve {
    pub(crate) process: Killed,
    pub(crate) addr: std::net::SocketAddr,
}

impl Serve {
    /// `perfopt serve --listen 127.0.0.1:0 --workers 1 --demo-load --data-dir DATA` with
    /// `extra` arguments and its stderr to `stderr`, once it says where it listens.
    pub(crate) fn demo(data: &Path, extra: &[&str], stderr: Stdio) -> Serve {
        let mut process = Killed(
            Command::new(env!("CARGO_BIN_EXE_perfopt"))
                .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
                .arg("--demo-load")
                .args(extra)
                .arg("--data-dir")
                .arg(data)
                .stdout(Stdio::piped())
                .stderr(stderr)
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        BufReader::new(process.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening http://")
            .unwrap_or_else(|| panic!("first line {line:?}"))
            .parse()
            .unwrap();
        Serve { process, addr }
    }

    /// Sends SIGTERM and waits (at most a minute) for a successful exit.
    pub(crate) fn stop(&mut self) {
        let child = &mut self.process.0;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let code = loop {
            if let Some(code) = child.try_wait().unwrap() {
                break code;
            }
            assert!(Instant::now() < deadline, "no exit 60 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(code.success(), "{code}");
    }
}
