//! Dependency rules between the workspace crates (DESIGN.md), checked on `cargo metadata` output.
//!
//! Only normal dependencies count: dev- and build-dependencies may use anything.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::Violation;

const CORE: &str = "perf-core";
const PLATFORM: &str = "perf-platform";
const TRANSPORT: &str = "perf-transport";
const CLI: &str = "perf-cli";
const FACADE: &str = "perfopt";

/// Crates perf-core must not reach, even transitively: async runtimes, libc and mmap crates.
const FORBIDDEN_IN_CORE: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "libc",
    "nix",
    "rustix",
    "memmap2",
    "shared_memory",
    "mio",
];
/// Crates that give raw shared-memory or mmap access: only perf-platform may name them.
const RAW_SHM: &[&str] = &["libc", "nix", "rustix", "memmap2", "shared_memory", "memfd"];
/// The crates that may use `anyhow`; libraries use `thiserror`.
const ANYHOW_USERS: &[&str] = &[CLI, "xtask"];

/// A workspace member and the packages it declares as normal dependencies, optional ones included.
#[derive(Debug)]
struct Member {
    id: String,
    name: String,
    normal_deps: BTreeSet<String>,
}

/// What the dependency rules need from `cargo metadata`.
#[derive(Debug)]
pub(crate) struct Metadata {
    members: Vec<Member>,
    /// Package name by package id, for every package.
    names: HashMap<String, String>,
    /// Normal edges of the resolve graph: package id to the ids it depends on.
    normal_edges: HashMap<String, Vec<String>>,
}

/// Runs `cargo metadata` on the workspace at `root` with every feature on, and parses it.
pub(crate) fn load(root: &Path) -> Result<Metadata> {
    let manifest = root.join("Cargo.toml");
    let output = Command::new(crate::cargo())
        .args(["metadata", "--format-version", "1", "--all-features"])
        .arg("--manifest-path")
        .arg(&manifest)
        .current_dir(root)
        .output()
        .context("could not start `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` failed, expected success, got {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let json: Value = serde_json::from_slice(&output.stdout)
        .context("`cargo metadata` printed something other than json")?;
    Metadata::parse(&json)
}

impl Metadata {
    /// Reads the parts of `cargo metadata --format-version 1` output that the rules use.
    pub(crate) fn parse(json: &Value) -> Result<Metadata> {
        let member_ids: HashSet<&str> = array(json, "workspace_members")?
            .iter()
            .map(|it| {
                it.as_str()
                    .context("expected string ids in `workspace_members`")
            })
            .collect::<Result<_>>()?;

        let mut names = HashMap::new();
        let mut members = Vec::new();
        for package in array(json, "packages")? {
            let id = string(package, "id")?;
            let name = string(package, "name")?;
            names.insert(id.to_owned(), name.to_owned());
            if !member_ids.contains(id) {
                continue;
            }
            let mut normal_deps = BTreeSet::new();
            for dep in array(package, "dependencies")? {
                if dep.get("kind").is_none_or(Value::is_null) {
                    normal_deps.insert(string(dep, "name")?.to_owned());
                }
            }
            members.push(Member {
                id: id.to_owned(),
                name: name.to_owned(),
                normal_deps,
            });
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));

        let resolve = json
            .get("resolve")
            .filter(|it| !it.is_null())
            .context("expected a `resolve` graph in cargo metadata, found none")?;
        let mut normal_edges = HashMap::new();
        for node in array(resolve, "nodes")? {
            let mut targets = Vec::new();
            for dep in array(node, "deps")? {
                let is_normal = array(dep, "dep_kinds")?
                    .iter()
                    .any(|kind| kind.get("kind").is_none_or(Value::is_null));
                if is_normal {
                    targets.push(string(dep, "pkg")?.to_owned());
                }
            }
            normal_edges.insert(string(node, "id")?.to_owned(), targets);
        }

        Ok(Metadata {
            members,
            names,
            normal_edges,
        })
    }

    fn name_of<'a>(&'a self, id: &'a str) -> &'a str {
        self.names.get(id).map_or(id, String::as_str)
    }
}

fn array<'a>(value: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    value
        .get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("expected an array `{key}` in cargo metadata"))
}

fn string<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("expected a string `{key}` in cargo metadata"))
}

