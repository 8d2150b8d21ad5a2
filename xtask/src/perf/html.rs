//! `report.html`: one self-contained page (uPlot and the data inlined, nothing fetched) with the
//! plots people read these results as (latency against size per method with the crossover
//! marked, throughput against concurrency, latency distributions) and the tables of verdicts,
//! baseline comparisons and per-series summaries.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::gate::{Outcome, num};
use super::report::Report;
use super::results::{Results, Scenario, Unit};
use super::stats;

/// uPlot 1.6.32, vendored by perf-monitor (MIT), inlined whole.
const UPLOT_JS: &str = include_str!("../../../perf-monitor/assets/vendor/uplot/uPlot.iife.min.js");
/// uPlot's stylesheet.
const UPLOT_CSS: &str = include_str!("../../../perf-monitor/assets/vendor/uplot/uPlot.min.css");
/// uPlot's licence, kept with the inlined copy as it asks.
const UPLOT_LICENSE: &str = include_str!("../../../perf-monitor/assets/vendor/uplot/LICENSE");

/// The page's own script (`xtask/perf/report.js`): draws the plots from the embedded data.
const SCRIPT: &str = include_str!("../../perf/report.js");

/// The page's stylesheet (`xtask/perf/report.css`), after uPlot's.
const STYLE: &str = include_str!("../../perf/report.css");

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The smallest size from which the zero-copy series' p50 stays below gRPC's, in a methods
/// scenario; none when zero-copy is never below for good.
fn crossover(sizes: &[u64], zero_copy: &[Option<f64>], grpc: &[Option<f64>]) -> Option<u64> {
    let mut from = None;
    for (i, size) in sizes.iter().enumerate() {
        match (zero_copy[i], grpc[i]) {
            (Some(z), Some(g)) if z < g => {
                from.get_or_insert(*size);
            }
            (Some(_), Some(_)) => from = None,
            _ => {}
        }
    }
    from
}

/// A size label as the series ids write it (`64KiB`, `1MiB`).
fn size_label(size: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (scale, unit) in UNITS {
        if size >= scale && size.is_multiple_of(scale) {
            return format!("{}{unit}", size / scale);
        }
    }
    format!("{size}B")
}

fn methods_plot(scenario: &Scenario) -> Value {
    // Latency series with a size, by method, by size.
    let mut by_method: BTreeMap<String, BTreeMap<u64, (f64, f64)>> = BTreeMap::new();
    for s in &scenario.series {
        let (Some(size), Some(method)) = (s.size, s.method.clone()) else {
            continue;
        };
        if s.unit != Unit::Us || s.samples.is_empty() {
            continue;
        }
        let sorted = stats::sorted(&s.samples);
        by_method.entry(method).or_default().insert(
            size,
            (
                stats::quantile_sorted(&sorted, 0.5),
                stats::quantile_sorted(&sorted, 0.99),
            ),
        );
    }
    let mut sizes: Vec<u64> = by_method
        .values()
        .flat_map(|it| it.keys().copied())
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let column = |method: &str, pick: fn(&(f64, f64)) -> f64| -> Vec<Option<f64>> {
        sizes
            .iter()
            .map(|size| by_method.get(method).and_then(|it| it.get(size)).map(pick))
            .collect()
    };
    let cross = crossover(
        &sizes,
        &column("zero_copy", |it| it.0),
        &column("grpc", |it| it.0),
    );
    let methods: Vec<Value> = by_method
        .keys()
        .map(|method| {
            json!({
                "method": method,
                "p50": column(method, |it| it.0),
                "p99": column(method, |it| it.1),
            })
        })
        .collect();
    json!({
        "scenario": scenario.name,
        "sizes": sizes,
        "crossover": cross,
        "crossover_label": cross.map(size_label),
        "methods": methods,
    })
}

fn concurrency_plot(scenario: &Scenario) -> Value {
    let mut points: Vec<(u64, f64, f64, f64)> = scenario
        .series
        .iter()
        .filter(|s| !s.samples.is_empty())
        .filter_map(|s| {
            let in_flight = s.in_flight.or_else(|| {
                s.id.strip_prefix("in_flight=")
                    .and_then(|it| it.parse().ok())
            })?;
            let sorted = stats::sorted(&s.samples);
            Some((
                in_flight,
                stats::quantile_sorted(&sorted, 0.5),
                stats::quantile_sorted(&sorted, 0.05),
                stats::quantile_sorted(&sorted, 0.95),
            ))
        })
        .collect();
    points.sort_by_key(|it| it.0);
    json!({
        "scenario": scenario.name,
        "in_flight": points.iter().map(|it| it.0).collect::<Vec<_>>(),
        "p50": points.iter().map(|it| it.1).collect::<Vec<_>>(),
        "p5": points.iter().map(|it| it.2).collect::<Vec<_>>(),
        "p95": points.iter().map(|it| it.3).collect::<Vec<_>>(),
    })
}

