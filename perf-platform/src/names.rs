//! Unguessable segment names: random bits from the operating system, and the checks a name
//! from outside passes before it reaches a system call.

use perf_core::seams::ShmError;

/// The longest segment name accepted from outside, in bytes (Linux's `NAME_MAX`).
pub(crate) const MAX_NAME_LEN: usize = 255;

/// `N` random bytes from the operating system's generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], ShmError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| {
        ShmError::Os(format!(
            "reading random bytes for a segment name failed: {e}"
        ))
    })?;
    Ok(bytes)
}

/// 128 random bits as 32 lowercase hex digits.
#[cfg_attr(target_os = "macos", allow(dead_code))]
pub(crate) fn random_hex128() -> Result<String, ShmError> {
    Ok(hex(&random_bytes::<16>()?))
}

/// Lowercase hex digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Whether `c` may appear in a segment name or prefix: ASCII letters, digits, `-`, `_`, `.`.
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

#[cfg_attr(windows, allow(dead_code))]
/// The file name inside the segment directory for a segment called `name` (`/file`), or why
/// the name is refused: it must be `/` followed by 1 to 254 name characters, and not `.`/`..`.
pub(crate) fn file_name(name: &str) -> Result<&str, String> {
    let Some(file) = name.strip_prefix('/') else {
        return Err(format!(
            "invalid segment name: expected a leading '/', got {:?}",
            truncated(name)
        ));
    };
    if file.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "invalid segment name: expected 1 to {} characters after '/', got {}",
            MAX_NAME_LEN - 1,
            file.len()
        ));
    }
    if file == "." || file == ".." || !file.chars().all(is_name_char) {
        return Err(format!(
            "invalid segment name: expected letters, digits, '-', '_' or '.', got {:?}",
            truncated(name)
        ));
    }
    Ok(file)
}

/// At most the first 64 characters of `s`, for error messages about untrusted input.
pub(crate) fn truncated(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// A stable 64-bit identity for a name, for backends without inodes (FNV-1a).
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn name_identity(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_names_differ_and_are_hex() {
        let a = random_hex128().unwrap();
        let b = random_hex128().unwrap();
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn hex_encodes_every_nibble() {
        assert_eq!(hex(&[0x00, 0x9f, 0xa0, 0xff]), "009fa0ff");
    }

    #[test]
    fn names_from_outside_are_checked() {
        assert_eq!(file_name("/perfopt-1-2-3-ab"), Ok("perfopt-1-2-3-ab"));
        for bad in ["perfopt", "/", "/..", "/.", "/a/b", "/a b", "/é"] {
            assert!(file_name(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("/{}", "a".repeat(MAX_NAME_LEN));
        assert!(file_name(&long).unwrap_err().contains("expected 1 to 254"));
    }

    #[test]
    fn untrusted_text_is_cut_in_messages() {
        let long = "x".repeat(1000);
        assert_eq!(truncated(&long).len(), 64);
        assert_eq!(truncated("short"), "short");
    }

    #[test]
    fn name_identity_is_stable_and_distinguishes() {
        assert_eq!(name_identity("a"), name_identity("a"));
        assert_ne!(name_identity("a"), name_identity("b"));
    }
}
