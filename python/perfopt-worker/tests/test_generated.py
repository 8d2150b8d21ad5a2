"""The committed protobuf and gRPC modules are what tools/generate_protos.py makes now."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_generated_modules_are_up_to_date(tmp_path):
    spec = importlib.util.spec_from_file_location("generate_protos",
                                                  ROOT / "tools" / "generate_protos.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    written = gen.generate(tmp_path)
    assert len(written) == 4
    committed = ROOT / "perfopt_worker" / "_gen"
    stale = [p.name for p in written if p.read_text() != (committed / p.name).read_text()]
    assert not stale, (
        f"{stale} differ from a fresh generation: run `python tools/generate_protos.py` in "
        "python/perfopt-worker and commit the result"
    )
