//! Zero-copy references: what a worker needs to find a payload in shared memory, and the HMAC that proves the host sent it.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use hmac::{Hmac, Mac};
use perf_core::SegmentId;
use sha2::Sha256;

/// Length of the per-host secret, in bytes.
pub const SECRET_LEN: usize = 32;
/// Longest format name a reference may carry, in bytes.
pub const MAX_FORMAT_LEN: usize = 32;
/// Longest named-segment name a reference may carry, in bytes.
pub const MAX_SEGMENT_NAME_LEN: usize = 255;

/// The per-host secret that signs references. Never sent over the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_LEN]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a secret could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The operating system gave no randomness.
    #[error("cannot generate a secret: {0}")]
    Random(String),
    /// The secret file could not be read or written.
    #[error("secret file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The secret file is readable by others or has the wrong length.
    #[error("secret file {path} is unsafe: {why}")]
    Unsafe {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
}

impl Secret {
    /// A fresh random secret.
    pub fn generate() -> Result<Secret, SecretError> {
        let mut key = [0u8; SECRET_LEN];
        getrandom::fill(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
        Ok(Secret(key))
    }

    /// A secret from known bytes (tests, or a key distributed by other means).
    pub const fn from_bytes(key: [u8; SECRET_LEN]) -> Secret {
        Secret(key)
    }

    /// Writes the secret to a new file readable by its owner only (0600).
    pub fn write_file(&self, path: &Path) -> Result<(), SecretError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| SecretError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        f.write_all(&self.0).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Reads a secret file, refusing one that is not a regular file, that others can read or
    /// that is not exactly [`SECRET_LEN`] bytes.
    ///
    /// The mode is checked on the opened file, and at most one byte past [`SECRET_LEN`] is
    /// read, so a FIFO, a device or a file swapped after a check is never trusted or read on.
    pub fn read_file(path: &Path) -> Result<Secret, SecretError> {
        use perf_platform::{FileError, RegularFile};
        use std::os::unix::fs::MetadataExt;
        let shown = path.display().to_string();
        let failed = |e: FileError| match e {
            FileError::Open { source, .. } | FileError::Read { source, .. } => SecretError::Io {
                path: shown.clone(),
                source,
            },
            FileError::NotRegular { kind, .. } => SecretError::Unsafe {
                path: shown.clone(),
                why: format!("it is {kind}, expected a regular file"),
            },
            FileError::TooLarge { .. } | FileError::NotText { .. } => SecretError::Unsafe {
                path: shown.clone(),
                why: format!("more than {SECRET_LEN} bytes, expected {SECRET_LEN}"),
            },
        };
        let file = RegularFile::open(path).map_err(failed)?;
        let mode = file.metadata().mode();
        if mode & 0o077 != 0 {
            return Err(SecretError::Unsafe {
                path: shown,
                why: format!("mode {:o}, expected 600", mode & 0o777),
            });
        }
        let bytes = file.read_to_end(SECRET_LEN as u64).map_err(failed)?;
        let n = bytes.len();
        let key: [u8; SECRET_LEN] = bytes.try_into().map_err(|_| SecretError::Unsafe {
            path: shown.clone(),
            why: format!("{n} bytes, expected {SECRET_LEN}"),
        })?;
        Ok(Secret(key))
    }
}

/// Everything a worker needs to read one payload from shared memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Chosen by the host, unique per transfer.
    pub transfer_id: u64,
    /// The segment.
    pub segment: SegmentId,
    /// The segment file's inode, so that a reused descriptor or name is refused.
    pub segment_inode: u64,
    /// Mapped length of the whole segment.
    pub segment_len: u64,
    /// Where the payload starts.
    pub offset: u64,
    /// Payload length.
    pub length: u64,
    /// Payload format name.
    pub format: String,
    /// Expiry, in milliseconds since the Unix epoch.
    pub expires_unix_ms: u64,
    /// HMAC-SHA256 over every field above.
    pub token: [u8; 32],
}

