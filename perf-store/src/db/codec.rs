//! The on-disk layout of schema version 2: table definitions, meta keys and the byte encodings of
//! keys and values.
//!
//! Raw samples are keyed by `(started_at ns, sequence)`: the sequence is a store-wide counter
//! kept in meta, so two samples that start in the same nanosecond both survive and keys sort by
//! time, then arrival. Their value is the `serde_json` encoding of `TransferMetrics`: it names
//! every field and enum variant, so perf-core may reorder variants or add optional fields without
//! a migration (about 0.6 KiB a sample). Buckets are keyed by a byte string that sorts by
//! granularity, then start time, then series (see [`encode_bucket_key`]); their value is
//! `Bucket::to_bytes`. Threshold changes are keyed by their append position and hold the
//! `serde_json` encoding of `ThresholdChange`.
//!
//! Trained models are keyed by `(name, version)` and hold a [`MODEL_HEADER_LEN`]-byte header and
//! then the model's bytes (see [`encode_model`]). The `models` table came after version 2 was
//! released without a schema bump: it is created by the first save, and a store without it holds
//! no models, so stores written before it and builds that predate it both keep working.

use perf_core::{DataType, Method, Name, ThresholdChange, Timestamp, TransferMetrics};
use redb::TableDefinition;

use crate::schema::{BucketKey, Granularity, SeriesKey, StoreError};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 2;

/// The store's settings: schema version, creation time, next sample sequence.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Raw samples: `(started_at ns, sequence)` to JSON.
pub(crate) const SAMPLES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("raw_samples");
/// Buckets: [`encode_bucket_key`] to `Bucket::to_bytes`.
pub(crate) const BUCKETS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("buckets");
/// Threshold changes: append position to JSON.
pub(crate) const THRESHOLDS: TableDefinition<u64, &[u8]> = TableDefinition::new("thresholds");
/// Trained models: `(name, version)` to [`encode_model`]; may be missing in a version-2 store.
pub(crate) const MODELS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("models");

/// Meta key of the schema version.
pub(crate) const META_SCHEMA_VERSION: &str = "schema_version";
/// Meta key of the creation time, nanoseconds since the epoch.
pub(crate) const META_CREATED_AT: &str = "created_at_ns";
/// Meta key of the sequence the next raw sample gets.
pub(crate) const META_NEXT_SAMPLE: &str = "next_sample_seq";

/// Bytes of the fixed part of a bucket key: granularity and start.
const BUCKET_KEY_PREFIX: usize = 9;

fn granularity_code(g: Granularity) -> u8 {
    match g {
        Granularity::Second => 0,
        Granularity::Minute => 1,
        Granularity::Hour => 2,
    }
}

fn granularity_of(code: u8) -> Option<Granularity> {
    match code {
        0 => Some(Granularity::Second),
        1 => Some(Granularity::Minute),
        2 => Some(Granularity::Hour),
        _ => None,
    }
}

/// The key prefix of every bucket of `g` starting at `start_secs`: range scans use it as a bound.
pub(crate) fn bucket_key_prefix(g: Granularity, start_secs: u64) -> [u8; BUCKET_KEY_PREFIX] {
    let mut out = [0u8; BUCKET_KEY_PREFIX];
    out[0] = granularity_code(g);
    out[1..].copy_from_slice(&start_secs.to_be_bytes());
    out
}

/// Encodes a bucket key: granularity code (1 byte), start seconds (8 bytes, big-endian), size
/// class (1 byte), then pool, method and data type as length-prefixed ASCII names.
pub(crate) fn encode_bucket_key(key: &BucketKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&bucket_key_prefix(key.granularity, key.start_secs));
    out.push(key.series.size_class);
    for name in [
        key.series.pool.as_str(),
        key.series.method.as_str(),
        key.series.data_type.as_str(),
    ] {
        // Names are at most 32 bytes, so the length fits a byte.
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }
    out
}

