//! The process's limit of open files, which bounds how many connections a server can keep.

/// The most descriptors [`raise_open_file_limit`] asks for.
const MAX_RAISED: u64 = 1 << 20;

/// The soft limit on open files of this process, `None` where the platform reports none (or
/// none is set).
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Raises the soft limit on open files to the hard limit (at most 1,048,576), as servers that
/// keep many connections do; returns the limit in force afterwards. The default soft limit on
/// Linux is 1,024 while the hard limit is usually far higher.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let target = limit
            .maximum
            .map_or(MAX_RAISED, |hard| hard.min(MAX_RAISED));
        if limit.current.is_some_and(|soft| soft < target) {
            // A refusal leaves the old limit, which is still a valid one.
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(target),
                    maximum: limit.maximum,
                },
            );
        }
        open_file_limit()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_soft_limit_rises_to_the_hard_one() {
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        let raised = raise_open_file_limit().expect("linux reports a limit");
        assert_eq!(Some(raised), open_file_limit());
        assert_eq!(raised, hard.map_or(MAX_RAISED, |h| h.min(MAX_RAISED)));
    }
}
