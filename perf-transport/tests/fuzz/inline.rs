//! Arbitrary inline chunk streams: headers missing, repeated or lying about the length, formats
//! of any length, chunks of any size up to past the message limit.

use perf_transport::grpc::{self, MAX_CHUNK_SIZE, MESSAGE_SLACK, checksum};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use prost::Message;
use tonic::Code;

use crate::fixture::Fixture;
use crate::grpc_support::payload;
use crate::grpc_support::wire::{InlineChunk, InlineHeader};
use crate::references::format_name;
use crate::service::{MAX_INLINE, bounded, runtime, serve, still_serves};
use crate::{fail, runner};

/// Largest request message the worker decodes.
const MESSAGE_LIMIT: usize = MAX_CHUNK_SIZE + MESSAGE_SLACK;

/// How an inline header announces the total length, relative to the data actually sent.
#[derive(Debug, Clone)]
enum Total {
    Exact,
    Off(i64),
    Any(u64),
}

#[derive(Debug, Clone)]
struct HeaderSpec {
    transfer_id: u64,
    total: Total,
    format: String,
}

impl HeaderSpec {
    pub(crate) fn new(total: Total, format: &str) -> Option<HeaderSpec> {
        Some(HeaderSpec {
            transfer_id: 9,
            total,
            format: format.to_owned(),
        })
    }
}

/// How many data bytes a chunk carries.
#[derive(Debug, Clone, Copy)]
enum ChunkLen {
    Bytes(usize),
    /// As many as make the encoded message this many bytes longer than the worker's limit.
    OverLimit(i64),
}

#[derive(Debug, Clone)]
struct ChunkSpec {
    header: Option<HeaderSpec>,
    len: ChunkLen,
    seed: u64,
}

fn chunk(header: Option<HeaderSpec>, len: ChunkLen) -> ChunkSpec {
    ChunkSpec {
        header,
        len,
        seed: 3,
    }
}

fn well_formed_chunks() -> impl Strategy<Value = Vec<ChunkSpec>> {
    (
        any::<u64>(),
        "[a-z]{0,8}",
        proptest::collection::vec((0..40_000usize, any::<u64>()), 1..5),
    )
        .prop_map(|(transfer_id, format, parts)| {
            let mut header = Some(HeaderSpec {
                transfer_id,
                total: Total::Exact,
                format,
            });
            parts
                .into_iter()
                .map(|(len, seed)| ChunkSpec {
                    header: header.take(),
                    len: ChunkLen::Bytes(len),
                    seed,
                })
                .collect()
        })
}

fn arbitrary_chunks() -> impl Strategy<Value = Vec<ChunkSpec>> {
    let total = prop_oneof![
        3 => Just(Total::Exact),
        2 => (-3..=3i64).prop_map(Total::Off),
        1 => any::<u64>().prop_map(Total::Any),
        1 => (MAX_INLINE - 2..MAX_INLINE + 2).prop_map(Total::Any),
    ];
    let header = (any::<u64>(), total, format_name())
        .prop_map(|(transfer_id, total, format)| HeaderSpec {
            transfer_id,
            total,
            format,
        })
        .boxed();
    let len = || {
        prop_oneof![
            10 => (0..40_000usize).prop_map(ChunkLen::Bytes),
            2 => Just(ChunkLen::Bytes(0)),
            1 => (-2..=2i64).prop_map(ChunkLen::OverLimit),
        ]
    };
    let chunk = |header_weight| {
        (
            proptest::option::weighted(header_weight, header.clone()),
            len(),
            any::<u64>(),
        )
            .prop_map(|(header, len, seed)| ChunkSpec { header, len, seed })
    };
    // Mostly a header where it belongs, sometimes none or one too many; rarely no chunk at all.
    let stream = (chunk(0.85), proptest::collection::vec(chunk(0.1), 0..5))
        .prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect::<Vec<_>>());
    prop_oneof![20 => stream, 1 => Just(Vec::new())]
}

/// The chunk messages a spec describes.
fn chunks_of(specs: &[ChunkSpec]) -> Vec<InlineChunk> {
    let build = |lens: &[usize]| -> Vec<InlineChunk> {
        let sum: u64 = lens.iter().map(|&it| it as u64).sum();
        specs
            .iter()
            .zip(lens)
            .map(|(spec, &len)| InlineChunk {
                header: spec.header.as_ref().map(|h| InlineHeader {
                    transfer_id: h.transfer_id,
                    total_len: match h.total {
                        Total::Exact => sum,
                        Total::Off(by) => sum.saturating_add_signed(by),
                        Total::Any(it) => it,
                    },
                    format: h.format.clone(),
                }),
                data: payload(len, spec.seed),
            })
            .collect()
    };
    let mut lens: Vec<usize> = specs
        .iter()
        .map(|spec| match spec.len {
            ChunkLen::Bytes(it) => it,
            ChunkLen::OverLimit(_) => MESSAGE_LIMIT,
        })
        .collect();
    let target = |by: i64| MESSAGE_LIMIT.saturating_add_signed(by as isize);
    // The framing of a message grows with its length's varint: a few rounds settle it.
    for _ in 0..4 {
        let chunks = build(&lens);
        for ((spec, len), chunk) in specs.iter().zip(&mut lens).zip(&chunks) {
            if let ChunkLen::OverLimit(by) = spec.len {
                *len = (*len + target(by)).saturating_sub(chunk.encoded_len());
            }
        }
    }
    let chunks = build(&lens);
    for (spec, chunk) in specs.iter().zip(&chunks) {
        if let ChunkLen::OverLimit(by) = spec.len {
            assert_eq!(
                chunk.encoded_len(),
                target(by),
                "the chunk's encoded length"
            );
        }
    }
    chunks
}

