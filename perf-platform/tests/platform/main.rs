//! Integration tests of perf-platform: the conformance suite stamped out per backend, reads
//! from a second process, the sweep of dead owners' segments, running out of space, huge pages,
//! the probe (with perf-core's suite for resource probes) and detection.

#![cfg(unix)]

#[cfg(target_os = "linux")]
mod child;
mod conformance;
#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "linux")]
use std::path::PathBuf;

use conformance::{Caps, conformance_suite};
use perf_core::seams::SegmentId;

/// Not a test of its own: the entry point of the second process that some tests start (this
/// binary run again with `--exact child_process_entry`); in a normal run it returns at once.
#[cfg(target_os = "linux")]
#[test]
fn child_process_entry() {
    child::entry();
}

fn missing_named() -> SegmentId {
    SegmentId::Named(format!("/perfopt_test-0-0-0-{}", "0".repeat(32)))
}

const IN_PROCESS: Caps = Caps {
    path: None,
    named: true,
    sealable: false,
    child: None,
    dir: "",
    missing: missing_named,
    knows_owners: false,
};

conformance_suite!(
    in_process,
    perf_platform::InProcessShm::default(),
    IN_PROCESS
);

#[cfg(target_os = "linux")]
fn memfd_path(id: &SegmentId) -> PathBuf {
    let SegmentId::Memfd { fd, .. } = id else {
        panic!("expected a memfd id, got {id}");
    };
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

#[cfg(target_os = "linux")]
fn missing_memfd() -> SegmentId {
    // Descriptor numbers this high are above the open-file limit.
    SegmentId::Memfd {
        pid: std::process::id(),
        fd: 1 << 30,
    }
}

#[cfg(target_os = "linux")]
const MEMFD: Caps = Caps {
    path: Some(memfd_path),
    named: false,
    sealable: true,
    child: Some(conformance::ChildBackend::Memfd),
    dir: "/dev/shm",
    missing: missing_memfd,
    knows_owners: true,
};

#[cfg(target_os = "linux")]
conformance_suite!(memfd, perf_platform::MemfdShm::default(), MEMFD);

#[cfg(target_os = "linux")]
fn named_path(id: &SegmentId) -> PathBuf {
    child::named_path(std::path::Path::new("/dev/shm"), id)
}

#[cfg(target_os = "linux")]
const NAMED: Caps = Caps {
    path: Some(named_path),
    named: true,
    sealable: false,
    child: Some(conformance::ChildBackend::Named),
    dir: "/dev/shm",
    missing: missing_named,
    knows_owners: true,
};

#[cfg(target_os = "linux")]
conformance_suite!(
    named,
    child::named(std::path::Path::new("/dev/shm"), "perfopt_test"),
    NAMED
);

#[cfg(target_os = "linux")]
perf_core::resource_probe_conformance!(proc_probe, perf_platform::ProcProbe::new());
