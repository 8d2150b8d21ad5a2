//! `perfopt config diff` as a user reads it: keys as the file writes them, sizes for people.

mod support;

use std::path::Path;

use support::{json, perfopt, stderr, stdout};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn diff_names_keys_as_written_with_human_sizes_and_readable_rules() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.toml", "version = 1\n[pools.batch]\n");
    let new = write(
        dir.path(),
        "new.toml",
        "version = 1\n[pools.batch]\nthreshold = \"32MiB\"\n\
         [[rules]]\nname = \"json-on-grpc\"\npriority = 10\nformats = [\"json\"]\n\
         size_max = \"256MiB\"\nmethod = \"grpc\"\n",
    );
    let o = perfopt(&["config", "diff", &old, &new]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("  pools.batch.threshold: 10 MiB -> 32 MiB\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  rules[\"json-on-grpc\"]: rule added (priority 10, method grpc, size_max 256 MiB, formats [json])\n"
        ),
        "{text}"
    );
    for internal in [".settings.", "(absent)", "33554432", "[] ->"] {
        assert!(!text.contains(internal), "{internal:?} in:\n{text}");
    }

    let d = json(&["config", "diff", &old, &new, "--json"]);
    let keys = d["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{d}");
    assert_eq!(keys[0]["path"], "pools.batch.threshold");
    assert_eq!(keys[0]["change"], "value");
    assert_eq!(keys[0]["new"], "32 MiB");
    assert_eq!(keys[1]["path"], "rules[\"json-on-grpc\"]");
    assert_eq!(keys[1]["change"], "rule_added");
}