/// Fractions at which each distribution is drawn: every percent, then the tail.
fn fractions() -> Vec<f64> {
    let mut out: Vec<f64> = (0..=99).map(|i| f64::from(i) / 100.0).collect();
    out.extend([0.995, 0.999, 1.0]);
    out
}

fn distribution_plot(scenario: &Scenario) -> Option<Value> {
    let unit = scenario.series.first()?.unit;
    let fractions = fractions();
    let series: Vec<Value> = scenario
        .series
        .iter()
        .filter(|s| s.unit == unit && !s.samples.is_empty())
        .map(|s| {
            let sorted = stats::sorted(&s.samples);
            let values: Vec<f64> = fractions
                .iter()
                .map(|q| stats::quantile_sorted(&sorted, *q))
                .collect();
            json!({"id": s.id, "values": values})
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    let positive = scenario
        .series
        .iter()
        .all(|s| s.samples.iter().all(|it| *it > 0.0));
    Some(json!({
        "scenario": scenario.name,
        "unit": unit.label(),
        "log": positive,
        "fractions": fractions,
        "series": series,
    }))
}

/// The data the page's script draws, as JSON.
pub(crate) fn plot_data(report: &Report, results: &Results) -> Value {
    let methods: Vec<Value> = results
        .scenarios
        .iter()
        .filter(|it| it.kind == "methods")
        .map(methods_plot)
        .collect();
    let concurrency: Vec<Value> = results
        .scenarios
        .iter()
        .filter(|it| it.series.iter().any(|s| s.unit == Unit::MibS))
        .map(concurrency_plot)
        .collect();
    let distributions: Vec<Value> = results
        .scenarios
        .iter()
        .filter_map(distribution_plot)
        .collect();
    json!({
        "set": report.set,
        "passed": report.passed,
        "machine": report.machine,
        "baseline": report.baseline,
        "failures": report.gate.failures,
        "verdicts": report.gate.verdicts,
        "comparisons": report.gate.comparisons,
        "methods": methods,
        "concurrency": concurrency,
        "distributions": distributions,
    })
}

fn opt_num(value: Option<f64>) -> String {
    value.map(num).unwrap_or_else(|| "-".to_owned())
}

fn opt_int(value: Option<u64>) -> String {
    value
        .map(|it| it.to_string())
        .unwrap_or_else(|| "-".to_owned())
}

fn opt_mib(value: Option<u64>) -> String {
    value
        .map(|it| format!("{:.1}", it as f64 / f64::from(1u32 << 20)))
        .unwrap_or_else(|| "-".to_owned())
}

/// The whole page.
pub(crate) fn render(report: &Report, results: &Results) -> String {
    let gate = &report.gate;
    let mut body = String::new();
    let machine = &report.machine;
    let _ = writeln!(
        body,
        "<h1>perfopt performance suite: set {}</h1>\n<p>{} · {} cores · kernel {} · {:.0} GiB{}</p>",
        esc(&report.set),
        esc(&machine.cpu_model),
        machine.cores,
        esc(&machine.kernel),
        machine.memory_bytes as f64 / f64::from(1u32 << 30),
        if report.injected_delay_us > 0 {
            format!(
                " · <b>zero-copy delay of {} us injected</b>",
                report.injected_delay_us
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        body,
        "<p class=\"verdict {}\">{}</p>",
        if gate.passed { "pass" } else { "fail" },
        if gate.passed {
            "passed: every SLO met, no significant regression".to_owned()
        } else {
            format!("failed: {} failure(s)", gate.failures.len())
        }
    );
    if !gate.failures.is_empty() {
        body.push_str("<ul>\n");
        for failure in &gate.failures {
            let _ = writeln!(body, "<li class=\"fail\">{}</li>", esc(failure));
        }
        body.push_str("</ul>\n");
    }
    body.push_str("<h2>Scenarios</h2>\n<table><tr><th>scenario</th><th>kind</th><th>series</th><th>seconds</th><th>description</th></tr>\n");
    for s in &results.scenarios {
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.kind),
            s.series.len(),
            opt_num(s.elapsed_s),
            esc(s.description.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</table>\n<h2>SLOs</h2>\n<table><tr><th>outcome</th><th>SLO</th><th>kind</th><th>scenario</th><th>figure</th><th>value</th><th>limit</th><th>detail</th></tr>\n");
    for v in &gate.verdicts {
        let (class, label) = match v.outcome {
            Outcome::Pass => ("pass", "pass"),
            Outcome::Fail => ("fail", "FAIL"),
            Outcome::NotRun => ("not_run", "not run"),
        };
        let _ = writeln!(
            body,
            "<tr><td class=\"{class}\">{label}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&v.name),
            v.kind,
            esc(&v.scenario),
            esc(&v.figure),
            opt_num(v.value),
            esc(&v.limit),
            esc(&v.message)
        );
    }
    body.push_str("</table>\n<h2>Against the baseline</h2>\n");
    if report.baseline.found {
        let _ = writeln!(
            body,
            "<p>Baseline {} (machine {}). A change is now / baseline with its bootstrap percentile interval; regressed only when the whole interval is beyond the margin in the bad direction.</p>",
            esc(&report.baseline.path),
            esc(&report.baseline.slug)
        );
        body.push_str("<table><tr><th>status</th><th>SLO</th><th>scenario</th><th>figure</th><th>now</th><th>baseline</th><th>change</th><th>interval</th><th>worse when</th><th>margin</th></tr>\n");
        for c in &gate.comparisons {
            let status = serde_json::to_value(c.status)
                .ok()
                .and_then(|it| it.as_str().map(str::to_owned))
                .unwrap_or_default();
            let interval = match (c.lo, c.hi) {
                (Some(lo), Some(hi)) => format!("x{lo:.3} .. x{hi:.3}"),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                body,
                "<tr><td class=\"{status}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{interval}</td><td>{}</td><td class=\"n\">{:.0}%</td></tr>",
                c.status.label(),
                esc(&c.name),
                esc(&c.scenario),
                esc(&c.figure),
                num(c.now),
                opt_num(c.baseline),
                c.change
                    .map(|it| format!("x{it:.3}"))
                    .unwrap_or_else(|| "-".to_owned()),
                if c.worse == "up" { "higher" } else { "lower" },
                c.margin * 100.0
            );
        }
        body.push_str("</table>\n");
    } else {
        let _ = writeln!(
            body,
            "<p>No baseline for this machine ({}): SLOs only. <code>cargo xtask perf --save-baseline</code> writes {}.</p>",
            esc(&report.baseline.slug),
            esc(&report.baseline.path)
        );
    }
    body.push_str("<h2>Plots</h2>\n<div id=\"plots\"></div>\n<h2>Series</h2>\n");
    body.push_str("<table><tr><th>scenario</th><th>series</th><th>unit</th><th>samples</th><th>p50</th><th>p95</th><th>p99</th><th>p99.9</th><th>MiB/s</th><th>transfers/s</th><th>CPU host s</th><th>CPU workers s</th><th>peak RSS MiB</th><th>peak shm MiB</th><th>fallbacks</th><th>failed</th><th>lost</th></tr>\n");
    for r in &report.series {
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&r.scenario),
            esc(&r.id),
            r.unit,
            r.count,
            opt_num(r.p50),
            opt_num(r.p95),
            opt_num(r.p99),
            opt_num(r.p999),
            opt_num(r.throughput_mib_s),
            opt_num(r.transfers_per_s),
            opt_num(r.cpu_host_s),
            opt_num(r.cpu_workers_s),
            opt_mib(r.peak_rss_bytes),
            opt_mib(r.peak_shm_bytes),
            opt_int(r.fallbacks),
            opt_int(r.failed),
            opt_int(r.lost)
        );
    }
    body.push_str("</table>\n");
    let mut figures = String::new();
    for s in results.scenarios.iter().filter(|it| !it.figures.is_empty()) {
        for (name, value) in &s.figures {
            let _ = writeln!(
                figures,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(&s.name),
                esc(name),
                num(*value)
            );
        }
    }
    if !figures.is_empty() {
        body.push_str("<h2>Scenario figures</h2>\n<table><tr><th>scenario</th><th>figure</th><th>value</th></tr>\n");
        body.push_str(&figures);
        body.push_str("</table>\n");
    }
    // `<\/` keeps the JSON from ending its script element; JSON reads it as `</`.
    let data = plot_data(report, results).to_string().replace("</", "<\\/");
    // uPlot's banner names its home page; the licence below says where it comes from instead,
    // so that the page holds no address at all.
    let uplot = UPLOT_JS
        .split_once("*/")
        .filter(|(head, _)| head.starts_with("/*!"))
        .map_or(UPLOT_JS, |(_, rest)| rest);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>perfopt suite: {set}</title>\n\
         <!-- uPlot 1.6.32 (the copy vendored in perf-monitor/assets/vendor/uplot), inlined under its licence:\n{license}-->\n\
         <style>{UPLOT_CSS}</style>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\
         <script type=\"application/json\" id=\"report-data\">{data}</script>\n\
         <script>{uplot}</script>\n<script>{SCRIPT}</script>\n</body>\n</html>\n",
        set = esc(&report.set),
        license = UPLOT_LICENSE.replace("--", "- -"),
    )
}

/// Writes the page at `path`.
pub(crate) fn write(path: &Path, report: &Report, results: &Results) -> Result<()> {
    std::fs::write(path, render(report, results))
        .with_context(|| format!("could not write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::gate::evaluate;
    use crate::perf::report::BaselineInfo;
    use crate::perf::results::tests::FIXTURE;
    use crate::perf::slo::SloFile;

    fn page(with_baseline: bool) -> (String, Results, SloFile) {
        let results = Results::parse(FIXTURE, "fixture").unwrap();
        let slos = SloFile::load(&crate::workspace_root().join("xtask/perf/slo.toml")).unwrap();
        let gate = evaluate(&slos, &results, with_baseline.then_some(&results));
        let info = BaselineInfo {
            slug: results.machine.slug(),
            path: "xtask/perf/baselines/x.json".into(),
            found: with_baseline,
            saved: false,
        };
        let raw: Value = serde_json::from_str(FIXTURE).unwrap();
        let report = Report::new(&results, raw, &gate, info);
        (render(&report, &results), results, slos)
    }

    fn embedded(html: &str) -> Value {
        let start = "<script type=\"application/json\" id=\"report-data\">";
        let from = html.find(start).unwrap() + start.len();
        let to = from + html[from..].find("</script>").unwrap();
        serde_json::from_str(&html[from..to]).unwrap()
    }

    #[test]
    fn every_scenario_and_slo_appears_and_the_data_parses() {
        let (html, results, slos) = page(true);
        for s in &results.scenarios {
            assert!(html.contains(&format!("<td>{}</td>", s.name)), "{}", s.name);
        }
        let names = slos
            .ratio
            .iter()
            .map(|it| &it.name)
            .chain(slos.quantile.iter().map(|it| &it.name))
            .chain(slos.figure.iter().map(|it| &it.name));
        for name in names {
            assert!(html.contains(&format!("<td>{name}</td>")), "{name}");
        }
        let data = embedded(&html);
        assert_eq!(
            data["verdicts"].as_array().unwrap().len(),
            slos.ratio.len() + slos.quantile.len() + slos.figure.len()
        );
        assert!(!data["comparisons"].as_array().unwrap().is_empty());
        assert!(html.contains("uPlot"), "uPlot is inlined");
        assert!(
            html.contains("Permission is hereby granted"),
            "its licence too"
        );
    }

    #[test]
    fn the_page_fetches_nothing() {
        let (html, _, _) = page(false);
        for needle in [
            "http://", "https://", "src=", "href=", "@import", "url(", "//cdn",
        ] {
            assert!(!html.contains(needle), "found {needle}");
        }
        assert!(html.contains("No baseline for this machine"));
    }

    #[test]
    fn the_crossover_is_the_size_from_which_zero_copy_stays_faster() {
        let (html, _, _) = page(false);
        let data = embedded(&html);
        let sizes = &data["methods"][0];
        assert_eq!(sizes["scenario"], "sizes");
        // The fixture: gRPC is faster at 64 KiB, zero-copy from 1 MiB on.
        assert_eq!(sizes["crossover"], 1 << 20);
        assert_eq!(sizes["crossover_label"], "1MiB");
        let z = Some(1.0);
        let g = Some(2.0);
        assert_eq!(crossover(&[1, 2, 3], &[g, z, g], &[z, g, z]), None);
        assert_eq!(crossover(&[1, 2, 3], &[z, g, z], &[g, z, g]), Some(3));
        assert_eq!(crossover(&[1, 2], &[z, None], &[g, None]), Some(1));
        assert_eq!(size_label(64 << 10), "64KiB");
        assert_eq!(size_label(1 << 30), "1GiB");
        assert_eq!(size_label(1000), "1000B");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
