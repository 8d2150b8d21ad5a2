//! CPU load on demand: burner processes (`perfopt burn`, one busy core each) that
//! `model collect` and `run --load-after` start and always reap.

use std::process::{Child, Command, Stdio};

use crate::exit::Exit;

/// The most burner processes (and burn threads) accepted.
pub(crate) const MAX_BURNERS: u32 = 64;
/// How long burners run at most when started here; they also stop when this process exits.
pub(crate) const BURN_SECONDS: u64 = 3600;

/// `perfopt burn` child processes; killed and reaped when dropped, on error and panic too.
pub(crate) struct Burners(Vec<Child>);

impl Burners {
    /// Starts `n` burners, one busy core each.
    pub(crate) fn start(n: u32) -> Result<Burners, Exit> {
        let exe = std::env::current_exe().map_err(Exit::failed)?;
        let mut burners = Burners(Vec::new());
        for _ in 0..n {
            let child = Command::new(&exe)
                .args(["burn", "--seconds", &BURN_SECONDS.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| Exit::failed(format_args!("cannot start a CPU burner: {e}")))?;
            burners.0.push(child);
        }
        Ok(burners)
    }

    /// Fails when a burner stopped early: the load was not what the rows say.
    pub(crate) fn check_running(&mut self) -> Result<(), Exit> {
        for child in &mut self.0 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Exit::failed(format_args!(
                    "a CPU burner stopped during the measurements ({status})"
                )));
            }
        }
        Ok(())
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}
