//! Architecture Invariant: no tonic, prost or generated protobuf type appears in the public API
//! of `perf-transport`. The wire stays behind the crate's own types (`Ack`, `PeerCapabilities`,
//! `Code`, `Refusal`, `Reference`), converted at the gRPC edge, so a user never depends on
//! tonic's or prost's versions and the protocol can change its stack without breaking callers.
//!
//! The check reads the sources: every public signature (a `pub` item that is not `pub(crate)`
//! or narrower, a re-export, a field, and every method of a `pub trait`) must not name a path
//! into tonic, prost or the generated module, nor a name a `use` of the file brought in from
//! them. Code after `#[cfg(test)]` is left out. The patterns are built with `concat!` so that
//! this file's own fixtures are not reported.

use super::Violation;

/// The crates whose public signatures are checked, by their source folder.
const CHECKED: [&str; 1] = ["perf-transport/src/"];
/// Paths that lead into the wire's third-party types or the generated module.
const FOREIGN: [&str; 5] = [
    concat!("tonic", "::"),
    concat!("tonic_health", "::"),
    concat!("tonic_prost", "::"),
    concat!("prost", "::"),
    concat!("proto", "::"),
];

/// Checks one file, `path` being its path relative to the workspace root.
pub(crate) fn check(path: &str, text: &str) -> Vec<Violation> {
    if !CHECKED.iter().any(|dir| path.starts_with(dir)) {
        return Vec::new();
    }
    let code: Vec<&str> = text
        .lines()
        .take_while(|line| !line.trim_start().starts_with("#[cfg(test)]"))
        .collect();
    let imported = foreign_imports(&code);
    let mut violations = Vec::new();
    for (index, signature) in public_signatures(&code) {
        if signature.trim_start().starts_with("pub mod proto") {
            violations.push(Violation::new(
                format!("{path}:{}", index + 1),
                "the generated module is public, expected `pub(crate) mod proto`",
            ));
            continue;
        }
        let named = FOREIGN
            .iter()
            .copied()
            .find(|it| signature.contains(it))
            .or_else(|| {
                imported
                    .iter()
                    .map(String::as_str)
                    .find(|name| names_word(&signature, name))
            });
        if let Some(named) = named {
            violations.push(Violation::new(
                format!("{path}:{}", index + 1),
                format!(
                    "a public signature names `{named}`, expected the crate's own type in its \
                     place (convert at the gRPC edge): {}",
                    signature.trim()
                ),
            ));
        }
    }
    violations
}

