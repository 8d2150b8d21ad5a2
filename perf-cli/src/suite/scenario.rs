//! The scenario file `perfopt suite` runs: `version = 1` and `[[scenario]]` tables, each with a
//! name, the sets it belongs to and a kind with its own keys, every count and size bounded.

use std::fmt;
use std::io::Read as _;
use std::path::Path;

use perf_core::{DataType, Format, HumanSize, TransferRequest, Verification, parse_size};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::args::{MAX_BENCH_SIZE, MIN_BENCH_SIZE};

/// The largest scenario file read.
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 20;
/// The most scenarios one file holds.
const MAX_SCENARIOS: usize = 64;
/// The most sizes one `methods` scenario measures.
const MAX_SIZES: usize = 32;
/// The most concurrency levels one scenario measures.
const MAX_LEVELS: usize = 16;
/// The most transfers in flight one level submits.
pub(crate) const MAX_LEVEL: usize = 100_000;
/// The most transfers, records or decisions one scenario makes per series.
const MAX_COUNT: usize = 10_000_000;

/// The sets a scenario can be part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Set {
    /// The subset the CI gate runs: a few minutes on a 2-core machine.
    Quick,
    /// Every scenario `cargo xtask perf` runs by default.
    Full,
    /// The stress scenarios: 10,000 in flight, memory pressure, CPU saturation.
    Stress,
}

impl Set {
    /// The name in the file and the results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Set::Quick => "quick",
            Set::Full => "full",
            Set::Stress => "stress",
        }
    }
}

/// A method a `methods` scenario measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MethodName {
    /// A plain copy into a pre-faulted buffer of this process.
    Memcpy,
    /// Zero-copy through a pooled segment the payload is copied into.
    ZeroCopy,
    /// Zero-copy of a loaned segment the producer wrote into.
    ZeroCopyLoaned,
    /// A gRPC message.
    Grpc,
}

impl MethodName {
    /// The name in series ids and the results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            MethodName::Memcpy => "memcpy",
            MethodName::ZeroCopy => "zero_copy",
            MethodName::ZeroCopyLoaned => "zero_copy_loaned",
            MethodName::Grpc => "grpc",
        }
    }
}

/// The load a scenario runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Load {
    /// Nothing else started.
    #[default]
    Idle,
    /// One CPU burner process per CPU.
    Cpu,
}

impl Load {
    /// The name in the results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Load::Idle => "idle",
            Load::Cpu => "cpu",
        }
    }
}

/// One scenario: its name, sets, description and what it measures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scenario {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) sets: Vec<Set>,
    pub(crate) kind: Kind,
}

/// What a scenario measures, with its own settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Methods(MethodsSpec),
    Concurrency(ConcurrencySpec),
    Policies(PoliciesSpec),
    Recording(RecordingSpec),
    Decision(DecisionSpec),
    MemoryPressure(MemoryPressureSpec),
    CpuSaturation(CpuSaturationSpec),
}

impl Kind {
    /// The kind's name in the file and the results.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::Methods(_) => "methods",
            Kind::Concurrency(_) => "concurrency",
            Kind::Policies(_) => "policies",
            Kind::Recording(_) => "recording",
            Kind::Decision(_) => "decision",
            Kind::MemoryPressure(_) => "memory_pressure",
            Kind::CpuSaturation(_) => "cpu_saturation",
        }
    }
}

/// Each method at each size, one worker, in rotating order so drift hits them alike.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MethodsSpec {
    /// Payload sizes, 1 KiB to 1 GiB.
    #[serde(deserialize_with = "sizes")]
    pub(crate) sizes: Vec<u64>,
    /// The methods measured at every size.
    pub(crate) methods: Vec<MethodName>,
    /// Timed transfers per size and method, after two untimed ones.
    pub(crate) repeats: u32,
    /// Idle, or under one CPU burner per CPU.
    #[serde(default)]
    pub(crate) load: Load,
    /// How much of each zero-copy payload the worker hashes: `checksum` (every byte, the
    /// default here), `sampled` or `none`; gRPC payloads are always checksummed whole.
    #[serde(default)]
    pub(crate) verify: Verification,
}

/// A workload: payload sizes drawn log-uniformly from `min_size` to `max_size`, and the data
/// types requests say they carry, in turn (plain bytes when none are given), each with a
/// format of its kind.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SizeRange {
    #[serde(deserialize_with = "size")]
    pub(crate) min_size: u64,
    #[serde(deserialize_with = "size")]
    pub(crate) max_size: u64,
    #[serde(default)]
    pub(crate) data_types: Vec<DataType>,
}

