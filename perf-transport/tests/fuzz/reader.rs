//! The reference check and the reader, without a service: arbitrary references and arbitrary
//! protobuf bytes.

use std::sync::Arc;

use perf_transport::grpc::checksum;
use perf_transport::reader::{DEFAULT_MAX_SEGMENT_BYTES as MAX_SEGMENT_BYTES, now_unix_ms};
use perf_transport::reference::{MAX_FORMAT_LEN, MAX_SEGMENT_NAME_LEN};
use perf_transport::{ReadError, Reference, ReferenceHandler, ReferenceReader, Secret};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use prost::Message;

use crate::fixture::{CountingShm, Fixture, SECRET, SEGMENT_LEN};
use crate::grpc_support::wire::SegmentReference;
use crate::model::{Expected, Refusal, check_ack, model, on_the_wire, refusal_of, wire_code};
use crate::references::{Expiry, Made, RefSpec, SegmentSpec, TokenSpec, fixture_ref, ref_spec};
use crate::{fail, runner};

/// Runs `wire` through `Reference::decode`, `verify`, the reader and the handler, against the
/// model.
fn check_reader(made: &Made, fixture: &Fixture) -> Result<(), TestCaseError> {
    let shm = Arc::new(CountingShm::default());
    let secret = Secret::from_bytes(SECRET);
    let reader = ReferenceReader::new(shm.clone(), secret.clone(), Some(fixture.pid));
    let mut cached = None;
    let expected = model(&made.wire, made.signed, fixture, &mut cached, false);
    let encoded = made.wire.encode_to_vec();
    match Reference::decode(&encoded) {
        Err(refusal) => {
            prop_assert_eq!(
                Expected::Refused(Refusal::Wire(wire_code(refusal.code))),
                expected,
                "{}",
                refusal
            );
        }
        Ok(reference) => {
            let verified = reference.verify(&secret, now_unix_ms(), Some(fixture.pid));
            let before_opening = match expected {
                // The size a worker maps and a name's owner are the reader's checks, not verify's.
                Expected::Refused(refusal)
                    if !matches!(refusal, Refusal::TooLarge | Refusal::ForeignSegment) =>
                {
                    Some(refusal)
                }
                _ => None,
            };
            let verify_refusal = verified.clone().err().map(ReadError::Refused);
            prop_assert_eq!(
                verify_refusal.as_ref().and_then(refusal_of),
                before_opening,
                "verify gave {:?}",
                verified
            );
            let read = reader.read(&reference);
            let begun = reader.begin(&reference);
            match expected {
                Expected::Refused(refusal) => {
                    prop_assert_eq!(read.as_ref().err().and_then(refusal_of), Some(refusal));
                    prop_assert_eq!(begun.as_ref().err().and_then(refusal_of), Some(refusal));
                }
                Expected::Unopenable => {
                    for result in [read.map(|_| ()), begun.map(|_| ())] {
                        prop_assert!(
                            matches!(result, Err(ReadError::Shm(_) | ReadError::Replaced { .. })),
                            "{:?}, the model: not openable",
                            result
                        );
                    }
                }
                Expected::Read { from, to } => {
                    let sum = checksum(&fixture.bytes()[from..to]);
                    let out = read.map_err(|e| fail(format!("read: {e}")))?;
                    prop_assert_eq!((out.length, out.checksum), ((to - from) as u64, sum));
                    let mut part = begun.map_err(|e| fail(format!("begin: {e}")))?;
                    prop_assert_eq!(part.advance(reference.length), Ok(()));
                    let out = part.finish().map_err(|e| fail(format!("finish: {e}")))?;
                    prop_assert_eq!((out.length, out.checksum), ((to - from) as u64, sum));
                }
            }
        }
    }
    let handled =
        on_the_wire(Reference::decode(&encoded).and_then(|r| {
            ReferenceHandler::handle(&reader, &r, perf_core::Verification::Checksum)
        }));
    check_ack(&handled, &made.wire, expected, fixture)?;
    if !made.signed || matches!(expected, Expected::Refused(_)) {
        prop_assert_eq!(shm.opens(), 0, "a refused reference was opened");
        prop_assert_eq!(reader.open_mappings(), 0, "a refused reference was mapped");
    }
    Ok(())
}

