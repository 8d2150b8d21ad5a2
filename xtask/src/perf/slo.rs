//! The SLO file (`xtask/perf/slo.toml`, version 1): ratio, quantile and figure SLOs and the
//! baseline comparison's settings, parsed strictly (an unknown key is an error naming its path).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The version of the SLO file format this gate reads.
pub(crate) const VERSION: u32 = 1;

/// The whole SLO file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SloFile {
    /// Format version, [`VERSION`].
    pub(crate) version: u32,
    /// How runs are compared with the baseline.
    pub(crate) baseline: BaselineConfig,
    /// Ratios of medians measured in the same run.
    #[serde(default)]
    pub(crate) ratio: Vec<RatioSlo>,
    /// A series' quantile against a budget.
    #[serde(default)]
    pub(crate) quantile: Vec<QuantileSlo>,
    /// A scenario figure against a number or another figure.
    #[serde(default)]
    pub(crate) figure: Vec<FigureSlo>,
}

/// The `[baseline]` table.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BaselineConfig {
    /// The practical margin: a change counts only beyond `1 + margin` (e.g. 0.10).
    pub(crate) margin: f64,
    /// Bootstrap resamples per comparison.
    pub(crate) resamples: usize,
    /// Coverage of the bootstrap interval, e.g. 0.95.
    pub(crate) confidence: f64,
    /// Seed of the resampling, so that a comparison is reproducible.
    #[serde(default = "default_seed")]
    pub(crate) seed: u64,
}

fn default_seed() -> u64 {
    1
}

/// A denominator: one series, or several of which the best is taken.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum Den {
    /// One series id.
    One(String),
    /// Several series ids: the best median of them (lowest for `us`, highest for `mib_s`).
    Best(Vec<String>),
}

impl Den {
    /// The series ids.
    pub(crate) fn ids(&self) -> Vec<&str> {
        match self {
            Den::One(id) => vec![id.as_str()],
            Den::Best(ids) => ids.iter().map(String::as_str).collect(),
        }
    }
}

/// `[[ratio]]`: `median(num) / median(den)` within one run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RatioSlo {
    /// A short unique name.
    pub(crate) name: String,
    /// The scenario of `num` (and of `den`, unless `den_scenario` is set).
    pub(crate) scenario: String,
    /// The numerator series.
    pub(crate) num: String,
    /// The denominator series, or a list meaning the best of them.
    pub(crate) den: Den,
    /// The scenario of the denominator series, when another one of the same run.
    #[serde(default)]
    pub(crate) den_scenario: Option<String>,
    /// The ratio must be at most this.
    #[serde(default)]
    pub(crate) max: Option<f64>,
    /// The ratio must be at least this.
    #[serde(default)]
    pub(crate) min: Option<f64>,
    /// The sets it applies to; all when absent.
    #[serde(default)]
    pub(crate) sets: Option<Vec<String>>,
    /// Whether to compare it with the baseline (default true).
    #[serde(default = "yes")]
    pub(crate) compare: bool,
    /// The practical margin of its baseline comparison, instead of `[baseline] margin`.
    #[serde(default)]
    pub(crate) margin: Option<f64>,
}

/// `[[quantile]]`: one series' quantile against a budget in the series' unit.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuantileSlo {
    /// A short unique name.
    pub(crate) name: String,
    /// The scenario.
    pub(crate) scenario: String,
    /// The series id.
    pub(crate) series: String,
    /// The quantile, in 0..=1 (0.99 for p99).
    pub(crate) q: f64,
    /// The quantile must be at most this.
    #[serde(default)]
    pub(crate) max: Option<f64>,
    /// The quantile must be at least this.
    #[serde(default)]
    pub(crate) min: Option<f64>,
    /// The sets it applies to; all when absent.
    #[serde(default)]
    pub(crate) sets: Option<Vec<String>>,
    /// Whether to compare it with the baseline (default true).
    #[serde(default = "yes")]
    pub(crate) compare: bool,
    /// The practical margin of its baseline comparison, instead of `[baseline] margin`.
    #[serde(default)]
    pub(crate) margin: Option<f64>,
}

/// `[[figure]]`: a scenario figure against a number or another figure of the same scenario.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FigureSlo {
    /// A short unique name.
    pub(crate) name: String,
    /// The scenario.
    pub(crate) scenario: String,
    /// The figure's name in the scenario's `figures`.
    pub(crate) figure: String,
    /// The figure must be at most this.
    #[serde(default)]
    pub(crate) max: Option<f64>,
    /// The figure must be at least this.
    #[serde(default)]
    pub(crate) min: Option<f64>,
    /// The figure must be at most this other figure.
    #[serde(default)]
    pub(crate) max_figure: Option<String>,
    /// The figure must be at least this other figure.
    #[serde(default)]
    pub(crate) min_figure: Option<String>,
    /// The sets it applies to; all when absent.
    #[serde(default)]
    pub(crate) sets: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

