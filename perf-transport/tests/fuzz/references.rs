//! Arbitrary references: which segment, which bounds, which expiry, and how the token is made.

use perf_core::SegmentId;
use perf_transport::reader::{DEFAULT_MAX_SEGMENT_BYTES as MAX_SEGMENT_BYTES, now_unix_ms};
use perf_transport::{Reference, Secret};
use proptest::prelude::*;
use prost::Message;

use crate::fixture::{Fixture, SECRET, SEGMENT_LEN};
use crate::grpc_support::wire::SegmentReference;

/// Which segment a reference names, relative to the fixture.
#[derive(Debug, Clone)]
pub(crate) enum SegmentSpec {
    /// The fixture's memfd segment.
    Real,
    /// A memfd segment with this pid (`None`: this process) and descriptor.
    Memfd(Option<u32>, i32),
    Named(String),
    /// No segment at all (only on the wire).
    Missing,
}

/// How the token is made.
#[derive(Debug, Clone)]
pub(crate) enum TokenSpec {
    Signed,
    /// Signed, then one field altered (field index, change).
    Altered(u8, u64),
    OtherSecret([u8; 32]),
    Random([u8; 32]),
    /// Any bytes, of any length but 32.
    Bytes(Vec<u8>),
}

/// A number relative to the fixture segment, or any value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Size {
    Within(u32),
    Any(u64),
}

/// An expiry relative to now, or any value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expiry {
    Future,
    Past(u64),
    Any(u64),
}

/// A reference to make, its sizes relative to the fixture.
#[derive(Debug, Clone)]
pub(crate) struct RefSpec {
    pub(crate) transfer_id: u64,
    pub(crate) segment: SegmentSpec,
    /// Whether it names the fixture's inode; `inode` otherwise.
    pub(crate) real_inode: bool,
    pub(crate) inode: u64,
    pub(crate) segment_len: Size,
    pub(crate) offset: Size,
    pub(crate) length: Size,
    pub(crate) format: String,
    pub(crate) expiry: Expiry,
    pub(crate) token: TokenSpec,
}

pub(crate) fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        4 => (0..=SEGMENT_LEN as u32).prop_map(Size::Within),
        1 => any::<u64>().prop_map(Size::Any),
        1 => (0..4u64).prop_map(|it| Size::Any(MAX_SEGMENT_BYTES - 1 + it)),
    ]
}

pub(crate) fn format_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{0,8}",
        1 => ".{0,12}",
        1 => (28usize..140).prop_map(|n| "f".repeat(n)),
    ]
}

fn segment_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "/[A-Za-z0-9._-]{1,40}",
        "/perfopt-[0-9]{1,10}-[0-9]{1,6}-[0-9]{1,8}-[0-9a-f]{32}",
        ".{0,60}",
        (250usize..260).prop_map(|n| format!("/{}", "a".repeat(n))),
    ]
}

fn segment_spec() -> impl Strategy<Value = SegmentSpec> {
    prop_oneof![
        6 => Just(SegmentSpec::Real),
        2 => (proptest::option::of(any::<u32>()), prop_oneof![-2..64i32, any::<i32>()])
            .prop_map(|(pid, fd)| SegmentSpec::Memfd(pid, fd)),
        2 => segment_name().prop_map(SegmentSpec::Named),
        1 => Just(SegmentSpec::Missing),
    ]
}

fn token_spec() -> impl Strategy<Value = TokenSpec> {
    prop_oneof![
        5 => Just(TokenSpec::Signed),
        3 => (0..10u8, 1..=u64::MAX).prop_map(|(field, change)| TokenSpec::Altered(field, change)),
        1 => any::<[u8; 32]>()
            .prop_filter("another secret", |it| *it != SECRET)
            .prop_map(TokenSpec::OtherSecret),
        1 => any::<[u8; 32]>().prop_map(TokenSpec::Random),
        1 => proptest::collection::vec(any::<u8>(), 0..64)
            .prop_filter("not 32 bytes", |it| it.len() != 32)
            .prop_map(TokenSpec::Bytes),
    ]
}

/// References of which half name the fixture within its bounds, before any expiry and with a
/// short format (only their token varies), and half are arbitrary in every field.
pub(crate) fn ref_spec() -> impl Strategy<Value = RefSpec> {
    let within = || (0..=SEGMENT_LEN as u32).prop_map(Size::Within);
    // The fixture (mostly), within its bounds, unexpired, with a short format: the checks before
    // the segment is opened pass when the token is right. Some name another segment, another
    // inode, or a length the fixture's file does not hold.
    let segment = prop_oneof![
        10 => Just(SegmentSpec::Real),
        1 => (-2..64i32).prop_map(|fd| SegmentSpec::Memfd(None, fd)),
        1 => segment_name().prop_map(SegmentSpec::Named),
    ];
    let segment_len = prop_oneof![
        10 => (1..=SEGMENT_LEN as u32).prop_map(Size::Within),
        1 => Just(Size::Within(0)),
        1 => (SEGMENT_LEN as u64 + 1..2 * SEGMENT_LEN as u64).prop_map(Size::Any),
    ];
    let valid = (
        (
            any::<u64>(),
            segment,
            prop::bool::weighted(0.9),
            any::<u64>(),
        ),
        (segment_len, within(), within()),
        "[a-z]{0,8}",
        token_spec(),
    )
        .prop_map(
            |(
                (transfer_id, segment, real_inode, inode),
                (segment_len, offset, length),
                format,
                token,
            )| {
                RefSpec {
                    transfer_id,
                    segment,
                    real_inode,
                    inode,
                    segment_len,
                    offset,
                    length,
                    format,
                    expiry: Expiry::Future,
                    token,
                }
            },
        );
    let expiry = prop_oneof![
        4 => Just(Expiry::Future),
        1 => (1..1_000_000_000u64).prop_map(Expiry::Past),
        1 => any::<u64>().prop_map(Expiry::Any),
    ];
    let arbitrary = (
        any::<u64>(),
        segment_spec(),
        prop::bool::weighted(0.8),
        any::<u64>(),
        (size(), size(), size()),
        format_name(),
        expiry,
        token_spec(),
    )
        .prop_map(
            |(
                transfer_id,
                segment,
                real_inode,
                inode,
                (segment_len, offset, length),
                format,
                expiry,
                token,
            )| RefSpec {
                transfer_id,
                segment,
                real_inode,
                inode,
                segment_len,
                offset,
                length,
                format,
                expiry,
                token,
            },
        );
    prop_oneof![valid, arbitrary]
}

