//! `perfopt config`: print the default, validate a file, and show what a change would do.

use std::path::PathBuf;

use clap::Subcommand;
use perf_core::HumanSize;
use perf_core::config::{ConfigDiff, DEFAULT_CONFIG_TOML};
use serde_json::{Value, json};

use crate::args::config;
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
            config(Some(file))?;
            println!("ok");
            Ok(())
        }
        ConfigCommand::Diff { old, new, json } => {
            let old = config(Some(old))?;
            let new = config(Some(new))?;
            let diff = old.diff(&new).map_err(Exit::bad_input)?;
            if *json {
                println!("{}", diff_json(&diff));
            } else {
                print!("{}", diff_text(&diff));
            }
            Ok(())
        }
    }
}

/// The text report of a diff.
fn diff_text(d: &ConfigDiff) -> String {
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
fn diff_json(d: &ConfigDiff) -> Value {
    json!({
        "keys": d.keys,
        "flips": d.flips.iter().map(|f| json!({
            "pool": f.pool, "size": f.size,
            "old": {"method": f.old.0.to_string(), "reason": f.old.1.to_string()},
            "new": {"method": f.new.0.to_string(), "reason": f.new.1.to_string()},
        })).collect::<Vec<_>>(),
        "samples": d.samples,
    })
}
