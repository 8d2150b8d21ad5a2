"""The golden test vector and the limits of docs/protocol.md, against this package."""

import pathlib
import re

from perfopt_worker import protocol
from perfopt_worker._gen import transfer_pb2
from perfopt_worker.protocol import Memfd, ReferenceFields, checksum, mac_input, sign

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def block(title: str) -> dict:
    text = DOC.read_text()
    m = re.search(r"```text\n# " + re.escape(title) + r"\n(.*?)```", text, re.S)
    assert m, f"{DOC} has no block starting `# {title}`"
    pairs = {}
    for line in m.group(1).splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            pairs[key] = value
    return pairs


def fields(v: dict, prefix: str) -> ReferenceFields:
    segment = (Memfd(int(v["memfd.pid"]), int(v["memfd.fd"])) if prefix == "memfd"
               else v["named.name"])
    return ReferenceFields(
        transfer_id=int(v[f"{prefix}.transfer_id"]), segment=segment,
        segment_inode=int(v[f"{prefix}.segment_inode"]),
        segment_len=int(v[f"{prefix}.segment_len"]), offset=int(v[f"{prefix}.offset"]),
        length=int(v[f"{prefix}.length"]), expires_unix_ms=int(v[f"{prefix}.expires_unix_ms"]),
        format=v[f"{prefix}.format"],
    )


def test_the_golden_references_sign_and_encode_as_the_doc_says():
    v = block("perfopt golden vector")
    secret = bytes.fromhex(v["secret"])
    for prefix in ("memfd", "named"):
        f = fields(v, prefix)
        assert mac_input(f).hex() == v[f"{prefix}.mac_input"], prefix
        token = sign(secret, f)
        assert token.hex() == v[f"{prefix}.token"], prefix
        wire = bytes.fromhex(v[f"{prefix}.wire"])
        msg = transfer_pb2.SegmentReference.FromString(wire)
        assert ReferenceFields.from_message(msg) == f and msg.token == token, prefix
        assert msg.SerializeToString() == wire, prefix


def test_the_golden_payload_checksums():
    v = block("perfopt golden vector")
    payload = bytes.fromhex(v["payload.hex"])
    assert payload == v["payload.ascii"].encode()
    assert checksum(payload) == int(v["payload.xxh3_64_hex"], 16) == int(v["payload.xxh3_64_dec"])
    assert checksum(memoryview(payload)) == checksum(payload)
    assert checksum(b"") == int(v["empty.xxh3_64_hex"], 16)


def test_the_limits_are_the_docs():
    limits = block("perfopt limits")
    ours = {
        "protocol_version": protocol.PROTOCOL_VERSION,
        "max_chunk_size": protocol.MAX_CHUNK_SIZE,
        "message_slack": protocol.MESSAGE_SLACK,
        "max_request_message": protocol.MAX_REQUEST_MESSAGE,
        "min_chunk_size": protocol.MIN_CHUNK_SIZE,
        "default_chunk_size": protocol.DEFAULT_CHUNK_SIZE,
        "max_reply_inline": protocol.MAX_REPLY_INLINE,
        "default_max_inline_bytes": protocol.DEFAULT_MAX_INLINE_BYTES,
        "max_format_len": protocol.MAX_FORMAT_LEN,
        "max_segment_name_len": protocol.MAX_SEGMENT_NAME_LEN,
        "default_max_segment_bytes": protocol.DEFAULT_MAX_SEGMENT_BYTES,
        "max_segment_bytes": protocol.MAX_SEGMENT_BYTES,
        "secret_len": protocol.SECRET_LEN,
        "token_len": protocol.TOKEN_LEN,
    }
    assert {k: int(v.replace("_", "")) for k, v in limits.items()} == ours
