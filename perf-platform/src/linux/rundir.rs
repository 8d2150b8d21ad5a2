//! A host's private run directory (its secret, its workers' sockets), named after its owner so
//! that the directories of dead hosts are removed at start-up, as named segments are.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::linux::proc::pid_namespace;
use crate::linux::sweep::{MAX_SWEEP_ENTRIES, OwnerTag, SweepReport};
use crate::names::random_hex128;

/// The prefix of every run directory's name.
const RUN_DIR_PREFIX: &str = "perfopt-run";
/// How many fresh names are tried when one is taken.
const CREATE_ATTEMPTS: usize = 8;

/// A private directory of this process, `<parent>/perfopt-run-<pid ns>-<pid>-<start
/// time>-<128 random bits in hex>`, mode 0700; removed with everything in it when dropped. When
/// the process dies without dropping it, [`sweep_stale_run_dirs`] removes it at the next
/// start-up of any process that sweeps the same parent.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// A fresh run directory in the system's temporary directory (`$TMPDIR`, else `/tmp`).
    pub fn new() -> io::Result<RunDir> {
        RunDir::new_in(&std::env::temp_dir())
    }

    /// A fresh run directory in `parent`.
    pub fn new_in(parent: &Path) -> io::Result<RunDir> {
        let owner = OwnerTag::current();
        let mut attempt = 0;
        loop {
            let hex = random_hex128().map_err(|e| io::Error::other(e.to_string()))?;
            let path = parent.join(owner.file_name(RUN_DIR_PREFIX, &hex));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let dir = RunDir { path };
                    // The umask can only take bits away; this gives the owner back all three.
                    std::fs::set_permissions(&dir.path, PermissionsExt::from_mode(0o700))
                        .map_err(|e| context(e, "setting mode 0700 on", &dir.path))?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < CREATE_ATTEMPTS => {
                    attempt += 1;
                }
                Err(e) => return Err(context(e, "creating the run directory", &path)),
            }
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes the run directories in `parent` whose owner process is dead (its pid is gone, or now
/// belongs to a process with another start time), with everything in them, and reports the
/// counts. Only entries named exactly as [`RunDir`] names them count; of those, entries that
/// are not real directories (a symbolic link, a file), directories of other users and those of
/// owners in another pid namespace are kept. No symbolic link is followed, neither in place of
/// a run directory nor inside one. Examines at most 65,536 entries of `parent`; call it at
/// start-up.
pub fn sweep_stale_run_dirs(parent: &Path) -> io::Result<SweepReport> {
    let entries = std::fs::read_dir(parent).map_err(|e| context(e, "listing", parent))?;
    let our_ns = pid_namespace();
    let euid = rustix::process::geteuid().as_raw();
    let mut report = SweepReport::default();
    for entry in entries.take(MAX_SWEEP_ENTRIES) {
        let Ok(entry) = entry else {
            continue;
        };
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| OwnerTag::parse(n, RUN_DIR_PREFIX))
        else {
            continue;
        };
        report.found += 1;
        if owner.is_dead(our_ns) && remove_if_ours(&entry.path(), euid) {
            report.removed += 1;
        } else {
            report.kept += 1;
        }
    }
    Ok(report)
}

/// Removes `path` and everything in it if it is a real directory (not a link to one) of user
/// `euid`; whether it was removed. `remove_dir_all` follows no symbolic link inside, and
/// removes a link that replaced `path` meanwhile instead of what it points to.
fn remove_if_ours(path: &Path, euid: u32) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    meta.file_type().is_dir() && meta.uid() == euid && std::fs::remove_dir_all(path).is_ok()
}

