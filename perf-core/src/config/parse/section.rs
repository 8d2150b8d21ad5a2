//! A table of the file with its key path, and reading its keys while reporting what is wrong.

use toml::{Table, Value};

use super::render::{join, render};
use super::{MISSING, Report};

/// One table of the file and its key path.
pub(super) struct Section<'a> {
    pub(super) table: &'a Table,
    pub(super) path: String,
}

impl<'a> Section<'a> {
    pub(super) fn top(table: &'a Table) -> Self {
        Section {
            table,
            path: String::new(),
        }
    }

    pub(super) fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// Reads an optional key; a value that `read` rejects is reported.
    pub(super) fn read<T>(
        &self,
        report: &mut Report,
        key: &str,
        read: impl FnOnce(&'a Value) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.table.get(key)?;
        match read(value) {
            Ok(it) => Some(it),
            Err(expected) => {
                report.push(self.key_path(key), render(value), expected);
                None
            }
        }
    }

    /// Reads a required key; a missing key is reported with `expected`.
    pub(super) fn required<T>(
        &self,
        report: &mut Report,
        key: &str,
        expected: &str,
        read: impl FnOnce(&'a Value) -> Result<T, String>,
    ) -> Option<T> {
        if !self.has(key) {
            report.push(self.key_path(key), MISSING, expected);
        }
        self.read(report, key, read)
    }

    /// The sub-table at `key`, if it is written; a value that is not a table is reported.
    pub(super) fn table(&self, report: &mut Report, key: &str) -> Option<Section<'a>> {
        let path = self.key_path(key);
        match self.table.get(key)? {
            Value::Table(table) => Some(Section { table, path }),
            other => {
                report.push(path, render(other), "a table");
                None
            }
        }
    }

    /// Reports every key that is not in `known` (keys separated by spaces).
    pub(super) fn unknown_keys(&self, report: &mut Report, known: &str) {
        for (key, value) in sorted_entries(self.table) {
            if !known.split_whitespace().any(|k| k == key) {
                let list: Vec<&str> = known.split_whitespace().collect();
                let expected = format!("a known key: {}", list.join(", "));
                report.push(self.key_path(key), render(value), expected);
            }
        }
    }
}

/// The entries of a table in key order, whatever map the `toml` crate uses.
pub(super) fn sorted_entries(table: &Table) -> Vec<(&str, &Value)> {
    let mut entries: Vec<(&str, &Value)> = table.iter().map(|(k, v)| (k.as_str(), v)).collect();
    entries.sort_unstable_by_key(|(k, _)| *k);
    entries
}
