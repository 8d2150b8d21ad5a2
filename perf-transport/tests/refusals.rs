//! The shared refusal table (tests/data/refusals.txt) against the Rust worker, as `perfopt
//! worker` builds it from the spawn contract; python/perfopt-worker's tests/test_refusals.py
//! runs the same table against the Python worker.

#![cfg(target_os = "linux")]

mod grpc_support;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use perf_core::{SegmentId, ShmSegment};
use perf_platform::MemfdShm;
use perf_transport::grpc::{Endpoint, ServiceConfig};
use perf_transport::{Reference, Secret, SpawnedWorker};
use tonic::Code;

use grpc_support::wire::{
    Capabilities, InlineChunk, InlineHeader, ReferenceProgress, SegmentReference,
};
use grpc_support::{Worker, raw_client};
use prost::Message;

const TABLE: &str = include_str!("data/refusals.txt");

struct Case<'a> {
    name: &'a str,
    call: &'a str,
    code: Code,
    settings: HashMap<&'a str, &'a str>,
}

fn code(name: &str) -> Code {
    match name {
        "INVALID_ARGUMENT" => Code::InvalidArgument,
        "UNAUTHENTICATED" => Code::Unauthenticated,
        "OUT_OF_RANGE" => Code::OutOfRange,
        "PERMISSION_DENIED" => Code::PermissionDenied,
        "NOT_FOUND" => Code::NotFound,
        "FAILED_PRECONDITION" => Code::FailedPrecondition,
        "RESOURCE_EXHAUSTED" => Code::ResourceExhausted,
        other => panic!("the table names status {other}, which this test does not know"),
    }
}

fn cases() -> Vec<Case<'static>> {
    TABLE
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut words = line.split_whitespace();
            let mut next = || words.next().expect("a case has a name, a call and a code");
            let (name, call, code_name) = (next(), next(), next());
            let settings = words
                .map(|s| s.split_once('=').expect("settings are key=value"))
                .collect();
            Case {
                name,
                call,
                code: code(code_name),
                settings,
            }
        })
        .collect()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn owner_tagged_name(pid: u32) -> String {
    format!("/perfopt-0-{pid}-0-{}", random_hex())
}

