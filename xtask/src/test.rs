//! `cargo xtask test`: sets up the external tools the test suites drive (installing the Debian
//! packages that are missing, when it may), then runs `cargo test --workspace` with those suites
//! on (`PERFOPT_EXTERNAL_TESTS=1`), so that a missing tool fails the run instead of being skipped;
//! then the quick perf gate (`cargo xtask perf --set quick`), and a bite check: the `sizes`
//! scenario again with a zero-copy delay injected, which the gate must fail.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The environment variable that turns the external suites on: with it, a suite whose tool is
/// missing fails; without it (plain `cargo test`), it says `NOT RUN` and why.
pub(crate) const EXTERNAL_TESTS: &str = "PERFOPT_EXTERNAL_TESTS";

/// Each external tool the tests run, and the Debian package that brings it.
pub(crate) const TOOLS: &[(&str, &str)] = &[
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
];

/// Whether `program` is on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file()
        })
    })
}

/// Whether this process runs as root (it may install packages).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
}

fn run(command: &mut Command, shown: &str) -> Result<()> {
    println!("==> {shown}");
    let status = command
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed, expected success, got {status}");
    }
    Ok(())
}

/// Installs the packages of the missing tools with apt-get; fails naming them when it cannot.
fn install_missing() -> Result<()> {
    let missing: Vec<(&str, &str)> = TOOLS
        .iter()
        .copied()
        .filter(|(tool, _)| !on_path(tool))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
    packages.dedup();
    let tools: Vec<&str> = missing.iter().map(|(tool, _)| *tool).collect();
    if !(is_root() && on_path("apt-get")) {
        bail!(
            "the tests need {} (Debian packages: {}), which are not installed, and this is not \
             root on a system with apt-get; install them, or run plain `cargo test --workspace`, \
             whose external suites then say NOT RUN",
            tools.join(", "),
            packages.join(" ")
        );
    }
    run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get update -q",
    )?;
    let shown = format!(
        "apt-get install -y -q --no-install-recommends {}",
        packages.join(" ")
    );
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &shown,
    )?;
    let still: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    if !still.is_empty() {
        bail!(
            "after installing {}, {} is still not on PATH",
            packages.join(" "),
            still.join(", ")
        );
    }
    Ok(())
}

/// The zero-copy delay of the bite check, in µs per transfer: large against a 1 MiB transfer
/// (tens of µs), so that a gate that still passes with it does not bite at all.
pub(crate) const BITE_DELAY_US: u64 = 3000;

/// Sets up the tools, runs the workspace's tests with the external suites on, then the quick
/// perf gate and its bite check.
pub(crate) fn run_tests(root: &Path) -> Result<()> {
    install_missing()?;
    run(
        Command::new(crate::cargo())
            .args(["test", "--workspace"])
            .env(EXTERNAL_TESTS, "1")
            .current_dir(root),
        "PERFOPT_EXTERNAL_TESTS=1 cargo test --workspace",
    )?;
    perf_gate_and_bite(root)
}

/// The quick perf gate must pass; the same gate on `sizes` with [`BITE_DELAY_US`] injected into
/// the zero-copy path must fail on a zero-copy ratio SLO.
fn perf_gate_and_bite(root: &Path) -> Result<()> {
    let runner = crate::perf::build_runner(root)?;
    perf_gate_and_bite_with(root, &runner, &root.join("target/perf"))
}

/// [`perf_gate_and_bite`] with the runner at `runner`, the reports under `out`.
fn perf_gate_and_bite_with(root: &Path, runner: &Path, out: &Path) -> Result<()> {
    let quick = crate::perf::Options {
        set: "quick".to_owned(),
        only: None,
        out: out.join("quick"),
        save_baseline: false,
        results: None,
        inject_delay_us: Some(0),
    };
    let gate = crate::perf::run_with(root, Some(runner), &quick)?;
    crate::perf::require_pass(&gate)?;
    let bite = crate::perf::Options {
        only: Some("sizes".to_owned()),
        out: out.join("bite"),
        inject_delay_us: Some(BITE_DELAY_US),
        ..quick
    };
    println!(
        "==> bite check: the gate must fail with {}={BITE_DELAY_US}",
        crate::perf::INJECT_DELAY
    );
    let gate = crate::perf::run_with(root, Some(runner), &bite)?;
    bite_verdict(&gate, &bite.out)
}

