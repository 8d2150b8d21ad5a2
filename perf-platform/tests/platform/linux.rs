//! Linux-only behaviour beyond the shared suite: the sweep of dead owners' segments, a full
//! tmpfs, names and links from outside, memfd specifics, huge pages, probe and detection.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use perf_core::seams::{PlatformShm, ResourceProbe, SegmentId, ShmError, ShmSegment, ShmView};
use perf_platform::{
    HugePages, MemfdShm, PageBacking, ProbeConfig, ProcProbe, ShmOptions, SweepReport, ThpMode,
    detect,
};

use crate::child::{ReadOutcome, hold_in_child, named, named_path, read_in_child};
use crate::conformance::{ChildBackend, euid, pattern};

/// A prefix no other test (or run) uses.
fn fresh_prefix(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("pt_{what}_{}_{nanos}", std::process::id())
}

fn file_names(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect();
    names.sort();
    names
}

/// Removes every file with a prefix when dropped, so that a failing test leaves nothing behind.
struct RemoveByPrefix<'a> {
    dir: &'a Path,
    prefix: &'a str,
}

impl Drop for RemoveByPrefix<'_> {
    fn drop(&mut self) {
        for name in file_names(self.dir, self.prefix) {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
    }
}

#[test]
fn the_sweep_removes_segments_of_dead_owners_only() {
    let dir = Path::new("/dev/shm");
    let prefix = fresh_prefix("sweep");
    let _cleanup = RemoveByPrefix {
        dir,
        prefix: &prefix,
    };
    let shm = named(dir, &prefix);
    let live = shm.create_segment(4096).unwrap();

    // A host killed while holding a segment leaves it behind.
    let mut holder = hold_in_child(ChildBackend::Named, dir, &prefix, 8192);
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
    let orphan = named_path(dir, &holder.id);
    assert!(
        orphan.exists(),
        "the killed owner's segment is gone already"
    );

    // Our own pid with another start time: a reused pid, so its owner is dead too.
    let me = std::process::id();
    let reused = dir.join(format!("{prefix}-0-{me}-1-{}", "ab".repeat(16)));
    std::fs::write(&reused, b"x").unwrap();
    // A name it cannot read is never judged.
    let odd = dir.join(format!("{prefix}-not-a-segment"));
    std::fs::write(&odd, b"x").unwrap();
    assert_eq!(file_names(dir, &prefix).len(), 4);

    let report = shm.sweep_stale().unwrap();
    assert_eq!(
        report,
        SweepReport {
            found: 4,
            removed: 2,
            kept: 2
        }
    );
    assert!(!orphan.exists() && !reused.exists());
    assert!(named_path(dir, live.id()).exists() && odd.exists());

    let again = shm.sweep_stale().unwrap();
    assert_eq!((again.found, again.removed, again.kept), (2, 0, 2));
    std::fs::remove_file(odd).unwrap();
    drop(live);
    assert!(
        file_names(dir, &prefix).is_empty(),
        "a dropped segment kept its name"
    );
}

