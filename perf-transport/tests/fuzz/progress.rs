//! Arbitrary references followed by arbitrary progress: `SendReference` and
//! `SendReferenceStream` against a real worker.

use perf_transport::reference::MAX_FORMAT_LEN;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tonic::Code;

use crate::fixture::{Fixture, SEGMENT_LEN};
use crate::grpc_support::wire::{ReferenceProgress, SegmentReference};
use crate::model::{Cached, Expected, Refusal, check_ack, model};
use crate::references::{Made, RefSpec, fixture_ref, ref_spec};
use crate::runner;
use crate::service::{bounded, runtime, serve, still_serves};

/// A `ready` value, relative to the reference's length or any.
#[derive(Debug, Clone, Copy)]
enum Ready {
    Zero,
    Permille(u16),
    End,
    Past(u64),
    Any(u64),
}

impl Ready {
    pub(crate) fn of(self, length: u64) -> u64 {
        match self {
            Ready::Zero => 0,
            Ready::Permille(p) => (u128::from(length) * u128::from(p) / 1000) as u64,
            Ready::End => length,
            Ready::Past(by) => length.saturating_add(by),
            Ready::Any(it) => it,
        }
    }
}

/// How the first message of a progress stream looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    WithReference,
    WithoutReference,
    /// No message at all.
    Nothing,
}

#[derive(Debug, Clone)]
struct StreamSpec {
    reference: RefSpec,
    opening: Opening,
    first_ready: Ready,
    /// Later messages: whether each (wrongly) carries the reference again, and its `ready`.
    rest: Vec<(bool, Ready)>,
}

fn stream_spec() -> impl Strategy<Value = StreamSpec> {
    let ready = prop_oneof![
        2 => Just(Ready::Zero),
        4 => (0..=1000u16).prop_map(Ready::Permille),
        2 => Just(Ready::End),
        1 => (1..10u64).prop_map(Ready::Past),
        1 => any::<u64>().prop_map(Ready::Any),
    ];
    let well_formed = proptest::collection::vec(0..=1000u16, 0..5).prop_map(|mut parts| {
        parts.sort_unstable();
        let mut rest: Vec<(bool, Ready)> = parts
            .into_iter()
            .map(|p| (false, Ready::Permille(p)))
            .collect();
        rest.push((false, Ready::End));
        (Ready::Zero, rest)
    });
    let arbitrary = (
        ready.clone(),
        proptest::collection::vec((prop::bool::weighted(0.1), ready), 0..6),
    );
    let opening = prop_oneof![
        10 => Just(Opening::WithReference),
        1 => Just(Opening::WithoutReference),
        1 => Just(Opening::Nothing),
    ];
    (
        ref_spec(),
        opening,
        prop_oneof![well_formed.boxed(), arbitrary.boxed()],
    )
        .prop_map(|(reference, opening, (first_ready, rest))| StreamSpec {
            reference,
            opening,
            first_ready,
            rest,
        })
}

/// What the worker must answer to a progress stream for `made`, updating the model's mapping.
fn stream_model(
    spec: &StreamSpec,
    made: &Made,
    fixture: &Fixture,
    cached: &mut Cached,
) -> Expected {
    let refused = |code| Expected::Refused(Refusal::Wire(code));
    if spec.opening != Opening::WithReference {
        return refused(Code::InvalidArgument);
    }
    let begun = model(&made.wire, made.signed, fixture, cached, true);
    if !matches!(begun, Expected::Read { .. }) {
        return begun;
    }
    let length = made.wire.length;
    let mut done = 0;
    let mut ready = spec.first_ready.of(length);
    let mut rest = spec.rest.iter();
    loop {
        // A repeat of the last `ready` announces nothing new; anything else must move on.
        if ready != done {
            if ready < done || ready > length {
                return refused(Code::OutOfRange);
            }
            done = ready;
        }
        match rest.next() {
            Some((true, _)) => return refused(Code::InvalidArgument),
            Some((false, next)) => ready = next.of(length),
            None => break,
        }
    }
    if done != length {
        return refused(Code::InvalidArgument);
    }
    begun
}

