//! The results JSON that `perfopt suite` writes (schema 1), as the gate reads it, and the
//! machine fingerprint that picks a baseline.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The schema version of the results JSON this gate reads.
pub(crate) const SCHEMA: u32 = 1;

/// One run of the suite.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Results {
    /// Schema version, [`SCHEMA`].
    pub(crate) schema: u32,
    /// The set that ran: quick, full or stress.
    pub(crate) set: String,
    /// The scenario file, as the runner was given it.
    #[serde(default)]
    pub(crate) scenario_file: Option<String>,
    /// When the run started, in seconds since the Unix epoch.
    #[serde(default)]
    pub(crate) started_unix_s: Option<u64>,
    /// Wall time of the whole run.
    #[serde(default)]
    pub(crate) elapsed_s: Option<f64>,
    /// The machine that ran it.
    pub(crate) machine: Machine,
    /// The zero-copy delay the runner saw injected, in µs (0 when none).
    #[serde(default)]
    pub(crate) injected_delay_us: u64,
    /// The scenarios that ran, in order.
    pub(crate) scenarios: Vec<Scenario>,
}

/// The machine a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Machine {
    /// CPU model name.
    pub(crate) cpu_model: String,
    /// Logical cores.
    pub(crate) cores: u32,
    /// Kernel release.
    pub(crate) kernel: String,
    /// Physical memory in bytes.
    pub(crate) memory_bytes: u64,
    /// Operating system.
    #[serde(default)]
    pub(crate) os: Option<String>,
    /// CPU architecture.
    #[serde(default)]
    pub(crate) arch: Option<String>,
    /// The shared-memory backend used.
    #[serde(default)]
    pub(crate) shm_backend: Option<String>,
}

/// One scenario of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Scenario {
    /// Unique name in the scenario file.
    pub(crate) name: String,
    /// methods, concurrency, policies, recording, decision or stress.
    pub(crate) kind: String,
    /// What it measures.
    #[serde(default)]
    pub(crate) description: Option<String>,
    /// Wall time of the scenario.
    #[serde(default)]
    pub(crate) elapsed_s: Option<f64>,
    /// Its series, each with a unique id.
    #[serde(default)]
    pub(crate) series: Vec<Series>,
    /// Scenario-level figures, by name.
    #[serde(default)]
    pub(crate) figures: BTreeMap<String, f64>,
}

/// One measured series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Series {
    /// Unique id within the scenario, e.g. `zero_copy@64MiB`.
    pub(crate) id: String,
    /// The method or policy measured.
    #[serde(default)]
    pub(crate) method: Option<String>,
    /// Bytes per transfer; none for a mix of sizes.
    #[serde(default)]
    pub(crate) size: Option<u64>,
    /// Transfers in flight.
    #[serde(default)]
    pub(crate) in_flight: Option<u64>,
    /// Worker processes.
    #[serde(default)]
    pub(crate) workers: Option<u64>,
    /// idle or cpu.
    #[serde(default)]
    pub(crate) load: Option<String>,
    /// The pool's verification setting.
    #[serde(default)]
    pub(crate) verify: Option<String>,
    /// The unit of the samples.
    pub(crate) unit: Unit,
    /// Raw samples in `unit`.
    pub(crate) samples: Vec<f64>,
    /// The runner's summary of the samples.
    #[serde(default)]
    pub(crate) summary: Option<Summary>,
    /// Bytes moved over the series' wall time.
    #[serde(default)]
    pub(crate) throughput_mib_s: Option<f64>,
    /// Transfers per second.
    #[serde(default)]
    pub(crate) transfers_per_s: Option<f64>,
    /// Transfers made.
    #[serde(default)]
    pub(crate) transfers: Option<u64>,
    /// Transfers that failed.
    #[serde(default)]
    pub(crate) failed: Option<u64>,
    /// Transfers that fell back to the other method.
    #[serde(default)]
    pub(crate) fallbacks: Option<u64>,
    /// Transfers never completed.
    #[serde(default)]
    pub(crate) lost: Option<u64>,
    /// CPU seconds of the host side.
    #[serde(default)]
    pub(crate) cpu_host_s: Option<f64>,
    /// CPU seconds of the workers.
    #[serde(default)]
    pub(crate) cpu_workers_s: Option<f64>,
    /// Peak resident memory.
    #[serde(default)]
    pub(crate) peak_rss_bytes: Option<u64>,
    /// Peak shared memory held.
    #[serde(default)]
    pub(crate) peak_shm_bytes: Option<u64>,
}

