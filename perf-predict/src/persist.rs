//! Saved cost models: a checked encoding of a learner's snapshot, and saving to and loading from a `ModelStore`.

use std::borrow::Cow;
use std::sync::Arc;

use perf_core::{Method, ModelStore, Name, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::PredictError;
use crate::learner::{Learner, ModelKey, ModelSnapshot};
use crate::model::{MethodModel, ModelConfig};

/// The first word of an encoded set of cost models.
pub const COST_MODELS_FORMAT: &str = "perfopt.cost-models";
/// The layout of encoded cost models that this build writes and reads.
pub const COST_MODELS_FORMAT_VERSION: u32 = 1;
/// The name under which [`Learner::save`] and [`Learner::load`] keep cost models in a `ModelStore`.
pub const COST_MODELS_NAME: &str = "cost-models";

/// The longest header line read before giving up, in bytes.
const MAX_HEADER: usize = 200;

/// The JSON body: everything a snapshot holds.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    platform: Cow<'a, str>,
    version: u64,
    config: ModelConfig,
    models: Vec<Entry<'a>>,
}

#[derive(Serialize, Deserialize)]
struct Entry<'a> {
    pool: Name,
    method: Method,
    model: Cow<'a, MethodModel>,
}

impl Learner {
    /// Encodes the published snapshot (platform, settings, every model with
    /// its fit, residuals and counts, and the version): a header line
    /// `perfopt.cost-models v1 len=N fnv64=HEX`, then the JSON body.
    pub fn encode(&self) -> Vec<u8> {
        encode(&self.snapshot())
    }

    /// Reads models written by [`Learner::encode`] into a learner for
    /// `platform` that learns with `config`.
    ///
    /// Rejects bytes that are not cost models, of another layout version,
    /// truncated or damaged (length and FNV-1a checksum), not valid JSON,
    /// measured on another platform, fitted with another knot than `config`'s,
    /// or holding non-finite or inconsistent numbers. The other settings come
    /// from `config`. The version continues from the saved one; there is no
    /// earlier version to roll back to.
    pub fn decode(
        bytes: &[u8],
        platform: &str,
        config: ModelConfig,
    ) -> Result<Learner, PredictError> {
        config.validate()?;
        decode(bytes, platform, config).map(Learner::from_snapshot)
    }

    /// Saves the published snapshot as the next version of [`COST_MODELS_NAME`]
    /// in `store`; returns the store's version number.
    pub fn save(&self, store: &dyn ModelStore, at: Timestamp) -> Result<u64, PredictError> {
        Ok(store.save_model(COST_MODELS_NAME, &self.encode(), at)?)
    }

    /// The newest cost models saved in `store` (see [`Learner::decode`]), or
    /// `None` when none were saved.
    pub fn load(
        store: &dyn ModelStore,
        platform: &str,
        config: ModelConfig,
    ) -> Result<Option<Learner>, PredictError> {
        match store.load_model(COST_MODELS_NAME)? {
            Some(stored) => Learner::decode(&stored.bytes, platform, config).map(Some),
            None => Ok(None),
        }
    }
}

fn encode(snap: &ModelSnapshot) -> Vec<u8> {
    let body = Body {
        platform: Cow::Borrowed(&snap.platform),
        version: snap.version,
        config: snap.config,
        models: snap
            .models
            .iter()
            .map(|(key, model)| Entry {
                pool: key.pool,
                method: key.method,
                model: Cow::Borrowed(model),
            })
            .collect(),
    };
    // Plain structs of numbers and strings always serialize.
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut out = format!(
        "{COST_MODELS_FORMAT} v{COST_MODELS_FORMAT_VERSION} len={} fnv64={:016x}\n",
        body.len(),
        fnv64(&body)
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

fn decode(
    bytes: &[u8],
    platform: &str,
    config: ModelConfig,
) -> Result<ModelSnapshot, PredictError> {
    let corrupt = |why: String| PredictError::CorruptModel(why);
    let body = checked_body(bytes)?;
    let file: Body<'_> =
        serde_json::from_slice(body).map_err(|e| corrupt(format!("invalid JSON: {e}")))?;
    if file.platform != platform {
        return Err(PredictError::OtherPlatform {
            found: file.platform.into_owned(),
            expected: platform.to_string(),
        });
    }
    if file.config.knot_bytes != config.knot_bytes {
        return Err(corrupt(format!(
            "fitted with a knot at {} bytes, the settings have it at {}",
            file.config.knot_bytes, config.knot_bytes
        )));
    }
    let mut models = Vec::with_capacity(file.models.len());
    for entry in file.models {
        let key = ModelKey {
            pool: entry.pool,
            method: entry.method,
        };
        let mut model = entry.model.into_owned();
        model
            .check_and_configure(&config)
            .map_err(|e| corrupt(format!("model of {} in pool {}: {e}", key.method, key.pool)))?;
        models.push((key, Arc::new(model)));
    }
    models.sort_by_key(|(k, _)| *k);
    if let Some(w) = models.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(corrupt(format!(
            "two models of {} in pool {}",
            w[0].0.method, w[0].0.pool
        )));
    }
    Ok(ModelSnapshot {
        version: file.version,
        platform: Arc::from(platform),
        config,
        models,
    })
}

/// The body after a valid header whose length and checksum match it.
fn checked_body(bytes: &[u8]) -> Result<&[u8], PredictError> {
    let corrupt = |why: &str| PredictError::CorruptModel(why.to_string());
    let newline = bytes
        .iter()
        .take(MAX_HEADER)
        .position(|&b| b == b'\n')
        .ok_or_else(|| corrupt("no header line, expected perfopt cost models"))?;
    let header =
        std::str::from_utf8(&bytes[..newline]).map_err(|_| corrupt("header is not text"))?;
    let body = &bytes[newline + 1..];
    let mut words = header.split(' ');
    if words.next() != Some(COST_MODELS_FORMAT) {
        return Err(corrupt(
            "not perfopt cost models: the header does not start with perfopt.cost-models",
        ));
    }
    let version = words
        .next()
        .and_then(|w| w.strip_prefix('v'))
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| corrupt("no layout version in the header"))?;
    if version != COST_MODELS_FORMAT_VERSION {
        return Err(PredictError::IncompatibleModel {
            found: version,
            expected: COST_MODELS_FORMAT_VERSION,
        });
    }
    let len = words
        .next()
        .and_then(|w| w.strip_prefix("len="))
        .and_then(|v| v.parse::<usize>().ok())
        .ok_or_else(|| corrupt("no length in the header"))?;
    let sum = words
        .next()
        .and_then(|w| w.strip_prefix("fnv64="))
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| corrupt("no checksum in the header"))?;
    if words.next().is_some() {
        return Err(corrupt("unexpected words after the checksum in the header"));
    }
    if body.len() != len {
        return Err(PredictError::CorruptModel(format!(
            "body is {} bytes, the header says {len} (truncated?)",
            body.len()
        )));
    }
    let found = fnv64(body);
    if found != sum {
        return Err(PredictError::CorruptModel(format!(
            "checksum mismatch: the header says {sum:016x}, the body has {found:016x}"
        )));
    }
    Ok(body)
}

/// FNV-1a, 64 bits.
fn fnv64(bytes: &[u8]) -> u64 {
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
}
