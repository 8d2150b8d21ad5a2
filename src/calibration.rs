//! A data directory's calibration of this machine: the profile of cost coefficients fitted to
//! measured transfers, and the first classifier trained on the same measurements.
//!
//! [`calibrate_data_dir`] takes paired measurements (both methods at each size, idle and under
//! CPU load, e.g. as `perfopt calibrate` measures them), trains the classifier as the learning
//! engine does and, only when it passes validation, saves it in the data directory's store and
//! writes the profile fitted to the idle medians as [`CALIBRATION_FILE`]. An optimizer built on
//! that data directory ([`crate::OptimizerBuilder::data_dir`]) then decides with the profile's
//! coefficients wherever its configuration states no costs of its own, and, with learning on,
//! with the stored classifier from its first transfer.

use std::path::{Path, PathBuf};

use perf_core::{
    CostCoefficients, DecisionContext, Timestamp, TransferRequest, ZeroCopyAvailability,
};

use crate::optimizer::{OptimizerError, load_profile};

/// The file of a data directory that holds its calibration profile.
pub const CALIBRATION_FILE: &str = "calibration.toml";

/// Where `data_dir` keeps its calibration profile.
pub fn calibration_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CALIBRATION_FILE)
}

/// The calibration profile of `data_dir`: `None` when it has none, an error when the file is
/// there but is not a readable, valid profile.
pub fn data_dir_calibration(data_dir: &Path) -> Result<Option<CostCoefficients>, OptimizerError> {
    let path = calibration_path(data_dir);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => load_profile(&path).map(Some),
    }
}

/// Where an optimizer's cost coefficients come from, as far as its data directory goes
/// ([`crate::Optimizer::calibration`]).
#[derive(Debug, Clone, PartialEq)]
pub enum CalibrationStatus {
    /// No data directory: the configuration's costs decide.
    NoDataDir,
    /// The data directory holds no calibration profile: the configuration's costs decide (the
    /// built-in defaults, unless it states its own).
    Missing {
        /// Where the profile would be.
        path: PathBuf,
    },
    /// The data directory's profile decides wherever the configuration states no costs of its
    /// own (no `profile`, the built-in `[costs]`), across reloads.
    Applied {
        /// The profile.
        path: PathBuf,
        /// Whether the configuration in force at build stated costs of its own, so that they
        /// decide instead.
        overridden: bool,
    },
    /// The profile is there but could not be read: the configuration's costs decide.
    Unreadable {
        /// The profile.
        path: PathBuf,
        /// Why.
        error: String,
    },
}

impl CalibrationStatus {
    /// Whether the data directory holds a calibration profile that loads.
    pub fn is_calibrated(&self) -> bool {
        matches!(self, CalibrationStatus::Applied { .. })
    }
}

/// The smallest and largest sizes [`fitted_crossover`] looks at.
const CROSSOVER_SIZES: (u64, u64) = (1 << 10, 1 << 30);

/// The smallest size, in quarter octaves from 1 KiB to 1 GiB, from which `costs` estimate a
/// transfer through a pooled segment faster than gRPC on an idle machine at every larger size
/// looked at; `None` when zero-copy is not estimated faster at 1 GiB.
pub fn fitted_crossover(costs: &CostCoefficients) -> Option<u64> {
    let ctx = DecisionContext::idle(Timestamp(0));
    let faster = |size: u64| {
        let request = TransferRequest::new(size);
        let (zc, grpc) = perf_core::cost::calibrated_estimates(
            costs,
            &request,
            ZeroCopyAvailability::Pooled,
            &ctx.system,
        );
        zc.latency_us < grpc.latency_us
    };
    let mut sizes = Vec::new();
    let mut x = CROSSOVER_SIZES.0 as f64;
    while x <= CROSSOVER_SIZES.1 as f64 {
        sizes.push(x.round() as u64);
        x *= 2f64.powf(0.25);
    }
    let mut from = None;
    for &size in sizes.iter().rev() {
        if !faster(size) {
            break;
        }
        from = Some(size);
    }
    from
}

#[cfg(all(feature = "store", feature = "learn", feature = "transport"))]
pub use self::run::{Calibrated, CalibrationError, CalibrationRun, calibrate_data_dir};

#[cfg(all(feature = "store", feature = "learn", feature = "transport"))]
mod run {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use perf_core::calibrate::{Calibration, Measured, calibrate, profile_text};
    use perf_core::crossover::median;
    use perf_core::{CostCoefficients, Method};
    use perf_learn::PairedSample;