/// Why a worker refused a reference; nothing was mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The token does not match the reference: forged or altered.
    #[error("reference {0} has an invalid token")]
    Forged(u64),
    /// The reference expired before it arrived.
    #[error("reference {id} expired at {expires_unix_ms} ms, it is now {now_unix_ms} ms")]
    Expired {
        /// The transfer.
        id: u64,
        /// When it expired.
        expires_unix_ms: u64,
        /// When it was checked.
        now_unix_ms: u64,
    },
    /// The payload does not lie inside the segment.
    #[error(
        "reference {id} points at bytes {offset}..{offset}+{length} outside a segment of {segment_len} bytes"
    )]
    OutOfBounds {
        /// The transfer.
        id: u64,
        /// Claimed start.
        offset: u64,
        /// Claimed length.
        length: u64,
        /// The segment's length.
        segment_len: u64,
    },
    /// The segment belongs to another process than the peer that sent it.
    #[error("reference {id} names a segment of process {owner}, expected the peer {peer}")]
    ForeignOwner {
        /// The transfer.
        id: u64,
        /// The segment's owner.
        owner: u32,
        /// The peer that sent the reference.
        peer: u32,
    },
    /// A field is larger than the protocol allows.
    #[error("reference {id}: {what}")]
    Malformed {
        /// The transfer.
        id: u64,
        /// What is wrong.
        what: String,
    },
}

type HmacSha256 = Hmac<Sha256>;

