//! Reading, validating and resolving configuration files through the public API.

use std::collections::BTreeSet;

use perf_core::config::*;
use perf_core::{DataType, Format, Goal, Method, Name};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn name(s: &str) -> Name {
    Name::new(s).expect("a valid test name")
}

/// The errors of a configuration that must be rejected.
fn errors(text: &str) -> Vec<ConfigError> {
    match Config::from_toml_str(text) {
        Ok(config) => panic!("accepted a bad configuration: {config:?}"),
        Err(ConfigErrors(errors)) => errors,
    }
}

fn paths(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn default_toml_parses_to_the_default_config() {
    let config = Config::from_toml_str(DEFAULT_CONFIG_TOML).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config, Config::default());
}

/// Every field of the settings, adaptation and costs appears in the default
/// file, so that users see all of them.
#[test]
fn default_toml_shows_every_field() {
    let file: toml::Table = DEFAULT_CONFIG_TOML.parse().expect("valid toml");
    let fields = serde_json::to_value(Config::default()).expect("serializable");
    for section in ["defaults", "adaptation", "costs", "monitor"] {
        let written: BTreeSet<&String> =
            file[section].as_table().expect("a table").keys().collect();
        let expected: BTreeSet<&String> = fields[section]
            .as_object()
            .expect("an object")
            .keys()
            .collect();
        assert_eq!(written, expected, "keys of [{section}]");
    }
    for line in DEFAULT_CONFIG_TOML
        .lines()
        .filter(|l| l.contains(" = ") && !l.starts_with('#'))
    {
        let above = DEFAULT_CONFIG_TOML
            .lines()
            .take_while(|l| *l != line)
            .last()
            .unwrap_or_default();
        assert!(above.starts_with('#'), "no comment above {line:?}");
    }
}

const FULL: &str = r#"
version = 1

[defaults]
goal = "balanced"
floor = "512KiB"
ceiling = 2147483648
threshold = "8MiB"
exploration_rate = 0.1

[adaptation]
max_step = 0.5
max_factor = 8

[costs]
grpc_call_us = 80
grpc_cache_bytes = 1048576

[[rules]]
name = "huge-anywhere"
priority = 100
method = "zero_copy"
size_min = "256MiB"

[[rules]]
name = "json-ml"
priority = 50
method = "grpc"
formats = ["json", "msgpack"]
pools = ["ml"]

[pools.ml]
goal = "maximize_throughput"
threshold = "4MiB"
learning = false

[[pools.ml.rules]]
name = "tensors"
priority = 75
method = "zero_copy"
data_types = ["tensor"]
size_min = 65536
size_max = "1.5GiB"

[pools.batch]
floor = 0
ceiling = "1TiB"
exploration_band = 4
"#;