#[test]
fn a_memfd_segment_dies_with_its_owner() {
    let mut holder = hold_in_child(ChildBackend::Memfd, Path::new("/dev/shm"), "", 4096);
    match read_in_child(ChildBackend::Memfd, Path::new("/dev/shm"), &holder.id, 4096) {
        ReadOutcome::Read { len, .. } => assert_eq!(len, 4096),
        refused => panic!("a live owner's segment was refused: {refused:?}"),
    }
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
    let err = MemfdShm::default().open(&holder.id, 4096).err().unwrap();
    assert!(matches!(err, ShmError::NotFound(_)), "{err}");
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    /// Mounts one with these options, or says why it cannot (only root may mount).
    fn mount(options: &str) -> Result<SmallTmpfs, String> {
        if euid() != 0 {
            return Err("not root".to_owned());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("mount exited with {status}"));
        }
        Ok(SmallTmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_tmpfs_is_an_error_not_a_fault() {
    let tmpfs = match SmallTmpfs::mount("size=1m,mode=0700") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("no small tmpfs ({why}): only the absurd-size case runs");
            let shm = named(Path::new("/dev/shm"), "perfopt_test");
            assert_eq!(
                shm.create_segment(1 << 50).unwrap_err(),
                ShmError::NoSpace(1 << 50)
            );
            return;
        }
    };
    let shm = named(tmpfs.path(), "full");
    assert_eq!(
        shm.create_segment(2 << 20).unwrap_err(),
        ShmError::NoSpace(2 << 20)
    );
    assert!(
        file_names(tmpfs.path(), "full").is_empty(),
        "a failed create left a file"
    );
    let mut first = shm.create_segment(600 << 10).unwrap();
    first.as_mut_slice().fill(1);
    assert_eq!(
        shm.create_segment(600 << 10).unwrap_err(),
        ShmError::NoSpace(600 << 10)
    );
    assert_eq!(file_names(tmpfs.path(), "full").len(), 1);
    let probe = ProcProbe::with_config(ProbeConfig {
        shm_dir: tmpfs.path().to_owned(),
        ..ProbeConfig::default()
    });
    assert!(probe.sample().shm_free <= 424 << 10, "{:?}", probe.sample());
    drop(first);
    assert!(
        shm.create_segment(1 << 20).is_ok(),
        "space was not given back"
    );
}

/// Kilobytes of the mappings of `path` that huge pages back, from `/proc/self/smaps`.
fn huge_mapped_kb(path: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let path = path.to_string_lossy();
    let mut inside = false;
    let mut kb = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            inside = line.ends_with(path.as_ref());
        } else if inside && line.starts_with("ShmemPmdMapped:") {
            kb += line
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    kb
}

#[test]
fn a_tmpfs_with_huge_advise_gives_huge_pages() {
    let tmpfs = match SmallTmpfs::mount("size=8m,huge=advise,mode=0700") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("no tmpfs with huge=advise ({why}): skipped");
            return;
        }
    };
    let shm = named(tmpfs.path(), "huge");
    let len = 4 << 20;
    let mut segment = shm.create_segment(len).unwrap();
    assert_eq!(segment.info().backing, PageBacking::TransparentHuge);
    assert_eq!(segment.info().page_size, 2 << 20);
    let bytes = pattern(len, 5);
    segment.as_mut_slice().copy_from_slice(&bytes);
    let path = named_path(tmpfs.path(), segment.id());
    assert!(
        huge_mapped_kb(&path) >= 2048,
        "no huge page backs {}",
        path.display()
    );
    assert!(shm.open_view(segment.id(), len).unwrap().as_slice() == bytes.as_slice());
    // Past the mount's size, populating fails: an error, not a fault.
    assert_eq!(
        shm.create_segment(6 << 20).unwrap_err(),
        ShmError::NoSpace(6 << 20)
    );
    assert_eq!(
        file_names(tmpfs.path(), "huge").len(),
        1,
        "a failed create left a file"
    );
    // Small segments keep base pages.
    assert!(!shm.create_segment(64 << 10).unwrap().huge_pages());
}

#[test]
fn memory_bounds_even_an_unbounded_memfd_backend() {
    let shm = MemfdShm::new(ShmOptions {
        max_segment_len: usize::MAX,
        huge_pages: HugePages::Auto,
    });
    for len in [1usize << 46, 1 << 50] {
        assert_eq!(
            shm.create_segment(len).unwrap_err(),
            ShmError::NoSpace(len as u64)
        );
    }
}

#[test]
fn named_segments_are_where_shm_open_looks() {
    let prefix = fresh_prefix("names");
    let shm = named(Path::new("/dev/shm"), &prefix);
    let segment = shm.create_segment(4096).unwrap();
    let SegmentId::Named(name) = segment.id() else {
        panic!("expected a named id");
    };
    let parts: Vec<&str> = name.trim_start_matches('/').split('-').collect();
    assert_eq!(parts.len(), 5, "{name}");
    assert_eq!(parts[0], prefix);
    assert_eq!(parts[2], std::process::id().to_string());
    assert_eq!(parts[4].len(), 32);
    assert!(Path::new("/dev/shm").join(&name[1..]).exists());
}

