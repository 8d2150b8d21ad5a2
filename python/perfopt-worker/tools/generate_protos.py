"""Generates the protobuf and gRPC modules of perfopt_worker._gen from the .proto files.

Run `python tools/generate_protos.py` from python/perfopt-worker after a .proto file changes;
tests/test_generated.py fails when the committed modules differ from what this produces.
Needs grpcio-tools (the `test` extra pins the version the committed modules were made with).
"""

from __future__ import annotations

import pathlib
import re
import shutil
import sys
import tempfile

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parent.parent
REPO_ROOT = PACKAGE_ROOT.parent.parent
GENERATED = PACKAGE_ROOT / "perfopt_worker" / "_gen"

# (include directory, proto file inside it, module prefix of the generated files)
PROTOS = [
    (REPO_ROOT / "perf-transport" / "proto", "perfopt/transfer/v1/transfer.proto", "transfer"),
    (PACKAGE_ROOT / "proto", "grpc/health/v1/health.proto", "health"),
]


def _relative_imports(text: str) -> str:
    # protoc writes absolute imports named after the proto package; inside perfopt_worker._gen
    # the modules sit side by side.
    return re.sub(
        r"^from [a-z0-9_.]+ import (\w+_pb2) as (\w+)$",
        r"from . import \1 as \2",
        text,
        flags=re.MULTILINE,
    )


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Writes the generated modules into `out_dir` and returns their paths."""
    from grpc_tools import protoc  # a development dependency, imported only here

    written = []
    with tempfile.TemporaryDirectory() as raw:
        for include, proto, _ in PROTOS:
            args = [
                "grpc_tools.protoc",
                f"-I{include}",
                f"--python_out={raw}",
                f"--grpc_python_out={raw}",
                str(include / proto),
            ]
            if protoc.main(args) != 0:
                raise RuntimeError(f"protoc failed on {include / proto}")
        for _, proto, prefix in PROTOS:
            stem = pathlib.Path(raw) / pathlib.Path(proto).parent
            for suffix in ("_pb2.py", "_pb2_grpc.py"):
                source = stem / f"{prefix}{suffix}"
                target = out_dir / source.name
                target.write_text(_relative_imports(source.read_text()))
                written.append(target)
    return written


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(pathlib.Path(tmp)):
            shutil.copy(path, GENERATED / path.name)
            print(f"wrote {GENERATED / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
