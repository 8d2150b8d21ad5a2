//! The hidden `perfopt burn` command: keeps CPUs busy, as the burner processes that
//! `model collect` and `run --load-after` start.

use std::time::{Duration, Instant};

use clap::Args;

use crate::exit::Exit;
use crate::load::{BURN_SECONDS, MAX_BURNERS};

/// The longest `perfopt burn --seconds` (a day).
const MAX_BURN_SECONDS: u64 = 86_400;

/// Arguments of the hidden `perfopt burn`.
#[derive(Debug, Args)]
pub(crate) struct BurnArgs {
    /// Stops after this many seconds (1 to 86400), or earlier when killed or when the
    /// process that started it exits.
    #[arg(long, default_value_t = BURN_SECONDS)]
    seconds: u64,
    /// Busy threads (1 to 64).
    #[arg(long, default_value_t = 1)]
    threads: u32,
}

/// Runs `perfopt burn`: spins on `--threads` cores until the time is up.
pub(crate) fn burn(args: &BurnArgs) -> Result<(), Exit> {
    if !(1..=MAX_BURN_SECONDS).contains(&args.seconds) {
        return Err(Exit::bad_input(format_args!(
            "--seconds {} is out of range, expected 1 to {MAX_BURN_SECONDS}",
            args.seconds
        )));
    }
    if !(1..=MAX_BURNERS).contains(&args.threads) {
        return Err(Exit::bad_input(format_args!(
            "--threads {} is out of range, expected 1 to {MAX_BURNERS}",
            args.threads
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let parent = std::os::unix::process::parent_id();
    let spinners: Vec<_> = (1..args.threads)
        .map(|_| std::thread::spawn(move || spin(deadline, parent)))
        .collect();
    spin(deadline, parent);
    for it in spinners {
        let _ = it.join();
    }
    Ok(())
}

/// Keeps one core busy until `deadline`, or until the process that started this one is gone.
fn spin(deadline: Instant, parent: u32) {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    loop {
        for _ in 0..200_000 {
            x = std::hint::black_box(x.rotate_left(7) ^ 0x5DEE_CE66D).wrapping_mul(31);
        }
        if Instant::now() >= deadline || std::os::unix::process::parent_id() != parent {
            return;
        }
    }
}
