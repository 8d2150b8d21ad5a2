//! `docs/protocol.md` checked against the code: its golden vector is recomputed from the documented
//! token layout and with the crate's own signing and checksum, and its limits are compared with
//! the crate's constants, so the document cannot drift from what the code does.

mod wire;

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use perf_core::SegmentId;
use perf_transport::grpc::{self, checksum};
use perf_transport::reader::{DEFAULT_MAX_SEGMENT_BYTES, MAX_SEGMENT_BYTES};
use perf_transport::reference::{MAX_FORMAT_LEN, MAX_SEGMENT_NAME_LEN, SECRET_LEN};
use perf_transport::{Reference, Secret};
use prost::Message;
use sha2::Sha256;

/// The protocol document.
const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
/// The protocol definition the document describes.
const PROTO_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proto/perfopt/transfer/v1/transfer.proto"
);
/// First line of the fenced block holding the golden vector.
const VECTOR_MARK: &str = "# perfopt golden vector";
/// First line of the fenced block holding the limits.
const LIMITS_MARK: &str = "# perfopt limits";

// Inline and by reference, format names have one bound: the document's `max_format_len`,
// checked below.
const _: () = assert!(
    grpc::MAX_FORMAT_LEN == MAX_FORMAT_LEN,
    "the gRPC layer and the reference layer bound format names differently"
);

fn doc() -> String {
    std::fs::read_to_string(DOC_PATH).unwrap_or_else(|err| panic!("reading {DOC_PATH}: {err}"))
}

/// The `key = value` lines of the one fenced block of the document whose first line is `mark`;
/// every value must be taken (and so checked) before the block is dropped.
struct Block {
    mark: &'static str,
    values: BTreeMap<String, String>,
}

impl Block {
    fn parse(doc: &str, mark: &'static str) -> Block {
        let mut found = Vec::new();
        let mut lines = doc.lines();
        while let Some(line) = lines.next() {
            if !line.trim_start().starts_with("```") {
                continue;
            }
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|it| !it.trim_start().starts_with("```"))
                .collect();
            if body.first().map(|it| it.trim()) == Some(mark) {
                found.push(body);
            }
        }
        assert_eq!(
            found.len(),
            1,
            "{DOC_PATH}: expected one fenced block starting with {mark:?}, found {}",
            found.len()
        );
        let mut values = BTreeMap::new();
        for line in &found[0][1..] {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once(" = ").unwrap_or_else(|| {
                panic!("{DOC_PATH}: {mark}: expected `key = value`, got {line:?}")
            });
            let old = values.insert(key.trim().to_owned(), value.trim().to_owned());
            assert!(old.is_none(), "{DOC_PATH}: {mark}: key {key} given twice");
        }
        Block { mark, values }
    }

    /// The value of `key`, which must be there.
    fn take(&mut self, key: &str) -> String {
        self.values.remove(key).unwrap_or_else(|| {
            panic!(
                "{DOC_PATH}: {}: expected a value for {key}, found none",
                self.mark
            )
        })
    }

    /// The value of `key` as a number.
    fn number<T: std::str::FromStr>(&mut self, key: &str) -> T {
        let text = self.take(key);
        let digits = text.replace('_', "");
        digits.parse().unwrap_or_else(|_| {
            panic!(
                "{DOC_PATH}: {}: expected a number for {key}, got {text:?}",
                self.mark
            )
        })
    }

    /// The value of `key` as hex digits.
    fn hex(&mut self, key: &str) -> Vec<u8> {
        let text = self.take(key);
        unhex(&text).unwrap_or_else(|| {
            panic!(
                "{DOC_PATH}: {}: expected hex digits for {key}, got {text:?}",
                self.mark
            )
        })
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(
                self.values.is_empty(),
                "{DOC_PATH}: {}: values nothing checks: {:?}",
                self.mark,
                self.values.keys().collect::<Vec<_>>()
            );
        }
    }
}