fn progress_messages(spec: &StreamSpec, wire: &SegmentReference) -> Vec<ReferenceProgress> {
    if spec.opening == Opening::Nothing {
        return Vec::new();
    }
    let first = ReferenceProgress {
        reference: (spec.opening == Opening::WithReference).then(|| wire.clone()),
        ready: spec.first_ready.of(wire.length),
    };
    let rest = spec.rest.iter().map(|(again, ready)| ReferenceProgress {
        reference: again.then(|| wire.clone()),
        ready: ready.of(wire.length),
    });
    std::iter::once(first).chain(rest).collect()
}

/// Streams at the edges of the rules, run before the arbitrary ones.
fn edge_progress_streams() -> Vec<StreamSpec> {
    use Ready::{End, Past, Permille, Zero};
    let len = SEGMENT_LEN as u64;
    let stream = |reference: RefSpec, first_ready, rest: &[(bool, Ready)]| StreamSpec {
        reference,
        opening: Opening::WithReference,
        first_ready,
        rest: rest.to_vec(),
    };
    let plain = || fixture_ref(len, 100, 1000, "raw");
    let mut edges = vec![
        stream(plain(), Zero, &[(false, End)]),
        stream(plain(), End, &[]),
        stream(plain(), Zero, &[(false, End), (false, End)]),
        stream(
            plain(),
            Zero,
            &[(false, Permille(500)), (false, Zero), (false, End)],
        ),
        stream(plain(), Zero, &[(false, Past(1))]),
        stream(
            plain(),
            Zero,
            &[(false, Permille(500)), (false, Permille(499))],
        ),
        stream(plain(), Zero, &[(false, Permille(999))]),
        stream(plain(), Zero, &[(true, End)]),
        stream(fixture_ref(len, 0, 0, "raw"), Zero, &[]),
        stream(fixture_ref(len, len - 10, 10, "raw"), End, &[]),
        stream(fixture_ref(len, len - 10, 11, "raw"), End, &[]),
        stream(fixture_ref(len + 1, 0, 10, "raw"), End, &[]),
        stream(
            fixture_ref(len, 0, 10, &"f".repeat(MAX_FORMAT_LEN)),
            End,
            &[],
        ),
        stream(
            fixture_ref(len, 0, 10, &"f".repeat(MAX_FORMAT_LEN + 1)),
            End,
            &[],
        ),
    ];
    // Another inode drops the worker's mapping of the fixture; a zero-length segment cannot be
    // mapped afresh.
    let other_inode = RefSpec {
        real_inode: false,
        ..plain()
    };
    edges.push(stream(other_inode, End, &[]));
    edges.push(stream(fixture_ref(0, 0, 0, "raw"), Zero, &[]));
    for opening in [Opening::WithoutReference, Opening::Nothing] {
        edges.push(StreamSpec {
            opening,
            ..stream(plain(), End, &[])
        });
    }
    edges
}

#[test]
fn arbitrary_references_and_progress_are_acknowledged_exactly_or_refused() {
    let rt = runtime();
    let served = rt.block_on(serve());
    let fixture = Fixture::new();
    // The model's view of the worker's mapping of the fixture, across cases.
    let cached = std::cell::Cell::new(None);
    let check = |spec: StreamSpec| -> Result<(), TestCaseError> {
        let made = spec.reference.make(&fixture);
        let opens = served.shm.opens();
        let mut model_cache = cached.get();

        let expected = model(&made.wire, made.signed, &fixture, &mut model_cache, true);
        cached.set(model_cache);
        let mut client = served.client.clone();
        let answer = rt.block_on(bounded(client.send_reference(made.wire.clone())))?;
        check_ack(&answer, &made.wire, expected, &fixture)?;

        let streamed = stream_model(&spec, &made, &fixture, &mut model_cache);
        cached.set(model_cache);
        let messages = progress_messages(&spec, &made.wire);
        let answer = rt.block_on(bounded(
            client.send_reference_stream(tokio_stream::iter(messages)),
        ))?;
        check_ack(&answer, &made.wire, streamed, &fixture)?;

        if !made.signed || matches!(expected, Expected::Refused(_)) {
            prop_assert_eq!(
                served.shm.opens(),
                opens,
                "a segment was opened for a reference that was refused"
            );
        }
        Ok(())
    };
    for spec in edge_progress_streams() {
        let shown = format!("{spec:?}");
        check(spec).unwrap_or_else(|err| panic!("edge case {shown}: {err}"));
    }
    runner(64)
        .run(&stream_spec(), check)
        .unwrap_or_else(|err| panic!("{err}"));
    rt.block_on(still_serves(served, &fixture));
}
