//! The data directory: where the metrics store lives, chosen by `--data-dir`, then
//! `PERFOPT_DATA_DIR`, then the platform's data directory; created private (0700) when missing.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::schema::StoreError;

/// The environment variable that sets the data directory when `--data-dir` is not given.
pub const DATA_DIR_ENV: &str = "PERFOPT_DATA_DIR";

/// The longest data directory path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// Where the data directory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirSource {
    /// The `--data-dir` option (or an embedding program's explicit path).
    Explicit,
    /// The `PERFOPT_DATA_DIR` environment variable.
    Environment,
    /// The platform's per-user data directory.
    Platform,
}

impl fmt::Display for DataDirSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataDirSource::Explicit => "--data-dir",
            DataDirSource::Environment => DATA_DIR_ENV,
            DataDirSource::Platform => "the platform data directory",
        })
    }
}

/// A chosen data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    /// Its path.
    pub path: PathBuf,
    /// Where the path came from.
    pub source: DataDirSource,
}

/// Why no usable data directory was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataDirError {
    /// The path given was empty.
    #[error("data directory from {0} is empty, expected a path")]
    Empty(DataDirSource),
    /// The path was longer than [`MAX_PATH_BYTES`].
    #[error("data directory from {from} is {len} bytes long, expected at most {MAX_PATH_BYTES}")]
    TooLong {
        /// Where it came from.
        from: DataDirSource,
        /// Its length in bytes.
        len: usize,
    },
    /// Neither option nor variable was set and the platform has no data directory.
    #[error(
        "no data directory: --data-dir and {DATA_DIR_ENV} are unset and the platform has no home directory"
    )]
    NoPlatformDir,
    /// The path exists and is not a directory.
    #[error("data directory {0} exists but is not a directory")]
    NotADirectory(PathBuf),
    /// Creating the directory failed.
    #[error("cannot create data directory {path}: {reason}")]
    Create {
        /// The path.
        path: PathBuf,
        /// What the system said.
        reason: String,
    },
}

impl From<DataDirError> for StoreError {
    fn from(e: DataDirError) -> StoreError {
        match e {
            DataDirError::Create { .. } => StoreError::Io(e.to_string()),
            _ => StoreError::Invalid(e.to_string()),
        }
    }
}

/// Chooses the data directory: `explicit`, else `$PERFOPT_DATA_DIR` (when set and not empty),
/// else the platform's data directory. Does not create it.
pub fn resolve(explicit: Option<&Path>) -> Result<DataDir, DataDirError> {
    resolve_with(
        explicit,
        std::env::var_os(DATA_DIR_ENV),
        platform_data_dir(),
    )
}

/// The platform's per-user data directory for perfopt, if the platform has one
/// (`~/.local/share/perfopt` on Linux).
pub fn platform_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "perfopt").map(|d| d.data_dir().to_path_buf())
}

/// [`resolve`] with the environment and platform passed in.
pub fn resolve_with(
    explicit: Option<&Path>,
    env: Option<OsString>,
    platform: Option<PathBuf>,
) -> Result<DataDir, DataDirError> {
    let (path, source) = if let Some(p) = explicit {
        (p.to_path_buf(), DataDirSource::Explicit)
    } else if let Some(v) = env.filter(|v| !v.is_empty()) {
        (PathBuf::from(v), DataDirSource::Environment)
    } else {
        (
            platform.ok_or(DataDirError::NoPlatformDir)?,
            DataDirSource::Platform,
        )
    };
    check_path(&path, source)?;
    Ok(DataDir { path, source })
}

fn check_path(path: &Path, source: DataDirSource) -> Result<(), DataDirError> {
    let len = path.as_os_str().len();
    if len == 0 {
        return Err(DataDirError::Empty(source));
    }
    if len > MAX_PATH_BYTES {
        return Err(DataDirError::TooLong { from: source, len });
    }
    Ok(())
}

/// Creates `path` and any missing parents, private to the user (0700 on Unix); an existing
/// directory is left as it is.
pub fn create_private_dir(path: &Path) -> Result<(), DataDirError> {
    check_path(path, DataDirSource::Explicit)?;
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => return Err(DataDirError::NotADirectory(path.to_path_buf())),
        Err(_) => {}
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(|e| DataDirError::Create {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_beats_environment_beats_platform() {
        let platform = Some(PathBuf::from("/home/u/.local/share/perfopt"));
        let env = Some(OsString::from("/srv/perfopt"));
        let d = resolve_with(Some(Path::new("/data")), env.clone(), platform.clone()).unwrap();
        assert_eq!(
            (d.path.as_path(), d.source),
            (Path::new("/data"), DataDirSource::Explicit)
        );
        let d = resolve_with(None, env, platform.clone()).unwrap();
        assert_eq!(d.source, DataDirSource::Environment);
        assert_eq!(d.path, PathBuf::from("/srv/perfopt"));
        let d = resolve_with(None, Some(OsString::new()), platform.clone()).unwrap();
        assert_eq!(
            d.source,
            DataDirSource::Platform,
            "an empty variable counts as unset"
        );
        assert_eq!(
            resolve_with(None, None, None).unwrap_err(),
            DataDirError::NoPlatformDir
        );
    }

    #[test]
    fn paths_are_bounded() {
        let long = PathBuf::from(format!("/{}", "a".repeat(MAX_PATH_BYTES)));
        let err = resolve_with(Some(&long), None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "data directory from --data-dir is {} bytes long, expected at most 4096",
                MAX_PATH_BYTES + 1
            )
        );
        assert_eq!(
            resolve_with(Some(Path::new("")), None, None).unwrap_err(),
            DataDirError::Empty(DataDirSource::Explicit)
        );
    }

    #[test]
    fn created_private_and_refuses_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        create_private_dir(&dir).unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            create_private_dir(&file).unwrap_err(),
            DataDirError::NotADirectory(file)
        );
    }
}
