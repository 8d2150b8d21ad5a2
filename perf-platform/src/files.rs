//! Bounded reads of regular files given from outside: a configuration, a profile, a dataset,
//! a secret.
//!
//! A path a user names may be anything: `/dev/zero` (endless bytes, and a reported size of 0),
//! a FIFO (an open that waits for a writer forever), a directory, a socket. [`RegularFile::open`]
//! opens it without blocking (`O_NONBLOCK`, `O_NOCTTY`, `O_CLOEXEC` on Unix), looks at what the
//! opened descriptor is, and refuses anything but a regular file; reads then stop one byte past
//! the bound, whatever the file's metadata says its length is.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a path that is not a regular file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A FIFO (named pipe).
    Fifo,
    /// A character device, like `/dev/zero` or a terminal.
    CharDevice,
    /// A block device, like a disk.
    BlockDevice,
    /// A Unix domain socket.
    Socket,
    /// A symbolic link whose target does not exist.
    DanglingSymlink,
    /// Something else that is not a regular file.
    Other,
}

impl FileKind {
    /// What `file_type` is, or `None` for a regular file.
    pub fn of(file_type: std::fs::FileType) -> Option<FileKind> {
        if file_type.is_file() {
            return None;
        }
        if file_type.is_dir() {
            return Some(FileKind::Directory);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if file_type.is_fifo() {
                return Some(FileKind::Fifo);
            }
            if file_type.is_char_device() {
                return Some(FileKind::CharDevice);
            }
            if file_type.is_block_device() {
                return Some(FileKind::BlockDevice);
            }
            if file_type.is_socket() {
                return Some(FileKind::Socket);
            }
        }
        if file_type.is_symlink() {
            return Some(FileKind::DanglingSymlink);
        }
        Some(FileKind::Other)
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
            FileKind::DanglingSymlink => "a symbolic link to nothing",
            FileKind::Other => "not a regular file",
        })
    }
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be opened (missing, not permitted).
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The path names something other than a regular file; nothing was read.
    #[error("{path} is {kind}, expected a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: FileKind,
    },
    /// The file holds more bytes than the reader accepts.
    #[error("{path} is larger than {max_bytes} bytes, expected at most {max_bytes}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The bound.
        max_bytes: u64,
    },
    /// Reading failed part way.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("{path} is not UTF-8 text, expected text: {source}")]
    NotText {
        /// The file.
        path: PathBuf,
        /// Where the first invalid byte is.
        source: std::string::FromUtf8Error,
    },
}

/// A regular file, opened for reading without blocking and checked to be one.
#[derive(Debug)]
pub struct RegularFile {
    file: File,
    metadata: Metadata,
    path: PathBuf,
}

impl RegularFile {
    /// Opens `path` (following symbolic links) for reading; refuses with
    /// [`FileError::NotRegular`] anything that is not a regular file, and never waits for a
    /// FIFO's writer or a device.
    pub fn open(path: &Path) -> Result<RegularFile, FileError> {
        let file = open_nonblocking(path).map_err(|source| {
            // A socket cannot be opened at all; say what it is rather than "no such device".
            match std::fs::symlink_metadata(path)
                .ok()
                .and_then(|m| kind_at(path, &m))
            {
                Some(kind) => FileError::NotRegular {
                    path: path.to_path_buf(),
                    kind,
                },
                None => FileError::Open {
                    path: path.to_path_buf(),
                    source,
                },
            }
        })?;
        let metadata = file.metadata().map_err(|source| FileError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        if let Some(kind) = FileKind::of(metadata.file_type()) {
            return Err(FileError::NotRegular {
                path: path.to_path_buf(),
                kind,
            });
        }
        Ok(RegularFile {
            file,
            metadata,
            path: path.to_path_buf(),
        })
    }

    /// The metadata of the opened file (not of whatever the path names now).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Reads the whole file, refusing it with [`FileError::TooLarge`] once more than
    /// `max_bytes` bytes came, whatever its metadata says.
    pub fn read_to_end(self, max_bytes: u64) -> Result<Vec<u8>, FileError> {
        let mut out = Vec::new();
        self.file
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|source| FileError::Read {
                path: self.path.clone(),
                source,
            })?;
        if out.len() as u64 > max_bytes {
            return Err(FileError::TooLarge {
                path: self.path,
                max_bytes,
            });
        }
        Ok(out)
    }
}

/// What `path`, whose own metadata (not following a link) is `m`, is when it is not a regular
/// file or a link to one.
fn kind_at(path: &Path, m: &Metadata) -> Option<FileKind> {
    if !m.file_type().is_symlink() {
        return FileKind::of(m.file_type());
    }
    match std::fs::metadata(path) {
        Ok(target) => FileKind::of(target.file_type()),
        Err(_) => Some(FileKind::DanglingSymlink),
    }
}

#[cfg(any(target_os = "linux", target_os = "macos"))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt;
    // std adds O_CLOEXEC itself. O_NONBLOCK makes the open of a FIFO return at once, and has no
    // effect on reading a regular file.
    let flags = OFlags::NONBLOCK | OFlags::NOCTTY;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// Reads the regular file at `path`, at most `max_bytes` of it; see [`RegularFile`].
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FileError> {
    RegularFile::open(path)?.read_to_end(max_bytes)
}

/// Reads the regular file at `path` as UTF-8 text, at most `max_bytes` of it; see
/// [`RegularFile`].
pub fn read_regular_to_string(path: &Path, max_bytes: u64) -> Result<String, FileError> {
    String::from_utf8(read_regular(path, max_bytes)?).map_err(|source| FileError::NotText {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_within_the_bound_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_regular(&path, 10).unwrap(), b"0123456789");
        assert_eq!(read_regular_to_string(&path, 100).unwrap(), "0123456789");
        let opened = RegularFile::open(&path).unwrap();
        assert_eq!(opened.metadata().len(), 10);
    }

    #[test]
    fn a_file_past_the_bound_is_refused_naming_file_and_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 11]).unwrap();
        let err = read_regular(&path, 10).unwrap_err();
        assert!(
            matches!(err, FileError::TooLarge { max_bytes: 10, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{} is larger than 10 bytes, expected at most 10",
                path.display()
            )
        );
    }

    #[test]
    fn text_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let err = read_regular_to_string(&path, 10).unwrap_err();
        assert!(matches!(err, FileError::NotText { .. }), "{err:?}");
    }

    #[cfg(unix)]
    #[test]
    fn dev_zero_is_refused_as_a_character_device_without_reading() {
        let err = read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::NotRegular {
                    kind: FileKind::CharDevice,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "/dev/zero is a character device, expected a regular file"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // A blocking open would wait here forever: no process ever opens the FIFO for writing.
        let err = read_regular(&path, 10).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::NotRegular {
                    kind: FileKind::Fifo,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("{} is a FIFO, expected a regular file", path.display())
        );
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_regular(dir.path(), 10).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::NotRegular {
                    kind: FileKind::Directory,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_socket_is_refused_as_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = read_regular(&path, 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is a socket, expected a regular file", path.display())
        );
    }

    #[test]
    fn a_missing_file_is_an_open_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing");
        let err = read_regular(&path, 10).unwrap_err();
        assert!(matches!(err, FileError::Open { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot open {}: ", path.display())),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_to_a_regular_file_is_read_and_a_dangling_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"abc").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read_regular(&link, 3).unwrap(), b"abc");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nothing"), &dangling).unwrap();
        let err = read_regular(&dangling, 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is a symbolic link to nothing, expected a regular file",
                dangling.display()
            )
        );
    }
}
