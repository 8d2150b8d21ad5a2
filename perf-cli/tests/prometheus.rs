//! The operator files in `deploy/` against the real tools: promtool checks the shipped
//! Prometheus config and rules and runs their unit tests; a real Prometheus scraping
//! `perfopt serve --demo-load` answers every Grafana panel's query and every rule, and loads
//! every rule group healthy; the dashboard JSON is checked for what provisioning relies on.
//!
//! Without promtool or prometheus (Debian package `prometheus`) the external tests print
//! `NOT RUN` and return, and fail when `PERFOPT_EXTERNAL_TESTS=1` asks for the external tools.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use perfopt::monitor::{Family, Kind};

mod support;

use serde_json::Value;
use support::{Killed, Serve};

/// The alerts `deploy/prometheus/alerts.yml` must define, each tested firing and not firing.
const ALERTS: &[&str] = &[
    "PerfoptDown",
    "PerfoptDegraded",
    "PerfoptFailureRateHigh",
    "PerfoptFallbackRateHigh",
    "PerfoptModelDropped",
    "PerfoptSharedMemoryNearBudget",
];

/// Metrics the demo load does not produce, with what makes the daemon export them. A panel
/// reading one may answer no data (and must say why in its `noValue`), but only while the
/// daemon's own `/metrics` has no sample of it either.
const EXPORTED_LATER: &[(&str, &str)] = &[
    (
        "perfopt_model_validation_accuracy_ratio",
        "a trained model (1000 paired samples)",
    ),
    (
        "perfopt_reply_duration_seconds",
        "a call whose worker returns a reply",
    ),
];

/// Metrics with a `pool` label: a panel reading one filters by the `pool` variable.
const POOL_SERIES: &[&str] = &[
    "perfopt_transfers_total",
    "perfopt_transfer_bytes_total",
    "perfopt_fallbacks_total",
    "perfopt_transfer_failures_total",
    "perfopt_transfer_duration_seconds_bucket",
    "perfopt_transfer_queue_seconds_bucket",
    "perfopt_pool_threshold_bytes",
];

/// The Grafana interval variables as Grafana sets them for 1 s scrapes over a short range
/// (`$__rate_interval` is at least four scrape intervals).
const INTERVALS: &[(&str, &str)] = &[
    ("__rate_interval", "10s"),
    ("__interval", "2s"),
    ("__range", "1m"),
];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dashboard() -> Value {
    let path = deploy().join("grafana/dashboards/perfopt.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether `tool` runs. Without it the test fails when `PERFOPT_EXTERNAL_TESTS=1`, and
/// otherwise says loudly that it did not run.
fn tool_runs(tool: &str, test: &str) -> bool {
    let ran = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match ran {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var("PERFOPT_EXTERNAL_TESTS").as_deref() != Ok("1"),
                "{tool} is needed and cannot be run ({e}): install the Debian package `prometheus`"
            );
            eprintln!(
                "NOT RUN: {test}: {tool} cannot be run ({e}); install the Debian package `prometheus`"
            );
            false
        }
    }
}

/// The maximal runs of `[A-Za-z0-9_:]` in `text`, outside string literals, label matchers
/// (`{...}`) and range selectors (`[...]`), each with whether a `(` follows (a function).
fn identifiers(text: &str) -> Vec<(String, bool)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut depth) = (0, 0usize);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                depth += 1;
                i += 1;
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            c if depth == 0 && (c.is_ascii_alphanumeric() || c == '_' || c == ':') => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let rest = chars[i..].iter().find(|c| !c.is_whitespace());
                out.push((chars[start..i].iter().collect(), rest == Some(&'(')));
            }
            _ => i += 1,
        }
    }
    out
}

/// The series an expression reads: recording rules (names with `:`), perfopt metrics, `up`.
fn series_read(expr: &str) -> BTreeSet<String> {
    identifiers(expr)
        .into_iter()
        .filter(|(name, function)| {
            !function && (name.contains(':') || name.starts_with("perfopt_") || name == "up")
        })
        .map(|(name, _)| name)
        .collect()
}

/// Every name a scrape of perfopt can show, from the metric catalog.
fn exposition_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for f in Family::ALL {
        let d = f.def();
        match d.kind {
            Kind::Counter => {
                names.insert(format!("{}_total", d.name));
            }
            Kind::Gauge => {
                names.insert(d.name.to_owned());
            }
            Kind::Histogram => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{}{suffix}", d.name));
                }
            }
        }
    }
    names
}