/// The names that `use` lines bring in from tonic, prost or the generated module.
fn foreign_imports(code: &[&str]) -> Vec<String> {
    let mut names = Vec::new();
    for statement in statements(code, |line| {
        let line = line.trim_start();
        line.starts_with("use ")
            || line.starts_with("pub use ")
            || line.starts_with("pub(crate) use ")
    }) {
        let (_, text) = statement;
        if !FOREIGN.iter().any(|it| text.contains(it)) {
            continue;
        }
        let Some((_, rest)) = text.split_once("use ") else {
            continue;
        };
        // `a::b::{C, d::E as F}` or `a::b::C`: the last segment of each leaf, or its alias.
        let leaves = match rest.split_once('{') {
            Some((_, inner)) => inner.trim_end_matches([';', '}', ' ']).to_string(),
            None => rest.trim().trim_end_matches(';').to_string(),
        };
        for leaf in leaves.split(',') {
            let leaf = leaf.trim().trim_end_matches('}').trim();
            let name = match leaf.split_once(" as ") {
                Some((_, alias)) => alias.trim(),
                None => leaf.rsplit("::").next().unwrap_or(leaf).trim(),
            };
            if !name.is_empty()
                && name != "self"
                && name != "*"
                && name.starts_with(char::is_uppercase)
            {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// Public signatures with the index of their first line: a `pub` item (not `pub(...)`) up to its
/// body or its end, every `fn` of a `pub trait` up to its body or its end, and every line of a
/// `pub enum`'s body (its variants are public).
fn public_signatures(code: &[&str]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut depth = 0usize;
    let mut public_trait_depth = None;
    let mut index = 0;
    while index < code.len() {
        let line = strip_comment(code[index]);
        let trimmed = line.trim_start();
        let in_public_trait = public_trait_depth == Some(depth);
        let trait_fn = in_public_trait && trimmed.starts_with("fn ");
        if trimmed.starts_with("pub ") || trait_fn {
            let (end, signature) = signature_from(code, index);
            found.push((index, signature));
            let body_start = depth;
            for line in &code[index..=end] {
                depth = step_depth(depth, strip_comment(line), &mut public_trait_depth);
            }
            if trimmed.starts_with("pub trait ") {
                public_trait_depth = Some(body_start + 1);
            }
            index = end + 1;
            if trimmed.starts_with("pub enum ") && depth > body_start {
                while index < code.len() && depth > body_start {
                    let line = strip_comment(code[index]);
                    found.push((index, line.to_string()));
                    depth = step_depth(depth, line, &mut public_trait_depth);
                    index += 1;
                }
            }
            continue;
        }
        depth = step_depth(depth, line, &mut public_trait_depth);
        index += 1;
    }
    found
}

/// The text from line `start` to the end of the signature: the first `{` or `;`, or a line
/// ending in `,` (a field).
fn signature_from(code: &[&str], start: usize) -> (usize, String) {
    let mut text = String::new();
    for (index, line) in code.iter().enumerate().skip(start) {
        let line = strip_comment(line);
        match line.find(['{', ';']) {
            Some(at) => {
                text.push_str(&line[..at]);
                return (index, text);
            }
            None => {
                text.push_str(line);
                text.push(' ');
                if line.trim_end().ends_with(',') && index == start {
                    return (index, text);
                }
            }
        }
    }
    (code.len() - 1, text)
}

/// Statements whose first line matches `starts`, joined up to their `;`.
fn statements(code: &[&str], starts: impl Fn(&str) -> bool) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut index = 0;
    while index < code.len() {
        if starts(code[index]) {
            let mut text = String::new();
            let mut end = index;
            while end < code.len() {
                text.push_str(strip_comment(code[end]).trim());
                text.push(' ');
                if code[end].contains(';') {
                    break;
                }
                end += 1;
            }
            found.push((index, text));
            index = end + 1;
        } else {
            index += 1;
        }
    }
    found
}

/// The brace depth after `line`, leaving a public trait's body when it closes.
fn step_depth(mut depth: usize, line: &str, public_trait_depth: &mut Option<usize>) -> usize {
    for c in line.chars() {
        match c {
            '{' => depth += 1,
            '}' => {
                if *public_trait_depth == Some(depth) {
                    *public_trait_depth = None;
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    depth
}

/// `line` without a trailing `//` comment (doc comments included).
fn strip_comment(line: &str) -> &str {
    match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// Whether `text` has `word` as a whole identifier.
fn names_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "perf-transport/src/grpc/client.rs";

    fn lines(violations: &[Violation]) -> Vec<&str> {
        violations.iter().map(|it| it.location.as_str()).collect()
    }

    #[test]
    fn a_public_signature_naming_a_foreign_path_is_reported() {
        let text = format!(
            "//! Fixture.\npub fn negotiate(&self) -> {}Status {{\n}}\n\
             pub(crate) fn inner(&self) -> {}Status {{\n}}\n",
            FOREIGN[0], FOREIGN[0]
        );
        assert_eq!(lines(&check(PATH, &text)), [format!("{PATH}:2")]);
    }

    #[test]
    fn a_type_imported_from_the_generated_module_is_reported_where_public() {
        let text = format!(
            "//! Fixture.\nuse super::{}{{Capabilities, InlineChunk}};\n\
             pub struct Executor {{\n    pub peer: Capabilities,\n    chunk: InlineChunk,\n}}\n\
             pub fn peer(\n    &self,\n) -> &Capabilities {{\n}}\n",
            FOREIGN[4]
        );
        assert_eq!(
            lines(&check(PATH, &text)),
            [format!("{PATH}:4"), format!("{PATH}:7")]
        );
    }

    #[test]
    fn every_method_of_a_public_trait_is_public() {
        let text = format!(
            "//! Fixture.\nuse {}Status;\npub trait Handler {{\n    /// Reads.\n    \
             fn handle(&self) -> Result<(), Status>;\n}}\ntrait Private {{\n    \
             fn handle(&self) -> Status;\n}}\n",
            FOREIGN[0]
        );
        assert_eq!(lines(&check(PATH, &text)), [format!("{PATH}:5")]);
    }

    #[test]
    fn re_exports_are_checked_and_tests_and_other_crates_are_not() {
        let reexport = format!("//! Fixture.\npub use {}Code;\n", FOREIGN[0]);
        assert_eq!(lines(&check(PATH, &reexport)), [format!("{PATH}:2")]);
        assert_eq!(check("perf-store/src/lib.rs", &reexport), []);
        let in_tests = format!(
            "//! Fixture.\n#[cfg(test)]\nmod tests {{\n    pub fn f() -> {}Status {{}}\n}}\n",
            FOREIGN[0]
        );
        assert_eq!(check(PATH, &in_tests), []);
    }

    #[test]
    fn a_public_enum_s_variants_and_a_public_generated_module_are_checked() {
        let text = format!(
            "//! Fixture.\nuse {}Code;\npub enum ClientError {{\n    Rejected {{\n        \
             code: Code,\n    }},\n}}\nenum Private {{\n    A(Code),\n}}\npub mod proto {{\n}}\n",
            FOREIGN[0]
        );
        assert_eq!(
            lines(&check(PATH, &text)),
            [format!("{PATH}:5"), format!("{PATH}:11")]
        );
    }

    #[test]
    fn a_word_is_matched_whole() {
        assert!(names_word("-> Result<Ack, Status>", "Status"));
        assert!(!names_word("-> WorkerStatus", "Status"));
        assert!(!names_word("-> Status2", "Status"));
    }
}
