#!/usr/bin/env python3
"""Creates the virtual environment the Python worker's tests run in, and installs
python/perfopt-worker into it (editable, with its `test` extra).

    python3 python/setup_venv.py [--venv PATH]

The venv goes to --venv, else $PERFOPT_PYTHON_VENV, else $CARGO_TARGET_DIR/python-venv, else
target/python-venv in the repository. A second run with the same pyproject.toml and Python is a
no-op. The last line printed is the venv's python. Exits non-zero, saying what is missing, when
venv or pip is not there.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
PACKAGE = HERE / "perfopt-worker"
REPO = HERE.parent


def default_venv() -> pathlib.Path:
    if os.environ.get("PERFOPT_PYTHON_VENV"):
        return pathlib.Path(os.environ["PERFOPT_PYTHON_VENV"])
    target = os.environ.get("CARGO_TARGET_DIR")
    return pathlib.Path(target) / "python-venv" if target else REPO / "target" / "python-venv"


def stamp_of() -> str:
    h = hashlib.sha256()
    h.update((PACKAGE / "pyproject.toml").read_bytes())
    h.update(sys.version.encode())
    h.update(str(PACKAGE).encode())
    return h.hexdigest()


def fail(message: str) -> int:
    print(f"setup_venv: {message}", file=sys.stderr)
    return 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venv", type=pathlib.Path, default=None)
    venv = (p.parse_args().venv or default_venv()).resolve()
    python = venv / "bin" / "python"
    stamp_file = venv / ".perfopt-worker-stamp"
    stamp = stamp_of()
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        print(python)
        return 0
    try:
        import venv as _venv  # noqa: F401
        import ensurepip  # noqa: F401
    except ImportError as e:
        return fail(
            f"{sys.executable} has no {e.name} module: install it (Debian: "
            "apt-get install python3-venv python3-pip)"
        )
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)])
        if made.returncode != 0 or not python.exists():
            return fail(f"`{sys.executable} -m venv {venv}` failed (Debian: apt-get install "
                        "python3-venv)")
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    if subprocess.run(pip + ["--version"], capture_output=True).returncode != 0:
        return fail(f"{venv} has no pip (Debian: apt-get install python3-pip python3-venv)")
    installed = subprocess.run(pip + ["install", "--editable", f"{PACKAGE}[test]"])
    if installed.returncode != 0:
        return fail(f"pip could not install {PACKAGE}[test] into {venv}")
    stamp_file.write_text(stamp)
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