impl SizeRange {
    /// Request `i` of the workload, of `size` bytes.
    pub(crate) fn request(&self, i: usize, size: u64) -> TransferRequest {
        let request = TransferRequest::new(size).with_session(i as u64);
        if self.data_types.is_empty() {
            return request;
        }
        let data_type = self.data_types[i % self.data_types.len()];
        let format = match data_type {
            DataType::Tensor => Format::Numpy,
            DataType::Table => Format::Arrow,
            DataType::Records => Format::Msgpack,
            _ => Format::Raw,
        };
        request.with_data_type(data_type).with_format(format)
    }
}

/// Throughput and latency of the host runtime at each number of transfers in flight.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConcurrencySpec {
    /// Transfers in flight, each level from 1 to 100,000.
    pub(crate) levels: Vec<usize>,
    /// Transfers each level carries; every one of them at once at a level this high.
    pub(crate) transfers: usize,
    #[serde(flatten)]
    pub(crate) range: SizeRange,
    /// Worker processes.
    pub(crate) workers: usize,
    /// The window throughput is sampled over, in milliseconds.
    pub(crate) window_ms: u64,
}

/// The engine against the fixed policies, each request carried by every one in rotating order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PoliciesSpec {
    /// Requests; each is carried once by every policy.
    pub(crate) transfers: usize,
    #[serde(flatten)]
    pub(crate) range: SizeRange,
    /// Worker processes.
    pub(crate) workers: usize,
}

/// The cost of recording one transfer into the optimizer's sinks against a 1 MiB transfer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordingSpec {
    /// Records timed, in batches of 100.
    pub(crate) records: usize,
    /// 1 MiB zero-copy transfers timed.
    pub(crate) transfers: usize,
}

/// The latency of single decisions by the engine.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionSpec {
    /// Decisions timed per series, each on its own.
    pub(crate) decisions: usize,
}

/// Zero-copy asked for every transfer while the shared-memory device is far too small.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemoryPressureSpec {
    /// The size of the private `/dev/shm` the scenario runs with.
    #[serde(deserialize_with = "size")]
    pub(crate) shm_device: u64,
    /// Transfers carried.
    pub(crate) transfers: usize,
    /// Transfers in flight.
    pub(crate) in_flight: usize,
    #[serde(flatten)]
    pub(crate) range: SizeRange,
}

/// The engine's decisions idle and with every CPU busy, on the same sizes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CpuSaturationSpec {
    /// Transfers per phase.
    pub(crate) transfers: usize,
    #[serde(flatten)]
    pub(crate) range: SizeRange,
    /// How long the load runs before the loaded phase starts, in milliseconds.
    pub(crate) settle_ms: u64,
    /// The pause between transfers, in milliseconds, so that the transfers themselves keep
    /// the idle phase's CPU low.
    pub(crate) pause_ms: u64,
}

/// What went wrong with a scenario file.
#[derive(Debug)]
pub(crate) struct FileError(String);

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads and checks the scenario file at `path`, at most [`MAX_FILE_BYTES`] of it.
pub(crate) fn read(path: &Path) -> Result<Vec<Scenario>, FileError> {
    let file = std::fs::File::open(path)
        .map_err(|e| FileError(format!("cannot read {}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| FileError(format!("cannot read {}: {e}", path.display())))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(FileError(format!(
            "{} is larger than {}, expected a scenario file",
            path.display(),
            HumanSize(MAX_FILE_BYTES)
        )));
    }
    parse(&text).map_err(|e| FileError(format!("{}: {}", path.display(), e.0)))
}

/// Parses and checks a scenario file's text; every problem is named with its scenario and key.
pub(crate) fn parse(text: &str) -> Result<Vec<Scenario>, FileError> {
    let mut top: toml::Table = toml::from_str(text).map_err(|e| FileError(e.to_string()))?;
    match top.remove("version") {
        Some(toml::Value::Integer(1)) => {}
        Some(other) => {
            return Err(FileError(format!(
                "version = {other}: expected version = 1"
            )));
        }
        None => return Err(FileError("no version: expected version = 1".to_string())),
    }
    let list = match top.remove("scenario") {
        Some(toml::Value::Array(list)) => list,
        Some(_) => {
            return Err(FileError(
                "scenario: expected [[scenario]] tables".to_string(),
            ));
        }
        None => return Err(FileError("no [[scenario]] tables".to_string())),
    };
    if let Some(key) = top.keys().next() {
        return Err(FileError(format!(
            "unknown key {key:?}: expected version and [[scenario]]"
        )));
    }
    if list.len() > MAX_SCENARIOS {
        return Err(FileError(format!(
            "{} scenarios, expected at most {MAX_SCENARIOS}",
            list.len()
        )));
    }
    let mut errors = Vec::new();
    let mut scenarios: Vec<Scenario> = Vec::new();
    for (i, value) in list.into_iter().enumerate() {
        match scenario(value) {
            Ok(s) if scenarios.iter().any(|o| o.name == s.name) => {
                errors.push(format!("scenario[{i}] ({}): the name is taken", s.name));
            }
            Ok(s) => scenarios.push(s),
            Err((name, why)) => errors.push(format!(
                "scenario[{i}]{}: {why}",
                name.map(|n| format!(" ({n})")).unwrap_or_default()
            )),
        }
    }
    if errors.is_empty() {
        Ok(scenarios)
    } else {
        Err(FileError(errors.join("\n")))
    }
}

