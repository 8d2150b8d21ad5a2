//! What `perfopt run` reports: the text summary and the `--compare` arms' mean latencies.

use std::sync::Mutex;

use perf_core::HumanSize;
use serde_json::json;

/// The ways `--compare` carries each request, in report order.
const ARMS: [&str; 4] = [
    "learned",
    "static_threshold",
    "always_grpc",
    "always_zero_copy",
];

/// Mean latency per arm over requests that every arm carried, split by
/// whether the engine had a model when the request started.
#[derive(Default)]
pub(super) struct Comparison {
    // [without model, with model][arm] = (requests, total latency in µs)
    totals: Mutex<[[(u64, f64); 4]; 2]>,
}

impl Comparison {
    pub(super) fn add(&self, with_model: bool, latencies: &[f64; 4]) {
        let mut t = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        for (slot, latency) in t[usize::from(with_model)].iter_mut().zip(latencies) {
            slot.0 += 1;
            slot.1 += latency;
        }
    }

    pub(super) fn to_json(&self) -> serde_json::Value {
        let t = *self.totals.lock().unwrap_or_else(|e| e.into_inner());
        let phase = |p: &[(u64, f64); 4]| {
            let means: serde_json::Map<String, serde_json::Value> = ARMS
                .iter()
                .zip(p)
                .map(|(name, (n, sum))| {
                    let mean = if *n > 0 { sum / *n as f64 } else { 0.0 };
                    ((*name).to_string(), json!(mean))
                })
                .collect();
            json!({ "requests": p[0].0, "mean_latency_us": means })
        };
        let mean = |(n, sum): (u64, f64)| if n > 0 { sum / n as f64 } else { f64::NAN };
        let with = t[1];
        let best_baseline = with[1..]
            .iter()
            .map(|&x| mean(x))
            .fold(f64::INFINITY, f64::min);
        let ratio = mean(with[0]) / best_baseline;
        json!({
            "without_model": phase(&t[0]),
            "with_model": phase(&t[1]),
            "learned_over_best_baseline": ratio.is_finite().then_some(ratio),
        })
    }
}

/// The summary as text, from the JSON report.
pub(super) fn text_report(r: &serde_json::Value, failures: &[String]) -> String {
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let mut out = format!(
        "perfopt run: {:.1} s, {} workers, workload {}: {} transfers, {} failed, {} moved\n\n",
        num(&r["duration_s"]),
        r["workers"],
        r["workload"].as_str().unwrap_or(""),
        r["transfers"],
        r["failed"].as_u64().unwrap_or(failures.len() as u64),
        HumanSize(r["bytes"].as_u64().unwrap_or(0)),
    );
    out += &format!(
        "  {:<10} {:>9} {:>12} {:>12} {:>14}\n",
        "method", "transfers", "p50 latency", "p99 latency", "p50 MiB/s"
    );
    if let Some(methods) = r["methods"].as_object() {
        for (name, m) in methods {
            out += &format!(
                "  {:<10} {:>9} {:>12} {:>12} {:>14.0}\n",
                name,
                m["transfers"].as_u64().unwrap_or(0),
                perf_core::HumanMicros(num(&m["latency_us"]["p50"])).to_string(),
                perf_core::HumanMicros(num(&m["latency_us"]["p99"])).to_string(),
                num(&m["throughput_mib_s"]["p50"]),
            );
        }
    }
    if let Some(pools) = r["by_pool"].as_object() {
        let list: Vec<String> = pools.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out += &format!("\n  transfers by pool: {}\n", list.join(", "));
    }
    out += "\n  decisions by reason:\n";
    if let Some(reasons) = r["by_reason"].as_object() {
        for (reason, methods) in reasons {
            if let Some(methods) = methods.as_object() {
                for (method, n) in methods {
                    out += &format!("    {reason:<32} {method:<10} {n:>9}\n");
                }
            }
        }
    }
    let fallbacks = r["fallbacks"].as_object().map_or(0, |f| f.len());
    out += &format!(
        "\n  fallbacks to gRPC: {}\n  decision time: p50 {} ns, p99 {} ns\n  segment pool: {} reused, {} created, {} one-off, {} refused\n",
        if fallbacks == 0 {
            "none".to_string()
        } else {
            r["fallbacks"].to_string()
        },
        r["decision_ns"]["p50"],
        r["decision_ns"]["p99"],
        r["pool"]["reused"],
        r["pool"]["created"],
        r["pool"]["one_off"],
        r["pool"]["refused"],
    );
    out += &format!(
        "  workers restarted: {}, attempts retried on another worker: {}\n",
        r["workers_restarted"].as_u64().unwrap_or(0),
        r["retried"].as_u64().unwrap_or(0),
    );
    out += &format!(
        "  in flight: {} submitted, {} at most at once (peak {}); queued for room: p50 {}, p99 {}\n",
        r["in_flight"]["submitted"],
        r["in_flight"]["capacity"],
        r["in_flight"]["peak"],
        perf_core::HumanMicros(num(&r["queued_us"]["p50"])),
        perf_core::HumanMicros(num(&r["queued_us"]["p99"])),
    );
    out += &format!(
        "  metrics store: {} ({} recorded, {} committed, {} dropped)\n",
        r["store"]["data_dir"].as_str().unwrap_or(""),
        r["store"]["recorded"],
        r["store"]["committed"],
        r["store"]["dropped"],
    );
    let l = &r["learning"]["engine"];
    if l.is_object() {
        out += &format!(
            "  learning: {} ({} transfers of this run and {} of earlier runs paired into {} samples, {} trainings, {} drifts, {} alerts)\n",
            if l["active"].as_bool() == Some(true) {
                format!("classifier v{} decides", l["version"])
            } else if r["learning"]["enabled"].as_bool() == Some(true) {
                format!(
                    "no model yet, the rules decide (first model from {} samples)",
                    l["min_samples"]
                )
            } else {
                "off, the rules decide".to_string()
            },
            l["observed"],
            l["replayed"],
            l["paired"],
            l["trainings"],
            l["drifts"],
            r["learning"]["alerts"],
        );
    }
    let c = &r["compare"];
    if c.is_object() {
        for (label, phase) in [
            ("before a model", &c["without_model"]),
            ("with a model", &c["with_model"]),
        ] {
            let m = &phase["mean_latency_us"];
            out += &format!(
                "  compare {label} ({} requests), mean latency: learned {}, static threshold {}, always gRPC {}, always zero-copy {}\n",
                phase["requests"],
                perf_core::HumanMicros(num(&m["learned"])),
                perf_core::HumanMicros(num(&m["static_threshold"])),
                perf_core::HumanMicros(num(&m["always_grpc"])),
                perf_core::HumanMicros(num(&m["always_zero_copy"])),
            );
        }
        if let Some(ratio) = c["learned_over_best_baseline"].as_f64() {
            out += &format!("  learned / best baseline (with a model): {ratio:.3}\n");
        }
    }
    for f in failures.iter().take(5) {
        out += &format!("  failed: {f}\n");
    }
    out
}