/// What a case's segment is made of; removed when dropped.
#[derive(Default)]
struct Fixture {
    files: Vec<File>,
    memfds: Vec<perf_platform::MemfdSegment>,
    paths: Vec<PathBuf>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn named_file(fixture: &mut Fixture, name: &str) -> u64 {
    let path = Path::new("/dev/shm").join(&name[1..]);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    file.set_len(4096).unwrap();
    fixture.paths.push(path);
    let inode = file.metadata().unwrap().ino();
    fixture.files.push(file);
    inode
}

/// The reference a case describes, and what it points at.
fn reference(s: &HashMap<&str, &str>, secret: &Secret, dir: &Path) -> (SegmentReference, Fixture) {
    let mut fixture = Fixture::default();
    let mode = s.get("mode").map(|m| u32::from_str_radix(m, 8).unwrap());
    let pid = std::process::id();
    let (segment, mut inode) = match s.get("segment").copied().unwrap_or("memfd") {
        "memfd" if s.get("file") == Some(&"plain") => {
            let path = dir.join("plain");
            let file = File::create(&path).unwrap();
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .unwrap();
            file.set_len(4096).unwrap();
            let id = SegmentId::Memfd {
                pid,
                fd: file.as_raw_fd(),
            };
            let inode = file.metadata().unwrap().ino();
            fixture.files.push(file);
            (Some(id), inode)
        }
        "memfd" => {
            let mut seg = MemfdShm::default().create_segment(4096).unwrap();
            seg.seal().unwrap();
            let (id, inode) = (seg.id().clone(), seg.inode());
            if let (Some(mode), SegmentId::Memfd { fd, .. }) = (mode, &id) {
                std::fs::set_permissions(
                    format!("/proc/self/fd/{fd}"),
                    std::fs::Permissions::from_mode(mode),
                )
                .unwrap();
            }
            fixture.memfds.push(seg);
            let id = match s.get("fd").copied() {
                Some("-1") => SegmentId::Memfd { pid, fd: -1 },
                Some("closed") => SegmentId::Memfd { pid, fd: 1_000_000 },
                _ => id,
            };
            (Some(id), inode)
        }
        "named" => {
            let name = match s.get("name").copied() {
                Some("untagged") => "/perfopt-test-untagged".to_owned(),
                Some("other_owner") => owner_tagged_name(1),
                Some("long") => format!("/{}", "a".repeat(255)),
                _ => owner_tagged_name(pid),
            };
            let inode = match (s.get("file").copied(), s.get("name").copied()) {
                (Some("missing"), _) | (_, Some("long")) => 0,
                (Some("symlink"), _) => {
                    let target = owner_tagged_name(pid);
                    let inode = named_file(&mut fixture, &target);
                    let link = Path::new("/dev/shm").join(&name[1..]);
                    std::os::unix::fs::symlink(Path::new("/dev/shm").join(&target[1..]), &link)
                        .unwrap();
                    fixture.paths.push(link);
                    inode
                }
                _ => {
                    let inode = named_file(&mut fixture, &name);
                    if let Some(mode) = mode {
                        let path = Path::new("/dev/shm").join(&name[1..]);
                        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                            .unwrap();
                    }
                    inode
                }
            };
            (Some(SegmentId::Named(name)), inode)
        }
        _ => (None, 0),
    };
    if s.get("inode") == Some(&"other") {
        inode += 1;
    }
    let number = |key: &str, default: u64| s.get(key).map_or(default, |v| v.parse().unwrap());
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let expires: i64 = s.get("expires").map_or(30_000, |v| v.parse().unwrap());
    let mut r = Reference {
        transfer_id: 11,
        segment: segment
            .clone()
            .unwrap_or(SegmentId::Memfd { pid: 0, fd: 0 }),
        segment_inode: inode,
        segment_len: number("segment_len", 4096),
        offset: number("offset", 0),
        length: number("length", 64),
        format: "f".repeat(number("format_len", 3) as usize),
        expires_unix_ms: (now_ms + expires) as u64,
        token: [0; 32],
    };
    match s.get("token").copied() {
        Some("other_secret") => r.sign(&Secret::generate().unwrap()),
        _ => r.sign(secret),
    }
    // The documented wire form, as a peer in another language would build it.
    let mut wire = SegmentReference::decode(r.encode().as_slice()).unwrap();
    match s.get("token").copied() {
        Some("flipped") => wire.token[0] ^= 1,
        Some("short") => wire.token = vec![1; 16],
        _ => {}
    }
    if segment.is_none() {
        wire.segment = None;
    }
    if let Some(verify) = s.get("verify") {
        wire.verify = verify.parse().unwrap();
    }
    (wire, fixture)
}

fn inline_chunks(spec: &str, format_len: usize) -> Vec<InlineChunk> {
    spec.split(',')
        .map(|part| match part.strip_prefix('h') {
            Some(rest) => {
                let (total, n) = rest.split_once(':').unwrap();
                InlineChunk {
                    header: Some(InlineHeader {
                        transfer_id: 11,
                        total_len: total.parse().unwrap(),
                        format: "f".repeat(format_len),
                    }),
                    data: Bytes::from(vec![7u8; n.parse().unwrap()]),
                }
            }
            None => InlineChunk {
                header: None,
                data: Bytes::from(vec![7u8; part.parse().unwrap()]),
            },
        })
        .collect()
}

fn progress(spec: &str, reference: &SegmentReference) -> Vec<ReferenceProgress> {
    spec.split(',')
        .map(|part| match part.strip_prefix('r') {
            Some(ready) => ReferenceProgress {
                reference: Some(reference.clone()),
                ready: ready.parse().unwrap(),
            },
            None => ReferenceProgress {
                reference: None,
                ready: part.parse().unwrap(),
            },
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_worker_refuses_as_the_shared_table_says() {
    let dir = tempfile::tempdir().unwrap();
    let secret = Secret::generate().unwrap();
    let secret_file = dir.path().join("secret");
    secret.write_file(&secret_file).unwrap();
    let mut wrong = Vec::new();
    let all = cases();
    assert!(all.len() >= 30, "the table has {} cases", all.len());
    for case in &all {
        let s = &case.settings;
        let peer_pid = match s.get("peer").copied() {
            Some("other") => Some(1),
            Some("none") => None,
            _ => Some(std::process::id()),
        };
        let spawned = SpawnedWorker {
            listen: Endpoint::parse("tcp:127.0.0.1:0").unwrap(),
            peer_pid,
            secret_file: (s.get("worker") != Some(&"no_secret")).then(|| secret_file.clone()),
        };
        let service = spawned.service(ServiceConfig::default()).unwrap();
        let worker = Worker::start(grpc_support::Transport::Tcp, service).await;
        let mut raw = raw_client(&worker).await;
        let (reference, fixture) = reference(s, &secret, dir.path());
        let format_len = s.get("format_len").map_or(3, |v| v.parse().unwrap());
        let status = match case.call {
            "reference" => raw.send_reference(reference).await.err(),
            "progress" => raw
                .send_reference_stream(tokio_stream::iter(progress(s["progress"], &reference)))
                .await
                .err(),
            "inline" => raw
                .send_inline(tokio_stream::iter(inline_chunks(s["chunks"], format_len)))
                .await
                .err(),
            "negotiate" => raw
                .negotiate(Capabilities {
                    protocol_version: s["version"].parse().unwrap(),
                    ..Capabilities::default()
                })
                .await
                .err(),
            other => panic!("case {}: unknown call {other}", case.name),
        };
        drop(fixture);
        match status {
            Some(status) if status.code() == case.code => {}
            other => wrong.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name, case.code, other
            )),
        }
        worker.stop().await;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
