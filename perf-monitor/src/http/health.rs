//! Readiness checks and the state they add up to: ready, degraded (serving, with something to
//! fix) or not ready.

use serde::Serialize;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    /// All is well.
    Pass,
    /// Transfers go on, on a simpler path or with something to fix (the model dropped to the
    /// rules, the store failing, no shared memory, fallbacks or failures above their mark).
    Degraded,
    /// Transfers cannot be served yet (no worker connected, the store not open).
    Fail,
}

/// One readiness check: its name, how it came out, what was seen, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// A short, stable name (`workers`, `store`, `shared_memory`, `model`, `fallback_rate`).
    pub name: String,
    /// How it came out.
    pub state: CheckState,
    /// What was seen, in words.
    pub detail: String,
    /// What an operator can do about it, when it did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

impl Check {
    /// A check that passed.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            state: CheckState::Pass,
            detail: detail.into(),
            remedy: None,
        }
    }

    /// A check that found the service degraded, with what to do about it.
    pub fn degraded(
        name: impl Into<String>,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            state: CheckState::Degraded,
            detail: detail.into(),
            remedy: Some(remedy.into()),
        }
    }

    /// A check that failed, with what to do about it.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Check {
        Check {
            state: CheckState::Fail,
            ..Check::degraded(name, detail, remedy)
        }
    }
}

/// What the checks add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Every check passed.
    Ready,
    /// None failed, some found the service degraded: it serves, and says so.
    Degraded,
    /// At least one failed: `/readyz` answers 503.
    NotReady,
}

impl Readiness {
    /// The readiness of `checks`: the worst state among them (no check is ready).
    pub fn of(checks: &[Check]) -> Readiness {
        if checks.iter().any(|c| c.state == CheckState::Fail) {
            Readiness::NotReady
        } else if checks.iter().any(|c| c.state == CheckState::Degraded) {
            Readiness::Degraded
        } else {
            Readiness::Ready
        }
    }

    /// Whether the service takes transfers: ready or degraded.
    pub fn serves(self) -> bool {
        self != Readiness::NotReady
    }

    /// The name used in bodies and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::Degraded => "degraded",
            Readiness::NotReady => "not_ready",
        }
    }
}

/// The plain-text body of `/readyz`: one line, or with `verbose` one line per check in the
/// form Kubernetes' own endpoints use (`[+]name ok`, `[-]name failed: ...`, and `[~]` for a
/// degraded one, with its remedy), then the verdict.
pub fn readyz_text(checks: &[Check], verbose: bool) -> String {
    let readiness = Readiness::of(checks);
    let mut out = String::new();
    if verbose {
        for c in checks {
            let line = match c.state {
                CheckState::Pass => format!("[+]{} ok: {}\n", c.name, c.detail),
                CheckState::Degraded => format!("[~]{} degraded: {}\n", c.name, c.detail),
                CheckState::Fail => format!("[-]{} failed: {}\n", c.name, c.detail),
            };
            out.push_str(&line);
            if let Some(remedy) = &c.remedy {
                out.push_str(&format!("    what to do: {remedy}\n"));
            }
        }
    }
    match readiness {
        Readiness::Ready => out.push_str("readyz check passed\n"),
        Readiness::Degraded => {
            let names: Vec<&str> = degraded_names(checks, CheckState::Degraded);
            out.push_str(&format!(
                "readyz check passed, degraded: {}\n",
                names.join(", ")
            ));
        }
        Readiness::NotReady => {
            let names: Vec<&str> = degraded_names(checks, CheckState::Fail);
            out.push_str(&format!("readyz check failed: {}\n", names.join(", ")));
        }
    }
    out
}

fn degraded_names(checks: &[Check], state: CheckState) -> Vec<&str> {
    checks
        .iter()
        .filter(|c| c.state == state)
        .map(|c| c.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_check_decides_and_the_text_names_it() {
        let ok = Check::pass("store", "open at /d/metrics.redb");
        let model = Check::degraded(
            "model",
            "accuracy 71 % under the 80 % floor: deciding by the rules",
            "retrain with `perfopt model train`",
        );
        let workers = Check::fail("workers", "0 of 2 connected", "check the worker command");
        assert_eq!(Readiness::of(std::slice::from_ref(&ok)), Readiness::Ready);
        assert_eq!(
            Readiness::of(&[ok.clone(), model.clone()]),
            Readiness::Degraded
        );
        assert!(Readiness::Degraded.serves());
        let all = [ok, model, workers];
        assert_eq!(Readiness::of(&all), Readiness::NotReady);
        assert!(!Readiness::NotReady.serves());
        assert_eq!(readyz_text(&all, false), "readyz check failed: workers\n");
        assert_eq!(
            readyz_text(&all, true),
            "[+]store ok: open at /d/metrics.redb\n\
             [~]model degraded: accuracy 71 % under the 80 % floor: deciding by the rules\n    \
             what to do: retrain with `perfopt model train`\n\
             [-]workers failed: 0 of 2 connected\n    what to do: check the worker command\n\
             readyz check failed: workers\n"
        );
        assert_eq!(
            readyz_text(&all[..2], false),
            "readyz check passed, degraded: model\n"
        );
        // No check at all is ready: nothing is wrong.
        assert_eq!(Readiness::of(&[]), Readiness::Ready);
    }
}
