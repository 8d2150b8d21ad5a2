//! Conventions every `.rs` file follows: a module doc line first, no unfinished-code macros, no
//! ignored test without a reason.
//!
//! The patterns are built with `concat!` so that this file, and the fixtures in its tests, never
//! contain them literally and the check can run on xtask's own sources too.

use super::Violation;

/// Macros that mark unfinished code.
const UNFINISHED: [&str; 2] = [concat!("todo", "!("), concat!("unimplemented", "!(")];
/// An ignored test with no reason, once whitespace is removed from the line.
const BARE_IGNORE: &str = concat!("#[", "ignore]");
/// The same inside `cfg_attr`, where `ignore` comes last with no reason.
const BARE_IGNORE_IN_CFG_ATTR: &str = concat!(",", "ignore)]");
/// The start of a `cfg_attr` attribute, once whitespace is removed.
const CFG_ATTR: &str = "#[cfg_attr(";

/// Checks one file, `path` being its path relative to the workspace root.
pub(crate) fn check(path: &str, text: &str) -> Vec<Violation> {
    let mut violations = Vec::new();
    violations.extend(check_module_doc(path, text));
    violations.extend(check_lines(path, text));
    violations
}

/// The first non-blank line must be a `//!` line with text: what the module is for.
fn check_module_doc(path: &str, text: &str) -> Option<Violation> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let expected = "expected a `//!` line saying what the module is for";
    let Some((index, line)) = text
        .lines()
        .enumerate()
        .find(|(_, line)| !line.trim().is_empty())
    else {
        return Some(Violation::new(path, format!("file is empty, {expected}")));
    };
    let line = line.trim();
    let location = format!("{path}:{}", index + 1);
    match line.strip_prefix("//!") {
        Some(doc) if !doc.trim().is_empty() => None,
        Some(_) => Some(Violation::new(
            location,
            format!("first line is an empty `//!`, {expected}"),
        )),
        None => Some(Violation::new(
            location,
            format!("first non-blank line is `{line}`, {expected}"),
        )),
    }
}

/// Unfinished-code macros and reasonless ignores, line by line; comment lines are skipped.
fn check_lines(path: &str, text: &str) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let location = format!("{path}:{}", index + 1);
        for pattern in UNFINISHED {
            if line.contains(pattern) {
                violations.push(Violation::new(
                    location.clone(),
                    format!("found `{pattern}`, expected finished code"),
                ));
            }
        }
        let compact: String = line.chars().filter(|it| !it.is_whitespace()).collect();
        let bare_in_cfg_attr =
            compact.contains(CFG_ATTR) && compact.contains(BARE_IGNORE_IN_CFG_ATTR);
        if compact.contains(BARE_IGNORE) || bare_in_cfg_attr {
            violations.push(Violation::new(
                location,
                "found `ignore` without a reason, expected `ignore = \"why\"`",
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locations(violations: &[Violation]) -> Vec<&str> {
        violations.iter().map(|it| it.location.as_str()).collect()
    }

    #[test]
    fn module_doc_after_blank_lines_passes() {
        assert_eq!(check("a.rs", "\n\n//! Parses things.\nfn f() {}\n"), []);
    }

    #[test]
    fn code_before_module_doc_is_reported() {
        let found = check("src/a.rs", "\nuse std::fmt;\n//! Too late.\n");
        assert_eq!(locations(&found), ["src/a.rs:2"]);
        assert!(found[0].message.contains("`use std::fmt;`"), "{found:?}");
    }

    #[test]
    fn outer_doc_or_attribute_first_is_reported() {
        assert_eq!(
            locations(&check("a.rs", "/// Item docs.\nfn f() {}\n")),
            ["a.rs:1"]
        );
        assert_eq!(
            locations(&check("a.rs", "#![allow(dead_code)]\n//! Late.\n")),
            ["a.rs:1"]
        );
    }

    #[test]
    fn empty_file_and_empty_module_doc_are_reported() {
        let empty = check("a.rs", "\n  \n");
        assert_eq!(locations(&empty), ["a.rs"]);
        assert!(empty[0].message.starts_with("file is empty"));
        assert_eq!(locations(&check("a.rs", "//!\n//! Text.\n")), ["a.rs:1"]);
    }

    #[test]
    fn unfinished_macros_are_reported_with_their_lines() {
        let text = format!(
            "//! Fixture.\nfn a() {{\n    {}\"later\")\n}}\nfn b() {{\n    {})\n}}\n",
            UNFINISHED[0], UNFINISHED[1]
        );
        let found = check("x.rs", &text);
        assert_eq!(locations(&found), ["x.rs:3", "x.rs:6"]);
        assert!(found[0].message.contains(UNFINISHED[0]));
        assert!(found[1].message.contains(UNFINISHED[1]));
    }

    #[test]
    fn unfinished_macros_in_comments_pass() {
        let text = format!(
            "//! Never leave {} in code.\n/// Nor {}).\nfn f() {{}}\n",
            UNFINISHED[0], UNFINISHED[1]
        );
        assert_eq!(check("x.rs", &text), []);
    }

    #[test]
    fn ignore_without_reason_is_reported() {
        let text = format!("//! Fixture.\n#[test]\n{BARE_IGNORE}\nfn slow() {{}}\n");
        assert_eq!(locations(&check("t.rs", &text)), ["t.rs:3"]);
        let spaced = format!(
            "//! Fixture.\n#[test]\n# [ {} ]\nfn slow() {{}}\n",
            "ignore"
        );
        assert_eq!(locations(&check("t.rs", &spaced)), ["t.rs:3"]);
    }

    #[test]
    fn ignore_without_reason_in_cfg_attr_is_reported() {
        let text = format!(
            "//! Fixture.\n#[cfg_attr(miri, {})]\nfn slow() {{}}\n",
            "ignore"
        );
        assert_eq!(locations(&check("t.rs", &text)), ["t.rs:2"]);
    }

    #[test]
    fn ignore_with_reason_passes() {
        let text = concat!(
            "//! Fixture.\n",
            "#[ignore = \"needs PERFOPT_SLOW_TESTS=1\"]\nfn a() {}\n",
            "#[cfg_attr(miri, ignore = \"no mmap under miri\")]\nfn b() {}\n",
        );
        assert_eq!(check("t.rs", text), []);
    }
}