/// Checks every dependency rule and returns the violations, by crate.
pub(crate) fn check(metadata: &Metadata) -> Vec<Violation> {
    let workspace: BTreeSet<&str> = metadata.members.iter().map(|it| it.name.as_str()).collect();
    let mut violations = Vec::new();
    for member in &metadata.members {
        violations.extend(check_siblings(member, &workspace));
        violations.extend(check_raw_shm(member));
        violations.extend(check_anyhow(member));
    }
    violations.extend(check_core_closure(metadata));
    violations
}

/// perf-core names no workspace crate; other perf-* crates build on perf-core and talk to siblings
/// only through its traits; perf-cli goes through the facade.
fn check_siblings(member: &Member, workspace: &BTreeSet<&str>) -> Vec<Violation> {
    let name = member.name.as_str();
    let allowed: &[&str] = match name {
        CORE => &[],
        TRANSPORT => &[CORE, PLATFORM],
        CLI => &[FACADE, CORE],
        _ if name.starts_with("perf-") => &[CORE],
        _ => return Vec::new(),
    };
    let mut violations = Vec::new();
    if name != CORE && name != CLI && !member.normal_deps.contains(CORE) {
        violations.push(Violation::new(
            name,
            format!("does not depend on `{CORE}`, expected every perf-* crate but {CLI} to"),
        ));
    }
    let expected = match allowed {
        [] => "no workspace crate".to_owned(),
        _ => {
            let listed: Vec<String> = allowed.iter().map(|it| format!("`{it}`")).collect();
            format!("among workspace crates only {}", listed.join(" and "))
        }
    };
    for dep in &member.normal_deps {
        if workspace.contains(dep.as_str()) && !allowed.contains(&dep.as_str()) {
            violations.push(Violation::new(
                name,
                format!("depends on workspace crate `{dep}`, expected {expected}"),
            ));
        }
    }
    violations
}

/// Only perf-platform makes raw shared-memory or mmap calls.
fn check_raw_shm(member: &Member) -> Vec<Violation> {
    if member.name == PLATFORM {
        return Vec::new();
    }
    member
        .normal_deps
        .iter()
        .filter(|dep| RAW_SHM.contains(&dep.as_str()))
        .map(|dep| {
            Violation::new(
                &member.name,
                format!(
                    "depends on `{dep}`, expected raw shared memory and mmap only in {PLATFORM}"
                ),
            )
        })
        .collect()
}

/// Libraries return `thiserror` enums; only the binaries use `anyhow`.
fn check_anyhow(member: &Member) -> Vec<Violation> {
    if ANYHOW_USERS.contains(&member.name.as_str()) || !member.normal_deps.contains("anyhow") {
        return Vec::new();
    }
    vec![Violation::new(
        &member.name,
        format!(
            "depends on `anyhow`, expected it only in {}; libraries use `thiserror`",
            ANYHOW_USERS.join(" and ")
        ),
    )]
}

