//! Seams for learned policies: a classifier that names the faster method, a
//! store that keeps trained models, and the checked envelope model files use.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::request::{DecisionContext, Timestamp, TransferRequest};
use crate::vocab::Method;

/// A learned classifier's pick for one request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The method the model expects to be faster.
    pub method: Method,
    /// The model's probability that `method` is faster, 0.5 to 1.0.
    pub confidence: f64,
    /// The version of the model that answered.
    pub model_version: u64,
}

/// Names the faster method for a request, from paired measurements of both.
pub trait MethodClassifier: Send + Sync {
    /// The model's name, for rationales and reports.
    fn name(&self) -> &str;
    /// The pick for `request`, or `None` when no validated model is in force;
    /// must not block, allocate or do IO.
    fn classify(&self, request: &TransferRequest, ctx: &DecisionContext) -> Option<Verdict>;
}

/// A classifier that never answers: the cost analysis decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopClassifier;

impl MethodClassifier for NoopClassifier {
    fn name(&self) -> &str {
        "none"
    }
    fn classify(&self, _request: &TransferRequest, _ctx: &DecisionContext) -> Option<Verdict> {
        None
    }
}

/// One saved version of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredModel {
    /// 1 for the first version saved under a name, then counting up.
    pub version: u64,
    /// When it was saved.
    pub saved_at: Timestamp,
    /// The model's own encoding; the store does not look inside.
    pub bytes: Vec<u8>,
}

/// Why a model could not be saved or loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelStoreError {
    /// The model name is empty, too long or has characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid model name {0:?}: 1 to 64 letters, digits, '_', '-' or '.'")]
    InvalidName(String),
    /// The encoded model is larger than the store accepts.
    #[error("model {name:?} is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// The model's name.
        name: String,
        /// Its size in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The store failed underneath.
    #[error("model store: {0}")]
    Backend(String),
}

/// The largest model a store accepts, in bytes.
pub const MAX_MODEL_BYTES: usize = 16 << 20;

/// Checks a model name and size as every [`ModelStore`] must.
pub fn check_model(name: &str, len: usize) -> Result<(), ModelStoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        return Err(ModelStoreError::InvalidName(name.to_string()));
    }
    if len > MAX_MODEL_BYTES {
        return Err(ModelStoreError::TooLarge {
            name: name.to_string(),
            len,
            max: MAX_MODEL_BYTES,
        });
    }
    Ok(())
}

/// Keeps trained models as versioned, opaque blobs.
pub trait ModelStore: Send + Sync {
    /// Saves `bytes` as the next version of `name` and returns that version.
    fn save_model(&self, name: &str, bytes: &[u8], at: Timestamp) -> Result<u64, ModelStoreError>;
    /// The newest version of `name`, if any was saved.
    fn load_model(&self, name: &str) -> Result<Option<StoredModel>, ModelStoreError>;
}

/// A store that keeps nothing: every load finds no model.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopModelStore;

impl ModelStore for NoopModelStore {
    fn save_model(&self, name: &str, bytes: &[u8], _at: Timestamp) -> Result<u64, ModelStoreError> {
        check_model(name, bytes.len())?;
        Ok(0)
    }
    fn load_model(&self, name: &str) -> Result<Option<StoredModel>, ModelStoreError> {
        check_model(name, 0)?;
        Ok(None)
    }
}

/// A store in memory, shared by clones (for tests and embedding).
#[derive(Debug, Clone, Default)]
pub struct MemoryModelStore(Arc<Mutex<BTreeMap<String, StoredModel>>>);

impl ModelStore for MemoryModelStore {
    fn save_model(&self, name: &str, bytes: &[u8], at: Timestamp) -> Result<u64, ModelStoreError> {
        check_model(name, bytes.len())?;
        let mut models = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let version = models.get(name).map_or(1, |m| m.version + 1);
        let model = StoredModel {
            version,
            saved_at: at,
            bytes: bytes.to_vec(),
        };
        models.insert(name.to_string(), model);
        Ok(version)
    }
    fn load_model(&self, name: &str) -> Result<Option<StoredModel>, ModelStoreError> {
        check_model(name, 0)?;
        let models = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(models.get(name).cloned())
    }
}

/// Why a sealed model file cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Damaged, truncated or not a model file of the expected format.
    #[error("{0}")]
    Corrupt(String),
    /// A model file of another layout version.
    #[error("layout version {found}, this build reads version {expected}")]
    Incompatible {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
}

/// The longest header line [`open_model`] looks for.
const MAX_HEADER: usize = 256;