impl Reference {
    fn mac(&self, secret: &Secret) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&secret.0).expect("HMAC takes keys of any length");
        mac.update(b"perfopt-ref-v1");
        mac.update(&self.transfer_id.to_le_bytes());
        match &self.segment {
            SegmentId::Memfd { pid, fd } => {
                mac.update(&[1]);
                mac.update(&pid.to_le_bytes());
                mac.update(&fd.to_le_bytes());
            }
            SegmentId::Named(name) => {
                mac.update(&[2]);
                mac.update(&(name.len() as u64).to_le_bytes());
                mac.update(name.as_bytes());
            }
        }
        for v in [
            self.segment_inode,
            self.segment_len,
            self.offset,
            self.length,
            self.expires_unix_ms,
        ] {
            mac.update(&v.to_le_bytes());
        }
        mac.update(&(self.format.len() as u64).to_le_bytes());
        mac.update(self.format.as_bytes());
        mac
    }

    /// Computes and stores the token.
    pub fn sign(&mut self, secret: &Secret) {
        self.token = self.mac(secret).finalize().into_bytes().into();
    }

    /// Checks token, expiry, bounds and owner, in that order of cost; a
    /// reference that passes may be mapped.
    ///
    /// `peer_pid` is the process that negotiated the connection; a memfd
    /// segment must belong to it. Named segments carry their owner in their
    /// name and are checked by the platform when opened.
    pub fn verify(
        &self,
        secret: &Secret,
        now_unix_ms: u64,
        peer_pid: Option<u32>,
    ) -> Result<(), ReferenceError> {
        let id = self.transfer_id;
        if self.format.len() > MAX_FORMAT_LEN {
            return Err(ReferenceError::Malformed {
                id,
                what: format!(
                    "format name of {} bytes, expected at most {MAX_FORMAT_LEN}",
                    self.format.len()
                ),
            });
        }
        if let SegmentId::Named(name) = &self.segment
            && name.len() > MAX_SEGMENT_NAME_LEN
        {
            return Err(ReferenceError::Malformed {
                id,
                what: format!(
                    "segment name of {} bytes, expected at most {MAX_SEGMENT_NAME_LEN}",
                    name.len()
                ),
            });
        }
        self.mac(secret)
            .verify_slice(&self.token)
            .map_err(|_| ReferenceError::Forged(id))?;
        if now_unix_ms > self.expires_unix_ms {
            return Err(ReferenceError::Expired {
                id,
                expires_unix_ms: self.expires_unix_ms,
                now_unix_ms,
            });
        }
        let end = self.offset.checked_add(self.length);
        if end.is_none_or(|end| end > self.segment_len) {
            return Err(ReferenceError::OutOfBounds {
                id,
                offset: self.offset,
                length: self.length,
                segment_len: self.segment_len,
            });
        }
        if let (SegmentId::Memfd { pid, .. }, Some(peer)) = (&self.segment, peer_pid)
            && *pid != peer
        {
            return Err(ReferenceError::ForeignOwner {
                id,
                owner: *pid,
                peer,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Reference {
        Reference {
            transfer_id: 7,
            segment: SegmentId::Memfd { pid: 100, fd: 5 },
            segment_inode: 42,
            segment_len: 1 << 20,
            offset: 0,
            length: 4096,
            format: "raw".into(),
            expires_unix_ms: 10_000,
            token: [0; 32],
        }
    }

    fn signed() -> (Secret, Reference) {
        let secret = Secret::from_bytes([9; 32]);
        let mut r = reference();
        r.sign(&secret);
        (secret, r)
    }

    /// RFC 4231 test case 2: the HMAC-SHA256 underneath is the standard one.
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let tag = mac.finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_signed_reference_verifies() {
        let (secret, r) = signed();
        assert_eq!(r.verify(&secret, 9_999, Some(100)), Ok(()));
        assert_ne!(r.token, [0; 32]);
    }

    #[test]
    fn every_altered_field_or_wrong_secret_is_forged() {
        let (secret, r) = signed();
        let alterations: [fn(&mut Reference); 9] = [
            |r| r.transfer_id += 1,
            |r| r.segment = SegmentId::Memfd { pid: 100, fd: 6 },
            |r| r.segment_inode += 1,
            |r| r.segment_len += 1,
            |r| r.offset += 1,
            |r| r.length -= 1,
            |r| r.format = "arrow".into(),
            |r| r.expires_unix_ms += 1,
            |r| r.token[31] ^= 1,
        ];
        for alter in alterations {
            let mut forged = r.clone();
            alter(&mut forged);
            assert_eq!(
                forged.verify(&secret, 0, Some(100)),
                Err(ReferenceError::Forged(forged.transfer_id))
            );
        }
        let other = Secret::from_bytes([8; 32]);
        assert_eq!(
            r.verify(&other, 0, Some(100)),
            Err(ReferenceError::Forged(7))
        );
    }

    #[test]
    fn expired_out_of_bounds_and_foreign_references_are_refused() {
        let secret = Secret::from_bytes([9; 32]);
        let (_, r) = signed();
        assert!(matches!(
            r.verify(&secret, 10_001, Some(100)),
            Err(ReferenceError::Expired { .. })
        ));
        let mut oob = reference();
        oob.offset = (1 << 20) - 100;
        oob.sign(&secret);
        assert!(matches!(
            oob.verify(&secret, 0, Some(100)),
            Err(ReferenceError::OutOfBounds { .. })
        ));
        let mut overflow = reference();
        overflow.offset = u64::MAX;
        overflow.sign(&secret);
        assert!(matches!(
            overflow.verify(&secret, 0, Some(100)),
            Err(ReferenceError::OutOfBounds { .. })
        ));
        assert_eq!(
            r.verify(&secret, 0, Some(101)),
            Err(ReferenceError::ForeignOwner {
                id: 7,
                owner: 100,
                peer: 101
            })
        );
        let mut long = reference();
        long.format = "x".repeat(33);
        long.sign(&secret);
        assert!(matches!(
            long.verify(&secret, 0, Some(100)),
            Err(ReferenceError::Malformed { .. })
        ));
    }

    #[test]
    fn secret_files_are_owner_only_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let s = Secret::generate().unwrap();
        s.write_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Secret::read_file(&path).unwrap(), s);
        assert!(
            s.write_file(&path).is_err(),
            "an existing file is never overwritten"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Secret::read_file(&path),
            Err(SecretError::Unsafe { .. })
        ));
        let short = dir.path().join("short");
        std::fs::write(&short, b"abc").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Secret::read_file(&short),
            Err(SecretError::Unsafe { .. })
        ));
        assert_ne!(Secret::generate().unwrap(), s);
    }

    #[test]
    fn a_secret_is_read_from_a_regular_file_only_and_never_past_its_length() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // Owner-only, so that only the kind of file can refuse it.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .args(["-m", "600"])
            .arg(&fifo)
            .status()
            .expect("the mkfifo command (coreutils) runs");
        assert!(made.success());
        let err = Secret::read_file(&fifo).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "secret file {} is unsafe: it is a FIFO, expected a regular file",
                fifo.display()
            )
        );
        let long = dir.path().join("long");
        std::fs::write(&long, [7u8; SECRET_LEN + 1]).unwrap();
        std::fs::set_permissions(&long, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Secret::read_file(&long).unwrap_err().to_string(),
            format!(
                "secret file {} is unsafe: more than 32 bytes, expected 32",
                long.display()
            )
        );
        let err = Secret::read_file(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, SecretError::Io { .. }), "{err:?}");
    }
}
