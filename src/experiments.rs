//! Promoting an experiment's variant into the configuration file, and rolling it back: one call
//! each, validated, backed up, written atomically (a running optimizer watching the file applies
//! it by hot reload), and journaled with who, when and why.
//!
//! The journal is `experiments.jsonl` in the data directory, one JSON object per line. It is a
//! file of its own rather than a table of the metrics store because a running daemon holds the
//! store for writing while the command runs beside it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use perf_core::config::{Config, KeyChange, MAX_CONFIG_BYTES};
use serde::{Deserialize, Serialize};
use toml_edit::{DocumentMut, Item, Table};

/// The journal's file name in the data directory.
pub const JOURNAL_FILE: &str = "experiments.jsonl";
/// The largest journal read, in bytes.
pub const MAX_JOURNAL_BYTES: u64 = 16 << 20;

/// Why a promotion or a rollback was refused; nothing was written when it is returned.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The configuration file could not be read or does not validate.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The request does not fit the configuration or the journal; the message says why.
    #[error("{0}")]
    Refused(String),
    /// Writing the backup, the configuration or the journal failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// What a promotion or a rollback did, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// `promote` or `rollback`.
    pub action: String,
    /// The experiment.
    pub experiment: String,
    /// The variant promoted (for a rollback, the one rolled back).
    pub variant: String,
    /// When, in Unix milliseconds.
    pub at_unix_ms: u64,
    /// Who asked.
    pub who: String,
    /// Why.
    pub why: String,
    /// The configuration file changed.
    pub config: PathBuf,
    /// The copy of the file as it was before this change.
    pub backup: PathBuf,
    /// The keys that changed, as `perfopt config diff` shows them.
    pub changes: Vec<String>,
    /// FNV-1a 64 of the file as written, so that a rollback can tell whether it was edited
    /// since.
    pub written_hash: u64,
}

/// Who asked for a change and why, for the journal.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who asked (a user name).
    pub who: &'a str,
    /// Why.
    pub why: &'a str,
    /// The time it counts as made, Unix milliseconds.
    pub now_unix_ms: u64,
}