/// `err` with what was being done and where.
fn context(err: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("{what} {} failed: {err}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef";

    /// An owner that is surely dead: this process's pid with another start time.
    fn dead_owner() -> OwnerTag {
        let me = OwnerTag::current();
        OwnerTag {
            start_time: me.start_time + 1,
            ..me
        }
    }

    /// A run directory of `owner` in `parent`, holding a secret, made by hand.
    fn planted(parent: &Path, owner: OwnerTag) -> PathBuf {
        let dir = parent.join(owner.file_name(RUN_DIR_PREFIX, HEX));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("secret"), b"0123").unwrap();
        dir
    }

    #[test]
    fn a_run_dir_is_private_named_after_us_and_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let dir = RunDir::new_in(parent.path()).unwrap();
        let meta = std::fs::symlink_metadata(dir.path()).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o777, 0o700);
        let name = dir.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            OwnerTag::parse(&name, RUN_DIR_PREFIX),
            Some(OwnerTag::current()),
            "{name}"
        );
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists(), "{} outlived its RunDir", path.display());
    }

    #[test]
    fn a_dead_owners_run_dir_is_removed_and_a_live_owners_kept() {
        let parent = tempfile::tempdir().unwrap();
        let dead = planted(parent.path(), dead_owner());
        let live = RunDir::new_in(parent.path()).unwrap();
        let report = sweep_stale_run_dirs(parent.path()).unwrap();
        assert_eq!(
            report,
            SweepReport {
                found: 2,
                removed: 1,
                kept: 1
            }
        );
        assert!(!dead.exists(), "the dead owner's directory is still there");
        assert!(live.path().is_dir(), "ours was removed");
    }

    #[test]
    fn other_names_links_and_files_with_the_pattern_name_are_kept() {
        let parent = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), b"keep").unwrap();
        let owner = dead_owner();

        // A symbolic link with a run directory's name, to a directory elsewhere.
        let link = parent
            .path()
            .join(owner.file_name(RUN_DIR_PREFIX, &HEX.replace('0', "1")));
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        // A regular file with a run directory's name.
        let file = parent
            .path()
            .join(owner.file_name(RUN_DIR_PREFIX, &HEX.replace('0', "2")));
        std::fs::write(&file, b"not a directory").unwrap();
        // Directories of a dead owner under names that are not quite a run directory's.
        let others = [
            owner.file_name("perfopt-runs", HEX),
            owner.file_name("perfopt", HEX),
            format!("{}-extra", owner.file_name(RUN_DIR_PREFIX, HEX)),
            owner.file_name(RUN_DIR_PREFIX, "0123"),
        ];
        for name in &others {
            std::fs::create_dir(parent.path().join(name)).unwrap();
        }

        let report = sweep_stale_run_dirs(parent.path()).unwrap();
        assert_eq!(
            report,
            SweepReport {
                found: 2,
                removed: 0,
                kept: 2
            }
        );
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert!(outside.path().join("precious").exists());
        assert!(file.is_file());
        for name in &others {
            assert!(parent.path().join(name).is_dir(), "{name} was removed");
        }
    }

    #[test]
    fn a_link_inside_a_dead_owners_run_dir_is_removed_not_followed() {
        let parent = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), b"keep").unwrap();
        let dead = planted(parent.path(), dead_owner());
        std::os::unix::fs::symlink(outside.path(), dead.join("worker-0.sock")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("precious"), dead.join("file")).unwrap();

        let report = sweep_stale_run_dirs(parent.path()).unwrap();
        assert_eq!(report.removed, 1, "{report:?}");
        assert!(!dead.exists());
        assert_eq!(
            std::fs::read(outside.path().join("precious")).unwrap(),
            b"keep"
        );
    }

    #[test]
    fn another_users_run_dir_is_kept() {
        let parent = tempfile::tempdir().unwrap();
        let dead = planted(parent.path(), dead_owner());
        let someone_else = rustix::process::geteuid().as_raw().wrapping_add(1);
        assert!(!remove_if_ours(&dead, someone_else));
        assert!(dead.join("secret").is_file());
    }

    #[test]
    fn an_unreadable_parent_is_an_error_naming_it() {
        let parent = tempfile::tempdir().unwrap();
        let missing = parent.path().join("missing");
        let err = sweep_stale_run_dirs(&missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }
}
