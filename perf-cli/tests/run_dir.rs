//! A host's private run directory with real processes: a SIGKILLed host leaves it behind, and
//! the next `perfopt run` removes it while the directory of a live process stays.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use perfopt::platform::RunDir;

mod support;

/// The run directories in `parent` whose name records owner `pid`
/// (`perfopt-run-<pid ns>-<pid>-<start time>-<random hex>`).
fn run_dirs_of(parent: &Path, pid: u32) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(parent).expect("the temporary directory is readable");
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let parts: Vec<&str> = name.split('-').collect();
            parts.len() == 6 && parts[..2] == ["perfopt", "run"] && parts[3] == pid.to_string()
        })
        .map(|e| e.path())
        .collect()
}

/// A child process killed and reaped when dropped, so that a failed test leaves no host running.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `perfopt run` with `args`, its temporary directory `tmp` and data directory `data`; its
/// standard output and error are piped when `capture`, else dropped.
fn perfopt_run(args: &[&str], tmp: &Path, data: &Path, capture: bool) -> Child {
    let stdio = || {
        if capture {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    Command::new(env!("CARGO_BIN_EXE_perfopt"))
        .arg("run")
        .args(args)
        .env("TMPDIR", tmp)
        .env("PERFOPT_DATA_DIR", data)
        .stdout(stdio())
        .stderr(stdio())
        .spawn()
        .expect("perfopt run starts")
}

#[test]
fn a_killed_hosts_run_dir_is_removed_at_the_next_start_and_a_live_ones_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let live = RunDir::new_in(tmp.path()).unwrap();

    let mut host = Host(perfopt_run(
        &["--duration", "30s", "--workers", "1"],
        tmp.path(),
        data.path(),
        false,
    ));
    let pid = host.0.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let dir = loop {
        if let Some(dir) = run_dirs_of(tmp.path(), pid)
            .into_iter()
            .find(|d| d.join("secret").is_file())
        {
            break dir;
        }
        assert!(
            Instant::now() < deadline,
            "host {pid} made no run directory with a secret in {} within 30 s",
            tmp.path().display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    host.0.kill().unwrap();
    host.0.wait().unwrap();
    assert!(
        dir.join("secret").is_file(),
        "a killed host leaves its run directory and secret behind"
    );

    let next = perfopt_run(
        &["--duration", "1s", "--workers", "1", "--json", "-"],
        tmp.path(),
        data.path(),
        true,
    );
    let next_pid = next.id();
    let report = support::run_report(next);
    assert!(report["swept_run_dirs"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        !dir.exists(),
        "{} of the killed host is still there",
        dir.display()
    );
    assert!(
        live.path().is_dir(),
        "{} of a live process was removed",
        live.path().display()
    );
    assert!(
        run_dirs_of(tmp.path(), next_pid).is_empty(),
        "the second host left its own run directory behind"
    );
}

#[test]
fn a_temporary_directory_too_long_for_a_socket_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let long = tmp.path().join("d".repeat(60));
    std::fs::create_dir(&long).unwrap();
    let data = tempfile::tempdir().unwrap();
    let host = perfopt_run(
        &["--duration", "1s", "--workers", "1"],
        &long,
        data.path(),
        true,
    );
    let pid = host.id();
    let out = host.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("set TMPDIR to a shorter path")
            && stderr.contains(&*long.to_string_lossy()),
        "{stderr}"
    );
    assert!(
        run_dirs_of(&long, pid).is_empty(),
        "the run directory was left behind"
    );
}
