//! The documents under `docs/` back their claims with tests: every reference written as
//! `` `path/to/file.rs::test_name` `` must name a file of the workspace that defines
//! `fn test_name`, so a renamed or deleted test cannot leave a claim without its proof.

use super::Violation;

/// A test reference found in a document: the file, the function, and the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TestRef {
    pub(crate) file: String,
    pub(crate) function: String,
    pub(crate) line: usize,
}

/// The `` `file.rs::function` `` references in a document's text.
pub(crate) fn references(text: &str) -> Vec<TestRef> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for (n, span) in line.split('`').enumerate() {
            // Odd pieces are the insides of backquotes.
            if n % 2 == 0 {
                continue;
            }
            let Some((file, function)) = span.split_once(".rs::") else {
                continue;
            };
            let is_ident = !function.is_empty()
                && function
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if is_ident && !file.contains(char::is_whitespace) {
                found.push(TestRef {
                    file: format!("{file}.rs"),
                    function: function.to_owned(),
                    line: index + 1,
                });
            }
        }
    }
    found
}

/// Checks the references of document `doc` (its path relative to the workspace root), reading
/// referenced files with `read`, which gives `None` for a file that does not exist.
pub(crate) fn check(
    doc: &str,
    text: &str,
    read: impl Fn(&str) -> Option<String>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for it in references(text) {
        let location = format!("{doc}:{}", it.line);
        match read(&it.file) {
            None => violations.push(Violation::new(
                location,
                format!("names {}, expected a file of the workspace", it.file),
            )),
            Some(source) if !defines(&source, &it.function) => violations.push(Violation::new(
                location,
                format!(
                    "names {}::{}, expected that file to define `fn {}`",
                    it.file, it.function, it.function
                ),
            )),
            Some(_) => {}
        }
    }
    violations
}

/// Whether `source` defines a function called `name`.
fn defines(source: &str, name: &str) -> bool {
    let wanted = format!("fn {name}(");
    source.lines().any(|line| line.contains(&wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "A claim (`perf-x/tests/a.rs::it_holds`), another `perf-x/src/b.rs::missing`,\n\
                       code `let x = 1;`, `c.rs` and `perf-x/tests/gone.rs::whatever`.\n";

    fn read(path: &str) -> Option<String> {
        match path {
            "perf-x/tests/a.rs" => Some("#[test]\nfn it_holds() {}\n".to_owned()),
            "perf-x/src/b.rs" => Some("fn missing_not() {}\n".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn references_are_read_from_backquotes_only() {
        let refs = references(DOC);
        let names: Vec<&str> = refs.iter().map(|r| r.function.as_str()).collect();
        assert_eq!(names, ["it_holds", "missing", "whatever"]);
        assert_eq!(refs[2].line, 2);
    }

    #[test]
    fn missing_files_and_functions_are_reported() {
        let found = check("docs/x.md", DOC, read);
        let messages: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "docs/x.md:1: names perf-x/src/b.rs::missing, expected that file to define `fn missing`",
                "docs/x.md:2: names perf-x/tests/gone.rs, expected a file of the workspace",
            ]
        );
    }
}
