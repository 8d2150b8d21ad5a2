//! Owners of named segments and run directories: recorded in the name when one is made, and
//! checked at start-up so that the segments of dead processes are unlinked.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use perf_core::seams::ShmError;
use rustix::fs::{AtFlags, FileType};
use serde::Serialize;

use crate::linux::named::NamedShm;
use crate::linux::proc::{pid_namespace, process_start_time};
use crate::linux::sys::os_error;

/// The most directory entries one sweep examines; the rest wait for the next sweep.
pub(crate) const MAX_SWEEP_ENTRIES: usize = 1 << 16;

/// The process that made a named segment, as recorded in its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OwnerTag {
    /// The inode of its pid namespace, 0 if unknown.
    pub(crate) pid_ns: u64,
    /// Its pid in that namespace.
    pub(crate) pid: u32,
    /// Its start time in clock ticks since boot, 0 if unknown.
    pub(crate) start_time: u64,
}

impl OwnerTag {
    /// This process.
    pub(crate) fn current() -> OwnerTag {
        let pid = std::process::id();
        OwnerTag {
            pid_ns: pid_namespace(),
            pid,
            start_time: process_start_time(pid).ok().flatten().unwrap_or(0),
        }
    }

    /// The file name of a segment of this owner: `<prefix>-<pid ns>-<pid>-<start>-<random>`.
    pub(crate) fn file_name(&self, prefix: &str, random_hex: &str) -> String {
        format!(
            "{prefix}-{}-{}-{}-{random_hex}",
            self.pid_ns, self.pid, self.start_time
        )
    }

    /// The owner recorded in `file_name`, if it is a segment name with `prefix`.
    pub(crate) fn parse(file_name: &str, prefix: &str) -> Option<OwnerTag> {
        let rest = file_name.strip_prefix(prefix)?.strip_prefix('-')?;
        let mut parts = rest.split('-');
        let pid_ns = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let start_time = parts.next()?.parse().ok()?;
        let random = parts.next()?;
        let well_formed = parts.next().is_none()
            && random.len() == 32
            && random.bytes().all(|b| b.is_ascii_hexdigit());
        well_formed.then_some(OwnerTag {
            pid_ns,
            pid,
            start_time,
        })
    }

    /// Whether the owner is certainly gone, seen from a process in pid namespace `our_ns`. An
    /// owner in another pid namespace, or one whose `/proc` entry cannot be read, is not judged.
    pub(crate) fn is_dead(&self, our_ns: u64) -> bool {
        if self.pid_ns != 0 && our_ns != 0 && self.pid_ns != our_ns {
            return false;
        }
        match process_start_time(self.pid) {
            Ok(None) => true,
            // The pid lives, but a different process holds it when the start times differ.
            Ok(Some(start)) => self.start_time != 0 && start != self.start_time,
            Err(_) => false,
        }
    }
}

/// What one sweep of the segment directory, or of the parent of run directories, found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Segments with our prefix, or entries named as run directories are.
    pub found: usize,
    /// Those whose owner was dead, now removed.
    pub removed: usize,
    /// Those left in place: owner alive or not judged, another user's, not a segment or
    /// directory, or not removable.
    pub kept: usize,
}

impl NamedShm {
    /// Unlinks the segments with this backend's prefix whose owner process is dead (its pid is
    /// gone, or now belongs to a process with another start time), and reports the counts.
    /// Segments of other users, of owners in another pid namespace and with names it cannot
    /// read are kept. Examines at most 65,536 directory entries; call it at start-up.
    pub fn sweep_stale(&self) -> Result<SweepReport, ShmError> {
        let dir = &self.config().dir;
        let entries = std::fs::read_dir(dir)
            .map_err(|e| os_error(&format!("listing {}", dir.display()), e))?;
        let prefix = self.config().prefix.as_str();
        let our_ns = pid_namespace();
        let euid = rustix::process::geteuid().as_raw();
        let mut report = SweepReport::default();
        for entry in entries.take(MAX_SWEEP_ENTRIES) {
            let Ok(entry) = entry else {
                continue;
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if !name.starts_with(prefix) || !name[prefix.len()..].starts_with('-') {
                continue;
            }
            report.found += 1;
            let dead = OwnerTag::parse(name, prefix).is_some_and(|o| o.is_dead(our_ns));
            if dead && self.unlink_if_ours(OsStr::from_bytes(name.as_bytes()), euid) {
                report.removed += 1;
            } else {
                report.kept += 1;
            }
        }
        Ok(report)
    }

    /// Unlinks `name` if it is a regular file of user `euid`; whether it was removed.
    fn unlink_if_ours(&self, name: &OsStr, euid: u32) -> bool {
        let Ok(stat) = rustix::fs::statat(self.dir_fd(), name, AtFlags::SYMLINK_NOFOLLOW) else {
            return false;
        };
        let regular = FileType::from_raw_mode(stat.st_mode as _) == FileType::RegularFile;
        regular
            && stat.st_uid == euid
            && rustix::fs::unlinkat(self.dir_fd(), name, AtFlags::empty()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn names_round_trip_their_owner() {
        let owner = OwnerTag {
            pid_ns: 4_026_531_836,
            pid: 4242,
            start_time: 987_654,
        };
        let name = owner.file_name("perfopt", HEX);
        assert_eq!(name, format!("perfopt-4026531836-4242-987654-{HEX}"));
        assert_eq!(OwnerTag::parse(&name, "perfopt"), Some(owner));
    }

    #[test]
    fn other_names_are_not_read_as_ours() {
        for name in [
            format!("perfopt2-1-2-3-{HEX}"),
            format!("perfopt-1-2-{HEX}"),
            format!("perfopt-1-2-3-{HEX}-extra"),
            "perfopt-1-2-3-shorthex".to_owned(),
            format!("perfopt-x-2-3-{HEX}"),
            format!("other-1-2-3-{HEX}"),
        ] {
            assert_eq!(OwnerTag::parse(&name, "perfopt"), None, "{name}");
        }
    }

    #[test]
    fn we_are_alive_and_an_impossible_pid_is_dead() {
        let me = OwnerTag::current();
        assert!(me.start_time > 0);
        assert!(!me.is_dead(pid_namespace()));
        let reused = OwnerTag {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(reused.is_dead(pid_namespace()), "a reused pid looked alive");
        let gone = OwnerTag {
            pid: u32::MAX - 1,
            ..me
        };
        assert!(gone.is_dead(pid_namespace()));
        let elsewhere = OwnerTag {
            pid_ns: me.pid_ns.wrapping_add(1),
            ..gone
        };
        assert!(
            !elsewhere.is_dead(me.pid_ns.max(1)),
            "another namespace was judged"
        );
    }
}
