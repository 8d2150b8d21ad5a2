//! The `methods` scenario: each method at each size against one `perfopt worker` process, in
//! rotating order so that drift on a shared machine hits every method alike; memcpy of the same
//! bytes is measured beside them as the physical ceiling the SLOs compare against.

use std::time::{Duration, Instant};

use perf_core::size::config_size;
use perf_core::{HumanSize, Method, Verification};

use super::Measured;
use super::machine::{peak_rss, process_cpu_s, reset_peak_rss};
use super::scenario::{Load, MethodName, MethodsSpec};
use super::series::{Series, Unit};
use crate::exit::Exit;
use crate::load::Burners;
use crate::measure::{Reuse, WARMUPS, Worker, misread, segments, went};

/// How long burners run before the first timed transfer under load.
const LOAD_SETTLE: Duration = Duration::from_secs(1);

/// Runs a `methods` scenario.
pub(crate) fn run(spec: &MethodsSpec) -> Result<Measured, Exit> {
    let largest = spec.sizes.iter().copied().max().unwrap_or(1 << 10);
    let pool = segments(largest, Reuse::Pooled)?;
    let payload = perf_core::rng::random_bytes(largest as usize, 0x5017E);
    let mut target = vec![0x5A_u8; largest as usize];
    let exe = std::env::current_exe().map_err(Exit::failed)?;
    let command = perfopt::transport::WorkerCommand::perfopt(exe);
    let _burners = match spec.load {
        Load::Cpu => {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
            let burners = Burners::start(cpus)?;
            std::thread::sleep(LOAD_SETTLE);
            Some(burners)
        }
        Load::Idle => None,
    };
    let runtime = crate::measure::runtime()?;
    let series = runtime.block_on(async {
        let worker = Worker::spawn(pool, command).await?;
        let mut all = Vec::new();
        for &size in &spec.sizes {
            worker.pool().warm(&[size as usize]).map_err(Exit::failed)?;
            let mut rows: Vec<Series> = spec
                .methods
                .iter()
                .map(|m| {
                    let mut s = Series::new(
                        format!("{}@{}", m.name(), config_size(size)),
                        m.name(),
                        Unit::Micros,
                    );
                    s.size = Some(size);
                    s.load = spec.load.name();
                    s.verify = match m {
                        MethodName::Memcpy => None,
                        MethodName::Grpc => Some(Verification::Checksum.as_str()),
                        _ => Some(spec.verify.as_str()),
                    };
                    s
                })
                .collect();
            reset_peak_rss();
            for i in 0..WARMUPS + spec.repeats {
                let turn = i as usize;
                for k in 0..rows.len() {
                    // Rotating which method goes first, so none always follows another.
                    let j = (turn + k) % rows.len();
                    let method = spec.methods[j];
                    let bytes = &payload[..size as usize];
                    let cpu_before = process_cpu_s();
                    let sample = one(&worker, method, spec.verify, bytes, &mut target).await?;
                    let cpu = process_cpu_s() - cpu_before;
                    if i < WARMUPS {
                        continue;
                    }
                    let row = &mut rows[j];
                    row.transfers += 1;
                    match sample {
                        Sample::Took { us, worker_cpu_s } => {
                            row.samples.push(us);
                            row.bytes += size;
                            row.wall_s += us * 1e-6;
                            Series::add_cpu(&mut row.cpu_host_s, cpu);
                            if let Some(w) = worker_cpu_s {
                                Series::add_cpu(&mut row.cpu_workers_s, w);
                            }
                        }
                        Sample::WentAnotherWay => row.fallbacks += 1,
                    }
                    let held = worker.pool_stats().held_bytes;
                    row.peak_shm_bytes = Some(row.peak_shm_bytes.unwrap_or(0).max(held));
                }
            }
            let rss = peak_rss();
            for row in &mut rows {
                row.peak_rss_bytes = rss;
                if row.method == MethodName::Memcpy.name() {
                    row.peak_shm_bytes = None;
                }
            }
            all.extend(rows);
        }
        worker.shutdown().await;
        Ok::<_, Exit>(all)
    })?;
    let mut measured = Measured::series(&series);
    let fallbacks: u64 = series.iter().map(|s| s.fallbacks).sum();
    measured.figure("fallbacks", fallbacks);
    measured.figure("failed", 0);
    Ok(measured)
}

/// One timed transfer.
enum Sample {
    /// Its latency, and the worker's CPU time when a worker took part.
    Took { us: f64, worker_cpu_s: Option<f64> },
    /// It went another way than the method measures (a fallback), left out of the samples.
    WentAnotherWay,
}

/// Moves `bytes` once by `method`; a transfer that reads wrong bytes fails the scenario.
async fn one(
    worker: &Worker,
    method: MethodName,
    verify: Verification,
    bytes: &[u8],
    target: &mut [u8],
) -> Result<Sample, Exit> {
    let out = match method {
        MethodName::Memcpy => {
            let target = &mut target[..bytes.len()];
            let start = Instant::now();
            target.copy_from_slice(std::hint::black_box(bytes));
            std::hint::black_box(&mut *target);
            return Ok(Sample::Took {
                us: start.elapsed().as_secs_f64() * 1e6,
                worker_cpu_s: None,
            });
        }
        MethodName::ZeroCopy => worker.carry_verified(Method::ZeroCopy, verify, bytes).await,
        MethodName::Grpc => worker.carry(Method::Grpc, bytes).await,
        MethodName::ZeroCopyLoaned => Ok(worker.carry_loaned(bytes, verify).await?),
    }
    .map_err(|e| {
        Exit::failed(format_args!(
            "{} at {}: {e}",
            method.name(),
            HumanSize(bytes.len() as u64)
        ))
    })?;
    if let Some(why) = misread(&out, bytes) {
        return Err(Exit::failed(format_args!(
            "{} at {}: {why}",
            method.name(),
            HumanSize(bytes.len() as u64)
        )));
    }
    let wanted = match method {
        MethodName::Grpc => Method::Grpc,
        _ => Method::ZeroCopy,
    };
    if went(&out, wanted).is_some() {
        return Ok(Sample::WentAnotherWay);
    }
    Ok(Sample::Took {
        us: out.metrics.latency_us,
        worker_cpu_s: (out.ack.worker_cpu_ns > 0).then_some(out.ack.worker_cpu_ns as f64 * 1e-9),
    })
}