#[test]
fn full_config_resolves_pools_against_defaults() {
    let config = Config::from_toml_str(FULL).unwrap_or_else(|e| panic!("{e}"));

    let defaults = config.defaults;
    assert_eq!(defaults.goal, Goal::Balanced);
    assert_eq!(
        (defaults.floor, defaults.threshold, defaults.ceiling),
        (512 << 10, 8 * MIB, 2 * GIB)
    );
    assert_eq!(defaults.exploration_rate, 0.1);
    assert_eq!(
        defaults.marginal_gain,
        PoolSettings::default().marginal_gain
    );

    assert_eq!(config.adaptation.max_step, 0.5);
    assert_eq!(config.adaptation.max_factor, 8.0);
    assert_eq!(
        config.adaptation.min_factor,
        Adaptation::default().min_factor
    );
    assert_eq!(config.costs.grpc_call_us, 80.0);
    assert_eq!(config.costs.grpc_cache_bytes, MIB);
    assert_eq!(
        config.costs.page_fault_us,
        CostCoefficients::default().page_fault_us
    );

    let pools: Vec<&str> = config.pools.keys().map(Name::as_str).collect();
    assert_eq!(pools.len(), 3);
    for pool in ["default", "ml", "batch"] {
        assert!(pools.contains(&pool), "{pool} missing from {pools:?}");
    }
    assert_eq!(config.pools[&Name::DEFAULT_POOL].settings, defaults);
    assert!(config.pools[&Name::DEFAULT_POOL].rules.is_empty());

    let ml = &config.pools[&name("ml")];
    assert_eq!(
        ml.settings,
        PoolSettings {
            goal: Goal::MaximizeThroughput,
            threshold: 4 * MIB,
            learning: false,
            ..defaults
        }
    );
    assert_eq!(ml.rules.len(), 1);
    let tensors = &ml.rules[0];
    assert_eq!(tensors.method, Method::ZeroCopy);
    assert_eq!(tensors.condition.size_min, Some(65536));
    assert_eq!(tensors.condition.size_max, Some(3 * GIB / 2));
    assert_eq!(tensors.condition.data_types, vec![DataType::Tensor]);
    assert!(tensors.condition.pools.is_empty());

    let batch = &config.pools[&name("batch")].settings;
    assert_eq!(
        (batch.floor, batch.threshold, batch.ceiling),
        (0, 8 * MIB, 1 << 40)
    );
    assert_eq!(batch.exploration_band, 4.0);
    assert_eq!(batch.goal, Goal::Balanced);

    assert_eq!(config.rules.len(), 2);
    assert_eq!(
        config.rules[1].condition.formats,
        vec![Format::Json, Format::Msgpack]
    );
    assert_eq!(config.rules[1].condition.pools, vec![name("ml")]);

    let rule_names = |pool: &str| -> Vec<&str> {
        config
            .rules_for(name(pool))
            .iter()
            .map(|r| r.name.as_str())
            .collect()
    };
    assert_eq!(rule_names("ml"), ["huge-anywhere", "tensors", "json-ml"]);
    assert_eq!(rule_names("batch"), ["huge-anywhere"]);
    assert_eq!(rule_names("default"), ["huge-anywhere"]);
}

const BROKEN: &str = r#"
version = 1
colour = "blue"

[defaults]
goal = "fastest"
learning = "yes"

[adaptation]
max_step = 0

[costs]
grpc_call_us = nan
grpc_cache_bytes = -5

[[rules]]
name = "big"
priority = 10
method = "zero_copy"
size_min = "2TiB"
data_types = ["tensor", "matrix"]
pools = ["ml", "gpu"]

[[rules]]
name = "small"
priority = 10
method = "grpc"

[pools.ml]
floor = "2GiB"
treshold = "4MiB"

[[pools.ml.rules]]
name = "no method"
priority = 5

[pools."bad name"]
goal = "balanced"
"#;

#[test]
fn broken_config_reports_every_error_at_once() {
    let err = Config::from_toml_str(BROKEN).expect_err("a broken configuration");
    insta::assert_snapshot!(err.to_string());
    assert_eq!(err.0.len(), 15, "{err}");
}

#[test]
fn empty_text_misses_the_version() {
    for text in ["", "  \n# only a comment\n"] {
        let errs = errors(text);
        assert_eq!(paths(&errs), ["version"]);
        assert_eq!(errs[0].value, "(missing)");
    }
}

#[test]
fn syntax_error_is_one_error_for_the_file() {
    let errs = errors("version = 1\n[defaults\ngoal = 3\n");
    assert_eq!(paths(&errs), ["(file)"]);
    let message = errs[0].to_string();
    assert!(message.contains("line 2, column 10"), "{message}");
    assert_eq!(message, message.to_lowercase());

    let errs = errors("version = 1\nversion = 1\n");
    assert_eq!(paths(&errs), ["(file)"]);
    assert!(errs[0].value.contains("duplicate key"), "{}", errs[0]);
}

#[test]
fn text_over_the_size_limit_is_rejected() {
    let text = format!("version = 1\n{}", "#".repeat(MAX_CONFIG_BYTES));
    assert_eq!(paths(&errors(&text)), ["(file)"]);
}

