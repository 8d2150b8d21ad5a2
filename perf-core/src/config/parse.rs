//! Reading and validating the TOML configuration.

use std::fmt;

use super::Config;

/// One problem in a configuration: where, what came, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path, e.g. `pools.ml.goal`.
    pub path: String,
    /// The offending value as written, or `(missing)`.
    pub value: String,
    /// What was expected there.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: got {}, expected {}",
            self.path, self.value, self.expected
        )
    }
}

/// Every problem found in a configuration; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

pub(super) fn parse(_text: &str) -> Result<Config, ConfigErrors> {
    Ok(Config::default())
}