/// Seals `body` as a model file: a header line `FORMAT vVERSION len=N
/// fnv64=HEX`, then the body.
pub fn seal_model(format: &str, version: u32, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{format} v{version} len={} fnv64={:016x}\n",
        body.len(),
        fnv64(body)
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The body of a file written by [`seal_model`] with `format`, after checking
/// the header, the layout `version`, the length and the checksum.
pub fn open_model<'a>(
    bytes: &'a [u8],
    format: &str,
    version: u32,
) -> Result<&'a [u8], EnvelopeError> {
    let corrupt = |why: String| EnvelopeError::Corrupt(why);
    let newline = bytes
        .iter()
        .take(MAX_HEADER)
        .position(|&b| b == b'\n')
        .ok_or_else(|| corrupt(format!("no header line, expected {format}")))?;
    let header = std::str::from_utf8(&bytes[..newline])
        .map_err(|_| corrupt("header is not text".to_string()))?;
    let body = &bytes[newline + 1..];
    let mut words = header.split(' ');
    if words.next() != Some(format) {
        return Err(corrupt(format!(
            "not a {format} file: the header does not start with {format}"
        )));
    }
    let found = words
        .next()
        .and_then(|w| w.strip_prefix('v'))
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| corrupt("no layout version in the header".to_string()))?;
    if found != version {
        return Err(EnvelopeError::Incompatible {
            found,
            expected: version,
        });
    }
    let len = words
        .next()
        .and_then(|w| w.strip_prefix("len="))
        .and_then(|v| v.parse::<usize>().ok())
        .ok_or_else(|| corrupt("no length in the header".to_string()))?;
    let sum = words
        .next()
        .and_then(|w| w.strip_prefix("fnv64="))
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| corrupt("no checksum in the header".to_string()))?;
    if words.next().is_some() {
        return Err(corrupt(
            "unexpected words after the checksum in the header".to_string(),
        ));
    }
    if body.len() != len {
        return Err(corrupt(format!(
            "body is {} bytes, the header says {len} (truncated?)",
            body.len()
        )));
    }
    let computed = fnv64(body);
    if computed != sum {
        return Err(corrupt(format!(
            "checksum mismatch: the header says {sum:016x}, the body has {computed:016x}"
        )));
    }
    Ok(body)
}

/// FNV-1a, 64 bits: detects a damaged file (not an adversary).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv64_matches_the_published_vectors() {
        // From the FNV reference test suite (Fowler, Noll, Vo).
        assert_eq!(fnv64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn sealed_files_open_and_damage_is_named() {
        let sealed = seal_model("perfopt.test", 3, b"{\"x\":1}");
        assert!(sealed.starts_with(b"perfopt.test v3 len=7 fnv64="));
        assert_eq!(
            open_model(&sealed, "perfopt.test", 3),
            Ok(&b"{\"x\":1}"[..])
        );
        assert_eq!(
            open_model(&sealed, "perfopt.test", 4),
            Err(EnvelopeError::Incompatible {
                found: 3,
                expected: 4
            })
        );
        let other = open_model(&sealed, "perfopt.other", 3).unwrap_err();
        assert!(
            other.to_string().starts_with("not a perfopt.other file"),
            "{other}"
        );
        let cut = open_model(&sealed[..sealed.len() - 1], "perfopt.test", 3).unwrap_err();
        assert!(cut.to_string().ends_with("(truncated?)"), "{cut}");
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let e = open_model(&flipped, "perfopt.test", 3).unwrap_err();
        assert!(e.to_string().starts_with("checksum mismatch"), "{e}");
        assert!(open_model(b"", "perfopt.test", 3).is_err());
    }

    #[test]
    fn names_and_sizes_are_checked() {
        assert!(check_model("classifier.v1", 10).is_ok());
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            assert!(matches!(
                check_model(bad, 1),
                Err(ModelStoreError::InvalidName(_))
            ));
        }
        assert!(matches!(
            check_model("m", MAX_MODEL_BYTES + 1),
            Err(ModelStoreError::TooLarge { .. })
        ));
    }

    #[test]
    fn memory_store_counts_versions_and_keeps_the_newest() {
        let store = MemoryModelStore::default();
        assert_eq!(store.load_model("m").unwrap(), None);
        assert_eq!(store.save_model("m", b"one", Timestamp(1)).unwrap(), 1);
        assert_eq!(store.save_model("m", b"two", Timestamp(2)).unwrap(), 2);
        let m = store.load_model("m").unwrap().unwrap();
        assert_eq!((m.version, m.bytes.as_slice()), (2, &b"two"[..]));
        assert!(store.save_model("bad name", b"", Timestamp(3)).is_err());
    }
}