#[test]
fn version_must_be_one() {
    let errs = errors("version = 2");
    assert_eq!(paths(&errs), ["version"]);
    assert_eq!(errs[0].expected, "1 (this file is from a newer perfopt)");
    for text in [
        "version = 0",
        "version = \"1\"",
        "version = 1.0",
        "[defaults]\ngoal = \"balanced\"",
    ] {
        let errs = errors(text);
        assert_eq!(paths(&errs), ["version"], "{text}");
        assert_eq!(errs[0].expected, "1");
    }
}

#[test]
fn sections_of_the_wrong_type_are_errors() {
    let errs = errors(
        "version = 1\ndefaults = 3\nadaptation = []\ncosts = \"x\"\nrules = 1\npools = true",
    );
    assert_eq!(
        paths(&errs),
        ["defaults", "adaptation", "costs", "pools", "rules"]
    );
    assert_eq!(errs[0].to_string(), "defaults: got 3, expected a table");
    assert_eq!(
        errs[4].to_string(),
        "rules: got 1, expected an array of tables ([[rules]])"
    );
}

#[test]
fn absurd_sizes_are_errors() {
    for value in [
        "\"2TiB\"",
        "\"-1\"",
        "-1",
        "1e30",
        "\"10MB\"",
        "\"\"",
        "true",
        "1099511627777",
    ] {
        let errs = errors(&format!("version = 1\n[defaults]\nceiling = {value}"));
        assert_eq!(paths(&errs), ["defaults.ceiling"], "{value}");
        assert_eq!(errs[0].value, value);
        assert_eq!(
            errs[0].expected,
            "a size like \"10MiB\" or a byte count, at most 1 TiB"
        );
    }
    let config = Config::from_toml_str("version = 1\n[defaults]\nceiling = \"1TiB\"")
        .expect("1 TiB is allowed");
    assert_eq!(config.defaults.ceiling, 1 << 40);
}

#[test]
fn numbers_out_of_range_are_errors() {
    let cases = [
        (
            "defaults",
            "marginal_gain",
            "1",
            "a number from 0 to below 1",
        ),
        (
            "defaults",
            "exploration_rate",
            "0.6",
            "a number from 0 to 0.5",
        ),
        (
            "defaults",
            "exploration_band",
            "inf",
            "a number from 1 to 64",
        ),
        (
            "adaptation",
            "min_factor",
            "0",
            "a number above 0 and at most 1",
        ),
        ("adaptation", "max_factor", "101", "a number from 1 to 100"),
        (
            "adaptation",
            "cpu_high",
            "-nan",
            "a number above 0 and at most 1",
        ),
        (
            "costs",
            "page_fault_us",
            "-0.5",
            "a number from 0 to 1000000000",
        ),
        ("costs", "grpc_cpu_share", "1.5", "a number from 0 to 1"),
        (
            "costs",
            "segment_create_us",
            "\"20\"",
            "a number from 0 to 1000000000",
        ),
    ];
    for (section, key, value, expected) in cases {
        let errs = errors(&format!("version = 1\n[{section}]\n{key} = {value}"));
        assert_eq!(paths(&errs), [format!("{section}.{key}")], "{value}");
        assert_eq!(errs[0].expected, expected);
    }
}

#[test]
fn unknown_goal_names_the_goals() {
    let errs = errors("version = 1\n[pools.ml]\ngoal = \"fastest\"");
    assert_eq!(
        errs[0].to_string(),
        "pools.ml.goal: got \"fastest\", expected one of minimize_latency, maximize_throughput, minimize_memory, balanced"
    );
    assert_eq!(errs.len(), 1);
}

