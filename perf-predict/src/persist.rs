//! Saved cost models: a checked encoding of a learner's snapshot, and saving to and loading from a `ModelStore`.

use std::borrow::Cow;
use std::sync::Arc;

use perf_core::{EnvelopeError, Method, ModelStore, Name, Timestamp, open_model, seal_model};
use serde::{Deserialize, Serialize};

use crate::error::PredictError;
use crate::learner::{Learner, ModelKey, ModelSnapshot, reply_crossovers};
use crate::model::{MethodModel, ModelConfig};

/// The first word of an encoded set of cost models.
pub const COST_MODELS_FORMAT: &str = "perfopt.cost-models";
/// The layout of encoded cost models that this build writes and reads.
pub const COST_MODELS_FORMAT_VERSION: u32 = 1;
/// The name under which [`Learner::save`] and [`Learner::load`] keep cost models in a `ModelStore`.
pub const COST_MODELS_NAME: &str = "cost-models";

/// The platform models measured on this machine belong to, e.g.
/// `linux/x86_64`: the name [`Learner::load`] must find in saved models.
pub fn host_platform() -> String {
    format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// The JSON body: everything a snapshot holds.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    platform: Cow<'a, str>,
    version: u64,
    config: ModelConfig,
    models: Vec<Entry<'a>>,
    /// The reply models; missing in models saved before replies existed (and ignored by the
    /// builds that wrote those).
    #[serde(default)]
    replies: Vec<Entry<'a>>,
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
        models: entries(&snap.models),
        replies: entries(&snap.replies),
    };
    // Plain structs of numbers and strings always serialize.
    let body = serde_json::to_vec(&body).unwrap_or_default();
    seal_model(COST_MODELS_FORMAT, COST_MODELS_FORMAT_VERSION, &body)
}

fn entries(models: &[(ModelKey, Arc<MethodModel>)]) -> Vec<Entry<'_>> {
    models
        .iter()
        .map(|(key, model)| Entry {
            pool: key.pool,
            method: key.method,
            model: Cow::Borrowed(model),
        })
        .collect()
}

/// The models of `entries`, checked, configured and sorted by key; `what` names them in errors
/// (`model`, `reply model`).
fn checked_models(
    entries: Vec<Entry<'_>>,
    config: &ModelConfig,
    what: &str,
) -> Result<Vec<(ModelKey, Arc<MethodModel>)>, PredictError> {
    let corrupt = |why: String| PredictError::CorruptModel(why);
    let mut models = Vec::with_capacity(entries.len());
    for entry in entries {
        let key = ModelKey {
            pool: entry.pool,
            method: entry.method,
        };
        let mut model = entry.model.into_owned();
        model.check_and_configure(config).map_err(|e| {
            corrupt(format!(
                "{what} of {} in pool {}: {e}",
                key.method, key.pool
            ))
        })?;
        models.push((key, Arc::new(model)));
    }
    models.sort_by_key(|(k, _)| *k);
    if let Some(w) = models.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(corrupt(format!(
            "two {what}s of {} in pool {}",
            w[0].0.method, w[0].0.pool
        )));
    }
    Ok(models)
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
    let models = checked_models(file.models, &config, "model")?;
    let replies = checked_models(file.replies, &config, "reply model")?;
    Ok(ModelSnapshot {
        version: file.version,
        platform: Arc::from(platform),
        reply_crossovers: reply_crossovers(&config, &replies),
        config,
        models,
        replies,
    })
}

/// The body after a valid header whose length and checksum match it.
fn checked_body(bytes: &[u8]) -> Result<&[u8], PredictError> {
    open_model(bytes, COST_MODELS_FORMAT, COST_MODELS_FORMAT_VERSION).map_err(|e| match e {
        EnvelopeError::Incompatible { found, expected } => {
            PredictError::IncompatibleModel { found, expected }
        }
        EnvelopeError::Corrupt(why) => PredictError::CorruptModel(why),
    })
}
