//! How a command fails: an exit code and the message for standard error.

use std::fmt::Display;

/// Exit code for bad input: a malformed argument, an invalid file, an unknown name.
pub(crate) const BAD_INPUT: u8 = 2;
/// Exit code for a failure while running: a worker that died, a socket that broke.
pub(crate) const FAILED: u8 = 1;

/// A failed command: its exit code and what to print on standard error.
#[derive(Debug)]
pub(crate) struct Exit {
    /// The process exit code.
    pub(crate) code: u8,
    /// The message, one line per problem.
    pub(crate) message: String,
}

impl Exit {
    /// A bad-input failure (exit code 2) with a one-line `error:` message.
    pub(crate) fn bad_input(message: impl Display) -> Exit {
        Exit {
            code: BAD_INPUT,
            message: format!("error: {message}"),
        }
    }

    /// A failure while running (exit code 1).
    pub(crate) fn failed(message: impl Display) -> Exit {
        Exit {
            code: FAILED,
            message: format!("error: {message}"),
        }
    }
}
