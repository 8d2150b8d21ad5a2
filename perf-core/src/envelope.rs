//! The checked envelope model files use: a header line naming format, layout version, length
//! and checksum, then the body.

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
}
