//! A second process for the tests: this test binary run again with `--exact
//! child_process_entry`, told by environment variables what to do, answering on stdout.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use perf_core::seams::{PlatformShm, SegmentId};
use xxhash_rust::xxh3::xxh3_64;

use crate::conformance::{ChildBackend, kind};

/// Set in a child: what it does (`read` or `create_and_hold`).
const ROLE: &str = "PERFOPT_PLATFORM_CHILD";
const BACKEND: &str = "PERFOPT_CHILD_BACKEND";
const DIR: &str = "PERFOPT_CHILD_DIR";
const PREFIX: &str = "PERFOPT_CHILD_PREFIX";
const ID: &str = "PERFOPT_CHILD_ID";
const LEN: &str = "PERFOPT_CHILD_LEN";
/// Marks the child's answer among the test harness's own output.
const MARK: &str = "PERFOPT-CHILD:";

/// What a reading child saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// It mapped `len` bytes whose xxh3 is `hash`; `maps` mappings of the segment existed then.
    Read { len: usize, hash: u64, maps: usize },
    /// `open` failed with an error of this kind; `maps` mappings of the segment existed after.
    Refused { kind: String, maps: usize },
}

/// Runs in the child process; returns at once in a normal test run.
pub(crate) fn entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let answer = match role.as_str() {
        "read" => read_role(),
        "create_and_hold" => hold_role(),
        other => format!("unknown role {other}"),
    };
    println!("{MARK} {answer}");
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn backend_from_env() -> Box<dyn PlatformShm> {
    match env(BACKEND).as_str() {
        "memfd" => Box::new(perf_platform::MemfdShm::default()),
        _ => {
            // Opening does not depend on the prefix; creating does.
            let prefix = std::env::var(PREFIX).unwrap_or_else(|_| "perfopt".to_owned());
            Box::new(named(Path::new(&env(DIR)), &prefix))
        }
    }
}

/// A named backend on `dir` with `prefix`.
pub(crate) fn named(dir: &Path, prefix: &str) -> perf_platform::NamedShm {
    perf_platform::NamedShm::new(perf_platform::NamedShmConfig {
        dir: dir.to_owned(),
        prefix: prefix.to_owned(),
        ..perf_platform::NamedShmConfig::default()
    })
    .unwrap()
}

fn read_role() -> String {
    let id: SegmentId = serde_json::from_str(&env(ID)).unwrap();
    let len: usize = env(LEN).parse().unwrap();
    let needle = map_needle(&id);
    match backend_from_env().open(&id, len) {
        Ok(view) => {
            let maps = count_maps(&needle);
            format!(
                "ok {} {:016x} {maps}",
                view.as_slice().len(),
                xxh3_64(view.as_slice())
            )
        }
        Err(e) => format!("err {} {}", kind(&e), count_maps(&needle)),
    }
}

fn hold_role() -> String {
    let backend = backend_from_env();
    let segment = backend.create(env(LEN).parse().unwrap()).unwrap();
    println!("{MARK} {}", serde_json::to_string(segment.id()).unwrap());
    // Hold the segment until the parent closes stdin or kills us.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(segment);
    "released".to_owned()
}

/// The text that names the segment in `/proc/self/maps`.
fn map_needle(id: &SegmentId) -> String {
    match id {
        SegmentId::Memfd { pid, fd } => std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .map(|p| {
                p.to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_owned()
            })
            .unwrap_or_else(|_| "no such memfd".to_owned()),
        SegmentId::Named(name) => format!("{}{name}", env(DIR)),
    }
}

/// Mappings of this process whose line mentions `needle`.
fn count_maps(needle: &str) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

fn command(role: &str, backend: ChildBackend, dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, role)
    .env(
        BACKEND,
        match backend {
            ChildBackend::Memfd => "memfd",
            ChildBackend::Named => "named",
        },
    )
    .env(DIR, dir)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    cmd
}

/// The child's answer line in `text`.
fn answer(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.split_once(MARK).map(|(_, rest)| rest.trim()))
}

/// Runs a child that opens `id` with `len` bytes and reports what it read.
pub(crate) fn read_in_child(
    backend: ChildBackend,
    dir: &Path,
    id: &SegmentId,
    len: usize,
) -> ReadOutcome {
    let output = command("read", backend, dir)
        .env(ID, serde_json::to_string(id).unwrap())
        .env(LEN, len.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}");
    let line = answer(&stdout).unwrap_or_else(|| panic!("child gave no answer: {stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        ["ok", len, hash, maps] => ReadOutcome::Read {
            len: len.parse().unwrap(),
            hash: u64::from_str_radix(hash, 16).unwrap(),
            maps: maps.parse().unwrap(),
        },
        ["err", kind, maps] => ReadOutcome::Refused {
            kind: kind.to_owned(),
            maps: maps.parse().unwrap(),
        },
        _ => panic!("unexpected child answer {line:?}"),
    }
}

/// A child holding a segment it created, until killed (at the latest when dropped).
pub(crate) struct Holder {
    pub(crate) child: Child,
    pub(crate) id: SegmentId,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a child that creates a `len`-byte segment (named ones in `dir` with `prefix`) and
/// holds it until killed.
pub(crate) fn hold_in_child(backend: ChildBackend, dir: &Path, prefix: &str, len: usize) -> Holder {
    let mut child = command("create_and_hold", backend, dir)
        .env(PREFIX, prefix)
        .env(LEN, len.to_string())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let id = loop {
        let line = lines
            .next()
            .expect("child ended before naming its segment")
            .unwrap();
        if let Some(json) = answer(&line) {
            break serde_json::from_str(json).unwrap();
        }
    };
    Holder { child, id }
}

/// Where a named segment `id` lives in `dir`.
pub(crate) fn named_path(dir: &Path, id: &SegmentId) -> PathBuf {
    let SegmentId::Named(name) = id else {
        panic!("expected a named id, got {id}");
    };
    dir.join(name.trim_start_matches('/'))
}