/// Writes `variant` of `experiment` into the configuration file at `config_path`: its
/// overrides become the settings of the experiment's pool, and the experiment stops now. The
/// result must validate; the file before it is kept beside it as
/// `<file>.<unix ms>.bak`, the new text replaces it atomically, and the event is appended to
/// the journal in `data_dir`.
pub fn promote(
    config_path: &Path,
    data_dir: &Path,
    experiment: &str,
    variant: &str,
    request: Request<'_>,
) -> Result<LifecycleEvent, LifecycleError> {
    let (text, config) = read_config(config_path)?;
    let index = config
        .experiments
        .iter()
        .position(|e| e.name.as_str() == experiment)
        .ok_or_else(|| {
            let known: Vec<&str> = config.experiments.iter().map(|e| e.name.as_str()).collect();
            LifecycleError::Refused(format!(
                "no experiment {experiment:?} in {}, expected one of: {}",
                config_path.display(),
                if known.is_empty() {
                    "(none)".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?;
    let e = &config.experiments[index];
    let v = e
        .variants
        .iter()
        .position(|x| x.name.as_str() == variant)
        .ok_or_else(|| {
            let known: Vec<&str> = e.variants.iter().map(|x| x.name.as_str()).collect();
            LifecycleError::Refused(format!(
                "experiment {experiment} has no variant {variant:?}, expected one of: {}",
                known.join(", ")
            ))
        })?;
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|err: toml_edit::TomlError| LifecycleError::Config {
                path: config_path.to_path_buf(),
                message: err.to_string(),
            })?;
    let overrides = variant_items(&doc, index, v, &e.variants[v].overrides)?;
    let pool = e.pool.as_str().to_string();
    {
        let pools = table_at(doc.as_table_mut(), "pools")?;
        let settings = table_at(pools, &pool)?;
        for (key, item) in overrides {
            settings.insert(&key, item);
        }
    }
    let stop = rfc3339(request.now_unix_ms);
    let stop: toml_edit::Datetime = stop
        .parse()
        .map_err(|_| LifecycleError::Refused(format!("the time {stop} is no TOML date-time")))?;
    let entry = doc
        .get_mut("experiments")
        .and_then(Item::as_array_of_tables_mut)
        .and_then(|a| a.get_mut(index))
        .ok_or_else(|| LifecycleError::Refused(format!(
            "experiment {experiment} is not an [[experiments]] table of the file, so it cannot be edited in place"
        )))?;
    entry.insert("stop", toml_edit::value(stop));
    let new_text = doc.to_string();
    let new_config = validate(config_path, &new_text)?;
    let changes = config
        .changes_to(&new_config)
        .iter()
        .map(KeyChange::to_string)
        .collect();
    let event = write_change(
        config_path,
        data_dir,
        &text,
        &new_text,
        LifecycleEvent {
            action: "promote".into(),
            experiment: experiment.into(),
            variant: variant.into(),
            at_unix_ms: request.now_unix_ms,
            who: request.who.into(),
            why: request.why.into(),
            config: config_path.to_path_buf(),
            backup: PathBuf::new(),
            changes,
            written_hash: perf_core::fnv64(new_text.as_bytes()),
        },
    )?;
    Ok(event)
}

/// Restores the configuration file as it was before the last promotion of `experiment` that
/// was not rolled back, and journals it. Refused when the file was edited since the promotion
/// (its backup is named, to be restored by hand) or when there is nothing to roll back.
pub fn rollback(
    config_path: &Path,
    data_dir: &Path,
    experiment: &str,
    request: Request<'_>,
) -> Result<LifecycleEvent, LifecycleError> {
    let journal = read_journal(data_dir)?;
    let last = journal
        .iter()
        .rev()
        .find(|e| e.experiment == experiment)
        .filter(|e| e.action == "promote")
        .ok_or_else(|| {
            LifecycleError::Refused(format!(
                "experiment {experiment} has no promotion left to roll back in {}",
                data_dir.join(JOURNAL_FILE).display()
            ))
        })?;
    let (text, config) = read_config(config_path)?;
    if perf_core::fnv64(text.as_bytes()) != last.written_hash {
        return Err(LifecycleError::Refused(format!(
            "{} changed since experiment {experiment} was promoted; the file before the \
             promotion is {}, to be restored by hand",
            config_path.display(),
            last.backup.display()
        )));
    }
    let before = perf_platform::read_regular_to_string(&last.backup, MAX_CONFIG_BYTES as u64)
        .map_err(|err| LifecycleError::Config {
            path: last.backup.clone(),
            message: err.to_string(),
        })?;
    let restored = validate(&last.backup, &before)?;
    let changes = config
        .changes_to(&restored)
        .iter()
        .map(KeyChange::to_string)
        .collect();
    write_change(
        config_path,
        data_dir,
        &text,
        &before,
        LifecycleEvent {
            action: "rollback".into(),
            experiment: experiment.into(),
            variant: last.variant.clone(),
            at_unix_ms: request.now_unix_ms,
            who: request.who.into(),
            why: request.why.into(),
            config: config_path.to_path_buf(),
            backup: PathBuf::new(),
            changes,
            written_hash: perf_core::fnv64(before.as_bytes()),
        },
    )
}

/// The journal of `data_dir`, oldest first; empty when there is none.
pub fn read_journal(data_dir: &Path) -> Result<Vec<LifecycleEvent>, LifecycleError> {
    let path = data_dir.join(JOURNAL_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = perf_platform::read_regular_to_string(&path, MAX_JOURNAL_BYTES).map_err(|err| {
        LifecycleError::Config {
            path: path.clone(),
            message: err.to_string(),
        }
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|err| LifecycleError::Config {
                path: path.clone(),
                message: format!("line {}: {err}, expected a journal event", i + 1),
            })
        })
        .collect()
}

fn read_config(path: &Path) -> Result<(String, Config), LifecycleError> {
    let text =
        perf_platform::read_regular_to_string(path, MAX_CONFIG_BYTES as u64).map_err(|err| {
            LifecycleError::Config {
                path: path.to_path_buf(),
                message: err.to_string(),
            }
        })?;
    let config = validate(path, &text)?;
    Ok((text, config))
}

fn validate(path: &Path, text: &str) -> Result<Config, LifecycleError> {
    Config::from_toml_str(text).map_err(|errors| LifecycleError::Config {
        path: path.to_path_buf(),
        message: errors.to_string(),
    })
}

/// The items a variant writes, as the file writes them, in the order of `keys`.
fn variant_items(
    doc: &DocumentMut,
    experiment: usize,
    variant: usize,
    keys: &[String],
) -> Result<Vec<(String, Item)>, LifecycleError> {
    let variants = doc
        .get("experiments")
        .and_then(Item::as_array_of_tables)
        .and_then(|a| a.get(experiment))
        .and_then(|t| t.get("variants"));
    let get = |key: &str| -> Option<Item> {
        match variants? {
            Item::ArrayOfTables(a) => a.get(variant)?.get(key).cloned(),
            Item::Value(toml_edit::Value::Array(a)) => a
                .get(variant)?
                .as_inline_table()?
                .get(key)
                .map(|v| Item::Value(v.clone())),
            _ => None,
        }
    };
    keys.iter()
        .map(|key| {
            let mut item = get(key).ok_or_else(|| {
                LifecycleError::Refused(format!(
                    "the variant's {key} is not written where it can be copied from"
                ))
            })?;
            if let Some(v) = item.as_value_mut() {
                v.decor_mut().clear();
            }
            Ok((key.clone(), item))
        })
        .collect()
}

/// The table at `key` of `parent`, made (not inline) when it is missing.
fn table_at<'a>(parent: &'a mut Table, key: &str) -> Result<&'a mut Table, LifecycleError> {
    if !parent.contains_key(key) {
        let mut t = Table::new();
        t.set_implicit(key == "pools");
        parent.insert(key, Item::Table(t));
    }
    parent
        .get_mut(key)
        .and_then(Item::as_table_mut)
        .ok_or_else(|| {
            LifecycleError::Refused(format!(
                "{key} is not a table of the file ([{key}]), so it cannot be edited in place"
            ))
        })
}

/// Keeps `old` as a backup, writes `new` over the configuration atomically and appends `event`
/// (with the backup's path) to the journal.
fn write_change(
    config_path: &Path,
    data_dir: &Path,
    old: &str,
    new: &str,
    mut event: LifecycleEvent,
) -> Result<LifecycleEvent, LifecycleError> {
    let mut name = config_path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.bak", event.at_unix_ms));
    let backup = config_path.with_file_name(name);
    write_atomically(&backup, old)?;
    event.backup = backup;
    std::fs::create_dir_all(data_dir).map_err(|source| LifecycleError::Io {
        path: data_dir.to_path_buf(),
        source,
    })?;
    write_atomically(config_path, new)?;
    let journal = data_dir.join(JOURNAL_FILE);
    let mut line = serde_json::to_string(&event).map_err(|e| LifecycleError::Io {
        path: journal.clone(),
        source: std::io::Error::other(e),
    })?;
    line.push('\n');
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal)
        .and_then(|mut f| {
            f.write_all(line.as_bytes())?;
            f.sync_all()
        });
    appended.map_err(|source| LifecycleError::Io {
        path: journal,
        source,
    })?;
    Ok(event)
}

/// Writes `text` to `path` through a file beside it and a rename, so that a reader (a watching
/// optimizer) never sees half a file.
fn write_atomically(path: &Path, text: &str) -> Result<(), LifecycleError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(name);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(|source| LifecycleError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Unix milliseconds as an RFC 3339 date-time in UTC, to the second.
fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// Now, in Unix milliseconds.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"# The team's configuration.
version = 1

[pools.ml]
goal = "minimize_latency"   # latency first

[[experiments]]
name = "lower-threshold"
pool = "ml"

[[experiments.variants]]
name = "control"
weight = 50

[[experiments.variants]]
name = "one-mib"
weight = 50
threshold = "1MiB"
learning = false
"#;

    fn request(now_unix_ms: u64) -> Request<'static> {
        Request {
            who: "ops",
            why: "one-mib won",
            now_unix_ms,
        }
    }

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("perfopt.toml");
        std::fs::write(&config, CONFIG).unwrap();
        let data = dir.path().join("data");
        (dir, config, data)
    }

    #[test]
    fn promote_writes_the_variant_into_its_pool_and_rollback_restores_the_file() {
        let (_dir, path, data) = setup();
        let t = 1_796_115_600_000; // 2026-12-01T09:00:00Z
        let event = promote(&path, &data, "lower-threshold", "one-mib", request(t)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::from_toml_str(&text).unwrap();
        let ml = config.pools[&perf_core::Name::new("ml").unwrap()].settings;
        assert_eq!((ml.threshold, ml.learning), (1 << 20, false));
        assert_eq!(
            config.experiments[0].stop_unix_ms,
            Some(t),
            "the experiment stops now"
        );
        assert!(
            text.starts_with("# The team's configuration."),
            "comments are kept:\n{text}"
        );
        assert!(
            text.contains("goal = \"minimize_latency\"   # latency first"),
            "{text}"
        );
        assert!(
            text.contains("threshold = \"1MiB\""),
            "as the variant wrote it:\n{text}"
        );
        assert_eq!(std::fs::read_to_string(&event.backup).unwrap(), CONFIG);
        assert!(
            event
                .changes
                .iter()
                .any(|c| c.starts_with("pools.ml.threshold: ")),
            "{:?}",
            event.changes
        );
        assert_eq!(
            (event.who.as_str(), event.why.as_str()),
            ("ops", "one-mib won")
        );

        let back = rollback(&path, &data, "lower-threshold", request(t + 1000)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), CONFIG);
        assert_eq!(
            (back.action.as_str(), back.variant.as_str()),
            ("rollback", "one-mib")
        );
        let journal = read_journal(&data).unwrap();
        assert_eq!(
            journal
                .iter()
                .map(|e| e.action.as_str())
                .collect::<Vec<_>>(),
            ["promote", "rollback"]
        );
        // Nothing is left to roll back.
        let err = rollback(&path, &data, "lower-threshold", request(t + 2000)).unwrap_err();
        assert!(
            err.to_string().contains("no promotion left to roll back"),
            "{err}"
        );
    }

    #[test]
    fn a_promotion_that_does_not_fit_is_refused_and_writes_nothing() {
        let (dir, path, data) = setup();
        let err = promote(&path, &data, "nope", "one-mib", request(1)).unwrap_err();
        assert!(
            err.to_string().contains("no experiment \"nope\"")
                && err.to_string().contains("lower-threshold"),
            "{err}"
        );
        let err = promote(&path, &data, "lower-threshold", "two-mib", request(1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("no variant \"two-mib\", expected one of: control, one-mib"),
            "{err}"
        );
        // A result that does not validate: the pool's floor above the variant's threshold.
        std::fs::write(
            &path,
            CONFIG.replace("latency first", "x\nfloor = \"4MiB\""),
        )
        .unwrap();
        let before = std::fs::read_to_string(&path).unwrap();
        let err = promote(&path, &data, "lower-threshold", "one-mib", request(1));
        // The file itself fails first: the variant's threshold is below the pool's floor.
        assert!(err.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "no backup, no journal, no temporary file");
    }

    #[test]
    fn a_file_edited_since_the_promotion_is_not_rolled_back() {
        let (_dir, path, data) = setup();
        let event = promote(&path, &data, "lower-threshold", "control", request(5)).unwrap();
        assert!(
            event.changes.iter().all(|c| c.starts_with("experiments[")),
            "the control changes nothing but the stop: {:?}",
            event.changes
        );
        let edited = std::fs::read_to_string(&path).unwrap() + "\n# edited by hand\n";
        std::fs::write(&path, &edited).unwrap();
        let err = rollback(&path, &data, "lower-threshold", request(6)).unwrap_err();
        assert!(err.to_string().contains("changed since"), "{err}");
        assert!(
            err.to_string()
                .contains(&event.backup.display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
    }
}
