//! The holder file beside a store open for writing: which process holds it and since when, so
//! that a second opener's error names it (redb's file lock says only that somebody does).
//!
//! The file is written (atomically, 0600) once the store is open and removed when it closes. It
//! is outside input to every later reader: it is read only if it is a regular file, at most
//! [`MAX_HOLDER_BYTES`] of it, its command is cleaned of control characters, and a file whose
//! process is gone (a killed writer's) is ignored.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::file::{StoreFile, inspect};
use super::now_ns;

/// What the holder file's name adds to the store file's name.
const HOLDER_SUFFIX: &str = ".holder";

/// The most bytes of a holder file that are read; a larger one is ignored.
pub const MAX_HOLDER_BYTES: u64 = 4096;

/// The most characters of a command line a holder file keeps.
const MAX_COMMAND_CHARS: usize = 256;

/// The process that holds a store open for writing, as its holder file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its command line, shortened, e.g. `perfopt run --duration 1h`.
    pub command: String,
    /// When it opened the store, nanoseconds since the epoch.
    pub since_ns: u64,
    /// When the process started, in clock ticks after boot (Linux), which tells it from a later
    /// process that got the same id.
    #[serde(default)]
    pub process_start: Option<u64>,
}

impl std::fmt::Display for Holder {
    /// `process 1234 (perfopt run) since 2026-01-02T03:04:05Z`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = UNIX_EPOCH + Duration::from_nanos(self.since_ns);
        write!(
            f,
            "process {} ({}) since {}",
            self.pid,
            self.command,
            humantime::format_rfc3339_seconds(since)
        )
    }
}

/// The holder file of the store file at `store`.
pub fn holder_file(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(HOLDER_SUFFIX);
    PathBuf::from(name)
}

/// This process's command line: the program's file name and its arguments, shortened to
/// [`MAX_COMMAND_CHARS`].
fn own_command() -> String {
    let mut args = std::env::args_os();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .unwrap_or(p.as_os_str())
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_else(|| "unknown".to_string());
    let mut line = program;
    for a in args {
        line.push(' ');
        line.push_str(&a.to_string_lossy());
    }
    clean(&line)
}

/// `text` without control characters (each becomes `?`), at most [`MAX_COMMAND_CHARS`] long.
fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_COMMAND_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > MAX_COMMAND_CHARS {
        out.push('…');
    }
    out
}

/// Reads the regular file at `path`, at most `max` bytes; `None` for anything else, a larger
/// file, or a failure.
fn read_bounded(path: &Path, max: u64) -> Option<Vec<u8>> {
    // Only a regular file is opened: opening a FIFO would wait for a writer.
    if !matches!(inspect(path), StoreFile::Regular { .. }) {
        return None;
    }
    let file = File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut out = Vec::new();
    file.take(max + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= max).then_some(out)
}

/// When process `pid` started, in clock ticks after boot, from `/proc/<pid>/stat`; `None` when
/// there is no such process (or no `/proc`).
fn process_start(pid: &str) -> Option<u64> {
    let stat = read_bounded(&Path::new("/proc").join(pid).join("stat"), 4096)?;
    let stat = String::from_utf8_lossy(&stat);
    // The command name in parentheses may hold spaces; the fields after it are plain. The
    // start time is field 22 of the line, the 20th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `holder` names still runs; `true` when this system cannot tell.
fn alive(holder: &Holder) -> bool {
    if !Path::new("/proc/self/stat").exists() {
        return true;
    }
    match process_start(&holder.pid.to_string()) {
        None => false,
        Some(start) => holder.process_start.is_none_or(|s| s == start),
    }
}

/// What the holder file of the store at `store` says, if it names a process that still runs.
pub(crate) fn read_holder(store: &Path) -> Option<Holder> {
    let bytes = read_bounded(&holder_file(store), MAX_HOLDER_BYTES)?;
    let mut holder: Holder = serde_json::from_slice(&bytes).ok()?;
    holder.command = clean(&holder.command);
    alive(&holder).then_some(holder)
}

/// The holder file of a store this process holds open for writing; removed when dropped.
#[derive(Debug)]
pub(crate) struct HolderFile {
    path: PathBuf,
    holder: Holder,
}

impl HolderFile {
    /// Writes the holder file of the store at `store`, naming this process; `None` when it
    /// cannot be written (the store works without it, a second opener's error is only less
    /// specific).
    pub(crate) fn write(store: &Path) -> Option<HolderFile> {
        let holder = Holder {
            pid: std::process::id(),
            command: own_command(),
            since_ns: now_ns(),
            process_start: process_start("self"),
        };
        let path = holder_file(store);
        let dir = path.parent()?;
        let bytes = serde_json::to_vec(&holder).ok()?;
        // A temporary file renamed into place: a reader sees a whole file or none.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).ok()?;
        tmp.write_all(&bytes).ok()?;
        tmp.persist(&path).ok()?;
        Some(HolderFile { path, holder })
    }
}

impl Drop for HolderFile {
    fn drop(&mut self) {
        // Another process's file (after ours was removed by hand) is left alone.
        let ours = read_bounded(&self.path, MAX_HOLDER_BYTES)
            .and_then(|b| serde_json::from_slice::<Holder>(&b).ok())
            .is_some_and(|h| h == self.holder);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_file_names_this_process_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("metrics.redb");
        let file = HolderFile::write(&store).unwrap();
        let read = read_holder(&store).unwrap();
        assert_eq!(read.pid, std::process::id());
        assert_eq!(read, file.holder);
        assert!(
            read.process_start.is_some(),
            "this process's start time is known on Linux"
        );
        assert!(
            read.to_string()
                .starts_with(&format!("process {} (", read.pid))
        );
        drop(file);
        assert!(!holder_file(&store).exists(), "removed when dropped");
        assert_eq!(read_holder(&store), None);
    }

    #[test]
    fn a_stale_oversized_or_hostile_holder_file_is_ignored_or_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("metrics.redb");
        let path = holder_file(&store);
        let write = |h: &Holder| std::fs::write(&path, serde_json::to_vec(h).unwrap()).unwrap();
        let me = Holder {
            pid: std::process::id(),
            command: "perfopt\u{1b}[2J run".to_string(),
            since_ns: 0,
            process_start: process_start("self"),
        };
        write(&me);
        assert_eq!(
            read_holder(&store).unwrap().command,
            "perfopt?[2J run",
            "control characters are not printed"
        );
        // A process id that no process has (above the kernel's pid_max).
        write(&Holder {
            pid: u32::MAX - 1,
            ..me.clone()
        });
        assert_eq!(read_holder(&store), None, "a dead holder is ignored");
        // The same id, but another process start: the id was reused.
        write(&Holder {
            process_start: me.process_start.map(|s| s + 1),
            ..me.clone()
        });
        assert_eq!(read_holder(&store), None, "a reused id is not the holder");
        let mut big = serde_json::to_vec(&me).unwrap();
        big.resize(MAX_HOLDER_BYTES as usize + 1, b' ');
        std::fs::write(&path, &big).unwrap();
        assert_eq!(
            read_holder(&store),
            None,
            "a file over the bound is not read"
        );
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(read_holder(&store), None);
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(
            read_holder(&store),
            None,
            "a directory is not a holder file"
        );
    }
}