/// The keys every scenario has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    name: String,
    description: String,
    sets: Vec<Set>,
    kind: String,
}

const COMMON_KEYS: [&str; 4] = ["name", "description", "sets", "kind"];

/// One `[[scenario]]` table, or its name (when it has one) and what is wrong.
fn scenario(value: toml::Value) -> Result<Scenario, (Option<String>, String)> {
    let toml::Value::Table(mut table) = value else {
        return Err((None, "expected a table".to_string()));
    };
    let mut common = toml::Table::new();
    for key in COMMON_KEYS {
        if let Some(v) = table.remove(key) {
            common.insert(key.to_string(), v);
        }
    }
    let name = common
        .get("name")
        .and_then(|n| n.as_str())
        .map(str::to_owned);
    let fail = |why: String| (name.clone(), why);
    let common: Common = toml::Value::Table(common)
        .try_into()
        .map_err(|e: toml::de::Error| fail(e.message().to_string()))?;
    check_name(&common.name).map_err(fail)?;
    if common.sets.is_empty() {
        return Err(fail("sets is empty, expected quick, full or stress".into()));
    }
    fn spec<T: DeserializeOwned>(table: toml::Table) -> Result<T, String> {
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())
    }
    let kind = match common.kind.as_str() {
        "methods" => Kind::Methods(spec(table).map_err(fail)?),
        "concurrency" => Kind::Concurrency(spec(table).map_err(fail)?),
        "policies" => Kind::Policies(spec(table).map_err(fail)?),
        "recording" => Kind::Recording(spec(table).map_err(fail)?),
        "decision" => Kind::Decision(spec(table).map_err(fail)?),
        "memory_pressure" => Kind::MemoryPressure(spec(table).map_err(fail)?),
        "cpu_saturation" => Kind::CpuSaturation(spec(table).map_err(fail)?),
        other => {
            return Err(fail(format!(
                "kind {other:?}: expected methods, concurrency, policies, recording, decision, \
                 memory_pressure or cpu_saturation"
            )));
        }
    };
    check(&kind).map_err(fail)?;
    Ok(Scenario {
        name: common.name,
        description: common.description,
        sets: common.sets,
        kind,
    })
}

/// A scenario name: 1 to 64 of `a-z`, `0-9`, `_`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?}: expected 1 to 64 characters of a-z, 0-9 and _"
        ))
    }
}

/// `what = n` within `lo..=hi`.
fn within(what: &str, n: usize, lo: usize, hi: usize) -> Result<(), String> {
    if (lo..=hi).contains(&n) {
        Ok(())
    } else {
        Err(format!(
            "{what} = {n} is out of range, expected {lo} to {hi}"
        ))
    }
}

fn check_range(r: &SizeRange) -> Result<(), String> {
    within(
        "data_types (count)",
        r.data_types.len(),
        0,
        DataType::ALL.len(),
    )?;
    if r.min_size > r.max_size {
        return Err(format!(
            "min_size {} is above max_size {}",
            HumanSize(r.min_size),
            HumanSize(r.max_size)
        ));
    }
    Ok(())
}

