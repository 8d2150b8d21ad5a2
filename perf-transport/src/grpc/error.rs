//! Errors of the gRPC transport: what a host's call, a worker's server and a configuration can
//! fail with.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::messages::Code;

/// A configuration value out of its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {got}, expected {expected}")]
pub struct ConfigError {
    /// The configuration field.
    pub field: &'static str,
    /// The value given.
    pub got: String,
    /// What would have been accepted.
    pub expected: String,
}

impl ConfigError {
    pub(crate) fn new(
        field: &'static str,
        got: impl ToString,
        expected: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            field,
            got: got.to_string(),
            expected: expected.into(),
        }
    }
}

/// Why a host's call to a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client configuration is out of bounds.
    #[error("invalid client configuration: {0}")]
    Config(#[from] ConfigError),
    /// No connection could be made to the worker within the connect timeout.
    #[error("could not connect to {endpoint}: {message}")]
    Connect {
        /// The worker's endpoint.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// The call did not complete before its deadline.
    #[error("{call} did not complete within its deadline of {deadline:?}")]
    Timeout {
        /// The call: `negotiate`, `send_inline`, `send_reference` or `health`.
        call: &'static str,
        /// The deadline it had.
        deadline: Duration,
    },
    /// The worker is unreachable or the connection broke during the call.
    #[error("{call} failed, the worker is unavailable: {message}")]
    Unavailable {
        /// The call.
        call: &'static str,
        /// What the channel reported.
        message: String,
    },
    /// The worker refused the call with a gRPC status.
    #[error("{call} was rejected by the worker with {code}: {message}")]
    Rejected {
        /// The call.
        call: &'static str,
        /// The status code.
        code: Code,
        /// The worker's message.
        message: String,
    },
    /// The call's arguments are out of bounds; nothing was sent.
    #[error("invalid {call} request: {message}")]
    InvalidRequest {
        /// The call.
        call: &'static str,
        /// What was expected and what came.
        message: String,
    },
    /// The worker's code failed on the payload (status `UNKNOWN` with the trailer
    /// `perfopt-handler-error`); the payload arrived, and the same code would fail again.
    #[error("{message}")]
    Handler {
        /// The call.
        call: &'static str,
        /// The kind the worker named (an exception's type, `panic`, `bad-reply`).
        kind: String,
        /// The worker's message: `the handler failed on transfer <id>: <kind>: <message>`.
        message: String,
    },
    /// The worker's code ran, and the worker holds too many unreleased replies to hold this
    /// one (status `RESOURCE_EXHAUSTED` with the trailer `perfopt-reply-refused`); running the
    /// call again would run the code again, so it is neither retried nor sent another way.
    #[error("{call}: {message}")]
    ReplyRefused {
        /// The call.
        call: &'static str,
        /// The worker's message.
        message: String,
    },
    /// The worker answered something this side cannot accept.
    #[error("{call} got an answer that breaks the protocol: {message}")]
    Protocol {
        /// The call.
        call: &'static str,
        /// What was expected and what came.
        message: String,
    },
}

impl ClientError {
    /// Classifies a status a call ended with.
    pub(crate) fn from_status(
        call: &'static str,
        deadline: Duration,
        status: &tonic::Status,
    ) -> ClientError {
        let code = Code::of_tonic(status.code());
        let timed_out = code == Code::DeadlineExceeded
            || (code == Code::Cancelled
                && status.message() == tonic::TimeoutExpired(()).to_string());
        if timed_out {
            return ClientError::Timeout { call, deadline };
        }
        if code == Code::Unknown
            && let Some(kind) = status
                .metadata()
                .get(crate::worker::desk::HANDLER_ERROR_KEY)
                .and_then(|v| v.to_str().ok())
        {
            return ClientError::Handler {
                call,
                kind: kind.to_owned(),
                message: status.message().to_owned(),
            };
        }
        if code == Code::ResourceExhausted
            && status
                .metadata()
                .get(crate::worker::desk::REPLY_REFUSED_KEY)
                .is_some()
        {
            return ClientError::ReplyRefused {
                call,
                message: status.message().to_owned(),
            };
        }
        // A status with a source was made on this side from a channel error (the connection
        // broke or could not be made); one the worker sent has none.
        let local = std::error::Error::source(status);
        if code == Code::Unavailable || local.is_some() {
            let mut message = status.message().to_owned();
            if let Some(source) = local {
                push_chain(&mut message, source);
            }
            return ClientError::Unavailable { call, message };
        }
        ClientError::Rejected {
            call,
            code,
            message: status.message().to_owned(),
        }
    }

    /// The gRPC status code the worker rejected the call with, if it did.
    pub fn rejection_code(&self) -> Option<Code> {
        match self {
            ClientError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the call ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }
}

/// Why a worker's server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process already listens on the socket path.
    #[error("another process listens on {}, expected a free socket path", path.display())]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the socket path; it is left alone.
    #[error("{} is {found}, expected a socket file or nothing", path.display())]
    NotASocket {
        /// The socket path.
        path: PathBuf,
        /// What is there instead.
        found: &'static str,
    },
    /// A file system or socket operation failed.
    #[error("could not {action} {target}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        target: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The gRPC server failed while serving.
    #[error("the gRPC server on {endpoint} failed: {message}")]
    Serve {
        /// The endpoint served.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
}

/// An error and its sources, joined by `: `; a source whose text is already in the message
/// (tonic and hyper repeat their causes in their own texts) is left out.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = String::new();
    push_chain(&mut text, err);
    text
}

/// Appends `err` and its sources to `text`, each after `: `, leaving out those whose text is
/// empty or already in `text`.
fn push_chain(text: &mut String, err: &dyn std::error::Error) {
    let mut next = Some(err);
    while let Some(it) = next {
        let part = it.to_string();
        if !part.is_empty() && !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        next = it.source();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a fixed text and an optional source.
    #[derive(Debug)]
    struct Link(&'static str, Option<Box<Link>>);

    impl std::fmt::Display for Link {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Link {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    fn chain(texts: &[&'static str]) -> Link {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| Some(Link(text, source.map(Box::new))))
            .unwrap()
    }

    #[test]
    fn each_cause_is_told_once() {
        let refused = "Connection refused (os error 111)";
        let err = chain(&["transport error", refused, refused]);
        assert_eq!(
            error_chain(&err),
            "transport error: Connection refused (os error 111)"
        );
        let wrapped = chain(&[
            "error trying to connect: tcp connect error",
            "tcp connect error",
            refused,
        ]);
        assert_eq!(
            error_chain(&wrapped),
            "error trying to connect: tcp connect error: Connection refused (os error 111)"
        );
    }

    #[test]
    fn distinct_causes_are_all_kept_in_order() {
        let err = chain(&["could not read", "", "permission denied"]);
        assert_eq!(error_chain(&err), "could not read: permission denied");
    }

    #[test]
    fn a_status_made_from_a_channel_error_tells_each_cause_once() {
        // The shape tonic gives a call whose reconnection was refused.
        let mut status = tonic::Status::new(tonic::Code::Unavailable, "tcp connect error");
        status.set_source(std::sync::Arc::new(chain(&[
            "transport error",
            "tcp connect error",
            "tcp connect error",
            "Connection refused (os error 111)",
        ])));
        let err = ClientError::from_status("negotiate", Duration::from_secs(1), &status);
        assert_eq!(
            err.to_string(),
            "negotiate failed, the worker is unavailable: tcp connect error: transport error: \
             Connection refused (os error 111)"
        );
    }
}