#[test]
fn names_and_links_from_outside_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shm = named(dir.path(), "links");
    let segment = shm.create_segment(4096).unwrap();
    let link = dir.path().join("links-0-0-0-link");
    std::os::unix::fs::symlink(named_path(dir.path(), segment.id()), &link).unwrap();
    let err = shm
        .open_view(&SegmentId::Named("/links-0-0-0-link".to_owned()), 4096)
        .unwrap_err();
    assert!(
        matches!(&err, ShmError::Denied(_, why) if why.contains("symbolic link")),
        "{err}"
    );
    for bad in ["/../etc/passwd", "/a/b", "etc", "/"] {
        let err = shm
            .open_view(&SegmentId::Named(bad.to_owned()), 1)
            .unwrap_err();
        assert!(matches!(err, ShmError::Denied(..)), "{bad}: {err}");
        assert!(
            shm.unlink(&SegmentId::Named(bad.to_owned())).is_err(),
            "{bad}"
        );
    }
    // The wrong kind of id is refused by each backend.
    assert!(matches!(
        MemfdShm::default().open(segment.id(), 1),
        Err(ShmError::Denied(..))
    ));
    let memfd_id = SegmentId::Memfd { pid: 1, fd: 3 };
    assert!(matches!(shm.open(&memfd_id, 1), Err(ShmError::Denied(..))));
}

#[test]
fn memfd_open_refuses_descriptors_that_are_not_its_segments() {
    use std::os::unix::fs::PermissionsExt;
    let shm = MemfdShm::default();
    let me = std::process::id();
    let file = tempfile::tempfile().unwrap();
    file.set_len(4096).unwrap();
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .unwrap();
    let id = SegmentId::Memfd {
        pid: me,
        fd: file.as_raw_fd(),
    };
    let err = shm.open(&id, 4096).err().unwrap();
    assert!(
        matches!(&err, ShmError::Denied(_, why) if why.contains("cannot be sealed")),
        "{err}"
    );
    // A pipe with no writer would block a plain open; this one must return at once.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(writer);
    let id = SegmentId::Memfd {
        pid: me,
        fd: reader.as_raw_fd(),
    };
    let err = shm.open(&id, 1).err().unwrap();
    assert!(
        matches!(&err, ShmError::Denied(_, why) if why.contains("regular file")),
        "{err}"
    );
}

#[test]
fn huge_pages_follow_what_the_kernel_offers() {
    let info = detect();
    let shm = MemfdShm::default();
    let len = 4 << 20;
    let mut segment = shm.create_segment(len).unwrap();
    let offered = matches!(
        info.thp_shmem,
        ThpMode::Always | ThpMode::WithinSize | ThpMode::Advise | ThpMode::Force
    ) || info.hugetlb_pages_free >= 2;
    assert_eq!(
        segment.huge_pages(),
        offered,
        "{:?} with {info:?}",
        segment.info()
    );
    if !offered {
        assert_eq!(segment.info().backing, PageBacking::Small);
        assert_eq!(segment.info().page_size, info.page_size);
    }
    let bytes = pattern(len, 9);
    segment.as_mut_slice().copy_from_slice(&bytes);
    assert!(shm.open(segment.id(), len).unwrap().as_slice() == bytes.as_slice());
    // Switched off, or too small: base pages.
    let off = MemfdShm::new(ShmOptions {
        huge_pages: HugePages::Off,
        ..ShmOptions::default()
    });
    assert_eq!(
        off.create_segment(len).unwrap().info().backing,
        PageBacking::Small
    );
    assert!(!shm.create_segment((2 << 20) - 1).unwrap().huge_pages());
}

#[test]
fn detection_is_serializable_and_names_the_default_backend() {
    let info = detect();
    let json = serde_json::to_value(&info).unwrap();
    for key in [
        "os",
        "kernel_release",
        "page_size",
        "thp_shmem",
        "hugetlb_pages_free",
        "io_uring",
        "memfd",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    assert_eq!(json["os"], "linux");
    assert_eq!(perf_platform::default_shm().name(), "memfd");
    assert_eq!(info.default_shm, "memfd");
}