/// perf-core reaches no async runtime, libc or mmap crate through normal dependencies.
fn check_core_closure(metadata: &Metadata) -> Vec<Violation> {
    let Some(core) = metadata.members.iter().find(|it| it.name == CORE) else {
        return Vec::new();
    };
    // Breadth-first, so that the path reported for each crate is a shortest one.
    let mut parent: HashMap<&str, &str> = HashMap::new();
    let mut queue = VecDeque::from([core.id.as_str()]);
    let mut reached = Vec::new();
    while let Some(id) = queue.pop_front() {
        let deps = metadata.normal_edges.get(id).map_or(&[][..], Vec::as_slice);
        for dep in deps {
            let dep = dep.as_str();
            if dep == core.id || parent.contains_key(dep) {
                continue;
            }
            parent.insert(dep, id);
            queue.push_back(dep);
            if FORBIDDEN_IN_CORE.contains(&metadata.name_of(dep)) {
                reached.push(dep);
            }
        }
    }
    reached.sort_by_key(|id| metadata.name_of(id));
    reached
        .into_iter()
        .map(|id| {
            let mut path = vec![metadata.name_of(id)];
            let mut at = id;
            while let Some(&up) = parent.get(at) {
                path.push(metadata.name_of(up));
                at = up;
            }
            path.reverse();
            Violation::new(
                CORE,
                format!(
                    "reaches `{}` through normal dependencies ({}), expected no async runtime, libc or mmap crate",
                    metadata.name_of(id),
                    path.join(" -> ")
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A package of a synthetic workspace: its name, whether it is a member, and its dependencies.
    struct Pkg {
        name: &'static str,
        member: bool,
        normal: Vec<&'static str>,
        dev: Vec<&'static str>,
    }

    fn member(name: &'static str, normal: &[&'static str]) -> Pkg {
        Pkg {
            name,
            member: true,
            normal: normal.to_vec(),
            dev: Vec::new(),
        }
    }

    fn external(name: &'static str, normal: &[&'static str]) -> Pkg {
        Pkg {
            member: false,
            ..member(name, normal)
        }
    }

    fn id(name: &str) -> String {
        format!("registry+https://example.invalid#{name}@1.0.0")
    }

    /// The layout DESIGN.md asks for, with a few external crates in their usual places.
    fn healthy() -> Vec<Pkg> {
        let mut core = member(CORE, &["arc-swap", "serde", "thiserror", "toml"]);
        core.dev = vec!["proptest", "tokio"];
        vec![
            core,
            member(PLATFORM, &[CORE, "libc", "memfd", "shared_memory"]),
            member(TRANSPORT, &[CORE, PLATFORM, "tokio", "thiserror"]),
            member("perf-store", &[CORE, "thiserror"]),
            member("perf-learn", &[CORE]),
            member("perf-monitor", &[CORE, "tokio"]),
            member(CLI, &[FACADE, CORE, "anyhow", "clap"]),
            member(
                FACADE,
                &[CORE, PLATFORM, TRANSPORT, "perf-store", "thiserror"],
            ),
            member("xtask", &["anyhow", "clap", "serde_json"]),
            external("tokio", &["mio", "libc"]),
            external("mio", &["libc"]),
            external("serde", &["serde_derive"]),
        ]
    }

    /// Replaces the normal dependencies of `name`.
    fn set_normal(mut pkgs: Vec<Pkg>, name: &str, normal: &[&'static str]) -> Vec<Pkg> {
        let pkg = pkgs.iter_mut().find(|it| it.name == name).unwrap();
        pkg.normal = normal.to_vec();
        pkgs
    }

    /// Writes the packages out as `cargo metadata` would, then parses that back.
    fn metadata(mut pkgs: Vec<Pkg>) -> Metadata {
        let listed: BTreeSet<&str> = pkgs.iter().map(|it| it.name).collect();
        let unlisted: BTreeSet<&'static str> = pkgs
            .iter()
            .flat_map(|it| it.normal.iter().chain(&it.dev).copied())
            .filter(|it| !listed.contains(it))
            .collect();
        pkgs.extend(unlisted.into_iter().map(|it| external(it, &[])));

        let packages: Vec<Value> = pkgs
            .iter()
            .map(|pkg| {
                let normal = pkg.normal.iter().map(|d| json!({"name": d, "kind": null}));
                let dev = pkg.dev.iter().map(|d| json!({"name": d, "kind": "dev"}));
                json!({
                    "name": pkg.name,
                    "id": id(pkg.name),
                    "dependencies": normal.chain(dev).collect::<Vec<_>>(),
                })
            })
            .collect();
        let nodes: Vec<Value> = pkgs
            .iter()
            .map(|pkg| {
                let normal = pkg.normal.iter().map(|d| {
                    json!({"name": d, "pkg": id(d), "dep_kinds": [{"kind": null, "target": null}]})
                });
                let dev = pkg.dev.iter().map(|d| {
                    json!({"name": d, "pkg": id(d), "dep_kinds": [{"kind": "dev", "target": null}]})
                });
                json!({"id": id(pkg.name), "deps": normal.chain(dev).collect::<Vec<_>>()})
            })
            .collect();
        let members: Vec<String> = pkgs
            .iter()
            .filter(|it| it.member)
            .map(|it| id(it.name))
            .collect();
        let json = json!({
            "packages": packages,
            "workspace_members": members,
            "resolve": {"nodes": nodes, "root": null},
            "version": 1,
        });
        Metadata::parse(&json).unwrap()
    }

    fn messages(pkgs: Vec<Pkg>) -> Vec<String> {
        check(&metadata(pkgs))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn healthy_workspace_passes() {
        assert_eq!(messages(healthy()), Vec::<String>::new());
    }

    #[test]
    fn core_depending_on_a_workspace_crate_is_reported() {
        let found = messages(set_normal(healthy(), CORE, &["serde", "perf-store"]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("perf-core: depends on workspace crate `perf-store`"));
        assert!(
            found[0].ends_with("expected no workspace crate"),
            "{found:?}"
        );
    }

    #[test]
    fn core_reaching_a_forbidden_crate_is_reported_with_its_path() {
        let mut pkgs = set_normal(healthy(), CORE, &["serde", "rand"]);
        pkgs.push(external("rand", &["getrandom"]));
        pkgs.push(external("getrandom", &["libc"]));
        let found = messages(pkgs);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("reaches `libc`")
                && found[0].contains("(perf-core -> rand -> getrandom -> libc)"),
            "{found:?}"
        );
    }

    #[test]
    fn core_reaching_several_forbidden_crates_reports_each() {
        let found = messages(set_normal(healthy(), CORE, &["tokio"]));
        let reached: Vec<&str> = found.iter().filter_map(|it| it.split('`').nth(1)).collect();
        assert_eq!(reached, ["libc", "mio", "tokio"], "{found:?}");
    }

    #[test]
    fn core_dev_dependency_on_a_runtime_passes() {
        let pkgs = healthy();
        assert!(pkgs[0].dev.contains(&"tokio"));
        assert_eq!(messages(pkgs), Vec::<String>::new());
    }

    #[test]
    fn perf_crate_without_core_is_reported() {
        let found = messages(set_normal(healthy(), "perf-learn", &["serde"]));
        assert_eq!(
            found,
            [
                "perf-learn: does not depend on `perf-core`, expected every perf-* crate but perf-cli to"
            ]
        );
    }

    #[test]
    fn sibling_dependency_is_reported() {
        let found = messages(set_normal(healthy(), "perf-learn", &[CORE, "perf-store"]));
        assert_eq!(
            found,
            [
                "perf-learn: depends on workspace crate `perf-store`, expected among workspace crates only `perf-core`"
            ]
        );
    }

    #[test]
    fn platform_is_allowed_for_transport_only() {
        let found = messages(set_normal(healthy(), "perf-store", &[CORE, PLATFORM]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("perf-store: depends on workspace crate `perf-platform`"));
    }

    #[test]
    fn cli_depending_on_a_library_crate_is_reported() {
        let found = messages(set_normal(
            healthy(),
            CLI,
            &[FACADE, CORE, "perf-store", "anyhow"],
        ));
        assert_eq!(
            found,
            [
                "perf-cli: depends on workspace crate `perf-store`, expected among workspace crates only `perfopt` and `perf-core`"
            ]
        );
    }

    #[test]
    fn raw_shared_memory_outside_platform_is_reported() {
        let found = messages(set_normal(
            healthy(),
            TRANSPORT,
            &[CORE, PLATFORM, "memmap2"],
        ));
        assert_eq!(
            found,
            [
                "perf-transport: depends on `memmap2`, expected raw shared memory and mmap only in perf-platform"
            ]
        );
        let found = messages(set_normal(healthy(), FACADE, &[CORE, "libc"]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("perfopt: depends on `libc`"));
    }

    #[test]
    fn anyhow_in_a_library_is_reported() {
        let found = messages(set_normal(healthy(), FACADE, &[CORE, "anyhow"]));
        assert_eq!(
            found,
            [
                "perfopt: depends on `anyhow`, expected it only in perf-cli and xtask; libraries use `thiserror`"
            ]
        );
        let found = messages(set_normal(healthy(), "perf-store", &[CORE, "anyhow"]));
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn anyhow_as_a_dev_dependency_of_a_library_passes() {
        let mut pkgs = healthy();
        pkgs.iter_mut()
            .find(|it| it.name == "perf-store")
            .unwrap()
            .dev = vec!["anyhow"];
        assert_eq!(messages(pkgs), Vec::<String>::new());
    }

    #[test]
    fn metadata_without_resolve_is_an_error() {
        let json = json!({"packages": [], "workspace_members": [], "resolve": null});
        let err = Metadata::parse(&json).unwrap_err().to_string();
        assert_eq!(
            err,
            "expected a `resolve` graph in cargo metadata, found none"
        );
    }
}
