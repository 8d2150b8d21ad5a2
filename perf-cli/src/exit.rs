//! How a command fails: an exit code and the message for standard error; and how its output
//! ends when the reader of standard output goes away (`perfopt export | head -1`).

use std::any::Any;
use std::fmt::Display;
use std::io::{self, BufWriter, StdoutLock, Write};

/// Exit code for bad input: a malformed argument, an invalid file, an unknown name.
pub(crate) const BAD_INPUT: u8 = 2;
/// Exit code for a failure while running: a worker that died, a socket that broke.
pub(crate) const FAILED: u8 = 1;
/// Exit code when the reader of standard output closed it: the command stops quietly, as
/// `head` in a pipeline expects, with no message.
pub(crate) const CLOSED_OUTPUT: u8 = 0;

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

    /// The quiet end of a command whose standard output was closed by its reader.
    pub(crate) fn closed_output() -> Exit {
        Exit {
            code: CLOSED_OUTPUT,
            message: String::new(),
        }
    }
}

/// A failed write of a command's output: the quiet end when the reader closed the pipe, a
/// failure otherwise (a full disk).
impl From<io::Error> for Exit {
    fn from(e: io::Error) -> Exit {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Exit::closed_output()
        } else {
            Exit::failed(format_args!("cannot write to standard output: {e}"))
        }
    }
}

/// A command's standard output, buffered: write with `writeln!(out, ...)?` (every error becomes
/// an [`Exit`]), then [`Output::finish`].
pub(crate) struct Output(BufWriter<StdoutLock<'static>>);

impl Output {
    /// Standard output, locked for this command.
    pub(crate) fn new() -> Output {
        Output(BufWriter::new(io::stdout().lock()))
    }

    /// Writes out what is buffered.
    pub(crate) fn finish(mut self) -> Result<(), Exit> {
        self.0.flush()?;
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `EPIPE`, the error of a write to a pipe nobody reads, on Linux and macOS.
const EPIPE: i32 = 32;

/// Whether `payload` is the panic of `println!` writing to a closed pipe: how the commands that
/// print with `println!` stop when their reader goes away.
pub(crate) fn is_closed_output_panic(payload: &(dyn Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied());
    let expected = format!(
        "failed printing to stdout: {}",
        io::Error::from_raw_os_error(EPIPE)
    );
    text == Some(expected.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_a_quiet_end_and_other_write_errors_fail() {
        let quiet = Exit::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!((quiet.code, quiet.message.as_str()), (CLOSED_OUTPUT, ""));
        let full = Exit::from(io::Error::from(io::ErrorKind::StorageFull));
        assert_eq!(full.code, FAILED);
        assert!(
            full.message
                .starts_with("error: cannot write to standard output: "),
            "{}",
            full.message
        );
    }

    #[test]
    fn only_the_print_panic_of_a_closed_pipe_is_recognised() {
        let closed = format!(
            "failed printing to stdout: {}",
            io::Error::from_raw_os_error(EPIPE)
        );
        assert!(is_closed_output_panic(&closed));
        let full = format!(
            "failed printing to stdout: {}",
            io::Error::from(io::ErrorKind::StorageFull)
        );
        assert!(!is_closed_output_panic(&full));
        assert!(!is_closed_output_panic(&"index out of bounds"));
    }
}
