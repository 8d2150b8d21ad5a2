//! The shape of perf-cli: commands build nothing the library wires, and never import each other.
//!
//! A binary only parses arguments and prints: what a command does, a library user must be able
//! to do with the library alone. So no file of `perf-cli/src` builds the parts that
//! `perfopt::Optimizer`, its host runtime and the facade's functions wire; and a command reaches
//! no other command, only the modules the commands share (arguments, the clock, exit codes, CPU
//! load, the measurement of `bench` and `model collect`).
//!
//! The patterns are built with `concat!` so that this file, and the fixtures in its tests, never
//! contain them literally.

use super::Violation;

/// Where the rules apply.
const CLI_SOURCES: &str = "perf-cli/src/";
/// The file that dispatches to every command.
const DISPATCH: &str = "perf-cli/src/main.rs";

/// Parts the library wires (`perfopt::Optimizer`, its host runtime, the facade's functions).
const WIRED_BY_THE_LIBRARY: [&str; 7] = [
    concat!("Controller", "::new("),
    concat!("Controller", "::builder("),
    concat!("SegmentPool", "::new("),
    concat!("LearningEngine", "::new("),
    concat!("BackgroundEngine", "::start("),
    concat!("Executor", "::connect("),
    concat!("Learner", "::new("),
];

/// The modules of perf-cli that commands share; every other module is a command.
const SHARED: [&str; 5] = ["args", "clock", "exit", "load", "measure"];

/// Checks one file, `path` being its path relative to the workspace root.
pub(crate) fn check(path: &str, text: &str) -> Vec<Violation> {
    let Some(module) = path.strip_prefix(CLI_SOURCES) else {
        return Vec::new();
    };
    let own = module
        .split('/')
        .next()
        .unwrap_or(module)
        .trim_end_matches(".rs");
    let mut violations = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let location = format!("{path}:{}", index + 1);
        for pattern in WIRED_BY_THE_LIBRARY {
            if line.contains(pattern) {
                violations.push(Violation::new(
                    location.clone(),
                    format!(
                        "found `{pattern}` in perf-cli, expected the part from `perfopt::Optimizer`, its host runtime or a facade function"
                    ),
                ));
            }
        }
        if path == DISPATCH {
            continue;
        }
        for name in crate_modules(line) {
            if name != own && !SHARED.contains(&name) {
                violations.push(Violation::new(
                    location.clone(),
                    format!(
                        "found `crate::{name}` in `{own}`, expected a command to use only itself and the shared modules ({})",
                        SHARED.join(", ")
                    ),
                ));
            }
        }
    }
    violations
}

/// The top-level modules a line names by `crate::NAME` or `crate::{A, B::c}`.
fn crate_modules(line: &str) -> Vec<&str> {
    let ident = |s: &str| -> usize {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let mut names = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        let before = line[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &line[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: those after its `{` or a `,` at depth one.
            let mut depth = 1;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 1 => break,
                    '}' => depth -= 1,
                    ',' if depth == 1 => start = true,
                    c if start && !c.is_whitespace() => {
                        start = false;
                        let name = &group[i..i + ident(&group[i..])];
                        if !name.is_empty() {
                            names.push(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = &rest[..ident(rest)];
            if !name.is_empty() {
                names.push(name);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locations(violations: &[Violation]) -> Vec<&str> {
        violations.iter().map(|it| it.location.as_str()).collect()
    }

    #[test]
    fn a_command_building_what_the_library_wires_is_reported() {
        let text = format!(
            "//! Fixture.\nfn f() {{\n    let c = {}config);\n    // {}x) in a comment\n    let p = {}shm, c);\n}}\n",
            WIRED_BY_THE_LIBRARY[0], WIRED_BY_THE_LIBRARY[2], WIRED_BY_THE_LIBRARY[2]
        );
        // Every file of perf-cli, not only the runtime driver.
        for path in [
            "perf-cli/src/run/mod.rs",
            "perf-cli/src/decide.rs",
            "perf-cli/src/bench/mod.rs",
            "perf-cli/src/measure.rs",
        ] {
            let found = check(path, &text);
            assert_eq!(
                locations(&found),
                [format!("{path}:3"), format!("{path}:5")],
                "{path}"
            );
        }
        // The library builds them.
        assert_eq!(check("perf-transport/src/host/mod.rs", &text), []);
        assert_eq!(check("src/optimizer/mod.rs", &text), []);
    }

    #[test]
    fn a_command_importing_another_command_is_reported() {
        let text = concat!(
            "//! Fixture.\n",
            "use crate::exit::Exit;\n",
            "use crate::{args::DataDirArg, decide::load};\n",
            "use crate::bench::stats::median;\n",
            "use self::report::Row;\n",
            "fn f() { let _ = crate::run::go(); super::x(); }\n",
            "// crate::bench in a comment\n",
        );
        let found = check("perf-cli/src/run/report.rs", text);
        assert_eq!(
            locations(&found),
            [
                "perf-cli/src/run/report.rs:3",
                "perf-cli/src/run/report.rs:4"
            ],
            "{found:?}"
        );
        assert!(
            found[0].message.contains("`crate::decide` in `run`"),
            "{found:?}"
        );
        // A command's own modules and the shared ones pass; so does the dispatcher.
        assert_eq!(
            check("perf-cli/src/decide.rs", "use crate::decide::x;\n"),
            []
        );
        assert_eq!(check(DISPATCH, text), []);
        assert_eq!(check("perf-store/src/lib.rs", text), []);
    }

    #[test]
    fn modules_are_read_from_single_and_grouped_paths() {
        assert_eq!(crate_modules("use crate::a::b;"), ["a"]);
        assert_eq!(
            crate_modules("use crate::{a, b::{c, d}, e as f};"),
            ["a", "b", "e"]
        );
        assert_eq!(crate_modules("x = crate::g(); y = my_crate::h;"), ["g"]);
        assert!(crate_modules("let crate_ = 1;").is_empty());
    }
}