impl SloFile {
    /// Parses and checks an SLO file; `source` names it in errors.
    pub(crate) fn parse(text: &str, source: &str) -> Result<SloFile> {
        let value: toml::Value = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{source}: {}", e.to_string().trim_end()))?;
        if let Some(version) = value.get("version")
            && version.as_integer() != Some(i64::from(VERSION))
        {
            bail!("{source}: version is {version}, expected {VERSION}");
        }
        let file: SloFile = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("{source}: at `{path}`: {}", e.inner())
        })?;
        file.check().map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
        Ok(file)
    }

    /// Reads and checks the SLO file at `path`.
    pub(crate) fn load(path: &Path) -> Result<SloFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        SloFile::parse(&text, &path.display().to_string())
    }

    /// The checks serde cannot express: bounds present and sane, names unique.
    fn check(&self) -> Result<()> {
        let b = &self.baseline;
        if !(b.margin >= 0.0 && b.margin.is_finite()) {
            bail!("at `baseline.margin`: {}, expected a number >= 0", b.margin);
        }
        if !(b.confidence > 0.0 && b.confidence < 1.0) {
            bail!(
                "at `baseline.confidence`: {}, expected a number between 0 and 1",
                b.confidence
            );
        }
        if b.resamples < 100 {
            bail!(
                "at `baseline.resamples`: {}, expected at least 100",
                b.resamples
            );
        }
        let mut names = BTreeSet::new();
        let mut unique = |name: &str, at: &str| -> Result<()> {
            if !names.insert(name.to_owned()) {
                bail!("at `{at}.name`: `{name}` is used twice, expected unique SLO names");
            }
            Ok(())
        };
        for (i, slo) in self.ratio.iter().enumerate() {
            let at = format!("ratio[{i}]");
            unique(&slo.name, &at)?;
            bounds(&at, slo.max, slo.min, false)?;
            margin(&at, slo.margin)?;
            if slo.den.ids().is_empty() {
                bail!("at `{at}.den`: an empty list, expected one series id or more");
            }
        }
        for (i, slo) in self.quantile.iter().enumerate() {
            let at = format!("quantile[{i}]");
            unique(&slo.name, &at)?;
            bounds(&at, slo.max, slo.min, false)?;
            margin(&at, slo.margin)?;
            if !(0.0..=1.0).contains(&slo.q) {
                bail!("at `{at}.q`: {}, expected a quantile in 0..=1", slo.q);
            }
        }
        for (i, slo) in self.figure.iter().enumerate() {
            let at = format!("figure[{i}]");
            unique(&slo.name, &at)?;
            let by_figure = slo.max_figure.is_some() || slo.min_figure.is_some();
            bounds(&at, slo.max, slo.min, by_figure)?;
        }
        Ok(())
    }
}

fn bounds(at: &str, max: Option<f64>, min: Option<f64>, other: bool) -> Result<()> {
    if max.is_none() && min.is_none() && !other {
        bail!("at `{at}`: no limit, expected `max` and/or `min`");
    }
    if let (Some(max), Some(min)) = (max, min)
        && min > max
    {
        bail!("at `{at}`: min {min} is above max {max}, expected min <= max");
    }
    Ok(())
}

fn margin(at: &str, margin: Option<f64>) -> Result<()> {
    match margin {
        Some(m) if !(m >= 0.0 && m.is_finite()) => {
            bail!("at `{at}.margin`: {m}, expected a number >= 0")
        }
        _ => Ok(()),
    }
}

/// Whether an SLO limited to `sets` applies to a run of `set`.
pub(crate) fn applies(sets: Option<&Vec<String>>, set: &str) -> bool {
    sets.is_none_or(|sets| sets.iter().any(|it| it == set))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
version = 1
[baseline]
margin = 0.1
resamples = 1000
confidence = 0.95

[[ratio]]
name = "zc"
scenario = "sizes"
num = "zero_copy@64MiB"
den = ["memcpy@64MiB", "grpc@64MiB"]
max = 1.5
"#;

    #[test]
    fn the_checked_in_file_parses() {
        let path = crate::workspace_root().join("xtask/perf/slo.toml");
        let file = SloFile::load(&path).unwrap();
        assert!(!file.ratio.is_empty() && !file.quantile.is_empty() && !file.figure.is_empty());
    }

    #[test]
    fn a_minimal_file_parses_with_a_list_of_denominators() {
        let file = SloFile::parse(MINIMAL, "slo.toml").unwrap();
        assert_eq!(file.ratio[0].den.ids(), ["memcpy@64MiB", "grpc@64MiB"]);
        assert!(file.ratio[0].compare);
        assert_eq!(file.baseline.seed, 1);
    }

    #[test]
    fn an_unknown_key_is_an_error_with_its_path() {
        let text = MINIMAL.replace("max = 1.5", "max = 1.5\nmaxx = 2.0");
        let err = SloFile::parse(&text, "slo.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("slo.toml: at `ratio[0].maxx`: unknown field `maxx`"),
            "{err}"
        );
        let text = MINIMAL.replace("margin = 0.1", "margin = 0.1\nseeds = 3");
        let err = SloFile::parse(&text, "slo.toml").unwrap_err().to_string();
        assert!(err.starts_with("slo.toml: at `baseline.seeds`"), "{err}");
    }

    #[test]
    fn a_wrong_version_a_missing_limit_and_a_duplicate_name_are_errors() {
        let err = SloFile::parse(&MINIMAL.replace("version = 1", "version = 2"), "s")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "s: version is 2, expected 1");
        let err = SloFile::parse(&MINIMAL.replace("max = 1.5", ""), "s")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "s: at `ratio[0]`: no limit, expected `max` and/or `min`"
        );
        let twice = format!(
            "{MINIMAL}\n[[quantile]]\nname = \"zc\"\nscenario = \"d\"\nseries = \"x\"\nq = 0.99\nmax = 5.0\n"
        );
        let err = SloFile::parse(&twice, "s").unwrap_err().to_string();
        assert!(
            err.contains("`quantile[0].name`: `zc` is used twice"),
            "{err}"
        );
        let err = SloFile::parse(&MINIMAL.replace("version = 1\n", ""), "s")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `version`"), "{err}");
    }

    #[test]
    fn sets_limit_where_an_slo_applies() {
        assert!(applies(None, "quick"));
        let full = vec!["full".to_owned(), "stress".to_owned()];
        assert!(applies(Some(&full), "stress"));
        assert!(!applies(Some(&full), "quick"));
    }
}