/// The bite check's decision on the gate of the slowed run.
fn bite_verdict(gate: &crate::perf::Gate, out: &Path) -> Result<()> {
    if gate.injected_delay_us != BITE_DELAY_US {
        bail!(
            "the runner saw a zero-copy delay of {} us, expected {BITE_DELAY_US}: is perf-cli's \
             `delay-injection` feature built in?",
            gate.injected_delay_us
        );
    }
    if !gate.failed_a_zero_copy_ratio() {
        bail!(
            "the perf gate did not bite: with {}={BITE_DELAY_US} every zero-copy ratio SLO of \
             `sizes` passed (report in {})",
            crate::perf::INJECT_DELAY,
            out.display()
        );
    }
    println!("bite check: the gate failed on the injected delay, as it must:");
    for failure in &gate.failures {
        println!("  {failure}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The synthetic results of the quick set, as the runner would write them.
    const FIXTURE: &str = include_str!("../tests/fixtures/results-quick.json");

    /// The fixture with `delay_us` added to every zero-copy sample (when `slow`) and recorded
    /// as the delay the runner saw.
    fn results(slow: bool, delay_us: u64) -> String {
        let mut value: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        value["injected_delay_us"] = delay_us.into();
        for scenario in value["scenarios"].as_array_mut().unwrap() {
            for series in scenario["series"].as_array_mut().unwrap() {
                if slow && series["id"].as_str().unwrap().starts_with("zero_copy@") {
                    for sample in series["samples"].as_array_mut().unwrap() {
                        *sample = (sample.as_f64().unwrap() + delay_us as f64).into();
                    }
                }
            }
        }
        value.to_string()
    }

    /// A workspace with the real SLO file and a stand-in runner that writes `healthy` or, when
    /// the delay variable is set, `delayed`, logging each call; returns (root, runner).
    #[cfg(unix)]
    fn stand_in(name: &str, delayed: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("xtask-bite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("xtask/perf")).unwrap();
        let slos = crate::workspace_root().join(crate::perf::SLOS);
        std::fs::copy(slos, root.join(crate::perf::SLOS)).unwrap();
        std::fs::write(root.join("healthy.json"), results(false, 0)).unwrap();
        std::fs::write(root.join("delayed.json"), delayed).unwrap();
        let dir = root.display();
        let var = crate::perf::INJECT_DELAY;
        let script = format!(
            "#!/bin/sh\necho \"${{{var}:-none}} $*\" >> '{dir}/calls'\nout=''\n\
             while [ $# -gt 0 ]; do [ \"$1\" = --json ] && out=\"$2\"; shift; done\n\
             if [ -n \"${{{var}}}\" ]; then cp '{dir}/delayed.json' \"$out\"; \
             else cp '{dir}/healthy.json' \"$out\"; fi\n"
        );
        let runner = root.join("perfopt");
        std::fs::write(&runner, script).unwrap();
        std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
        (root, runner)
    }

    #[cfg(unix)]
    #[test]
    fn the_bite_check_passes_when_the_delay_fails_the_gate() {
        let (root, runner) = stand_in("bites", &results(true, BITE_DELAY_US));
        let out = root.join("out");
        let outcome = perf_gate_and_bite_with(&root, &runner, &out);
        let calls = std::fs::read_to_string(root.join("calls")).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        outcome.unwrap();
        let calls: Vec<&str> = calls.lines().collect();
        assert_eq!(
            calls,
            [
                format!(
                    "none suite --scenarios xtask/perf/scenarios.toml --set quick --json {}",
                    out.join("quick/results.json").display()
                ),
                format!(
                    "3000 suite --scenarios xtask/perf/scenarios.toml --set quick --only sizes --json {}",
                    out.join("bite/results.json").display()
                ),
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_bite_check_fails_when_the_gate_passes_with_the_delay() {
        // The runner saw the delay, yet its zero-copy figures did not move.
        let (root, runner) = stand_in("blunt", &results(false, BITE_DELAY_US));
        let outcome = perf_gate_and_bite_with(&root, &runner, &root.join("out"));
        std::fs::remove_dir_all(&root).unwrap();
        let err = outcome.unwrap_err().to_string();
        assert!(err.starts_with("the perf gate did not bite"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn the_bite_check_fails_when_the_runner_saw_no_delay() {
        let (root, runner) = stand_in("unhooked", &results(false, 0));
        let outcome = perf_gate_and_bite_with(&root, &runner, &root.join("out"));
        std::fs::remove_dir_all(&root).unwrap();
        let err = outcome.unwrap_err().to_string();
        assert!(
            err.starts_with("the runner saw a zero-copy delay of 0 us, expected 3000"),
            "{err}"
        );
    }

    #[test]
    fn a_program_is_found_on_path_and_a_made_up_one_is_not() {
        assert!(on_path("sh"));
        assert!(!on_path("perfopt-no-such-program-7f3a"));
    }
}
