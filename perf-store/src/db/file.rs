//! What lies at the store's path, looked at before redb opens it: a store is a regular file, and
//! a FIFO, a device, a directory or a link to nothing in its place is refused without being
//! opened (opening a FIFO for reading waits for a writer forever).

use std::fs::{File, FileType, OpenOptions};
use std::io::ErrorKind;
use std::path::Path;

use crate::schema::StoreError;

/// What is at the store's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFile {
    /// Nothing: the first writer creates the store there.
    Missing,
    /// A regular file, or a link to one.
    Regular {
        /// Its size in bytes.
        bytes: u64,
    },
    /// Something no store can be, e.g. `a FIFO`, `a directory`, `a symbolic link to nothing`.
    NotRegular {
        /// What it is, as a phrase.
        what: &'static str,
    },
    /// The path could not be looked at (a directory on the way is not searchable).
    Unknown {
        /// What the system said.
        reason: String,
    },
}

/// What `file_type` is as a phrase, or `None` for a regular file.
fn kind(file_type: FileType) -> Option<&'static str> {
    if file_type.is_file() {
        return None;
    }
    if file_type.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return Some("a FIFO");
        }
        if file_type.is_char_device() {
            return Some("a character device");
        }
        if file_type.is_block_device() {
            return Some("a block device");
        }
        if file_type.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

/// Looks at `path` without opening it: what [`StoreFile`] it is.
pub fn inspect(path: &Path) -> StoreFile {
    let own = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return StoreFile::Missing,
        Err(e) => {
            return StoreFile::Unknown {
                reason: e.to_string(),
            };
        }
    };
    let target = if own.file_type().is_symlink() {
        match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return StoreFile::NotRegular {
                    what: "a symbolic link to nothing",
                };
            }
            Err(e) => {
                return StoreFile::Unknown {
                    reason: e.to_string(),
                };
            }
        }
    } else {
        own
    };
    match kind(target.file_type()) {
        Some(what) => StoreFile::NotRegular { what },
        None => StoreFile::Regular {
            bytes: target.len(),
        },
    }
}

/// How [`open_store_file`] opens the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// For reading and writing, creating it when missing.
    ReadWrite,
    /// For reading only; a missing file is [`StoreError::Missing`].
    Read,
}

/// Opens the store's file at `path` if it is a regular file (or missing, for
/// [`Access::ReadWrite`]), and checks that what was opened is one.
///
/// The look and the open are two steps (this crate opens files with the standard library
/// only, which has no non-blocking open): a FIFO put in place of the store between them would
/// block the open. Only the data directory's owner can do that, and the directory is private
/// (0700).
pub(crate) fn open_store_file(path: &Path, access: Access) -> Result<File, StoreError> {
    let not_a_file = |what: &'static str| StoreError::NotAFile {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    match inspect(path) {
        StoreFile::NotRegular { what } => return Err(not_a_file(what)),
        StoreFile::Missing if access == Access::Read => {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        StoreFile::Missing | StoreFile::Regular { .. } | StoreFile::Unknown { .. } => {}
    }
    let file = match access {
        Access::ReadWrite => OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path),
        Access::Read => File::open(path),
    }
    .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
    // The path may have been replaced between the look and the open.
    let meta = file
        .metadata()
        .map_err(|e| StoreError::Io(format!("cannot look at {}: {e}", path.display())))?;
    match kind(meta.file_type()) {
        Some(what) => Err(not_a_file(what)),
        None => Ok(file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_path_is_regular_missing_or_named_for_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        assert_eq!(inspect(&file), StoreFile::Missing);
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(inspect(&file), StoreFile::Regular { bytes: 3 });
        assert_eq!(
            inspect(dir.path()),
            StoreFile::NotRegular {
                what: "a directory"
            }
        );
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&file, &link).unwrap();
            assert_eq!(inspect(&link), StoreFile::Regular { bytes: 3 });
            let dangling = dir.path().join("dangling");
            std::os::unix::fs::symlink(dir.path().join("nothing"), &dangling).unwrap();
            assert_eq!(
                inspect(&dangling),
                StoreFile::NotRegular {
                    what: "a symbolic link to nothing"
                }
            );
            assert_eq!(
                inspect(Path::new("/dev/zero")),
                StoreFile::NotRegular {
                    what: "a character device"
                }
            );
        }
    }

    #[test]
    fn only_a_regular_file_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert_eq!(
            open_store_file(&missing, Access::Read).unwrap_err(),
            StoreError::Missing {
                path: missing.clone()
            }
        );
        open_store_file(&missing, Access::ReadWrite).unwrap();
        assert!(missing.is_file(), "a writer creates the file");
        let err = open_store_file(dir.path(), Access::ReadWrite).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "metrics store {} is a directory, expected a regular file",
                dir.path().display()
            )
        );
    }
}