/// Every panel, rows' nested panels included, in order.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(nested) = p.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// `(panel title, expr)` of every panel target.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("").to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or("").to_owned()))
        })
        .collect()
}

/// `expr` with Grafana's `$name`, `${name}` and `${name:format}` replaced from `vars`; an
/// unknown variable is an error in the dashboard.
fn substituted(expr: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {expr}"));
            let inner = &braced[..end];
            (inner.split(':').next().unwrap(), end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let value = vars
            .get(name)
            .unwrap_or_else(|| panic!("unknown variable ${name} in {expr}"));
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// A value as Grafana puts a multi-value variable's selection into a `=~` matcher: regex
/// metacharacters escaped, the backslash doubled inside the PromQL string.
fn regex_escaped(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if "\\^$*+?.()|{}[]".contains(c) {
                format!("\\\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn form_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.0 request (so the answer comes whole, never chunked): the status and body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP head in {response:?}")))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((code, body.to_owned()))
}

/// The Prometheus HTTP API at one address.
struct Api(SocketAddr);

impl Api {
    /// An instant query now: the result's samples, or Prometheus' error.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let body = format!("query={}", form_encoded(expr));
        let (code, text) =
            http(self.0, "POST", "/api/v1/query", &body).map_err(|e| format!("no answer: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{code}: {e}: {text}"))?;
        if v["status"] != "success" {
            return Err(format!("{code}: {}: {}", v["errorType"], v["error"]));
        }
        Ok(match &v["data"]["result"] {
            Value::Array(samples) => samples.clone(),
            other => vec![other.clone()],
        })
    }

    fn get(&self, path: &str) -> Value {
        let (code, text) = http(self.0, "GET", path, "").unwrap();
        assert_eq!(code, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// Fails with `what` and the logs of Prometheus and the daemon in `dir`.
fn fail(dir: &tempfile::TempDir, what: String) -> ! {
    panic!(
        "{what}\n--- prometheus log ---\n{}\n--- serve log ---\n{}",
        read(&dir.path().join("prometheus.log")),
        read(&dir.path().join("serve.log"))
    )
}

/// The number in a vector query's first sample, if there is one.
fn first_value(samples: &[Value]) -> Option<f64> {
    samples.first()?["value"][1].as_str()?.parse().ok()
}

/// Which alerts `alerts_test.yml` shows firing and which quiet: every `alertname:` of an
/// `alert_rule_test` and whether its `exp_alerts` is empty.
fn alert_tests(text: &str) -> BTreeMap<String, (bool, bool)> {
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut current = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("alertname:") {
            current = Some(name.trim().to_owned());
        } else if let (Some(name), Some(exp)) = (&current, line.strip_prefix("exp_alerts:")) {
            let entry = seen.entry(name.clone()).or_default();
            if exp.trim() == "[]" {
                entry.1 = true;
            } else {
                entry.0 = true;
            }
            current = None;
        }
    }
    seen
}

#[test]
fn promtool_passes_the_shipped_config_rules_and_rule_unit_tests() {
    if !tool_runs("promtool", "promtool on deploy/prometheus") {
        return;
    }
    let dir = deploy().join("prometheus");
    let promtool = |args: &[&str]| {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {}: {said}", args.join(" "));
        said
    };
    let config = promtool(&["check", "config", "prometheus.yml"]);
    assert!(
        config.contains("Checking alerts.yml") && !config.contains(" 0 rules found"),
        "the config loads the alert rules: {config}"
    );
    let rules = promtool(&["check", "rules", "alerts.yml"]);
    assert!(rules.contains("SUCCESS"), "{rules}");
    let tests = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(tests.contains("SUCCESS"), "{tests}");

    let tested = alert_tests(&read(&dir.join("alerts_test.yml")));
    for alert in ALERTS {
        assert_eq!(
            tested.get(*alert),
            Some(&(true, true)),
            "alerts_test.yml shows {alert} firing and quiet (firing, quiet) in {tested:?}"
        );
    }
}

#[test]
fn the_dashboard_is_provisionable_and_reads_only_catalogued_metrics() {
    let d = dashboard();
    assert_eq!(
        d["uid"], "perfopt",
        "a stable uid for links and provisioning"
    );
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let schema = d["schemaVersion"].as_u64().unwrap_or(0);
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");

    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["instance", "pool"] {
        let v = var(name);
        assert_eq!(v["type"], "query", "{name}");
        assert!(
            v["definition"].as_str().is_some_and(
                |q| q.starts_with("label_values(") && q.ends_with(&format!(", {name})"))
            ),
            "{name}: {}",
            v["definition"]
        );
        assert_eq!(v["includeAll"], true, "{name}");
        assert_eq!(v["allValue"], ".*", "{name}");
    }

    // No data source but the variable: every `datasource` and every `uid` inside one.
    fn datasources(v: &Value, at: &str, bad: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let here = format!("{at}.{k}");
                    if k == "datasource" {
                        let uid = v.get("uid").unwrap_or(v);
                        if uid != "${datasource}" {
                            bad.push(format!("{here} = {v}"));
                        }
                    } else if k == "uid" && !at.is_empty() {
                        bad.push(format!("{here} = {v}"));
                    } else {
                        datasources(v, &here, bad);
                    }
                }
            }
            Value::Array(list) => {
                for (i, v) in list.iter().enumerate() {
                    datasources(v, &format!("{at}[{i}]"), bad);
                }
            }
            _ => {}
        }
    }
    let mut bad = Vec::new();
    datasources(&d, "", &mut bad);
    assert!(
        bad.is_empty(),
        "data sources other than ${{datasource}}: {bad:#?}"
    );

    let mut ids = BTreeSet::new();
    let catalog = exposition_names();
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap_or("");
        assert!(!title.is_empty(), "a panel without a title: {p}");
        let id = p["id"].as_u64().unwrap_or_else(|| panic!("{title}: no id"));
        assert!(ids.insert(id), "{title}: id {id} twice");
        let w = p["gridPos"]["w"].as_u64().unwrap_or(0);
        assert!((1..=24).contains(&w), "{title}: width {w}");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: panel data source"
        );
        let targets = p["targets"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!targets.is_empty(), "{title}: no target");
        let mut refs = BTreeSet::new();
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or("");
            assert!(!expr.is_empty(), "{title}: a target without expr");
            assert!(
                refs.insert(t["refId"].as_str().unwrap_or("")),
                "{title}: refId twice"
            );
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: {expr} ignores the instance variable"
            );
            let read = series_read(expr);
            if read.iter().any(|s| POOL_SERIES.contains(&s.as_str())) {
                assert!(
                    expr.contains("pool=~\"$pool\""),
                    "{title}: {expr} ignores the pool variable"
                );
            }
            for s in read.iter().filter(|s| s.starts_with("perfopt_")) {
                assert!(
                    catalog.contains(s),
                    "{title}: {s} is not a metric perfopt exports"
                );
            }
            for (at, _) in expr.match_indices('[') {
                assert!(
                    expr[at..].starts_with("[$__rate_interval]"),
                    "{title}: {expr}: a range other than $__rate_interval"
                );
            }
            if EXPORTED_LATER.iter().any(|(m, _)| expr.contains(m)) {
                assert!(
                    p["fieldConfig"]["defaults"]["noValue"].is_string(),
                    "{title}: reads a metric exported later, so says why it has no data"
                );
            }
        }
    }

    let provisioning = deploy().join("grafana/provisioning");
    let sources = read(&provisioning.join("datasources/perfopt.yml"));
    assert!(
        sources.contains("type: prometheus") && sources.contains("timeInterval:"),
        "the data source is a Prometheus with its scrape interval: {sources}"
    );
    let provider = read(&provisioning.join("dashboards/perfopt.yml"));
    assert!(
        provider.contains("type: file") && provider.contains("path: "),
        "the dashboards come from files: {provider}"
    );

    let rules = read(&deploy().join("prometheus/alerts.yml"));
    for (name, _) in identifiers(&rules) {
        if name.starts_with("perfopt_") {
            assert!(
                catalog.contains(&name),
                "alerts.yml: {name} is not a metric perfopt exports"
            );
        }
    }
}

