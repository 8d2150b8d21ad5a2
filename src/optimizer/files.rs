//! Configuration files and calibration profiles, read as bounded regular files and validated.

use std::path::Path;

use perf_core::config::MAX_CONFIG_BYTES;
use perf_core::{Config, CostCoefficients};
use perf_platform::FileError;

use super::OptimizerError;

/// Reads and validates a configuration file (at most [`MAX_CONFIG_BYTES`]);
/// nothing is applied.
pub fn load_config(path: &Path) -> Result<Config, OptimizerError> {
    read_config(path).map(|(_, config)| config)
}

/// Reads a regular file of at most [`MAX_CONFIG_BYTES`] bytes of text.
pub(crate) fn read_bounded(path: &Path) -> Result<String, OptimizerError> {
    let path_buf = || path.to_path_buf();
    perf_platform::read_regular_to_string(path, MAX_CONFIG_BYTES as u64).map_err(|e| match e {
        FileError::Open { source, .. } | FileError::Read { source, .. } => OptimizerError::Io {
            path: path_buf(),
            source,
        },
        FileError::NotRegular { kind, .. } => OptimizerError::NotRegular {
            path: path_buf(),
            kind,
        },
        FileError::TooLarge { .. } => OptimizerError::TooLarge { path: path_buf() },
        FileError::NotText { source, .. } => OptimizerError::Io {
            path: path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, source),
        },
    })
}

/// Reads and validates a calibration profile written by `perfopt bench`.
pub fn load_profile(path: &Path) -> Result<CostCoefficients, OptimizerError> {
    let text = read_bounded(path)?;
    Config::parse_profile(&text).map_err(|errors| OptimizerError::Config {
        path: path.to_path_buf(),
        errors,
    })
}

/// Reads and validates a configuration file, and the calibration profile it
/// names (relative to the file's folder); returns the file's text too.
pub(crate) fn read_config(path: &Path) -> Result<(String, Config), OptimizerError> {
    let text = read_bounded(path)?;
    let config = parse_config(path, &text)?;
    Ok((text, config))
}

/// Validates `text`, read from `path`, and reads the calibration profile it names.
pub(crate) fn parse_config(path: &Path, text: &str) -> Result<Config, OptimizerError> {
    let mut config = Config::from_toml_str(text).map_err(|errors| OptimizerError::Config {
        path: path.to_path_buf(),
        errors,
    })?;
    if let Some(profile) = &config.profile {
        let dir = path.parent().unwrap_or(Path::new("."));
        config.costs = load_profile(&dir.join(profile))?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use perf_platform::FileKind;

    use super::*;

    #[test]
    fn a_directory_given_as_configuration_is_refused_as_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_config(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                OptimizerError::NotRegular {
                    kind: FileKind::Directory,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "configuration {} is a directory, expected a regular file",
                dir.path().display()
            )
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_device_given_as_profile_is_refused_without_reading_it() {
        let err = load_profile(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration /dev/zero is a character device, expected a regular file"
        );
    }

    #[test]
    fn a_file_past_the_bound_is_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.toml");
        std::fs::write(&path, vec![b'#'; MAX_CONFIG_BYTES + 1]).unwrap();
        let err = load_config(&path).unwrap_err();
        assert!(matches!(err, OptimizerError::TooLarge { .. }), "{err:?}");
    }
}
