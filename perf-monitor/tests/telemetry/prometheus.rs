//! The `/metrics` text: names, help, types and labels fixed by a snapshot, values checked apart.

use super::busy_telemetry;

/// The text with every sample's value replaced by `_`, so the snapshot fixes the rest.
fn redacted(text: &str) -> String {
    text.lines()
        .map(|line| match line.rsplit_once(' ') {
            Some((series, _)) if !line.starts_with('#') => format!("{series} _"),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_metrics_text_has_fixed_names_help_types_and_labels() {
    insta::assert_snapshot!(redacted(&busy_telemetry(1).prometheus_text()));
}

#[test]
fn the_metrics_text_holds_the_recorded_values() {
    let text = busy_telemetry(2).prometheus_text();
    let expected = [
        r#"perfopt_transfers_total{pool="a",method="grpc"} 8"#,
        r#"perfopt_transfers_total{pool="other",method="grpc"} 2"#,
        r#"perfopt_transfer_bytes_total{pool="a",method="grpc"} 24576"#,
        r#"perfopt_transfer_bytes_total{pool="b",method="zero_copy"} 2097152"#,
        r#"perfopt_decisions_total{method="zero_copy",reason="rule.fixed_policy"} 4"#,
        r#"perfopt_explorations_total{method="zero_copy"} 2"#,
        r#"perfopt_fallbacks_total{pool="other",reason="shm_exhausted"} 2"#,
        r#"perfopt_transfer_failures_total{pool="a",kind="unavailable"} 2"#,
        r#"perfopt_transfer_failures_total{pool="a",kind="timeout"} 0"#,
        r#"perfopt_reply_bytes_total{method="zero_copy"} 1024"#,
        r#"perfopt_transfer_duration_seconds_bucket{pool="a",method="grpc",size_class="4KiB-16KiB",le="5e-05"} 0"#,
        r#"perfopt_transfer_duration_seconds_bucket{pool="a",method="grpc",size_class="4KiB-16KiB",le="0.0001"} 6"#,
        r#"perfopt_transfer_duration_seconds_bucket{pool="a",method="grpc",size_class="4KiB-16KiB",le="+Inf"} 6"#,
        r#"perfopt_transfer_duration_seconds_sum{pool="a",method="grpc",size_class="4KiB-16KiB"} 0.0006"#,
        r#"perfopt_transfer_duration_seconds_count{pool="a",method="grpc",size_class="4KiB-16KiB"} 6"#,
        r#"perfopt_transfer_queue_seconds_bucket{pool="b",le="0.001"} 0"#,
        r#"perfopt_transfer_queue_seconds_bucket{pool="b",le="0.0025"} 2"#,
        r#"perfopt_decision_duration_seconds_count 6"#,
        r#"perfopt_reply_duration_seconds_sum{method="zero_copy"} 0.00006"#,
        r#"perfopt_transfers_in_flight 2"#,
        r#"perfopt_transfers_queued 5"#,
        r#"perfopt_pool_threshold_bytes{pool="a"} 65536"#,
        r#"perfopt_shm_segments 3"#,
        r#"perfopt_shm_held_bytes 3145728"#,
        r#"perfopt_shm_budget_bytes 1073741824"#,
        r#"perfopt_model_active 1"#,
        r#"perfopt_model_version 4"#,
        r#"perfopt_model_validation_accuracy_ratio 0.875"#,
        r#"perfopt_drift_events_total 1"#,
        r#"perfopt_degraded 0"#,
        r#"perfopt_build_info{version="1.2.3"} 1"#,
    ];
    for line in expected {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        !text.contains(r#"pool="unlisted""#),
        "an unconfigured pool is never a label"
    );
}

/// `promtool check metrics`, Prometheus' own linter of exposition text, finds nothing to say.
/// Without promtool (Debian package `prometheus`) the test says so, and fails when
/// `PERFOPT_EXTERNAL_TESTS=1` asks for the external tools.
#[test]
fn promtool_finds_nothing_to_lint_in_the_metrics_text() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var("PERFOPT_EXTERNAL_TESTS").as_deref() != Ok("1"),
                "promtool is needed and cannot be run: {e}"
            );
            eprintln!(
                "NOT RUN: promtool cannot be run ({e}); install Debian's `prometheus` to lint /metrics"
            );
            return;
        }
    };
    let text = busy_telemetry(3).prometheus_text();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}
