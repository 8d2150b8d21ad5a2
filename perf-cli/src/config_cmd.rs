//! `perfopt config`: print the default, validate a file, and show what a change would do.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Subcommand;
use perf_core::config::DEFAULT_CONFIG_TOML;
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

/// One changed key of the resolved configuration.
#[derive(Debug, PartialEq)]
pub(crate) struct KeyChange {
    /// Dotted path, e.g. `pools.ml.settings.threshold`.
    pub(crate) path: String,
    /// Value before, if the key existed.
    pub(crate) old: Option<Value>,
    /// Value after, if the key exists.
    pub(crate) new: Option<Value>,
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
    /// Changed keys, after defaults are resolved into each pool.
    pub(crate) keys: Vec<KeyChange>,
    /// Sample decisions that change method.
    pub(crate) flips: Vec<Flip>,
    /// How many sample decisions were compared.
    pub(crate) samples: usize,
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

fn flat(config: &Config) -> Result<BTreeMap<String, Value>, Exit> {
    let v = serde_json::to_value(config).map_err(Exit::bad_input)?;
    let mut out = BTreeMap::new();
    flatten("", &v, &mut out);
    Ok(out)
}

/// Compares two configurations key by key and by sample decisions.
pub(crate) fn diff(old: &Config, new: &Config) -> Result<Diff, Exit> {
    let (a, b) = (flat(old)?, flat(new)?);
    let mut keys = Vec::new();
    for (config, other, flat_config, added) in [(new, old, &b, true), (old, new, &a, false)] {
        // A pool on one side only is one line, plus the settings it sets
        // differently from that side's [defaults].
        for name in config
            .pools
            .keys()
            .filter(|n| !other.pools.contains_key(*n))
        {
            let mark = Some(Value::String("(pool)".into()));
            let (o, n) = if added { (None, mark) } else { (mark, None) };
            keys.push(KeyChange {
                path: format!("pools.{name}"),
                old: o,
                new: n,
            });
            let prefix = format!("pools.{name}.settings.");
            for (path, v) in flat_config.range(prefix.clone()..) {
                let Some(key) = path.strip_prefix(&prefix) else {
                    break;
                };
                if flat_config.get(&format!("defaults.{key}")) != Some(v) {
                    let (o, n) = if added {
                        (None, Some(v.clone()))
                    } else {
                        (Some(v.clone()), None)
                    };
                    keys.push(KeyChange {
                        path: path.clone(),
                        old: o,
                        new: n,
                    });
                }
            }
        }
    }
    let one_sided = |path: &str| {
        path.strip_prefix("pools.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|pool| Name::new(pool).ok())
            .is_some_and(|pool| old.pools.contains_key(&pool) != new.pools.contains_key(&pool))
    };
    for path in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        let (o, n) = (a.get(path), b.get(path));
        if o != n && !one_sided(path) {
            keys.push(KeyChange {
                path: path.clone(),
                old: o.cloned(),
                new: n.cloned(),
            });
        }
    }
    keys.sort_by(|x, y| x.path.cmp(&y.path));

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

fn show(v: &Option<Value>) -> String {
    v.as_ref()
        .map_or_else(|| "(absent)".to_string(), Value::to_string)
}

/// The text report of a diff.
pub(crate) fn diff_text(d: &Diff) -> String {
    let mut out = String::new();
    if d.keys.is_empty() {
        out += "no configuration key changes\n";
    } else {
        out += &format!("{} key(s) change:\n", d.keys.len());
        for k in &d.keys {
            let whole_pool = k.path.starts_with("pools.") && k.path.matches('.').count() == 1;
            if whole_pool {
                let what = if k.new.is_some() { "added" } else { "removed" };
                out += &format!("  {}: pool {what}\n", k.path);
            } else {
                out += &format!("  {}: {} -> {}\n", k.path, show(&k.old), show(&k.new));
            }
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
        "keys": d.keys.iter().map(|k| json!({"path": k.path, "old": k.old, "new": k.new})).collect::<Vec<_>>(),
        "flips": d.flips.iter().map(|f| json!({
            "pool": f.pool, "size": f.size,
            "old": {"method": f.old.0, "reason": f.old.1},
            "new": {"method": f.new.0, "reason": f.new.1},
        })).collect::<Vec<_>>(),
        "samples": d.samples,
    })
}