/// The runner's summary of a series' samples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Summary {
    /// Samples counted.
    pub(crate) count: u64,
    /// Mean.
    pub(crate) mean: f64,
    /// Minimum.
    pub(crate) min: f64,
    /// Median.
    pub(crate) p50: f64,
    /// 95th percentile.
    pub(crate) p95: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// Maximum.
    pub(crate) max: f64,
}

/// The unit of a series' samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Unit {
    /// Latency per transfer in µs: lower is better.
    Us,
    /// Throughput per window in MiB/s: higher is better.
    MibS,
}

impl Unit {
    /// Whether a higher value is worse (latency).
    pub(crate) fn higher_is_worse(self) -> bool {
        self == Unit::Us
    }

    /// The unit as written in the results.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Unit::Us => "us",
            Unit::MibS => "MiB/s",
        }
    }
}

impl Results {
    /// Parses and checks a results JSON; `source` names it in errors.
    pub(crate) fn parse(text: &str, source: &str) -> Result<Results> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let results: Results = serde_path_to_error::deserialize(de).map_err(|e| {
            anyhow::anyhow!(
                "{source}: at `{}`: {}, expected a results JSON of schema {SCHEMA}",
                e.path(),
                e.inner()
            )
        })?;
        if results.schema != SCHEMA {
            bail!("{source}: schema {}, expected {SCHEMA}", results.schema);
        }
        let mut names = std::collections::BTreeSet::new();
        for scenario in &results.scenarios {
            if !names.insert(scenario.name.as_str()) {
                bail!(
                    "{source}: scenario `{}` appears twice, expected unique names",
                    scenario.name
                );
            }
            let mut ids = std::collections::BTreeSet::new();
            for series in &scenario.series {
                if !ids.insert(series.id.as_str()) {
                    bail!(
                        "{source}: scenario `{}` has series `{}` twice, expected unique ids",
                        scenario.name,
                        series.id
                    );
                }
                if let Some(bad) = series.samples.iter().find(|it| !it.is_finite()) {
                    bail!(
                        "{source}: scenario `{}` series `{}` has the sample {bad}, expected finite numbers",
                        scenario.name,
                        series.id
                    );
                }
            }
        }
        Ok(results)
    }

    /// Reads and checks the results JSON at `path`.
    pub(crate) fn load(path: &Path) -> Result<Results> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        Results::parse(&text, &path.display().to_string())
    }

    /// The scenario named `name`, if it ran.
    pub(crate) fn scenario(&self, name: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|it| it.name == name)
    }
}

impl Scenario {
    /// The series with id `id`.
    pub(crate) fn series(&self, id: &str) -> Option<&Series> {
        self.series.iter().find(|it| it.id == id)
    }
}

impl Machine {
    /// The fingerprint that picks a baseline: CPU model, cores, kernel and memory rounded to
    /// GiB, as a file-name slug such as `amd-epyc-7b13-2c-6.1.0-18-cloud-amd64-24gib`.
    pub(crate) fn slug(&self) -> String {
        let gib = (self.memory_bytes as f64 / f64::from(1u32 << 30)).round() as u64;
        let raw = format!(
            "{}-{}c-{}-{gib}gib",
            self.cpu_model, self.cores, self.kernel
        );
        let mut slug = String::new();
        for c in raw.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '.' {
                slug.push(c);
            } else if !slug.ends_with('-') {
                slug.push('-');
            }
        }
        slug.trim_matches('-').to_owned()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The synthetic results file under `xtask/tests/`, as the runner would write it.
    pub(crate) const FIXTURE: &str = include_str!("../../tests/fixtures/results-quick.json");

    #[test]
    fn the_fixture_parses_and_names_its_machine() {
        let results = Results::parse(FIXTURE, "fixture").unwrap();
        assert_eq!(results.set, "quick");
        assert!(results.scenario("sizes").is_some());
        assert_eq!(
            results.machine.slug(),
            "amd-epyc-7b13-2c-6.1.0-18-cloud-amd64-24gib"
        );
    }

    #[test]
    fn a_wrong_schema_or_shape_is_an_error_naming_where() {
        let mut value: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        value["schema"] = 2.into();
        let err = Results::parse(&value.to_string(), "r.json").unwrap_err();
        assert_eq!(err.to_string(), "r.json: schema 2, expected 1");
        value["schema"] = 1.into();
        value["scenarios"][0]["series"][0]["unit"] = "ms".into();
        let err = Results::parse(&value.to_string(), "r.json").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("r.json: at `scenarios[0].series[0].unit`"),
            "{err}"
        );
    }
}
