//! The wall clock, as the library's timestamps.

use perf_core::Timestamp;

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now() -> Timestamp {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Timestamp(nanos)
}
