//! `cargo xtask tidy`: the architecture and convention checks, also run by plain `cargo test`.

mod cli;
mod deps;
mod docs;
mod public_api;
mod sources;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One broken rule: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// A crate name, or a path relative to the workspace root with a line number.
    pub(crate) location: String,
    /// What was expected and what was found.
    pub(crate) message: String,
}

impl Violation {
    fn new(location: impl Into<String>, message: impl Into<String>) -> Violation {
        Violation {
            location: location.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Runs every check on the workspace at `root` and returns all violations, dependency rules first.
pub(crate) fn run(root: &Path) -> Result<Vec<Violation>> {
    let metadata = deps::load(root)?;
    let mut violations = deps::check(&metadata);
    for path in rust_files(root)? {
        let text = fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let path = relative(root, &path);
        violations.extend(sources::check(&path, &text));
        violations.extend(cli::check(&path, &text));
        violations.extend(public_api::check(&path, &text));
    }
    for path in doc_files(root)? {
        let text = fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let read = |file: &str| fs::read_to_string(root.join(file)).ok();
        violations.extend(docs::check(&relative(root, &path), &text, read));
    }
    Ok(violations)
}

/// The Markdown files of `docs/`, sorted; none if there is no such folder.
fn doc_files(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join("docs");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("could not list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("could not list {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "md") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Every `.rs` file under `root`, sorted, skipping `target` folders and hidden entries.
fn rust_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("could not list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let file_type = entry
                .file_type()
                .with_context(|| format!("could not stat {}", entry.path().display()))?;
            if file_type.is_dir() && name != "target" {
                dirs.push(entry.path());
            } else if file_type.is_file() && name.ends_with(".rs") {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `path` relative to `root`, with `/` separators, for stable messages.
fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|it| it.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_workspace() {
        let root = crate::workspace_root();
        let violations = run(&root).expect("tidy could not run on the workspace");
        let listed: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert!(
            violations.is_empty(),
            "tidy found {} violation(s):\n{}",
            violations.len(),
            listed.join("\n")
        );
    }

    #[test]
    fn walk_skips_target_and_hidden_folders() {
        let root = std::env::temp_dir().join(format!("xtask-tidy-walk-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for dir in ["src/nested", "target/debug", ".git", "sub/target"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in [
            "src/lib.rs",
            "src/nested/mod.rs",
            "src/notes.md",
            "target/debug/build.rs",
            ".git/hook.rs",
            "sub/target/gen.rs",
            "src/.hidden.rs",
        ] {
            fs::write(root.join(file), "//! Fixture.\n").unwrap();
        }
        let found: Vec<String> = rust_files(&root)
            .unwrap()
            .iter()
            .map(|it| relative(&root, it))
            .collect();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(found, ["src/lib.rs", "src/nested/mod.rs"]);
    }
}
