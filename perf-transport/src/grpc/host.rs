//! This host's identity and platform, as both sides announce them in capability negotiation.

use std::fs;
use std::sync::OnceLock;

use super::messages::PeerCapabilities;
use super::proto::Capabilities;

/// Where Linux keeps the identity of the current boot.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
/// Where Linux keeps the kernel release.
const OS_RELEASE_PATH: &str = "/proc/sys/kernel/osrelease";
/// Longest identity or kernel release read, in bytes.
const MAX_ID_LEN: usize = 128;

/// This host's identity for the current boot (the kernel's boot id), or an empty string where
/// there is none. Two processes with the same non-empty host id share a kernel, so a segment one
/// creates can be opened by the other.
pub fn host_id() -> &'static str {
    static HOST_ID: OnceLock<String> = OnceLock::new();
    HOST_ID.get_or_init(|| read_bounded(BOOT_ID_PATH).unwrap_or_default())
}

/// The operating system, architecture and (where known) kernel release, for reports:
/// `linux x86_64 6.8.0`.
pub fn platform() -> &'static str {
    static PLATFORM: OnceLock<String> = OnceLock::new();
    PLATFORM.get_or_init(|| {
        let base = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
        match read_bounded(OS_RELEASE_PATH) {
            Some(release) => format!("{base} {release}"),
            None => base,
        }
    })
}

/// Whether the peer that sent `remote` runs on this host: both know their host id and the ids
/// are the same. A peer on another host can never be sent a shared-memory reference.
pub fn same_host(remote: &PeerCapabilities) -> bool {
    !remote.host_id.is_empty() && remote.host_id == host_id()
}

/// The capabilities this process announces, with the limits of its side.
pub(crate) fn local_capabilities(
    zero_copy: bool,
    max_inline_bytes: u64,
    max_segment_bytes: u64,
    features: Vec<String>,
) -> Capabilities {
    Capabilities {
        protocol_version: super::PROTOCOL_VERSION,
        pid: std::process::id(),
        host_id: host_id().to_owned(),
        zero_copy,
        max_inline_bytes,
        max_segment_bytes,
        platform: platform().to_owned(),
        features,
    }
}

/// The trimmed first line of a small text file, if it exists and is short.
fn read_bounded(path: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty() && line.len() <= MAX_ID_LEN).then(|| line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_with_this_host_id_is_on_this_host_and_others_are_not() {
        let mut remote = PeerCapabilities::from_wire(local_capabilities(false, 0, 0, Vec::new()));
        assert_eq!(same_host(&remote), !host_id().is_empty());
        remote.host_id = "another-boot".to_owned();
        assert!(!same_host(&remote));
        remote.host_id.clear();
        assert!(!same_host(&remote));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_reports_a_boot_id_and_kernel_release() {
        assert_eq!(host_id().len(), 36, "boot id {:?}", host_id());
        assert!(platform().starts_with("linux "), "{}", platform());
        assert_eq!(platform().split(' ').count(), 3, "{}", platform());
    }
}
