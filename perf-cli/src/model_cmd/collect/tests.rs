//! Unit tests of `perfopt model collect`: size lists, order, crossover, summary.

use perf_core::{Compression, DataType, Format, Name, Timestamp};
use perfopt::learn::{Conditions, Source};

use super::*;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

#[test]
fn a_range_is_the_powers_of_two_and_their_midpoints() {
    assert_eq!(
        parse_sizes("1KiB..8KiB"),
        Ok(vec![
            KIB,
            3 * KIB / 2,
            2 * KIB,
            3 * KIB,
            4 * KIB,
            6 * KIB,
            8 * KIB
        ])
    );
    // No midpoint past the last power of two that fits.
    assert_eq!(
        parse_sizes("1KiB..3KiB"),
        Ok(vec![KIB, 3 * KIB / 2, 2 * KIB])
    );
    let default = parse_sizes("1KiB..256MiB").unwrap();
    assert_eq!(default.len(), 19 + 18);
    assert_eq!(default.last(), Some(&(256 * MIB)));
    assert!(default.contains(&(192 * MIB)));
    assert_eq!(parse_sizes("1KiB..1GiB").unwrap().len(), 41);
}

#[test]
fn a_comma_list_is_sorted_deduplicated_and_bounded() {
    assert_eq!(
        parse_sizes("256KiB,4KiB,4096"),
        Ok(vec![4 * KIB, 256 * KIB])
    );
    let many: Vec<String> = (1..=65).map(|i| format!("{i}KiB")).collect();
    assert!(
        parse_sizes(&many.join(","))
            .unwrap_err()
            .contains("at most 64")
    );
    assert_eq!(parse_sizes(&many[..64].join(",")).unwrap().len(), 64);
    for (text, why) in [
        ("512,4KiB", "out of range"),
        ("1KiB..2GiB", "out of range"),
        ("8KiB..1KiB", "runs backwards"),
        ("lots", "invalid size"),
    ] {
        let e = parse_sizes(text).unwrap_err();
        assert!(
            e.starts_with("invalid --sizes") && e.contains(why),
            "{text}: {e}"
        );
    }
}

fn sample(size: u64, grpc_us: f64, zero_copy_us: f64) -> PairedSample {
    PairedSample {
        at: Timestamp(1),
        pool: Name::DEFAULT_POOL,
        size,
        data_type: DataType::Bytes,
        format: Format::Raw,
        compression: Compression::None,
        conditions: Conditions {
            cpu_utilization: 0.5,
            memory_used: 0.5,
            shm_free: 1 << 30,
            hour: 0,
            grpc_slowdown: 0.0,
            zero_copy_slowdown: 0.0,
        },
        grpc_us,
        zero_copy_us,
        source: Source::Bench,
    }
}

#[test]
fn crossover_is_where_zero_copy_keeps_winning_by_its_median() {
    let rows = [
        sample(KIB, 100.0, 90.0),
        sample(KIB, 100.0, 90.0),
        sample(2 * KIB, 100.0, 120.0),
        sample(2 * KIB, 100.0, 90.0),
        sample(4 * KIB, 100.0, 90.0),
        sample(4 * KIB, 100.0, 120.0),
        sample(4 * KIB, 100.0, 90.0),
        sample(8 * KIB, 200.0, 90.0),
    ];
    let all: Vec<&PairedSample> = rows.iter().collect();
    // A tie at 2 KiB (medians 100 and 105 µs) is no win; at 4 KiB the median wins.
    assert_eq!(crossover(&all), Some(4 * KIB));
    assert_eq!(crossover(&all[..2]), Some(KIB));
    assert_eq!(crossover(&all[2..4]), None);
    assert_eq!(crossover(&[]), None);
}

#[test]
fn the_summary_names_each_load_condition() {
    let rows = [
        (Load::None, sample(KIB, 100.0, 90.0)),
        (Load::Cpu, sample(KIB, 100.0, 190.0)),
    ];
    let text = summary(&rows, 3, 1.0, std::path::Path::new("x.csv"));
    assert!(text.contains("2 rows written to x.csv"), "{text}");
    assert!(text.contains("3 pair(s) skipped"), "{text}");
    assert!(
        text.contains("\nnone ") && text.contains("\ncpu "),
        "{text}"
    );
    assert!(
        text.contains("(100 %)") && text.contains("(  0 %)"),
        "{text}"
    );
}