#[test]
fn bounds_are_checked_after_inheritance() {
    let errs = errors("version = 1\n[defaults]\nfloor = \"2GiB\"");
    assert_eq!(
        errs[0].to_string(),
        "defaults.floor: got \"2GiB\", expected a floor no larger than the ceiling (1GiB)"
    );
    let errs = errors("version = 1\n[pools.ml]\nthreshold = \"2GiB\"");
    assert_eq!(
        errs[0].to_string(),
        "pools.ml.threshold: got \"2GiB\", expected a threshold no larger than the ceiling (1GiB)"
    );
    let errs = errors("version = 1\n[pools.ml]\nfloor = \"20MiB\"");
    assert_eq!(
        errs[0].to_string(),
        "pools.ml.floor: got \"20MiB\", expected a floor no larger than the threshold (10MiB)"
    );
    let errs = errors("version = 1\n[defaults]\nthreshold = 1024");
    assert_eq!(
        errs[0].to_string(),
        "defaults.threshold: got 1024, expected a threshold no smaller than the floor (1MiB)"
    );
    let errs = errors("version = 1\n[pools.ml]\nceiling = \"4MiB\"");
    assert_eq!(
        errs[0].to_string(),
        "pools.ml.ceiling: got \"4MiB\", expected a ceiling no smaller than the threshold (10MiB)"
    );
    assert_eq!(errs.len(), 1);
}

#[test]
fn rule_errors_are_reported_by_path() {
    let text = r#"
version = 1
[[rules]]
name = "a"
priority = 1
method = "zero_copy"
size_min = "2MiB"
size_max = "1MiB"
formats = ["json", 3]

[[rules]]
name = "a"
priority = 2000000
method = "rdma"

[[rules]]
priority = 3

[pools.ml]
[[pools.ml.rules]]
name = "b"
priority = 1
method = "grpc"
pools = ["ml"]
"#;
    let errs = errors(text);
    assert_eq!(
        paths(&errs),
        [
            "rules[0].size_min",
            "rules[0].formats[1]",
            "rules[1].priority",
            "rules[1].method",
            "rules[1].name",
            "rules[2].name",
            "rules[2].method",
            "pools.ml.rules[0].pools",
            "rules[0].priority",
        ]
    );
    let last = errs.last().map(ToString::to_string).unwrap_or_default();
    assert_eq!(
        last,
        "rules[0].priority: got 1, expected a priority not used by rule \"b\" (both apply to pool ml)"
    );
}

#[test]
fn global_rules_may_name_the_implicit_default_pool() {
    let text = "version = 1\n[[rules]]\nname = \"r\"\npriority = 1\nmethod = \"grpc\"\npools = [\"default\"]";
    let config = Config::from_toml_str(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.rules_for(Name::DEFAULT_POOL).len(), 1);
    assert_eq!(config.pools.len(), 1);
}

#[test]
fn pool_names_must_be_valid() {
    let errs = errors("version = 1\n[pools.\"bad name\"]\n[pools.ok]\ngoal = 1");
    assert_eq!(paths(&errs), ["pools.\"bad name\"", "pools.ok.goal"]);
}

#[test]
fn too_many_pools_and_rules_are_errors() {
    let mut text = String::from("version = 1\n");
    for i in 0..MAX_POOLS {
        text.push_str(&format!("[pools.p{i}]\n"));
    }
    assert_eq!(paths(&errors(&text)), ["pools"]);

    let mut text = String::from("version = 1\n");
    for i in 0..=MAX_RULES {
        text.push_str(&format!(
            "[[rules]]\nname = \"r{i}\"\npriority = {i}\nmethod = \"grpc\"\n"
        ));
    }
    assert_eq!(paths(&errors(&text)), ["rules"]);

    let mut text = String::from("version = 1\n");
    for i in 0..MAX_RULES {
        text.push_str(&format!(
            "[[rules]]\nname = \"r{i}\"\npriority = {i}\nmethod = \"grpc\"\n"
        ));
    }
    text.push_str("[[pools.ml.rules]]\nname = \"own\"\npriority = -1\nmethod = \"grpc\"\n");
    assert_eq!(paths(&errors(&text)), ["pools.ml"]);
}

const HEADERS: &str = "[defaults]|[adaptation]|[costs]|[[rules]]|[pools.ml]|[pools.default]|\
    [[pools.ml.rules]]|[pools.\"bad name\"]|[pools.batch]|[[pools.batch.rules]]";
const KEYS: &str = "version goal floor ceiling threshold marginal_gain exploration_rate \
    exploration_band learning max_step max_factor cpu_high grpc_call_us grpc_cache_bytes \
    grpc_cpu_share name priority method size_min size_max data_types formats pools rules \
    defaults unknown";