/// Reads what [`encode_bucket_key`] wrote.
pub(crate) fn decode_bucket_key(bytes: &[u8]) -> Result<BucketKey, StoreError> {
    let bad = |what: String| StoreError::Corrupt(format!("bucket key {bytes:02x?}: {what}"));
    if bytes.len() < BUCKET_KEY_PREFIX + 1 {
        return Err(bad(format!(
            "{} bytes, expected at least {}",
            bytes.len(),
            BUCKET_KEY_PREFIX + 1
        )));
    }
    let granularity = granularity_of(bytes[0])
        .ok_or_else(|| bad(format!("granularity code {}, expected 0, 1 or 2", bytes[0])))?;
    let mut start = [0u8; 8];
    start.copy_from_slice(&bytes[1..BUCKET_KEY_PREFIX]);
    let size_class = bytes[BUCKET_KEY_PREFIX];
    let mut rest = &bytes[BUCKET_KEY_PREFIX + 1..];
    let mut names = [""; 3];
    for name in &mut names {
        let (&len, tail) = rest
            .split_first()
            .ok_or_else(|| bad("truncated name".to_string()))?;
        if tail.len() < len as usize {
            return Err(bad("truncated name".to_string()));
        }
        let (text, tail) = tail.split_at(len as usize);
        *name = std::str::from_utf8(text).map_err(|_| bad("name is not utf-8".to_string()))?;
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes".to_string()));
    }
    let pool = Name::new(names[0]).map_err(|e| bad(e.to_string()))?;
    let method: Method = names[1]
        .parse()
        .map_err(|e: perf_core::UnknownName| bad(e.to_string()))?;
    let data_type: DataType = names[2]
        .parse()
        .map_err(|e: perf_core::UnknownName| bad(e.to_string()))?;
    Ok(BucketKey {
        granularity,
        start_secs: u64::from_be_bytes(start),
        series: SeriesKey {
            pool,
            method,
            size_class,
            data_type,
        },
    })
}

/// `v`, or 0 when it is NaN or infinite.
fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// Encodes a raw sample as JSON.
///
/// `serde_json` writes NaN and infinities as `null`, which does not read back into an `f64`, so
/// non-finite measures are stored as 0 and a non-finite prediction as none.
pub(crate) fn encode_sample(m: &TransferMetrics) -> Result<Vec<u8>, StoreError> {
    let mut m = *m;
    m.propensity = finite(m.propensity);
    m.latency_us = finite(m.latency_us);
    m.throughput_bps = finite(m.throughput_bps);
    m.cpu_time_us = finite(m.cpu_time_us);
    m.predicted_latency_us = m.predicted_latency_us.filter(|v| v.is_finite());
    m.system.cpu_utilization = finite(m.system.cpu_utilization);
    m.system.memory_used = finite(m.system.memory_used);
    serde_json::to_vec(&m)
        .map_err(|e| StoreError::Invalid(format!("sample cannot be encoded: {e}")))
}

/// Reads what [`encode_sample`] wrote.
pub(crate) fn decode_sample(bytes: &[u8]) -> Result<TransferMetrics, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("raw sample: {e}")))
}

/// Encodes a threshold change as JSON (non-finite numbers as 0, see [`encode_sample`]).
pub(crate) fn encode_change(c: &ThresholdChange) -> Result<Vec<u8>, StoreError> {
    let mut c = c.clone();
    c.from_factor = finite(c.from_factor);
    c.to_factor = finite(c.to_factor);
    c.expected_gain = finite(c.expected_gain);
    serde_json::to_vec(&c)
        .map_err(|e| StoreError::Invalid(format!("threshold change cannot be encoded: {e}")))
}

/// Reads what [`encode_change`] wrote.
pub(crate) fn decode_change(bytes: &[u8]) -> Result<ThresholdChange, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("threshold change: {e}")))
}

/// The format byte that starts every stored model.
const MODEL_FORMAT: u8 = 1;

/// Bytes of a stored model's header: format (1), saved_at ns (8), length (8) and CRC-32 (4).
pub(crate) const MODEL_HEADER_LEN: usize = 21;

/// The CRC-32 of a model's header fields and bytes.
fn model_crc(head: &[u8], bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(head);
    crc.update(bytes);
    crc.sum()
}

