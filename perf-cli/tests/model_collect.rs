//! `perfopt model collect` as a user runs it: real worker and burner processes, the dataset it
//! writes, the processes it leaves behind (none), and bad arguments.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use perfopt::learn::{PairedDataset, Source};

/// Runs `perfopt` with `marker` in its environment, which every process it starts inherits.
fn perfopt(args: &[&str], marker: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perfopt"))
        .args(args)
        .env("PERFOPT_TEST_MARKER", marker)
        .output()
        .expect("the perfopt binary runs")
}

/// Processes alive now whose environment holds `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let wanted = format!("PERFOPT_TEST_MARKER={marker}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        let is_pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        let Ok(environ) = std::fs::read(path.join("environ")) else {
            continue;
        };
        if environ
            .split(|&b| b == 0)
            .any(|var| var == wanted.as_bytes())
        {
            let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

/// Held by tests that load the CPU, so that one's burners do not pass for another's idle machine.
static CPU: Mutex<()> = Mutex::new(());

fn marker(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

#[test]
fn a_small_collection_writes_paired_rows_under_both_loads_and_leaves_no_process() {
    let _cpu = CPU.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("paired.csv");
    let marker = marker("collect");
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfopt"))
        .args([
            "model",
            "collect",
            "--out",
            out.to_str().unwrap(),
            "--sizes",
            "4KiB,256KiB",
            "--repeats",
            "2",
            "--load",
            "both",
            "--burners",
            "2",
        ])
        .env("PERFOPT_TEST_MARKER", &marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the perfopt binary runs");
    // The burners are there while it measures: as many as asked for, at most.
    let mut most_burners = 0;
    while child.try_wait().unwrap().is_none() {
        let burners = processes_with(&marker)
            .iter()
            .filter(|cmd| cmd.contains(" burn "))
            .count();
        most_burners = most_burners.max(burners);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(most_burners, 2);
    let stdout = String::from_utf8(o.stdout).unwrap();
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(o.status.success(), "{stderr}");
    // Neither the worker nor a burner outlives the command.
    assert_eq!(processes_with(&marker), Vec::<String>::new());

    let text = std::fs::read_to_string(&out).unwrap();
    let (dataset, dropped) = PairedDataset::from_csv(&text).unwrap();
    assert_eq!(dropped, vec![]);
    // 2 sizes x 2 repeats x 2 load conditions, in the order measured: no load first.
    let rows = &dataset.samples;
    assert_eq!(rows.len(), 8, "{text}");
    for s in rows {
        assert!(s.grpc_us > 0.0 && s.zero_copy_us > 0.0, "{s:?}");
        assert_eq!(s.source, Source::Bench);
        assert!([4 << 10, 256 << 10].contains(&s.size), "{s:?}");
    }
    assert!(rows.windows(2).all(|w| w[0].at <= w[1].at));
    for half in rows.chunks(4) {
        for size in [4 << 10, 256 << 10] {
            assert_eq!(half.iter().filter(|s| s.size == size).count(), 2);
        }
    }
    let mean_cpu = |half: &[perfopt::learn::PairedSample]| {
        half.iter()
            .map(|s| s.conditions.cpu_utilization)
            .sum::<f64>()
            / half.len() as f64
    };
    let (quiet, loaded) = (mean_cpu(&rows[..4]), mean_cpu(&rows[4..]));
    assert!(loaded > 0.9, "cpu load {loaded}\n{text}");
    // Other work can keep every core busy already (a compiler on a 2-CPU machine); then no
    // probe tells the conditions apart, and the burners' presence above is the evidence.
    assert!(
        loaded > quiet || quiet > 0.99,
        "cpu load {loaded} vs none {quiet}\n{text}"
    );

    assert!(stdout.contains("8 rows written to"), "{stdout}");
    assert!(stdout.contains("0 pair(s) skipped"), "{stdout}");
    assert!(
        stdout.contains("\nnone ") && stdout.contains("\ncpu "),
        "{stdout}"
    );
}

#[test]
fn bad_arguments_exit_2_naming_the_flag_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("paired.csv");
    let out_arg = out.to_str().unwrap();
    let missing = Path::new("/nonexistent-dir/x.csv");
    for (args, flag) in [
        (vec!["--out", out_arg, "--repeats", "0"], "--repeats"),
        (vec!["--out", missing.to_str().unwrap()], "--out"),
        (vec!["--out", out_arg, "--burners", "0"], "--burners"),
        (vec!["--out", out_arg, "--sizes", "1KiB..2GiB"], "--sizes"),
    ] {
        let marker = marker("bad");
        let o = perfopt(&[&["model", "collect"][..], &args].concat(), &marker);
        let stderr = String::from_utf8(o.stderr).unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(processes_with(&marker).is_empty());
    }
    assert!(!out.exists());
    assert!(!missing.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn burn_stops_by_itself_and_refuses_a_bad_duration() {
    let _cpu = CPU.lock().unwrap_or_else(|e| e.into_inner());
    let started = std::time::Instant::now();
    let o = perfopt(&["burn", "--seconds", "1", "--threads", "2"], "burn");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let took = started.elapsed().as_secs_f64();
    assert!((0.9..10.0).contains(&took), "{took} s");
    for seconds in ["0", "86401"] {
        let o = perfopt(&["burn", "--seconds", seconds], "burn");
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("--seconds"));
    }
}