#[test]
fn a_real_prometheus_scraping_serve_answers_every_panel_and_rule() {
    if !tool_runs("prometheus", "a real Prometheus scraping perfopt serve") {
        return;
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(50);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = File::create(dir.path().join("serve.log")).unwrap();
    let mut daemon = Serve::demo(&data, &[], Stdio::from(log));
    let target = daemon.addr;

    // The shipped config with the daemon as its target, 1 s scrapes and evaluations, beside
    // a copy of the shipped rules.
    let shipped = read(&deploy().join("prometheus/prometheus.yml"));
    let mut changed = BTreeMap::new();
    let config: String = shipped
        .lines()
        .map(|l| {
            let code = l.trim_start();
            let indent = &l[..l.len() - code.len()];
            if code.starts_with('#') {
                return l.to_owned();
            }
            for key in [
                "scrape_interval:",
                "evaluation_interval:",
                "scrape_timeout:",
            ] {
                if code.starts_with(key) {
                    *changed.entry(key).or_insert(0) += 1;
                    return format!("{indent}{key} 1s");
                }
            }
            if code.contains("\"127.0.0.1:9464\"") {
                *changed.entry("target").or_insert(0) += 1;
                return l.replace("127.0.0.1:9464", &target.to_string());
            }
            l.to_owned()
        })
        .map(|l| l + "\n")
        .collect();
    assert_eq!(
        (
            changed.get("scrape_interval:"),
            changed.get("evaluation_interval:"),
            changed.get("target")
        ),
        (Some(&1), Some(&1), Some(&1)),
        "the shipped prometheus.yml sets one global scrape_interval, one evaluation_interval \
         and one target 127.0.0.1:9464:\n{shipped}"
    );
    std::fs::write(dir.path().join("prometheus.yml"), &config).unwrap();
    std::fs::copy(
        deploy().join("prometheus/alerts.yml"),
        dir.path().join("alerts.yml"),
    )
    .unwrap();

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = Api(SocketAddr::from(([127, 0, 0, 1], port)));
    let log = dir.path().join("prometheus.log");
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={}", api.0))
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );

    // Up, scraped a few times, and every rule evaluated.
    loop {
        let up = api.query(r#"up{job="perfopt"} == 1"#).ok();
        let scrapes = api
            .query(r#"count_over_time(up{job="perfopt"}[1m])"#)
            .ok()
            .and_then(|s| first_value(&s));
        let rules_ran = http(api.0, "GET", "/api/v1/rules", "")
            .ok()
            .filter(|(code, _)| *code == 200)
            .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .is_some_and(|v| {
                let groups = v["data"]["groups"].as_array().cloned().unwrap_or_default();
                !groups.is_empty()
                    && groups.iter().all(|g| {
                        g["rules"]
                            .as_array()
                            .is_some_and(|r| r.iter().all(|r| r["health"] != "unknown"))
                    })
            });
        if up.is_some_and(|s| !s.is_empty()) && scrapes.is_some_and(|n| n >= 5.0) && rules_ran {
            break;
        }
        if Instant::now() > deadline {
            fail(
                &dir,
                format!(
                    "perfopt at {target} not scraped 5 times with every rule run (scrapes {scrapes:?})"
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("scraped and evaluated after {:?}", started.elapsed());

    // Rules: loaded, healthy, every alert with a `for`, a severity and a runbook.
    let rules = api.get("/api/v1/rules");
    let mut alerts = BTreeMap::new();
    let mut records = Vec::new();
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["name"].as_str().unwrap().to_owned();
            assert_eq!(
                rule["health"], "ok",
                "{} / {name}: {}",
                group["name"], rule["lastError"]
            );
            assert!(
                rule["lastError"].as_str().is_none_or(str::is_empty),
                "{name}: {}",
                rule["lastError"]
            );
            let query = rule["query"].as_str().unwrap().to_owned();
            if rule["type"] == "alerting" {
                assert!(
                    rule["duration"].as_f64().unwrap_or(0.0) > 0.0,
                    "{name}: no for"
                );
                assert!(
                    ["critical", "warning"]
                        .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                    "{name}: severity {}",
                    rule["labels"]["severity"]
                );
                for key in ["summary", "description"] {
                    assert!(
                        rule["annotations"][key]
                            .as_str()
                            .is_some_and(|s| !s.is_empty()),
                        "{name}: no {key}"
                    );
                }
                assert!(
                    rule["annotations"]["description"]
                        .as_str()
                        .is_some_and(|s| s.contains("Runbook:")),
                    "{name}: the description gives a runbook hint"
                );
                alerts.insert(name, query);
            } else {
                records.push((name, query));
            }
        }
    }
    assert_eq!(
        alerts.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut names = ALERTS.to_vec();
            names.sort_unstable();
            names
        },
        "the alerts Prometheus loaded"
    );
    assert!(!records.is_empty(), "recording rules are loaded");

    let metrics = http(target, "GET", "/metrics", "").unwrap().1;
    let exported = |metric: &str| metrics.lines().any(|l| l.starts_with(metric));

    // Every query, polled until it has data or the deadline passes; the ones still empty then
    // are failures unless the daemon does not export their metric yet either.
    let mut pending: Vec<(String, String)> = Vec::new();
    for (name, query) in &records {
        pending.push((format!("recording rule {name}"), query.clone()));
        pending.push((format!("recorded series {name}"), name.clone()));
    }
    for (name, query) in &alerts {
        let read = series_read(query);
        assert!(!read.is_empty(), "{name}: reads no series in {query}");
        for series in read {
            pending.push((format!("alert {name} reads"), series));
        }
        match api.query(query) {
            Ok(samples) => assert!(
                samples.is_empty(),
                "{name} trips on a healthy demo daemon: {query} = {samples:?}"
            ),
            Err(e) => panic!("alert {name}: {query}: {e}"),
        }
    }

    let d = dashboard();
    let mut vars: BTreeMap<&str, String> = INTERVALS
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    vars.insert("instance", ".*".into());
    vars.insert("pool", ".*".into());
    let mut picked = vars.clone();
    for v in d["templating"]["list"].as_array().unwrap() {
        let Some(def) = v["definition"].as_str() else {
            continue;
        };
        let name = v["name"].as_str().unwrap();
        let (selector, label) = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.rsplit_once(','))
            .unwrap_or_else(|| panic!("variable {name}: {def}"));
        let selector = substituted(selector, &vars);
        let samples = api
            .query(&selector)
            .unwrap_or_else(|e| panic!("variable {name}: {selector}: {e}"));
        let values: BTreeSet<&str> = samples
            .iter()
            .filter_map(|s| s["metric"][label.trim()].as_str())
            .collect();
        let Some(first) = values.first() else {
            fail(
                &dir,
                format!("variable {name}: {selector} has no {label} values"),
            );
        };
        if name == "instance" {
            assert!(values.contains(target.to_string().as_str()), "{values:?}");
        }
        picked.insert(name, regex_escaped(first));
    }

    // A panel reading a metric the daemon does not export yet is run once and may be empty.
    let queries = panel_queries(&d);
    let mut later = Vec::new();
    for (title, expr) in &queries {
        let not_yet = EXPORTED_LATER
            .iter()
            .find(|(m, _)| expr.contains(m) && !exported(m));
        for values in [&vars, &picked] {
            let query = substituted(expr, values);
            let Some((_, when)) = not_yet else {
                pending.push((format!("panel {title:?}"), query));
                continue;
            };
            if let Err(e) = api.query(&query) {
                fail(&dir, format!("panel {title:?}: {query}: {e}"));
            }
            later.push(format!("panel {title:?} has no data until {when}"));
        }
    }
    later.dedup();

    // Every other query, polled until it has data; the ones still empty at the deadline fail.
    let poll_until = deadline.min(Instant::now() + Duration::from_secs(15));
    loop {
        let mut empty = Vec::new();
        for (what, query) in &pending {
            match api.query(query) {
                Ok(samples) if !samples.is_empty() => {}
                Ok(_) => empty.push((what.clone(), query.clone())),
                Err(e) => fail(&dir, format!("{what}: {query}: {e}")),
            }
        }
        if empty.is_empty() {
            break;
        }
        if Instant::now() > poll_until {
            let list: Vec<String> = empty.iter().map(|(w, q)| format!("{w}: {q}")).collect();
            fail(&dir, format!("queries without data:\n{}", list.join("\n")));
        }
        pending = empty;
        std::thread::sleep(Duration::from_millis(500));
    }
    for l in &later {
        eprintln!("{l}");
    }
    eprintln!(
        "{} panel queries, {} recording rules and {} alerts answered after {:?}",
        queries.len(),
        records.len(),
        alerts.len(),
        started.elapsed()
    );

    daemon.stop();
}