/// Encodes a model saved at `at`: format byte, saved_at in nanoseconds and length (both u64
/// little-endian), the CRC-32 of those 17 bytes and the model's (u32 little-endian), then the
/// model's bytes.
pub(crate) fn encode_model(at: Timestamp, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MODEL_HEADER_LEN + bytes.len());
    out.push(MODEL_FORMAT);
    out.extend_from_slice(&at.as_nanos().to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    let crc = model_crc(&out, bytes);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Reads what [`encode_model`] wrote: when the model was saved, and its bytes; the error says
/// what does not match.
pub(crate) fn decode_model(value: &[u8]) -> Result<(Timestamp, &[u8]), String> {
    if value.len() < MODEL_HEADER_LEN {
        return Err(format!(
            "{} bytes, expected at least the {MODEL_HEADER_LEN}-byte header",
            value.len()
        ));
    }
    let (head, bytes) = value.split_at(MODEL_HEADER_LEN);
    if head[0] != MODEL_FORMAT {
        return Err(format!("format {}, expected {MODEL_FORMAT}", head[0]));
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let saved_at = u64_at(1);
    let len = u64_at(9);
    if len != bytes.len() as u64 {
        return Err(format!(
            "header says {len} bytes, {} are stored",
            bytes.len()
        ));
    }
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&head[17..21]);
    let stored = u32::from_le_bytes(stored);
    let computed = model_crc(&head[..17], bytes);
    if stored != computed {
        return Err(format!(
            "checksum {computed:#010x}, expected {stored:#010x} as stored"
        ));
    }
    Ok((Timestamp(saved_at), bytes))
}

/// Maps any redb error to a store error: damage to `Corrupt`, everything else to `Io` (the
/// opens, which know the store's path, report a held store as `StoreError::Held` themselves).
pub(crate) fn redb_err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(what) => StoreError::Corrupt(what),
        other => StoreError::Io(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(g: Granularity, start_secs: u64, pool: &str) -> BucketKey {
        BucketKey {
            granularity: g,
            start_secs,
            series: SeriesKey {
                pool: Name::new(pool).unwrap(),
                method: Method::ZeroCopy,
                size_class: 20,
                data_type: DataType::Tensor,
            },
        }
    }

    #[test]
    fn samples_with_non_finite_measures_still_read_back() {
        let req = perf_core::TransferRequest::new(4096);
        let d = perf_core::TransferPolicy::decide(
            &perf_core::FixedPolicy(Method::Grpc),
            &req,
            &perf_core::DecisionContext::idle(perf_core::Timestamp(0)),
        );
        let mut m = TransferMetrics::new(
            &req,
            &d,
            Method::Grpc,
            f64::NAN,
            perf_core::Timestamp(7),
            perf_core::SystemState::IDLE,
        );
        m.throughput_bps = f64::INFINITY;
        m.predicted_latency_us = Some(f64::NEG_INFINITY);
        let back = decode_sample(&encode_sample(&m).unwrap()).unwrap();
        assert_eq!((back.latency_us, back.throughput_bps), (0.0, 0.0));
        assert_eq!(back.predicted_latency_us, None);
        assert_eq!(back.started_at, m.started_at);
    }

    #[test]
    fn models_round_trip_and_any_flipped_byte_is_caught() {
        let value = encode_model(Timestamp(42), b"weights");
        assert_eq!(value.len(), MODEL_HEADER_LEN + 7);
        assert_eq!(
            decode_model(&value).unwrap(),
            (Timestamp(42), &b"weights"[..])
        );
        assert_eq!(
            decode_model(&encode_model(Timestamp(1), b"")).unwrap(),
            (Timestamp(1), &b""[..])
        );
        for i in 0..value.len() {
            let mut bad = value.clone();
            bad[i] ^= 0x10;
            assert!(decode_model(&bad).is_err(), "byte {i} flipped");
        }
        for n in 0..value.len() {
            assert!(decode_model(&value[..n]).is_err(), "prefix of {n} bytes");
        }
    }

    #[test]
    fn bucket_keys_round_trip_and_sort_by_granularity_then_time() {
        let keys = [
            key(Granularity::Second, 5, "zzzz"),
            key(Granularity::Second, 6, "a"),
            key(Granularity::Second, 300, "a"),
            key(Granularity::Minute, 0, "a"),
            key(Granularity::Hour, 0, "a"),
        ];
        let encoded: Vec<Vec<u8>> = keys.iter().map(encode_bucket_key).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(sorted, encoded);
        for (k, e) in keys.iter().zip(&encoded) {
            assert_eq!(&decode_bucket_key(e).unwrap(), k);
        }
        let first = &encoded[0];
        for n in 0..first.len() {
            assert!(
                decode_bucket_key(&first[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut bad = first.clone();
        bad[0] = 9;
        assert!(decode_bucket_key(&bad).is_err());
    }
}
