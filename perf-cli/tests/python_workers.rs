//! `perfopt run --worker-cmd` against the Python worker package (python/perfopt-worker), from
//! the venv the project's script makes: the run's transfers reach Python processes by both
//! methods and none fails; a worker command that is not one is refused with what was wrong.

mod support;

#[path = "../../tests/e2e/python_venv.rs"]
mod python_venv;

use serde_json::Value;

use support::{perfopt, stderr};

#[test]
fn run_drives_python_workers_by_both_methods() {
    let python = python_venv::venv_python();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.json");
    let worker = format!("'{}' -m perfopt_worker", python.display());
    let o = perfopt(&[
        "run",
        "--duration",
        "2s",
        "--workers",
        "2",
        "--worker-cmd",
        &worker,
        "--learning",
        "off",
        "--data-dir",
        dir.path().join("store").to_str().unwrap(),
        "--json",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(r["transfers"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["workers_restarted"], 0, "{r}");
    for method in ["grpc", "zero_copy"] {
        assert!(
            r["methods"][method]["transfers"].as_u64().unwrap_or(0) > 0,
            "no {method} transfer reached the Python workers: {r}"
        );
    }
}

#[test]
fn a_worker_command_that_is_not_one_is_refused() {
    let unbalanced = perfopt(&["run", "--duration", "1s", "--worker-cmd", "python3 'oops"]);
    assert_eq!(unbalanced.status.code(), Some(2), "{}", stderr(&unbalanced));
    assert!(
        stderr(&unbalanced).contains("--worker-cmd"),
        "{}",
        stderr(&unbalanced)
    );
    let empty = perfopt(&["run", "--duration", "1s", "--worker-cmd", "  "]);
    assert_eq!(empty.status.code(), Some(2), "{}", stderr(&empty));
    assert!(stderr(&empty).contains("empty"), "{}", stderr(&empty));
    // A program that exits instead of serving: the run fails and says which program.
    let dir = tempfile::tempdir().unwrap();
    let gone = perfopt(&[
        "run",
        "--duration",
        "1s",
        "--workers",
        "1",
        "--data-dir",
        dir.path().join("store").to_str().unwrap(),
        "--worker-cmd",
        "python3 -c 'import sys; sys.exit(3)'",
    ]);
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("python3"), "{}", stderr(&gone));
}
