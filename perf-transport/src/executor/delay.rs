//! A test hook for performance gates, compiled only with the `delay-injection` feature: an
//! artificial delay on every zero-copy transfer, so that a gate can be shown to fail.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable holding the delay, in whole microseconds.
pub(crate) const DELAY_VAR: &str = "PERFOPT_INJECT_ZERO_COPY_DELAY_US";

/// Above this, most of the delay is slept rather than spun.
const SPIN_AT_MOST: Duration = Duration::from_millis(2);

/// The delay [`DELAY_VAR`] asks for, read once: zero when it is unset or not a whole number.
fn configured() -> Duration {
    static DELAY: OnceLock<Duration> = OnceLock::new();
    *DELAY.get_or_init(|| {
        std::env::var(DELAY_VAR)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_micros)
    })
}

/// Waits for the configured delay, inside a zero-copy transfer's timed part: a short delay is
/// spun for precision, a long one slept up to its last millisecond.
pub(crate) async fn inject() {
    let delay = configured();
    if delay.is_zero() {
        return;
    }
    let until = Instant::now() + delay;
    if delay > SPIN_AT_MOST {
        tokio::time::sleep(delay - Duration::from_millis(1)).await;
    }
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}