/// The bytes an even number of hex digits spell.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The HMAC input of a reference, built from the layout `docs/protocol.md` gives (not from the
/// crate's code): domain string, transfer id, segment tag and id, the five integers, format.
fn documented_mac_input(r: &Reference) -> Vec<u8> {
    let mut out = b"perfopt-ref-v1".to_vec();
    out.extend_from_slice(&r.transfer_id.to_le_bytes());
    match &r.segment {
        SegmentId::Memfd { pid, fd } => {
            out.push(1);
            out.extend_from_slice(&pid.to_le_bytes());
            out.extend_from_slice(&fd.to_le_bytes());
        }
        SegmentId::Named(name) => {
            out.push(2);
            out.extend_from_slice(&(name.len() as u64).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
    }
    for v in [
        r.segment_inode,
        r.segment_len,
        r.offset,
        r.length,
        r.expires_unix_ms,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(r.format.len() as u64).to_le_bytes());
    out.extend_from_slice(r.format.as_bytes());
    out
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Reads the reference `prefix.*` of the vector, checks its token, HMAC input and wire bytes.
fn check_reference(vector: &mut Block, secret: &Secret, key: &[u8], prefix: &str) {
    let field = |name: &str| format!("{prefix}.{name}");
    let segment = if prefix == "memfd" {
        SegmentId::Memfd {
            pid: vector.number(&field("pid")),
            fd: vector.number(&field("fd")),
        }
    } else {
        SegmentId::Named(vector.take(&field("name")))
    };
    let mut reference = Reference {
        transfer_id: vector.number(&field("transfer_id")),
        segment,
        segment_inode: vector.number(&field("segment_inode")),
        segment_len: vector.number(&field("segment_len")),
        offset: vector.number(&field("offset")),
        length: vector.number(&field("length")),
        format: vector.take(&field("format")),
        expires_unix_ms: vector.number(&field("expires_unix_ms")),
        token: [0; 32],
    };
    reference.sign(secret);

    let token = vector.hex(&field("token"));
    assert_eq!(
        hex(&reference.token),
        hex(&token),
        "{prefix}: Reference::sign gives another token than the document"
    );
    let input = vector.hex(&field("mac_input"));
    assert_eq!(
        hex(&documented_mac_input(&reference)),
        hex(&input),
        "{prefix}: the documented layout gives other HMAC input bytes than the document"
    );
    assert_eq!(
        hex(&hmac_sha256(key, &input)),
        hex(&reference.token),
        "{prefix}: HMAC-SHA256 of the documented input is not the crate's token, so the \
         documented layout is not the signed one"
    );
    assert_eq!(
        reference.verify(secret, reference.expires_unix_ms, Some(4242)),
        Ok(()),
        "{prefix}: the documented reference does not verify"
    );

    let wire = vector.hex(&field("wire"));
    assert_eq!(
        hex(&reference.encode()),
        hex(&wire),
        "{prefix}: the protobuf encoding differs from the document"
    );
    assert_eq!(
        Reference::decode(&wire).unwrap_or_else(|err| {
            panic!("{prefix}: the documented wire bytes do not decode to a reference: {err}")
        }),
        reference,
        "{prefix}: the documented wire bytes decode to another reference"
    );
}

#[test]
fn the_golden_vector_is_what_the_code_computes() {
    let doc = doc();
    let mut vector = Block::parse(&doc, VECTOR_MARK);
    let key = vector.hex("secret");
    let secret_bytes: [u8; SECRET_LEN] = key.as_slice().try_into().unwrap_or_else(|_| {
        panic!(
            "the documented secret has {} bytes, expected {SECRET_LEN}",
            key.len()
        )
    });
    let secret = Secret::from_bytes(secret_bytes);
    check_reference(&mut vector, &secret, &key, "memfd");
    check_reference(&mut vector, &secret, &key, "named");

    let payload = vector.hex("payload.hex");
    assert_eq!(
        vector.take("payload.ascii").as_bytes(),
        payload.as_slice(),
        "the payload's ASCII and hex forms differ"
    );
    let sum = checksum(&payload);
    assert_eq!(
        format!("{sum:016x}"),
        vector.take("payload.xxh3_64_hex"),
        "XXH3-64 of the payload"
    );
    assert_eq!(
        sum,
        vector.number::<u64>("payload.xxh3_64_dec"),
        "XXH3-64 of the payload, in decimal"
    );
    let empty = checksum(b"");
    assert_eq!(
        format!("{empty:016x}"),
        vector.take("empty.xxh3_64_hex"),
        "XXH3-64 of no bytes"
    );
}

#[test]
fn the_documented_limits_are_the_crates_constants() {
    let doc = doc();
    let mut limits = Block::parse(&doc, LIMITS_MARK);
    let constants: [(&str, u64); 13] = [
        ("protocol_version", grpc::PROTOCOL_VERSION.into()),
        ("max_chunk_size", grpc::MAX_CHUNK_SIZE as u64),
        ("message_slack", grpc::MESSAGE_SLACK as u64),
        (
            "max_request_message",
            (grpc::MAX_CHUNK_SIZE + grpc::MESSAGE_SLACK) as u64,
        ),
        ("min_chunk_size", grpc::MIN_CHUNK_SIZE as u64),
        ("default_chunk_size", grpc::DEFAULT_CHUNK_SIZE as u64),
        ("default_max_inline_bytes", grpc::DEFAULT_MAX_INLINE_BYTES),
        ("max_reply_inline", perf_transport::worker::MAX_REPLY_INLINE),
        ("max_format_len", MAX_FORMAT_LEN as u64),
        ("max_segment_name_len", MAX_SEGMENT_NAME_LEN as u64),
        ("default_max_segment_bytes", DEFAULT_MAX_SEGMENT_BYTES),
        ("max_segment_bytes", MAX_SEGMENT_BYTES),
        ("secret_len", SECRET_LEN as u64),
    ];
    for (key, constant) in constants {
        assert_eq!(
            limits.number::<u64>(key),
            constant,
            "{DOC_PATH}: {LIMITS_MARK}: {key} is not the crate's value"
        );
    }
    // The token length is the one a worker takes from the wire, and no other.
    let token_len: usize = limits.number("token_len");
    let with_token = |len: usize| {
        wire::SegmentReference {
            segment: Some(wire::segment_reference::Segment::Named("/t".to_owned())),
            token: vec![0; len],
            ..wire::SegmentReference::default()
        }
        .encode_to_vec()
    };
    assert!(
        Reference::decode(&with_token(token_len)).is_ok(),
        "a token of token_len = {token_len} bytes is refused"
    );
    for other in [token_len - 1, token_len + 1] {
        assert!(
            Reference::decode(&with_token(other)).is_err(),
            "a token of {other} bytes is taken, the document says {token_len}"
        );
    }
}

#[test]
fn every_rpc_of_the_proto_has_its_section() {
    let proto = std::fs::read_to_string(PROTO_PATH)
        .unwrap_or_else(|err| panic!("reading {PROTO_PATH}: {err}"));
    let doc = doc();
    let headings: Vec<&str> = doc.lines().filter(|it| it.starts_with('#')).collect();
    let rpcs: Vec<&str> = proto
        .lines()
        .filter_map(|line| line.trim().strip_prefix("rpc "))
        .filter_map(|rest| rest.split('(').next())
        .collect();
    assert_eq!(rpcs.len(), 6, "rpcs found in {PROTO_PATH}: {rpcs:?}");
    for rpc in rpcs {
        let heading = format!("`{rpc}`");
        assert!(
            headings.iter().any(|it| it.contains(&heading)),
            "{DOC_PATH}: expected a section heading naming {heading}, found none"
        );
    }
}