/// What the worker must answer to `chunks`: the ack's transfer id, length and checksum, or the
/// status code of the first rule broken.
fn inline_model(chunks: &[InlineChunk]) -> Result<(u64, u64, u64), Code> {
    let mut received = 0u64;
    let mut header = None;
    for (index, chunk) in chunks.iter().enumerate() {
        if chunk.encoded_len() > MESSAGE_LIMIT {
            return Err(Code::OutOfRange);
        }
        if index == 0 {
            let h = chunk.header.as_ref().ok_or(Code::InvalidArgument)?;
            if h.total_len > MAX_INLINE {
                return Err(Code::ResourceExhausted);
            }
            if h.format.len() > grpc::MAX_FORMAT_LEN {
                return Err(Code::InvalidArgument);
            }
            header = Some(h);
        } else if chunk.header.is_some() {
            return Err(Code::InvalidArgument);
        }
        let total = header.map_or(0, |h| h.total_len);
        if chunk.data.len() as u64 > total - received {
            return Err(Code::InvalidArgument);
        }
        received += chunk.data.len() as u64;
    }
    // No chunk at all.
    let header = header.ok_or(Code::InvalidArgument)?;
    if received != header.total_len {
        return Err(Code::InvalidArgument);
    }
    let whole: Vec<u8> = chunks
        .iter()
        .flat_map(|it| it.data.iter().copied())
        .collect();
    Ok((header.transfer_id, received, checksum(&whole)))
}

/// Streams at the edges of the rules, run before the arbitrary ones.
fn edge_chunk_streams() -> Vec<Vec<ChunkSpec>> {
    use ChunkLen::{Bytes, OverLimit};
    let exact = || HeaderSpec::new(Total::Exact, "raw");
    let half = MAX_INLINE as usize / 2;
    let longest = "f".repeat(grpc::MAX_FORMAT_LEN);
    vec![
        vec![],
        vec![chunk(None, Bytes(3))],
        vec![chunk(exact(), Bytes(0))],
        vec![chunk(exact(), Bytes(half)), chunk(None, Bytes(half))],
        vec![chunk(exact(), Bytes(half)), chunk(None, Bytes(half + 1))],
        vec![chunk(HeaderSpec::new(Total::Off(-1), "raw"), Bytes(5))],
        vec![chunk(HeaderSpec::new(Total::Off(1), "raw"), Bytes(5))],
        vec![chunk(exact(), Bytes(5)), chunk(exact(), Bytes(5))],
        vec![chunk(HeaderSpec::new(Total::Exact, &longest), Bytes(5))],
        vec![chunk(
            HeaderSpec::new(Total::Exact, &format!("{longest}f")),
            Bytes(5),
        )],
        vec![chunk(exact(), Bytes(10)), chunk(None, OverLimit(0))],
        vec![chunk(exact(), Bytes(10)), chunk(None, OverLimit(1))],
        vec![chunk(exact(), OverLimit(0))],
        vec![chunk(exact(), OverLimit(1))],
    ]
}

#[test]
fn arbitrary_chunk_streams_are_acknowledged_exactly_or_refused() {
    let rt = runtime();
    let served = rt.block_on(serve());
    let check = |specs: Vec<ChunkSpec>| -> Result<(), TestCaseError> {
        let chunks = chunks_of(&specs);
        let expected = inline_model(&chunks);
        let mut client = served.client.clone();
        let answer = rt.block_on(bounded(client.send_inline(tokio_stream::iter(chunks))))?;
        match (expected, answer) {
            (Ok((transfer_id, length, sum)), Ok(ack)) => {
                prop_assert_eq!(ack.transfer_id, transfer_id);
                prop_assert_eq!(ack.length, length);
                prop_assert_eq!(ack.checksum, sum, "the checksum of the bytes sent");
            }
            (Err(code), Err(status)) => {
                prop_assert_eq!(status.code(), code, "{}", status.message());
            }
            (expected, answer) => {
                return Err(fail(format!(
                    "the model expected {expected:?}, the worker answered {answer:?}"
                )));
            }
        }
        Ok(())
    };
    for specs in edge_chunk_streams() {
        let shown = format!("{specs:?}");
        check(specs).unwrap_or_else(|err| panic!("edge case {shown}: {err}"));
    }
    let streams = prop_oneof![well_formed_chunks(), arbitrary_chunks()];
    runner(64)
        .run(&streams, check)
        .unwrap_or_else(|err| panic!("{err}"));
    rt.block_on(still_serves(served, &Fixture::new()));
}