const VALUES: &str = "1|0|-1|2|0.5|1e30|nan|-inf|true|\"10MiB\"|\"2TiB\"|\"-5\"|\"a\"|\"b\"|\
    \"bad name\"|\"zero_copy\"|\"grpc\"|\"balanced\"|[]|[\"tensor\", \"matrix\"]|\
    [\"ml\", \"default\"]|[\"json\"]|{}|{ a = 1 }|1979-05-27|9223372036854775807|1000000";

/// Text that looks like a configuration: sections with distinct keys, each
/// table header once, and now and then a line of noise, so that most
/// generated files get past the TOML parser and into validation.
fn config_like_text() -> impl Strategy<Value = String> {
    let keys: Vec<&str> = KEYS.split_whitespace().collect();
    let values: Vec<&str> = VALUES.split('|').collect();
    let entries = prop::collection::btree_map(
        prop::sample::select(keys),
        prop::sample::select(values),
        0..5,
    );
    let noise = prop::option::weighted(0.05, "[ -~]{0,20}");
    let section = (
        prop::sample::select(HEADERS.split('|').collect::<Vec<_>>()),
        entries.clone(),
        noise,
    );
    let version = prop::option::weighted(0.8, Just("version = 1\n"));
    let sections = prop::collection::vec(section, 0..8);
    (version, entries, sections).prop_map(|(version, top, sections)| {
        let mut text = String::from(version.unwrap_or_default());
        for (key, value) in top {
            if !(version.is_some() && key == "version") {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        let mut seen = BTreeSet::new();
        for (header, entries, noise) in sections {
            if !header.starts_with("[[") && !seen.insert(header) {
                continue;
            }
            text.push_str(&format!("{header}\n"));
            for (key, value) in entries {
                text.push_str(&format!("{key} = {value}\n"));
            }
            if let Some(noise) = noise {
                text.push_str(&format!("{noise}\n"));
            }
        }
        text
    })
}

fn check_never_panics(text: &str) {
    match Config::from_toml_str(text) {
        Ok(config) => {
            assert!(config.pools.contains_key(&Name::DEFAULT_POOL));
            for (pool, p) in &config.pools {
                let s = p.settings;
                assert!(
                    s.floor <= s.threshold && s.threshold <= s.ceiling,
                    "{pool}: {s:?}"
                );
                let priorities: BTreeSet<i32> =
                    config.rules_for(*pool).iter().map(|r| r.priority).collect();
                assert_eq!(priorities.len(), config.rules_for(*pool).len(), "{pool}");
            }
        }
        Err(ConfigErrors(errors)) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(
                    !e.path.is_empty() && !e.value.is_empty() && !e.expected.is_empty(),
                    "{e:?}"
                );
            }
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_never_panics(&text);
    }

    #[test]
    fn config_like_text_never_panics(text in config_like_text()) {
        check_never_panics(&text);
    }
}

#[test]
fn a_profile_round_trips_and_replaces_the_costs() {
    let costs = perf_core::config::CostCoefficients {
        grpc_call_us: 120.5,
        memcpy_ns_per_byte: 0.07,
        grpc_cache_bytes: 3 << 20,
        ..Default::default()
    };
    let mut measured = toml::Table::new();
    measured.insert("kernel".into(), toml::Value::String("6.1".into()));
    let text = costs.to_profile_toml(measured);
    assert_eq!(Config::parse_profile(&text).unwrap(), costs);

    let config = Config::from_toml_str("version = 1\nprofile = \"calibration.toml\"\n").unwrap();
    assert_eq!(config.profile.as_deref(), Some("calibration.toml"));
}

#[test]
fn bad_profiles_and_profile_with_costs_are_errors() {
    let both =
        Config::from_toml_str("version = 1\nprofile = \"p.toml\"\n[costs]\ngrpc_call_us = 1\n")
            .unwrap_err();
    assert_eq!(both.0.len(), 1, "{both}");
    assert_eq!(both.0[0].path, "profile");
    let empty_path = Config::from_toml_str("version = 1\nprofile = \"\"\n").unwrap_err();
    assert_eq!(empty_path.0[0].path, "profile");

    let no_costs = Config::parse_profile("version = 1\n").unwrap_err();
    assert_eq!(no_costs.0[0].path, "costs");
    let bad =
        Config::parse_profile("version = 1\n[costs]\ngrpc_call_us = -3\nbogus = 1\n").unwrap_err();
    let paths: Vec<&str> = bad.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["costs.grpc_call_us", "costs.bogus"]);
}

