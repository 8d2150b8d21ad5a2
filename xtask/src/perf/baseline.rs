//! Baselines: one trimmed results JSON per machine fingerprint under `xtask/perf/baselines/`,
//! keeping the samples of the series the SLOs compare.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::results::Results;
use super::slo::SloFile;

/// The folder of the baselines, relative to the workspace root.
pub(crate) const DIR: &str = "xtask/perf/baselines";

/// The baseline file of the machine that produced `results`.
pub(crate) fn path_for(root: &Path, results: &Results) -> PathBuf {
    root.join(DIR)
        .join(format!("{}.json", results.machine.slug()))
}

/// The baseline at `path`, or none when there is no such file.
pub(crate) fn load(path: &Path) -> Result<Option<Results>> {
    if !path.exists() {
        return Ok(None);
    }
    Results::load(path).map(Some)
}

/// `results` cut down to what comparisons read: the series that some ratio or quantile SLO
/// names (samples kept, rounded to [`DIGITS`] significant digits), and every scenario's
/// figures; descriptions dropped.
pub(crate) fn trim(results: &Results, slos: &SloFile) -> Results {
    let mut named: BTreeSet<(&str, &str)> = BTreeSet::new();
    for slo in &slos.ratio {
        named.insert((slo.scenario.as_str(), slo.num.as_str()));
        let den_scenario = slo.den_scenario.as_deref().unwrap_or(&slo.scenario);
        for id in slo.den.ids() {
            named.insert((den_scenario, id));
        }
    }
    for slo in &slos.quantile {
        named.insert((slo.scenario.as_str(), slo.series.as_str()));
    }
    let mut out = results.clone();
    for scenario in &mut out.scenarios {
        scenario.description = None;
        let name = scenario.name.clone();
        scenario
            .series
            .retain(|it| named.contains(&(name.as_str(), it.id.as_str())));
        for series in &mut scenario.series {
            series.samples.iter_mut().for_each(|it| *it = round(*it));
        }
    }
    out
}

/// Significant digits kept of each baseline sample: a relative error of 5e-6 at most, far
/// below any difference a comparison can resolve, and a file half the size.
pub(crate) const DIGITS: usize = 6;

/// `value` rounded to [`DIGITS`] significant digits (through its decimal form, so that the JSON
/// holds the short number).
fn round(value: f64) -> f64 {
    format!("{value:.prec$e}", prec = DIGITS - 1)
        .parse()
        .unwrap_or(value)
}

/// Writes the trimmed `results` as the baseline at `path`. The scenarios of `previous` (the
/// baseline it replaces) that this run did not have are kept, so that saving a run of some
/// scenarios (`--only`) updates those and leaves the others' baselines as they were.
pub(crate) fn save(
    path: &Path,
    results: &Results,
    slos: &SloFile,
    previous: Option<&Results>,
) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    let mut trimmed = trim(results, slos);
    if let Some(previous) = previous {
        for scenario in &previous.scenarios {
            if trimmed.scenario(&scenario.name).is_none() {
                trimmed.scenarios.push(scenario.clone());
            }
        }
    }
    let mut text = serde_json::to_string(&trimmed).context("could not encode the baseline")?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("could not write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::results::tests::FIXTURE;

    #[test]
    fn a_saved_baseline_keeps_the_compared_series_and_reads_back() {
        let results = Results::parse(FIXTURE, "fixture").unwrap();
        let slos = SloFile::load(&crate::workspace_root().join("xtask/perf/slo.toml")).unwrap();
        let dir = std::env::temp_dir().join(format!("xtask-baseline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = path_for(&dir, &results);
        assert!(load(&path).unwrap().is_none());
        save(&path, &results, &slos, None).unwrap();
        let back = load(&path).unwrap().unwrap();
        // A later run of `sizes` alone replaces that scenario and keeps the others.
        let mut sizes_only = results.clone();
        sizes_only.scenarios.retain(|it| it.name == "sizes");
        sizes_only.scenarios[0].series[3].samples = vec![1.0, 2.0, 3.0];
        let kept_id = sizes_only.scenarios[0].series[3].id.clone();
        save(&path, &sizes_only, &slos, Some(&back)).unwrap();
        let merged = load(&path).unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(merged.scenarios.len(), results.scenarios.len());
        let sizes = merged.scenario("sizes").unwrap();
        assert_eq!(sizes.series(&kept_id).unwrap().samples, [1.0, 2.0, 3.0]);
        assert_eq!(
            merged.scenario("decision").unwrap().series[0].samples,
            back.scenario("decision").unwrap().series[0].samples
        );
        assert!(path.ends_with("amd-epyc-7b13-2c-6.1.0-18-cloud-amd64-24gib.json"));
        let sizes = back.scenario("sizes").unwrap();
        let kept = sizes.series("zero_copy@64MiB").unwrap();
        let original = results.scenario("sizes").unwrap().series("zero_copy@64MiB");
        let original = &original.unwrap().samples;
        assert_eq!(kept.samples.len(), original.len());
        for (k, o) in kept.samples.iter().zip(original) {
            assert!((k - o).abs() <= 5e-6 * o.abs(), "{k} against {o}");
        }
        // No SLO names the 64 KiB series: trimmed away.
        assert!(sizes.series("grpc@64KiB").is_none());
        assert_eq!(
            back.scenario("cpu_saturation").unwrap().figures,
            results.scenario("cpu_saturation").unwrap().figures
        );
    }

    #[test]
    fn samples_are_rounded_to_six_significant_digits() {
        assert_eq!(round(123.456_789_123), 123.457);
        assert_eq!(round(0.000_123_456_789), 0.000_123_457);
        assert_eq!(round(8_500.0), 8_500.0);
        assert_eq!(
            serde_json::to_string(&round(1.0 / 3.0)).unwrap(),
            "0.333333"
        );
    }
}