/// The bounds of each kind's settings.
fn check(kind: &Kind) -> Result<(), String> {
    match kind {
        Kind::Methods(s) => {
            within("sizes (count)", s.sizes.len(), 1, MAX_SIZES)?;
            within("methods (count)", s.methods.len(), 1, 4)?;
            within("repeats", s.repeats as usize, 1, 1000)?;
            if let Some(m) = s
                .methods
                .iter()
                .enumerate()
                .find(|(i, m)| s.methods[..*i].contains(m))
            {
                return Err(format!("methods names {} twice", m.1.name()));
            }
        }
        Kind::Concurrency(s) => {
            within("levels (count)", s.levels.len(), 1, MAX_LEVELS)?;
            for &level in &s.levels {
                within("a level", level, 1, MAX_LEVEL)?;
            }
            let highest = s.levels.iter().copied().max().unwrap_or(1);
            within("transfers", s.transfers, highest, MAX_COUNT)?;
            within("workers", s.workers, 1, 16)?;
            within("window_ms", s.window_ms as usize, 50, 10_000)?;
            check_range(&s.range)?;
        }
        Kind::Policies(s) => {
            within("transfers", s.transfers, 10, MAX_COUNT)?;
            within("workers", s.workers, 1, 16)?;
            check_range(&s.range)?;
        }
        Kind::Recording(s) => {
            within("records", s.records, 100, MAX_COUNT)?;
            within("transfers", s.transfers, 10, MAX_COUNT)?;
        }
        Kind::Decision(s) => within("decisions", s.decisions, 1_000, MAX_COUNT)?,
        Kind::MemoryPressure(s) => {
            within("transfers", s.transfers, 1, MAX_COUNT)?;
            within("in_flight", s.in_flight, 1, MAX_LEVEL)?;
            if !(1 << 20..=1 << 30).contains(&s.shm_device) {
                return Err(format!(
                    "shm_device {} is out of range, expected 1 MiB to 1 GiB",
                    HumanSize(s.shm_device)
                ));
            }
            check_range(&s.range)?;
        }
        Kind::CpuSaturation(s) => {
            within("transfers", s.transfers, 10, MAX_COUNT)?;
            within("settle_ms", s.settle_ms as usize, 0, 60_000)?;
            within("pause_ms", s.pause_ms as usize, 0, 10_000)?;
            check_range(&s.range)?;
        }
    }
    Ok(())
}

/// A payload size, 1 KiB to 1 GiB.
fn one_size(text: &str) -> Result<u64, String> {
    let n = parse_size(text).map_err(|e| e.to_string())?;
    if (MIN_BENCH_SIZE..=MAX_BENCH_SIZE).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "size {text:?} is out of range, expected 1KiB to 1GiB"
        ))
    }
}

fn size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    one_size(&text).map_err(serde::de::Error::custom)
}

fn sizes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| one_size(t))
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
version = 1
[[scenario]]
name = "sizes"
kind = "methods"
description = "each method at each size"
sets = ["quick", "full"]
sizes = ["1KiB", "64MiB"]
methods = ["memcpy", "zero_copy", "grpc"]
repeats = 5
"#;

    #[test]
    fn a_scenario_file_parses_with_its_kind_and_sets() {
        let s = parse(ONE).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].sets, [Set::Quick, Set::Full]);
        let Kind::Methods(m) = &s[0].kind else {
            panic!("{:?}", s[0].kind)
        };
        assert_eq!(m.sizes, [1 << 10, 64 << 20]);
        assert_eq!(m.load, Load::Idle);
    }

    #[test]
    fn every_problem_is_named_with_its_scenario_and_key() {
        let text = format!(
            "{ONE}\n[[scenario]]\nname = \"c\"\nkind = \"concurrency\"\ndescription = \"\"\n\
             sets = [\"full\"]\nlevels = [0]\ntransfers = 10\nmin_size = \"1KiB\"\n\
             max_size = \"1MiB\"\nworkers = 1\nwindow_ms = 100\n\
             [[scenario]]\nname = \"sizes\"\nkind = \"decision\"\ndescription = \"\"\n\
             sets = [\"quick\"]\ndecisions = 5000\nextra = 1\n\
             [[scenario]]\nname = \"x\"\nkind = \"nope\"\ndescription = \"\"\nsets = [\"quick\"]\n"
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("scenario[1] (c): a level = 0 is out of range"),
            "{err}"
        );
        assert!(
            err.contains("scenario[2] (sizes): unknown field `extra`"),
            "{err}"
        );
        assert!(err.contains("scenario[3] (x): kind \"nope\""), "{err}");
    }

    #[test]
    fn sizes_counts_and_versions_are_bounded() {
        let big = ONE.replace("\"64MiB\"", "\"2GiB\"");
        assert!(
            parse(&big)
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        let many = ONE.replace("repeats = 5", "repeats = 5000");
        assert!(
            parse(&many)
                .unwrap_err()
                .to_string()
                .contains("repeats = 5000")
        );
        let v2 = ONE.replace("version = 1", "version = 2");
        assert!(
            parse(&v2)
                .unwrap_err()
                .to_string()
                .contains("expected version = 1")
        );
        let twice = ONE.replace("\"memcpy\", \"zero_copy\"", "\"grpc\", \"zero_copy\"");
        assert!(
            parse(&twice)
                .unwrap_err()
                .to_string()
                .contains("grpc twice")
        );
    }

    #[test]
    fn the_checked_in_scenario_file_is_valid_and_every_set_is_used() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../xtask/perf/scenarios.toml");
        let scenarios = read(&path).unwrap();
        for set in [Set::Quick, Set::Full, Set::Stress] {
            assert!(
                scenarios.iter().any(|s| s.sets.contains(&set)),
                "no scenario in {}",
                set.name()
            );
        }
    }
}