#[test]
fn the_monitor_table_sets_the_audit_log_rate_and_the_otlp_export() {
    let config = Config::from_toml_str(
        "version = 1\n[monitor]\ndecision_sample_rate = 0.5\n\
         otlp_endpoint = \"http://collector:4317\"\notlp_interval_secs = 5\n\
         otlp_timeout_secs = 2\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.monitor,
        MonitorSettings {
            decision_sample_rate: 0.5,
            otlp_endpoint: Some("http://collector:4317".into()),
            otlp_interval_secs: 5,
            otlp_timeout_secs: 2,
        }
    );
    let off = Config::from_toml_str("version = 1\n[monitor]\notlp_endpoint = \"\"\n").unwrap();
    assert_eq!(off.monitor.otlp_endpoint, None);
}

#[test]
fn every_bad_monitor_key_is_reported_at_once() {
    let errors = errors(
        "version = 1\n[monitor]\ndecision_sample_rate = 1.5\n\
         otlp_endpoint = \"grpc://collector:4317\"\notlp_interval_secs = 0.5\n\
         otlp_timeout_secs = 61\nsample = 1\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "monitor.decision_sample_rate",
            "monitor.otlp_endpoint",
            "monitor.otlp_interval_secs",
            "monitor.otlp_timeout_secs",
            "monitor.sample",
        ]
    );
    assert!(
        errors[1].expected.contains("http://host:port"),
        "{}",
        errors[1]
    );
    for endpoint in ["http://", "http:// spaced:1", "http:///path", "4317"] {
        let errors = errors_of_endpoint(endpoint);
        assert_eq!(paths(&errors), ["monitor.otlp_endpoint"], "{endpoint:?}");
    }
    let long = format!("http://{}:4317", "h".repeat(MAX_OTLP_ENDPOINT));
    assert_eq!(paths(&errors_of_endpoint(&long)), ["monitor.otlp_endpoint"]);
}

fn errors_of_endpoint(endpoint: &str) -> Vec<ConfigError> {
    errors(&format!(
        "version = 1\n[monitor]\notlp_endpoint = {}\n",
        toml::Value::String(endpoint.into())
    ))
}

#[test]
fn verify_is_a_pool_setting_inherited_from_the_defaults() {
    use perf_core::Verification;
    assert_eq!(PoolSettings::default().verify, Verification::Sampled);
    let config = Config::from_toml_str(
        "version = 1\n[defaults]\nverify = \"none\"\n[pools.tests]\nverify = \"checksum\"\n\
         [pools.ml]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.defaults.verify, Verification::None);
    assert_eq!(
        config.pools[&name("tests")].settings.verify,
        Verification::Checksum
    );
    assert_eq!(
        config.pools[&name("ml")].settings.verify,
        Verification::None
    );
    assert_eq!(
        config.pools[&Name::DEFAULT_POOL].settings.verify,
        Verification::None
    );
}

#[test]
fn a_bad_verify_is_reported_with_its_key_path() {
    let errs = errors(
        "version = 1\n[defaults]\nverify = \"crc32\"\n[pools.ml]\nverify = true\n\
         [pools.batch]\nverify = \"Sampled\"\n",
    );
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "defaults.verify: got \"crc32\", expected one of checksum, sampled, none",
            "pools.batch.verify: got \"Sampled\", expected one of checksum, sampled, none",
            "pools.ml.verify: got true, expected one of checksum, sampled, none",
        ]
    );
}