    use super::{calibration_path, fitted_crossover};
    use crate::stored::{StoredError, Training, train_classifier};

    /// A UTC calendar date and time, `2025-01-31T12:00:00Z`, from seconds since the Unix epoch.
    pub(super) fn utc_timestamp(unix_secs: u64) -> String {
        let days = (unix_secs / 86_400) as i64;
        let secs = unix_secs % 86_400;
        // Days to a proleptic Gregorian date (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }

    /// Paired measurements of this machine to calibrate a data directory with.
    #[derive(Debug, Clone, Default)]
    pub struct CalibrationRun {
        /// Rows measured on the machine as it is, without added load: the profile is fitted to
        /// their medians per size, and the classifier learns from them.
        pub idle: Vec<PairedSample>,
        /// Rows measured under CPU load: the classifier learns from them too.
        pub loaded: Vec<PairedSample>,
        /// Seed of the 80/20 train/validation split.
        pub seed: u64,
        /// How long the measurements took, in seconds, for the profile's record.
        pub elapsed_s: f64,
    }

    /// What [`calibrate_data_dir`] did.
    #[derive(Debug, Clone)]
    pub struct Calibrated {
        /// The coefficients fitted to the idle medians, and which were fitted.
        pub fit: Calibration,
        /// Where the fitted coefficients estimate zero-copy faster from
        /// ([`fitted_crossover`]).
        pub crossover: Option<u64>,
        /// Where the idle rows' medians have zero-copy keep winning from
        /// ([`perf_core::crossover::crossover`]).
        pub measured_crossover_idle: Option<u64>,
        /// The same, under CPU load.
        pub measured_crossover_loaded: Option<u64>,
        /// The classifier's training and held-out validation.
        pub training: Training,
        /// The profile written, when the classifier passed validation; nothing is saved
        /// otherwise.
        pub profile: Option<PathBuf>,
    }

    /// Why a data directory could not be calibrated.
    #[derive(Debug, thiserror::Error)]
    pub enum CalibrationError {
        /// No idle rows to fit the profile to.
        #[error("no idle measurements, expected rows of both methods measured without added load")]
        NoIdleRows,
        /// The store could not be opened, or the classifier could not be trained.
        #[error(transparent)]
        Stored(#[from] StoredError),
        /// The fitted profile does not read back as written.
        #[error("the fitted calibration profile is invalid: {0}")]
        Profile(String),
        /// The profile could not be written.
        #[error("cannot write {}: {source}", path.display())]
        Write {
            /// The profile's path.
            path: PathBuf,
            /// What went wrong.
            source: std::io::Error,
        },
    }

    /// The medians per size of each method over `rows`, smallest size first.
    fn medians(rows: &[PairedSample]) -> Measured {
        let mut by_size: BTreeMap<u64, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for r in rows {
            let (g, z) = by_size.entry(r.size).or_default();
            g.push(r.grpc_us);
            z.push(r.zero_copy_us);
        }
        let mut m = Measured {
            smallest_segment: perf_transport::pool::MIN_CLASS as u64,
            ..Measured::default()
        };
        for (size, (mut g, mut z)) in by_size {
            if let (Some(g), Some(z)) = (median(&mut g), median(&mut z)) {
                m.grpc.push((size, g));
                m.pooled.push((size, z));
            }
        }
        m
    }

    /// The measured crossover of `rows`: one latency of each method per row and size.
    fn measured_crossover(rows: &[PairedSample]) -> Option<u64> {
        perf_core::crossover::crossover(rows.iter().flat_map(|s| {
            [
                perf_core::crossover::Measured::new(s.size, Method::Grpc, s.grpc_us),
                perf_core::crossover::Measured::new(s.size, Method::ZeroCopy, s.zero_copy_us),
            ]
        }))
    }

    /// The profile's `[measured]` table: what the run was and what it found.
    fn measured_table(
        run: &CalibrationRun,
        fit: &Calibration,
        sizes: &[u64],
        crossover: Option<u64>,
    ) -> toml::Table {
        let int = |n: u64| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        let strings = |items: &[&str]| {
            toml::Value::Array(items.iter().map(|s| toml::Value::from(*s)).collect())
        };
        let p = perf_platform::detect();
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut t = toml::Table::new();
        t.insert("by".into(), "perfopt calibrate".into());
        t.insert("date".into(), utc_timestamp(unix_secs).into());
        t.insert("platform".into(), format!("{} {}", p.os, p.arch).into());
        t.insert("kernel".into(), p.kernel_release.clone().into());
        t.insert("cpus".into(), int(p.cpus as u64));
        t.insert(
            "sizes".into(),
            toml::Value::Array(sizes.iter().map(|&s| int(s)).collect()),
        );
        t.insert("idle_rows".into(), int(run.idle.len() as u64));
        t.insert("loaded_rows".into(), int(run.loaded.len() as u64));
        t.insert("elapsed_s".into(), toml::Value::Float(run.elapsed_s));
        t.insert("fitted".into(), strings(&fit.fitted));
        t.insert("kept_defaults".into(), strings(&fit.kept()));
        if let Some(size) = crossover {
            t.insert("crossover_zero_copy_pooled".into(), int(size));
        }
        t
    }

    /// Calibrates `data_dir` from `run`: trains the classifier on every row (80 % for
    /// training, 20 % held out, as the learning engine validates) and, only when it passes,
    /// saves it in the data directory's store (created if need be) and writes the profile
    /// fitted to the idle rows' medians (starting from the built-in coefficients) as
    /// [`super::CALIBRATION_FILE`], replacing an earlier one atomically. When the model fails
    /// validation nothing is saved, and [`Calibrated::profile`] is `None`.
    pub fn calibrate_data_dir(
        data_dir: &Path,
        run: &CalibrationRun,
    ) -> Result<Calibrated, CalibrationError> {
        let measured = medians(&run.idle);
        if measured.grpc.is_empty() {
            return Err(CalibrationError::NoIdleRows);
        }
        let fit = calibrate(&measured, CostCoefficients::default());
        let sizes: Vec<u64> = measured.grpc.iter().map(|p| p.0).collect();
        let measured_crossover_idle = measured_crossover(&run.idle);
        let text = profile_text(
            &fit,
            measured_table(run, &fit, &sizes, measured_crossover_idle),
        )
        .map_err(|e| CalibrationError::Profile(e.to_string()))?;
        let rows: Vec<PairedSample> = run.idle.iter().chain(&run.loaded).copied().collect();
        let training = train_classifier(data_dir, &rows, run.seed)?;
        let profile = match training.published {
            Some(_) => {
                let path = calibration_path(data_dir);
                write_atomically(&path, &text).map_err(|source| CalibrationError::Write {
                    path: path.clone(),
                    source,
                })?;
                Some(path)
            }
            None => None,
        };
        Ok(Calibrated {
            crossover: fitted_crossover(&fit.costs),
            fit,
            measured_crossover_idle,
            measured_crossover_loaded: measured_crossover(&run.loaded),
            training,
            profile,
        })
    }

    /// Writes `text` to `path` through a file beside it and a rename, so that a reader never
    /// sees half a profile.
    fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        let tmp = path.with_extension(format!("toml.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_a_profile_has_no_calibration_and_a_bad_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(data_dir_calibration(dir.path()).unwrap(), None);
        std::fs::write(calibration_path(dir.path()), "[costs]\ngrpc_call_us = -1\n").unwrap();
        assert!(data_dir_calibration(dir.path()).is_err());
        std::fs::remove_file(calibration_path(dir.path())).unwrap();
        std::fs::create_dir(calibration_path(dir.path())).unwrap();
        assert!(matches!(
            data_dir_calibration(dir.path()),
            Err(OptimizerError::NotRegular { .. })
        ));
    }

    #[test]
    fn the_fitted_crossover_is_where_the_estimates_cross() {
        let costs = CostCoefficients::default();
        let at = fitted_crossover(&costs).expect("the defaults favour zero-copy when large");
        let ctx = DecisionContext::idle(Timestamp(0));
        let zero_copy_faster = |size| {
            let (zc, grpc) = perf_core::cost::calibrated_estimates(
                &costs,
                &TransferRequest::new(size),
                ZeroCopyAvailability::Pooled,
                &ctx.system,
            );
            zc.latency_us < grpc.latency_us
        };
        assert!(zero_copy_faster(at) && zero_copy_faster(1 << 30));
        assert!(at == 1 << 10 || !zero_copy_faster(at * 8 / 10));
        // gRPC far dearer per byte: zero-copy wins from the smallest size.
        let dear = CostCoefficients {
            grpc_call_us: 1000.0,
            ..costs
        };
        assert_eq!(fitted_crossover(&dear), Some(1 << 10));
        // gRPC free: zero-copy never wins.
        let free = CostCoefficients {
            grpc_call_us: 0.0,
            grpc_ns_per_byte: 0.0,
            grpc_cached_ns_per_byte: 0.0,
            ..costs
        };
        assert_eq!(fitted_crossover(&free), None);
    }

    #[cfg(feature = "store")]
    #[test]
    fn an_optimizer_on_a_calibrated_data_directory_decides_with_its_profile() {
        let dir = tempfile::tempdir().unwrap();
        let built = || {
            crate::Optimizer::builder()
                .data_dir(dir.path())
                .build()
                .unwrap()
        };
        let o = built();
        assert!(matches!(o.calibration(), CalibrationStatus::Missing { .. }));
        assert_eq!(o.controller().config().costs, CostCoefficients::default());
        drop(o);

        let measured = CostCoefficients {
            grpc_ns_per_byte: 3.5,
            ..CostCoefficients::default()
        };
        let calibration = perf_core::calibrate::Calibration {
            costs: measured,
            fitted: vec!["grpc_ns_per_byte"],
        };
        let text = perf_core::calibrate::profile_text(&calibration, Default::default()).unwrap();
        std::fs::write(calibration_path(dir.path()), text).unwrap();
        let o = built();
        assert!(o.calibration().is_calibrated(), "{:?}", o.calibration());
        assert_eq!(o.controller().config().costs, measured);
        assert_eq!(
            o.fixed_thresholds_policy().unwrap().config().costs,
            measured
        );
        assert!(o.warnings().is_empty(), "{:?}", o.warnings());
        drop(o);

        // Costs of the configuration's own decide.
        let mut config = perf_core::Config::default();
        config.costs.grpc_call_us = 7.0;
        let o = crate::Optimizer::builder()
            .config(config.clone())
            .data_dir(dir.path())
            .build()
            .unwrap();
        assert_eq!(
            o.calibration(),
            &CalibrationStatus::Applied {
                path: calibration_path(dir.path()),
                overridden: true
            }
        );
        assert_eq!(o.controller().config().costs, config.costs);
        drop(o);

        // A damaged profile is said, and the built-in costs decide.
        std::fs::write(
            calibration_path(dir.path()),
            "[costs]\ngrpc_call_us = \"x\"\n",
        )
        .unwrap();
        let o = built();
        assert!(matches!(
            o.calibration(),
            CalibrationStatus::Unreadable { .. }
        ));
        assert_eq!(o.warnings().len(), 1, "{:?}", o.warnings());
        assert_eq!(o.controller().config().costs, CostCoefficients::default());
    }

    #[cfg(all(feature = "store", feature = "learn", feature = "transport"))]
    #[test]
    fn calibrating_saves_the_profile_and_the_model_only_when_the_model_validates() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = perf_learn::synthetic::Workload::new(Default::default(), 5);
        let pairs = w.pairs(400);
        let (idle, loaded) = pairs.split_at(300);
        let run = CalibrationRun {
            idle: idle.to_vec(),
            loaded: loaded.to_vec(),
            seed: 7,
            elapsed_s: 1.0,
        };
        let c = calibrate_data_dir(dir.path(), &run).unwrap();
        let version = c
            .training
            .published
            .expect("a synthetic machine's model passes");
        assert_eq!(
            c.profile.as_deref(),
            Some(calibration_path(dir.path()).as_path())
        );
        assert!(c.fit.fitted.contains(&"grpc_ns_per_byte"), "{:?}", c.fit);
        let costs = data_dir_calibration(dir.path()).unwrap().unwrap();
        assert_eq!(costs, c.fit.costs);
        assert_eq!(c.crossover, fitted_crossover(&costs));
        let stored = crate::stored_classifier(dir.path()).unwrap();
        assert_eq!(stored.model.map(|m| m.version), Some(version));

        // Too few rows to train on: an error, and nothing new is saved.
        let other = tempfile::tempdir().unwrap();
        let few = CalibrationRun {
            idle: idle[..3].to_vec(),
            ..CalibrationRun::default()
        };
        assert!(matches!(
            calibrate_data_dir(other.path(), &few),
            Err(CalibrationError::Stored(crate::StoredError::Learn(_)))
        ));
        assert_eq!(data_dir_calibration(other.path()).unwrap(), None);
        let none = CalibrationRun {
            loaded: loaded.to_vec(),
            ..CalibrationRun::default()
        };
        assert!(matches!(
            calibrate_data_dir(other.path(), &none),
            Err(CalibrationError::NoIdleRows)
        ));
    }

    #[cfg(all(feature = "store", feature = "learn", feature = "transport"))]
    #[test]
    fn timestamps_are_utc_calendar_dates() {
        use super::run::utc_timestamp;
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    }
}