/// References at the edges of the checks, run before the arbitrary ones.
fn edge_references() -> Vec<RefSpec> {
    let len = SEGMENT_LEN as u64;
    let with = |change: &dyn Fn(&mut RefSpec)| {
        let mut spec = fixture_ref(len, 100, 1000, "raw");
        change(&mut spec);
        spec
    };
    let mut edges = vec![
        fixture_ref(len, 0, 0, "raw"),
        fixture_ref(len, len - 10, 10, "raw"),
        fixture_ref(len, len - 10, 11, "raw"),
        fixture_ref(len, u64::MAX, 2, "raw"),
        fixture_ref(0, 0, 0, "raw"),
        fixture_ref(len + 1, 0, 10, "raw"),
        fixture_ref(MAX_SEGMENT_BYTES, 0, 10, "raw"),
        fixture_ref(MAX_SEGMENT_BYTES + 1, 0, 10, "raw"),
        fixture_ref(len, 0, 10, &"f".repeat(MAX_FORMAT_LEN)),
        fixture_ref(len, 0, 10, &"f".repeat(MAX_FORMAT_LEN + 1)),
        with(&|it| it.real_inode = false),
        with(&|it| it.expiry = Expiry::Past(1)),
        with(&|it| it.segment = SegmentSpec::Memfd(Some(1), 3)),
        with(&|it| it.segment = SegmentSpec::Missing),
        with(&|it| it.token = TokenSpec::Bytes(vec![0; 31])),
        with(&|it| it.token = TokenSpec::Bytes(vec![0; 33])),
        with(&|it| it.token = TokenSpec::Random([0; 32])),
        with(&|it| it.token = TokenSpec::OtherSecret([0; 32])),
    ];
    for name_len in [MAX_SEGMENT_NAME_LEN, MAX_SEGMENT_NAME_LEN + 1] {
        let name = format!("/{}", "a".repeat(name_len - 1));
        edges.push(with(&|it| it.segment = SegmentSpec::Named(name.clone())));
    }
    for field in 0..10 {
        edges.push(with(&|it| it.token = TokenSpec::Altered(field, 1)));
    }
    edges
}

#[test]
fn arbitrary_references_are_read_only_when_signed_and_map_nothing_otherwise() {
    let fixture = Fixture::new();
    for spec in edge_references() {
        check_reader(&spec.make(&fixture), &fixture)
            .unwrap_or_else(|err| panic!("edge case {spec:?}: {err}"));
    }
    runner(256)
        .run(&ref_spec(), |spec| {
            check_reader(&spec.make(&fixture), &fixture)
        })
        .unwrap_or_else(|err| panic!("{err}"));
}

/// Bytes to decode as a reference.
#[derive(Debug, Clone)]
enum Encoded {
    Arbitrary(Vec<u8>),
    /// A reference's encoding with bytes changed: (position modulo the length, XOR mask).
    Flipped(RefSpec, Vec<(usize, u8)>),
}

#[test]
fn arbitrary_protobuf_bytes_are_refused_unless_validly_signed() {
    let fixture = Fixture::new();
    let secret = Secret::from_bytes(SECRET);
    let encoded = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Encoded::Arbitrary),
        (
            ref_spec(),
            proptest::collection::vec((any::<usize>(), 1..=255u8), 1..6),
        )
            .prop_map(|(spec, flips)| Encoded::Flipped(spec, flips)),
    ];
    runner(256)
        .run(&encoded, |encoded| {
            let bytes = match encoded {
                Encoded::Arbitrary(bytes) => bytes,
                Encoded::Flipped(spec, flips) => {
                    let mut bytes = spec.make(&fixture).wire.encode_to_vec();
                    let len = bytes.len();
                    for (at, mask) in flips {
                        bytes[at % len] ^= mask;
                    }
                    bytes
                }
            };
            let Ok(wire) = SegmentReference::decode(bytes.as_slice()) else {
                return Ok(());
            };
            // A flip may leave every signed field as it was (it may hit an unknown field, or turn
            // a default value's encoding into another): then the token is still valid.
            let signed = Reference::decode(&wire.encode_to_vec()).is_ok_and(|r| {
                let mut resigned = r.clone();
                resigned.sign(&secret);
                resigned.token == r.token
            });
            check_reader(&Made { wire, signed }, &fixture)
        })
        .unwrap_or_else(|err| panic!("{err}"));
}