/// A reference made from a spec, on the wire, and whether its token is the valid one.
#[derive(Debug, Clone)]
pub(crate) struct Made {
    pub(crate) wire: SegmentReference,
    pub(crate) signed: bool,
}

impl RefSpec {
    /// The reference this spec describes, for the fixture, signed as the spec says.
    pub(crate) fn make(&self, fixture: &Fixture) -> Made {
        // Sizes within the fixture are clamped so that most references lie inside their segment.
        let segment_len = match self.segment_len {
            Size::Within(it) => u64::from(it),
            Size::Any(it) => it,
        };
        let resolve = |it: Size| match it {
            Size::Within(it) => u64::from(it).min(segment_len),
            Size::Any(it) => it,
        };
        let offset = resolve(self.offset);
        let length = match self.length {
            Size::Within(it) => u64::from(it).min(segment_len.saturating_sub(offset)),
            Size::Any(it) => it,
        };
        let now = now_unix_ms();
        let expires_unix_ms = match self.expiry {
            Expiry::Future => now + 600_000,
            Expiry::Past(ago) => now.saturating_sub(ago),
            Expiry::Any(it) => it,
        };
        let segment = match &self.segment {
            SegmentSpec::Real => Some(SegmentId::Memfd {
                pid: fixture.pid,
                fd: fixture.fd,
            }),
            SegmentSpec::Memfd(pid, fd) => Some(SegmentId::Memfd {
                pid: pid.unwrap_or(fixture.pid),
                fd: *fd,
            }),
            SegmentSpec::Named(name) => Some(SegmentId::Named(name.clone())),
            SegmentSpec::Missing => None,
        };
        let mut reference = Reference {
            transfer_id: self.transfer_id,
            segment: segment
                .clone()
                .unwrap_or(SegmentId::Memfd { pid: 0, fd: 0 }),
            segment_inode: if self.real_inode {
                fixture.inode()
            } else {
                self.inode
            },
            segment_len,
            offset,
            length,
            format: self.format.clone(),
            expires_unix_ms,
            token: [0; 32],
        };
        let secret = Secret::from_bytes(SECRET);
        let mut signed = false;
        match &self.token {
            TokenSpec::Signed => {
                reference.sign(&secret);
                signed = segment.is_some();
            }
            TokenSpec::Altered(field, change) => {
                reference.sign(&secret);
                alter(&mut reference, *field, *change);
            }
            TokenSpec::OtherSecret(key) => reference.sign(&Secret::from_bytes(*key)),
            TokenSpec::Random(token) => reference.token = *token,
            TokenSpec::Bytes(_) => {}
        }
        let mut wire = SegmentReference::decode(reference.encode().as_slice())
            .expect("a reference's encoding decodes");
        if segment.is_none() {
            wire.segment = None;
        }
        if let TokenSpec::Bytes(bytes) = &self.token {
            wire.token = bytes.clone();
        }
        Made { wire, signed }
    }
}

/// Changes one field of a signed reference (`change` is never 0, so the field always changes).
fn alter(r: &mut Reference, field: u8, change: u64) {
    match field {
        0 => r.transfer_id ^= change,
        1 => {
            r.segment = match &r.segment {
                SegmentId::Memfd { pid, fd } => SegmentId::Memfd {
                    pid: *pid,
                    fd: fd ^ (change as i32 | 1),
                },
                SegmentId::Named(name) => SegmentId::Named(format!("{name}a")),
            }
        }
        2 => r.segment_inode ^= change,
        3 => r.segment_len ^= change,
        4 => r.offset ^= change,
        5 => r.length ^= change,
        6 => r.format.push('x'),
        7 => r.expires_unix_ms ^= change,
        8 => {
            r.segment = match &r.segment {
                SegmentId::Memfd { pid, .. } => SegmentId::Named(format!("/perfopt-{pid}")),
                SegmentId::Named(_) => SegmentId::Memfd { pid: 1, fd: 3 },
            }
        }
        _ => r.token[(change % 32) as usize] ^= 1 << (change % 8),
    }
}

/// A signed reference to bytes `offset .. offset + length` of the fixture.
pub(crate) fn fixture_ref(segment_len: u64, offset: u64, length: u64, format: &str) -> RefSpec {
    RefSpec {
        transfer_id: 11,
        segment: SegmentSpec::Real,
        real_inode: true,
        inode: 0,
        segment_len: Size::Any(segment_len),
        offset: Size::Any(offset),
        length: Size::Any(length),
        format: format.to_owned(),
        expiry: Expiry::Future,
        token: TokenSpec::Signed,
    }
}
