//! Short inline names for pools and rules, so that requests and decisions stay `Copy`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest name a pool or rule may have, in bytes.
pub const MAX_NAME_LEN: usize = 32;

/// A pool or rule name: 1 to 32 bytes of ASCII letters, digits, `_`, `-` or `.`.
///
/// It is stored inline, so copying it never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The string was empty.
    #[error("name is empty, expected 1 to {MAX_NAME_LEN} characters")]
    Empty,
    /// The string was longer than [`MAX_NAME_LEN`].
    #[error("name is {0} bytes long, expected at most {MAX_NAME_LEN}")]
    TooLong(usize),
    /// The string held a character outside `[A-Za-z0-9_.-]`.
    #[error("name contains {0:?}, expected only letters, digits, '_', '-' or '.'")]
    BadChar(char),
}

impl Name {
    /// The name of the pool that every configuration has.
    pub const DEFAULT_POOL: Name = Name::from_static("default");

    /// Builds a name, checking length and characters.
    pub fn new(s: &str) -> Result<Name, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(s.len()));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(NameError::BadChar(c));
        }
        let mut bytes = [0u8; MAX_NAME_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(Name {
            len: s.len() as u8,
            bytes,
        })
    }

    /// Builds a name from a constant; panics at compile time when it is invalid.
    pub const fn from_static(s: &'static str) -> Name {
        let src = s.as_bytes();
        assert!(
            !src.is_empty() && src.len() <= MAX_NAME_LEN,
            "invalid name length"
        );
        let mut bytes = [0u8; MAX_NAME_LEN];
        let mut i = 0;
        while i < src.len() {
            let c = src[i];
            assert!(
                c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.',
                "invalid name character"
            );
            bytes[i] = c;
            i += 1;
        }
        Name {
            len: src.len() as u8,
            bytes,
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored, so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl Default for Name {
    fn default() -> Self {
        Name::DEFAULT_POOL
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::new(s)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Name::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names_and_round_trips() {
        let n = Name::new("ml-serving_v2.1").unwrap();
        assert_eq!(n.as_str(), "ml-serving_v2.1");
        assert_eq!(n.to_string(), "ml-serving_v2.1");
        assert_eq!(Name::DEFAULT_POOL.as_str(), "default");
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(Name::new(&"a".repeat(33)), Err(NameError::TooLong(33)));
        assert_eq!(Name::new("a b"), Err(NameError::BadChar(' ')));
        assert_eq!(Name::new("pool/1"), Err(NameError::BadChar('/')));
        assert!(Name::new(&"a".repeat(32)).is_ok());
    }
}
