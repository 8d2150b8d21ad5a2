//! `perfopt config`: print the default, validate a file, and show what a change would do.

use std::path::PathBuf;

use clap::Subcommand;
use perf_core::config::{DEFAULT_CONFIG_TOML, KeyChange};
use perf_core::{Config, Controller, DecisionContext, HumanSize, Name, Timestamp, TransferRequest};
use serde_json::{Value, json};

use crate::exit::Exit;

/// `perfopt config` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Prints the default configuration, with a comment on every key.
    Default,
    /// Checks a configuration file; prints `ok`, or every error and exits 2.
    Validate {
        /// The file to check.
        file: PathBuf,
    },
    /// Shows what changes from OLD to NEW and which sample decisions would
    /// flip (1 KiB to 1 GiB per pool); applies nothing.
    Diff {
        /// The configuration in force.
        old: PathBuf,
        /// The proposed configuration.
        new: PathBuf,
        /// Prints one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `perfopt config` subcommand.
pub(crate) fn run(cmd: &ConfigCommand) -> Result<(), Exit> {
    match cmd {
        ConfigCommand::Default => {
            print!("{DEFAULT_CONFIG_TOML}");
            Ok(())
        }
        ConfigCommand::Validate { file } => {
            crate::decide::load(Some(file))?;
            println!("ok");
            Ok(())
        }
        ConfigCommand::Diff { old, new, json } => {
            let old = crate::decide::load(Some(old))?;
            let new = crate::decide::load(Some(new))?;
            let diff = diff(&old, &new)?;
            if *json {
                println!("{}", diff_json(&diff));
            } else {
                print!("{}", diff_text(&diff));
            }
            Ok(())
        }
    }
}

/// One sample decision that a change would flip.
#[derive(Debug, PartialEq)]
pub(crate) struct Flip {
    /// The pool.
    pub(crate) pool: Name,
    /// The sample size.
    pub(crate) size: u64,
    /// Method and reason before.
    pub(crate) old: (String, String),
    /// Method and reason after.
    pub(crate) new: (String, String),
}

/// What a configuration change would do.
#[derive(Debug, PartialEq)]
pub(crate) struct Diff {
    /// Changed keys, pools and rules, after defaults are resolved into each pool.
    pub(crate) keys: Vec<KeyChange>,
    /// Sample decisions that change method.
    pub(crate) flips: Vec<Flip>,
    /// How many sample decisions were compared.
    pub(crate) samples: usize,
}

/// Compares two configurations key by key and by sample decisions.
pub(crate) fn diff(old: &Config, new: &Config) -> Result<Diff, Exit> {
    let keys = old.changes_to(new);
    let before = Controller::new(old.clone()).map_err(Exit::bad_input)?;
    let after = Controller::new(new.clone()).map_err(Exit::bad_input)?;
    let mut pools: Vec<Name> = old.pools.keys().chain(new.pools.keys()).copied().collect();
    pools.sort();
    pools.dedup();
    let ctx = DecisionContext::idle(Timestamp(0));
    let mut flips = Vec::new();
    let mut samples = 0;
    for pool in pools {
        for shift in 10..=30 {
            let request = TransferRequest::new(1 << shift).with_pool(pool);
            let (x, y) = (
                before.preview(&request, &ctx),
                after.preview(&request, &ctx),
            );
            samples += 1;
            if x.method != y.method {
                flips.push(Flip {
                    pool,
                    size: request.size,
                    old: (x.method.to_string(), x.reason.code().to_string()),
                    new: (y.method.to_string(), y.reason.code().to_string()),
                });
            }
        }
    }
    Ok(Diff {
        keys,
        flips,
        samples,
    })
}

/// The text report of a diff.
pub(crate) fn diff_text(d: &Diff) -> String {
    let mut out = String::new();
    if d.keys.is_empty() {
        out += "no configuration key changes\n";
    } else {
        out += &format!("{} key(s) change:\n", d.keys.len());
        for k in &d.keys {
            out += &format!("  {k}\n");
        }
    }
    if d.flips.is_empty() {
        out += &format!("no sample decision flips ({} compared)\n", d.samples);
    } else {
        out += &format!(
            "{} of {} sample decisions flip:\n",
            d.flips.len(),
            d.samples
        );
        for f in &d.flips {
            out += &format!(
                "  pool {:<12} {:>10}: {} ({}) -> {} ({})\n",
                f.pool.as_str(),
                HumanSize(f.size).to_string(),
                f.old.0,
                f.old.1,
                f.new.0,
                f.new.1
            );
        }
    }
    out
}

/// The JSON object of a diff.
pub(crate) fn diff_json(d: &Diff) -> Value {
    json!({
        "keys": d.keys,
        "flips": d.flips.iter().map(|f| json!({
            "pool": f.pool, "size": f.size,
            "old": {"method": f.old.0, "reason": f.old.1},
            "new": {"method": f.new.0, "reason": f.new.1},
        })).collect::<Vec<_>>(),
        "samples": d.samples,
    })
}
