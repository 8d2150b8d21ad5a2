//! Criterion benchmarks of segment creation (fresh, space reserved), opening, prefaulting and
//! the resource probe, on Linux.

#[cfg(target_os = "linux")]
mod linux {
    use std::hint::black_box;
    use std::time::Duration;

    use criterion::{BenchmarkId, Criterion, criterion_group};
    use perf_core::seams::{PlatformShm, ResourceProbe, ShmSegment};
    use perf_platform::{HugePages, MemfdShm, NamedShm, NamedShmConfig, ProcProbe, ShmOptions};

    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;

    fn memfd(huge: HugePages) -> MemfdShm {
        MemfdShm::new(ShmOptions {
            huge_pages: huge,
            ..ShmOptions::default()
        })
    }

    /// A fresh segment per transfer: create (memfd_create, ftruncate, fallocate, mmap, seal,
    /// fchmod), write every byte once, drop.
    fn fresh_segment(c: &mut Criterion) {
        let mut group = c.benchmark_group("fresh_segment_write");
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        let named = NamedShm::new(NamedShmConfig {
            prefix: "perfopt_bench".to_owned(),
            ..NamedShmConfig::default()
        })
        .expect("/dev/shm opens");
        let backends: [(&str, Box<dyn PlatformShm>); 2] = [
            ("memfd", Box::new(memfd(HugePages::Auto))),
            ("named", Box::new(named)),
        ];
        for len in [4 * KIB, MIB, 64 * MIB] {
            for (name, shm) in &backends {
                group.bench_with_input(BenchmarkId::new(*name, len), &len, |b, &len| {
                    b.iter(|| {
                        let mut segment = shm.create(len).expect("create");
                        segment.as_mut_slice().fill(7);
                        black_box(segment.as_slice()[len - 1])
                    })
                });
            }
        }
        group.finish();
    }

    /// A pooled segment: created and prefaulted once, then written per transfer.
    fn pooled_segment(c: &mut Criterion) {
        let mut group = c.benchmark_group("pooled_segment_write");
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        let shm = memfd(HugePages::Auto);
        for len in [4 * KIB, MIB, 64 * MIB] {
            let mut segment = shm.create_segment(len).expect("create");
            segment.prefault().expect("prefault");
            group.bench_with_input(BenchmarkId::new("memfd", len), &len, |b, _| {
                b.iter(|| {
                    segment.as_mut_slice().fill(7);
                    black_box(segment.as_slice()[0])
                })
            });
        }
        group.finish();
    }

    /// The worker's side: open (checks, then a read-only mapping) and drop.
    fn open_view(c: &mut Criterion) {
        let shm = memfd(HugePages::Auto);
        let segment = shm.create_segment(MIB).expect("create");
        c.bench_function("open_view/memfd/1MiB", |b| {
            b.iter(|| black_box(shm.open(segment.id(), MIB).expect("open").len()))
        });
    }

    /// The probe from the decision's point of view: a cached sample.
    fn probe(c: &mut Criterion) {
        let probe = ProcProbe::new();
        c.bench_function("probe/sample_cached", |b| {
            b.iter(|| black_box(probe.sample()))
        });
        c.bench_function("probe/refresh", |b| b.iter(|| black_box(probe.refresh())));
    }

    criterion_group!(benches, fresh_segment, pooled_segment, open_view, probe);
}

#[cfg(target_os = "linux")]
criterion::criterion_main!(linux::benches);

/// The benchmarks measure the Linux backends only.
#[cfg(not(target_os = "linux"))]
fn main() {}
